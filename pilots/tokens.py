"""`pilots tokens`: create, list and revoke the API's bearer tokens.

Works on the token database in `PILOTS_DATA_DIR`, which the API reads as requests come, so a
new token works at once and a revoked one stops working within a second. It never shows a
token except when creating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Annotated

import typer

from api.auth import Scope, TokenStore
from core.errors import PilotsError
from core.settings import load_settings
from core.timeutil import ns_to_datetime

tokens_app = typer.Typer(
    help="Bearer tokens of the API: read scope for researchers, operator for those who "
    "acknowledge alarms, admin for those who run the service.",
    no_args_is_help=True,
)


@contextmanager
def _store() -> Iterator[TokenStore]:
    """The token store of the configured data directory; errors end the command."""
    try:
        store = TokenStore.in_data_dir(load_settings().data_dir)
    except PilotsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        yield store
    except PilotsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        store.close()


def _when(ts_ns: int) -> str:
    return ns_to_datetime(ts_ns, UTC).isoformat(timespec="seconds")


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who or what uses the token, unique among live tokens")],
    scope: Annotated[
        Scope,
        typer.Option(
            help="read: query data; operator: also acknowledge alarms; admin: also operate"
        ),
    ] = "read",
) -> None:
    """Create a token and print it; it is shown this once and cannot be read back."""
    with _store() as store:
        token = store.create(name, scope)
    # The token alone on stdout, so that `TOKEN=$(pilots tokens create ...)` works.
    typer.echo(token)
    typer.echo(f"{scope} token {name!r} created; it is shown only now, keep it safe", err=True)


@tokens_app.command("revoke")
def revoke(
    name_or_id: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="as `list` shows it")],
) -> None:
    """Revoke a live token; requests that present it fail from now on."""
    with _store() as store:
        revoked = store.revoke(name_or_id)
    if not revoked:
        typer.echo(f"error: no live token named or numbered {name_or_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {name_or_id}")


@tokens_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
) -> None:
    """The tokens with their id, name, scope and dates; never the tokens themselves."""
    with _store() as store:
        tokens = store.list(include_revoked=all_)
    if not tokens:
        typer.echo("no tokens")
        return
    for info in tokens:
        revoked = f"  revoked {_when(info.revoked_ns)}" if info.revoked_ns is not None else ""
        typer.echo(
            f"{info.id:>4}  {info.name:<24} {info.scope:<8}  created {_when(info.created_ns)}"
            f"{revoked}"
        )

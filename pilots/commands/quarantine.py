"""`pilots quarantine list` and `replay`: what ingest refused, shown and processed again.

The listing is `api.services.quarantine`'s and the replay `ingest.replay`'s; this module reads
the options and prints. It never changes an entry itself.
"""

from __future__ import annotations

from typing import Annotated

import typer

from core.errors import PilotsError
from pilots.commands.common import fail, setup

quarantine_app = typer.Typer(help="What ingest refused, and why.", no_args_is_help=True)


@quarantine_app.command("list")
def quarantine_list(
    limit: Annotated[int, typer.Option(help="show at most this many entries")] = 20,
    reason: Annotated[str | None, typer.Option(help="only entries of this reason")] = None,
    source: Annotated[str | None, typer.Option(help="only entries of this device id")] = None,
) -> None:
    """Refusals per reason over every ingest worker, those no longer kept, the newest entries."""
    from api.services.quarantine import listing
    from core.store import open_store

    settings, registry = setup()
    try:
        store = open_store(settings, registry)
        try:
            found = listing(store, reason=reason, source=source, limit=limit)
        finally:
            store.close()
    except PilotsError as exc:
        raise fail(exc) from exc
    if not found.counts and not found.dropped:
        typer.echo("quarantine is empty")
        return
    typer.echo("refusals kept, by reason:")
    for name, count in found.counts.items():
        typer.echo(f"{name:>20}  {count}")
    if found.dropped:
        typer.echo("counted but not kept (cap: over a cap; age: pruned; store_refused):")
    for dropped in found.dropped:
        typer.echo(f"{dropped.reason:>20}  {dropped.refusals}  ({dropped.why})")
    typer.echo("")
    for entry in found.entries:
        when = entry.received.isoformat(timespec="seconds")
        more = f" x{entry.refusals}" if entry.refusals > 1 else ""
        typer.echo(
            f"#{entry.id} {when} {entry.worker} {entry.topic} [{entry.reason}{more}] {entry.detail}"
        )
        cut = " (truncated)" if entry.truncated else ""
        typer.echo(
            f"    {entry.length} bytes sha256={entry.sha256[:16]}{cut} {entry.payload[:200]!r}"
        )


@quarantine_app.command("replay")
def quarantine_replay(
    reason: Annotated[
        str | None, typer.Option(help="replay only entries of this reason, e.g. unknown_device")
    ] = None,
    entry: Annotated[
        list[int] | None, typer.Option("--id", help="replay only this entry (repeatable)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="say what would be stored and refused, change nothing")
    ] = False,
) -> None:
    """Process quarantined messages again with the current registry (after fixing it).

    What passes now is written to the store; what is still refused stays in the quarantine.
    """
    from core.store import open_store
    from ingest.replay import replay

    settings, registry = setup()
    try:
        store = open_store(settings, registry)
        try:
            store.start()
            result = replay(settings, registry, store, reason=reason, ids=entry, dry_run=dry_run)
        finally:
            store.close()
    except PilotsError as exc:
        raise fail(exc) from exc
    verb = "would store" if dry_run else "stored"
    notes = []
    if result.skipped:
        notes.append(f"{result.skipped} entries refused by the store itself left alone")
    if result.truncated:
        notes.append(
            f"{result.truncated} entries kept only in part "
            "(PILOTS_QUARANTINE_KEEP_BYTES) left alone"
        )
    typer.echo(
        f"{result.messages} messages replayed: {verb} {result.readings_stored} readings, "
        f"{result.still_refused} refusals remain" + "".join(f"; {n}" for n in notes)
    )


def register(app: typer.Typer) -> None:
    """Add `pilots quarantine` and its commands."""
    app.add_typer(quarantine_app, name="quarantine")

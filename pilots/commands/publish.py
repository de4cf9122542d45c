"""`pilots publish`: a pilot's period as a folder another city or an archive can take whole.

What the folder holds and how it is written are `pilots.publishing`'s (docs/PUBLISHING.md).
This module reads the options and maps what goes wrong to an exit code: 2 for a run refused
before anything is written (an unknown pilot, a bad period or licence, an `--out` in the way
or in the service's own files, a period over the API's bounds, an `--out` that appeared during
the run), 1 for a failure once running (the store, the folder's disk). A pilot not public in
the registry is published all the same (the operator decides), with a note on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import PilotsError
from pilots import publishing
from pilots.commands.common import fail, setup
from pilots.publishing import DEFAULT_LICENCE, RefusedError


def publish(
    *,
    pilot: Annotated[str, typer.Argument(help="pilot id, e.g. resistencia")],
    start: Annotated[
        str, typer.Option(help="first day (2026-11-01: local midnight) or an RFC 3339 instant")
    ],
    end: Annotated[
        str, typer.Option(help="end, exclusive (2026-12-01: up to that local midnight)")
    ],
    out: Annotated[
        Path,
        typer.Option(help="folder to write; must not exist or be empty, nor be the data dir"),
    ],
    licence: Annotated[
        str | None,
        typer.Option(help=f"SPDX licence id (default: the registry's, else {DEFAULT_LICENCE})"),
    ] = None,
    contributor: Annotated[
        list[str] | None, typer.Option(help="'Name' or 'Name <e-mail>'; repeatable")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="replace an earlier publish (a non-empty --out it wrote)")
    ] = False,
) -> None:
    """Write a pilot's period as a folder to publish: report page, data package and README.

    It opens offline and checks itself (frictionless validate; sha256sum): docs/PUBLISHING.md.
    """
    settings, registry = setup()
    out = out.expanduser()  # `--out=~/site` reaches here unexpanded by the shell
    try:
        period = publishing.check_period(
            registry,
            settings,
            pilot_id=pilot,
            span=(start, end),
            licence=licence,
            contributors=contributor or [],
        )
        publishing.check_out(out, force=force, kept=publishing.Kept.of(settings, registry))
    except RefusedError as exc:
        raise _refused(exc) from exc
    if period.pilot.public is None:  # allowed, the operator decides; but said, to be noticed
        typer.echo(
            f"note: pilot {pilot!r} is not public in the registry (`public` is not set); "
            "the folder publishes it all the same",
            err=True,
        )
    try:
        services = publishing.open_services(settings, registry)
    except PilotsError as exc:
        raise fail(exc) from exc
    try:
        rows = publishing.publish(services, period, out, force=force)
    except RefusedError as exc:
        raise _refused(exc) from exc
    except PilotsError as exc:
        raise fail(exc) from exc
    except OSError as exc:  # the folder's disk: full, read-only, not ours
        typer.echo(f"error: cannot write {out}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        services.close()
    typer.echo(
        f"wrote {out}: {rows['readings']} readings, {rows['daily']} daily rows, "
        f"{rows['devices']} devices, licence {period.licence}"
    )


def register(app: typer.Typer) -> None:
    """Add `pilots publish`."""
    app.command()(publish)


def _refused(exc: RefusedError) -> typer.Exit:
    """Say why the run is refused, before anything is read or written; the exit (code 2)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)

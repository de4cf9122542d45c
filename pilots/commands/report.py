"""`pilots report`: a pilot's report for a period written to a file; built by `api.services`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import PilotsError
from pilots.commands.common import fail, setup


def report(
    pilot: Annotated[str, typer.Option(help="pilot id, e.g. resistencia")],
    start: Annotated[
        str, typer.Option(help="first day (2026-11-01: local midnight) or an RFC 3339 instant")
    ],
    end: Annotated[
        str, typer.Option(help="end, exclusive (2026-12-01: up to that local midnight)")
    ],
    out: Annotated[
        Path, typer.Option(help="file to write: .html for the shareable page, .json for data")
    ] = Path("report.html"),
) -> None:
    """Write a pilot's report for a period: one self-contained HTML page, or its JSON."""
    from api.services.report import build_report
    from core.store import open_store
    from core.timeutil import parse_local_instant_ns

    settings, registry = setup()
    found = registry.pilots.get(pilot)
    if found is None:
        typer.echo(f"error: unknown pilot {pilot!r}; known: {', '.join(registry.pilots)}", err=True)
        raise typer.Exit(2)
    try:
        start_ns = parse_local_instant_ns(start, found.tz)
        end_ns = parse_local_instant_ns(end, found.tz)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if start_ns >= end_ns:
        typer.echo("error: start must be before end", err=True)
        raise typer.Exit(2)
    try:
        store = open_store(settings, registry)
        store.start()
        try:
            built = build_report(registry, store, found, start_ns, end_ns)
        finally:
            store.close()
    except PilotsError as exc:
        raise fail(exc) from exc
    if out.suffix.lower() == ".json":
        out.write_text(built.report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    else:
        out.write_text(built.html, encoding="utf-8")
    readings = sum(s.count for s in built.report.sensors)
    typer.echo(f"wrote {out} ({readings} readings, {len(built.report.devices)} devices)")


def register(app: typer.Typer) -> None:
    """Add `pilots report`."""
    app.command()(report)

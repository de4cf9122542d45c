"""The `pilots` command: one entry point for every service and tool."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer

from core.errors import PilotsError
from core.registry import Registry, load_registry
from core.settings import Settings, load_settings
from core.timeutil import ns_to_datetime
from pilots.tokens import tokens_app

app = typer.Typer(
    help="Pilot Telemetry: MQTT ingest, InfluxDB storage, aggregation and API for the UTN "
    "IoT pilots. Configure with PILOTS_* environment variables (see pilots.env.example).",
    no_args_is_help=True,
    add_completion=False,
)
quarantine_app = typer.Typer(help="What ingest refused, and why.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(tokens_app, name="tokens")

log = logging.getLogger("pilots")


def _setup() -> tuple[Settings, Registry]:
    try:
        settings = load_settings()
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        )
        return settings, load_registry(settings.registry)
    except PilotsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _fail(exc: PilotsError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _stop_on_signal() -> threading.Event:
    """An event that SIGINT or SIGTERM sets (instead of interrupting the program)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def demo() -> None:
    """Run everything in one process: broker, simulated fleets, ingest, store and API.

    Uses an in-process MQTT broker and the embedded store unless PILOTS_MQTT_URL and
    PILOTS_INFLUX_URL name real ones. Serves http://127.0.0.1:8000; Ctrl-C stops it.
    """
    from pilots.demo import run_demo

    settings, registry = _setup()
    try:
        run_demo(settings, registry)
    except PilotsError as exc:
        raise _fail(exc) from exc


@app.command()
def ingest() -> None:
    """Subscribe to the broker, spool and acknowledge, write to the store; SIGTERM stops it.

    Serves Prometheus metrics and a health check on PILOTS_INGEST_HTTP_HOST:PORT.
    """
    from core.store import describe_store
    from ingest.service import IngestService

    settings, registry = _setup()
    stop = _stop_on_signal()
    try:
        log.info("store: %s", describe_store(settings))
        service = IngestService(settings, registry)
        service.start()
        while not stop.wait(1):
            pass
        service.stop()
    except PilotsError as exc:
        raise _fail(exc) from exc


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address [PILOTS_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [PILOTS_API_PORT]")] = None,
    workers: Annotated[
        int | None, typer.Option(help="processes serving the port [PILOTS_API_WORKERS]")
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) over the configured store; SIGTERM stops it."""
    import uvicorn

    from api.app import app_from_environment

    settings, _ = _setup()
    if workers is None and settings.api_workers == 1:
        try:
            app = app_from_environment()  # built here, so that a bad store URL fails now
        except PilotsError as exc:
            raise _fail(exc) from exc
        # uvicorn re-raises the signal that stopped it once it has shut down (closing the
        # store); a handler of ours turns that into a clean exit.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        uvicorn.run(
            app,
            host=host or settings.api_host,
            port=port if port is not None else settings.api_port,
            log_level=settings.log_level.lower(),
        )
        return
    uvicorn.run(
        "api.app:app_from_environment",
        factory=True,
        workers=workers or settings.api_workers,
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        log_level=settings.log_level.lower(),
    )


@app.command()
def simulate(
    backfill_hours: Annotated[
        float | None,
        typer.Option(
            "--backfill",
            metavar="HOURS",
            help="publish the last HOURS of history with historical timestamps, as fast as "
            "the broker takes it, then exit (add --follow to go on in real time)",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="after --backfill, keep publishing in real time")
    ] = False,
    pilot: Annotated[
        list[str] | None,
        typer.Option(help="simulate only this pilot (repeatable); default: all"),
    ] = None,
    seed: Annotated[int, typer.Option(help="noise seed; the same seed gives the same values")] = 0,
) -> None:
    """Publish the pilots' simulated fleets in the device contract (real time by default)."""
    from simulators.fleet import Fleet
    from simulators.publisher import Publisher, PublishError, backfill, run_realtime

    settings, registry = _setup()
    try:
        fleet = Fleet(registry, pilots=pilot or (), seed=seed)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    publisher = Publisher(settings.mqtt())
    # SIGTERM interrupts connecting and backfilling the way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        publisher.connect()
        start = time.time_ns()
        if backfill_hours:
            sent = backfill(publisher, fleet, backfill_hours, now_ns=start)
            typer.echo(f"published {sent} messages ({backfill_hours} h of history)")
        if backfill_hours is None or follow:
            stop = _stop_on_signal()
            log.info("publishing %d devices in real time; Ctrl-C stops", len(fleet.devices))
            run_realtime(publisher, fleet, stop, start_ns=start)
    except KeyboardInterrupt:
        log.info("interrupted; %d messages were published", publisher.sent)
    except PublishError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        publisher.close()


@app.command()
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

    settings, registry = _setup()
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
        raise _fail(exc) from exc
    if out.suffix.lower() == ".json":
        out.write_text(built.report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    else:
        out.write_text(built.html, encoding="utf-8")
    readings = sum(s.count for s in built.report.sensors)
    typer.echo(f"wrote {out} ({readings} readings, {len(built.report.devices)} devices)")


@quarantine_app.command("list")
def quarantine_list(
    limit: Annotated[int, typer.Option(help="show at most this many entries")] = 20,
    reason: Annotated[str | None, typer.Option(help="only entries of this reason")] = None,
) -> None:
    """Counts by reason, then the newest entries with their payloads."""
    from ingest.quarantine import Quarantine

    settings, _ = _setup()
    quarantine = Quarantine.in_data_dir(settings.data_dir)
    counts = quarantine.counts()
    if not counts:
        typer.echo("quarantine is empty")
        return
    for name, count in counts.items():
        typer.echo(f"{name:>20}  {count}")
    typer.echo("")
    for entry in quarantine.entries(limit=limit, reason=reason):
        when = ns_to_datetime(entry.received_ns, UTC).isoformat(timespec="seconds")
        typer.echo(f"#{entry.id} {when} {entry.topic} [{entry.reason}] {entry.detail}")
        typer.echo(f"    {entry.payload[:200]!r}")
    quarantine.close()


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
    from ingest.quarantine import Quarantine
    from ingest.replay import replay

    settings, registry = _setup()
    quarantine = Quarantine.in_data_dir(settings.data_dir)
    try:
        store = open_store(settings, registry)
        store.start()
        result = replay(
            settings, registry, store, quarantine, reason=reason, ids=entry, dry_run=dry_run
        )
        store.close()
    except PilotsError as exc:
        raise _fail(exc) from exc
    finally:
        quarantine.close()
    verb = "would store" if dry_run else "stored"
    typer.echo(
        f"{result.messages} messages replayed: {verb} {result.readings_stored} readings, "
        f"{result.still_refused} refusals remain"
        + (
            f"; {result.skipped} entries refused by the store itself left alone"
            if result.skipped
            else ""
        )
    )


def main() -> None:
    """Entry point for `python -m pilots`."""
    sys.exit(app())

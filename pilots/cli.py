"""The `pilots` command: one entry point for every service and tool."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from datetime import UTC
from typing import Annotated

import typer

from core.errors import PilotsError, StoreUnavailableError
from core.registry import Registry, load_registry
from core.settings import Settings, load_settings
from core.timeutil import ns_to_datetime

app = typer.Typer(
    help="Pilot Telemetry: MQTT ingest, InfluxDB storage, aggregation and API for the UTN "
    "IoT pilots. Configure with PILOTS_* environment variables (see pilots.env.example).",
    no_args_is_help=True,
    add_completion=False,
)
quarantine_app = typer.Typer(help="What ingest refused, and why.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

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
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) over the configured store."""
    import uvicorn

    from api.app import create_app
    from core.store import describe_store, open_store

    settings, registry = _setup()
    try:
        store = open_store(settings, registry)
        store.start()
    except StoreUnavailableError as exc:
        # Serve anyway: /health reports the store as unavailable until it answers.
        log.warning("store unreachable at start-up: %s", exc)
    except PilotsError as exc:
        raise _fail(exc) from exc
    log.info("store: %s", describe_store(settings))
    # uvicorn re-raises the signal that stopped it; a handler of ours lets us close the store.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        create_app(settings, registry, store),
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        log_level=settings.log_level.lower(),
    )
    store.close()


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

"""The `pilots` command: one entry point for every service and tool."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import PilotsError
from core.registry import Registry, load_registry
from core.settings import Settings, load_settings
from core.timeutil import NS_PER_S
from pilots.devices import devices_app
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
app.add_typer(devices_app, name="devices")

if TYPE_CHECKING:
    from simulators.fleet import Fleet

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


class SimulateMode(StrEnum):
    """How simulated time runs."""

    REALTIME = "realtime"
    FAST_FORWARD = "fast-forward"
    BACKFILL = "backfill"
    LOAD = "load"


def _simulate_help() -> str:
    from simulators.faults import FAULT_HELP, Faults
    from simulators.formats import DEFAULT_MIX

    realistic = Faults.realistic().as_dict()
    faults = "\n\n".join(
        f"  {name} (realistic {realistic[name]:g}): {text}" for name, text in FAULT_HELP.items()
    )
    mix = ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items())
    text = f"""Publish the pilots' simulated fleets over MQTT, faults included.

Modes (--mode):

  realtime (default): each device reports when it is due, on the wall clock, until stopped.

  fast-forward: simulated time starts at --start (default 24 h ago) and runs --speed times
  faster than the wall clock; once it reaches now it goes on in real time (or stops at --end).

  backfill: publish --start to --end (default: the last --backfill HOURS, 24) with historical
  timestamps, as fast as the broker takes it, with a progress bar; --follow goes on in real time.

  load: --devices N copies of the registry's devices (10 to 100,000) reporting so that the fleet
  sends --rate messages/s for --duration seconds; writes the load registry ingest needs
  (--load-registry) and prints the rate achieved. Without faults (its default) the fleet is
  generated in whole batches of devices; with faults, device by device, which is far slower.

Faults (--faults realistic|none, realistic by default except in load mode; then --fault
NAME=RATE to change one):

{faults}

Formats (--formats, weights; default {mix}): plain JSON, SenML, ChirpStack v4 and The Things
Stack v3 uplinks, each on its own topic. LoRaWAN formats go to devices with a dev_eui only.

--truth FILE writes what the run sent and every fault it injected (JSON), for comparison with
what ingest stored and the reports found. One --seed reproduces a run exactly.
"""
    # one line per paragraph: the help formatter wraps them to the terminal
    return "\n\n".join(" ".join(part.split()) for part in text.split("\n\n"))


@app.command(help=_simulate_help())
def simulate(  # noqa: PLR0917
    mode: Annotated[
        SimulateMode | None, typer.Option(help="realtime, fast-forward, backfill or load")
    ] = None,
    backfill_hours: Annotated[
        float | None,
        typer.Option(
            "--backfill",
            metavar="HOURS",
            help="backfill mode over the last HOURS (when --start is not given)",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="simulated start: RFC 3339 instant or a UTC date")
    ] = None,
    end: Annotated[str | None, typer.Option(help="simulated end (exclusive); default now")] = None,
    follow: Annotated[
        bool, typer.Option(help="after a backfill, keep publishing in real time")
    ] = False,
    speed: Annotated[
        float, typer.Option(min=1.0, help="fast-forward: simulated seconds per wall second")
    ] = 60.0,
    devices: Annotated[int, typer.Option(help="load: fleet size (10 to 100,000)")] = 1000,
    rate: Annotated[float, typer.Option(help="load: target messages per second")] = 100.0,
    duration: Annotated[float, typer.Option(help="load: seconds to run")] = 60.0,
    load_registry_path: Annotated[
        Path,
        typer.Option("--load-registry", help="load: where to write the load fleet's registry"),
    ] = Path("load-registry.toml"),
    pilot: Annotated[
        list[str] | None,
        typer.Option(help="simulate only this pilot (repeatable); default: all"),
    ] = None,
    seed: Annotated[int, typer.Option(help="the same seed gives the same run, byte for byte")] = 0,
    faults: Annotated[
        str | None,
        typer.Option(help="fault profile: realistic or none [realistic; none in load mode]"),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="change one fault's rate, NAME=RATE (repeatable), e.g. dropout=0.1"),
    ] = None,
    formats: Annotated[
        str | None, typer.Option(help="payload format weights, e.g. plain=1,senml=1")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="write the run's ground truth (JSON) to this file")
    ] = None,
) -> None:
    """Publish the pilots' simulated fleets (the help text above says how)."""
    from core.timeutil import parse_instant_ns
    from simulators.publisher import Publisher, PublishError, backfill, run_clock, run_load

    settings, registry = _setup()
    chosen = mode or (
        SimulateMode.BACKFILL if backfill_hours is not None else SimulateMode.REALTIME
    )
    now = time.time_ns()
    try:
        start_ns = parse_instant_ns(start) if start else None
        end_ns = parse_instant_ns(end) if end else None
        fleet = _simulated_fleet(
            registry,
            load=(devices, rate, load_registry_path) if chosen is SimulateMode.LOAD else None,
            pilots=pilot or [],
            seed=seed,
            profile=faults or ("none" if chosen is SimulateMode.LOAD else "realistic"),
            faults=fault or [],
            formats=formats,
            truth=truth is not None,
        )
        _check_simulated_times(chosen, start_ns, end_ns, now)
    except (ValueError, PilotsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    publisher = Publisher(settings.mqtt())
    # SIGTERM interrupts connecting the way Ctrl-C does; once connected, either signal lets
    # the batch in hand go out (and into the ground truth) and stops.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        publisher.connect()
        stop = _stop_on_signal()
        if chosen is SimulateMode.BACKFILL:
            hi = end_ns or now
            lo = start_ns or hi - int((backfill_hours or 24.0) * 3600 * NS_PER_S)
            sent = backfill(publisher, fleet, lo, hi, progress=True, stop=stop)
            hours = (hi - lo) / 3600 / NS_PER_S
            typer.echo(f"published {sent:,} messages ({hours:g} h of history)")
            if follow and not stop.is_set():
                run_clock(publisher, fleet, stop, start_ns=hi)
        elif chosen is SimulateMode.LOAD:
            # whole-second intervals: the fleet's own rate may differ from the one asked
            nominal = len(fleet.devices) / fleet.devices[0].interval_s
            result = run_load(publisher, fleet, stop, target_per_s=nominal, duration_s=duration)
            typer.echo(
                f"load: {result.devices:,} devices, {result.sent:,} messages in "
                f"{result.seconds:.1f} s: {result.rate_per_s:,.0f} messages/s "
                f"(the fleet's rate {nominal:,.0f}; asked {rate:,.0f})"
            )
        else:
            fast = chosen is SimulateMode.FAST_FORWARD
            if fast and start_ns is None:
                start_ns = now - 24 * 3600 * NS_PER_S
            log.info("publishing %d devices (%s); Ctrl-C stops", len(fleet.devices), chosen.value)
            run_clock(
                publisher,
                fleet,
                stop,
                start_ns=start_ns,
                speed=speed if fast else 1.0,
                end_ns=end_ns,
            )
    except KeyboardInterrupt:
        log.info("interrupted; %d messages were published", publisher.sent)
    except PublishError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        publisher.close()
        if fleet.truth is not None and truth is not None:
            fleet.truth.write(truth, fleet.instant_of)
            typer.echo(f"ground truth: {truth}")


#: How far ahead of the wall clock ingest takes a reading (PILOTS_INGEST_MAX_FUTURE_S default).
_FUTURE_LIMIT_NS = 600 * NS_PER_S


def _check_simulated_times(
    mode: SimulateMode, start_ns: int | None, end_ns: int | None, now_ns: int
) -> None:
    """Refuse a simulated period that would publish the future (ingest refuses it)."""
    if start_ns is not None and end_ns is not None and start_ns >= end_ns:
        raise ValueError("--start must be before --end")
    if mode is SimulateMode.BACKFILL and end_ns is not None and end_ns > now_ns + _FUTURE_LIMIT_NS:
        raise ValueError("--end is in the future: a backfill publishes the past only")
    live = mode in (SimulateMode.REALTIME, SimulateMode.FAST_FORWARD)
    if live and start_ns is not None and start_ns > now_ns:
        raise ValueError("--start is in the future: simulated time never runs ahead of now")


def _simulated_fleet(
    registry: Registry,
    *,
    load: tuple[int, float, Path] | None,
    pilots: list[str],
    seed: int,
    profile: str,
    faults: list[str],
    formats: str | None,
    truth: bool,
) -> Fleet:
    """The fleet `pilots simulate` asked for; ValueError or PilotsError for a bad option."""
    from simulators.faults import Faults
    from simulators.fleet import Fleet
    from simulators.formats import DEFAULT_MIX, parse_mix
    from simulators.truth import GroundTruth

    if profile not in {"realistic", "none"}:
        raise ValueError(f"--faults {profile!r}: realistic or none")
    rates = (Faults.realistic() if profile == "realistic" else Faults()).with_specs(faults)
    mix = parse_mix(formats) if formats else DEFAULT_MIX
    only = None
    if load is not None:
        from simulators.load import load_registry

        devices, rate, path = load
        registry, copies = load_registry(registry, devices, rate, path)
        only = set(copies)
        typer.echo(f"load fleet: {devices} devices; start ingest with PILOTS_REGISTRY={path}")
    fleet = Fleet(
        registry,
        pilots=pilots,
        seed=seed,
        faults=rates,
        formats=mix,
        truth=GroundTruth(seed, rates.as_dict()) if truth else None,
        devices=only,
    )
    if not fleet.devices:
        raise ValueError("no device to simulate (check --pilot and the registry)")
    return fleet


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
    source: Annotated[str | None, typer.Option(help="only entries of this device id")] = None,
) -> None:
    """Refusals per reason over every ingest worker, those no longer kept, the newest entries."""
    from api.services.quarantine import listing
    from core.store import open_store

    settings, registry = _setup()
    try:
        store = open_store(settings, registry)
        try:
            found = listing(store, reason=reason, source=source, limit=limit)
        finally:
            store.close()
    except PilotsError as exc:
        raise _fail(exc) from exc
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

    settings, registry = _setup()
    try:
        store = open_store(settings, registry)
        try:
            store.start()
            result = replay(settings, registry, store, reason=reason, ids=entry, dry_run=dry_run)
        finally:
            store.close()
    except PilotsError as exc:
        raise _fail(exc) from exc
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


def main() -> None:
    """Entry point for `python -m pilots`."""
    sys.exit(app())

"""`pilots simulate`: the simulated fleets published over MQTT, one function per mode.

The options are read and checked here (a bad one exits with 2 before anything connects); the
fleets, faults and publishing are `simulators`'. The period checks only refuse what ingest would
refuse: this module never decides what ingest accepts.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import PilotsError
from core.registry import Registry
from core.settings import Settings
from core.timeutil import NS_PER_S
from pilots.commands.common import setup, stop_on_signal

if TYPE_CHECKING:
    from simulators.fleet import Fleet
    from simulators.publisher import Publisher
    from simulators.script import Scenario

log = logging.getLogger(__name__)

#: How far ahead of the wall clock ingest takes a reading. The default, not this process's
#: setting: the simulator does not know the configuration of the ingest it feeds.
_FUTURE_LIMIT_NS = int(Settings.model_fields["ingest_max_future_s"].default) * NS_PER_S


class SimulateMode(StrEnum):
    """How simulated time runs."""

    REALTIME = "realtime"
    FAST_FORWARD = "fast-forward"
    BACKFILL = "backfill"
    LOAD = "load"


@dataclass(frozen=True, slots=True)
class _Run:
    """One run's mode, period and the options its mode reads."""

    mode: SimulateMode
    now_ns: int
    start_ns: int | None
    end_ns: int | None
    backfill_hours: float | None
    follow: bool
    speed: float
    rate: float
    duration: float


def _simulate_help() -> str:
    from simulators.faults import FAULT_HELP, Faults
    from simulators.formats import DEFAULT_MIX
    from simulators.storm import SCENARIOS

    realistic = Faults.realistic().as_dict()
    faults = "\n\n".join(
        f"  {name} (realistic {realistic[name]:g}): {text}" for name, text in FAULT_HELP.items()
    )
    mix = ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items())
    scenarios = "\n\n".join(
        f"  {kind.name} (default --pilot {', '.join(kind.default_pilots)}): {kind.summary}"
        for kind in SCENARIOS.values()
    )
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

Scenarios (--scenario NAME): a scripted episode on the --pilot chosen, for testing alerts.
With a scenario the defaults change: backfill mode, over the scenario's span ending now (from
--start when given; realtime starts it now), --faults none for the rest of the fleet (the
scenario's scripted devices never have random faults), --pilot the scenario's own.

{scenarios}

--truth FILE writes what the run sent and every fault it injected (JSON), for comparison with
what ingest stored and the reports found; with a scenario, also what must alarm (its
`scenario` section). One --seed reproduces a run exactly.
"""
    # one line per paragraph: the help formatter wraps them to the terminal
    return "\n\n".join(" ".join(part.split()) for part in text.split("\n\n"))


def simulate(
    *,
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
        typer.Option(
            help="simulate only this pilot (repeatable); default: all (with --scenario: "
            "where it plays, default its own)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="the same seed gives the same run, byte for byte")] = 0,
    faults: Annotated[
        str | None,
        typer.Option(
            help="fault profile: realistic or none [realistic; none in load mode and with "
            "--scenario]"
        ),
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
    scenario: Annotated[
        str | None,
        typer.Option(help="play a scripted scenario on --pilot: storm (see above)"),
    ] = None,
) -> None:
    """Publish the pilots' simulated fleets (the help text above says how)."""
    from core.timeutil import parse_instant_ns

    settings, registry = setup()
    past = backfill_hours is not None or scenario is not None
    chosen = mode or (SimulateMode.BACKFILL if past else SimulateMode.REALTIME)
    now = time.time_ns()
    try:
        start_ns = parse_instant_ns(start) if start else None
        end_ns = parse_instant_ns(end) if end else None
        story = None
        if scenario is not None:
            story, start_ns, end_ns = _scenario(
                registry,
                scenario,
                chosen,
                pilots=pilot or [],
                period=(start_ns, end_ns, backfill_hours),
                now_ns=now,
            )
        quiet = chosen is SimulateMode.LOAD or story is not None
        fleet = _simulated_fleet(
            registry,
            load=(devices, rate, load_registry_path) if chosen is SimulateMode.LOAD else None,
            pilots=list(story.pilots) if story is not None else pilot or [],
            seed=seed,
            profile=faults or ("none" if quiet else "realistic"),
            faults=fault or [],
            formats=formats,
            truth=truth is not None,
            scenario=story,
        )
        _check_simulated_times(chosen, start_ns, end_ns, now)
    except (ValueError, PilotsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run = _Run(
        mode=chosen,
        now_ns=now,
        start_ns=start_ns,
        end_ns=end_ns,
        backfill_hours=backfill_hours,
        follow=follow,
        speed=speed,
        rate=rate,
        duration=duration,
    )
    if story is not None:
        _describe(story)
    _publish(settings, fleet, run, truth)


def _scenario(
    registry: Registry,
    name: str,
    mode: SimulateMode,
    *,
    pilots: list[str],
    period: tuple[int | None, int | None, float | None],
    now_ns: int,
) -> tuple[Scenario, int, int]:
    """The scenario asked for, and the run's period: (scenario, start, end).

    It starts at --start, else the last --backfill HOURS, else now in real time and its span
    before now otherwise; the run ends at --end, else when the scenario does.
    """
    from core.timeutil import MINUTE_NS
    from simulators.storm import SCENARIOS

    kind = SCENARIOS.get(name)
    if kind is None:
        raise ValueError(f"--scenario {name!r}: one of {', '.join(SCENARIOS)}")
    if mode is SimulateMode.LOAD:
        raise ValueError("--scenario plays in realtime, fast-forward or backfill, not load")
    start_ns, end_ns, backfill_hours = period
    if start_ns is None:
        if backfill_hours is not None:
            start_ns = now_ns - int(backfill_hours * 3600 * NS_PER_S)
        elif mode is SimulateMode.REALTIME:
            start_ns = now_ns
        else:
            start_ns = (now_ns - kind.span_ns) // MINUTE_NS * MINUTE_NS
    if end_ns is None:
        end_ns = start_ns + kind.span_ns
        if mode is SimulateMode.BACKFILL and end_ns > now_ns + _FUTURE_LIMIT_NS:
            hours = kind.span_ns / 3600 / NS_PER_S
            raise ValueError(
                f"the {name} scenario lasts {hours:g} h from its start: a backfill must start it "
                f"at least {hours:g} h ago (or give --end, or play it in fast-forward)"
            )
    return kind.build(registry, pilots or list(kind.default_pilots), start_ns), start_ns, end_ns


def _describe(story: Scenario) -> None:
    """One line per pilot: where the scenario's events are and when."""
    for pilot, about in story.about.items():
        parts = []
        for key, value in about.items():
            if key not in {"sensor", "rain_gauges", "scripted_devices"}:
                shown = value
                if isinstance(value, list):
                    shown = " to ".join(map(str, value))
                elif isinstance(value, dict):
                    shown = ", ".join(f"{k} {v}" for k, v in value.items())
                parts.append(f"{key.replace('_', ' ')} {shown}")
        typer.echo(f"{story.name} at {pilot}: {'; '.join(parts)}")


def _publish(settings: Settings, fleet: Fleet, run: _Run, truth: Path | None) -> None:
    """Connect, run the mode until it ends or a signal stops it, then write the ground truth."""
    from simulators.publisher import Publisher, PublishError

    publisher = Publisher(settings.mqtt())
    # SIGTERM interrupts connecting the way Ctrl-C does; once connected, either signal lets
    # the batch in hand go out (and into the ground truth) and stops.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        publisher.connect()
        _MODES[run.mode](publisher, fleet, stop_on_signal(), run)
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


def _backfill(publisher: Publisher, fleet: Fleet, stop: threading.Event, run: _Run) -> None:
    """Publish the period with historical timestamps; with --follow, go on in real time."""
    from simulators.publisher import backfill, run_clock

    hi = run.end_ns or run.now_ns
    lo = run.start_ns or hi - int((run.backfill_hours or 24.0) * 3600 * NS_PER_S)
    sent = backfill(publisher, fleet, lo, hi, progress=True, stop=stop)
    hours = (hi - lo) / 3600 / NS_PER_S
    typer.echo(f"published {sent:,} messages ({hours:g} h of history)")
    if run.follow and not stop.is_set():
        run_clock(publisher, fleet, stop, start_ns=hi)


def _load(publisher: Publisher, fleet: Fleet, stop: threading.Event, run: _Run) -> None:
    """Publish the load fleet at its rate for --duration seconds and say what it achieved."""
    from simulators.publisher import run_load

    # whole-second intervals: the fleet's own rate may differ from the one asked
    nominal = len(fleet.devices) / fleet.devices[0].interval_s
    result = run_load(publisher, fleet, stop, target_per_s=nominal, duration_s=run.duration)
    typer.echo(
        f"load: {result.devices:,} devices, {result.sent:,} messages in "
        f"{result.seconds:.1f} s: {result.rate_per_s:,.0f} messages/s "
        f"(the fleet's rate {nominal:,.0f}; asked {run.rate:,.0f})"
    )


def _clock(publisher: Publisher, fleet: Fleet, stop: threading.Event, run: _Run) -> None:
    """Realtime and fast-forward: simulated time runs on the clock (--speed times faster)."""
    from simulators.publisher import run_clock

    fast = run.mode is SimulateMode.FAST_FORWARD
    start_ns = run.start_ns
    if fast and start_ns is None:
        start_ns = run.now_ns - 24 * 3600 * NS_PER_S
    log.info("publishing %d devices (%s); Ctrl-C stops", len(fleet.devices), run.mode.value)
    run_clock(
        publisher,
        fleet,
        stop,
        start_ns=start_ns,
        speed=run.speed if fast else 1.0,
        end_ns=run.end_ns,
    )


_MODES: dict[SimulateMode, Callable[[Publisher, Fleet, threading.Event, _Run], None]] = {
    SimulateMode.REALTIME: _clock,
    SimulateMode.FAST_FORWARD: _clock,
    SimulateMode.BACKFILL: _backfill,
    SimulateMode.LOAD: _load,
}


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
    scenario: Scenario | None = None,
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
        scenario=scenario,
    )
    if not fleet.devices:
        raise ValueError("no device to simulate (check --pilot and the registry)")
    return fleet


def register(app: typer.Typer) -> None:
    """Add `pilots simulate`, with its help text built from the simulators' faults and formats."""
    app.command(help=_simulate_help())(simulate)

"""The storm scenario: what it publishes is what its ground truth says must alarm.

Every check reads the published messages back the way ingest does (its router, decoders and
validation, `ingest.process`), never the simulator's own bookkeeping, and compares them with
the truth's `scenario` section: the river over its alert and evacuation levels at the truth's
times, the hover on both sides of the alert level, the silent gauge, the held window delivered
in one burst after it ends, and its episode marked late.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from core.registry import Registry
from core.settings import Settings
from core.thresholds import episodes
from core.timeutil import HOUR_NS, NS_PER_S, parse_instant_ns
from ingest.decoders import Router
from ingest.process import process
from ingest.validate import Validator
from pilots.cli import app
from simulators.faults import Faults
from simulators.fleet import Fleet, Message
from simulators.formats import DEFAULT_MIX, LORAWAN, topic
from simulators.storm import SPAN_NS, storm
from simulators.truth import GroundTruth, level_episodes
from tests.services import free_port

from .helpers import shipped_registry

START = "2024-11-20T00:00:00-03:00"
START_NS = parse_instant_ns(START)
SEED = 5
PILOTS = ["santa-fe", "resistencia"]
#: The report's rule for a gap, and the alert system's for a silent device: 3 intervals.
GAP_INTERVALS = 3


@dataclass(frozen=True)
class Reading:
    """One accepted reading as a consumer sees it, with when its message was published."""

    device: str
    sensor: str
    ts_ns: int
    value: float
    published_ns: int


@dataclass(frozen=True)
class Played:
    """A storm as published, read back, and its ground truth file."""

    messages: tuple[Message, ...]
    readings: tuple[Reading, ...]
    truth: dict[str, Any]
    fleet: Fleet

    @property
    def scenario(self) -> dict[str, Any]:
        section: dict[str, Any] = self.truth["scenario"]
        return section

    def series(self, device: str, sensor: str = "level") -> tuple[list[int], list[float]]:
        """A device's readings of a sensor by device time (first publication of each)."""
        seen: dict[int, float] = {}
        for r in self.readings:
            if r.device == device and r.sensor == sensor:
                seen.setdefault(r.ts_ns, r.value)
        times = sorted(seen)
        return times, [seen[t] for t in times]


def _read_back(messages: list[Message], registry: Registry) -> list[Reading]:
    """What ingest's own routing, decoding and validation accept from each message."""
    settings = Settings(_env_file=None)
    router = Router(settings.ingest_routes)
    validator = Validator(registry, max_future_s=600, max_age_days=3650)
    out = []
    for m in messages:
        checked = process(
            router,
            validator,
            m.topic,
            m.payload,
            m.ts_ns,
            max_payload_bytes=settings.ingest_max_payload_bytes,
        )
        assert checked.rejections == [], (m, checked.rejections)
        for t, d, s, v in zip(
            checked.ts_ns, checked.device, checked.sensor, checked.value, strict=True
        ):
            out.append(
                Reading(registry.device_list[d].id, registry.sensor_list[s].id, t, v, m.ts_ns)
            )
    return out


def _play(pilot: str, seed: int = SEED, batch_ns: int = HOUR_NS) -> Played:
    registry = shipped_registry()
    truth = GroundTruth(seed, Faults().as_dict())
    fleet = Fleet(
        registry,
        pilots=[pilot],
        seed=seed,
        formats=DEFAULT_MIX,
        truth=truth,
        scenario=storm(registry, [pilot], START_NS),
    )
    messages: list[Message] = []
    for lo in range(START_NS, START_NS + SPAN_NS, batch_ns):
        messages += fleet.messages(lo, min(lo + batch_ns, START_NS + SPAN_NS))
    doc = orjson.loads(orjson.dumps(truth.as_dict(fleet.instant_of)))
    return Played(tuple(messages), tuple(_read_back(messages, registry)), doc, fleet)


@cache
def _played(pilot: str) -> Played:
    return _play(pilot)


def _ns(text: str) -> int:
    return parse_instant_ns(text)


def _levels(pilot: str) -> dict[str, float]:
    pilot_ = shipped_registry().pilots[pilot]
    return {t.name: t.value for t in pilot_.thresholds if t.sensor == "level"}


def _episodes_of(played: Played, device: str, level_name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in played.scenario["threshold_episodes"]
        if e["device"] == device and e["level_name"] == level_name
    ]


@pytest.mark.parametrize("pilot", PILOTS)
def test_the_flood_gauge_crosses_alert_then_evacuation_at_the_truths_times(pilot: str) -> None:
    played = _played(pilot)
    about = played.scenario["pilots"][pilot]
    assert about["levels"] == _levels(pilot)
    alert, evacuation = about["levels"]["alert"], about["levels"]["evacuation"]
    assert (alert, evacuation) == {"santa-fe": (5.3, 5.7), "resistencia": (6.0, 6.5)}[pilot]
    gauge = about["flood_gauge"]
    times, values = played.series(gauge)
    at = dict(zip(times, values, strict=True))

    [evac] = _episodes_of(played, gauge, "evacuation")
    start, end = _ns(evac["start"]), _ns(evac["end"])
    # below the evacuation level until the truth's start, at or above it until its end
    assert all(v < evacuation for t, v in at.items() if t < start)
    assert all(v >= evacuation for t, v in at.items() if start <= t < end)
    assert at[end] < evacuation
    assert evac["peak"] == max(values) >= evacuation + 0.2
    assert not evac["late"] and evac["start_published"] == evac["start"]
    # above it for hours, at the registered interval
    assert end - start >= 6 * HOUR_NS
    assert np.diff(times).max() == np.diff(times).min() == 600 * NS_PER_S

    alerts = _episodes_of(played, gauge, "alert")
    assert _ns(alerts[0]["start"]) < start
    assert all(v < alert for t, v in at.items() if t < _ns(alerts[0]["start"]))
    [main] = [e for e in alerts if _ns(e["start"]) <= start and _ns(e["end"]) >= end]
    assert all(v >= alert for t, v in at.items() if _ns(main["start"]) <= t < _ns(main["end"]))
    # and it recedes below both levels before the storm is over
    assert at[_ns(main["end"])] < alert
    assert _ns(main["end"]) < START_NS + 26 * HOUR_NS
    # a realistic hydrograph: never more than 5 cm in 10 minutes (30 cm an hour)
    assert np.abs(np.diff(values)).max() <= 0.05


@pytest.mark.parametrize("pilot", PILOTS)
def test_the_hover_reads_on_both_sides_of_the_alert_level(pilot: str) -> None:
    played = _played(pilot)
    [hover] = played.scenario["hovers"]
    alert = hover["level"]
    lo, hi = _ns(hover["from"]), _ns(hover["until"])
    times, values = played.series(hover["device"])
    inside = [v for t, v in zip(times, values, strict=True) if lo <= t < hi]
    assert len(inside) == hover["readings"] == 12
    assert sum(v >= alert for v in inside) == hover["at_or_above"] >= 3
    assert sum(v < alert for v in inside) == hover["below"] >= 3
    assert (min(inside), max(inside)) == (hover["lowest"], hover["highest"])
    assert all(abs(v - alert) <= 0.035 for v in inside)
    # without hysteresis the hover raises and clears the alert several times before the rise;
    # a hysteresis deeper than the hover's lowest reading makes it one alarm
    raw = _episodes_of(played, hover["device"], "alert")
    assert sum(_ns(e["start"]) < hi for e in raw) >= 2
    ts, value = np.asarray(times, np.int64), np.asarray(values)
    held = level_episodes(ts, value, ts, alert, clear_below=hover["lowest"] - 0.001)
    first = [e for e in held if e.start_ns < hi]
    assert len(first) == 1
    main = max(raw, key=lambda e: _ns(e["end"]) - _ns(e["start"]))
    assert first[0].start_ns == _ns(raw[0]["start"])
    assert first[0].end_ns is not None and first[0].end_ns >= _ns(main["end"])  # one alarm


@pytest.mark.parametrize("pilot", PILOTS)
def test_the_silent_device_publishes_nothing_in_its_silence(pilot: str) -> None:
    played = _played(pilot)
    [silence] = played.scenario["silences"]
    device = silence["device"]
    assert device == played.scenario["pilots"][pilot]["silent_device"]
    lo, hi = _ns(silence["from"]), _ns(silence["until"])
    assert hi - lo == 90 * 60 * NS_PER_S
    reports = sorted({(r.ts_ns, r.published_ns) for r in played.readings if r.device == device})
    assert reports, "the silent device reports before and after its silence"
    assert not [t for t, p in reports if lo <= t < hi or lo <= p < hi]
    before = max(t for t, _ in reports if t < lo)
    after = min(t for t, _ in reports if t >= hi)
    assert _ns(silence["last_before"]) == before and _ns(silence["first_after"]) == after
    interval = silence["interval_s"]
    assert interval == shipped_registry().devices[device].interval_s
    assert silence["silent_s"] == (after - before) / NS_PER_S > GAP_INTERVALS * interval
    assert silence["missed_reports"] == 9 and silence["messages_in_window"] == 0
    # the storm's rain reached its gauges: the silent one missed its heaviest part
    rain = [r.value for r in played.readings if r.sensor == "rain" and r.ts_ns >= START_NS]
    assert sum(rain) > 20 * len(played.scenario["pilots"][pilot]["rain_gauges"])


@pytest.mark.parametrize("pilot", PILOTS)
def test_the_backlog_arrives_in_one_burst_after_its_window_and_its_episode_is_late(
    pilot: str,
) -> None:
    played = _played(pilot)
    [backlog] = played.scenario["backlogs"]
    device = backlog["device"]
    assert device == played.scenario["pilots"][pilot]["held_device"]
    assert played.truth["devices"][device]["format"] not in LORAWAN
    lo, hi = _ns(backlog["from"]), _ns(backlog["until"])
    assert hi - lo == 6 * HOUR_NS
    reports = sorted({(r.ts_ns, r.published_ns) for r in played.readings if r.device == device})
    held = [(t, p) for t, p in reports if lo <= t < hi]
    assert len(held) == backlog["reports"] == 36 and backlog["published_in_window"] == 0
    burst = [p for _, p in held]
    # every held report goes out after the window, in one burst, oldest first
    assert min(burst) == _ns(backlog["delivered_first"]) == _ns(backlog["delivery"]) > hi
    assert max(burst) == _ns(backlog["delivered_last"]) < min(burst) + 60 * NS_PER_S
    assert burst == sorted(burst)
    assert all(p == t for t, p in reports if not lo <= t < hi)  # the rest on time
    # ... after everything the rest of the fleet published in the window
    held_device = shipped_registry().devices[device]
    held_topic = topic(played.fleet.format_of(held_device), held_device)
    order = [m.ts_ns >= min(burst) for m in played.messages if m.ts_ns >= lo]
    assert order == sorted(order) and not all(order)
    assert not [m for m in played.messages if lo <= m.ts_ns < hi and m.topic == held_topic]

    [late] = [e for e in played.scenario["threshold_episodes"] if e["late"]]
    assert late["device"] == device and late["level_name"] == "alert"
    assert lo <= _ns(late["start"]) < _ns(late["end"]) < hi
    assert _ns(late["start_published"]) > _ns(late["end"])
    assert late["peak"] > late["level"]
    times, values = played.series(device)
    inside = [v for t, v in zip(times, values, strict=True) if lo <= t < hi]
    assert max(inside) == late["peak"] and inside[0] < late["level"] > inside[-1]


def _consumer_episodes(played: Played, pilot: str) -> list[dict[str, Any]]:
    """Episodes past each level, by the report's rule, lateness from the publication times."""
    registry = shipped_registry()
    published: dict[tuple[str, int], int] = {}
    by_device: dict[str, list[Reading]] = defaultdict(list)
    for r in played.readings:
        if r.sensor == "level":
            by_device[r.device].append(r)
            key = (r.device, r.ts_ns)
            published[key] = min(published.get(key, r.published_ns), r.published_ns)
    out = []
    for device, readings in sorted(by_device.items()):
        ts = np.asarray([r.ts_ns for r in readings], np.int64)
        value = np.asarray([r.value for r in readings])
        rows = np.zeros(len(ts), np.int32)
        for threshold in registry.pilots[pilot].thresholds:
            found = episodes(ts, value, rows, level=threshold.value, n_devices=1)
            for i in range(len(found)):
                start, end = int(found.start_ns[i]), int(found.end_ns[i])
                pubs = [published[device, int(t)] for t in ts if start <= t <= end]
                out.append(
                    {
                        "device": device,
                        "level_name": threshold.name,
                        "start": start,
                        "end": None if found.open[i] else end,
                        "peak": float(found.peak[i]),
                        "late": not found.open[i] and min(pubs) > end,
                    }
                )
    return sorted(out, key=lambda e: (e["start"], e["device"], e["level_name"]))


@pytest.mark.parametrize("pilot", PILOTS)
def test_the_truth_is_what_a_consumer_computes_from_the_messages(pilot: str) -> None:
    played = _played(pilot)
    expected = sorted(
        (
            {
                "device": e["device"],
                "level_name": e["level_name"],
                "start": _ns(e["start"]),
                "end": None if e["end"] is None else _ns(e["end"]),
                "peak": e["peak"],
                "late": e["late"],
            }
            for e in played.scenario["threshold_episodes"]
        ),
        key=lambda e: (e["start"], e["device"], e["level_name"]),
    )
    assert _consumer_episodes(played, pilot) == expected
    # the delivery counts too: the silence and the burst are in the run's own truth
    faults = {e["fault"]: e for e in played.truth["episodes"]}
    assert faults["silence"]["reports"] == played.scenario["silences"][0]["missed_reports"]
    assert faults["backlog"]["reports"] == played.scenario["backlogs"][0]["reports"]
    sent = sum(d["messages"].get("sent", 0) for d in played.truth["devices"].values())
    assert sent == len(played.messages)


def test_the_same_seed_plays_the_same_storm_whatever_the_batches() -> None:
    played = _played("santa-fe")
    again = _play("santa-fe", batch_ns=7 * HOUR_NS + 13 * NS_PER_S)
    assert again.messages == played.messages
    assert again.scenario == played.scenario
    other = _play("santa-fe", seed=SEED + 1)
    assert other.messages != played.messages
    # another seed moves the noise and the phases, not what must alarm
    for seeded in (played, other):
        kinds = [
            (e["device"], e["level_name"], e["late"]) for e in seeded.scenario["threshold_episodes"]
        ]
        assert kinds.count(("sf-rlv-01", "evacuation", False)) == 1
        assert [k for k in kinds if k[2]] == [("sf-rlv-02", "alert", True)]


def test_the_rest_of_the_fleet_plays_as_it_would_without_the_storm() -> None:
    registry = shipped_registry()
    faults = Faults.realistic()
    scenario = storm(registry, ["santa-fe"], START_NS)
    window = (START_NS, START_NS + 12 * HOUR_NS)
    plain = Fleet(registry, seed=SEED, faults=faults, formats=DEFAULT_MIX)
    stormy = Fleet(registry, seed=SEED, faults=faults, formats=DEFAULT_MIX, scenario=scenario)
    scripted = {
        topic(fleet.format_of(d), d)
        for fleet in (plain, stormy)
        for d in fleet.devices
        if d.id in scenario.scripts
    }
    assert len(scenario.scripts) == 5  # Santa Fe's river and rain gauges
    unscripted = [m for m in plain.messages(*window) if m.topic not in scripted]
    assert unscripted == [m for m in stormy.messages(*window) if m.topic not in scripted]
    # the scripted devices play without faults: every due report but the silence arrives once
    [silent] = [d for d in registry.pilots["santa-fe"].devices if d.id == "sf-rg-01"]
    sent = [
        m for m in stormy.messages(*window) if m.topic == topic(stormy.format_of(silent), silent)
    ]
    assert len(sent) == 12 * 6 - 9


# -- the command ---------------------------------------------------------------------------

runner = CliRunner()


class Recorder:
    """Stands in for the MQTT publisher of `pilots simulate`: keeps what it is given."""

    published: ClassVar[list[Message]] = []

    def __init__(self, target: object, *, client_id: str | None = None) -> None:
        self.sent = 0

    def connect(self, timeout_s: float = 30.0) -> None:
        Recorder.published = []

    def publish(self, messages: list[Message], timeout_s: float = 120.0) -> int:
        Recorder.published.extend(messages)
        self.sent += len(messages)
        return len(messages)

    def close(self) -> None:
        pass


def test_pilots_simulate_plays_the_storm_and_writes_its_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTS_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    monkeypatch.setattr("simulators.publisher.Publisher", Recorder)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = runner.invoke(
            app,
            [
                "simulate",
                "--scenario=storm",
                f"--start={START}",
                f"--seed={SEED}",
                f"--truth={tmp_path / 'truth.json'}",
            ],
            terminal_width=200,
        )
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 0, result.output
    assert "storm at santa-fe: levels" in result.output
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    played = _played("santa-fe")
    # the command is the library: backfill of the storm's 40 h, no faults, the default mix
    assert truth["scenario"] == played.scenario
    assert Recorder.published == list(played.messages)
    assert (truth["start"], truth["end"]) == (played.scenario["start"], played.scenario["end"])
    published = [m.ts_ns for m in Recorder.published]
    assert published == sorted(published)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--scenario", "hurricane"], "one of storm"),
        (["--scenario", "storm", "--pilot", "san-nicolas"], "choose one of santa-fe"),
        (["--scenario", "storm", "--backfill", "12"], "lasts 40 h"),
        (["--scenario", "storm", "--mode", "load"], "not load"),
    ],
)
def test_pilots_simulate_refuses_a_storm_it_cannot_play(
    args: list[str], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTS_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    result = runner.invoke(app, ["simulate", *args], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert problem in " ".join(result.output.split())

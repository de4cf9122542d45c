"""Simulated faults: reproducible, at their configured rates, and exactly as the ground truth says.

Rates are measured on the published messages themselves (compared with the same fleet without
faults), never read back from the simulator's own bookkeeping; the ground truth is then checked
against what ingest's own decoders and validation make of the messages.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.registry import Registry
from core.settings import Settings
from core.timeutil import NS_PER_S, parse_instant_ns
from ingest.decoders import Router
from ingest.dedupe import FrameCache
from ingest.process import process
from ingest.validate import Checked, Validator
from simulators.faults import Faults
from simulators.fleet import Fleet, Message
from simulators.formats import DEFAULT_MIX, FORMATS, topic
from simulators.load import load_registry
from simulators.truth import GroundTruth
from simulators.values import SCALE

from .helpers import shipped_registry

HOUR_NS = 3600 * NS_PER_S
START_NS = parse_instant_ns("2024-11-15T00:00:00-03:00")
DAYS = 8
END_NS = START_NS + DAYS * 24 * HOUR_NS


@cache
def _clean() -> tuple[Message, ...]:
    return tuple(Fleet(shipped_registry(), seed=4).messages(START_NS, END_NS))


def _faulty(**rates: float) -> list[Message]:
    return Fleet(shipped_registry(), seed=4, faults=Faults(**rates)).messages(START_NS, END_NS)


def _by_report(
    messages: list[Message] | tuple[Message, ...],
) -> dict[tuple[str, int], dict[str, Any]]:
    """Plain JSON messages by (device, device time in ms); the last copy wins."""
    out = {}
    for m in messages:
        doc = orjson.loads(m.payload)
        out[m.topic.split("/")[2], doc["ts"]] = doc
    return out


def _readings(docs: dict[tuple[str, int], dict[str, Any]]) -> dict[tuple[str, int, str], float]:
    return {(d, ts, s): v for (d, ts), doc in docs.items() for s, v in doc["readings"].items()}


def _ingest(
    messages: list[Message], registry: Registry, frames: FrameCache | None = None
) -> list[Checked]:
    """What ingest's own decoding and validation (`ingest.process`) make of each message."""
    router = Router(Settings().ingest_routes)
    validator = Validator(registry, max_future_s=600, max_age_days=3650, frames=frames)
    limit = Settings().ingest_max_payload_bytes
    return [
        process(router, validator, m.topic, m.payload, m.ts_ns, max_payload_bytes=limit)
        for m in messages
    ]


def _near(observed: float, rate: float, rel: float) -> bool:
    return abs(observed - rate) <= rel * rate


def test_same_seed_same_stream_with_faults_and_formats_whatever_the_batches() -> None:
    reg = shipped_registry()
    faults = Faults.realistic()
    one = Fleet(reg, seed=9, faults=faults, formats=DEFAULT_MIX).messages(START_NS, END_NS)
    cut = Fleet(reg, seed=9, faults=faults, formats=DEFAULT_MIX)
    parts: list[Message] = []
    for lo in range(START_NS, END_NS, 5 * HOUR_NS):
        parts += cut.messages(lo, min(lo + 5 * HOUR_NS, END_NS))
    assert parts == one
    other = Fleet(reg, seed=10, faults=faults, formats=DEFAULT_MIX).messages(START_NS, END_NS)
    assert other != one


def test_dropouts_come_in_bursts_at_their_rate() -> None:
    clean = _by_report(_clean())
    kept = _by_report(_faulty(dropout=0.1))
    assert set(kept) <= set(clean)
    lost = set(clean) - set(kept)
    assert _near(len(lost) / len(clean), 0.1, 0.2)
    # bursty: a lost report's next report is lost far more often than 10 % of the time
    reg = shipped_registry()
    follows = [
        (d, ts + reg.devices[d].interval_s * 1000) in lost
        for d, ts in lost
        if (d, ts + reg.devices[d].interval_s * 1000) in clean
    ]
    assert sum(follows) / len(follows) > 0.5


def test_duplicates_repeat_the_message_seconds_later() -> None:
    messages = _faulty(duplicate=0.05)
    seen: dict[bytes, int] = {}
    repeats = []
    for m in messages:
        if m.payload in seen:
            repeats.append((m.ts_ns - seen[m.payload]) / NS_PER_S)
        seen.setdefault(m.payload, m.ts_ns)
    assert _near(len(repeats) / len(seen), 0.05, 0.2)
    assert all(2 <= r <= 30 for r in repeats)


def test_malformed_payloads_do_not_parse() -> None:
    messages = _faulty(malformed=0.03)
    broken = 0
    for m in messages:
        try:
            orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            broken += 1
    assert _near(broken / len(messages), 0.03, 0.25)


def test_backlogs_arrive_hours_late_with_their_own_times() -> None:
    messages = _faulty(backlog=0.05)
    late = [
        (m.ts_ns - orjson.loads(m.payload)["ts"] * 1_000_000) / NS_PER_S
        for m in messages
        if m.ts_ns != orjson.loads(m.payload)["ts"] * 1_000_000
    ]
    assert _near(len(late) / len(messages), 0.05, 0.35)
    # delivered 1-6 h after the outage ends, a second apart, oldest first; an outage lasts
    # at most 60 reports (15 h for a 15-minute device)
    assert min(late) >= 3600 - 60 and max(late) <= 6 * 3600 + 60 * 900
    # nothing is lost: every clean report arrives, some of them late (at a window's end a
    # backlog may still be on its way)
    assert len(set(_by_report(messages))) >= len(_by_report(_clean())) - 300


def test_out_of_range_readings_leave_the_registry_range() -> None:
    reg = shipped_registry()
    readings = _readings(_by_report(_faulty(out_of_range=0.02)))
    outside = sum(
        not reg.sensors[s].min <= v <= reg.sensors[s].max for (_, _, s), v in readings.items()
    )
    assert _near(outside / len(readings), 0.02, 0.2)


@pytest.mark.parametrize(
    ("fault", "rate", "tolerance"),
    # drift episodes last a day: eight days hold few of them, so their share varies more
    [("spike", 0.02, 0.2), ("stuck", 0.05, 0.3), ("drift", 0.05, 0.5)],
)
def test_value_faults_change_readings_at_their_rate(
    fault: str, rate: float, tolerance: float
) -> None:
    clean = _readings(_by_report(_clean()))
    faulty = _readings(_by_report(_faulty(**{fault: rate})))
    assert set(faulty) == set(clean)
    measured = [k for k in clean if k[2] not in {"rain", "rain_tips"}]
    changed = [k for k in measured if faulty[k] != clean[k]]
    # a stuck sensor still reads true at its episode's first report, a drift starts at 0,
    # and a value pinned at its range's edge may not move: a little under the rate
    assert _near(len(changed) / len(measured), rate, tolerance)
    if fault == "spike":
        sensors = shipped_registry().sensors
        assert all(
            abs(faulty[k] - clean[k]) >= 3 * SCALE[k[2]]
            or faulty[k] in {sensors[k[2]].min, sensors[k[2]].max}
            for k in changed
        )


@cache
def _wide_registry(tmp: str) -> Registry:
    reg, _ = load_registry(shipped_registry(), 1000, 10, Path(tmp) / "load.toml")
    return reg


def test_clock_skew_shifts_a_share_of_devices_by_seconds_to_minutes(tmp_path: Path) -> None:
    reg = _wide_registry(str(tmp_path))
    fleet = Fleet(reg, seed=2, faults=Faults(clock_skew=0.2))
    skews = []
    for device in fleet.devices:
        [m] = fleet.device_messages(device, START_NS, START_NS + device.interval_s * NS_PER_S)
        skews.append(orjson.loads(m.payload)["ts"] / 1000 - m.ts_ns / NS_PER_S)
    off = [s for s in skews if s]
    assert _near(len(off) / len(skews), 0.2, 0.2)
    assert all(5 <= abs(s) <= 300 for s in off)
    assert any(s < 0 for s in off) and any(s > 0 for s in off)


def test_counter_resets_restart_the_frame_counter() -> None:
    by_device: dict[str, list[int]] = {}
    for m in _faulty(counter_reset=0.01):
        by_device.setdefault(m.topic.split("/")[2], []).append(orjson.loads(m.payload)["seq"])
    pairs = [(a, b) for seqs in by_device.values() for a, b in pairwise(seqs)]
    restarts = sum(b == 0 for _, b in pairs)
    assert _near(restarts / len(pairs), 0.01, 0.3)
    # otherwise the counter goes up by one: a reboot is the only way down, and it goes to 0
    assert all(b in {0, a + 1} for a, b in pairs)


def test_every_format_is_published_on_its_topic_and_ingest_reads_it() -> None:
    reg = shipped_registry()
    fleet = Fleet(reg, seed=1, formats={f: 1.0 for f in FORMATS})
    assert set(map(fleet.format_of, fleet.devices)) == set(FORMATS)
    format_of_topic = {topic(fleet.format_of(d), d): fleet.format_of(d) for d in fleet.devices}
    stored: Counter[str] = Counter()
    messages = fleet.messages(START_NS, START_NS + 6 * HOUR_NS)
    for m, checked in zip(messages, _ingest(messages, reg), strict=True):
        assert checked.rejections == [], m
        stored[format_of_topic[m.topic]] += checked.readings
    assert all(stored[f] > 0 for f in FORMATS), stored


def test_ground_truth_matches_what_ingest_makes_of_the_run() -> None:
    """Readings stored = sent - refused; quarantine reasons = the faults that cause them."""
    reg = shipped_registry()
    faults = Faults.realistic().with_specs(["malformed=0.01", "out_of_range=0.005"])
    truth = GroundTruth(seed=6, faults=faults.as_dict())
    fleet = Fleet(reg, seed=6, faults=faults, formats=DEFAULT_MIX, truth=truth)
    messages: list[Message] = []
    for lo in range(START_NS, START_NS + 3 * 24 * HOUR_NS, 6 * HOUR_NS):
        messages += fleet.messages(lo, lo + 6 * HOUR_NS)
    points: set[tuple[int, int, int]] = set()
    reasons: Counter[str] = Counter()
    for checked in _ingest(messages, reg, frames=FrameCache(3600 * NS_PER_S)):
        reasons.update(r.reason.value for r in checked.rejections)
        points.update(zip(checked.device, checked.sensor, checked.ts_ns, strict=True))
    doc = orjson.loads(orjson.dumps(truth.as_dict(fleet.instant_of)))
    assert dict(reasons) == doc["expected_quarantine"]
    assert doc["expected_quarantine"]["malformed_json"] > 0
    assert doc["expected_quarantine"]["out_of_range"] > 0
    per_series = Counter((d, s) for d, s, _ in points)
    for device_id, about in doc["devices"].items():
        for sensor, counts in about["sensors"].items():
            key = (reg.devices[device_id].code, reg.sensors[sensor].code)
            assert per_series[key] == counts["expected_stored"], (device_id, sensor)
    assert {e["fault"] for e in doc["episodes"]} >= {"dropout", "stuck", "drift", "backlog"}


def test_a_load_fleet_is_sized_for_its_rate_and_batched_like_single_devices(
    tmp_path: Path,
) -> None:
    reg, copies = load_registry(shipped_registry(), 500, 100, tmp_path / "load.toml")
    assert len(copies) == len(set(copies)) == 500
    assert {reg.devices[c].interval_s for c in copies} == {5}
    fleet = Fleet(reg, seed=3, formats=DEFAULT_MIX, devices=set(copies))
    window = (START_NS, START_NS + 60 * NS_PER_S)
    batched = fleet.messages(*window)
    # 500 devices every 5 s: 100 messages a second
    assert len(batched) == 6000
    one_by_one = sorted(
        (m for d in fleet.devices for m in fleet.device_messages(d, *window)),
        key=lambda m: (m.ts_ns, m.topic),
    )
    assert [(m.ts_ns, m.topic) for m in sorted(batched, key=lambda m: (m.ts_ns, m.topic))] == [
        (m.ts_ns, m.topic) for m in one_by_one
    ]
    assert sorted(m.payload for m in batched) == sorted(m.payload for m in one_by_one)
    # and ingest, given the load registry, takes every reading of them
    assert all(checked.rejections == [] for checked in _ingest(batched[:500], reg))


def test_the_ground_truth_counts_what_the_messages_show() -> None:
    """Dropped, duplicated, late and sent, per device, read off the messages.

    (Malformed messages are left out here: a message cut in half no longer says its time.)
    """
    reg = shipped_registry()
    faults = Faults(dropout=0.08, duplicate=0.04, backlog=0.04)
    truth = GroundTruth(seed=12, faults=faults.as_dict())
    fleet = Fleet(reg, seed=12, faults=faults, truth=truth)
    messages: list[Message] = []
    for lo in range(START_NS, END_NS, 6 * HOUR_NS):
        messages += fleet.messages(lo, lo + 6 * HOUR_NS)
    doc = orjson.loads(orjson.dumps(truth.as_dict(fleet.instant_of)))
    seen: dict[tuple[str, bytes], int] = {}
    observed: dict[str, Counter[str]] = {d: Counter() for d in reg.devices}
    for m in messages:
        device = m.topic.split("/")[2]
        again = (device, m.payload) in seen
        seen.setdefault((device, m.payload), m.ts_ns)
        counts = observed[device]
        counts["duplicates" if again else "sent"] += 1
        stated = orjson.loads(m.payload)["ts"] * 1_000_000
        if not again and m.ts_ns - stated >= 3600 * NS_PER_S - 600 * NS_PER_S:
            counts["late"] += 1
    assert all(sum(c[what] for c in observed.values()) > 0 for what in ("duplicates", "late"))
    for device, about in doc["devices"].items():
        truth_counts = about["messages"]
        for what in ("sent", "duplicates", "late"):
            assert observed[device][what] == truth_counts.get(what, 0), (device, what)
        # every due report is sent, dropped, or still held by a gateway at the end
        held = sum(
            e["reports"]
            for e in doc["episodes"]
            if e["device"] == device and e["fault"] == "backlog" and e["delivered"] >= doc["end"]
        )
        late_from_before = sum(  # backlogs of reports due before the run, delivered in it
            1
            for m in messages
            if m.topic.split("/")[2] == device
            and orjson.loads(m.payload)["ts"] * 1_000_000 < START_NS
        )
        assert truth_counts["due"] == (
            truth_counts["sent"] - late_from_before + truth_counts.get("dropped", 0) + held
        ), device

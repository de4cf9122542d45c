"""The simulated fleet: deterministic, on schedule, valid under the device contract, plausible."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from functools import cache
from itertools import pairwise
from statistics import mean
from zoneinfo import ZoneInfo

import orjson
import pytest

from core.timeutil import NS_PER_S, parse_instant_ns
from ingest.decoders.plain import decode
from ingest.validate import Validator
from simulators.fleet import Fleet, Message

from .helpers import shipped_registry

HOUR_NS = 3600 * NS_PER_S
START_NS = parse_instant_ns("2024-11-15T00:00:00-03:00")  # local midnight, late spring
SIX_HOURS_NS = 6 * HOUR_NS
LOCAL = ZoneInfo("America/Argentina/Cordoba")


@cache
def _two_days(seed: int = 3) -> tuple[Message, ...]:
    return tuple(Fleet(shipped_registry(), seed=seed).messages(START_NS, START_NS + 48 * HOUR_NS))


def _by_device(messages: list[Message] | tuple[Message, ...]) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        out[m.topic.split("/")[2]].append(m)
    return out


def _local_hour(ts_ms: int) -> int:
    return datetime.fromtimestamp(ts_ms / 1000, LOCAL).hour


def test_same_seed_same_messages() -> None:
    reg = shipped_registry()
    a = Fleet(reg, seed=11).messages(START_NS, START_NS + SIX_HOURS_NS)
    b = Fleet(reg, seed=11).messages(START_NS, START_NS + SIX_HOURS_NS)
    assert a == b
    assert len(a) > 0


def test_different_seed_different_values() -> None:
    reg = shipped_registry()
    a = _by_device(Fleet(reg, seed=1).messages(START_NS, START_NS + SIX_HOURS_NS))
    b = _by_device(Fleet(reg, seed=2).messages(START_NS, START_NS + SIX_HOURS_NS))
    assert set(a) == set(b) == set(reg.devices)
    for device_id in reg.devices:
        # a dry rain gauge reads 0 whatever the seed; its battery's noise still differs
        values_a = [orjson.loads(m.payload) for m in a[device_id]]
        values_b = [orjson.loads(m.payload) for m in b[device_id]]
        assert values_a != values_b, device_id


def test_a_run_cut_into_batches_sends_the_same_as_one_run() -> None:
    reg = shipped_registry()
    whole = Fleet(reg, seed=5).messages(START_NS, START_NS + SIX_HOURS_NS)
    cut = Fleet(reg, seed=5)
    parts = cut.messages(START_NS, START_NS + 2 * HOUR_NS) + cut.messages(
        START_NS + 2 * HOUR_NS, START_NS + SIX_HOURS_NS
    )
    assert parts == whole


def test_each_device_reports_at_its_interval() -> None:
    reg = shipped_registry()
    messages = Fleet(reg, seed=0).messages(START_NS, START_NS + SIX_HOURS_NS)
    assert [m.ts_ns for m in messages] == sorted(m.ts_ns for m in messages)
    by_device = _by_device(messages)
    assert set(by_device) == set(reg.devices)
    for device_id, sent in by_device.items():
        interval_s = reg.devices[device_id].interval_s
        expected = 6 * 3600 // interval_s
        assert abs(len(sent) - expected) <= 1, device_id
        assert all(START_NS <= m.ts_ns < START_NS + SIX_HOURS_NS for m in sent)
        gaps = {b.ts_ns - a.ts_ns for a, b in pairwise(sent)}
        assert gaps == {interval_s * NS_PER_S}, device_id
        counters = [orjson.loads(m.payload)["seq"] for m in sent]
        assert counters == list(range(counters[0], counters[0] + len(sent))), device_id
    # devices do not all speak on the same second
    assert len({by_device[d][0].ts_ns % (300 * NS_PER_S) for d in by_device}) > 1


def test_topics_follow_the_device_contract() -> None:
    reg = shipped_registry()
    for m in Fleet(reg, seed=0).messages(START_NS, START_NS + HOUR_NS):
        prefix, pilot, device, suffix = m.topic.split("/")
        assert (prefix, suffix) == ("pilots", "up")
        assert reg.devices[device].pilot == pilot
        assert orjson.loads(m.payload)["ts"] * 1_000_000 == m.ts_ns


def test_choosing_pilots() -> None:
    reg = shipped_registry()
    fleet = Fleet(reg, pilots=["santa-fe"])
    assert {d.pilot for d in fleet.devices} == {"santa-fe"}
    topics = {m.topic for m in fleet.messages(START_NS, START_NS + HOUR_NS)}
    assert all(t.startswith("pilots/santa-fe/") for t in topics)
    with pytest.raises(ValueError, match="atlantis"):
        Fleet(reg, pilots=["atlantis"])


def test_every_message_decodes_and_validates_without_rejections() -> None:
    reg = shipped_registry()
    validator = Validator(reg, max_future_s=600, max_age_days=3650)
    for m in _two_days():
        decoded = decode(m.topic, m.payload)
        assert decoded.rejections == [], (m.topic, m.payload)
        checked = validator.check(decoded.frames, m.ts_ns)
        assert checked.rejections == [], (m.topic, m.payload, checked.rejections)
        device = reg.devices[m.topic.split("/")[2]]
        reported = {reg.sensor_list[s].id for s in checked.sensor}
        assert reported == set(device.sensors), device.id  # every sensor, battery included
        # the frame counter is the payload's `seq`, kept with the uplink rather than as a reading
        assert checked.up_fcnt == [orjson.loads(m.payload)["seq"]], device.id
        assert checked.up_ts_ns == [m.ts_ns]
        assert checked.up_device == [device.code]


def _mean_by_local_hours(device_id: str, sensor: str, hours: range) -> float:
    values: list[float] = [
        document["readings"][sensor]
        for m in _by_device(_two_days())[device_id]
        if _local_hour((document := orjson.loads(m.payload))["ts"]) in hours
    ]
    assert len(values) >= 2 * len(hours)  # both days contribute
    return mean(values)


def test_afternoons_are_warmer_than_dawns() -> None:
    for device_id in ("sf-wx-01", "sn-wx-02", "rs-wx-01"):
        afternoon = _mean_by_local_hours(device_id, "temperature", range(13, 16))
        dawn = _mean_by_local_hours(device_id, "temperature", range(4, 7))
        assert afternoon > dawn + 3.0, device_id


def test_dissolved_oxygen_is_lowest_at_dawn() -> None:
    for device_id in ("rs-wq-01", "rs-wq-02", "rs-wq-03"):
        dawn = _mean_by_local_hours(device_id, "dissolved_oxygen", range(4, 7))
        afternoon = _mean_by_local_hours(device_id, "dissolved_oxygen", range(13, 16))
        assert dawn < afternoon, device_id

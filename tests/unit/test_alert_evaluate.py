"""The alert evaluator: alarms fire once at the right start, clear at the right end, late data
is marked late, and one batch, many batches and many batches through bytes agree exactly."""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.alerts import (
    AlertEvent,
    AlertState,
    AlertStateError,
    Evaluator,
    Rule,
    default_rules,
    parse_rules,
)
from core.alerts.days import LocalDays, day_bounds
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.timeutil import HOUR_NS, MINUTE_NS, NS_PER_S, datetime_to_ns, parse_instant_ns

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime_to_ns(datetime(2026, 11, 20, 12, tzinfo=UTC))
MIN = MINUTE_NS
NEVER_LATE = 10**9  # late_after_s: nothing is late
PROPS = settings(max_examples=150, deadline=None)

Summary = tuple[str, str, str, float, float | None, float, bool]


def at(minute: float) -> int:
    return T0 + round(minute * MIN)


def minutes(ns: int | None) -> float | None:
    return None if ns is None else (ns - T0) / MIN


def series(
    registry: Registry,
    device: str,
    sensor: str,
    minute: Sequence[float],
    value: Sequence[float],
) -> Readings:
    n = len(minute)
    return Readings.from_arrays(
        [at(m) for m in minute],
        [registry.devices[device].code] * n,
        [registry.sensors[sensor].code] * n,
        value,
    )


def every(step: float, n: int, start: float = 0) -> list[float]:
    return [start + step * i for i in range(n)]


def summary(events: Sequence[AlertEvent]) -> list[Summary]:
    """(type, rule, device, start, end, decided at, late), times in minutes after T0."""
    out: list[Summary] = []
    for e in events:
        start, decided = minutes(e.start_ns), minutes(e.at_ns)
        assert start is not None and decided is not None
        out.append((e.type, e.rule, e.device, start, minutes(e.end_ns), decided, e.late))
    return out


def rules_from(registry: Registry, *rules: dict[str, Any]) -> tuple[Rule, ...]:
    return parse_rules({"defaults": {"include": False}, "rules": list(rules)}, registry)


def defaults_named(registry: Registry, *ids: str) -> tuple[Rule, ...]:
    rules = {r.id: r for r in default_rules(registry)}
    return tuple(rules[i] for i in ids)


def run(
    evaluator: Evaluator,
    batches: Sequence[Readings],
    state: AlertState | None = None,
    now: Sequence[int] | None = None,
) -> tuple[list[AlertEvent], AlertState]:
    """Each batch received at its newest device time (or at `now`)."""
    state = state or AlertState.empty()
    events: list[AlertEvent] = []
    for i, batch in enumerate(batches):
        received = now[i] if now is not None else int(batch.ts_ns.max())
        new, state = evaluator.evaluate(batch, state, received)
        events += new
    return events, state


def one_by_one(batch: Readings) -> list[Readings]:
    order = np.argsort(batch.ts_ns, kind="stable")
    return [batch.take(order[i : i + 1]) for i in range(len(batch))]


# --- thresholds: start, end, pending, hysteresis ---------------------------------------------


def test_a_river_past_its_alert_level_fires_once_at_the_crossing_and_clears_when_back_down(
    registry: Registry,
) -> None:
    evaluator = Evaluator(
        defaults_named(registry, "santa-fe.level.alert", "santa-fe.level.evacuation"), registry
    )
    levels = [5.10, 5.20, 5.31, 5.40, 5.55, 5.45, 5.35, 5.20, 5.10, 5.10, 5.10, 5.0]
    events, state = run(evaluator, [series(registry, "sf-rlv-01", "level", every(10, 12), levels)])
    assert summary(events) == [
        ("fired", "santa-fe.level.alert", "sf-rlv-01", 20, None, 20, False),
        # back below 5.247 m (the 1 % band) at minute 70, and for 30 minutes by minute 100
        ("cleared", "santa-fe.level.alert", "sf-rlv-01", 20, 70, 100, False),
    ]
    fired, cleared = events
    assert (fired.value, fired.severity, fired.level, fired.label) == (
        5.31,
        "warning",
        5.30,
        "alert",
    )
    assert fired.pilot == "santa-fe"
    assert (cleared.value, cleared.peak) == (5.20, 5.55)
    assert fired.alarm_id == cleared.alarm_id
    assert fired.id != cleared.id
    assert state.active_alarms() == []


def test_pending_delays_the_alarm_but_its_start_is_the_first_reading_past_the_level(
    registry: Registry,
) -> None:
    rules = rules_from(
        registry,
        {"id": "slow", "kind": "threshold", "sensor": "level", "level": 5.3, "pending_s": 1200},
    )
    evaluator = Evaluator(rules, registry)
    crossing = series(registry, "sf-rlv-01", "level", every(10, 6), [5.2, 5.2, 5.4, 5.4, 5.4, 5.4])
    events, _ = run(evaluator, [crossing])
    assert summary(events) == [("fired", "slow", "sf-rlv-01", 20, None, 40, False)]
    assert events[0].value == 5.4
    # A pending run carried from batch to batch keeps its start.
    events, _ = run(evaluator, one_by_one(crossing))
    assert summary(events) == [("fired", "slow", "sf-rlv-01", 20, None, 40, False)]
    # Ten minutes past the level, then back: shorter than the pending time, no alarm.
    blip = series(registry, "sf-rlv-01", "level", every(10, 5), [5.2, 5.4, 5.4, 5.2, 5.2])
    assert run(evaluator, [blip])[0] == []


def test_a_river_hovering_at_its_level_raises_one_alarm_not_fifty(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    rng = np.random.default_rng(3)
    noisy = 5.30 + rng.uniform(-0.02, 0.02, 300)  # a 10-minute gauge for 50 hours
    down = np.full(6, 5.10)  # then clearly down for an hour
    level = np.concatenate((noisy, down))
    batch = series(registry, "sf-rlv-01", "level", every(10, len(level)), level.tolist())
    for batches in ([batch], one_by_one(batch)):
        events, _ = run(evaluator, batches)
        assert [e.type for e in events] == ["fired", "cleared"]
        first_past = int(np.flatnonzero(noisy >= 5.30)[0])
        assert minutes(events[0].start_ns) == 10 * first_past
        assert minutes(events[1].end_ns) == 3000  # the first reading of the way down


def test_a_dip_shorter_than_clear_s_does_not_clear(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "resistencia.level.alert"), registry)
    # above 6.00; 20 minutes below 5.94; back into the band; then down for good
    level = [6.1, 6.1, 5.9, 5.9, 5.96, 6.05, 5.8, 5.8, 5.8, 5.8, 5.8]
    events, _ = run(evaluator, [series(registry, "rs-rlv-01", "level", every(10, 11), level)])
    assert summary(events) == [
        ("fired", "resistencia.level.alert", "rs-rlv-01", 0, None, 0, False),
        ("cleared", "resistencia.level.alert", "rs-rlv-01", 0, 60, 90, False),
    ]
    assert events[1].peak == 6.1


def test_a_level_crossed_from_above_and_a_low_battery(registry: Registry) -> None:
    rules = rules_from(
        registry,
        {
            "id": "do-low",
            "kind": "threshold",
            "sensor": "dissolved_oxygen",
            "level": 3.0,
            "below": True,
            "clear_margin": 0.5,
            "clear_s": 0,
        },
        {"id": "battery", "kind": "battery_low", "pilot": "resistencia", "clear_s": 0},
    )
    evaluator = Evaluator(rules, registry)
    oxygen = series(registry, "rs-wq-02", "dissolved_oxygen", every(15, 5), [4, 3, 2.5, 3.2, 3.6])
    volts = series(registry, "rs-wq-02", "battery_v", every(15, 5), [3.6, 3.41, 3.4, 3.3, 3.45])
    events, _ = run(evaluator, [Readings.concat([oxygen, volts])])
    assert summary(events) == [
        ("fired", "do-low", "rs-wq-02", 15, None, 15, False),
        ("fired", "battery", "rs-wq-02", 30, None, 30, False),
        # 3.6 mg/L is past 3.5, 3.45 V past 3.434 V
        ("cleared", "do-low", "rs-wq-02", 15, 60, 60, False),
        ("cleared", "battery", "rs-wq-02", 30, 60, 60, False),
    ]
    assert (events[0].peak, events[2].peak, events[3].peak) == (3.0, 2.5, 3.3)


# --- windowed kinds --------------------------------------------------------------------------


def test_the_24_hour_mean_fires_when_it_passes_the_who_guideline(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "san-nicolas.pm25.mean-24h"), registry)
    # A 5-minute monitor: a day at 10 µg/m³, then 40. With 288 readings a day the mean first
    # exceeds 15 at the 49th reading of 40: (239 * 10 + 49 * 40) / 288 = 15.1.
    values = [10.0] * 288 + [40.0] * 60
    pm25 = series(registry, "sn-aq-04", "pm25", every(5, len(values)), values)
    for batches in ([pm25], one_by_one(pm25)):
        events, _ = run(evaluator, batches)
        assert summary(events) == [
            ("fired", "san-nicolas.pm25.mean-24h", "sn-aq-04", 5 * 336, None, 5 * 336, False)
        ]
        assert events[0].value == pytest.approx((239 * 10 + 49 * 40) / 288)
        assert events[0].level == 15.0


def test_a_24_hour_mean_needs_three_quarters_of_a_day_of_readings(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "san-nicolas.pm25.mean-24h"), registry)
    pm25 = series(registry, "sn-aq-01", "pm25", every(5, 300), [30.0] * 300)
    events, _ = run(evaluator, [pm25])
    # 216 readings (18 hours at 5 minutes) make 75 % of the 288 a day gives
    assert summary(events) == [
        ("fired", "san-nicolas.pm25.mean-24h", "sn-aq-01", 5 * 215, None, 5 * 215, False)
    ]


def test_a_river_rising_faster_than_5_cm_an_hour(registry: Registry) -> None:
    evaluator = Evaluator(
        defaults_named(registry, "resistencia.level.rise"), registry, late_after_s=NEVER_LATE
    )
    steady = [5.0] * 12
    rising = [5.0 + 0.2 * (i + 1) / 6 for i in range(24)]  # 20 cm an hour for 4 hours
    level = steady + rising + [rising[-1]] * 30
    events, _ = run(
        evaluator, [series(registry, "rs-rlv-01", "level", every(10, len(level)), level)]
    )
    assert [e.type for e in events] == ["fired", "cleared"]
    fired, cleared = events
    # The rise starts at minute 120. Over the readings of the last 3 hours (back to minute 0
    # while those exist) it first reaches 5 cm/h at minute 150: 13.3 cm in 2.5 hours.
    assert minutes(fired.start_ns) == 150
    assert fired.value == pytest.approx((rising[3] - 5.0) / 2.5)
    assert cleared.peak == pytest.approx(0.2)  # once the whole window is rising
    # Level at 5.80 m from minute 350: the 3-hour rise is back under 4.95 cm/h (the 1 % band)
    # once the window's first reading is above 5.6515 m (minute 310, 5.667 m): at minute 490;
    # 30 minutes later it clears.
    assert summary([cleared])[0][4:6] == (490, 520)
    flat_river = series(registry, "rs-rlv-01", "level", every(10, 40), [5.0] * 40)
    assert run(evaluator, [flat_river])[0] == []


def test_a_stuck_sensor_fires_from_the_first_repeated_reading_and_clears_when_it_moves(
    registry: Registry,
) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.temperature.flat"), registry)
    moving = [20.0 + 0.1 * i for i in range(10)]
    stuck = [21.5] * 18  # three hours of one value at a 10-minute interval
    moving_again = [22.0 + 0.1 * i for i in range(8)]
    values = moving + stuck + moving_again
    batch = series(registry, "sf-wx-01", "temperature", every(10, len(values)), values)
    for batches in ([batch], one_by_one(batch)):
        events, _ = run(evaluator, batches)
        # 13 equal readings span the 2 hours: the 13th (minute 220) decides, the 1st starts
        assert summary(events) == [
            ("fired", "santa-fe.temperature.flat", "sf-wx-01", 100, None, 220, False),
            ("cleared", "santa-fe.temperature.flat", "sf-wx-01", 100, 280, 310, False),
        ]
        assert events[0].severity == "info"


# --- the mean of the local calendar day ------------------------------------------------------

#: Local midnight of 2026-12-06 in San Nicolás (UTC-03:00 all year: no daylight saving).
DAY1 = parse_instant_ns("2026-12-06T00:00:00-03:00")
ARGENTINA = ZoneInfo("America/Argentina/Buenos_Aires")
DAY_RULE = {
    "id": "pm25.day",
    "kind": "mean_over_guideline",
    "pilot": "san-nicolas",
    "sensor": "pm25",
    "window": "day",
}


def local(ns: int | None, zone: tzinfo = ARGENTINA) -> str | None:
    """`2026-12-06 21:20`: an instant in a zone's local time."""
    return None if ns is None else f"{datetime.fromtimestamp(ns / NS_PER_S, zone):%Y-%m-%d %H:%M}"


def every_5_minutes(
    registry: Registry, device: str, values: Sequence[float], start_ns: int = DAY1
) -> Readings:
    n = len(values)
    return Readings.from_arrays(
        [start_ns + i * 5 * MIN for i in range(n)],
        [registry.devices[device].code] * n,
        [registry.sensors["pm25"].code] * n,
        values,
    )


def test_a_local_day_mean_fires_on_its_day_and_clears_on_a_later_covered_day(
    registry: Registry,
) -> None:
    evaluator = Evaluator(rules_from(registry, DAY_RULE), registry, late_after_s=NEVER_LATE)
    # A 5-minute monitor for two local days: 10 µg/m³ until 16:00 and 30 until midnight, then
    # 10 all the next day.
    values = [10.0] * 192 + [30.0] * 96 + [10.0] * 288
    pm25 = every_5_minutes(registry, "sn-aq-04", values)
    for batches in (
        [pm25],
        one_by_one(pm25),
        [pm25.take(slice(0, 300)), pm25.take(slice(300, None))],
    ):
        events, state = run(evaluator, batches)
        assert [(e.type, local(e.start_ns), local(e.end_ns), local(e.at_ns)) for e in events] == [
            # The day is known from its 216th reading (75 % of 288: 17:55), at 12.2 µg/m³; its
            # mean passes 15 at the 65th reading of 30 (21:20): (192 x 10 + 65 x 30) / 257.
            ("fired", "2026-12-06 21:20", None, "2026-12-06 21:20"),
            # Midnight starts the day over, not known until its own 216th reading (the one at
            # 00:00 is the new day's first): then 10 µg/m³, safe, and after 30 minutes cleared.
            ("cleared", "2026-12-06 21:20", "2026-12-07 17:55", "2026-12-07 18:25"),
        ]
        fired, cleared = events
        assert fired.value == pytest.approx((192 * 10 + 65 * 30) / 257)
        assert (fired.window, fired.level, fired.label) == ("day", 15.0, "WHO 24-hour guideline")
        assert cleared.value == cleared.latest == 10.0
        assert cleared.peak == pytest.approx((192 * 10 + 96 * 30) / 288)  # at 23:55
        assert state.active_alarms() == []
        # What the state keeps for the next reading: the readings since the day's midnight.
        assert state.window_ts_ns.tolist() == pm25.ts_ns[288:].tolist()
    # Before the new day is covered the alarm stays open: neither past nor safe.
    _, state = run(evaluator, [pm25.take(slice(0, 288 + 215))])
    assert [local(a.start_ns) for a in state.active_alarms()] == ["2026-12-06 21:20"]


def test_a_local_day_mean_needs_its_coverage_of_the_day(registry: Registry) -> None:
    evaluator = Evaluator(rules_from(registry, DAY_RULE), registry, late_after_s=NEVER_LATE)
    dirty = every_5_minutes(registry, "sn-aq-01", [40.0] * 288)
    # Off from 04:00 for 6 hours: 216 readings, 75 % of the day, reached at its last reading.
    six_hours = np.flatnonzero((np.arange(288) < 48) | (np.arange(288) >= 120))
    events, _ = run(evaluator, [dirty.take(six_hours)])
    assert [(e.type, local(e.start_ns)) for e in events] == [("fired", "2026-12-06 23:55")]
    # Off for 5 minutes more: never covered, never judged, and no alarm however high the
    # readings.
    assert run(evaluator, [dirty.take(six_hours[1:])])[0] == []
    # Nor a device reporting half as often as registered.
    assert run(evaluator, [dirty.take(np.arange(0, 288, 2))])[0] == []


def _zoned_registry(*pilots: tuple[str, str]) -> Registry:
    """Pilots (id, IANA zone), each with one 5-minute PM2.5 monitor `<id>-aq`."""
    shipped = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    raw: dict[str, Any] = {
        "sensors": shipped["sensors"],
        "kinds": shipped["kinds"],
        "pilots": {
            pilot: {
                "name": pilot,
                "timezone": zone,
                "devices": [
                    {"id": f"{pilot}-aq", "kind": "air_quality", "sensors": ["pm25"]},
                ],
            }
            for pilot, zone in pilots
        },
    }
    return build_registry(raw, Path("<zones>"))


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2026-03-29", 23), ("2026-10-25", 25), ("2026-06-15", 24)],
)
def test_a_local_day_of_a_clock_change_counts_its_real_length(day: str, hours: int) -> None:
    registry = _zoned_registry(("madrid", "Europe/Madrid"))
    madrid = ZoneInfo("Europe/Madrid")
    midnight = datetime_to_ns(datetime.fromisoformat(day).replace(tzinfo=madrid))
    next_midnight = midnight + hours * HOUR_NS
    # The local days of instants through that day and either side (zoneinfo's midnights).
    ts = midnight + np.arange(-30, hours * 12 + 30) * 5 * MIN
    start, end = day_bounds(ts, "Europe/Madrid")
    inside = (ts >= midnight) & (ts < next_midnight)
    assert (start[inside] == midnight).all() and (end[inside] == next_midnight).all()
    assert (end[ts < midnight] == midnight).all() and (
        start[ts >= next_midnight] == next_midnight
    ).all()
    # Known from 75 % of the readings the day's real length gives at 5 minutes.
    rule = {**DAY_RULE, "pilot": "madrid"}
    evaluator = Evaluator(rules_from(registry, rule), registry)
    pm25 = every_5_minutes(registry, "madrid-aq", [20.0] * (hours * 12), start_ns=midnight)
    events, _ = run(evaluator, [pm25])
    least = math.ceil(0.75 * hours * 12)  # 207, 225 or 216 readings
    assert [e.start_ns for e in events] == [midnight + (least - 1) * 5 * MIN]


def test_a_rule_over_several_pilots_takes_each_devices_own_local_day() -> None:
    registry = _zoned_registry(("south", "America/Argentina/Buenos_Aires"), ("east", "Asia/Tokyo"))
    rules = rules_from(registry, {k: v for k, v in DAY_RULE.items() if k != "pilot"})
    evaluator = Evaluator(rules, registry)
    # The same instants for both: from 2026-12-06 00:00 UTC, 20 µg/m³ every 5 minutes for 2 days.
    start = datetime_to_ns(datetime(2026, 12, 6, tzinfo=UTC))
    both = Readings.concat(
        [
            every_5_minutes(registry, f"{p}-aq", [20.0] * 576, start_ns=start)
            for p in ("south", "east")
        ]
    )
    events, _ = run(evaluator, [both])
    # Each fires at the 216th reading after its first local midnight: Buenos Aires' at 03:00
    # UTC, Tokyo's at 15:00 UTC (09:00 was mid-day there: that day is never covered).
    fired = {e.device: e.start_ns - start for e in events}
    assert fired == {
        "south-aq": 3 * HOUR_NS + 215 * 5 * MIN,
        "east-aq": 15 * HOUR_NS + 215 * 5 * MIN,
    }
    days = LocalDays(("UTC", "Asia/Tokyo"), [0, 1])
    from_, to = days.bounds(np.asarray([start, start]), np.asarray([0, 1]))
    assert (from_ - start).tolist() == [0, -9 * HOUR_NS]
    assert (to - start).tolist() == [24 * HOUR_NS, 15 * HOUR_NS]


def test_local_days_place_every_instant_whatever_was_asked_before() -> None:
    """Batches of a few readings a minute apart, or scattered over a year of Madrid's clock
    changes, in any order, one after another: each instant in the day zoneinfo gives it."""
    days = LocalDays(("Europe/Madrid",), [0])
    zone = ZoneInfo("Europe/Madrid")
    rng = np.random.default_rng(3)
    start = datetime_to_ns(datetime(2026, 1, 1, tzinfo=UTC))
    for i in range(60):
        n = int(rng.integers(1, 8))
        if i % 2:
            ts = start + rng.integers(0, 365 * 24 * HOUR_NS, n)
        else:
            ts = start + int(rng.integers(0, 365 * 24 * HOUR_NS)) + rng.integers(0, 90, n) * MIN
        got = days.bounds(ts, np.zeros(n, dtype=np.intp))
        assert list(zip(*(a.tolist() for a in got), strict=True)) == [
            _local_day(t, zone) for t in ts.tolist()
        ]


# --- silence ---------------------------------------------------------------------------------


def test_a_silent_device_fires_on_the_clock_and_a_reading_clears_it(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.silent"), registry)
    rain = series(registry, "sf-rg-01", "rain", every(10, 6), [0.0] * 6)
    _, state = run(evaluator, [rain])
    # 3 intervals of 10 minutes after the last reading (minute 50) it is not yet silent...
    events, state = evaluator.evaluate_silence(state, at(80))
    assert events == []
    # ...just after, it is; its silence began at minute 80.
    events, state = evaluator.evaluate_silence(state, at(81))
    assert summary(events) == [("fired", "santa-fe.silent", "sf-rg-01", 80, None, 81, False)]
    assert (events[0].level, events[0].sensor) == (1800.0, None)
    assert evaluator.evaluate_silence(state, at(200))[0] == []  # one alarm, not one per check
    back = series(registry, "sf-rg-01", "rain_tips", [230], [4])
    events, state = evaluator.evaluate(back, state, at(231))
    assert summary(events) == [("cleared", "santa-fe.silent", "sf-rg-01", 80, 230, 230, False)]
    assert events[0].peak == 180 * 60  # three hours without a reading
    assert evaluator.evaluate_silence(state, at(250))[0] == []


def test_a_device_never_heard_from_is_not_silent(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.silent"), registry)
    rain = series(registry, "sf-rg-01", "rain", [0], [0.0])
    _, state = run(evaluator, [rain])
    events, _ = evaluator.evaluate_silence(state, at(10_000))
    assert [e.device for e in events] == ["sf-rg-01"]


# --- late and out-of-order data --------------------------------------------------------------


def test_a_backlog_episode_is_reported_late_with_its_real_start_and_end(
    registry: Registry,
) -> None:
    rules = defaults_named(registry, "santa-fe.level.alert")
    evaluator = Evaluator(rules, registry)
    live = series(registry, "sf-rlv-01", "level", every(10, 7, start=600), [5.0] * 7)
    _, state = run(evaluator, [live])
    # A gateway's queue from hours before: above 5.30 m from minute 120 to 150, then down.
    queue = [5.1, 5.2, 5.35, 5.4, 5.3, 5.0, 5.0, 5.0, 5.0, 5.0]
    backlog = series(registry, "sf-rlv-01", "level", every(10, 10, start=100), queue)
    events, after = evaluator.evaluate(backlog, state, at(680))
    assert summary(events) == [
        ("fired", "santa-fe.level.alert", "sf-rlv-01", 120, None, 120, True),
        ("cleared", "santa-fe.level.alert", "sf-rlv-01", 120, 150, 180, True),
    ]
    assert events[1].peak == 5.4
    # The live state is as it was: what comes next gives the same events either way.
    rise = series(registry, "sf-rlv-01", "level", [670, 680], [5.5, 5.5])
    assert summary(evaluator.evaluate(rise, after, at(680))[0]) == summary(
        evaluator.evaluate(rise, state, at(680))[0]
    )


def test_a_backlog_still_past_the_level_at_its_end_is_closed_there_late(
    registry: Registry,
) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    _, state = run(evaluator, [series(registry, "sf-rlv-02", "level", [600], [5.0])])
    backlog = series(registry, "sf-rlv-02", "level", every(10, 4, start=100), [5.2, 5.4, 5.5, 5.6])
    events, _ = evaluator.evaluate(backlog, state, at(605))
    assert summary(events) == [
        ("fired", "santa-fe.level.alert", "sf-rlv-02", 110, None, 110, True),
        ("cleared", "santa-fe.level.alert", "sf-rlv-02", 110, 130, 130, True),
    ]
    assert events[1].peak == 5.6


def test_a_backlog_inside_an_open_alarm_is_part_of_it(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    before = series(registry, "sf-rlv-01", "level", [0, 10], [5.4, 5.5])
    after_outage = series(registry, "sf-rlv-01", "level", [300], [5.6])
    events, state = run(evaluator, [before, after_outage])
    assert [e.type for e in events] == ["fired"]
    queue = series(registry, "sf-rlv-01", "level", every(10, 20, start=100), [5.5] * 20)
    events, state = evaluator.evaluate(queue, state, at(310))
    assert events == []
    assert [a.start_ns for a in state.active_alarms()] == [at(0)]


def test_old_readings_in_order_mark_finished_episodes_late_and_open_ones_live(
    registry: Registry,
) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    # Received at minute 600: the episode of minutes 10 to 50 ended more than an hour ago
    # (late), the one starting at minute 60 is still open (live, though as old).
    level = [5.0, 5.4, 5.0, 5.0, 5.0, 5.0, 5.4, 5.5]
    old = series(registry, "sf-rlv-01", "level", every(10, 8), level)
    events, state = evaluator.evaluate(old, AlertState.empty(), at(600))
    assert summary(events) == [
        ("fired", "santa-fe.level.alert", "sf-rlv-01", 10, None, 10, True),
        ("cleared", "santa-fe.level.alert", "sf-rlv-01", 10, 20, 50, True),
        ("fired", "santa-fe.level.alert", "sf-rlv-01", 60, None, 60, False),
    ]
    assert len(state.active_alarms()) == 1


def test_a_repeated_reading_is_evaluated_once(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    crossing = series(registry, "sf-rlv-01", "level", [0, 10], [5.0, 5.4])
    events, state = run(evaluator, [crossing, crossing, Readings.concat([crossing, crossing])])
    assert [e.type for e in events] == ["fired"]
    assert len(state.active_alarms()) == 1


def test_of_readings_at_one_device_time_the_last_given_counts(registry: Registry) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    low_then_high = series(registry, "sf-rlv-01", "level", [10, 10], [5.0, 5.4])
    high_then_low = series(registry, "sf-rlv-01", "level", [10, 10], [5.4, 5.0])
    assert [e.value for e in run(evaluator, [low_then_high])[0]] == [5.4]
    assert run(evaluator, [high_then_low])[0] == []


def test_a_batch_spanning_years_is_evaluated_like_its_days(registry: Registry) -> None:
    # A gauge that kept a daily reading for three years and delivered them at once.
    rules = defaults_named(registry, "santa-fe.level.alert", "santa-fe.level.flat")
    evaluator = Evaluator(rules, registry, late_after_s=NEVER_LATE)
    rng = np.random.default_rng(4)
    days = 3 * 365
    level = np.round(5.2 + np.cumsum(rng.normal(0, 0.05, days)), 2).tolist()
    daily = series(registry, "sf-rlv-01", "level", every(24 * 60, days), level)
    repeated = Readings.concat([daily.take(slice(0, 50)), daily])  # the first 50 twice
    whole, _ = run(evaluator, [repeated])
    by_day, _ = run(evaluator, one_by_one(daily))
    assert len(whole) > 10
    assert _canon(whole) == _canon(by_day)


# --- ids, purity, state ----------------------------------------------------------------------


def test_the_same_readings_give_the_same_ids_whatever_the_order_or_process(
    registry: Registry,
) -> None:
    rules = defaults_named(registry, "santa-fe.level.alert", "santa-fe.level.evacuation")
    level = [5.0, 5.4, 5.8, 5.9, 5.0, 5.0, 5.0, 5.0, 5.0]
    batch = series(registry, "sf-rlv-01", "level", every(10, 9), level)
    first, _ = run(Evaluator(rules, registry), [batch])
    shuffled = batch.take(np.random.default_rng(1).permutation(len(batch)))
    second, _ = run(Evaluator(tuple(reversed(rules)), registry), [shuffled])
    assert sorted(e.id for e in first) == sorted(e.id for e in second)
    assert len({e.id for e in first}) == len(first) == 4
    assert len({e.alarm_id for e in first}) == 2
    code = (
        "from core.alerts import alarm_id\n"
        f"print(alarm_id('santa-fe.level.alert', 'sf-rlv-01', {at(10)}))\n"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    alert_fired = next(e for e in first if e.rule == "santa-fe.level.alert")
    assert other_process.stdout.strip() == alert_fired.alarm_id


def test_evaluating_leaves_the_given_state_unchanged(registry: Registry) -> None:
    evaluator = Evaluator(default_rules(registry), registry)
    day = _fleet_day(registry, seed=5)
    _, state = run(evaluator, [day.take(slice(0, len(day) // 2))])
    saved = state.to_bytes()
    evaluator.evaluate(day.take(slice(len(day) // 2, None)), state, int(day.ts_ns.max()))
    evaluator.evaluate_silence(state, int(day.ts_ns.max()) + 10 * HOUR_NS)
    assert state.to_bytes() == saved
    with pytest.raises(ValueError, match="read-only"):
        state.active[:] = True


def test_a_state_read_back_from_bytes_carries_open_alarms_and_windows(
    registry: Registry,
) -> None:
    evaluator = Evaluator(default_rules(registry), registry)
    day = _fleet_day(registry, seed=7)
    first, second = day.take(slice(0, len(day) // 2)), day.take(slice(len(day) // 2, None))
    straight, _ = run(evaluator, [first, second])
    before, state = run(evaluator, [first])
    restored = AlertState.from_bytes(state.to_bytes())
    assert restored.active_alarms() == state.active_alarms()
    assert len(restored.active_alarms()) > 0
    after, _ = run(evaluator, [second], restored)
    assert _canon(before + after) == _canon(straight)


def test_a_state_follows_its_rules_by_id_when_the_rules_file_is_reordered(
    registry: Registry,
) -> None:
    rules = defaults_named(registry, "santa-fe.level.alert", "santa-fe.level.evacuation")
    up = series(registry, "sf-rlv-01", "level", [0, 10], [5.0, 5.4])
    fired, state = run(Evaluator(rules, registry), [up])
    reordered = Evaluator((*default_rules(registry)[-2:], *reversed(rules)), registry)
    down = series(registry, "sf-rlv-01", "level", every(10, 5, start=20), [5.0] * 5)
    cleared, state = run(reordered, [down], AlertState.from_bytes(state.to_bytes()))
    assert summary(fired + cleared) == [
        ("fired", "santa-fe.level.alert", "sf-rlv-01", 10, None, 10, False),
        ("cleared", "santa-fe.level.alert", "sf-rlv-01", 10, 20, 50, False),
    ]
    assert cleared[0].alarm_id == fired[0].alarm_id
    # A rule that is gone takes its alarms with it.
    _, state = run(Evaluator(rules, registry), [up])
    assert run(Evaluator(rules[1:], registry), [down], state)[1].active_alarms() == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b"",
        lambda b: b"not a state",
        lambda b: b[: len(b) // 2],
    ],
)
def test_bytes_that_are_not_a_state_are_refused(registry: Registry, damage: Any) -> None:
    evaluator = Evaluator(defaults_named(registry, "santa-fe.level.alert"), registry)
    _, state = run(evaluator, [series(registry, "sf-rlv-01", "level", [0, 10], [5.0, 5.4])])
    with pytest.raises(AlertStateError):
        AlertState.from_bytes(damage(state.to_bytes()))


def test_bytes_that_would_unpack_beyond_their_size_are_refused() -> None:
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)}
    )
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            archive.writestr("rule.npy", header.getvalue() + bytes(16))
        with pytest.raises(AlertStateError):
            AlertState.from_bytes(buffer.getvalue())


def test_damaged_bytes_load_or_are_refused_never_anything_else(registry: Registry) -> None:
    evaluator = Evaluator(default_rules(registry), registry)
    day = _fleet_day(registry, seed=4, hours=20)
    _, state = evaluator.evaluate(day, AlertState.empty(), int(day.ts_ns.max()))
    good = state.to_bytes()
    rng = np.random.default_rng(4)
    for _ in range(300):
        damaged = bytearray(good)
        for i in rng.integers(0, len(good), int(rng.integers(1, 4))).tolist():
            damaged[i] = int(rng.integers(0, 256))
        try:
            loaded = AlertState.from_bytes(bytes(damaged))
        except AlertStateError:
            continue
        evaluator.evaluate(day.take(slice(0, 200)), loaded, int(day.ts_ns.max()))


def test_a_state_of_another_format_version_is_refused() -> None:
    import io
    import json

    buffer = io.BytesIO()
    meta = {"format": "pilots-alert-state", "version": 99, "rule_ids": [], "device_ids": []}
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(AlertStateError, match="version 99"):
        AlertState.from_bytes(buffer.getvalue())


# --- the whole fleet: one batch, many, many through bytes ------------------------------------


def _fleet_day(registry: Registry, seed: int, hours: int = 30) -> Readings:
    """Every sensor of every device at its interval, random walks near the levels, a stuck
    stretch per series and 5 % of reports missing; in receipt (device time) order."""
    rng = np.random.default_rng(seed)
    centre = {"level": 5.25, "pm25": 14.0, "battery_v": 3.45, "dissolved_oxygen": 5.0}
    parts = []
    for device in registry.device_list:
        n = hours * 3600 // device.interval_s
        ts = at(0) + np.arange(n) * device.interval_s * 10**9 + rng.integers(0, 5 * 10**9, n)
        for sensor in device.sensors:
            spec = registry.sensors[sensor]
            walk = centre.get(sensor, (spec.min + spec.max) / 2) + np.cumsum(
                rng.normal(0, 0.03 if sensor in centre else 1.0, n)
            )
            value = np.round(walk, 2)
            k = int(rng.integers(0, n - 30))
            value[k : k + 25] = value[k]
            keep = rng.random(n) > 0.05
            parts.append(
                Readings.from_arrays(
                    ts[keep],
                    np.full(int(keep.sum()), device.code),
                    np.full(int(keep.sum()), spec.code),
                    value[keep],
                )
            )
    day = Readings.concat(parts)
    return day.take(np.argsort(day.ts_ns, kind="stable"))


def _canon(events: Sequence[AlertEvent]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            e.at_ns,
            e.rule,
            e.device,
            e.type,
            e.start_ns,
            e.end_ns,
            e.value,
            e.latest,
            e.peak,
            e.late,
            e.id,
        )
        for e in events
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_one_batch_many_batches_and_many_through_bytes_give_identical_events(
    registry: Registry, seed: int
) -> None:
    evaluator = Evaluator(default_rules(registry), registry, late_after_s=NEVER_LATE)
    day = _fleet_day(registry, seed)
    whole, _ = evaluator.evaluate(day, AlertState.empty(), int(day.ts_ns.max()))
    kinds = {e.kind for e in whole}
    assert {"threshold", "mean_over_guideline", "rate_of_rise", "battery_low", "flat"} <= kinds
    cuts = np.sort(np.random.default_rng(seed).choice(len(day), 150, replace=False))
    parts = [day.take(p) for p in np.split(np.arange(len(day)), cuts) if len(p)]
    many: list[AlertEvent] = []
    through: list[AlertEvent] = []
    state = saved = AlertState.empty()
    for part in parts:
        now = int(part.ts_ns.max())
        new, state = evaluator.evaluate(part, state, now)
        many += new
        new, saved = evaluator.evaluate(part, saved, now)
        through += new
        saved = AlertState.from_bytes(saved.to_bytes())
    assert _canon(many) == _canon(whole)
    assert _canon(through) == _canon(whole)


@dataclass(frozen=True)
class _Delivery:
    """One step of a stream: live readings (split into batches), a backlog, or the clock."""

    live: Readings | None = None
    backlog: Readings | None = None
    silence_at: int | None = None
    now: int = 0


def _stream_with_backlogs_and_silences(registry: Registry, seed: int) -> list[_Delivery]:
    """Every device for 22 hours in two-hour phases, in receipt (device time) order; one
    device starts late (new keys midway), two fall silent for hours, and after some phases
    a gateway delivers an older stretch of two devices again, 20 s earlier and past their
    levels (backlog). The clock is checked for silent devices after every phase."""
    rng = np.random.default_rng(seed)
    day = _fleet_day(registry, seed, hours=22)
    device = day.device
    late_starter = registry.devices["rs-wq-02"].code
    quiet = [registry.devices["sf-rg-01"].code, registry.devices["sn-aq-03"].code]
    keep = ~((device == late_starter) & (day.ts_ns < at(7 * 60)))
    for code, (start, end) in zip(quiet, [(5, 9), (12, 15)], strict=True):
        keep &= ~((device == code) & (day.ts_ns >= at(start * 60)) & (day.ts_ns < at(end * 60)))
    day = day.take(np.flatnonzero(keep))
    level, battery = registry.sensors["level"].code, registry.sensors["battery_v"].code
    steps: list[_Delivery] = []
    for phase in range(11):
        begin, end = at(phase * 120), at((phase + 1) * 120)
        live = day.take(np.flatnonzero((day.ts_ns >= begin) & (day.ts_ns < end)))
        steps.append(_Delivery(live=live, now=end))
        if phase >= 2 and rng.random() < 0.7:
            older = (day.ts_ns >= at((phase - 2) * 120)) & (day.ts_ns < at((phase - 1) * 120))
            chosen = rng.choice(np.unique(day.device), 2, replace=False)
            queue = day.take(np.flatnonzero(older & np.isin(day.device, chosen)))
            value = queue.value + np.where(queue.sensor == level, 0.3, 0.0)
            value = value - np.where(queue.sensor == battery, 0.12, 0.0)
            shifted = Readings(queue.ts_ns - 20 * 10**9, queue.device, queue.sensor, value)
            steps.append(_Delivery(backlog=shifted, now=end))
        steps.append(_Delivery(silence_at=end + 5 * MIN, now=end))
    return steps


def _run_stream(
    evaluator: Evaluator, steps: Sequence[_Delivery], size: int | None, *, through_bytes: bool
) -> tuple[list[AlertEvent], AlertState]:
    """The stream with live readings in batches of `size` (None: each phase whole)."""
    state = AlertState.empty()
    events: list[AlertEvent] = []
    for step in steps:
        if step.live is not None:
            n = len(step.live)
            for lo in range(0, n, size or max(n, 1)):
                new, state = evaluator.evaluate(
                    step.live.take(slice(lo, lo + (size or n))), state, step.now
                )
                events += new
        if step.backlog is not None:
            new, state = evaluator.evaluate(step.backlog, state, step.now)
            events += new
        if step.silence_at is not None:
            new, state = evaluator.evaluate_silence(state, step.silence_at)
            events += new
            if through_bytes:
                state = AlertState.from_bytes(state.to_bytes())
    return events, state


def test_results_are_identical_whatever_the_batch_split(registry: Registry) -> None:
    """Batches of 1, 7, 100 readings or whole phases give the same events and the same state,
    backlogs and silences included (each backlog is one delivery: how it is split decides
    what it can show, by the late-data rules). Nothing is late but backlogs (late_after_s
    large), since what is late among live readings depends on what came in one batch. Besides
    the defaults, a local-day mean of each WHO sensor, known from a fifth of the day's
    readings (the stream spans two local days, from 09:00), PM2.5's at 13.8 µg/m³ (its walk
    is near 14)."""
    days = [
        {
            "id": f"{sensor}.day",
            "kind": "mean_over_guideline",
            "sensor": sensor,
            "window": "day",
            "min_coverage": 0.2,
            **({"level": 13.8, "clear_margin": 0.05} if sensor == "pm25" else {}),
        }
        for sensor in ("pm25", "pm10", "no2", "co")
    ]
    rules = (*default_rules(registry), *rules_from(registry, *days))
    evaluator = Evaluator(rules, registry, late_after_s=NEVER_LATE)
    steps = _stream_with_backlogs_and_silences(registry, seed=21)
    whole, whole_state = _run_stream(evaluator, steps, None, through_bytes=False)
    kinds = {e.kind for e in whole}
    assert {"threshold", "mean_over_guideline", "battery_low", "flat", "silent"} <= kinds
    assert {e.type for e in whole if e.window == "day"} == {"fired", "cleared"}
    assert any(e.late for e in whole), "the stream has backlog episodes"
    assert any(e.kind == "silent" and e.type == "cleared" for e in whole)
    for size in (1, 7, 100):
        events, state = _run_stream(evaluator, steps, size, through_bytes=size == 7)
        assert _canon(events) == _canon(whole), size
        assert _comparable(state, evaluator) == _comparable(whole_state, evaluator), size


def _comparable(state: AlertState, evaluator: Evaluator) -> dict[str, bytes]:
    """The state's columns, bit for bit, but the last value of rules on any sensor: of
    readings of several sensors at one device time, the one kept is the last given in its
    batch."""
    columns = {name: array.copy() for name, array in state.columns().items()}
    any_sensor = np.asarray([evaluator.rules[r].sensor is None for r in columns["rule"]], bool)
    columns["last_value"][any_sensor] = 0.0
    return {name: array.tobytes() for name, array in columns.items()}


def test_a_former_state_still_reads_and_evaluates_as_it_was(registry: Registry) -> None:
    """The state given to `evaluate` hands its store on, but reads, saves and evaluates as
    it was, however many batches later and in whatever order former states are used."""
    evaluator = Evaluator(default_rules(registry), registry)
    day = _fleet_day(registry, seed=8, hours=26)
    parts = [day.take(p) for p in np.array_split(np.arange(len(day)), 40)]
    states = [AlertState.empty()]
    saved = [states[0].to_bytes()]
    outcomes = []
    for part in parts:
        now = int(part.ts_ns.max())
        events, state = evaluator.evaluate(part, states[-1], now)
        events_silent, state = evaluator.evaluate_silence(state, now + HOUR_NS)
        outcomes.append((_canon(events), _canon(events_silent)))
        states.append(state)
        saved.append(state.to_bytes())
    rng = np.random.default_rng(8)
    for i in rng.permutation(len(parts))[:12].tolist():
        assert states[i].to_bytes() == saved[i]
        assert len(states[i]) == len(AlertState.from_bytes(saved[i]))
        now = int(parts[i].ts_ns.max())
        events, after = evaluator.evaluate(parts[i], states[i], now)
        events_silent, after = evaluator.evaluate_silence(after, now + HOUR_NS)
        assert (_canon(events), _canon(events_silent)) == outcomes[i]
        assert after.to_bytes() == saved[i + 1]
    assert states[-1].active_alarms() == AlertState.from_bytes(saved[-1]).active_alarms()
    with pytest.raises(ValueError, match="read-only"):
        states[3].last_ts_ns[:] = 0


@pytest.mark.parametrize("failing", ["run_machine", "_closed"])  # before, amid the writes
def test_a_batch_that_fails_midway_leaves_the_state_as_it_was(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    import core.alerts.evaluate as evaluate_module

    evaluator = Evaluator(default_rules(registry), registry)
    day = _fleet_day(registry, seed=9, hours=24)
    first, second = day.take(slice(0, len(day) // 2)), day.take(slice(len(day) // 2, None))
    _, state = evaluator.evaluate(first, AlertState.empty(), int(first.ts_ns.max()))
    saved = state.to_bytes()
    expected, after = evaluator.evaluate(second, AlertState.from_bytes(saved), 0)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(evaluate_module, failing, broken)
    with pytest.raises(RuntimeError, match="boom"):
        evaluator.evaluate(second, state, 0)  # rows added, arena written, then it fails
    monkeypatch.undo()
    assert state.to_bytes() == saved
    events, state = evaluator.evaluate(second, state, 0)
    assert _canon(events) == _canon(expected)
    assert state.to_bytes() == after.to_bytes()


def test_pairs_feeding_many_rules_expand_alike(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readings expand to the rules they feed through a table of short rows, or (a sensor
    feeding many rules) through a CSR table: the same keys either way."""
    import core.alerts.evaluate as evaluate_module

    rules = default_rules(registry)
    day = _fleet_day(registry, seed=6, hours=20)
    parts = [day.take(p) for p in np.array_split(np.arange(len(day)), 9)]
    rows, rows_state = run(Evaluator(rules, registry), parts)
    monkeypatch.setattr(evaluate_module, "_TABLE_WIDTH", 0)
    csr, csr_state = run(Evaluator(rules, registry), parts)
    assert _canon(csr) == _canon(rows)
    assert csr_state.to_bytes() == rows_state.to_bytes()


def test_the_window_kernels_agree_with_plain_python() -> None:
    """The searches, sums and ranges over windows that lie anywhere in an array."""
    from core.alerts.kernels import grouped_search, last_range, window_sums

    rng = np.random.default_rng(12)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        values = np.sort(rng.integers(0, 60, n))
        m = int(rng.integers(1, 40))
        lo = rng.integers(0, n, m)
        hi = np.minimum(lo + rng.integers(0, 80, m), n)
        query = rng.integers(-5, 70, m)
        for right in (False, True):
            expected = [
                a + int(np.searchsorted(values[a:b], q, side="right" if right else "left"))
                for a, b, q in zip(lo.tolist(), hi.tolist(), query.tolist(), strict=True)
            ]
            assert grouped_search(values, lo, hi, query, right=right).tolist() == expected
        x = rng.normal(0, 100, n)
        a = np.sort(rng.integers(0, n, m))
        b = np.minimum(a + rng.integers(0, 40, m), n - 1)
        sums = [float(np.add.reduceat(x[i : j + 1], [0])[0]) for i, j in zip(a, b, strict=True)]
        assert window_sums(x, a, b).tolist() == sums
        ranges = [float(x[i : j + 1].max() - x[i : j + 1].min()) for i, j in zip(a, b, strict=True)]
        assert last_range(x, a, b, a).tolist() == ranges


# --- against a reading-by-reading model ------------------------------------------------------


@dataclass
class _Key:
    """The sequential machine of one key, as docs/ALERTS.md states it."""

    rule: Rule
    active: bool = False
    pending: int | None = None
    pending_value: float = math.nan
    clearing: int | None = None
    clearing_value: float = math.nan
    start: int = 0
    peak: float = math.nan
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def extreme(self, a: float, b: float) -> float:
        if math.isnan(a):
            return b
        if math.isnan(b):
            return a
        return max(a, b) if self.rule.direction == "above" else min(a, b)

    def step(self, t: int, onset: int, metric: float, past: bool, safe: bool) -> None:
        if not self.active:
            if not past:
                self.pending = None
                return
            if self.pending is None:
                self.pending, self.pending_value, self.peak = onset, metric, metric
            else:
                self.peak = self.extreme(self.peak, metric)
            if t - self.pending >= self.rule.pending_s * 10**9:
                self.active, self.start = True, self.pending
                self.events.append(
                    ("fired", self.start, None, t, self.pending_value, metric, self.peak)
                )
                self.clearing = None
            return
        self.peak = self.extreme(self.peak, metric)
        if not safe:
            self.clearing = None
            return
        if self.clearing is None:
            self.clearing, self.clearing_value = t, metric
        if t - self.clearing >= self.rule.clear_s * 10**9:
            self.events.append(
                ("cleared", self.start, self.clearing, t, self.clearing_value, metric, self.peak)
            )
            self.active, self.pending = False, None


def _local_day(t: int, zone: tzinfo) -> tuple[int, int]:
    """The local midnight that starts the day of `t` in `zone`, and the next one (zoneinfo)."""
    today = datetime.fromtimestamp(t // 10**9, zone).date()
    tomorrow = today + timedelta(days=1)
    return (
        datetime_to_ns(datetime(today.year, today.month, today.day, tzinfo=zone)),
        datetime_to_ns(datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)),
    )


def _model(
    rule: Rule, interval_s: int, points: list[tuple[int, float]], zone: tzinfo = UTC
) -> list[tuple[Any, ...]]:
    key = _Key(rule)
    ts = [t for t, _ in points]
    values = [v for _, v in points]
    window = rule.window_s * 10**9
    cap = 2 * -(-rule.window_s // interval_s) + 1 if rule.window_s else 0
    for i, (t, v) in enumerate(points):
        onset, metric = t, v
        if rule.kind == "mean_over_guideline":
            if rule.window == "day":  # since the local midnight of t's day; that day's coverage
                midnight, next_midnight = _local_day(t, zone)
                inside = [j for j in range(i + 1) if ts[j] >= midnight][-cap:]
                day_s = (next_midnight - midnight) / 10**9
                known = len(inside) >= rule.min_coverage * day_s / interval_s
            else:
                inside = [j for j in range(i + 1) if ts[j] > t - window][-cap:]
                known = len(inside) >= rule.min_coverage * rule.window_s / interval_s
            # summed as the evaluator sums a window, so a mean at the level decides alike
            total = float(np.add.reduceat(np.asarray([values[j] for j in inside]), [0])[0])
            metric = total / len(inside) if known else math.nan
            past, safe = metric > rule.level, metric <= rule.clear_level
        elif rule.kind == "rate_of_rise":
            first = [j for j in range(i + 1) if ts[j] >= t - window][-cap:][0]
            span = t - ts[first]
            known = span >= rule.min_span_s * 10**9 and span > 0
            metric = (v - values[first]) * HOUR_NS / span if known else math.nan
            past, safe = metric >= rule.level, metric < rule.clear_level
        elif rule.kind == "flat":
            n = rule.readings or max(round(rule.span_s / interval_s) + 1, 2)
            if i + 1 < n:
                metric, past, safe = math.nan, False, False
            else:
                last = values[i + 1 - n : i + 1]
                metric, onset = max(last) - min(last), ts[i + 1 - n]
                past, safe = metric <= rule.level, metric > rule.level
        elif rule.direction == "above":
            past, safe = v >= rule.level, v < rule.clear_level
        else:
            past, safe = v <= rule.level, v > rule.clear_level
        key.step(t, onset, metric, past, safe)
    return key.events


MODEL_RULES: list[dict[str, Any]] = [
    {
        "id": "t",
        "kind": "threshold",
        "sensor": "level",
        "level": 5.3,
        "clear_level": 5.25,
        "pending_s": 1200,
        "clear_s": 1800,
    },
    {
        "id": "tb",
        "kind": "threshold",
        "sensor": "level",
        "level": 5.0,
        "below": True,
        "clear_margin": 0.1,
        "clear_s": 600,
    },
    {
        "id": "m",
        "kind": "mean_over_guideline",
        "sensor": "level",
        "level": 5.3,
        "window_s": 3600,
        "min_coverage": 0.5,
        "clear_s": 0,
    },
    {
        # 2 % of a day at 10 minutes: known from the 3rd reading since local midnight
        "id": "md",
        "kind": "mean_over_guideline",
        "sensor": "level",
        "level": 5.3,
        "window": "day",
        "min_coverage": 0.02,
        "clear_s": 1200,
    },
    {
        "id": "r",
        "kind": "rate_of_rise",
        "sensor": "level",
        "rise_per_h": 0.5,
        "window_s": 3600,
        "min_span_s": 1200,
        "pending_s": 600,
    },
    {"id": "f", "kind": "flat", "sensor": "level", "readings": 3, "clear_s": 900},
    {"id": "b", "kind": "battery_low", "pilot": "santa-fe", "clear_s": 1200},
]
LEVELS = [4.9, 5.0, 5.1, 5.25, 5.28, 5.3, 5.32, 5.5, 6.2]
VOLTS = [3.3, 3.4, 3.42, 3.45, 3.5, 3.9]


@given(data=st.data())
@PROPS
def test_the_evaluator_matches_a_reading_by_reading_model_however_it_is_batched(
    registry: Registry, data: st.DataObject
) -> None:
    rules = rules_from(registry, *MODEL_RULES)
    evaluator = Evaluator(rules, registry, late_after_s=NEVER_LATE)
    n = data.draw(st.integers(1, 60), label="n")
    gaps = data.draw(st.lists(st.sampled_from([1, 5, 10, 10, 10, 20, 45]), min_size=n, max_size=n))
    which = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n), label="device/sensor")
    levels = data.draw(st.lists(st.sampled_from(LEVELS), min_size=n, max_size=n))
    volts = data.draw(st.lists(st.sampled_from(VOLTS), min_size=n, max_size=n))
    # T0 is 09:00 in Santa Fe: a start anywhere in the day, so that streams cross local midnight
    clock = data.draw(st.integers(0, 24 * 60 - 1), label="start") + np.cumsum(gaps)
    devices = ("sf-rlv-01", "sf-rlv-02")
    points: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for i in range(n):
        device, sensor = devices[which[i] % 2], ("level", "battery_v")[which[i] // 2]
        value = levels[i] if sensor == "level" else volts[i]
        points.setdefault((device, sensor), []).append((at(float(clock[i])), value))
    expected = []
    zone = registry.pilots["santa-fe"].tz
    for rule in rules:
        for device in rule.devices:
            assert rule.sensor is not None
            for event in _model(rule, 600, points.get((device, rule.sensor), []), zone):
                expected.append((rule.id, device, *event))
    batch = Readings.concat(
        [
            Readings.from_arrays(
                [t for t, _ in p],
                [registry.devices[d].code] * len(p),
                [registry.sensors[s].code] * len(p),
                [v for _, v in p],
            )
            for (d, s), p in points.items()
        ]
    )
    whole, _ = evaluator.evaluate(batch, AlertState.empty(), int(batch.ts_ns.max()))
    assert _rows(whole) == sorted(expected, key=_order)
    # the same stream in receipt order, cut anywhere, through bytes or not
    ordered = batch.take(np.argsort(batch.ts_ns, kind="stable"))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8), label="cuts"))
    pieces = [ordered.take(slice(a, b)) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    state = AlertState.empty()
    many: list[AlertEvent] = []
    for piece in pieces:
        if len(piece):
            new, state = evaluator.evaluate(piece, state, int(piece.ts_ns.max()))
            many += new
            state = AlertState.from_bytes(state.to_bytes())
    assert _canon(many) == _canon(whole)


def test_a_local_day_mean_matches_the_model_when_readings_outrun_its_cap(
    registry: Registry,
) -> None:
    """A gauge registered at 10 minutes that reports every minute: a day's mean holds the
    newest 289 readings since midnight (2 x 144 + 1), whatever the batching and through
    bytes."""
    rules = rules_from(registry, {**MODEL_RULES[3], "min_coverage": 0.75})
    evaluator = Evaluator(rules, registry, late_after_s=NEVER_LATE)
    rng = np.random.default_rng(5)
    n = 2 * 1440 + 300
    wave = 5.3 + 0.8 * np.sin(np.arange(n) * 2 * np.pi / 720) + rng.normal(0, 0.05, n)
    level = np.round(wave, 2).tolist()  # up and down every 12 hours
    stream = series(registry, "sf-rlv-01", "level", every(1, n, start=-30), level)
    points = list(zip(stream.ts_ns.tolist(), level, strict=True))
    expected = [
        ("md", "sf-rlv-01", *e)
        for e in _model(rules[0], 600, points, registry.pilots["santa-fe"].tz)
    ]
    assert len(expected) >= 4, expected
    whole, _ = run(evaluator, [stream])
    assert _rows(whole) == sorted(expected, key=_order)
    cuts = np.sort(rng.choice(n, 40, replace=False))
    state = AlertState.empty()
    many: list[AlertEvent] = []
    for part in np.split(np.arange(n), cuts):
        new, state = evaluator.evaluate(stream.take(part), state, int(stream.ts_ns[part].max()))
        many += new
        state = AlertState.from_bytes(state.to_bytes())
        assert len(state.window_ts_ns) <= 288  # what a later reading can still need
    assert _canon(many) == _canon(whole)


def _rows(events: Sequence[AlertEvent]) -> list[tuple[Any, ...]]:
    rows = [
        (e.rule, e.device, e.type, e.start_ns, e.end_ns, e.at_ns, e.value, e.latest, e.peak)
        for e in events
    ]
    return sorted(rows, key=_order)


def _order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (row[0], row[1], row[5], row[2])


@given(data=st.data())
@PROPS
def test_a_backlog_never_changes_the_live_alarms(registry: Registry, data: st.DataObject) -> None:
    rules = rules_from(registry, *MODEL_RULES)
    evaluator = Evaluator(rules, registry, late_after_s=NEVER_LATE)
    n = data.draw(st.integers(2, 50), label="n")
    gaps = data.draw(st.lists(st.sampled_from([1, 10, 10, 30]), min_size=n, max_size=n))
    levels = data.draw(st.lists(st.sampled_from(LEVELS), min_size=n, max_size=n))
    stream = series(registry, "sf-rlv-01", "level", np.cumsum(gaps).tolist(), levels)
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=5), label="cuts"))
    pieces = [stream.take(slice(a, b)) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    plain, plain_state = run(evaluator, [p for p in pieces if len(p)])
    # The same, with a gateway's queue after each piece: earlier times, other values.
    state = AlertState.empty()
    live: list[AlertEvent] = []
    seen = 0
    for piece in pieces:
        if not len(piece):
            continue
        new, state = evaluator.evaluate(piece, state, int(piece.ts_ns.max()))
        live += new
        seen += len(piece)
        older = data.draw(st.lists(st.integers(0, seen - 1), max_size=6, unique=True), label="q")
        queue = stream.take(np.asarray(older, dtype=np.intp))
        shifted = Readings(
            queue.ts_ns - MIN // 2, queue.device, queue.sensor, np.roll(queue.value, 1)
        )
        late, state = evaluator.evaluate(shifted, state, int(piece.ts_ns.max()))
        assert all(e.late for e in late)
        # every late episode is told whole: fired and cleared
        pairs: dict[str, list[str]] = {}
        for e in late:
            pairs.setdefault(e.alarm_id, []).append(e.type)
        assert all(types == ["fired", "cleared"] for types in pairs.values())
    assert _canon(live) == _canon(plain)
    assert state.active_alarms() == plain_state.active_alarms()

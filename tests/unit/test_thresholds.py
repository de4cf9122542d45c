"""Threshold episodes and exceedance days against hand-computed answers and plain models."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.registry import Registry
from core.thresholds import episodes, exceedance_days
from core.timeutil import datetime_to_ns

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 3600 * NS
CORDOBA = ZoneInfo("America/Argentina/Cordoba")
BUENOS_AIRES = ZoneInfo("America/Argentina/Buenos_Aires")
MADRID = ZoneInfo("Europe/Madrid")
PROPS = settings(max_examples=60, deadline=None)

Row = tuple[int, int, float]  # (device, ts_ns, value)


def local_ns(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0) -> int:
    return datetime_to_ns(datetime(year, month, day, hour, tzinfo=tz))


def columns(rows: list[Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = np.asarray([t for _, t, _ in rows], dtype=np.int64)
    value = np.asarray([v for _, _, v in rows], dtype=np.float64)
    dev = np.asarray([d for d, _, _ in rows], dtype=np.int32)
    return ts, value, dev


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# --- episodes -------------------------------------------------------------------------------


def ref_episodes(
    rows: list[Row], level: float, above: bool, n_devices: int
) -> list[tuple[int, int, int, float, float, bool]]:
    out = []
    for device in range(n_devices):
        latest: dict[int, float] = {}
        for d, t, v in rows:
            if d == device and not math.isnan(v):
                latest[t] = v
        start = peak = None
        items = sorted(latest.items())
        for t, v in items:
            past = v >= level if above else v <= level
            if past and start is None:
                start, peak = t, v
            elif past:
                peak = max(peak, v) if above else min(peak, v)  # type: ignore[type-var]
            elif start is not None:
                out.append((device, start, t, (t - start) / NS, peak, False))
                start = None
        if start is not None:
            out.append((device, start, items[-1][0], (items[-1][0] - start) / NS, peak, True))
    return out  # type: ignore[return-value]


@PROPS
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 40).map(lambda i: 1_700_000_000 * NS + i * 15 * MIN),
            st.one_of(
                st.sampled_from([5.30, math.nan]), st.integers(480, 580).map(lambda i: i / 100)
            ),
        ),
        max_size=50,
    ),
    above=st.booleans(),
)
def test_episodes_match_a_plain_scan(rows: list[Row], above: bool) -> None:
    ts, value, dev = columns(rows)
    got = episodes(ts, value, dev, level=5.30, above=above, n_devices=3)
    want = ref_episodes(rows, 5.30, above, 3)
    assert (
        list(
            zip(
                got.device_row.tolist(),
                got.start_ns.tolist(),
                got.end_ns.tolist(),
                got.duration_s.tolist(),
                got.peak.tolist(),
                got.open.tolist(),
                strict=True,
            )
        )
        == want
    )
    for device in range(3):
        mine = [e for e in want if e[0] == device]
        assert close(got.total_s[device], sum(e[3] for e in mine))
        assert got.count[device] == len(mine)


def test_santa_fe_river_crossing_the_alert_level(registry: Registry) -> None:
    alert = {t.name: t.value for t in registry.pilots["santa-fe"].thresholds}["alert"]
    assert alert == 5.30
    start = local_ns(CORDOBA, 2024, 11, 30, 18)
    # Hourly Puerto de Santa Fe gauge: reaches 5.30 at 20:00, peaks at 5.62, back below at
    # 00:00 (past local midnight); rises again at 02:00 and is still up at the last reading.
    level = [5.10, 5.25, 5.30, 5.45, 5.62, 5.41, 5.28, 5.20, 5.35, 5.40]
    ts = start + np.arange(len(level), dtype=np.int64) * HOUR
    shuffled = np.asarray([3, 9, 0, 6, 1, 8, 4, 2, 7, 5])
    got = episodes(
        ts[shuffled],
        np.asarray(level)[shuffled],
        np.zeros(len(level), np.int32),
        level=alert,
        n_devices=2,
    )
    assert got.start_ns.tolist() == [start + 2 * HOUR, start + 8 * HOUR]
    assert got.end_ns.tolist() == [start + 6 * HOUR, start + 9 * HOUR]
    assert got.duration_s.tolist() == [4 * 3600.0, 3600.0]
    assert got.peak.tolist() == [5.62, 5.40]
    assert got.open.tolist() == [False, True]
    assert got.total_s.tolist() == [5 * 3600.0, 0.0]
    assert got.count.tolist() == [2, 0]

    evacuation = episodes(ts, np.asarray(level), np.zeros(10, np.int32), level=5.70, n_devices=1)
    assert len(evacuation) == 0
    assert evacuation.total_s.tolist() == [0.0]

    # Below a level: dissolved oxygen under 2 mg/L at dawn, lowest value as the peak.
    oxygen = np.asarray([4.0, 1.9, 1.2, 2.0, 2.5])
    low = episodes(ts[:5], oxygen, np.zeros(5, np.int32), level=2.0, above=False, n_devices=1)
    assert (low.start_ns.tolist(), low.end_ns.tolist()) == ([start + HOUR], [start + 4 * HOUR])
    assert low.peak.tolist() == [1.2]

    one = episodes(ts[:1], np.asarray([6.0]), np.zeros(1, np.int32), level=alert, n_devices=1)
    assert (one.duration_s.tolist(), one.open.tolist(), one.peak.tolist()) == ([0.0], [True], [6.0])


# --- exceedance days ------------------------------------------------------------------------


def ref_days(
    rows: list[Row], tz: ZoneInfo, guideline: float, start: int, end: int, n_devices: int
) -> tuple[list[date], list[dict[date, tuple[int, float]]]]:
    first = datetime.fromtimestamp(start // NS, tz).date()
    last = datetime.fromtimestamp((end - 1) // NS, tz).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    per_device: list[dict[date, tuple[int, float]]] = []
    for device in range(n_devices):
        latest: dict[int, float] = {}
        for d, t, v in rows:
            if d == device and start <= t < end:
                latest[t] = v
        by_day: dict[date, list[float]] = {}
        for t, v in latest.items():
            by_day.setdefault(datetime.fromtimestamp(t // NS, tz).date(), []).append(v)
        per_device.append({day: (len(vs), sum(vs) / len(vs)) for day, vs in by_day.items()})
    return days, per_device


ZONES = {
    # A month end in Argentina (no DST) and both DST changes of 2024 in Madrid.
    "cordoba": (CORDOBA, local_ns(CORDOBA, 2024, 11, 29)),
    "madrid-autumn": (MADRID, local_ns(MADRID, 2024, 10, 25)),
    "madrid-spring": (MADRID, local_ns(MADRID, 2024, 3, 29)),
}


@PROPS
@given(
    zone=st.sampled_from(sorted(ZONES)),
    rows=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 160), st.integers(0, 60).map(float)),
        max_size=60,
    ),
    start_h=st.integers(0, 60),
    length_h=st.integers(1, 90),
    min_count=st.sampled_from([1, 2]),
)
def test_exceedance_days_match_local_dates_by_hand(
    zone: str, rows: list[tuple[int, int, float]], start_h: int, length_h: int, min_count: int
) -> None:
    tz, base = ZONES[zone]
    data = [(d, base + i * 30 * MIN, v) for d, i, v in rows]  # every 30 min over ~3 days
    start, end = base + start_h * HOUR + 7, base + (start_h + length_h) * HOUR
    ts, value, dev = columns(data)
    got = exceedance_days(
        ts,
        value,
        dev,
        n_devices=3,
        tz=tz,
        guideline=25.0,
        start_ns=start,
        end_ns=end,
        min_count=min_count,
    )
    days, per_device = ref_days(data, tz, 25.0, start, end, 3)
    assert list(got.days) == days
    for device in range(3):
        measured = per_device[device]
        counts = [measured.get(day, (0, math.nan))[0] for day in days]
        assert got.count[device].tolist() == counts
        for i, day in enumerate(days):
            assert close(got.mean[device, i], measured.get(day, (0, math.nan))[1])
        want = [
            (day, measured[day][1])
            for day in days
            if day in measured and measured[day][0] >= min_count and measured[day][1] > 25.0
        ]
        assert [d for d, _ in got.exceedances(device)] == [d for d, _ in want]
        assert all(
            close(a, b) for (_, a), (_, b) in zip(got.exceedances(device), want, strict=True)
        )
        assert got.n_exceedances[device] == len(want)
        assert got.n_missing[device] == sum(c < min_count for c in counts)


def test_pm25_days_over_the_who_guideline_in_local_time(registry: Registry) -> None:
    guideline = registry.sensors["pm25"].guideline_24h
    assert guideline == 15.0
    start = local_ns(BUENOS_AIRES, 2024, 11, 1)
    end = local_ns(BUENOS_AIRES, 2024, 11, 4)
    hour = np.arange(24, dtype=np.int64) * HOUR + 30 * MIN  # hh:30 local
    # 1 Nov: 10 µg/m³ until 22:30 and 250 at 23:30 local (02:30 UTC on 2 Nov): mean 19.58, over.
    # 2 Nov: 15 all day, exactly the guideline: not over. 3 Nov: no data, missing.
    day1 = np.where(np.arange(24) == 23, 250.0, 10.0)
    ts = np.concatenate((start + hour, start + 24 * HOUR + hour))
    value = np.concatenate((day1, np.full(24, 15.0)))
    got = exceedance_days(
        ts,
        value,
        np.zeros(48, np.int32),
        n_devices=1,
        tz=BUENOS_AIRES,
        guideline=guideline,
        start_ns=start,
        end_ns=end,
    )
    assert got.days == (date(2024, 11, 1), date(2024, 11, 2), date(2024, 11, 3))
    assert got.count.tolist() == [[24, 24, 0]]
    assert got.exceeds.tolist() == [[True, False, False]]
    assert got.missing.tolist() == [[False, False, True]]
    assert got.exceedances(0) == [(date(2024, 11, 1), (23 * 10.0 + 250.0) / 24)]
    assert (got.n_exceedances.tolist(), got.n_missing.tolist()) == ([1], [1])
    assert not got.partial.any()


def test_exceedance_days_follow_daylight_saving_in_madrid() -> None:
    start = local_ns(MADRID, 2024, 10, 26)
    end = local_ns(MADRID, 2024, 10, 29)
    ts = np.arange(start, end, HOUR)  # 24 + 25 + 24 hourly readings
    value = np.where(ts < local_ns(MADRID, 2024, 10, 27), 10.0, 30.0)
    two = np.concatenate((np.zeros(len(ts), np.int32), np.ones(len(ts), np.int32)))
    got = exceedance_days(
        np.concatenate((ts, ts)),
        np.concatenate((value, value)),
        two,
        n_devices=2,
        tz=MADRID,
        guideline=25.0,
        start_ns=start + 6 * HOUR,
        end_ns=end,
    )
    assert got.days == (date(2024, 10, 26), date(2024, 10, 27), date(2024, 10, 28))
    assert got.count.tolist() == [[18, 25, 24], [18, 25, 24]]
    assert got.partial.tolist() == [True, False, False]
    assert got.n_exceedances.tolist() == [2, 2]

    # One day asked for, two devices: each keeps its own row (25 readings, mean 30).
    one_day = exceedance_days(
        np.concatenate((ts, ts[:5])),
        np.concatenate((value, value[:5])),
        np.concatenate((np.zeros(len(ts), np.int32), np.ones(5, np.int32))),
        n_devices=3,
        tz=MADRID,
        guideline=25.0,
        start_ns=local_ns(MADRID, 2024, 10, 27),
        end_ns=local_ns(MADRID, 2024, 10, 28),
    )
    assert one_day.days == (date(2024, 10, 27),)
    assert one_day.count.tolist() == [[25], [0], [0]]
    assert one_day.missing.tolist() == [[False], [True], [True]]
    both = exceedance_days(
        np.concatenate((ts, ts)),
        np.concatenate((value, value)),
        two,
        n_devices=2,
        tz=MADRID,
        guideline=25.0,
        start_ns=local_ns(MADRID, 2024, 10, 27),
        end_ns=local_ns(MADRID, 2024, 10, 28),
    )
    assert both.count.tolist() == [[25], [25]]
    assert both.mean.tolist() == [[30.0], [30.0]]
    assert both.n_exceedances.tolist() == [1, 1]

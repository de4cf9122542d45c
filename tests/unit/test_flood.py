"""River rise, trend, rain intensity and windows over a level, by hand and against plain models."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.flood import daily_rise, max_intensity, trend_per_day, windows_over
from core.timeutil import datetime_to_ns
from core.windows import calendar_edges, fixed_edges

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 3600 * NS
DAY = 24 * HOUR
CORDOBA = ZoneInfo("America/Argentina/Cordoba")
MADRID = ZoneInfo("Europe/Madrid")
PROPS = settings(max_examples=80, deadline=None)

Row = tuple[int, int, float]  # (row, ts_ns, value)


def local_ns(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0) -> int:
    return datetime_to_ns(datetime(year, month, day, hour, tzinfo=tz))


T0 = local_ns(CORDOBA, 2024, 11, 28)  # local midnight in Santa Fe


def columns(rows: list[Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row = np.asarray([r for r, _, _ in rows], dtype=np.int32)
    ts = np.asarray([t for _, t, _ in rows], dtype=np.int64)
    value = np.asarray([v for _, _, v in rows], dtype=np.float64)
    return ts, value, row


def close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-9) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def latest(rows: list[Row]) -> dict[tuple[int, int], float]:
    """The store's view: NaN is no data, the last value given for a (row, time) wins."""
    out: dict[tuple[int, int], float] = {}
    for r, t, v in rows:
        if not math.isnan(v):
            out[(r, t)] = v
    return out


# --- river rise -----------------------------------------------------------------------------


def test_a_river_rising_40_cm_between_day_means() -> None:
    edges = calendar_edges(T0, T0 + 5 * DAY, "day", CORDOBA)
    assert len(edges) == 6
    # Puerto de Santa Fe, every 15 min: 4.80 m on day 0, 5.00 m, 5.40 m after heavy rain,
    # then 5.55 m; a second gauge reports on days 0 and 1 only, then its line is cut; day 3
    # has no data at all and day 4 is 6.50 m (the jump across the silent day is not a rise).
    quarter = np.arange(96, dtype=np.int64) * 15 * MIN
    level = {0: 4.80, 1: 5.00, 2: 5.40}
    rows: list[Row] = [(0, T0 + d * DAY + int(q), v) for d, v in level.items() for q in quarter]
    rows += [(0, T0 + 4 * DAY + int(q), 6.50) for q in quarter]
    rows += [(1, T0 + HOUR, 3.0), (1, T0 + DAY + HOUR, 2.9)]  # falling 10 cm
    rows += [(2, T0 + HOUR, 3.0)]  # one day only
    ts, value, row = columns(rows)
    order = np.random.default_rng(3).permutation(len(rows))
    got = daily_rise(ts[order], value[order], row[order], n_rows=4, day_edges_ns=edges)
    assert got.rise[0] * 100 == pytest.approx(40.0)  # cm/day
    assert got.rise_day[0] == 2  # ended on the third day
    assert got.mean[0].tolist()[:3] == pytest.approx([4.80, 5.00, 5.40])
    assert math.isnan(got.mean[0, 3])
    assert got.count[0].tolist() == [96, 96, 96, 0, 96]
    assert got.rise[1] * 100 == pytest.approx(-10.0)  # it only fell: the smallest fall
    assert got.rise_day[1] == 1
    assert math.isnan(got.rise[2])
    assert math.isnan(got.rise[3])
    assert got.rise_day[2:].tolist() == [-1, -1]


def test_a_rise_ignores_nan_and_counts_a_repeated_reading_once() -> None:
    edges = calendar_edges(T0, T0 + 2 * DAY, "day", CORDOBA)
    rows: list[Row] = [
        (0, T0 + HOUR, 5.0),
        (0, T0 + 2 * HOUR, math.nan),  # no reading
        (0, T0 + DAY + HOUR, 9.0),
        (0, T0 + DAY + HOUR, 5.2),  # a rewrite of the same point: replaces 9.0
        (0, T0 + DAY + 2 * HOUR, 5.2),
    ]
    ts, value, row = columns(rows)
    got = daily_rise(ts, value, row, n_rows=1, day_edges_ns=edges)
    assert got.count.tolist() == [[1, 2]]
    assert got.rise[0] * 100 == pytest.approx(20.0)


def test_the_trend_of_a_river_rising_steadily() -> None:
    # 5 cm a day, read hourly for three days; a second gauge flat; a third read once.
    hours = np.arange(72, dtype=np.int64)
    ts = np.concatenate((T0 + hours * HOUR, T0 + hours * HOUR, [T0]))
    value = np.concatenate((4.0 + 0.05 * hours / 24, np.full(72, 3.0), [1.0]))
    row = np.repeat(np.asarray([0, 1, 2], dtype=np.int32), [72, 72, 1])
    slope = trend_per_day(ts, value, row, n_rows=4)
    assert slope[0] * 100 == pytest.approx(5.0)  # cm/day
    assert slope[1] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(slope[2])  # one reading: no line
    assert math.isnan(slope[3])  # none at all
    # The same instant twice is one point, not a vertical line.
    twice = trend_per_day(
        np.asarray([T0, T0], dtype=np.int64),
        np.asarray([1.0, 2.0]),
        np.zeros(2, np.int32),
        n_rows=1,
    )
    assert math.isnan(twice[0])


def ref_rise(rows: list[Row], edges: list[int], n_rows: int) -> list[tuple[float, int]]:
    days: dict[tuple[int, int], list[float]] = {}
    for (r, t), v in latest(rows).items():
        for d in range(len(edges) - 1):
            if edges[d] <= t < edges[d + 1]:
                days.setdefault((r, d), []).append(v)
    out = []
    for r in range(n_rows):
        best, at = math.nan, -1
        for d in range(1, len(edges) - 1):
            if (r, d) in days and (r, d - 1) in days:
                now, before = days[(r, d)], days[(r, d - 1)]
                step = math.fsum(now) / len(now) - math.fsum(before) / len(before)
                if at == -1 or step > best:
                    best, at = step, d
        out.append((best, at))
    return out


ZONES = {"cordoba": (CORDOBA, T0), "madrid-autumn": (MADRID, local_ns(MADRID, 2024, 10, 25))}


@PROPS
@given(
    zone=st.sampled_from(sorted(ZONES)),
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 140),  # every 45 min over ~4.4 days
            st.one_of(st.just(math.nan), st.integers(300, 700).map(lambda i: i / 100)),
        ),
        max_size=60,
    ),
    n_days=st.integers(0, 4),
)
def test_daily_rise_matches_a_plain_scan(
    zone: str, rows: list[tuple[int, int, float]], n_days: int
) -> None:
    tz, base = ZONES[zone]
    data = [(r, base + i * 45 * MIN, v) for r, i, v in rows]
    edges = (
        calendar_edges(base, base + n_days * DAY, "day", tz) if n_days else np.empty(0, np.int64)
    )
    ts, value, row = columns(data)
    got = daily_rise(ts, value, row, n_rows=3, day_edges_ns=edges)
    want = ref_rise(data, edges.tolist(), 3)
    for r, (rise, day) in enumerate(want):
        assert got.rise_day[r] == day
        assert close(got.rise[r], rise)


def ref_slope(rows: list[Row], n_rows: int) -> list[float]:
    points = latest(rows)
    out = []
    for r in range(n_rows):
        mine = [((t - T0) / DAY, v) for (rr, t), v in points.items() if rr == r]
        if len(mine) < 2:
            out.append(math.nan)
            continue
        mt = math.fsum(t for t, _ in mine) / len(mine)
        mv = math.fsum(v for _, v in mine) / len(mine)
        sxy = math.fsum((t - mt) * (v - mv) for t, v in mine)
        sxx = math.fsum((t - mt) ** 2 for t, _ in mine)
        out.append(sxy / sxx)
    return out


@PROPS
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 2000).map(lambda i: T0 + i * 7 * MIN),
            st.one_of(st.just(math.nan), st.integers(-500, 500).map(lambda i: i / 100)),
        ),
        max_size=50,
    )
)
def test_trend_matches_textbook_least_squares(rows: list[Row]) -> None:
    ts, value, row = columns(rows)
    got = trend_per_day(ts, value, row, n_rows=3)
    for r, want in enumerate(ref_slope(rows, 3)):
        assert close(got[r], want, rel=1e-7, abs_=1e-9)


# --- rain intensity -------------------------------------------------------------------------


def test_an_hour_with_12_mm_over_six_readings_is_12_mm_per_hour() -> None:
    edges = fixed_edges(T0, T0 + 4 * HOUR, HOUR)
    # Gauge 0, every 10 min: hour 1 gets 2 mm in each of its six readings (a storm); the 0 mm
    # readings of hour 0 are a measured dry hour; hours 2 and 3 sent nothing. The reading
    # stamped exactly 02:00 belongs to hour 2. Gauge 1 saw 5 mm in hour 0 and 15 mm in hour 3;
    # gauge 2 sent nothing at all.
    ten = np.arange(6, dtype=np.int64) * 10 * MIN
    rows: list[Row] = [(0, T0 + int(t), 0.0) for t in ten]
    rows += [(0, T0 + HOUR + int(t), 2.0) for t in ten]
    rows += [(0, T0 + 2 * HOUR, 0.4)]
    rows += [(1, T0 + 10 * MIN, 5.0), (1, T0 + 3 * HOUR + 20 * MIN, 15.0)]
    ts, value, row = columns(rows)
    got = max_intensity(ts, value, row, n_rows=3, edges_ns=edges)
    assert got.max[0] == pytest.approx(12.0)  # mm/h
    assert got.window[0] == 1
    assert got.total[0].tolist()[:3] == pytest.approx([0.0, 12.0, 0.4])
    assert math.isnan(got.total[0, 3])  # no data is not 0 mm
    assert got.count[0].tolist() == [6, 6, 1, 0]
    assert (got.max[1], got.window[1]) == (15.0, 3)
    assert math.isnan(got.max[2])
    assert got.window[2] == -1
    assert got.peak == (15.0, 1, 3)  # the heaviest gauge-hour: gauges are not added up


def test_no_rain_data_at_all_has_no_peak() -> None:
    empty = np.empty(0, dtype=np.int64)
    got = max_intensity(
        empty,
        np.empty(0),
        empty.astype(np.int32),
        n_rows=2,
        edges_ns=fixed_edges(T0, T0 + HOUR, HOUR),
    )
    assert got.window.tolist() == [-1, -1]
    peak = got.peak
    assert math.isnan(peak[0])
    assert peak[1:] == (-1, -1)


def ref_intensity(rows: list[Row], edges: list[int], n_rows: int) -> list[tuple[float, int]]:
    totals: dict[tuple[int, int], list[float]] = {}
    for (r, t), v in latest(rows).items():
        for w in range(len(edges) - 1):
            if edges[w] <= t < edges[w + 1]:
                totals.setdefault((r, w), []).append(v)
    out = []
    for r in range(n_rows):
        best, at = math.nan, -1
        for w in range(len(edges) - 1):
            if (r, w) in totals:
                total = math.fsum(totals[(r, w)])
                if at == -1 or total > best:
                    best, at = total, w
        out.append((best, at))
    return out


@PROPS
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 60),  # every 10 min over ~10 h
            st.one_of(st.just(math.nan), st.integers(0, 80).map(lambda i: i / 4)),
        ),
        max_size=60,
    ),
    start_min=st.integers(-60, 300),
    n_hours=st.integers(0, 8),
)
def test_max_intensity_matches_a_plain_scan(
    rows: list[tuple[int, int, float]], start_min: int, n_hours: int
) -> None:
    data = [(r, T0 + i * 10 * MIN, v) for r, i, v in rows]
    start = T0 + start_min * MIN
    edges = fixed_edges(start, start + n_hours * HOUR, HOUR, T0)
    ts, value, row = columns(data)
    got = max_intensity(ts, value, row, n_rows=3, edges_ns=edges)
    want = ref_intensity(data, edges.tolist(), 3)
    for r, (best, at) in enumerate(want):
        assert got.window[r] == at
        assert close(got.max[r], best)
    found = [(best, r, at) for r, (best, at) in enumerate(want) if at >= 0]
    if found:
        top = max(b for b, _, _ in found)
        first = next(f for f in found if f[0] == top)
        total, row_, window = got.peak
        assert close(total, first[0])
        assert (row_, window) == first[1:]
    else:
        assert got.peak[1:] == (-1, -1)


# --- windows over a level -------------------------------------------------------------------


def test_hours_over_the_who_pm25_guideline() -> None:
    edges = fixed_edges(T0, T0 + 4 * HOUR, HOUR)
    who_pm25 = 15.0
    # San Nicolás, two stations every 5 min. Hour 0: both at 10 (under). Hour 1: 12 and 20,
    # pooled mean 16 (over, though one station is under). Hour 2: exactly 15 (not over).
    # Hour 3: nothing arrived, so it is neither over nor measured.
    five = np.arange(12, dtype=np.int64) * 5 * MIN
    rows: list[Row] = []
    for hour, (a, b) in enumerate([(10.0, 10.0), (12.0, 20.0), (15.0, 15.0)]):
        rows += [(0, T0 + hour * HOUR + int(t), a) for t in five]
        rows += [(1, T0 + hour * HOUR + int(t), b) for t in five]
    rows += [(1, T0 + HOUR, 1000.0)]  # retried write of station 1's 01:00 reading: replaced below
    rows += [(1, T0 + HOUR, 20.0)]
    ts, value, row = columns(rows)
    got = windows_over(ts, value, row, edges_ns=edges, level=who_pm25)
    assert (got.n_over, got.n_measured) == (1, 3)
    assert got.over.tolist() == [False, True, False, False]
    assert got.mean[1] == pytest.approx(16.0)
    assert got.count.tolist() == [24, 24, 24, 0]
    # Requiring 75 % of the twenty-four 5-min readings per hour: a thin hour is not measured.
    thin = windows_over(ts[:6], value[:6], row[:6], edges_ns=edges, level=who_pm25, min_count=18)
    assert (thin.n_over, thin.n_measured) == (0, 0)
    with pytest.raises(ValueError, match="min_count"):
        windows_over(ts, value, row, edges_ns=edges, level=who_pm25, min_count=0)


@PROPS
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 60),
            st.one_of(st.just(math.nan), st.integers(0, 40).map(float)),
        ),
        max_size=60,
    ),
    n_hours=st.integers(0, 12),
    level=st.sampled_from([10.0, 15.0, 20.0]),
    min_count=st.integers(1, 3),
)
def test_windows_over_match_a_plain_scan(
    rows: list[tuple[int, int, float]], n_hours: int, level: float, min_count: int
) -> None:
    data = [(r, T0 + i * 10 * MIN, v) for r, i, v in rows]
    edges = fixed_edges(T0, T0 + n_hours * HOUR, HOUR)
    ts, value, row = columns(data)
    got = windows_over(ts, value, row, edges_ns=edges, level=level, min_count=min_count)
    cells: dict[int, list[float]] = {}
    for (_, t), v in latest(data).items():
        for w in range(len(edges) - 1):
            if edges[w] <= t < edges[w + 1]:
                cells.setdefault(w, []).append(v)
    measured = [w for w, vs in cells.items() if len(vs) >= min_count]
    over = [w for w in measured if math.fsum(cells[w]) / len(cells[w]) > level]
    assert got.n_measured == len(measured)
    assert got.n_over == len(over)
    assert np.flatnonzero(got.over).tolist() == sorted(over)

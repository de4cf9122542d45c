"""The statistics kernel against an independent plain-Python reference, on random inputs.

The reference goes one reading at a time: it keeps the last value given for each (series,
time), puts each reading in its window by comparing with the edges, and computes every
statistic with the standard library (math.fsum, statistics.stdev) and the textbook linear
quantile. Windows are fixed (random length and origin) or local calendar days, weeks and months
in a zone without daylight saving (Córdoba) and one with it (Madrid).
"""

from __future__ import annotations

import math
import statistics as pystats
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.aggregate import window_stats
from core.readings import Readings
from core.stats import STATISTICS, Workspace, aggregate
from core.timeutil import datetime_to_ns
from core.windows import Calendar, CalendarUnit, Fixed, calendar_edges, edges, fixed_edges

S = 1_000_000_000
CORDOBA = ZoneInfo("America/Argentina/Cordoba")
MADRID = ZoneInfo("Europe/Madrid")
QUANTILES = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)

Row = tuple[int, int, float]  # (series, ts_ns, value)


def reference(
    rows: list[Row],
    edges_ns: list[int],
    group_of: dict[int, int],
    n_groups: int,
    quantiles: tuple[float, ...],
) -> dict[tuple[int, int], dict[str, object]]:
    latest: dict[tuple[int, int], float] = {}
    for series, ts, value in rows:  # the last value given for a (series, time) wins
        latest[(series, ts)] = value
    cells: dict[tuple[int, int], list[tuple[int, int, float]]] = defaultdict(list)
    for (series, ts), value in latest.items():
        for w in range(len(edges_ns) - 1):
            if edges_ns[w] <= ts < edges_ns[w + 1]:
                cells[(group_of[series], w)].append((ts, series, value))
    out = {}
    for g in range(n_groups):
        for w in range(len(edges_ns) - 1):
            items = cells.get((g, w), [])
            values = [v for _, _, v in items]
            n = len(values)
            stats: dict[str, object] = {"count": n}
            if n:
                ordered = sorted(values)
                earliest = min(t for t, _, _ in items)
                latest_t = max(t for t, _, _ in items)
                stats.update(
                    sum=math.fsum(values),
                    mean=math.fsum(values) / n,
                    min=ordered[0],
                    max=ordered[-1],
                    std=pystats.stdev(values) if n > 1 else math.nan,
                    # Ties in time go to the later series.
                    first=max((s, v) for t, s, v in items if t == earliest)[1],
                    last=max((s, v) for t, s, v in items if t == latest_t)[1],
                )
                for q in quantiles:
                    h = (n - 1) * q
                    lo = math.floor(h)
                    hi = min(lo + 1, n - 1)
                    stats[f"q{q}"] = ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])
            out[(g, w)] = stats
    return out


def close(got: float, want: object) -> bool:
    assert isinstance(want, float | int)
    if math.isnan(want):
        return math.isnan(got)
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def check(
    table: object, want: dict[tuple[int, int], dict[str, object]], quantiles: tuple[float, ...]
) -> None:
    for (g, w), stats in want.items():
        assert table.count[g, w] == stats["count"], (g, w)  # type: ignore[attr-defined]
        for name in STATISTICS[1:]:
            got = getattr(table, name)[g, w]
            if stats["count"] == 0:
                assert math.isnan(got), (name, g, w)
            else:
                assert close(float(got), stats[name]), (name, g, w, got, stats[name])
        for q in quantiles:
            got = table.quantiles[q][g, w]  # type: ignore[attr-defined]
            if stats["count"] == 0:
                assert math.isnan(got)
            else:
                assert close(float(got), stats[f"q{q}"]), (q, g, w, got, stats[f"q{q}"])


values = st.one_of(
    st.floats(-1000, 1000, allow_nan=False).map(lambda v: round(v, 2)),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@st.composite
def fixed_cases(draw: st.DrawFn) -> tuple[list[Row], list[int], bool, int]:
    series = draw(st.integers(1, 4))
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, series - 1), st.integers(-50, 150).map(lambda t: t * S), values
            ),
            max_size=60,
        )
    )
    every = draw(st.integers(1, 60)) * S
    origin = draw(st.integers(-100, 100)) * S
    start = draw(st.integers(-60, 60)) * S
    end = start + draw(st.integers(1, 200)) * S
    return rows, fixed_edges(start, end, every, origin).tolist(), draw(st.booleans()), series


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fixed_cases(), st.sampled_from([(), QUANTILES, (0.25, 0.75)]))
def test_fixed_windows_match_the_reference(
    case: tuple[list[Row], list[int], bool, int], quantiles: tuple[float, ...]
) -> None:
    rows, edge_list, pooled, series = case
    group_of = {s: 0 if pooled else s for s in range(series)}
    n_groups = 1 if pooled else series
    table = aggregate(
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[0] for r in rows], dtype=np.int32),
        np.array([r[2] for r in rows], dtype=np.float64),
        group=np.array([group_of[r[0]] for r in rows], dtype=np.int32),
        n_groups=n_groups,
        edges_ns=np.array(edge_list, dtype=np.int64),
        quantiles=quantiles,
    )
    check(table, reference(rows, edge_list, group_of, n_groups, quantiles), quantiles)


@st.composite
def calendar_cases(draw: st.DrawFn) -> tuple[list[Row], list[int], ZoneInfo]:
    tz = draw(st.sampled_from([CORDOBA, MADRID]))
    unit: CalendarUnit = draw(st.sampled_from(["day", "week", "month"]))
    # Around month ends and Madrid's March and October clock changes of 2024.
    base = draw(
        st.sampled_from(
            [
                datetime(2024, 1, 30, 22),
                datetime(2024, 3, 29, 23),
                datetime(2024, 10, 26, 23),
                datetime(2024, 2, 28, 21),
            ]
        )
    )
    start = datetime_to_ns(base.replace(tzinfo=tz))
    rows = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2),
                st.integers(0, 10 * 86_400 // 900).map(lambda k: start + k * 900 * S),
                values,
            ),
            max_size=60,
        )
    )
    end = start + draw(st.integers(1, 40)) * 86_400 * S
    return rows, calendar_edges(start, end, unit, tz).tolist(), tz


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendar_cases())
def test_calendar_windows_match_the_reference(case: tuple[list[Row], list[int], ZoneInfo]) -> None:
    rows, edge_list, _ = case
    group_of = {0: 0, 1: 1, 2: 2}
    table = aggregate(
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[0] for r in rows], dtype=np.int32),
        np.array([r[2] for r in rows], dtype=np.float64),
        group=np.array([r[0] for r in rows], dtype=np.int32),
        n_groups=3,
        edges_ns=np.array(edge_list, dtype=np.int64),
        quantiles=(0.5, 0.95),
    )
    check(table, reference(rows, edge_list, group_of, 3, (0.5, 0.95)), (0.5, 0.95))


def test_local_days_start_at_local_midnight_and_change_length_with_the_clock() -> None:
    day = calendar_edges(
        datetime_to_ns(datetime(2024, 3, 30, 12, tzinfo=MADRID)),
        datetime_to_ns(datetime(2024, 4, 1, 12, tzinfo=MADRID)),
        "day",
        MADRID,
    )
    lengths_h = (np.diff(day) // (3600 * S)).tolist()
    assert lengths_h == [24, 23, 24], "31 March 2024 has 23 hours in Madrid"
    assert datetime.fromtimestamp(int(day[0]) / S, MADRID).hour == 0
    cordoba = calendar_edges(0, 40 * 86_400 * S, "month", CORDOBA)
    assert [datetime.fromtimestamp(int(e) / S, CORDOBA).day for e in cordoba] == [1, 1, 1, 1]


def test_a_known_day_by_hand() -> None:
    # Santa Fe (UTC-3): 23:30 and 00:30 local are different days although they are 1 h apart.
    tz = CORDOBA
    midnight = datetime_to_ns(datetime(2026, 11, 27, tzinfo=tz))
    ts = np.array([midnight - 1800 * S, midnight + 1800 * S, midnight + 7200 * S], np.int64)
    value = np.array([10.0, 2.0, 4.0])
    edge = edges(Calendar("day", tz), midnight - 3600 * S, midnight + 86_400 * S)
    table = aggregate(
        ts,
        np.zeros(3, np.int32),
        value,
        group=np.zeros(3, np.int32),
        n_groups=1,
        edges_ns=edge,
        quantiles=(0.5,),
    )
    assert table.count.tolist() == [[1, 2]]
    assert table.mean[0, 1] == 3.0 and table.std[0, 1] == math.sqrt(2.0)
    assert (table.first[0, 1], table.last[0, 1]) == (2.0, 4.0)
    assert table.quantiles[0.5][0, 1] == 3.0


def test_an_empty_window_is_there_with_count_zero() -> None:
    edge = fixed_edges(0, 30 * S, 10 * S)
    table = aggregate(
        np.array([5 * S, 25 * S], np.int64),
        np.zeros(2, np.int32),
        np.array([1.0, 3.0]),
        group=np.zeros(2, np.int32),
        n_groups=1,
        edges_ns=edge,
        quantiles=(0.95,),
    )
    assert table.count.tolist() == [[1, 0, 1]]
    assert all(math.isnan(getattr(table, s)[0, 1]) for s in STATISTICS[2:])
    assert math.isnan(table.quantiles[0.95][0, 1])


def test_a_workspace_gives_the_same_answers_call_after_call() -> None:
    rng = np.random.default_rng(3)
    ws = Workspace()
    for n in (1000, 10, 5000):
        ts = np.sort(rng.integers(0, 100 * S, n))
        dev = rng.integers(0, 3, n).astype(np.int32)
        order = np.lexsort((ts, dev))
        ts, dev = ts[order], dev[order]
        v = rng.normal(size=n)
        edge = fixed_edges(0, 100 * S, 7 * S)
        fresh = aggregate(ts, dev, v, group=dev, n_groups=3, edges_ns=edge, quantiles=(0.9,))
        reused = aggregate(
            ts, dev, v, group=dev, n_groups=3, edges_ns=edge, quantiles=(0.9,), workspace=ws
        )
        for name in STATISTICS:
            assert np.array_equal(getattr(fresh, name), getattr(reused, name), equal_nan=True)
        assert np.array_equal(fresh.quantiles[0.9], reused.quantiles[0.9], equal_nan=True)


def test_big_cells_take_the_sorting_path_and_stay_exact() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    ts = rng.integers(0, 3600 * S, n)
    v = rng.normal(size=n)
    zeros = np.zeros(n, np.int32)
    table = aggregate(
        ts,
        np.arange(n, dtype=np.int32),
        v,
        group=zeros,
        n_groups=1,
        edges_ns=fixed_edges(0, 3600 * S, 600 * S),
        quantiles=(0.1, 0.5, 0.95),
    )
    window = ts // (600 * S)
    for q in (0.1, 0.5, 0.95):
        want = [np.quantile(v[window == w], q) for w in range(6)]
        assert np.allclose(table.quantiles[q][0], want, rtol=1e-12, atol=0)


def test_unknown_statistics_and_bad_quantiles_are_refused() -> None:
    empty = np.empty(0, np.int64)
    with pytest.raises(ValueError, match="median"):
        aggregate(
            empty,
            empty,
            empty.astype(float),
            group=empty,
            n_groups=1,
            edges_ns=fixed_edges(0, 10, 5),
            statistics=("median",),
        )
    with pytest.raises(ValueError, match=r"1\.5"):
        aggregate(
            empty,
            empty,
            empty.astype(float),
            group=empty,
            n_groups=1,
            edges_ns=fixed_edges(0, 10, 5),
            quantiles=(1.5,),
        )


def test_window_stats_pools_and_excludes_flagged_readings() -> None:
    readings = Readings.from_arrays(
        [0, 1 * S, 2 * S, 3 * S], [0, 0, 1, 1], [4, 4, 4, 5], [1.0, 3.0, 100.0, 7.0]
    )
    edge = fixed_edges(0, 10 * S, 10 * S)
    devices = np.array([0, 1], np.int32)
    per_device = window_stats(readings, sensor=4, devices=devices, edges_ns=edge)
    assert per_device.count.tolist() == [[2], [1]]
    pooled = window_stats(readings, sensor=4, devices=devices, edges_ns=edge, pooled=True)
    assert pooled.mean.tolist() == [[104.0 / 3]]
    flagged = np.array([False, False, True, False])
    kept = window_stats(
        readings, sensor=4, devices=devices, edges_ns=edge, pooled=True, exclude=flagged
    )
    assert kept.mean.tolist() == [[2.0]]
    assert Fixed(10 * S).every_ns == 10 * S

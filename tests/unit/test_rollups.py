"""Rollups give the kernel's statistics for any window built from whole rollup windows."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from core.readings import Readings
from core.rollups import (
    Rollups,
    coarsen,
    compute_rollups,
    day_origin_ns,
    to_table,
)
from core.sketch import TINY
from core.stats import Table, aggregate
from core.windows import calendar_edges, fixed_edges

S = 1_000_000_000
MIN = 60 * S
HOUR = 3600 * S
DAY = 86_400 * S
#: 2025-11-28 00:00 at UTC-3 (03:00 UTC): local midnight of the pilots.
MIDNIGHT = 1_764_298_800 * S
ORIGIN = 3 * HOUR
CORDOBA = ZoneInfo("America/Argentina/Cordoba")
N_SENSORS = 3


def random_readings(
    rng: np.random.Generator, n: int, span_ns: int, loc: float, scale: float, dup: float
) -> Readings:
    """Unsorted readings around local midnight, some sharing (device, sensor, time)."""
    ts = MIDNIGHT - span_ns // 2 + rng.integers(0, span_ns, n)
    ts = np.where(rng.random(n) < 0.2, ts - ts % S, ts)  # whole seconds collide more
    device = rng.integers(0, 4, n)
    sensor = rng.integers(0, N_SENSORS, n)
    n_dup = int(n * dup)
    if n_dup:
        pick = rng.integers(0, n, n_dup)
        ts = np.concatenate([ts, ts[pick]])
        device = np.concatenate([device, device[pick]])
        sensor = np.concatenate([sensor, sensor[pick]])
    value = rng.normal(loc, scale, len(ts))
    order = rng.permutation(len(ts))
    return Readings.from_arrays(ts[order], device[order], sensor[order], value[order])


def kernel(
    readings: Readings, group: NDArray[np.int64], n_groups: int, edges: NDArray[np.int64]
) -> Table:
    series = readings.device.astype(np.int64) * N_SENSORS + readings.sensor
    return aggregate(
        readings.ts_ns,
        series,
        readings.value,
        group=group,
        n_groups=n_groups,
        edges_ns=edges,
    )


def assert_same_statistics(got: Table, want: Table, scale: float) -> None:
    assert np.array_equal(got.count, want.count)
    for name in ("min", "max", "first", "last"):
        assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True), name
    # Sums and deviations are rounded in a different order: equal to 1e-9 relative, with an
    # absolute floor at the data's own rounding scale (a mean of zero has no relative error).
    for name in ("mean", "std", "sum"):
        np.testing.assert_allclose(
            getattr(got, name), getattr(want, name), rtol=1e-9, atol=1e-12 * scale, err_msg=name
        )


WINDOWS: dict[str, tuple[str, Callable[[int, int], NDArray[np.int64]]]] = {
    "1m": ("1m", lambda a, b: fixed_edges(a, b, MIN)),
    "5m": ("1m", lambda a, b: fixed_edges(a, b, 5 * MIN)),
    "1h": ("1h", lambda a, b: fixed_edges(a, b, HOUR)),
    "3h": ("1h", lambda a, b: fixed_edges(a, b, 3 * HOUR)),
    "local day (from 1h)": ("1h", lambda a, b: calendar_edges(a, b, "day", CORDOBA)),
    "local day (from 1d)": ("1d", lambda a, b: calendar_edges(a, b, "day", CORDOBA)),
    "2 local days (from 1d)": ("1d", lambda a, b: fixed_edges(a, b, 2 * DAY, ORIGIN)),
    "local week": ("1d", lambda a, b: calendar_edges(a, b, "week", CORDOBA)),
}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    span_h=st.sampled_from([1, 6, 30, 80]),
    loc=st.sampled_from([0.0, -40.0, 1013.25]),
    scale=st.sampled_from([1e-3, 1.0, 250.0]),
    dup=st.sampled_from([0.0, 0.3]),
    window=st.sampled_from(sorted(WINDOWS)),
    pooled=st.booleans(),
)
def test_rollup_statistics_equal_the_kernel_on_raw_readings(
    seed: int,
    n: int,
    span_h: int,
    loc: float,
    scale: float,
    dup: float,
    window: str,
    pooled: bool,
) -> None:
    rng = np.random.default_rng(seed)
    readings = random_readings(rng, n, span_h * HOUR, loc, scale, dup)
    resolution, make_edges = WINDOWS[window]
    minutes = compute_rollups(readings, "1m")
    rollups = {
        "1m": minutes,
        "1h": coarsen(minutes, "1m", "1h"),
        "1d": coarsen(coarsen(minutes, "1m", "1h"), "1h", "1d", origin_ns=ORIGIN),
    }[resolution]
    lo, hi = int(readings.ts_ns.min()), int(readings.ts_ns.max()) + 1
    # Whole windows of the coarsest rollup that covers the data, cut by the query's edges.
    edges = make_edges(lo - (lo - ORIGIN) % DAY, hi + DAY - (hi - ORIGIN) % DAY)
    if pooled:  # all devices of a sensor in one row: first/last ties go to the higher device
        n_groups = N_SENSORS
        want = kernel(readings, readings.sensor.astype(np.int64), n_groups, edges)
        group = rollups.sensor.astype(np.int64)
    else:
        n_groups = 4 * N_SENSORS
        code = readings.device.astype(np.int64) * N_SENSORS + readings.sensor
        want = kernel(readings, code, n_groups, edges)
        group = rollups.device.astype(np.int64) * N_SENSORS + rollups.sensor
    got = to_table(rollups, resolution, group=group, n_groups=n_groups, edges_ns=edges)
    assert_same_statistics(got, want, abs(loc) + scale)


def test_a_small_example_by_hand() -> None:
    t = MIDNIGHT
    readings = Readings.from_arrays(
        [t + 50 * S, t + 10 * S, t + 10 * S, t + 30 * S, t + 70 * S],
        [0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1],
        [4.0, 99.0, 1.0, 7.0, 5.0],  # the second t+10s reading replaces the first
    )
    r = compute_rollups(readings, "1m")
    assert r.start_ns.tolist() == [t, t + MIN]
    assert r.count.tolist() == [3, 1]
    assert r.sum.tolist() == [12.0, 5.0]
    assert r.m2.tolist() == [(1 - 4) ** 2 + (7 - 4) ** 2 + 0.0, 0.0]
    assert (r.min.tolist(), r.max.tolist()) == ([1.0, 5.0], [7.0, 5.0])
    assert (r.first.tolist(), r.first_ts.tolist()) == ([1.0, 5.0], [t + 10 * S, t + 70 * S])
    assert (r.last.tolist(), r.last_ts.tolist()) == ([4.0, 5.0], [t + 50 * S, t + 70 * S])
    hour = coarsen(r, "1m", "1h")
    assert hour.start_ns.tolist() == [t]  # local midnight is also a UTC hour
    assert (hour.count.tolist(), hour.sum.tolist()) == ([4], [17.0])
    mean = 17.0 / 4
    assert hour.m2[0] == pytest.approx(sum((v - mean) ** 2 for v in [1.0, 7.0, 4.0, 5.0]))
    assert (hour.first.tolist(), hour.last.tolist()) == ([1.0], [5.0])


def test_days_start_at_local_midnight_and_hours_nest_in_them() -> None:
    assert day_origin_ns(CORDOBA) == ORIGIN
    assert day_origin_ns(ZoneInfo("America/Argentina/Buenos_Aires")) == ORIGIN
    assert day_origin_ns(ZoneInfo("UTC")) == 0
    with pytest.raises(ValueError, match="1h rollups"):
        day_origin_ns(ZoneInfo("Europe/Berlin"))
    readings = Readings.from_arrays(
        [MIDNIGHT - S, MIDNIGHT, MIDNIGHT + DAY - S], [0, 0, 0], [0, 0, 0], [1.0, 2.0, 3.0]
    )
    days = compute_rollups(readings, "1d", origin_ns=ORIGIN)
    assert days.start_ns.tolist() == [MIDNIGHT - DAY, MIDNIGHT]
    assert days.count.tolist() == [1, 2]
    via_hours = coarsen(compute_rollups(readings, "1h"), "1h", "1d", origin_ns=ORIGIN)
    assert via_hours.equals(days)


def test_windows_that_cut_through_a_rollup_window_are_refused() -> None:
    readings = Readings.from_arrays([MIDNIGHT], [0], [0], [1.0])
    hours = compute_rollups(readings, "1h")
    with pytest.raises(ValueError, match="whole 1h"):
        to_table(
            hours,
            "1h",
            group=np.zeros(1, dtype=np.int64),
            n_groups=1,
            edges_ns=fixed_edges(MIDNIGHT, MIDNIGHT + HOUR, 30 * MIN),
        )
    with pytest.raises(ValueError, match="nest"):
        coarsen(hours, "1h", "1d", origin_ns=ORIGIN + 30 * MIN)
    with pytest.raises(ValueError, match="resolution"):
        compute_rollups(readings, "1w")


def test_sketch_quantiles_of_merged_rollups_keep_the_bound() -> None:
    rng = np.random.default_rng(5)
    n = 5000
    readings = Readings.from_arrays(
        MIDNIGHT + rng.integers(0, DAY, n),
        np.zeros(n, dtype=np.int32),
        np.zeros(n, dtype=np.int16),
        rng.lognormal(2, 1, n),
    )
    day = coarsen(compute_rollups(readings, "1h"), "1h", "1d", origin_ns=ORIGIN)
    qs = [0.0, 0.05, 0.5, 0.95, 1.0]
    table = to_table(
        day,
        "1d",
        group=np.zeros(len(day), dtype=np.int64),
        n_groups=1,
        edges_ns=np.asarray([MIDNIGHT, MIDNIGHT + DAY]),
        quantiles=qs,
    )
    values = readings.deduplicated().value
    for q in qs:
        got = float(table.quantiles[q][0, 0])
        lower = float(np.quantile(values, q, method="lower"))
        higher = float(np.quantile(values, q, method="higher"))
        assert lower * (1 - 0.01) <= got <= higher * (1 + 0.01)
        assert abs(got - np.quantile(values, q)) <= 0.01 * higher + TINY
    assert table.quantiles[0.0][0, 0] == values.min()  # clamped to the exact extremes
    assert table.quantiles[1.0][0, 0] == values.max()


def test_empty_input_gives_empty_rollups_and_nan_statistics() -> None:
    empty = compute_rollups(Readings.empty(), "1m")
    assert len(empty) == 0
    assert isinstance(coarsen(empty, "1m", "1h"), Rollups)
    table = to_table(
        empty,
        "1m",
        group=np.zeros(0, dtype=np.int64),
        n_groups=2,
        edges_ns=fixed_edges(MIDNIGHT, MIDNIGHT + HOUR, HOUR),
        quantiles=[0.5],
    )
    assert table.count.tolist() == [[0], [0]]
    assert np.isnan(table.mean).all() and np.isnan(table.quantiles[0.5]).all()


def test_pooled_devices_tied_at_first_and_last_instant_agree_with_the_kernel() -> None:
    t = MIDNIGHT
    readings = Readings.from_arrays(
        [t, t, t + 30 * MIN, t + 59 * MIN, t + 59 * MIN, t],
        [2, 1, 3, 1, 2, 0],
        [0, 0, 0, 0, 0, 0],
        [20.0, 10.0, 30.0, 11.0, 21.0, 0.5],
    )
    edges = np.asarray([t, t + HOUR])
    want = kernel(readings, np.zeros(len(readings), dtype=np.int64), 1, edges)
    minutes = compute_rollups(readings, "1m")
    got = to_table(
        minutes, "1m", group=np.zeros(len(minutes), dtype=np.int64), n_groups=1, edges_ns=edges
    )
    assert (got.first[0, 0], got.last[0, 0]) == (want.first[0, 0], want.last[0, 0]) == (20.0, 21.0)

"""Per-reading flags against hand-computed answers and plain-Python models."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.flags import (
    FLAG_NAMES,
    combined,
    duplicated,
    exclude_flagged,
    out_of_range,
    spike,
    stuck,
)
from core.quality import duplicates
from core.readings import Readings
from core.registry import Registry

NS = 1_000_000_000
MIN = 60 * NS
T0 = 1_732_935_600 * NS  # 2024-11-30T00:00-03:00
PROPS = settings(max_examples=60, deadline=None)

Row = tuple[int, int, int, float]  # (ts_ns, device, sensor, value)


def batch(rows: list[Row]) -> Readings:
    if not rows:
        return Readings.empty()
    ts, dev, sen, val = zip(*rows, strict=True)
    return Readings.from_arrays(ts, dev, sen, val)


def series_order(rows: list[Row]) -> list[list[int]]:
    """Indices of each (device, sensor) series in time order, ties as given."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i][1], rows[i][2], rows[i][0]))
    out: list[list[int]] = []
    for i in order:
        if out and rows[out[-1][-1]][1:3] == rows[i][1:3]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


# Few devices, sensors and instants on a 10-minute grid: repeats, ties and runs are common.
rows_with_runs = st.lists(
    st.tuples(
        st.integers(0, 12).map(lambda i: T0 + i * 10 * MIN),
        st.integers(0, 2),
        st.integers(0, 1),
        st.sampled_from([1.0, 1.0, 2.5, 3.0]),
    ),
    max_size=50,
)
rows_any = st.lists(
    st.tuples(
        st.integers(0, 30).map(lambda i: T0 + i * 10 * MIN),
        st.integers(0, 2),
        st.integers(0, 1),
        st.one_of(st.sampled_from([0.0, 1.0]), st.integers(-800, 800).map(lambda i: i / 8)),
    ),
    max_size=60,
)


# --- range ----------------------------------------------------------------------------------


def test_out_of_range_uses_the_registered_limits(registry: Registry) -> None:
    level = registry.sensors["level"].code  # -1 .. 15 m
    ph = registry.sensors["ph"].code  # 0 .. 14
    readings = Readings.from_arrays(
        [T0] * 6,
        [0] * 6,
        [level, level, level, level, ph, ph],
        [-1.0, 15.0, 15.01, math.nan, 14.2, 7.0],
    )
    assert out_of_range(readings, registry).tolist() == [False, False, True, True, True, False]


@PROPS
@given(
    values=st.lists(
        st.tuples(st.integers(0, 16), st.floats(-50, 12000, allow_nan=False)), max_size=30
    )
)
def test_out_of_range_matches_registry(values: list[tuple[int, float]], registry: Registry) -> None:
    readings = Readings.from_arrays(
        [T0] * len(values), [0] * len(values), [s for s, _ in values], [v for _, v in values]
    )
    limits = registry.sensor_list
    want = [not limits[s].min <= v <= limits[s].max for s, v in values]
    assert out_of_range(readings, registry).tolist() == want


# --- stuck ----------------------------------------------------------------------------------


def ref_stuck(rows: list[Row], interval: list[float], min_intervals: int) -> list[bool]:
    out = [False] * len(rows)
    for series in series_order(rows):
        runs: list[list[int]] = []
        for i in series:
            if runs and rows[runs[-1][-1]][3] == rows[i][3]:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            span = rows[run[-1]][0] - rows[run[0]][0]
            if span >= min_intervals * interval[rows[run[0]][1]] * NS:
                for i in run:
                    out[i] = True
    return out


@PROPS
@given(rows=rows_with_runs, min_intervals=st.integers(1, 5))
def test_stuck_matches_runs_by_hand(rows: list[Row], min_intervals: int) -> None:
    interval = [600.0, 300.0, 1200.0]
    got = stuck(batch(rows), interval_s_of_device=np.asarray(interval), min_intervals=min_intervals)
    assert got.tolist() == ref_stuck(rows, interval, min_intervals)


def test_stuck_river_gauge_known_answer() -> None:
    # Level every 10 min: 3.20 repeated 7 times (60 min end to end), then 3.21 repeated 6 times
    # (50 min). With 6 intervals the first run is stuck, the second is not. Another device's
    # equal values in between must not join the run.
    values = [3.20] * 7 + [3.21] * 6
    rows = [(T0 + i * 10 * MIN, 0, 0, v) for i, v in enumerate(values)]
    rows += [(T0 + 5 * MIN, 1, 0, 3.20), (T0 + 200 * MIN, 0, 1, 3.20)]
    got = stuck(batch(rows[::-1]), interval_s_of_device=np.asarray([600, 600]), min_intervals=6)
    assert got[::-1].tolist() == [True] * 7 + [False] * 6 + [False, False]
    with pytest.raises(ValueError, match="min_intervals"):
        stuck(batch(rows), interval_s_of_device=np.asarray([600, 600]), min_intervals=0)


# --- spike ----------------------------------------------------------------------------------


def ref_spike(rows: list[Row], window: int, threshold: float, floor: float) -> list[bool]:
    out = [False] * len(rows)
    half = window // 2
    for series in series_order(rows):
        values = [rows[i][3] for i in series]
        for p, i in enumerate(series):
            near = values[max(0, p - half) : p + half + 1]
            median = statistics.median(near)
            mad = statistics.median([abs(v - median) for v in near])
            scale = 1.4826 * max(mad, floor)
            deviation = abs(values[p] - median)
            out[i] = deviation / scale > threshold if scale > 0 else deviation > 0
    return out


@PROPS
@given(
    rows=rows_any,
    window=st.sampled_from([3, 5, 7]),
    threshold=st.sampled_from([2.0, 5.0]),
    floor=st.sampled_from([0.0, 0.5]),
)
def test_spike_matches_a_hampel_filter_by_hand(
    rows: list[Row], window: int, threshold: float, floor: float
) -> None:
    got = spike(batch(rows), window=window, threshold=threshold, mad_floor=floor)
    assert got.tolist() == ref_spike(rows, window, threshold, floor)


def test_spike_known_answer_and_series_kept_apart() -> None:
    level = [3.10, 3.12, 3.11, 3.13, 9.99, 3.12, 3.14, 3.13, 3.15]
    rows = [(T0 + i * 10 * MIN, 0, 0, v) for i, v in enumerate(level)]
    # Another device around 100 m, interleaved in time: mixing series would flag everything.
    rows += [(T0 + i * 10 * MIN + 1, 1, 0, 100.0 + i % 3) for i in range(9)]
    got = spike(batch(rows))
    assert np.flatnonzero(got).tolist() == [4]

    # A flat series with one step: MAD is 0, so the odd value out is flagged, unless a floor
    # (the sensor's resolution) is given; the equal values never are.
    flat = [(T0 + i * MIN, 2, 0, 5.0 if i == 3 else 0.0) for i in range(7)]
    assert np.flatnonzero(spike(batch(flat))).tolist() == [3]
    assert not spike(batch(flat), mad_floor=2.0).any()
    single = batch([(T0, 0, 0, 42.0)])
    assert spike(single).tolist() == [False]
    with pytest.raises(ValueError, match="odd"):
        spike(single, window=4)


# --- duplicates, combined, exclusion --------------------------------------------------------


@PROPS
@given(rows=rows_with_runs)
def test_duplicated_leaves_what_the_store_keeps(rows: list[Row]) -> None:
    readings = batch(rows)
    mask = duplicated(readings)
    assert int(mask.sum()) == duplicates(readings)
    kept = exclude_flagged(readings, mask)
    last: dict[tuple[int, int, int], float] = {}
    for ts, dev, sen, val in rows:
        last[(ts, dev, sen)] = val
    got = dict(
        zip(
            zip(kept.ts_ns.tolist(), kept.device.tolist(), kept.sensor.tolist(), strict=True),
            kept.value.tolist(),
            strict=True,
        )
    )
    assert got == last
    assert len(kept) == len(last)


def test_combined_breakdown_and_exclusion(registry: Registry) -> None:
    river = registry.devices["sf-rlv-01"].code
    gauge = registry.devices["sf-rg-01"].code
    level = registry.sensors["level"].code
    rain = registry.sensors["rain"].code
    # Level every 10 min for 3 h: a 16 m reading (out of range and a spike), a repeated point,
    # and a rain gauge at 0 mm all along (dry, not stuck).
    levels = [3.0 + 0.01 * i for i in range(18)]
    levels[9] = 16.0
    rows = [(T0 + i * 10 * MIN, river, level, v) for i, v in enumerate(levels)]
    rows.append((T0, river, level, 3.0))
    rows += [(T0 + i * 10 * MIN, gauge, rain, 0.0) for i in range(18)]
    readings = batch(rows)
    flags = combined(readings, registry, stuck_min_intervals=6)
    assert set(flags.by_flag) == set(FLAG_NAMES)
    assert np.flatnonzero(flags.by_flag["range"]).tolist() == [9]
    assert np.flatnonzero(flags.by_flag["spike"]).tolist() == [9]
    assert np.flatnonzero(flags.by_flag["duplicate"]).tolist() == [0]
    assert not flags.by_flag["stuck"].any()
    assert flags.counts == {"range": 1, "stuck": 0, "spike": 1, "duplicate": 1, "any": 2}
    assert flags.share["any"] == 2 / len(rows)
    clean = exclude_flagged(readings, flags.mask)
    assert len(clean) == len(rows) - 2
    assert clean.value.max() < 4.0

    # Without the steady-sensor exemption, three hours of 0 mm rain are "stuck".
    strict = combined(readings, registry, stuck_min_intervals=6, steady_sensors=())
    assert int(strict.by_flag["stuck"].sum()) == 18
    assert combined(Readings.empty(), registry).counts["any"] == 0

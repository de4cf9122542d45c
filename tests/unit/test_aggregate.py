"""Window statistics of the numpy core against hand-computed answers and a plain-Python model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.aggregate import Windows, tumbling, window_starts
from core.readings import Readings

Row = tuple[int, int, int, float]  # (ts_ns, device, sensor, value)


def _readings(rows: list[Row]) -> Readings:
    if not rows:
        return Readings.empty()
    ts, dev, sen, val = zip(*rows, strict=True)
    return Readings.from_arrays(ts, dev, sen, val)


def _run(
    rows: list[Row],
    *,
    sensor: int,
    devices: list[int],
    start: int,
    end: int,
    every: int,
    origin: int = 0,
) -> Windows:
    return tumbling(
        _readings(rows),
        sensor=sensor,
        devices=np.asarray(devices, dtype=np.int32),
        start_ns=start,
        end_ns=end,
        every_ns=every,
        origin_ns=origin,
    )


def reference(
    rows: list[Row],
    *,
    sensor: int,
    devices: list[int],
    start: int,
    end: int,
    every: int,
    origin: int = 0,
) -> tuple[list[int], dict[tuple[int, int], list[float]]]:
    """Window starts and the values in each (device, window start), one reading at a time."""
    latest: dict[tuple[int, int], float] = {}
    for ts, dev, sen, val in rows:
        if sen == sensor and start <= ts < end:
            latest[(dev, ts)] = val  # a later reading of the same point overwrites it
    starts: list[int] = []
    if end > start:
        w = origin + ((start - origin) // every) * every  # the aligned window holding `start`
        while w < end:
            starts.append(w)
            w += every
    cells: dict[tuple[int, int], list[float]] = {(d, w): [] for d in devices for w in starts}
    for (dev, ts), val in latest.items():
        if dev not in devices:
            continue
        for w in starts:
            if w <= ts < w + every:
                cells[(dev, w)].append(val)
    return starts, cells


def _assert_matches_reference(rows: list[Row], **query: int | list[int]) -> None:
    got = _run(rows, **query)  # type: ignore[arg-type]
    starts, cells = reference(rows, **query)  # type: ignore[arg-type]
    devices = query["devices"]
    assert got.start_ns.tolist() == starts
    assert got.devices.tolist() == devices
    assert got.count.shape == got.mean.shape == got.min.shape == got.max.shape
    assert got.count.shape == (len(devices), len(starts))
    for i, dev in enumerate(devices):  # type: ignore[arg-type]
        for j, w in enumerate(starts):
            values = cells[(dev, w)]
            assert got.count[i, j] == len(values)
            if not values:
                assert math.isnan(got.mean[i, j])
                assert math.isnan(got.min[i, j])
                assert math.isnan(got.max[i, j])
                continue
            # Summation order differs; the error is bounded by the magnitude of the inputs.
            scale = max(abs(v) for v in values)
            assert math.isclose(
                got.mean[i, j], math.fsum(values) / len(values), rel_tol=1e-9, abs_tol=1e-9 * scale
            )
            assert got.min[i, j] == min(values)
            assert got.max[i, j] == max(values)


# --- known answers -------------------------------------------------------------------------------


def test_known_answer() -> None:
    # Windows of 10 ns from origin 0 over [0, 30): starts 0, 10, 20. Sensor 1 is asked for.
    rows: list[Row] = [
        (0, 7, 1, 2.0),
        (9, 7, 1, 4.0),
        (5, 7, 1, 9.0),
        (10, 7, 1, -1.0),
        (29, 7, 1, 3.0),
        (30, 7, 1, 100.0),  # at the end: outside the half-open range
        (-1, 7, 1, 100.0),  # before the start
        (5, 7, 2, 100.0),  # another sensor
        (12, 3, 1, 8.0),
        (12, 3, 1, 6.0),  # same point again: replaces 8.0
        (15, 3, 1, 1.0),
        (15, 5, 1, 100.0),  # a device nobody asked for
    ]
    w = _run(rows, sensor=1, devices=[7, 3], start=0, end=30, every=10)
    assert w.start_ns.tolist() == [0, 10, 20]
    assert w.every_ns == 10
    assert w.count.tolist() == [[3, 1, 1], [0, 2, 0]]
    # device 7: (2 + 4 + 9) / 3 = 5 ; -1 ; 3.  device 3: (6 + 1) / 2 = 3.5
    np.testing.assert_array_equal(w.mean, [[5.0, -1.0, 3.0], [np.nan, 3.5, np.nan]])
    np.testing.assert_array_equal(w.min, [[2.0, -1.0, 3.0], [np.nan, 1.0, np.nan]])
    np.testing.assert_array_equal(w.max, [[9.0, -1.0, 3.0], [np.nan, 6.0, np.nan]])


def test_windows_align_to_the_origin_not_the_start() -> None:
    # Local midnight in UTC-3 is 03:00 UTC: with 1 h = 10 ns, origin 30 and range [45, 95)
    # the windows start at 40, 50, ..., 90; the first and last are partial.
    rows: list[Row] = [
        (44, 0, 0, 1.0),
        (45, 0, 0, 2.0),
        (49, 0, 0, 4.0),
        (50, 0, 0, 8.0),
        (94, 0, 0, 16.0),
        (95, 0, 0, 32.0),
    ]
    w = _run(rows, sensor=0, devices=[0], start=45, end=95, every=10, origin=30)
    assert w.start_ns.tolist() == [40, 50, 60, 70, 80, 90]
    assert w.count.tolist() == [[2, 1, 0, 0, 0, 1]]
    assert w.mean[0, 0] == 3.0
    assert w.max[0, 5] == 16.0


def test_window_starts_with_a_negative_origin_and_an_empty_range() -> None:
    assert window_starts(0, 25, 10, origin_ns=-3).tolist() == [-3, 7, 17]
    assert window_starts(-25, -5, 10).tolist() == [-30, -20, -10]
    assert window_starts(5, 5, 10).tolist() == []
    with pytest.raises(ValueError, match="every_ns"):
        window_starts(0, 10, 0)


def test_a_single_reading() -> None:
    w = _run([(1234, 2, 0, 7.25)], sensor=0, devices=[2], start=1000, end=2000, every=100)
    assert w.count.sum() == 1
    assert w.count[0, 2] == 1
    assert (w.mean[0, 2], w.min[0, 2], w.max[0, 2]) == (7.25, 7.25, 7.25)
    assert np.isnan(np.delete(w.mean[0], 2)).all()


def test_all_readings_in_one_window() -> None:
    values = [1.0, 2.0, 3.0, 10.0]
    rows = [(100 + i, 0, 0, v) for i, v in enumerate(values)]
    w = _run(rows, sensor=0, devices=[0], start=0, end=1000, every=1000)
    assert w.start_ns.tolist() == [0]
    assert w.count.tolist() == [[4]]
    assert (w.mean[0, 0], w.min[0, 0], w.max[0, 0]) == (4.0, 1.0, 10.0)


def test_devices_with_nothing_get_empty_windows() -> None:
    w = _run([], sensor=0, devices=[4, 1], start=0, end=50, every=10)
    assert w.count.tolist() == [[0] * 5, [0] * 5]
    assert np.isnan(w.mean).all() and np.isnan(w.min).all() and np.isnan(w.max).all()


def test_empty_range_and_no_devices() -> None:
    w = _run([(5, 0, 0, 1.0)], sensor=0, devices=[0], start=10, end=10, every=5)
    assert w.count.shape == (1, 0)
    w = _run([(5, 0, 0, 1.0)], sensor=0, devices=[], start=0, end=10, every=5)
    assert w.count.shape == (0, 2)


# --- against the reference on random inputs ------------------------------------------------------

_values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Row], dict[str, int | list[int]]]:
    every = draw(st.integers(1, 40))
    origin = draw(st.integers(-100, 100))
    start = draw(st.integers(-200, 200))
    end = start + draw(st.integers(0, 300))
    devices = draw(st.lists(st.integers(0, 5), unique=True, max_size=6))  # any order, maybe none
    sensor = draw(st.integers(0, 2))
    row = st.tuples(
        st.integers(start - 60, end + 60),  # some readings fall outside the range
        st.integers(0, 7),  # codes 6 and 7 are never asked for
        st.integers(0, 2),
        _values,
    )
    rows = draw(st.lists(row, max_size=60))
    if rows:  # repeat some points with new values: the last given must win
        for index in draw(st.lists(st.integers(0, len(rows) - 1), max_size=10)):
            ts, dev, sen, _ = rows[index]
            rows.append((ts, dev, sen, draw(_values)))
    rows = draw(st.permutations(rows))  # unsorted input
    query = {
        "sensor": sensor,
        "devices": devices,
        "start": start,
        "end": end,
        "every": every,
        "origin": origin,
    }
    return rows, query


@settings(max_examples=300, deadline=None)
@given(cases())
def test_tumbling_matches_the_reference(case: tuple[list[Row], dict[str, int | list[int]]]) -> None:
    rows, query = case
    _assert_matches_reference(rows, **query)


@settings(max_examples=50, deadline=None)
@given(st.integers(-1000, 1000), st.integers(1, 50), _values)
def test_one_reading_anywhere_lands_in_exactly_one_window(
    ts: int, every: int, value: float
) -> None:
    _assert_matches_reference(
        [(ts, 1, 0, value)], sensor=0, devices=[1], start=-1000, end=1001, every=every, origin=0
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 3), _values), min_size=1, max_size=40))
def test_everything_in_one_window(points: list[tuple[int, int, float]]) -> None:
    rows = [(ts, dev, 0, v) for ts, dev, v in points]
    _assert_matches_reference(rows, sensor=0, devices=[0, 1, 2, 3], start=0, end=100, every=100)

"""The columnar `Readings` batch: its invariants and whole-batch operations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.readings import Readings


def _batch(rows: list[tuple[int, int, int, float]]) -> Readings:
    if not rows:
        return Readings.empty()
    ts, dev, sen, val = zip(*rows, strict=True)
    return Readings.from_arrays(ts, dev, sen, val)


def _rows(r: Readings) -> list[tuple[int, int, int, float]]:
    return list(
        zip(r.ts_ns.tolist(), r.device.tolist(), r.sensor.tolist(), r.value.tolist(), strict=True)
    )


def _good_columns(n: int = 3) -> dict[str, np.ndarray]:
    return {
        "ts_ns": np.arange(n, dtype=np.int64),
        "device": np.zeros(n, dtype=np.int32),
        "sensor": np.zeros(n, dtype=np.int16),
        "value": np.linspace(0.0, 1.0, n),
    }


def test_from_arrays_converts_each_column_to_its_dtype() -> None:
    r = Readings.from_arrays([1, 2], [3, 4], [5, 6], [7, 8])
    assert r.ts_ns.dtype == np.int64
    assert r.device.dtype == np.int32
    assert r.sensor.dtype == np.int16
    assert r.value.dtype == np.float64
    assert len(r) == 2
    assert _rows(r) == [(1, 3, 5, 7.0), (2, 4, 6, 8.0)]


@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("ts_ns", np.arange(3, dtype=np.int32)),
        ("ts_ns", np.arange(3, dtype=np.float64)),
        ("device", np.zeros(3, dtype=np.int64)),
        ("sensor", np.zeros(3, dtype=np.int32)),
        ("value", np.zeros(3, dtype=np.float32)),
        ("value", np.zeros(3, dtype=np.int64)),
    ],
)
def test_wrong_dtype_is_refused_naming_the_column(column: str, bad: np.ndarray) -> None:
    columns = _good_columns() | {column: bad}
    with pytest.raises(TypeError, match=column):
        Readings(**columns)


@pytest.mark.parametrize("column", ["device", "sensor", "value"])
def test_length_mismatch_is_refused_naming_the_column(column: str) -> None:
    columns = _good_columns()
    columns[column] = columns[column][:2]
    with pytest.raises(ValueError, match=column):
        Readings(**columns)


@pytest.mark.parametrize("column", ["ts_ns", "device", "sensor", "value"])
def test_two_dimensional_columns_are_refused(column: str) -> None:
    columns = _good_columns(4)
    columns[column] = columns[column].reshape(2, 2)
    with pytest.raises(ValueError, match=column):
        Readings(**columns)


def test_scalar_timestamps_are_refused_as_not_one_dimensional() -> None:
    columns = _good_columns(1)
    columns["ts_ns"] = np.array(5, dtype=np.int64)
    with pytest.raises(ValueError, match="ts_ns"):
        Readings(**columns)


def test_empty_has_no_readings_and_the_right_dtypes() -> None:
    r = Readings.empty()
    assert len(r) == 0
    assert (r.ts_ns.dtype, r.device.dtype, r.sensor.dtype, r.value.dtype) == (
        np.dtype(np.int64),
        np.dtype(np.int32),
        np.dtype(np.int16),
        np.dtype(np.float64),
    )


def test_concat_joins_batches_end_to_end() -> None:
    a = _batch([(1, 0, 0, 1.0), (2, 0, 1, 2.0)])
    b = _batch([(3, 1, 0, 3.0)])
    c = Readings.empty()
    joined = Readings.concat([a, c, b])
    assert _rows(joined) == [(1, 0, 0, 1.0), (2, 0, 1, 2.0), (3, 1, 0, 3.0)]
    assert joined.ts_ns.dtype == np.int64
    assert joined.sensor.dtype == np.int16


def test_concat_of_nothing_or_one_batch() -> None:
    assert len(Readings.concat([])) == 0
    a = _batch([(1, 0, 0, 1.0)])
    assert _rows(Readings.concat([a])) == _rows(a)


def test_take_with_a_mask_and_with_indices_keeps_the_given_order() -> None:
    r = _batch([(10, 0, 0, 1.0), (20, 1, 0, 2.0), (30, 2, 1, 3.0)])
    masked = r.take(np.array([True, False, True]))
    assert _rows(masked) == [(10, 0, 0, 1.0), (30, 2, 1, 3.0)]
    picked = r.take(np.array([2, 0]))
    assert _rows(picked) == [(30, 2, 1, 3.0), (10, 0, 0, 1.0)]
    assert len(r.take(np.zeros(3, dtype=np.bool_))) == 0


def test_deduplicated_keeps_the_last_given_and_sorts() -> None:
    r = _batch(
        [
            (20, 1, 0, 1.0),
            (10, 1, 0, 2.0),
            (20, 1, 0, 3.0),  # replaces the first row
            (10, 0, 5, 4.0),
            (10, 0, 2, 5.0),
            (10, 0, 5, 6.0),  # replaces (10, 0, 5, 4.0)
            (20, 1, 0, 7.0),  # replaces (20, 1, 0, 3.0)
        ]
    )
    # sorted by device, then sensor, then time
    assert _rows(r.deduplicated()) == [
        (10, 0, 2, 5.0),
        (10, 0, 5, 6.0),
        (10, 1, 0, 2.0),
        (20, 1, 0, 7.0),
    ]


def test_deduplicated_of_an_empty_batch_is_empty() -> None:
    assert len(Readings.empty().deduplicated()) == 0


_row = st.tuples(
    st.integers(-3, 3),  # timestamps from a tiny range so that keys collide
    st.integers(0, 2),
    st.integers(0, 2),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_row, max_size=40))
def test_deduplicated_matches_a_last_write_wins_dictionary(
    rows: list[tuple[int, int, int, float]],
) -> None:
    store: dict[tuple[int, int, int], float] = {}
    for ts, dev, sen, val in rows:
        store[(dev, sen, ts)] = val  # a later write of the same point overwrites it
    expected = [(ts, dev, sen, val) for (dev, sen, ts), val in sorted(store.items())]
    assert _rows(_batch(rows).deduplicated()) == expected

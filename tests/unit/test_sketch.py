"""The quantile sketch keeps its documented bound, merges exactly and serialises stably."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.sketch import TINY, Sketches

ALPHAS = [0.0001, 0.001, 0.01, 0.05, 0.5]
EPS = np.finfo(np.float64).eps

finite = st.floats(allow_nan=False, allow_infinity=False)
# Values a sensor could send, plus the awkward corners: zeros, subnormals, huge magnitudes.
values_st = st.lists(
    st.one_of(
        finite,
        st.floats(-1e3, 1e3),
        st.sampled_from([0.0, -0.0, 5e-324, -5e-324, TINY, -TINY, 1.0, -1.0]),
    ),
    min_size=1,
    max_size=60,
)


def element_bound_holds(estimate: float, exact: float, alpha: float) -> bool:
    """The per-element guarantee of core.sketch, written out independently."""
    if exact == 0.0 or abs(exact) >= TINY:
        return abs(estimate - exact) <= alpha * abs(exact)
    return estimate == 0.0  # subnormals are estimated as 0, off by less than TINY


def one_sketch(values: list[float], alpha: float) -> Sketches:
    array = np.asarray(values, dtype=np.float64)
    return Sketches.from_values(np.zeros(len(array), dtype=np.int64), array, 1, alpha=alpha)


@settings(max_examples=300, deadline=None)
@given(values=values_st, q=st.floats(0.0, 1.0), alpha=st.sampled_from(ALPHAS))
def test_lower_and_higher_neighbours_are_within_alpha(
    values: list[float], q: float, alpha: float
) -> None:
    sketch = one_sketch(values, alpha)
    n = len(values)
    h = (n - 1) * q
    lower = float(np.quantile(values, q, method="lower"))
    higher = float(np.quantile(values, q, method="higher"))
    # The rank definition the bound is stated for: numpy's floor(h) and ceil(h).
    assert lower == sorted(values)[math.floor(h)]
    assert higher == sorted(values)[math.ceil(h)]
    got_lower = float(sketch.at_rank(np.asarray([math.floor(h)]))[0])
    got_higher = float(sketch.at_rank(np.asarray([math.ceil(h)]))[0])
    assert element_bound_holds(got_lower, lower, alpha), (got_lower, lower)
    assert element_bound_holds(got_higher, higher, alpha), (got_higher, higher)


@settings(max_examples=300, deadline=None)
@given(values=values_st, q=st.floats(0.0, 1.0), alpha=st.sampled_from(ALPHAS))
def test_interpolated_quantile_is_within_the_interpolated_bound(
    values: list[float], q: float, alpha: float
) -> None:
    sketch = one_sketch(values, alpha)
    h = (len(values) - 1) * q
    f = h - math.floor(h)
    lower = float(np.quantile(values, q, method="lower"))
    higher = float(np.quantile(values, q, method="higher"))
    exact = float(np.quantile(values, q))  # numpy's default: linear
    got = float(sketch.quantiles([q])[0, 0])
    rounding = 4 * EPS * max(abs(lower), abs(higher)) + 2 * TINY
    bound = alpha * ((1 - f) * abs(lower) + f * abs(higher)) + rounding
    assert abs(got - exact) <= bound


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=80),
    n_cells=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_many_sketches_at_once_each_answer_for_their_own_values(
    values: list[float], n_cells: int, seed: int
) -> None:
    value = np.asarray(values)
    cell = np.random.default_rng(seed).integers(0, n_cells, len(value))
    sketches = Sketches.from_values(cell, value, n_cells)
    qs = [0.0, 0.1, 0.5, 0.9, 1.0]
    got = sketches.quantiles(qs)
    for c in range(n_cells):
        mine = value[cell == c]
        if len(mine) == 0:
            assert np.isnan(got[:, c]).all()
            continue
        alone = one_sketch(mine.tolist(), 0.01)
        assert np.array_equal(got[:, c], alone.quantiles(qs)[:, 0])
        assert sketches.totals[c] == len(mine)


@settings(max_examples=100, deadline=None)
@given(values=values_st, seed=st.integers(0, 2**32 - 1), parts=st.integers(1, 5))
def test_merging_sketches_of_parts_gives_the_sketch_of_the_whole(
    values: list[float], seed: int, parts: int
) -> None:
    value = np.asarray(values)
    part = np.random.default_rng(seed).integers(0, parts, len(value))
    pieces = Sketches.from_values(part, value, parts)
    merged = pieces.merge(np.zeros(parts, dtype=np.int64), 1)
    assert merged.equals(one_sketch(values, 0.01))


def test_merge_routes_sketches_to_cells_and_leaves_out_negative_ones() -> None:
    pieces = Sketches.from_values(
        np.asarray([0, 1, 2, 2]), np.asarray([1.0, 10.0, 100.0, 100.0]), 3
    )
    merged = pieces.merge(np.asarray([1, -1, 1]), 2)
    assert merged.totals.tolist() == [0, 3]
    assert merged.equals(
        Sketches.from_values(np.asarray([1, 1, 1]), np.asarray([1.0, 100.0, 100.0]), 2)
    )


@settings(max_examples=200, deadline=None)
@given(values=values_st, alpha=st.sampled_from(ALPHAS), extra_empty=st.integers(0, 3))
def test_text_form_round_trips(values: list[float], alpha: float, extra_empty: int) -> None:
    value = np.asarray(values)
    cell = np.arange(len(value)) % 3
    sketches = Sketches.from_values(cell, value, 3 + extra_empty, alpha=alpha)
    texts = sketches.encode()
    assert all(t.isascii() and "," not in t and '"' not in t for t in texts)
    assert Sketches.decode(texts).equals(sketches)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_the_text_form_is_the_documented_layout() -> None:
    # alpha 0.01: bias = ceil(360 / 0.01) + 1 = 36001; log_gamma(1) = 0, log_gamma(1.03) ~ 1.48,
    # so 1.0 has key 36001 and 1.03 key 36003; -1.0 has key -36001; 0.0 the zero bucket.
    values = np.asarray([1.0, 1.0, 1.03, -1.0, 0.0])
    sketch = Sketches.from_values(np.zeros(5, dtype=np.int64), values, 1)
    zigzag = [2 * 36001 - 1, 2 * 36001, 2 * 36001, 2 * 2]  # deltas -36001, +36001, +36001, +2
    expected = (
        bytes([1])
        + varint(10_000)
        + varint(4)
        + b"".join(varint(z) for z in zigzag)
        + b"".join(varint(c) for c in [1, 1, 2, 1])
    )
    assert sketch.encode() == [base64.b64encode(expected).decode()]
    single = Sketches.from_values(np.zeros(1, dtype=np.int64), np.asarray([1.0]), 1)
    assert single.encode() == ["AZBOAcKyBAE="]  # the example in the module docstring


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        "",
        base64.b64encode(bytes([2]) + varint(10_000) + varint(0)).decode(),  # unknown tag
        base64.b64encode(bytes([1]) + varint(10_000) + varint(2) + varint(2)).decode(),  # short
        base64.b64encode(bytes([1]) + varint(10_000) + varint(1) + b"\x82").decode(),  # cut
        base64.b64encode(bytes([1]) + varint(10_000) + varint(1) + varint(2) + varint(0)).decode(),
        base64.b64encode(bytes([1]) + varint(7) + varint(0)).decode(),  # alpha out of range
    ],
)
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # the message varies with the defect
        Sketches.decode([text])


def test_mixed_alphas_cannot_share_a_batch() -> None:
    a = one_sketch([1.0], 0.01).encode()
    b = one_sketch([1.0], 0.02).encode()
    with pytest.raises(ValueError, match="different alpha"):
        Sketches.decode(a + b)
    with pytest.raises(ValueError, match="differs"):
        Sketches.decode(a, alpha=0.02)


def test_extremes_do_not_overflow_and_stay_within_bound() -> None:
    top = float(np.finfo(np.float64).max)
    values = [top, -top, TINY, -TINY, 0.0]
    sketch = one_sketch(values, 0.5)
    for k, exact in enumerate(sorted(values)):
        got = float(sketch.at_rank(np.asarray([k]))[0])
        assert math.isfinite(got)
        assert element_bound_holds(got, exact, 0.5)


def test_empty_sketches_answer_nan_and_non_finite_values_are_refused() -> None:
    empty = Sketches.empty(2)
    assert np.isnan(empty.quantiles([0.5])).all()
    with pytest.raises(ValueError, match="finite"):
        Sketches.from_values(np.zeros(1, dtype=np.int64), np.asarray([math.nan]), 1)
    with pytest.raises(ValueError, match="alpha"):
        Sketches.empty(1, alpha=0.0)

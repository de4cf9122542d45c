"""Whole-array helpers of the alert evaluator: searches, runs, window reductions, ragged rows.

Arrays here are sorted by segment (one rule and device) and then by device time; a segment is
a contiguous slice `[first, last]`. Every function is a fixed number of numpy passes, or a
loop over bits of a length (a binary search, a sparse table), never over readings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]
Index = NDArray[np.intp]

#: "No time": pending or clearing not under way, a device never heard, and so on.
NONE_NS = int(np.iinfo(np.int64).min)
#: `grouped_search` steps this many entries one by one before its binary search.
_LINEAR_STEPS = 3
#: `window_sums` and `last_range` copy windows of one length at a time, up to this many lengths.
_MAX_SUM_LENGTHS = 12


def grouped_search(
    values: NDArray[Any], lo: Index, hi: Index, query: NDArray[Any], *, right: bool = False
) -> Index:
    """For each query, the first index `j` in `[lo, hi)` with `values[j] >= query`.

    With `right`, `values[j] > query`; `hi` when there is none. `values` must be sorted
    within each `[lo, hi)`, which may lie anywhere in `values`. A few linear steps first (in a
    stream the answer is mostly at `lo` or just after it), then a vectorised binary search
    for the queries still open: as many passes as their widest range has bits.
    """
    first = np.array(lo, dtype=np.intp)
    high = np.asarray(hi, dtype=np.intp)
    if len(first) == 0 or len(values) == 0:
        return first
    compare = np.less_equal if right else np.less
    onward = first < high
    for _ in range(_LINEAR_STEPS):
        onward &= compare(np.take(values, first, mode="clip"), query)
        if not onward.any():
            return first
        first += onward
        onward &= first < high
    still = np.flatnonzero(onward)
    if len(still):
        first[still] = _binary_search(values, first[still], high[still], query[still], compare)
    return first


def _binary_search(
    values: NDArray[Any], lo: Index, hi: Index, query: NDArray[Any], compare: np.ufunc
) -> Index:
    below = lo - 1  # the last index known to pass the test (to come before the answer)
    step = 1 << max(int(np.max(hi - lo, initial=0)).bit_length() - 1, 0)
    while step:
        probe = below + step
        onward = compare(np.take(values, probe, mode="clip"), query)
        onward &= probe < hi
        np.add(below, step, out=below, where=onward)
        step >>= 1
    out: Index = below + 1
    return out


def runs(flag: Bools, segment_begins: Bools) -> tuple[Index, Index]:
    """First and last index of each maximal run of true `flag` that stays in one segment."""
    if len(flag) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty.copy()
    continues = np.zeros(len(flag), dtype=np.bool_)  # true where the previous one is true too
    continues[1:] = flag[:-1] & ~segment_begins[1:]
    begins = flag & ~continues
    ends = flag.copy()
    ends[:-1] &= ~(flag[1:] & ~segment_begins[1:])
    return np.flatnonzero(begins), np.flatnonzero(ends)


def window_reduce(ufunc: np.ufunc, x: NDArray[Any], a: Index, b: Index) -> NDArray[Any]:
    """`ufunc.reduce(x[a[i] : b[i] + 1])` for each i (`a <= b`), in one `reduceat`.

    Each result depends on its window's contents only (not on what lies around it), so the
    same window gives the same bits wherever a batch boundary fell.
    """
    if len(a) == 0:
        return np.empty(0, dtype=x.dtype)
    padded = np.append(x, x[-1:])  # so that b + 1 == len(x) is a valid index
    bounds = np.empty(2 * len(a), dtype=np.intp)
    bounds[0::2] = a
    bounds[1::2] = b + 1
    out: NDArray[Any] = ufunc.reduceat(padded, bounds)[0::2]
    return out


def window_range(x: F64, a: Index, b: Index) -> F64:
    """`max - min` of `x[a[i] : b[i] + 1]` for each i (`a <= b`), by a sparse table."""
    out = np.empty(len(a), dtype=np.float64)
    if len(a) == 0:
        return out
    length = (b - a + 1).astype(np.int64)
    level = np.frexp(length.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2(length))
    highs, lows = [x], [x]
    for j in range(1, int(level.max()) + 1):
        half = 1 << (j - 1)
        highs.append(np.maximum(highs[-1][:-half], highs[-1][half:]))
        lows.append(np.minimum(lows[-1][:-half], lows[-1][half:]))
    for j in np.unique(level):
        at = np.flatnonzero(level == j)
        left, right = a[at], b[at] - (1 << int(j)) + 1
        high = np.maximum(highs[j][left], highs[j][right])
        low = np.minimum(lows[j][left], lows[j][right])
        out[at] = high - low
    return out


def segment_starts(seg: Index, n_segments: int) -> tuple[Index, Index]:
    """First and last index of each segment of a sorted, gap-free segment array."""
    counts = np.bincount(seg, minlength=n_segments)
    last = np.cumsum(counts) - 1
    return (last - counts + 1).astype(np.intp), last.astype(np.intp)


def ragged_gather(starts: I64, lengths: I64) -> tuple[I64, Index]:
    """Rows of a ragged source laid end to end: the new offsets, and each entry's source.

    Row i is `[starts[i], starts[i] + lengths[i])` of the source.
    """
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    shift = np.repeat(starts - offsets[:-1], lengths)
    source = (np.arange(int(offsets[-1]), dtype=np.int64) + shift).astype(np.intp, copy=False)
    return offsets, source


def window_sums(x: F64, a: Index, b: Index) -> F64:
    """`np.add.reduceat` of each window `x[a[i] : b[i] + 1]` (`a <= b`), wherever they lie.

    The sum of a window is the one `reduceat` gives for it anywhere (its bits depend on the
    window's contents only), but the windows need not be laid end to end: windows of equal
    length are copied as rows of one strided view (a copy of what is summed, no more), a few
    lengths at a time; with many lengths, gathered into one ragged buffer.
    """
    out = np.empty(len(a), dtype=np.float64)
    if len(a) == 0:
        return out
    length = b - a + 1
    lengths = np.flatnonzero(np.bincount(length))
    if len(lengths) > _MAX_SUM_LENGTHS:
        offsets, source = ragged_gather(a.astype(np.int64), length.astype(np.int64))
        out[:] = np.add.reduceat(x[source], offsets[:-1])
        return out
    for n in lengths.tolist():
        at = np.flatnonzero(length == n) if len(lengths) > 1 else np.arange(len(a))
        rows = _rows(x, n)[a[at]]
        out[at] = np.add.reduceat(rows.ravel(), np.arange(0, len(at) * n, n))
    return out


def _rows(x: NDArray[Any], n: int) -> NDArray[Any]:
    """Every run of `n` entries of contiguous `x` as a row (a view, as `sliding_window_view`)."""
    x = np.ascontiguousarray(x)
    step = x.strides[0]
    return np.ndarray((len(x) - n + 1, n), dtype=x.dtype, buffer=x, strides=(step, step))


def last_range(x: F64, a: Index, b: Index, start: Index) -> F64:
    """`max - min` of each window `x[a[i] : b[i] + 1]` (`start[i] <= a[i] <= b[i]`).

    The windows are the readings of segments that begin at `start` (equal for the windows of
    one segment, which come together). Windows of equal length are copied as rows of one
    strided view, a few lengths at a time; with many lengths, through a sparse table over
    each segment's span.
    """
    out = np.empty(len(a), dtype=np.float64)
    if len(a) == 0:
        return out
    length = b - a + 1
    lengths = np.flatnonzero(np.bincount(length))
    if len(lengths) <= _MAX_SUM_LENGTHS:
        for n in lengths.tolist():
            at = np.flatnonzero(length == n) if len(lengths) > 1 else np.arange(len(a))
            rows = np.ascontiguousarray(_rows(x, n)[a[at]].T)  # a window a column
            out[at] = rows.max(axis=0) - rows.min(axis=0)
        return out
    begins = np.ones(len(a), dtype=np.bool_)
    begins[1:] = start[1:] != start[:-1]
    first = np.flatnonzero(begins)
    lengths = (np.maximum.reduceat(b, first) - start[first] + 1).astype(np.int64)
    offsets, source = ragged_gather(start[first].astype(np.int64), lengths)
    shift = np.repeat(offsets[:-1] - start[first], np.diff(np.append(first, len(a))))
    out[:] = window_range(x[source], a + shift, b + shift)
    return out

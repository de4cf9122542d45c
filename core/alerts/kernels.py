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


def grouped_search(
    values: NDArray[Any], lo: Index, hi: Index, query: NDArray[Any], *, right: bool = False
) -> Index:
    """For each query, the first index `j` in `[lo, hi)` with `values[j] >= query`.

    With `right`, `values[j] > query`; `hi` when there is none. `values` must be sorted
    within each `[lo, hi)`. A vectorised binary search: as many passes as the widest range has bits.
    """
    low = np.asarray(lo, dtype=np.intp).copy()
    high = np.asarray(hi, dtype=np.intp).copy()
    if len(low) == 0 or len(values) == 0:
        return low
    top = len(values) - 1
    for _ in range(int(np.max(high - low, initial=0)).bit_length()):
        open_ = low < high
        mid = (low + high) >> 1
        probe = values[np.minimum(mid, top)]
        onward = (probe <= query) if right else (probe < query)
        onward &= open_
        low = np.where(onward, mid + 1, low)
        high = np.where(open_ & ~onward, mid, high)
    return low


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

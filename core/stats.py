"""The statistics kernel: per-group, per-window statistics of one stream of values, vectorised.

Input is three parallel arrays (time, series, value) plus the group row of each reading and the
window edges; output is a `Table` of `(groups, windows)` arrays. Everything is whole-array numpy:
`bincount` and `ufunc.at` for counts, sums and extremes (they do not care about order), one
stable sort only for exact quantiles and for removing duplicates from input that may hold them.

Definitions (docs/STATISTICS.md): a reading counts once per (series, time), the last one given
winning, as in the store; `std` is the sample standard deviation (n - 1), NaN below two readings;
`first`/`last` are the values at the earliest/latest time in the window; quantiles are exact,
with numpy's default (linear) interpolation. Windows without readings have count 0 and NaN for
everything else.

Speed: on this hardware fresh memory costs more than arithmetic (a new 80 MB array is mostly
page faults), so the kernel can work in a caller-owned `Workspace` whose buffers are reused
from call to call; a `Table` computed in a workspace is valid until that workspace's next use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from core.windows import window_index

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

STATISTICS = ("count", "sum", "mean", "min", "max", "std", "first", "last")


def _empty() -> F64:
    return np.empty(0, dtype=np.float64)


class Workspace:
    """Scratch and result buffers reused across `aggregate` calls (one per thread)."""

    def __init__(self) -> None:
        self._buffers: dict[str, NDArray[Any]] = {}

    def get(self, name: str, n: int, dtype: DTypeLike) -> NDArray[Any]:
        """A buffer of at least `n` elements (contents undefined), as a view of exactly `n`."""
        kind = np.dtype(dtype)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != kind or len(buffer) < n:
            buffer = np.empty(max(n, int(len(buffer) * 1.25) if buffer is not None else n), kind)
            self._buffers[name] = buffer
        return buffer[:n]


@dataclass(frozen=True)
class Table:
    """Statistics of `groups` x `windows` cells; see the module docstring for definitions.

    Statistics that were not asked for are empty arrays.
    """

    edges_ns: I64
    count: I64
    sum: F64 = field(default_factory=_empty)
    mean: F64 = field(default_factory=_empty)
    min: F64 = field(default_factory=_empty)
    max: F64 = field(default_factory=_empty)
    std: F64 = field(default_factory=_empty)
    first: F64 = field(default_factory=_empty)
    last: F64 = field(default_factory=_empty)
    quantiles: dict[float, F64] = field(default_factory=dict)

    @property
    def starts_ns(self) -> I64:
        """Start of each window."""
        return self.edges_ns[:-1]

    @property
    def shape(self) -> tuple[int, int]:
        """(groups, windows)."""
        return (int(self.count.shape[0]), int(self.count.shape[1]))


def _composite(series: NDArray[np.integer], ts_ns: I64) -> I64 | None:
    """One int64 ordering (series, time), or None when it would not fit."""
    t0 = int(ts_ns.min())
    span = int(ts_ns.max()) - t0 + 1
    top = int(series.max()) + 1
    if int(series.min()) < 0 or top * span >= 2**62:
        return None
    return series.astype(np.int64) * span + (ts_ns - t0)


def order_and_dedupe(ts_ns: I64, series: NDArray[np.integer]) -> NDArray[np.intp] | slice:
    """Indices that put readings in (series, time) order, one per (series, time).

    Of duplicates the last one given is kept (a second write replaces the first in the store).
    Returns `slice(None)` when the input is already in order without duplicates (what a store
    scan gives), which costs one pass to find out.
    """
    if len(ts_ns) < 2:
        return slice(None)
    key = _composite(series, ts_ns)
    if key is None:
        order = np.lexsort((ts_ns, series))
        same = (series[order][1:] == series[order][:-1]) & (ts_ns[order][1:] == ts_ns[order][:-1])
    else:
        if bool(np.all(key[1:] > key[:-1])):
            return slice(None)
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        same = ordered[1:] == ordered[:-1]
    keep = np.ones(len(order), dtype=np.bool_)
    keep[:-1] = ~same  # the last of each run of equal keys stays
    return order if keep.all() else order[keep]


def aggregate(
    ts_ns: I64,
    series: NDArray[np.integer],
    value: F64,
    *,
    group: NDArray[np.integer],
    n_groups: int,
    edges_ns: I64,
    quantiles: Sequence[float] = (),
    statistics: Iterable[str] = STATISTICS,
    unique: bool = False,
    workspace: Workspace | None = None,
) -> Table:
    """Statistics of `value` per (group, window) cell.

    `series` identifies a reading's stream for duplicate detection (the device, when one sensor
    is aggregated); `group` is the output row of each reading (the device's row, or 0 for
    everything when pooled). Readings outside the edges are ignored. `unique=True` says the
    input holds no duplicate (series, time) (a store scan never does) and skips that check.
    Only the `statistics` named are computed (`count` always is).
    """
    wanted = _checked(statistics, quantiles)
    ws = workspace or Workspace()
    n_windows = max(len(edges_ns) - 1, 0)
    ts_ns, series, value, group = _inside(ts_ns, series, value, group, edges_ns)
    if not unique:
        order = order_and_dedupe(ts_ns, series)
        if not isinstance(order, slice):
            ts_ns, value, group = ts_ns[order], value[order], group[order]
    cells = _Cells(
        key=_keys(ts_ns, group, edges_ns, n_windows, ws),
        value=value,
        n=n_groups * n_windows,
        shape=(n_groups, n_windows),
        ws=ws,
    )
    out: dict[str, Any] = {"edges_ns": edges_ns, "count": cells.count.reshape(cells.shape)}
    if wanted & {"sum", "mean", "std"}:
        out.update(cells.moments(std="std" in wanted))
    if "min" in wanted or quantiles:
        out["min"] = cells.extreme(np.minimum)
    if "max" in wanted or quantiles:
        out["max"] = cells.extreme(np.maximum)
    if wanted & {"first", "last"}:
        out["first"], out["last"] = cells.first_last(ts_ns)
    if quantiles:
        out["quantiles"] = cells.quantiles(quantiles, out["min"], out["max"])
        out.update({name: _empty() for name in ("min", "max") if name not in wanted})
    return Table(**out)


class _Cells:
    """The readings of one `aggregate` call, keyed by cell, and the statistics over them.

    Results land in workspace buffers: `ufunc.at` into reused arrays rather than `bincount`,
    whose fresh result array costs more in page faults than the counting itself.
    """

    def __init__(
        self, *, key: NDArray[np.intp], value: F64, n: int, shape: tuple[int, int], ws: Workspace
    ) -> None:
        self.key, self.value, self.n, self.shape, self.ws = key, value, n, shape, ws
        self.count = ws.get("count", n, np.int64)
        self.count.fill(0)
        np.add.at(self.count, key, 1)
        self.empty = np.flatnonzero(self.count == 0)

    def moments(self, *, std: bool) -> dict[str, F64]:
        """Sum and mean, and the sample standard deviation by two passes (for accuracy)."""
        total = self.ws.get("sum", self.n, np.float64)
        total.fill(0.0)
        np.add.at(total, self.key, self.value)
        mean = self.ws.get("mean", self.n, np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(total, self.count, out=mean)  # 0 / 0 is NaN: empty cells need no fixing
        total[self.empty] = np.nan
        out = {"sum": total.reshape(self.shape), "mean": mean.reshape(self.shape)}
        if std:
            deviation = self.ws.get("deviation", len(self.value), np.float64)
            np.take(mean, self.key, out=deviation)
            np.subtract(self.value, deviation, out=deviation)
            np.multiply(deviation, deviation, out=deviation)
            squares = np.bincount(self.key, weights=deviation, minlength=self.n)
            with np.errstate(invalid="ignore", divide="ignore"):
                result = np.sqrt(squares / (self.count - 1))
            result[self.count < 2] = np.nan
            out["std"] = result.reshape(self.shape)
        return out

    def extreme(self, ufunc: np.ufunc) -> F64:
        """Minimum (np.minimum) or maximum (np.maximum) per cell."""
        name, start = ("min", np.inf) if ufunc is np.minimum else ("max", -np.inf)
        result = self.ws.get(name, self.n, np.float64)
        result.fill(start)
        ufunc.at(result, self.key, self.value)
        result[self.empty] = np.nan
        return result.reshape(self.shape)

    def first_last(self, ts_ns: I64) -> tuple[F64, F64]:
        """Values at the earliest and latest time of each cell (NaN where empty).

        Ties in time (two devices pooled, same instant) go to the reading given later.
        """
        key, value = self.key, self.value
        first = np.full(self.n, np.nan)
        last = np.full(self.n, np.nan)
        if self._time_ordered(ts_ns):
            # Cells lie end to end in time order (a store scan, one row per series): the first
            # and last of a cell are at its ends.
            present = self.count > 0
            ends = np.cumsum(self.count)
            first[present] = value[(ends - self.count)[present]]
            last[present] = value[ends[present] - 1]
        elif len(key):
            earliest = np.full(self.n, np.iinfo(np.int64).max)
            latest = np.full(self.n, np.iinfo(np.int64).min)
            np.minimum.at(earliest, key, ts_ns)
            np.maximum.at(latest, key, ts_ns)
            at_first = ts_ns == earliest[key]
            at_last = ts_ns == latest[key]
            # Fancy assignment with repeated indices keeps the last one given: deterministic.
            first[key[at_first]] = value[at_first]
            last[key[at_last]] = value[at_last]
        return first.reshape(self.shape), last.reshape(self.shape)

    def _time_ordered(self, ts_ns: I64) -> bool:
        """Whether readings are in cell order, and in time order within each cell."""
        key = self.key
        if len(key) < 2 or not bool(np.all(key[1:] >= key[:-1])):
            return len(key) < 2
        return bool(np.all((ts_ns[1:] > ts_ns[:-1]) | (key[1:] != key[:-1])))

    def quantiles(self, quantiles: Sequence[float], low: F64, high: F64) -> dict[float, F64]:
        """Exact quantiles with linear interpolation (numpy's default method).

        The quantile of a cell of n sorted values s_0..s_(n-1) lies between s_k and s_(k+1)
        for k = floor(q (n - 1)). Where every k asked for is among a cell's two smallest or two
        largest values (small cells: all of them when windows are short), those come from a few
        order-independent passes; the other cells' values are sorted, once, within their cells.
        """
        count = self.count
        plans = []
        for q in quantiles:
            h = (count - 1) * q
            below = np.floor(h).astype(np.int64)
            above = np.minimum(below + 1, np.maximum(count - 1, 0))
            plans.append((h - below, below, above))
        source = np.full(self.n, _SORTED, dtype=np.int8)
        source[np.minimum.reduce([b for _, b, _ in plans]) >= count - 2] = _TOP
        source[np.maximum.reduce([a for _, _, a in plans]) <= 1] = _BOTTOM
        statistics = _OrderStatistics(
            count=count,
            source=source,
            low=low.reshape(-1),
            second_low=self._second(np.minimum, low.reshape(-1), source == _BOTTOM),
            high=high.reshape(-1),
            second_high=self._second(np.maximum, high.reshape(-1), source == _TOP),
            **self._sorted_cells(source == _SORTED),
        )
        out = {}
        for q, (fraction, below, above) in zip(quantiles, plans, strict=True):
            lo, hi = statistics.at(below), statistics.at(above)
            result = lo + fraction * (hi - lo)
            result[self.empty] = np.nan
            out[float(q)] = result.reshape(self.shape)
        return out

    def _second(self, ufunc: np.ufunc, best: F64, cells: NDArray[np.bool_]) -> F64:
        """The second smallest (np.minimum) or largest (np.maximum) value of the chosen cells.

        A tie for the extreme makes the extreme the second value too. Computed over all
        readings (masking out other cells would cost more than it saves); NaN elsewhere.
        """
        second = np.full(self.n, np.nan)
        if not cells.any():
            return second
        at_best = self.value == best[self.key]
        ties = np.bincount(self.key, weights=at_best, minlength=self.n)
        start = np.inf if ufunc is np.minimum else -np.inf
        rest = np.full(self.n, start)
        ufunc.at(rest, self.key, np.where(at_best, start, self.value))
        np.copyto(second, np.where(ties >= 2, best, rest), where=cells)
        return second

    def _sorted_cells(self, cells: NDArray[np.bool_]) -> dict[str, Any]:
        """The chosen cells' values sorted within their cells, and where each cell starts."""
        starts = np.full(self.n, -1, dtype=np.int64)
        if not cells.any():
            return {"sorted_part": np.empty(0), "starts": starts}
        chosen = cells[self.key]
        sizes = np.where(cells, self.count, 0)
        starts[cells] = (np.cumsum(sizes) - sizes)[cells]
        return {
            "sorted_part": sorted_within_cells(self.value[chosen], self.key[chosen]),
            "starts": starts,
        }


_BOTTOM, _TOP, _SORTED = 0, 1, 2


@dataclass(frozen=True)
class _OrderStatistics:
    """Where each cell's order statistics can be read (see `_Cells.quantiles`)."""

    count: I64
    source: NDArray[np.int8]
    low: F64
    second_low: F64
    high: F64
    second_high: F64
    sorted_part: F64
    starts: I64

    def at(self, index: I64) -> F64:
        """s_index of every cell."""
        from_bottom = np.where(index == 0, self.low, self.second_low)
        from_top = np.where(index == self.count - 1, self.high, self.second_high)
        result = np.where(self.source == _BOTTOM, from_bottom, from_top)
        sorted_cells = (self.source == _SORTED) & (self.count > 0)
        if sorted_cells.any():
            result[sorted_cells] = self.sorted_part[self.starts[sorted_cells] + index[sorted_cells]]
        return result


def _checked(statistics: Iterable[str], quantiles: Sequence[float]) -> set[str]:
    """The statistics asked for, refusing unknown ones and quantiles outside [0, 1]."""
    wanted = set(statistics)
    unknown = wanted - set(STATISTICS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; known: {', '.join(STATISTICS)}")
    for q in quantiles:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is not within [0, 1]")
    return wanted


def _inside(
    ts_ns: I64,
    series: NDArray[np.integer],
    value: F64,
    group: NDArray[np.integer],
    edges_ns: I64,
) -> tuple[I64, NDArray[np.integer], F64, NDArray[np.integer]]:
    """The readings within the edges (the arrays themselves when all are)."""
    if len(edges_ns) < 2 or len(ts_ns) == 0:
        return ts_ns[:0], series[:0], value[:0], group[:0]
    if int(ts_ns.min()) >= int(edges_ns[0]) and int(ts_ns.max()) < int(edges_ns[-1]):
        return ts_ns, series, value, group
    inside = (ts_ns >= edges_ns[0]) & (ts_ns < edges_ns[-1])
    return ts_ns[inside], series[inside], value[inside], group[inside]


def _keys(
    ts_ns: I64, group: NDArray[np.integer], edges_ns: I64, n_windows: int, ws: Workspace
) -> NDArray[np.intp]:
    """The cell of each reading, `group * windows + window`, in a workspace buffer."""
    n = len(ts_ns)
    step = int(edges_ns[1] - edges_ns[0]) if n_windows else 1
    first = int(edges_ns[0]) if n_windows else 0
    uniform = n_windows >= 1 and bool(np.all(np.diff(edges_ns) == step))
    key = ws.get("key", n, np.intp)
    if uniform and int(edges_ns[-1]) - first < 2**52:
        # The exact float path of core.windows.window_index, in reused buffers: offsets below
        # 2**52 convert to doubles exactly, and the division floors to the integer quotient.
        fraction = ws.get("fraction", n, np.float64)
        np.subtract(ts_ns, first, out=fraction, casting="unsafe")
        np.divide(fraction, float(step), out=fraction)
        np.copyto(key, fraction, casting="unsafe")  # truncation is floor: offsets are >= 0
    else:
        np.copyto(key, window_index(ts_ns, edges_ns))
    if n_windows >= 1 and len(group) and int(group.max()) > 0:
        scaled = ws.get(
            "scaled", n, np.int32 if n_windows * (int(group.max()) + 1) < 2**31 else np.intp
        )
        np.multiply(group, n_windows, out=scaled, casting="unsafe")
        np.add(key, scaled, out=key, casting="unsafe")
    return key


def sorted_within_cells(value: F64, key: NDArray[np.intp]) -> F64:
    """The values ordered by (cell, value)."""
    n = len(value)
    if n == 0:
        return value
    by_value = np.argsort(value)
    bits = max(int(n - 1).bit_length(), 1)
    if int(key.max()) >= 2 ** (62 - bits):
        return value[np.lexsort((value, key))]
    rank = np.empty(n, dtype=np.int64)
    rank[by_value] = np.arange(n, dtype=np.int64)
    packed = np.left_shift(key, bits, dtype=np.int64)
    packed |= rank
    packed.sort()
    packed &= (1 << bits) - 1
    return value[by_value[packed]]

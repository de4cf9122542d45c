"""Rollups: per (device, sensor) summaries of fixed windows, mergeable into coarser windows.

What it is for: long-range reports (a month of a pilot, a year of a device) read rollups instead
of every raw reading. A rollup row summarises one (device, sensor, window) with `count`, `sum`,
`m2` (the sum of squared deviations from the window's mean), `min`, `max`, `first`/`first_ts`,
`last`/`last_ts` (the values at the earliest and latest reading) and a quantile sketch
(`core.sketch`). All of them merge exactly: counts, sums and m2 add (m2 with the between-window
term `sum n_i (mean_i - mean)**2`), extremes take the extreme, first/last the earliest/latest,
sketches add bucket counts. `to_table` turns rollups of any windows that are unions of whole
rollup windows into the kernel's statistics (`core.stats.Table`): count, sum, mean, min, max,
sample std (n - 1), first, last and sketch quantiles (relative error <= alpha, see
`core.sketch`; the kernel's are exact).

Resolutions: `1m` and `1h` windows are aligned to the UTC epoch (origin 0). `1d` windows are
24-hour windows aligned to an origin, the pilot's local midnight: the pilots are UTC-3 without
daylight saving, so origin = 03:00 UTC (`day_origin_ns`). In a zone with daylight saving a
local calendar day is not a fixed 24 hours: such days must be built from `1h` rollups at query
time (`to_table` with calendar edges), and `day_origin_ns` refuses those zones. The origin is
today's offset: for years in which a zone kept another offset (Argentina observed daylight
saving in 2007-2009) the `1d` windows are 24 hours from that origin, not local days.

The columns of a rollup row are declared once, in `COLUMNS`: the stores derive their schema
(tables, fields, line protocol) from it. Keeping the stored rollups current as readings arrive
is ingest's work (`ingest.rollups`).

Nothing here reads readings one by one: grouping is sorts, `reduceat` and `bincount`. This
module must not format queries, know a store's schema beyond naming the columns, or talk to a
store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from core.readings import Readings
from core.sketch import DEFAULT_ALPHA, Sketches
from core.stats import Table
from core.timeutil import DAY_NS, HOUR_NS, MINUTE_NS, NS_PER_S
from core.windows import window_index

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Rollup resolutions and their window lengths.
RESOLUTIONS: Mapping[str, int] = {"1m": MINUTE_NS, "1h": HOUR_NS, "1d": DAY_NS}


def resolution_ns(resolution: str) -> int:
    """Window length of a resolution; raises `ValueError` naming the accepted ones."""
    try:
        return RESOLUTIONS[resolution]
    except KeyError:
        raise ValueError(
            f"unknown rollup resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}"
        ) from None


def window_starts(ts_ns: I64, resolution: str, origin_ns: int = 0) -> I64:
    """Start of the window of each instant (windows aligned to `origin_ns + k * length`)."""
    width = resolution_ns(resolution)
    return ts_ns - (ts_ns - origin_ns) % width


def day_origin_ns(tz: tzinfo, now: datetime | None = None) -> int:
    """Origin of `1d` windows at local midnight of a zone with one fixed UTC offset.

    Raises `ValueError` for a zone whose offset differs between January and July of the year
    of `now` (daylight saving): its calendar days must come from `1h` rollups instead.
    """
    year = (now or datetime.now(UTC)).year
    offsets = {
        datetime(year, month, 1, 12, tzinfo=UTC).astimezone(tz).utcoffset() for month in (1, 7)
    }
    if len(offsets) != 1 or None in offsets:
        raise ValueError(f"{tz} observes daylight saving: build its days from 1h rollups")
    (offset,) = offsets
    assert offset is not None
    return (-int(offset.total_seconds()) % 86_400) * NS_PER_S


class Column(NamedTuple):
    """One column of a rollup row."""

    name: str
    dtype: np.dtype[np.generic]
    #: `key`: locates the row (window start, device and sensor codes); `value`: a statistic.
    kind: Literal["key", "value"]


#: A rollup row's columns, declared once: `Rollups` checks its arrays against them and every
#: store derives its schema from them. Stores keep the keys their own way (ids rather than
#: registry codes, the window start as the point time) and the values as they are, in this
#: order, followed by the row's sketch as text (`SKETCH_COLUMN`, `Sketches.encode`).
COLUMNS: tuple[Column, ...] = (
    Column("start_ns", np.dtype(np.int64), "key"),
    Column("device", np.dtype(np.int32), "key"),
    Column("sensor", np.dtype(np.int16), "key"),
    Column("count", np.dtype(np.int64), "value"),
    Column("sum", np.dtype(np.float64), "value"),
    Column("m2", np.dtype(np.float64), "value"),
    Column("min", np.dtype(np.float64), "value"),
    Column("max", np.dtype(np.float64), "value"),
    Column("first", np.dtype(np.float64), "value"),
    Column("first_ts", np.dtype(np.int64), "value"),
    Column("last", np.dtype(np.float64), "value"),
    Column("last_ts", np.dtype(np.int64), "value"),
)
#: The statistics of a row: what a store keeps besides the row's key and sketch, in order.
VALUE_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.kind == "value")
#: The sketch column (text: `Sketches.encode`), kept after the values.
SKETCH_COLUMN = "sketch"


@dataclass(frozen=True, slots=True, eq=False)
class Rollups:
    """Rollup rows as parallel arrays; row `j` summarises `[start_ns[j], + resolution)`.

    Device and sensor are registry codes, like `Readings`. `m2` is the sum of squared
    deviations from the row's mean; `sketch` holds one sketch per row.
    """

    start_ns: I64
    device: NDArray[np.int32]
    sensor: NDArray[np.int16]
    count: I64
    sum: F64
    m2: F64
    min: F64
    max: F64
    first: F64
    first_ts: I64
    last: F64
    last_ts: I64
    sketch: Sketches

    def __post_init__(self) -> None:
        n = self.start_ns.shape
        for name, dtype, _ in COLUMNS:
            array = getattr(self, name)
            if array.ndim != 1 or array.shape != n:
                raise ValueError(f"Rollups.{name} must be 1-D, as long as start_ns (shape {n})")
            if array.dtype != dtype:
                raise TypeError(f"Rollups.{name} must be {dtype}, got {array.dtype}")
        if len(self.sketch) != n[0]:
            raise ValueError("Rollups.sketch must hold one sketch per row")

    @classmethod
    def empty(cls, alpha: float = DEFAULT_ALPHA) -> Rollups:
        """No rows."""
        columns = {name: np.empty(0, dtype=dtype) for name, dtype, _ in COLUMNS}
        return cls(**columns, sketch=Sketches.empty(0, alpha))

    @classmethod
    def concat(cls, parts: Sequence[Rollups]) -> Rollups:
        """Join batches end to end."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        columns = {
            name: np.concatenate([getattr(p, name) for p in parts]) for name, _, _ in COLUMNS
        }
        return cls(**columns, sketch=Sketches.concat([p.sketch for p in parts]))

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer]) -> Rollups:
        """The rows selected by a boolean mask or an index array, in that order."""
        if index.dtype == np.bool_ and len(index) == len(self) and bool(index.all()):
            return self  # immutable: every row selected is this batch itself
        columns = {name: getattr(self, name)[index] for name, _, _ in COLUMNS}
        return Rollups(**columns, sketch=self.sketch.take(index))

    def slice(self, start: int, stop: int) -> Rollups:
        """Rows `start:stop`, sharing memory with this batch (no copy)."""
        columns = {name: getattr(self, name)[start:stop] for name, _, _ in COLUMNS}
        return Rollups(**columns, sketch=self.sketch.slice(start, stop))

    def check_finite(self) -> None:
        """Raise `ValueError` unless every float column is finite (stores refuse NaN and inf)."""
        for name, dtype, _ in VALUE_COLUMNS:
            if dtype.kind == "f" and not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"rollup column {name} holds NaN or infinite values")

    def sort_order(self) -> NDArray[np.intp]:
        """Indices that sort by device, then sensor, then window start."""
        return np.lexsort((self.start_ns, self.sensor, self.device))

    def equals(self, other: Rollups) -> bool:
        """The same rows in order, floats compared with `==`, sketches bucket for bucket."""
        return (
            len(self) == len(other)
            and all(
                np.array_equal(getattr(self, name), getattr(other, name)) for name, _, _ in COLUMNS
            )
            and self.sketch.equals(other.sketch)
        )


if tuple(f.name for f in fields(Rollups)) != (*(c.name for c in COLUMNS), SKETCH_COLUMN):
    raise TypeError("Rollups' fields and COLUMNS disagree")  # the one declaration drifted


def run_starts(*keys: NDArray[np.integer]) -> NDArray[np.intp]:
    """Where runs of equal key tuples start in arrays already sorted by those keys."""
    n = len(keys[0])
    new = np.zeros(n, dtype=np.bool_)
    if n:
        new[0] = True
        for key in keys:
            new[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(new)


def compute_rollups(
    readings: Readings,
    resolution: str,
    *,
    origin_ns: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> Rollups:
    """Rollups of readings, one row per (device, sensor, window) that has readings.

    Readings may come in any order; of several with the same (device, sensor, time) the last
    given counts, once (as in the store). Rows come sorted by device, sensor, window start.
    """
    r = readings.deduplicated()
    n = len(r)
    if n == 0:
        return Rollups.empty(alpha)
    start = window_starts(r.ts_ns, resolution, origin_ns)
    first = run_starts(r.device, r.sensor, start)
    last = np.append(first[1:], n) - 1
    cell = np.repeat(np.arange(len(first)), np.diff(np.append(first, n)))
    count = (last - first + 1).astype(np.int64)
    total = np.add.reduceat(r.value, first)
    deviation = r.value - (total / count)[cell]
    return Rollups(
        start_ns=start[first],
        device=r.device[first],
        sensor=r.sensor[first],
        count=count,
        sum=total,
        m2=np.add.reduceat(deviation * deviation, first),
        min=np.minimum.reduceat(r.value, first),
        max=np.maximum.reduceat(r.value, first),
        first=r.value[first],
        first_ts=r.ts_ns[first],
        last=r.value[last],
        last_ts=r.ts_ns[last],
        sketch=Sketches.from_values(cell, r.value, len(first), alpha=alpha),
    )


@dataclass(frozen=True, slots=True)
class _Combined:
    """Merged statistics of `n` cells (count 0 and NaN where a cell got no rollup)."""

    count: I64
    sum: F64
    m2: F64
    min: F64
    max: F64
    first: F64
    first_ts: I64
    last: F64
    last_ts: I64


def _sum_by(cell: I64, weights: F64, n_cells: int) -> F64:
    """Sum of the weights of each cell (0 where none)."""
    return np.asarray(np.bincount(cell, weights=weights, minlength=n_cells), dtype=np.float64)


def _combine(rollups: Rollups, cell: I64, n_cells: int) -> _Combined:
    """Pool rollup rows by cell; exact up to float rounding (see the module docstring)."""
    count = _sum_by(cell, rollups.count.astype(np.float64), n_cells).astype(np.int64)
    total = _sum_by(cell, rollups.sum, n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    between = rollups.count * (rollups.sum / rollups.count - mean[cell]) ** 2
    m2 = _sum_by(cell, rollups.m2, n_cells) + _sum_by(cell, between, n_cells)
    low = np.full(n_cells, np.inf)
    high = np.full(n_cells, -np.inf)
    np.minimum.at(low, cell, rollups.min)
    np.maximum.at(high, cell, rollups.max)
    empty = count == 0
    low[empty] = np.nan
    high[empty] = np.nan
    m2[empty] = np.nan
    first, first_ts = _pick(cell, n_cells, rollups.first_ts, rollups.first, rollups, earliest=True)
    last, last_ts = _pick(cell, n_cells, rollups.last_ts, rollups.last, rollups, earliest=False)
    return _Combined(count, total, m2, low, high, first, first_ts, last, last_ts)


def _pick(
    cell: I64, n_cells: int, ts: I64, value: F64, rollups: Rollups, *, earliest: bool
) -> tuple[F64, I64]:
    """Value at the earliest (or latest) time of each cell.

    Ties in time (devices pooled into one cell) go to the higher device code, then sensor code,
    as the kernel gives them to the reading later in (series, time) order.
    """
    out = np.full(n_cells, np.nan)
    out_ts = np.zeros(n_cells, dtype=np.int64)
    if len(cell) == 0:
        return out, out_ts
    # Sorted so that the wanted row is the last of its cell.
    time_key = -ts if earliest else ts
    order = np.lexsort((rollups.sensor, rollups.device, time_key, cell))
    ordered = cell[order]
    ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    chosen = order[ends]
    out[cell[chosen]] = value[chosen]
    out_ts[cell[chosen]] = ts[chosen]
    return out, out_ts


def coarsen(rollups: Rollups, source: str, target: str, *, origin_ns: int = 0) -> Rollups:
    """Merge rollups of `source` resolution into `target` windows aligned to `origin_ns`.

    Every source window must lie inside one target window (1m and 1h nest in 1d windows whose
    origin is a whole hour); raises `ValueError` otherwise. The result is what
    `compute_rollups` gives on the underlying readings, up to float rounding in sum and m2.
    """
    width = resolution_ns(source)
    start = window_starts(rollups.start_ns, target, origin_ns)
    if bool(np.any(rollups.start_ns + width > start + resolution_ns(target))):
        raise ValueError(f"{source} windows do not nest in {target} windows at this origin")
    if len(rollups) == 0:
        return Rollups.empty(rollups.sketch.alpha)
    order = np.lexsort((start, rollups.sensor, rollups.device))
    firsts = run_starts(rollups.device[order], rollups.sensor[order], start[order])
    n_cells = len(firsts)
    is_first = np.zeros(len(order), dtype=np.int64)
    is_first[firsts] = 1
    cell = np.empty(len(order), dtype=np.int64)
    cell[order] = np.cumsum(is_first) - 1
    merged = _combine(rollups, cell, n_cells)
    head = order[firsts]
    return Rollups(
        start_ns=start[head],
        device=rollups.device[head],
        sensor=rollups.sensor[head],
        count=merged.count,
        sum=merged.sum,
        m2=merged.m2,
        min=merged.min,
        max=merged.max,
        first=merged.first,
        first_ts=merged.first_ts,
        last=merged.last,
        last_ts=merged.last_ts,
        sketch=rollups.sketch.merge(cell, n_cells),
    )


def to_table(
    rollups: Rollups,
    resolution: str,
    *,
    group: NDArray[np.integer],
    n_groups: int,
    edges_ns: I64,
    quantiles: Sequence[float] = (),
) -> Table:
    """The kernel's statistics (`core.stats.aggregate`) of the readings the rollups summarise.

    `group` is the output row of each rollup row (as the kernel's `group` is of each reading);
    window `i` is `[edges_ns[i], edges_ns[i + 1])`, and each must be a union of whole rollup
    windows: a rollup window that straddles an edge raises `ValueError`, rollups outside the
    edges are ignored. Quantiles come from the merged sketches, clamped to the exact min and
    max (which can only bring them closer to the exact value).
    """
    n_windows = max(len(edges_ns) - 1, 0)
    cells = n_groups * n_windows
    width = resolution_ns(resolution)
    at_start = window_index(rollups.start_ns, edges_ns)
    at_end = window_index(rollups.start_ns + (width - 1), edges_ns)
    if bool(np.any(at_start != at_end)):
        raise ValueError(f"the windows are not unions of whole {resolution} rollup windows")
    inside = at_start >= 0
    rows = rollups.take(inside)
    cell = group[inside].astype(np.int64) * n_windows + at_start[inside]
    merged = _combine(rows, cell, cells)
    count = merged.count
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = merged.sum / count
        std = np.sqrt(merged.m2 / (count - 1))
    std[count < 2] = np.nan
    empty = count == 0
    mean[empty] = np.nan
    total = merged.sum.copy()
    total[empty] = np.nan  # as the kernel: an empty window has NaN for every statistic
    shape = (n_groups, n_windows)
    qs: dict[float, F64] = {}
    if quantiles:
        estimates = rows.sketch.merge(cell, cells).quantiles(quantiles)
        for q, estimate in zip(quantiles, estimates, strict=True):
            qs[float(q)] = np.clip(estimate, merged.min, merged.max).reshape(shape)
    return Table(
        edges_ns=edges_ns,
        count=count.reshape(shape),
        sum=total.reshape(shape),
        mean=mean.reshape(shape),
        min=merged.min.reshape(shape),
        max=merged.max.reshape(shape),
        std=std.reshape(shape),
        first=merged.first.reshape(shape),
        last=merged.last.reshape(shape),
        quantiles=qs,
    )

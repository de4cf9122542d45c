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

`RollupMaintainer` keeps rollups current as readings arrive, late ones included: `note` records
which (device, sensor, minute) cells a write touched, `run` recomputes those minutes from the
raw readings and re-merges their hours and days.

Nothing here reads readings one by one: grouping is sorts, `reduceat` and `bincount`. This
module must not format queries or know a store's schema; it talks to stores only through
`core.store.Store`.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from core.errors import StoreError
from core.readings import Readings
from core.registry import Registry
from core.sketch import DEFAULT_ALPHA, Sketches
from core.stats import Table
from core.windows import window_index

if TYPE_CHECKING:
    from core.store import Store

log = logging.getLogger("pilots.rollups")

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

NS_PER_S = 1_000_000_000
MINUTE_NS = 60 * NS_PER_S
HOUR_NS = 3600 * NS_PER_S
DAY_NS = 86_400 * NS_PER_S
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
        for name, dtype in _COLUMNS:
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
        columns = {name: np.empty(0, dtype=dtype) for name, dtype in _COLUMNS}
        return cls(**columns, sketch=Sketches.empty(0, alpha))

    @classmethod
    def concat(cls, parts: Sequence[Rollups]) -> Rollups:
        """Join batches end to end."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name, _ in _COLUMNS}
        return cls(**columns, sketch=Sketches.concat([p.sketch for p in parts]))

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer]) -> Rollups:
        """The rows selected by a boolean mask or an index array, in that order."""
        if index.dtype == np.bool_ and len(index) == len(self) and bool(index.all()):
            return self  # immutable: every row selected is this batch itself
        columns = {name: getattr(self, name)[index] for name, _ in _COLUMNS}
        return Rollups(**columns, sketch=self.sketch.take(index))

    def slice(self, start: int, stop: int) -> Rollups:
        """Rows `start:stop`, sharing memory with this batch (no copy)."""
        columns = {name: getattr(self, name)[start:stop] for name, _ in _COLUMNS}
        return Rollups(**columns, sketch=self.sketch.slice(start, stop))

    def check_finite(self) -> None:
        """Raise `ValueError` unless every float column is finite (stores refuse NaN and inf)."""
        for name in ("sum", "m2", "min", "max", "first", "last"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"rollup column {name} holds NaN or infinite values")

    def sort_order(self) -> NDArray[np.intp]:
        """Indices that sort by device, then sensor, then window start."""
        return np.lexsort((self.start_ns, self.sensor, self.device))

    def equals(self, other: Rollups) -> bool:
        """The same rows in order, floats compared with `==`, sketches bucket for bucket."""
        return (
            len(self) == len(other)
            and all(
                np.array_equal(getattr(self, name), getattr(other, name)) for name, _ in _COLUMNS
            )
            and self.sketch.equals(other.sketch)
        )


_COLUMNS: tuple[tuple[str, np.dtype[np.generic]], ...] = (
    ("start_ns", np.dtype(np.int64)),
    ("device", np.dtype(np.int32)),
    ("sensor", np.dtype(np.int16)),
    ("count", np.dtype(np.int64)),
    ("sum", np.dtype(np.float64)),
    ("m2", np.dtype(np.float64)),
    ("min", np.dtype(np.float64)),
    ("max", np.dtype(np.float64)),
    ("first", np.dtype(np.float64)),
    ("first_ts", np.dtype(np.int64)),
    ("last", np.dtype(np.float64)),
    ("last_ts", np.dtype(np.int64)),
)


def _run_starts(*keys: NDArray[np.integer]) -> NDArray[np.intp]:
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
    first = _run_starts(r.device, r.sensor, start)
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
    firsts = _run_starts(rollups.device[order], rollups.sensor[order], start[order])
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


# -- keeping rollups current ---------------------------------------------------------------------

_NOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS touched (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device    TEXT    NOT NULL,
    sensor    TEXT    NOT NULL,
    minute_ns INTEGER NOT NULL,
    noted_ns  INTEGER NOT NULL,
    UNIQUE (device, sensor, minute_ns)
);
"""

WATERMARK = "rollups"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one `RollupMaintainer.run` did."""

    notes: int
    minutes: int
    hours: int
    days: int
    watermark_ns: int | None


@dataclass(frozen=True, slots=True)
class _Cells:
    """Distinct (device, sensor, window start) cells of one resolution."""

    device: NDArray[np.int32]
    sensor: NDArray[np.int16]
    start_ns: I64

    @classmethod
    def of(cls, device: NDArray[np.int32], sensor: NDArray[np.int16], start: I64) -> _Cells:
        order = np.lexsort((start, device, sensor))
        d, s, t = device[order], sensor[order], start[order]
        keep = _run_starts(s, d, t)
        return cls(d[keep], s[keep], t[keep])

    def __len__(self) -> int:
        return len(self.start_ns)

    def member(self, rollups: Rollups) -> NDArray[np.bool_]:
        """Which rollup rows are one of these cells (by one sort: no packed keys to overflow)."""
        n_cells = len(self)
        device = np.concatenate([self.device, rollups.device]).astype(np.int64)
        sensor = np.concatenate([self.sensor, rollups.sensor]).astype(np.int64)
        start = np.concatenate([self.start_ns, rollups.start_ns])
        is_row = np.arange(len(start)) >= n_cells
        # Equal keys sort cells first; a row is a member when the last cell before it matches.
        order = np.lexsort((is_row, start, sensor, device))
        d, s, t, row = device[order], sensor[order], start[order], is_row[order]
        positions = np.arange(len(order))
        last_cell = np.maximum.accumulate(np.where(row, -1, positions))
        seen = np.maximum(last_cell, 0)
        hit = (last_cell >= 0) & (d[seen] == d) & (s[seen] == s) & (t[seen] == t)
        found = np.zeros(len(rollups), dtype=np.bool_)
        found[order[row] - n_cells] = hit[row]
        return found


#: Fetches rollups of one level for (pilot, sensor, start, end, devices).
_Fetch = Callable[[str, str, int, int, list[str]], Rollups]


class RollupMaintainer:
    """Keeps the `1m`, `1h` and `1d` rollups in a store current, late readings included.

    `note(readings)` records, after the store accepted a write, which (device, sensor, minute)
    cells it touched, in a small SQLite table at `path`. `run(store)` recomputes each noted
    minute from the raw readings (one `store.scan` per pilot, sensor and run of nearby
    minutes), re-merges the hours and days that contain them from the stored finer rollups,
    writes all three levels, deletes the notes it processed and advances the store's
    `rollups` watermark to the time of the newest processed note. A crash before the notes
    are deleted only means the same cells are recomputed again (rewrites are idempotent).

    Notes keep device and sensor names, never registry codes, so a registry edit between
    `note` and `run` cannot point a note at another device. One `run` at a time per store.
    Days are built for pilots whose zone has a fixed offset (`day_origin_ns`); `day_origins`
    overrides that for every pilot (a pilot left out, or mapped to None, gets no days).
    `registry` must be the one the noted readings were coded with and the store reads with.
    """

    def __init__(
        self,
        path: Path,
        registry: Registry,
        *,
        day_origins: Mapping[str, int | None] | None = None,
        alpha: float = DEFAULT_ALPHA,
        batch_notes: int = 100_000,
    ) -> None:
        self.path = path
        self.registry = registry
        self.alpha = alpha
        self.batch_notes = batch_notes
        self._day_origins = dict(day_origins) if day_origins is not None else None
        self._local = threading.local()
        self._device_ids = np.asarray([d.id for d in registry.device_list], dtype=object)
        self._sensor_ids = np.asarray([s.id for s in registry.sensor_list], dtype=object)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_NOTES_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open rollup notes {path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection to the notes."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def day_origin(self, pilot: str) -> int | None:
        """Origin of the pilot's `1d` windows, None when its days are not kept."""
        if self._day_origins is not None:
            return self._day_origins.get(pilot)
        try:
            return day_origin_ns(self.registry.pilots[pilot].tz)
        except ValueError:
            return None

    # -- notes ----------------------------------------------------------------------------------

    def note(self, readings: Readings) -> int:
        """Record the (device, sensor, minute) cells the readings touch; returns how many.

        Call it once the store accepted the readings. Noting a cell that is already pending
        renews it, so a run that is busy with the old note does not clear the new one.
        """
        if len(readings) == 0:
            return 0
        cells = _Cells.of(readings.device, readings.sensor, window_starts(readings.ts_ns, "1m"))
        now = time.time_ns()
        rows = zip(
            self._device_ids[cells.device].tolist(),
            self._sensor_ids[cells.sensor].tolist(),
            cells.start_ns.tolist(),
            [now] * len(cells),
            strict=True,
        )
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO touched (device, sensor, minute_ns, noted_ns) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record rollup notes in {self.path}: {exc}") from exc
        return len(cells)

    def pending(self) -> int:
        """How many noted cells wait for a run."""
        row = self._db().execute("SELECT COUNT(*) FROM touched").fetchone()
        return int(row[0])

    # -- runs -----------------------------------------------------------------------------------

    def run(self, store: Store) -> RunSummary:
        """Recompute every noted cell (see the class docstring); returns what was done."""
        db = self._db()
        (up_to,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM touched").fetchone()
        done = 0
        totals = [0, 0, 0]
        newest: int | None = None
        after = 0
        while True:
            rows = db.execute(
                "SELECT id, device, sensor, minute_ns, noted_ns FROM touched "
                "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after, up_to, self.batch_notes),
            ).fetchall()
            if not rows:
                break
            ids, devices, sensors, minutes, noted = zip(*rows, strict=True)
            written = self._process(store, list(devices), list(sensors), list(minutes))
            totals = [a + b for a, b in zip(totals, written, strict=True)]
            after = int(ids[-1])
            db.execute("DELETE FROM touched WHERE id <= ?", (after,))
            done += len(rows)
            newest = max(newest or 0, *noted)
        watermark = store.get_watermark(WATERMARK)
        if newest is not None and (watermark is None or newest > watermark):
            store.set_watermark(WATERMARK, newest)
            watermark = newest
        summary = RunSummary(done, totals[0], totals[1], totals[2], watermark)
        if done:
            log.info("rollups: %s", summary)
        return summary

    def _process(
        self, store: Store, devices: list[str], sensors: list[str], minutes: list[int]
    ) -> tuple[int, int, int]:
        known_d, known_s = self.registry.devices, self.registry.sensors
        keep = [d in known_d and s in known_s for d, s in zip(devices, sensors, strict=True)]
        device = np.asarray(
            [known_d[d].code for d, k in zip(devices, keep, strict=True) if k], dtype=np.int32
        )
        sensor = np.asarray(
            [known_s[s].code for s, k in zip(sensors, keep, strict=True) if k], dtype=np.int16
        )
        minute = np.asarray(minutes, dtype=np.int64)[np.asarray(keep, dtype=np.bool_)]

        def readings_1m(pilot: str, s: str, start: int, end: int, devs: list[str]) -> Rollups:
            readings = store.scan(pilot, [s], start, end, devices=devs)
            return compute_rollups(readings, "1m", alpha=self.alpha)

        def hours(pilot: str, s: str, start: int, end: int, devs: list[str]) -> Rollups:
            found = store.scan_rollups(pilot, [s], "1m", start, end, devices=devs)
            return coarsen(found, "1m", "1h")

        def days(pilot: str, s: str, start: int, end: int, devs: list[str]) -> Rollups:
            origin = self.day_origin(pilot)
            assert origin is not None
            source = "1h" if origin % HOUR_NS == 0 else "1m"
            found = store.scan_rollups(pilot, [s], source, start, end, devices=devs)
            return coarsen(found, source, "1d", origin_ns=origin)

        minute_cells = _Cells.of(device, sensor, minute)
        n_minutes = self._refresh(store, "1m", minute_cells, readings_1m)
        hour_cells = _Cells.of(device, sensor, window_starts(minute, "1h"))
        n_hours = self._refresh(store, "1h", hour_cells, hours)
        origin = self._device_day_origins()[device]
        has_days = origin != _NO_ORIGIN
        origin = np.where(has_days, origin, 0)
        day_start = minute - (minute - origin) % DAY_NS
        day_cells = _Cells.of(device[has_days], sensor[has_days], day_start[has_days])
        n_days = self._refresh(store, "1d", day_cells, days)
        return n_minutes, n_hours, n_days

    def _device_day_origins(self) -> I64:
        by_pilot = {p: self.day_origin(p) for p in self.registry.pilots}
        return np.asarray(
            [
                _NO_ORIGIN if by_pilot[d.pilot] is None else by_pilot[d.pilot]
                for d in self.registry.device_list
            ],
            dtype=np.int64,
        )

    def _refresh(self, store: Store, resolution: str, cells: _Cells, fetch: _Fetch) -> int:
        """Recompute `cells` of one level span by span, then write them in one go."""
        width = resolution_ns(resolution)
        found: list[Rollups] = []
        for pilot, sensor, start, end, devices in self._spans(cells, width):
            rollups = fetch(pilot, sensor, start, end, devices)
            found.append(rollups.take(cells.member(rollups)))
        fresh = Rollups.concat(found)
        if len(fresh):
            store.write_rollups(resolution, fresh)
        return len(fresh)

    def _spans(self, cells: _Cells, width: int) -> Iterator[tuple[str, str, int, int, list[str]]]:
        """(pilot, sensor, start, end, devices) covering the cells, one query's worth each.

        A span breaks at a gap of more than `_SPAN_GAP` windows and at every `_SPAN_WINDOWS`
        windows, so a late minute three days back does not drag the days between into a scan.
        """
        if len(cells) == 0:
            return
        pilot = self.registry.device_pilot[cells.device].astype(np.int64)
        order = np.lexsort((cells.start_ns, cells.sensor, pilot))
        p, s, t, d = pilot[order], cells.sensor[order], cells.start_ns[order], cells.device[order]
        block = t // (width * _SPAN_WINDOWS)
        new = np.zeros(len(t), dtype=np.bool_)
        new[0] = True
        new[1:] = (
            (p[1:] != p[:-1])
            | (s[1:] != s[:-1])
            | (t[1:] - t[:-1] > width * _SPAN_GAP)
            | (block[1:] != block[:-1])
        )
        bounds = np.append(np.flatnonzero(new), len(t)).tolist()
        pilots = self.registry.pilot_list
        for a, b in itertools.pairwise(bounds):
            devices = self._device_ids[np.unique(d[a:b])].tolist()
            yield (
                pilots[int(p[a])].id,
                str(self._sensor_ids[s[a]]),
                int(t[a:b].min()),
                int(t[a:b].max()) + width,
                devices,
            )


_NO_ORIGIN = np.iinfo(np.int64).min
#: A span of cells breaks at gaps above this many windows and every this many windows.
_SPAN_GAP = 60
_SPAN_WINDOWS = 1440

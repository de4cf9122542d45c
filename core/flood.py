"""Report figures over windows of time: river rise, trend, rain intensity, windows over a level.

Flood reports give the river's rise in cm/day and the rain's intensity in mm/h; air quality
reports give the hours over a WHO guideline (docs/DOMAIN.md, "What researchers report on"). Each
function takes parallel arrays of one sensor (times, values and the output row of each
reading's device, `rows`, in `[0, n_rows)`) plus the windows the caller chose
(`core.windows`: local days, hours). As everywhere in the core, a reading repeated with the
same row and time counts once, the last given winning as in the store; NaN values carry no
data and are ignored; window sums and means come from the statistics kernel
(`core.stats.aggregate`).

Results stay in the sensor's unit: the caller converts (m to cm) and reads the unit off the
windows it passed (hourly windows make a window total of rain mm/h). This module must not
loop over readings in Python, read the store or choose levels or windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.quality import distinct_order
from core.stats import aggregate
from core.timeutil import DAY_NS

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Rows = NDArray[np.integer[Any]]
Bools = NDArray[np.bool_]


def _known(ts_ns: I64, value: F64, rows: Rows) -> tuple[I64, F64, Rows]:
    """The readings that carry a value (NaN is no data)."""
    known = ~np.isnan(value)
    if bool(known.all()):
        return ts_ns, value, rows
    return ts_ns[known], value[known], rows[known]


def _row_best(score: F64, valid: Bools) -> tuple[F64, I64]:
    """Per row, the largest `score` among `valid` cells and its column (earliest on a tie).

    NaN and -1 for a row without a valid cell.
    """
    n_rows, n_columns = score.shape
    if n_columns == 0:
        return np.full(n_rows, np.nan), np.full(n_rows, -1, dtype=np.int64)
    masked = np.where(valid, score, -np.inf)
    column = np.argmax(masked, axis=1)
    found = valid.any(axis=1)
    best = np.where(found, masked[np.arange(n_rows), column], np.nan)
    return best, np.where(found, column, -1).astype(np.int64)


# --- river rise and trend -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rise:
    """Day-to-day change of the daily mean; arrays per row, and per (row, day) for the means.

    `mean` and `count` are each local day's mean and readings (NaN and 0 without data). `rise`
    is the largest `mean[d] - mean[d - 1]` over consecutive days that both have data, in the
    value's unit per day, and `rise_day` the `d` where it ends (index into the days; the
    earliest on a tie). A row whose days with data are never consecutive has NaN and -1. A
    river that only fell has a negative `rise` (its smallest fall).
    """

    edges_ns: I64
    count: I64
    mean: F64
    rise: F64
    rise_day: I64


def daily_rise(
    ts_ns: I64,
    value: F64,
    rows: Rows,
    *,
    n_rows: int,
    day_edges_ns: I64,
) -> Rise:
    """The largest rise between consecutive days' mean values, per row (see `Rise`).

    `day_edges_ns` are the local-day boundaries (`core.windows.calendar_edges(..., "day", tz)`,
    days + 1 instants); readings outside them are ignored. A day without data breaks the
    chain: a rise is never measured across it.
    """
    ts_ns, value, rows = _known(ts_ns, value, rows)
    edges = np.asarray(day_edges_ns, dtype=np.int64)
    table = aggregate(
        ts_ns, rows, value, group=rows, n_groups=n_rows, edges_ns=edges, statistics=("mean",)
    )
    count, mean = table.count, table.mean
    measured = count > 0
    step = mean[:, 1:] - mean[:, :-1]
    rise, ended = _row_best(step, measured[:, 1:] & measured[:, :-1])
    rise_day = np.where(ended >= 0, ended + 1, -1).astype(np.int64)
    return Rise(edges, count, mean, rise, rise_day)


def trend_per_day(ts_ns: I64, value: F64, rows: Rows, *, n_rows: int) -> F64:
    """Least-squares slope of value against time per row, in the value's unit per day.

    The ordinary least-squares line through every reading of the row given (the caller picks
    the period), time in days of 86 400 s. NaN for a row with fewer than two distinct
    instants, where no line is defined.
    """
    ts_ns, value, rows = _known(ts_ns, value, rows)
    keep = distinct_order(rows, ts_ns)
    ts, v, row = ts_ns[keep], value[keep], rows[keep].astype(np.int64)
    n = np.bincount(row, minlength=n_rows)
    slope = np.full(n_rows, np.nan)
    if len(row) == 0:
        return slope
    first = np.full(n_rows, np.iinfo(np.int64).max)
    np.minimum.at(first, row, ts)
    # Centred sums, times from each row's first reading: no cancellation between big numbers.
    days = (ts - first[row]) / DAY_NS
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = np.bincount(row, weights=days, minlength=n_rows) / n
        mean_v = np.bincount(row, weights=v, minlength=n_rows) / n
        dt, dv = days - mean_t[row], v - mean_v[row]
        sxx = np.bincount(row, weights=dt * dt, minlength=n_rows)
        sxy = np.bincount(row, weights=dt * dv, minlength=n_rows)
        fitted = n >= 2  # distinct instants, so the time spread is positive
        slope[fitted] = sxy[fitted] / sxx[fitted]
    return slope


# --- rain intensity -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Intensity:
    """Window totals and the heaviest window per row; per (row, window) and per row arrays.

    `total` is the sum of the values in each window (NaN without readings: no data is not
    0 mm) and `count` the readings summed. `max` is each row's largest `total` and `window`
    its index (the earliest on a tie), NaN and -1 for a row without readings.
    """

    edges_ns: I64
    count: I64
    total: F64
    max: F64
    window: I64

    @property
    def peak(self) -> tuple[float, int, int]:
        """The heaviest window of any row: (total, row, window), NaN, -1, -1 without data.

        Rows are not added together: two gauges are two measurements of the same rain.
        """
        if not bool(np.any(self.window >= 0)):
            return float("nan"), -1, -1
        row = int(np.nanargmax(self.max))
        return float(self.max[row]), row, int(self.window[row])


def max_intensity(
    ts_ns: I64,
    value: F64,
    rows: Rows,
    *,
    n_rows: int,
    edges_ns: I64,
) -> Intensity:
    """The largest total over one window per row (see `Intensity`).

    `value` is the amount in each reading's own interval (rain in mm since the previous
    reading), counted whole in the window holding the reading's time, never split across a
    window edge. With hourly `edges_ns` the totals are mm/h. Readings outside the edges are
    ignored.
    """
    ts_ns, value, rows = _known(ts_ns, value, rows)
    edges = np.asarray(edges_ns, dtype=np.int64)
    table = aggregate(
        ts_ns, rows, value, group=rows, n_groups=n_rows, edges_ns=edges, statistics=("sum",)
    )
    count, total = table.count, table.sum
    best, window = _row_best(total, count > 0)
    return Intensity(edges, count, total, best, window)


# --- windows over a level -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Over:
    """Windows whose pooled mean is above a level; arrays per window.

    `mean` is the mean of every reading in the window, whichever row it came from (NaN
    without readings), `count` the readings. A window is `measured` with at least `min_count`
    readings and `over` when it is measured and its mean is strictly above the level.
    """

    level: float
    edges_ns: I64
    count: I64
    mean: F64
    measured: Bools
    over: Bools

    @property
    def n_over(self) -> int:
        """Windows over the level."""
        return int(np.count_nonzero(self.over))

    @property
    def n_measured(self) -> int:
        """Windows with data (at least `min_count` readings)."""
        return int(np.count_nonzero(self.measured))


def windows_over(
    ts_ns: I64,
    value: F64,
    rows: Rows,
    *,
    edges_ns: I64,
    level: float,
    min_count: int = 1,
) -> Over:
    """Windows whose mean over all rows together is above `level` (see `Over`).

    With hourly `edges_ns` and a WHO guideline this gives the hours over it (indicative: the
    guideline is defined on 24-hour means). `rows` serves only to count a reading repeated
    with the same row and time once; readings outside the edges are ignored.
    """
    if min_count < 1:
        raise ValueError("min_count must be at least 1")
    ts_ns, value, rows = _known(ts_ns, value, rows)
    edges = np.asarray(edges_ns, dtype=np.int64)
    table = aggregate(
        ts_ns,
        rows,
        value,
        group=np.zeros(len(rows), dtype=np.intp),
        n_groups=1,
        edges_ns=edges,
        statistics=("mean",),
    )
    count, mean = table.count[0], table.mean[0]
    measured = count >= min_count
    with np.errstate(invalid="ignore"):
        over = measured & (mean > level)
    return Over(level, edges, count, mean, measured, over)

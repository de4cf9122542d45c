"""Threshold exceedance, as whole-array numpy: episodes past a level and days over a guideline.

Episodes answer "how long was the river above its alert level, and how high did it get";
exceedance days answer "on how many local days did the 24-hour mean exceed the guideline".
Both take parallel arrays of one sensor (times, values, the device row of each reading);
readings of the same device at the same instant count once, the last given winning, as in the
store. Durations are measured between readings, never interpolated between them.

This module must not loop over readings in Python, read the store or choose levels: the
caller passes the pilot's thresholds and the sensor's guideline from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.quality import distinct_order
from core.stats import aggregate
from core.timeutil import NS_PER_S, ns_to_datetime
from core.windows import calendar_edges

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Rows = NDArray[np.integer[Any]]
Bools = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Episodes:
    """Episodes past a level, one row each, ordered by device row then start.

    An episode starts at the first reading past the level (at or above it when `above`, at or
    below it otherwise) and ends at the first later reading of the device back on the other
    side; when none follows it ends at the device's last reading and is `open`. `peak` is the
    most extreme value past the level (highest when `above`, lowest otherwise). `total_s` and
    `count` are per device row.
    """

    level: float
    above: bool
    device_row: NDArray[np.int32]
    start_ns: I64
    end_ns: I64
    duration_s: F64
    peak: F64
    open: Bools
    total_s: F64
    count: I64

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])


def episodes(
    ts_ns: I64,
    value: F64,
    device_row: Rows,
    *,
    level: float,
    above: bool = True,
    n_devices: int,
) -> Episodes:
    """Episodes where one sensor is past `level`, per device row (see `Episodes`).

    Input need not be sorted. NaN values carry no level and are ignored.
    """
    known = ~np.isnan(value)
    ts_ns, value, device_row = ts_ns[known], value[known], device_row[known]
    keep = distinct_order(device_row, ts_ns)
    ts, val, rows = ts_ns[keep], value[keep], device_row[keep].astype(np.int64)
    n = len(ts)
    past = val >= level if above else val <= level
    device_begins = np.ones(n, dtype=np.bool_)
    device_begins[1:] = rows[1:] != rows[:-1]
    device_ends = np.append(device_begins[1:], True)
    before = np.append(False, past[:-1]) & ~device_begins
    after = np.append(past[1:], False) & ~device_ends
    begins = past & ~before
    first = np.flatnonzero(begins)
    last = np.flatnonzero(past & ~after)  # the last reading past the level, episode by episode
    is_open = device_ends[last]
    end = np.where(is_open, last, last + 1)
    duration_s = (ts[end] - ts[first]) / NS_PER_S
    extreme = np.maximum if above else np.minimum
    peak = extreme.reduceat(val[past], np.flatnonzero(begins[past])) if len(first) else np.empty(0)
    episode_rows = rows[first]
    total_s = np.bincount(episode_rows, weights=duration_s, minlength=n_devices)
    return Episodes(
        level=level,
        above=above,
        device_row=episode_rows.astype(np.int32),
        start_ns=ts[first],
        end_ns=ts[end],
        duration_s=duration_s,
        peak=peak,
        open=is_open,
        total_s=total_s.astype(np.float64),
        count=np.bincount(episode_rows, minlength=n_devices).astype(np.int64),
    )


@dataclass(frozen=True)
class DailyExceedance:
    """Local calendar days against a 24-hour guideline; arrays of shape (devices, days).

    `mean` is the day's mean (NaN without readings); a day is `missing` with fewer than
    `min_count` readings, and `exceeds` when it is not missing and its mean is above the
    guideline. `partial` marks days only partly inside the requested range (their mean is over
    that part). `n_exceedances` and `n_missing` are per device row.
    """

    guideline: float
    days: tuple[date, ...]
    edges_ns: I64
    partial: Bools
    count: I64
    mean: F64
    missing: Bools
    exceeds: Bools
    n_exceedances: I64
    n_missing: I64

    def exceedances(self, row: int) -> list[tuple[date, float]]:
        """The local dates of one device row's exceedance days with their means, in order."""
        return [(self.days[i], float(self.mean[row, i])) for i in np.flatnonzero(self.exceeds[row])]


def exceedance_days(
    ts_ns: I64,
    value: F64,
    device_row: Rows,
    *,
    n_devices: int,
    tz: tzinfo,
    guideline: float,
    start_ns: int,
    end_ns: int,
    min_count: int = 1,
) -> DailyExceedance:
    """Local days (in `tz`, daylight saving included) whose mean exceeds `guideline`.

    Only readings in `[start_ns, end_ns)` count; NaN values are ignored. Days without data are
    missing, never exceedances; `min_count` raises the bar for a day to count as measured
    (e.g. 18 hourly means for a 75 % rule).
    """
    edges = calendar_edges(start_ns, end_ns, "day", tz)
    inside = (ts_ns >= start_ns) & (ts_ns < end_ns) & ~np.isnan(value)
    rows = device_row[inside]
    table = aggregate(
        ts_ns[inside], rows, value[inside], group=rows, n_groups=n_devices, edges_ns=edges
    )
    missing = table.count < min_count
    with np.errstate(invalid="ignore"):
        exceeds = ~missing & (table.mean > guideline)
    return DailyExceedance(
        guideline=guideline,
        days=tuple(ns_to_datetime(int(edge), tz).date() for edge in edges[:-1]),
        edges_ns=edges,
        partial=(edges[:-1] < start_ns) | (edges[1:] > end_ns),
        count=table.count,
        mean=table.mean,
        missing=missing,
        exceeds=exceeds,
        n_exceedances=np.count_nonzero(exceeds, axis=1).astype(np.int64),
        n_missing=np.count_nonzero(missing, axis=1).astype(np.int64),
    )

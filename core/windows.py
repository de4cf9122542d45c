"""Time windows: fixed lengths aligned to the pilot's clock, and local calendar days, weeks, months.

A window set is described by its edges, an int64 array of `W + 1` instants (ns since the epoch,
UTC): window `i` is `[edges[i], edges[i + 1])`. Fixed windows are aligned to multiples of their
length counted from an origin (the API uses the pilot's UTC offset, so a `1h` or `1d` window
starts on the local hour or local midnight). Calendar windows follow the pilot's time zone,
including any daylight-saving change: a local day is whatever lies between two local
midnights, a week starts on Monday (ISO 8601), a month on its first day.

This module must not look at readings one by one: `window_index` is whole-array numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from core.timeutil import NS_PER_S, datetime_to_ns, ns_to_datetime, parse_duration_s

CalendarUnit = Literal["day", "week", "month"]
CALENDAR_UNITS: tuple[CalendarUnit, ...] = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Fixed:
    """Windows of `every_ns`, aligned to `origin_ns + k * every_ns`."""

    every_ns: int
    origin_ns: int = 0


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local calendar days, ISO weeks or months in a time zone."""

    unit: CalendarUnit
    tz: tzinfo


WindowSpec = Fixed | Calendar


def parse_window(text: str, tz: tzinfo, origin_ns: int = 0) -> WindowSpec:
    """`day`, `week` or `month` (calendar, local), or a duration such as `10m` (fixed)."""
    word = text.strip().lower()
    if word in CALENDAR_UNITS:
        return Calendar(word, tz)
    return Fixed(parse_duration_s(word) * NS_PER_S, origin_ns)


def edges(spec: WindowSpec, start_ns: int, end_ns: int) -> NDArray[np.int64]:
    """Edges of the windows that intersect `[start_ns, end_ns)` (empty when the range is)."""
    if isinstance(spec, Fixed):
        return fixed_edges(start_ns, end_ns, spec.every_ns, spec.origin_ns)
    return calendar_edges(start_ns, end_ns, spec.unit, spec.tz)


def count_windows(spec: WindowSpec, start_ns: int, end_ns: int) -> int:
    """How many windows `edges` would give, computed without building them."""
    if end_ns <= start_ns:
        return 0
    if isinstance(spec, Fixed):
        first = start_ns - (start_ns - spec.origin_ns) % spec.every_ns
        return -(-(end_ns - first) // spec.every_ns)
    # One Python step per window; a limit on windows keeps this bounded.
    return max(len(calendar_edges(start_ns, end_ns, spec.unit, spec.tz)) - 1, 0)


def fixed_edges(start_ns: int, end_ns: int, every_ns: int, origin_ns: int = 0) -> NDArray[np.int64]:
    """Edges of aligned fixed windows covering `[start_ns, end_ns)`."""
    if every_ns <= 0:
        raise ValueError("every_ns must be positive")
    if end_ns <= start_ns:
        return np.empty(0, dtype=np.int64)
    first = start_ns - (start_ns - origin_ns) % every_ns
    count = -(-(end_ns - first) // every_ns)
    return first + np.arange(count + 1, dtype=np.int64) * every_ns


def _calendar_start(day: date, unit: CalendarUnit) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _calendar_next(day: date, unit: CalendarUnit) -> date:
    if unit == "day":
        return day + timedelta(days=1)
    if unit == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _local_midnight_ns(day: date, tz: tzinfo) -> int:
    """The instant of local midnight starting `day` (the first valid instant if it is skipped)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=tz)
    # A midnight skipped by a DST change is resolved by zoneinfo to the instant it maps to.
    return datetime_to_ns(moment)


def calendar_edges(start_ns: int, end_ns: int, unit: CalendarUnit, tz: tzinfo) -> NDArray[np.int64]:
    """Edges of the local calendar windows covering `[start_ns, end_ns)`.

    One Python step per window (a year of days is 366 steps), never per reading.
    """
    if end_ns <= start_ns:
        return np.empty(0, dtype=np.int64)
    day = _calendar_start(ns_to_datetime(start_ns, tz).date(), unit)
    out = [_local_midnight_ns(day, tz)]
    while out[-1] < end_ns:
        day = _calendar_next(day, unit)
        out.append(_local_midnight_ns(day, tz))
    return np.asarray(out, dtype=np.int64)


def window_index(ts_ns: NDArray[np.int64], edges_ns: NDArray[np.int64]) -> NDArray[np.intp]:
    """The window of each instant (-1 outside the edges), vectorised.

    Uniform edges (fixed windows) take an exact float path that avoids int64 division;
    others use a binary search over the edges.
    """
    n_windows = len(edges_ns) - 1
    if n_windows <= 0:
        return np.full(len(ts_ns), -1, dtype=np.intp)
    first, last = int(edges_ns[0]), int(edges_ns[-1])
    step = int(edges_ns[1] - edges_ns[0])
    uniform = n_windows == 1 or bool(np.all(np.diff(edges_ns) == step))
    if uniform and last - first < 2**52:
        # Offsets below 2**52 are exact as doubles, and a correctly rounded division of two
        # exact integers floors to the integer quotient (the gap to the next window boundary,
        # at least 1 / step, is far above the rounding error there).
        index = np.floor((ts_ns - first).astype(np.float64) / step).astype(np.intp)
    else:
        index = np.searchsorted(edges_ns, ts_ns, side="right") - 1
    outside = (ts_ns < first) | (ts_ns >= last)
    if outside.any():
        index[outside] = -1
    return index

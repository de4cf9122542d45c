"""What each rule kind measures per reading, over whole arrays: the metric and its side.

Each function takes one rule's readings (sorted by device then time) and returns, per reading,
the metric, whether it is past the level, whether it is back on the safe side (neither: in
the hysteresis band, or not known), and its onset (when the condition it shows began: the
reading's own time, except for `flat`, where it is the first reading of the flat window).

The windowed kinds (mean, rise, flat) see each device's recent readings from the state before
the batch's: `Extended` lays them end to end per device, and `retained` picks what the state
keeps for the next batch. A window is cut the same way whatever the batching (by device time
and by a cap in readings), so one batch or many give the same metric, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.alerts.kernels import (
    F64,
    I64,
    NONE_NS,
    Bools,
    Index,
    grouped_search,
    window_range,
    window_reduce,
)
from core.alerts.rules import Rule
from core.timeutil import HOUR_NS, NS_PER_S


@dataclass(frozen=True, slots=True)
class Measured:
    """Per reading: the metric, its side of the level, and its onset."""

    metric: F64
    past: Bools
    safe: Bools
    onset: I64


@dataclass(frozen=True, slots=True)
class Extended:
    """Per device (segment) of one rule: the kept window, then the batch's readings.

    `offsets` bound each segment's entries; `at` is the position of each batch reading.
    """

    ts: I64
    value: F64
    offsets: I64
    at: Index

    @classmethod
    def build(cls, seg: Index, ts: I64, value: F64, window: tuple[I64, I64, F64]) -> Extended:
        """Lay out each segment's kept window before its readings.

        `window` is ragged per segment (offsets, ts, values); `seg` is each reading's local
        segment (0-based, sorted).
        """
        w_off, w_ts, w_value = window
        n_seg = len(w_off) - 1
        w_len = np.diff(w_off)
        b_len = np.bincount(seg, minlength=n_seg)
        offsets = np.zeros(n_seg + 1, dtype=np.int64)
        np.cumsum(w_len + b_len, out=offsets[1:])
        total = int(offsets[-1])
        out_ts = np.empty(total, dtype=np.int64)
        out_value = np.empty(total, dtype=np.float64)
        w_at = np.arange(len(w_ts)) + np.repeat(offsets[:-1] - w_off[:-1], w_len)
        b_first = np.cumsum(b_len) - b_len
        at = (np.arange(len(ts)) + np.repeat(offsets[:-1] + w_len - b_first, b_len)).astype(np.intp)
        out_ts[w_at], out_value[w_at] = w_ts, w_value
        out_ts[at], out_value[at] = ts, value
        return cls(out_ts, out_value, offsets, at)

    def retained(self, keep_after_ns: I64, cap: I64) -> tuple[I64, I64, F64]:
        """The window the state keeps: per segment, its recent entries.

        Those after the segment's last time less `keep_after_ns`, and among its last `cap`.
        """
        n_seg = len(self.offsets) - 1
        lengths = np.diff(self.offsets)
        seg = np.repeat(np.arange(n_seg), lengths)
        last = self.offsets[1:] - 1
        index = np.arange(len(self.ts))
        keep = (self.ts > self.ts[last][seg] - keep_after_ns[seg]) & (index > last[seg] - cap[seg])
        offsets = np.zeros(n_seg + 1, dtype=np.int64)
        np.cumsum(np.bincount(seg[keep], minlength=n_seg), out=offsets[1:])
        return offsets, self.ts[keep], self.value[keep]


def level_sides(rule: Rule, metric: F64, *, strict: bool = False) -> tuple[Bools, Bools]:
    """Past the level (at or past it; strictly when `strict`), and back beyond the clear level.

    NaN is neither.
    """
    if rule.direction == "above":
        past = metric > rule.level if strict else metric >= rule.level
        safe = metric <= rule.clear_level if strict else metric < rule.clear_level
    else:
        past = metric < rule.level if strict else metric <= rule.level
        safe = metric >= rule.clear_level if strict else metric > rule.clear_level
    return past, safe


def plain(rule: Rule, ts: I64, value: F64) -> Measured:
    """`threshold` and `battery_low`: the reading itself."""
    past, safe = level_sides(rule, value)
    return Measured(value, past, safe, ts)


def silence(ts: I64, begins: Bools, before_ns: I64) -> Measured:
    """`silent` on readings: each reading ends the silence before it.

    The metric is the seconds since the reading before (or since `before_ns` for a
    segment's first; NaN when never heard). Readings never fire a silence (the clock does),
    and every reading is on the safe side.
    """
    previous = np.empty_like(ts)
    previous[1:] = ts[:-1]
    previous[begins] = before_ns
    gap = np.where(previous == NONE_NS, np.nan, (ts - previous) / NS_PER_S)
    n = len(ts)
    return Measured(gap, np.zeros(n, np.bool_), np.ones(n, np.bool_), ts)


def window_cap(window_s: int, interval_s: I64) -> I64:
    """Readings a window keeps at most: twice those the registered interval gives, and one."""
    return 2 * (-(-window_s // interval_s)) + 1


def flat_readings(rule: Rule, interval_s: I64) -> I64:
    """The n of a flat rule per device: given, or enough to span `span_s` at the interval."""
    if rule.readings is not None:
        return np.full(len(interval_s), rule.readings, dtype=np.int64)
    return np.maximum(np.rint(rule.span_s / interval_s).astype(np.int64) + 1, 2)


def rolling_mean(rule: Rule, ext: Extended, seg: Index, interval_s: I64) -> Measured:
    """`mean_over_guideline`: the mean of the device's readings in `(t - window, t]`.

    At most `window_cap` readings count (the newest); the mean is known when the window holds
    at least `min_coverage` of the readings the registered interval gives.
    """
    p = ext.at
    t = ext.ts[p]
    window_ns = rule.window_s * NS_PER_S
    cap = window_cap(rule.window_s, interval_s)[seg]
    lo = grouped_search(ext.ts, ext.offsets[seg].astype(np.intp), p + 1, t - window_ns, right=True)
    lo = np.maximum(lo, p - cap + 1)
    count = p - lo + 1
    mean = window_reduce(np.add, ext.value, lo, p) / count
    known = count >= rule.min_coverage * rule.window_s / interval_s[seg]
    mean = np.where(known, mean, np.nan)
    past, safe = level_sides(rule, mean, strict=True)
    return Measured(mean, past, safe, t)


def rise(rule: Rule, ext: Extended, seg: Index, interval_s: I64) -> Measured:
    """`rate_of_rise`: (last - first) / their time apart, per hour.

    Over the readings in `[t - window, t]` (at most `window_cap`, the newest); known when
    they span `min_span_s`.
    """
    p = ext.at
    t = ext.ts[p]
    window_ns = rule.window_s * NS_PER_S
    cap = window_cap(rule.window_s, interval_s)[seg]
    first = grouped_search(ext.ts, ext.offsets[seg].astype(np.intp), p + 1, t - window_ns)
    first = np.maximum(first, p - cap + 1)
    span = t - ext.ts[first]
    known = (span >= rule.min_span_s * NS_PER_S) & (span > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(known, (ext.value[p] - ext.value[first]) * HOUR_NS / span, np.nan)
    past, safe = level_sides(rule, rate)
    return Measured(rate, past, safe, t)


def flat(rule: Rule, ext: Extended, seg: Index, n: I64) -> Measured:
    """`flat`: the range (max - min) of the last n readings; past when at most `epsilon`.

    Not known before a device has n readings; the onset is the first of the n.
    """
    p = ext.at
    t = ext.ts[p]
    a = p - n[seg] + 1
    known = a >= ext.offsets[seg]
    spread = np.full(len(p), np.nan)
    at = np.flatnonzero(known)
    spread[at] = window_range(ext.value, a[at], p[at])
    past = known & (spread <= rule.level)
    safe = known & (spread > rule.level)
    onset = t.copy()
    onset[at] = ext.ts[a[at]]
    return Measured(spread, past, safe, onset)

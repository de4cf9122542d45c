"""What each rule kind measures per reading, over whole arrays: the metric and its side.

Every rule's readings are measured at once (no loop over rules): the rules' parameters are
arrays (`RuleTable`), gathered per reading. Per reading: the metric, whether it is past the
level, whether it is back on the safe side (neither: in the hysteresis band, or not known),
and its onset (when the condition it shows began: the reading's own time, except for `flat`,
where it is the first reading of the flat window).

The windowed kinds (mean, rise, flat) read each device's recent readings followed by the
batch's: `Windows` says where they lie (in the state's arena for live readings, in the batch
itself for a backlog), and `windowed` also says what a live row keeps for the next batch. A
window is cut the same way whatever the batching (by device time and by a cap in readings),
and its metric depends on its contents only, so one batch or many give the same metric, bit
for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.alerts.kernels import (
    F64,
    I64,
    NONE_NS,
    Bools,
    Index,
    grouped_search,
    last_range,
    window_sums,
)
from core.alerts.rules import KINDS, Rule
from core.timeutil import HOUR_NS, NS_PER_S

KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}
MEAN, RISE, FLAT, SILENT = (
    KIND_CODE["mean_over_guideline"],
    KIND_CODE["rate_of_rise"],
    KIND_CODE["flat"],
    KIND_CODE["silent"],
)
WINDOWED: frozenset[str] = frozenset({"mean_over_guideline", "rate_of_rise", "flat"})
#: Far enough back that a flat rule's window is cut by its count alone.
FOREVER_NS = int(np.iinfo(np.int64).max // 4)


@dataclass(frozen=True, slots=True)
class RuleTable:
    """The rules' parameters as arrays indexed by rule (see `Rule`).

    `sign` is +1 for rules whose metric is past the level upwards, -1 downwards: comparing
    `sign * metric` with `sign * level` makes one comparison serve both directions (a change
    of sign is exact). `strict`: past strictly beyond the level (the mean), safe at the clear
    level already. `window_ns`: how far back a window reaches in device time (a flat rule's,
    by its count alone: `FOREVER_NS`); `after_ns`: a window holds the readings at or after
    `t - after_ns` (the mean's, strictly after `t - window`: one nanosecond less). `day`: a
    mean over the local calendar day so far (`window = "day"`): its window begins at the
    local midnight of each reading's day instead (`Windows.day_from`), and its least count
    is that day's (`Windows.day_least`); its `window_s` (86400) only sets its cap.
    """

    kind: NDArray[np.int8]
    windowed: Bools
    window_s: I64
    window_ns: I64
    after_ns: I64
    min_coverage: F64
    min_span_ns: I64
    readings: I64  # a flat rule's n when given, else -1 (from span_s and the interval)
    span_s: I64
    sign: F64
    level: F64
    signed_level: F64
    signed_clear: F64
    strict: Bools
    silent: Bools
    day: Bools

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> RuleTable:
        """The table of `rules`, in their order."""
        sign = np.asarray([1.0 if r.direction == "above" else -1.0 for r in rules])
        window_ns = np.asarray(
            [FOREVER_NS if r.kind == "flat" else r.window_s * NS_PER_S for r in rules],
            dtype=np.int64,
        )
        strict = np.asarray([r.kind == "mean_over_guideline" for r in rules], dtype=np.bool_)
        return cls(
            kind=np.asarray([KIND_CODE[r.kind] for r in rules], dtype=np.int8),
            windowed=np.asarray([r.kind in WINDOWED for r in rules], dtype=np.bool_),
            window_s=np.asarray([r.window_s for r in rules], dtype=np.int64),
            window_ns=window_ns,
            after_ns=window_ns - strict,
            min_coverage=np.asarray([r.min_coverage for r in rules], dtype=np.float64),
            min_span_ns=np.asarray([r.min_span_s * NS_PER_S for r in rules], dtype=np.int64),
            readings=np.asarray(
                [-1 if r.readings is None else r.readings for r in rules], dtype=np.int64
            ),
            span_s=np.asarray([r.span_s for r in rules], dtype=np.int64),
            sign=sign,
            level=np.asarray([r.level for r in rules], dtype=np.float64),
            signed_level=sign * np.asarray([r.level for r in rules], dtype=np.float64),
            signed_clear=sign * np.asarray([r.clear_level for r in rules], dtype=np.float64),
            strict=strict,
            silent=np.asarray([r.kind == "silent" for r in rules], dtype=np.bool_),
            day=np.asarray(
                [r.kind == "mean_over_guideline" and r.window == "day" for r in rules],
                dtype=np.bool_,
            ),
        )

    def per_key(self, interval_s: I64) -> tuple[I64, F64]:
        """Per key (`rule * len(interval_s) + device`): a window's reach and least count.

        Reach: the readings a window holds at most (`window_cap` for the mean and the rise,
        n for flat); least count: the readings a mean needs to be known (a day's mean: that
        of a 24-hour day, unused: each reading has its own day's, `Windows.day_least`).
        """
        window_s, iv = self.window_s[:, None], interval_s[None, :]
        n = flat_readings(self.readings[:, None], self.span_s[:, None], iv)
        reach = np.where((self.kind == FLAT)[:, None], n, window_cap(window_s, iv))
        least = self.min_coverage[:, None] * window_s / iv
        return reach.ravel(), least.ravel()


def window_cap(window_s: I64, interval_s: I64) -> I64:
    """Readings a window keeps at most: twice those the registered interval gives, and one."""
    out: I64 = 2 * (-(-window_s // interval_s)) + 1
    return out


def flat_readings(readings: I64, span_s: I64, interval_s: I64) -> I64:
    """The n of a flat rule per device: given, or enough to span `span_s` at the interval."""
    derived = np.maximum(np.rint(span_s / interval_s).astype(np.int64) + 1, 2)
    out: I64 = np.where(readings >= 0, readings, derived)
    return out


def sides(table: RuleTable, rule: Index, metric: F64) -> tuple[Bools, Bools]:
    """Per reading of `rule`: past the level, and back beyond the clear level.

    Past: at or past it (strictly beyond for the mean); safe: strictly beyond the clear level
    (at it already for the mean). NaN is neither.
    """
    sign = table.sign[rule]
    signed = metric * sign
    level, clear = table.signed_level[rule], table.signed_clear[rule]
    past = signed >= level
    safe = signed < clear
    strict = np.flatnonzero(table.strict[rule])
    if len(strict):
        past[strict] = signed[strict] > level[strict]
        safe[strict] = signed[strict] <= clear[strict]
    return past, safe


def silence(ts: I64, at: Index, seg: Index, first: Index, before_ns: I64) -> F64:
    """`silent` on readings `at`: the seconds since the reading before (each reading ends it).

    For a segment's first reading (`first`, per segment `seg`), since `before_ns`; NaN
    when never heard. Readings never fire a silence (the clock does): every one is on the
    safe side.
    """
    previous = np.where(at == first[seg[at]], before_ns[seg[at]], ts[at - 1])
    out: F64 = np.where(previous == NONE_NS, np.nan, (ts[at] - previous) / NS_PER_S)
    return out


@dataclass(frozen=True, slots=True)
class Windows:
    """Where windowed segments' readings lie: kept ones, then the batch's, in `ts`/`value`.

    Per segment: its rule, its reach and least count (`RuleTable.per_key`), where its
    entries begin and end (`[start, end)`, the newest last), and (`quiet`, when known)
    whether its key has nothing under way: no alarm open, no run pending; per reading of the
    batch: its segment and position, and for the readings of day means (`RuleTable.day`;
    None when the batch has none) the local midnight that begins the reading's day and the
    least count of that day (`min_coverage` x the day's real length ÷ the interval).
    """

    ts: I64
    value: F64
    rule: Index
    reach: I64
    least: F64
    start: Index
    end: Index
    seg: Index
    pos: Index
    quiet: Bools | None = None
    day_from: I64 | None = None
    day_least: F64 | None = None


@dataclass(frozen=True, slots=True)
class Measured:
    """Per windowed reading: the metric and its onset; per segment, where what is kept begins."""

    metric: F64
    onset: I64
    keep_from: Index | None


def windowed(table: RuleTable, w: Windows, *, keep: bool) -> Measured:
    """The rolling mean, the rise per hour, or the flat range of each reading in `w`.

    - mean: of the device's readings in `(t - window, t]`, at most `window_cap` (the newest);
      known when they are at least `min_coverage` of those the interval gives; a day's mean
      (`RuleTable.day`): of those since the local midnight that began t's day (`day_from`),
      at most `window_cap`; known when they are at least `min_coverage` of those the
      interval gives over the whole day (`day_least`);
    - rise: (last - first) / their time apart, per hour, over the readings in
      `[t - window, t]` (at most `window_cap`); known when they span `min_span_s`;
    - flat: max - min of the last n readings; not known before there are n.

    With `keep`, also where each segment's kept window begins: its entries newer than its
    last reading less the window (a day's mean: since the midnight of its last reading's
    day), at most `window_cap - 1` of them (flat: the last n - 1).
    One search finds where the windows of means and rises begin; a flat window is its last
    n readings.
    """
    seg, p = w.seg, w.pos
    single = len(p) == len(w.rule)  # one reading a segment: `seg` is the identity
    t = w.ts[p]
    start = w.start if single else w.start[seg]
    reach = w.reach if single else w.reach[seg]
    kind = table.kind[w.rule]
    if not single:
        kind = kind[seg]
    first = np.maximum(start, p - reach + 1)  # a flat window: its last n readings
    timed = np.flatnonzero(kind != FLAT)  # the others are cut by time too
    on_day: Bools | None = None  # the readings of day means, when the batch has some
    if w.day_from is not None:
        on_day = table.day[w.rule] if single else table.day[w.rule][seg]
    if len(timed):
        after = table.after_ns[w.rule]
        query = t[timed] - (after[timed] if single else after[seg[timed]])
        if on_day is not None:  # since the local midnight that began the reading's day
            assert w.day_from is not None
            query = np.where(on_day[timed], w.day_from[timed], query)
        first[timed] = grouped_search(w.ts, first[timed], p[timed] + 1, query)
    metric = np.full(len(p), np.nan)
    _mean(table, w, metric, np.flatnonzero(kind == MEAN), first, on_day=on_day)
    _rise(table, w, metric, np.flatnonzero(kind == RISE), first)
    flats = np.flatnonzero(kind == FLAT)
    onset = t
    if len(flats):
        a, b = first[flats], p[flats]
        known = b - a + 1 == reach[flats]
        if w.quiet is not None:
            known &= _range_needed(table, w, flats, b, known, single=single)
        known = np.flatnonzero(known)
        at = flats[known]
        metric[at] = last_range(w.value, a[known], b[known], start[at])
        onset = t.copy()
        onset[at] = w.ts[a[known]]
    if not keep:
        return Measured(metric, onset, None)
    # What a segment keeps begins where its last reading's window does, but for an entry at
    # exactly t - window (the rise's window holds it, the next one will not) and the count.
    kept = first if single else first[np.append(np.flatnonzero(np.diff(seg)), len(seg) - 1)]
    kept = np.maximum(kept, w.end - w.reach + 1)
    # (a day's window is since a midnight: never cut by the length of a window)
    cut = np.flatnonzero((table.kind[w.rule] != FLAT) & ~table.day[w.rule])
    if len(cut):
        at = kept[cut]
        kept[cut] += w.ts[at] <= w.ts[w.end[cut] - 1] - table.window_ns[w.rule[cut]]
    return Measured(metric, onset, kept)


def _range_needed(
    table: RuleTable, w: Windows, flats: Index, b: Index, known: Bools, *, single: bool
) -> Bools:
    """Which flat readings' ranges are of use.

    A reading more than epsilon from the one before it is not past (its window's range is
    at least that step). In a quiet segment (nothing under way) none of whose readings may be
    past, nothing happens: their metrics are not used, and are left unknown.
    """
    seg = w.seg[flats]
    epsilon = table.level[w.rule[seg]]
    maybe = known & (np.abs(w.value[b] - w.value[np.where(known, b - 1, b)]) <= epsilon)
    if single:
        may_be_past = maybe
    else:
        any_maybe = np.zeros(len(w.rule), dtype=np.bool_)
        any_maybe[seg[maybe]] = True
        may_be_past = any_maybe[seg]
    assert w.quiet is not None
    out: Bools = ~w.quiet[seg] | may_be_past
    return out


def _mean(
    table: RuleTable, w: Windows, metric: F64, at: Index, first: Index, *, on_day: Bools | None
) -> None:
    if not len(at):
        return
    a, b = first[at], w.pos[at]
    count = b - a + 1
    least = w.least[w.seg[at]]
    if on_day is not None:  # a day's mean: that day's least count
        assert w.day_least is not None
        least = np.where(on_day[at], w.day_least[at], least)
    known = np.flatnonzero(count >= least)  # summed only when known
    if len(known):
        a, b = a[known], b[known]
        metric[at[known]] = window_sums(w.value, a, b) / count[known]


def _rise(table: RuleTable, w: Windows, metric: F64, at: Index, first: Index) -> None:
    if not len(at):
        return
    a, b = first[at], w.pos[at]
    span = w.ts[b] - w.ts[a]
    known = (span >= table.min_span_ns[w.rule][w.seg[at]]) & (span > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(known, (w.value[b] - w.value[a]) * HOUR_NS / span, np.nan)
    metric[at] = rate

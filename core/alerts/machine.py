"""The alarm state machine of every rule kind, run over whole arrays at once.

Per segment (one rule and one device, readings in device-time order) each reading says
whether the rule's metric is `past` the level, back on the `safe` side of the clear level, or
neither (in the hysteresis band, or not known: too few readings in a window). The machine:

- idle: a run of readings past the level that lasts `pending` (from its first reading's
  `onset`) fires the alarm at the first reading that completes it; the episode starts at the
  run's onset. Any reading not past the level ends the run.
- active: a run of readings on the safe side that lasts `clear` clears it at the first reading
  that completes it; the episode ends at the run's first reading. Any reading not on the safe
  side ends the run. So values hovering in the band keep one alarm open.

Vectorised: runs of `past` and of `safe` are found with shifts, each run's completing reading
by a binary search, and the candidates are merged in reading order; a candidate changes the
state exactly when it differs from the previous one of its segment (the first one compared
with the carried state). That is the sequential machine, step for step, without a loop over
readings. Peaks are window reductions over each episode's readings.
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
    ragged_gather,
    runs,
    window_reduce,
)

#: `run_machine` runs on busy segments only in groups of this many segments or more, when at
#: most one in `_SPARSE_SHARE` is busy.
_SPARSE_MIN_SEGMENTS = 128
_SPARSE_SHARE = 3


@dataclass(frozen=True, slots=True)
class Carry:
    """The state of each segment between batches (arrays, one entry per segment).

    `start_ns`/`start_value`: the episode's (active) or the pending run's (idle) first reading;
    `peak`: the most extreme metric since then; `pending_ns`: when an idle segment's run past
    the level began (`NONE_NS` if none); `clear_ns`/`clear_value`: when an active segment's
    run on the safe side began, and its metric there.
    """

    active: Bools
    start_ns: I64
    start_value: F64
    peak: F64
    pending_ns: I64
    clear_ns: I64
    clear_value: F64

    @classmethod
    def idle(cls, n: int) -> Carry:
        """Segments with nothing under way (arrays of their own)."""
        none = np.full(n, NONE_NS, dtype=np.int64)
        nan = np.full(n, np.nan)
        return cls(
            np.zeros(n, np.bool_), none, nan, nan.copy(), none.copy(), none.copy(), nan.copy()
        )


@dataclass(frozen=True, slots=True)
class Signals:
    """Per reading, sorted by segment then time: what the rule's metric says."""

    seg: Index
    ts: I64
    onset: I64
    metric: F64
    past: Bools
    safe: Bools


@dataclass(frozen=True, slots=True)
class RuleTimes:
    """Per rule: the direction of its peaks (high: the largest metric), its timings (ns)."""

    high: Bools
    pending_ns: I64
    clear_ns: I64


@dataclass(frozen=True, slots=True)
class Segments:
    """Per segment: its slice and rule (its direction and timings read when needed)."""

    first: Index
    last: Index
    rule: Index
    times: RuleTimes

    @property
    def high(self) -> Bools:
        """Whether each segment's peak is its largest metric."""
        out: Bools = self.times.high[self.rule]
        return out

    @property
    def pending_ns(self) -> I64:
        """How long each segment's rule waits past the level before it fires."""
        out: I64 = self.times.pending_ns[self.rule]
        return out

    @property
    def clear_ns(self) -> I64:
        """How long each segment's rule waits on the safe side before it clears."""
        out: I64 = self.times.clear_ns[self.rule]
        return out


@dataclass(frozen=True, slots=True)
class Transitions:
    """The changes of state, in reading order; `fire` true for fired, false for cleared.

    `pos` is the reading that decided; `mark_ns`/`mark_value` the episode's first reading
    (fired) or the first reading back (cleared); `start_ns` the episode's start; `peak` the
    most extreme metric of the episode up to `pos`.
    """

    seg: Index
    pos: Index
    fire: Bools
    mark_ns: I64
    mark_value: F64
    start_ns: I64
    peak: F64


@dataclass(frozen=True, slots=True)
class _Runs:
    first: Index
    last: Index
    seg: Index
    carried: Bools
    start: I64
    value: F64
    done: Index  # the reading that completes the run (> last: never)


def _runs(
    flag: Bools,
    begin: I64,
    sig: Signals,
    seg_begins: Bools,
    *,
    wait_ns: I64,
    carried_from: tuple[Bools, I64, F64],
) -> _Runs:
    """Runs of `flag`, where each starts, and the reading at which it has lasted `wait_ns`.

    A run going on from the last batch starts where the carried state says; otherwise a run
    past the level starts at its first reading's onset, a run back on the safe side at its
    first reading.
    """
    first, last = runs(flag, seg_begins)
    seg = sig.seg[first]
    carry_ok, carry_ns, carry_value = carried_from
    carried = seg_begins[first] & carry_ok[seg]
    start = np.where(carried, carry_ns[seg], begin[first])
    value = np.where(carried, carry_value[seg], sig.metric[first])
    target = start + wait_ns[seg]
    done = first.copy()
    late = np.flatnonzero(target > sig.ts[first])  # pending still under way at the first one
    if len(late):
        done[late] = grouped_search(sig.ts, first[late], last[late] + 1, target[late])
    return _Runs(first, last, seg, carried, start, value, done)


def _merge(past: _Runs, safe: _Runs, sig: Signals, carry: Carry) -> tuple[Index, Bools, Index]:
    """Kept candidates: their index into (past runs ++ safe runs), fire flag and position."""
    ok_p = np.flatnonzero(past.done <= past.last)
    ok_s = np.flatnonzero(safe.done <= safe.last)
    pos = np.concatenate((past.done[ok_p], safe.done[ok_s]))
    which = np.concatenate((ok_p, ok_s + len(past.first)))
    fire = np.concatenate((np.ones(len(ok_p), np.bool_), np.zeros(len(ok_s), np.bool_)))
    order = np.argsort(pos, kind="stable")
    pos, which, fire = pos[order], which[order], fire[order]
    seg = sig.seg[pos]
    before = np.empty(len(fire), dtype=np.bool_)
    before[1:] = fire[:-1]
    new_seg = np.ones(len(fire), dtype=np.bool_)
    new_seg[1:] = seg[1:] != seg[:-1]
    before[new_seg] = carry.active[seg[new_seg]]
    keep = fire != before
    return which[keep], fire[keep], pos[keep]


@dataclass(frozen=True, slots=True)
class _Kept:
    """The candidates that change the state, with the run each completes."""

    seg: Index
    pos: Index
    fire: Bools
    run_first: Index
    run_carried: Bools
    mark_ns: I64
    mark_value: F64


@dataclass(frozen=True, slots=True)
class _Tails:
    """Per segment, what is open at its end, and the new carry less its peak.

    `first` is the first reading of the open episode or pending run (`carried` when it began
    in an earlier batch).
    """

    first: Index
    carried: Bools
    active: Bools
    start_ns: I64
    start_value: F64
    pending_ns: I64
    clear_ns: I64
    clear_value: F64
    idle: Bools  # nothing under way: no peak to keep


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `run_machine` found: the transitions, and the state the segments end in.

    `end` holds the segments `busy` (every segment when it is None); the others end idle:
    nothing open, nothing pending (`Carry.idle`), as they began.
    """

    transitions: Transitions
    end: Carry
    busy: Index | None

    def full_end(self, n_seg: int) -> Carry:
        """The end state of every segment."""
        if self.busy is None:
            return self.end
        out = Carry.idle(n_seg)
        busy, end = self.busy, self.end
        out.active[busy] = end.active
        out.start_ns[busy] = end.start_ns
        out.start_value[busy] = end.start_value
        out.peak[busy] = end.peak
        out.pending_ns[busy] = end.pending_ns
        out.clear_ns[busy] = end.clear_ns
        out.clear_value[busy] = end.clear_value
        return out


def run_machine(
    sig: Signals, segs: Segments, carry: Carry, *, busy: Index | None = None
) -> Outcome:
    """The transitions of a group of segments and the state each segment ends in.

    A segment with no alarm open, no run pending and no reading past the level has nothing
    to do: it ends idle, as it began. When most of a large group is so (a stream of batches:
    most devices are fine), the machine runs on the others only (`Outcome.busy`). With
    `busy` (those others, found by the caller), `carry` is of those segments only. When
    every segment has one reading (a stream of small batches), one step of the machine does.
    """
    n_seg = len(segs.first)
    if busy is None and n_seg >= _SPARSE_MIN_SEGMENTS:
        chosen = carry.active | (carry.pending_ns != NONE_NS)
        chosen[sig.seg[sig.past]] = True
        busy = np.flatnonzero(chosen)
        if len(busy) * _SPARSE_SHARE <= n_seg:
            return _busy_only(sig, segs, _take(carry, busy), busy)
        busy = None
    if busy is not None and len(busy) < n_seg:
        return _busy_only(sig, segs, carry, busy)
    step = _one_each if len(sig.ts) == n_seg else _run_machine
    transitions, end = step(sig, segs, carry)
    return Outcome(transitions, end, None)


def _take(carry: Carry, at: Index) -> Carry:
    return Carry(
        carry.active[at],
        carry.start_ns[at],
        carry.start_value[at],
        carry.peak[at],
        carry.pending_ns[at],
        carry.clear_ns[at],
        carry.clear_value[at],
    )


def _busy_only(sig: Signals, segs: Segments, carry: Carry, chosen: Index) -> Outcome:
    """`run_machine` on the `chosen` segments (`carry`: theirs); the others end idle."""
    count = (segs.last[chosen] - segs.first[chosen] + 1).astype(np.int64)
    if len(sig.ts) == len(segs.first):  # one reading each
        readings = chosen
        first = last = np.arange(len(chosen))
    else:
        _, readings = ragged_gather(segs.first[chosen].astype(np.int64), count)
        last = (np.cumsum(count) - 1).astype(np.intp)
        first = last - count + 1
    sub_sig = Signals(
        np.repeat(np.arange(len(chosen)), count),
        sig.ts[readings],
        sig.onset[readings],
        sig.metric[readings],
        sig.past[readings],
        sig.safe[readings],
    )
    sub_segs = Segments(first, last, segs.rule[chosen], segs.times)
    step = _one_each if len(readings) == len(chosen) else _run_machine
    t, end = step(sub_sig, sub_segs, carry)
    transitions = Transitions(
        chosen[t.seg], readings[t.pos], t.fire, t.mark_ns, t.mark_value, t.start_ns, t.peak
    )
    return Outcome(transitions, end, chosen)


def _one_each(sig: Signals, segs: Segments, carry: Carry) -> tuple[Transitions, Carry]:
    """`run_machine` when every segment has one reading: one step of the sequential machine.

    Idle: a reading past the level continues the pending run (or starts one at its onset)
    and fires when the run has lasted `pending_ns`. Active: a reading on the safe side
    continues the clearing run (or starts one) and clears when it has lasted `clear_ns`.
    Peaks: the reading's metric and the carried peak of the run or episode it continues.
    """
    ts, metric = sig.ts, sig.metric
    idle = ~carry.active
    carried_run = idle & (carry.pending_ns != NONE_NS)
    run_ns = np.where(carried_run, carry.pending_ns, sig.onset)
    run_value = np.where(carried_run, carry.start_value, metric)
    past = idle & sig.past
    fires = past & (run_ns + segs.pending_ns <= ts)
    pending = past & ~fires
    clearing_on = carry.active & (carry.clear_ns != NONE_NS)
    back_ns = np.where(clearing_on, carry.clear_ns, ts)
    back_value = np.where(clearing_on, carry.clear_value, metric)
    safe = carry.active & sig.safe
    clears = safe & (back_ns + segs.clear_ns <= ts)
    clearing = safe & ~clears
    sign = np.where(segs.high, 1.0, -1.0)
    carried_peak = np.where(carry.active | carried_run, carry.peak * sign, np.nan)
    peak = np.fmax(metric * sign, carried_peak) * sign
    at = np.flatnonzero(fires | clears)
    fire = fires[at]
    transitions = Transitions(
        sig.seg[at],
        at,
        fire,
        np.where(fire, run_ns[at], back_ns[at]),
        np.where(fire, run_value[at], back_value[at]),
        np.where(fire, run_ns[at], carry.start_ns[at]),
        peak[at],
    )
    active = (carry.active & ~clears) | fires
    opened = fires | pending  # start and value of the run
    under_way = active | pending
    end = Carry(
        active,
        np.where(opened, run_ns, np.where(active, carry.start_ns, NONE_NS)),
        np.where(opened, run_value, np.where(active, carry.start_value, np.nan)),
        np.where(under_way, peak, np.nan),
        np.where(pending, run_ns, NONE_NS),
        np.where(clearing, back_ns, NONE_NS),
        np.where(clearing, back_value, np.nan),
    )
    return transitions, end


def _run_machine(sig: Signals, segs: Segments, carry: Carry) -> tuple[Transitions, Carry]:
    seg_begins = np.zeros(len(sig.ts), dtype=np.bool_)
    seg_begins[segs.first] = True
    idle_pending = ~carry.active & (carry.pending_ns != NONE_NS)
    active_clearing = carry.active & (carry.clear_ns != NONE_NS)
    past = _runs(
        sig.past,
        sig.onset,
        sig,
        seg_begins,
        wait_ns=segs.pending_ns,
        carried_from=(idle_pending, carry.pending_ns, carry.start_value),
    )
    safe = _runs(
        sig.safe,
        sig.ts,
        sig,
        seg_begins,
        wait_ns=segs.clear_ns,
        carried_from=(active_clearing, carry.clear_ns, carry.clear_value),
    )
    which, fire, pos = _merge(past, safe, sig, carry)
    kept = _Kept(
        seg=sig.seg[pos],
        pos=pos,
        fire=fire,
        run_first=np.concatenate((past.first, safe.first))[which],
        run_carried=np.concatenate((past.carried, safe.carried))[which],
        mark_ns=np.concatenate((past.start, safe.start))[which],
        mark_value=np.concatenate((past.value, safe.value))[which],
    )
    start_ns, ep_first, ep_carried = _episodes(kept, segs, carry)
    tails = _tails(kept, past, safe, segs, carry)
    # Peaks: of each transition's episode up to it, and of what is open at each segment's end.
    n_seg = len(segs.first)
    owner = np.concatenate((kept.seg, np.arange(n_seg)))
    peaks = _peaks(
        sig,
        segs,
        carry,
        owner,
        bounds=(np.concatenate((ep_first, tails.first)), np.concatenate((pos, segs.last))),
        carried=np.concatenate((ep_carried, tails.carried)),
    )
    transitions = Transitions(
        kept.seg, pos, fire, kept.mark_ns, kept.mark_value, start_ns, peaks[: len(pos)]
    )
    end = Carry(
        tails.active,
        tails.start_ns,
        tails.start_value,
        np.where(tails.idle, np.nan, peaks[len(pos) :]),
        tails.pending_ns,
        tails.clear_ns,
        tails.clear_value,
    )
    return transitions, end


def _episodes(kept: _Kept, segs: Segments, carry: Carry) -> tuple[I64, Index, Bools]:
    """Each transition's episode: its start, and the first reading (in this batch) of it.

    A fire opens an episode; a clear closes the one the transition before it in its segment
    opened, or the one carried open from the last batch.
    """
    seg, fire = kept.seg, kept.fire
    opened_here = np.zeros(len(seg), dtype=np.bool_)
    opened_here[1:] = fire[:-1] & (seg[1:] == seg[:-1])
    prev = np.maximum(np.arange(len(seg)) - 1, 0)
    start_ns = np.where(
        fire, kept.mark_ns, np.where(opened_here, kept.mark_ns[prev], carry.start_ns[seg])
    )
    first = np.where(
        fire, kept.run_first, np.where(opened_here, kept.run_first[prev], segs.first[seg])
    )
    carried = np.where(fire, kept.run_carried, np.where(opened_here, kept.run_carried[prev], True))
    return start_ns, first, carried


def _tails(kept: _Kept, past: _Runs, safe: _Runs, segs: Segments, carry: Carry) -> _Tails:
    """Where each segment ends up after its readings."""
    n_seg = len(segs.first)
    n_t = np.bincount(kept.seg, minlength=n_seg)
    has_t = n_t > 0
    last_t = (np.cumsum(n_t) - 1)[has_t]
    active = carry.active.copy()
    active[has_t] = kept.fire[last_t]
    first = segs.first.copy()
    carried = np.ones(n_seg, dtype=np.bool_)
    start_ns = carry.start_ns.copy()
    start_value = carry.start_value.copy()
    opened = np.flatnonzero(has_t)[kept.fire[last_t]]
    at = last_t[kept.fire[last_t]]
    first[opened], carried[opened] = kept.run_first[at], kept.run_carried[at]
    start_ns[opened], start_value[opened] = kept.mark_ns[at], kept.mark_value[at]
    # idle with a run past the level reaching the end: pending
    pending_ns = np.full(n_seg, NONE_NS, dtype=np.int64)
    trail = (past.last == segs.last[past.seg]) & ~active[past.seg]
    s = past.seg[trail]
    pending_ns[s], start_ns[s], start_value[s] = (
        past.start[trail],
        past.start[trail],
        past.value[trail],
    )
    first[s], carried[s] = past.first[trail], past.carried[trail]
    # active with a run on the safe side reaching the end: clearing
    clear_ns = np.full(n_seg, NONE_NS, dtype=np.int64)
    clear_value = np.full(n_seg, np.nan)
    trail = (safe.last == segs.last[safe.seg]) & active[safe.seg]
    clear_ns[safe.seg[trail]], clear_value[safe.seg[trail]] = safe.start[trail], safe.value[trail]
    idle = ~active & (pending_ns == NONE_NS)
    start_ns[idle], start_value[idle] = NONE_NS, np.nan
    return _Tails(
        first, carried, active, start_ns, start_value, pending_ns, clear_ns, clear_value, idle
    )


def _peaks(
    sig: Signals,
    segs: Segments,
    carry: Carry,
    owner: Index,
    *,
    bounds: tuple[Index, Index],
    carried: Bools,
) -> F64:
    """The most extreme metric over each window `[a, b]` of segment `owner`.

    Where `carried`, the segment's carried peak counts too.
    """
    sign = np.where(segs.high, 1.0, -1.0)
    signed = sig.metric * sign[sig.seg]
    carried_peak = np.where(carried, carry.peak[owner] * sign[owner], np.nan)
    out: F64 = np.fmax(window_reduce(np.fmax, signed, *bounds), carried_peak) * sign[owner]
    return out

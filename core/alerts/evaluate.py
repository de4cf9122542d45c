"""The alert evaluator: batches of readings (and the clock) in, alarm events and state out.

    evaluator = Evaluator(rules, registry)
    state = AlertState.empty()
    events, state = evaluator.evaluate(batch, state, now_ns)     # a Readings batch received now
    events, state = evaluator.evaluate_silence(state, now_ns)    # the deadman, on a timer

Both are pure from the caller's view: they return the state after the batch and the state
given still reads, saves and evaluates as it was. They are incremental underneath: the state
given hands its store (`core.alerts.state`) to the one returned, which the batch changes in
place at the rows and window entries it touches, keeping an undo record so that the state
given can be rebuilt when it is used again (a copy of the whole state, then). A caller that
always goes on from the returned state, as the alert service does, pays per batch for what
the batch touches, not for the size of the state.

A key is one rule and one device; its readings are evaluated in device-time order (sorted
within the batch); several readings of a key at one device time count once, the last given
winning, as in the store.

Late and out-of-order data (docs/ALERTS.md, "Late data"):

- A reading older than its key's last evaluated one (device time) is backlog. A key's backlog
  readings in a batch are evaluated as a segment of their own that starts idle, with empty
  windows, and leaves the live state as it was. Each episode found there is reported `late`:
  `fired` and `cleared` with its real start and end, or, still open at the segment's last
  reading, closed there. An episode that overlaps the key's open alarm or its last closed one
  is part of that alarm and is not reported again. A reading at exactly the last evaluated
  time is a repeat and is dropped.
- Readings in order are live, however old. Their events are `late` when the reading that
  decided them is older than `now_ns - late_after_s`: a `cleared` decided by such a reading
  is late, and so is the `fired` of the same episode in the same batch. An episode still
  open after them is the current state: its `fired` is not late.

The cost is a fixed number of numpy passes over the batch (its sorts included), over the
rows and the windows it touches; nothing loops over readings, rules or keys (Python loops
over events, and over the few distinct lengths of the windows a batch sums or ranges).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from core.alerts import metrics
from core.alerts.days import LocalDays
from core.alerts.kernels import F64, I64, NONE_NS, Bools, Index, ragged_gather
from core.alerts.machine import (
    Carry,
    RuleTimes,
    Segments,
    Signals,
    Transitions,
    run_machine,
)
from core.alerts.metrics import RuleTable, Windows
from core.alerts.rules import (
    Direction,
    Kind,
    MeanWindow,
    Rule,
    Severity,
    check_finite,
    rule_ids,
)
from core.alerts.state import (
    HOT,
    ROW_COLUMNS,
    AlertState,
    _Store,
    _Undo,
    copy_records,
    region_size,
)
from core.readings import Readings
from core.registry import Registry
from core.timeutil import NS_PER_S

EventType = Literal["fired", "cleared"]
#: Events decided by a reading older than this, before the batch's receipt, are late.
DEFAULT_LATE_AFTER_S = 3600
#: From this many keys in a batch, only the busy rows' whole records are read (`_live`).
_BUSY_ONLY_FROM = 128
#: Pairs (device, sensor) feeding at most this many rules each: a table of rows of rules.
_TABLE_WIDTH = 16
WINDOWED = metrics.WINDOWED
_Event = tuple[tuple[int, int, int, bool, int], "AlertEvent"]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alarm opened (`fired`) or closed (`cleared`), for one rule on one device.

    `alarm_id` is a hash of (rule, device, start_ns): the same readings give the same
    id in every process, and both events of one alarm share it; `id` is `<alarm_id>:<type>`.
    `start_ns` is the episode's first reading past the level (not the end of pending; for
    `flat` the first reading of the flat run; for `silent` the last reading plus the allowed
    silence); `end_ns` (cleared only) its first reading back on the safe side (a late episode
    still open: its last reading; `silent`: the reading that ended the silence). `at_ns` is
    the device time of the reading that decided the event (the clock's `now_ns` for a silence
    that fires). `value` is the metric at the start (fired) or at the end (cleared); `latest`
    the metric at `at_ns`; `peak` the most extreme metric of the episode so far. The metric
    is the reading (`threshold`, `battery_low`), the rolling mean, the rise per hour, the
    range of the last n readings (`flat`) or the seconds since the last reading (`silent`);
    `level` is what it was compared with (`silent`: the allowed silence in seconds).
    `window`: a mean's window, `rolling` or `day` (the mean of the pilot's local day so far);
    `rolling` for the other kinds.
    """

    id: str
    alarm_id: str
    type: EventType
    rule: str
    kind: Kind
    pilot: str
    device: str
    sensor: str | None
    severity: Severity
    label: str
    level: float
    direction: Direction
    start_ns: int
    end_ns: int | None
    at_ns: int
    value: float
    latest: float
    peak: float
    late: bool
    window: MeanWindow = "rolling"


def alarm_id(rule: str, device: str, start_ns: int) -> str:
    """The deterministic id of an alarm: 24 hex digits of BLAKE2b over its identity.

    Not the pilot: device ids are unique across pilots, so a device moved to another pilot by a
    registry edit keeps its open alarm, and the alarm's `cleared` has the id its `fired` had.
    """
    text = f"{rule}\x1f{device}\x1f{start_ns}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class _Group:
    """Readings sorted by key then time, cut into segments (one per key)."""

    keys: I64  # per reading
    ts: I64
    value: F64
    seg: Index
    first: Index
    last: Index
    key: I64  # per segment
    rule: Index
    device: Index


def _group(keys: I64, ts: I64, value: F64, n_devices: int) -> _Group:
    n = len(keys)
    begins = np.ones(n, dtype=np.bool_)
    np.not_equal(keys[1:], keys[:-1], out=begins[1:])
    if begins.all():  # one reading a key (a stream of small batches)
        first = last = seg = np.arange(n)
        seg_key = keys
    else:
        first = np.flatnonzero(begins)
        last = np.empty_like(first)
        last[:-1] = first[1:] - 1
        last[-1:] = n - 1
        seg = np.cumsum(begins) - 1
        seg_key = keys[first]
    rule, device = np.divmod(seg_key, n_devices)
    return _Group(keys, ts, value, seg, first, last, seg_key, rule, device)


@dataclass(frozen=True, slots=True)
class _Placed:
    """Live windowed segments, their readings written into the arena after their windows."""

    seg: Index  # the windowed segments of the group
    rows: Index
    readings: Index  # their readings, in the group
    windows: Windows
    base: I64  # each row's region after the batch
    cap: I64
    kept_before: int


class Evaluator:
    """Evaluates `rules` over readings whose codes come from `registry` (see the module)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        registry: Registry,
        *,
        late_after_s: float = DEFAULT_LATE_AFTER_S,
    ) -> None:
        if late_after_s < 0:
            raise ValueError("late_after_s must not be negative")
        self.rules = tuple(rules)
        self.registry = registry
        self.rule_ids = rule_ids(self.rules)
        self.device_ids = tuple(d.id for d in registry.device_list)
        self.late_after_ns = int(late_after_s * NS_PER_S)
        self._n_dev = max(len(registry.device_list), 1)
        self._n_sensors = len(registry.sensor_list)
        self._interval_s = np.asarray([d.interval_s for d in registry.device_list], np.int64)
        self._pilot = tuple(d.pilot for d in registry.device_list)
        for rule in self.rules:
            check_finite(rule)
            for device in rule.devices:
                if device not in registry.devices:
                    raise ValueError(f"rule {rule.id}: unknown device {device!r}")
        self._table = RuleTable.of(self.rules)
        self._times = RuleTimes(
            high=np.asarray([r.direction == "above" for r in self.rules], np.bool_),
            pending_ns=np.asarray([r.pending_s * NS_PER_S for r in self.rules], np.int64),
            clear_ns=np.asarray([r.clear_s * NS_PER_S for r in self.rules], np.int64),
        )
        self._level = np.asarray([r.level for r in self.rules], np.float64)
        self._silent = self._table.silent
        self._layout = self._table.windowed.tobytes()
        self._reach, self._least = self._table.per_key(self._interval_s)
        self._about = [
            (r.id, r.kind, r.sensor, r.severity, r.label, r.level, r.direction, r.kind == "silent")
            for r in self.rules
        ]
        self._window = [r.window for r in self.rules]
        self._days: LocalDays | None = None  # only with day means
        if self._table.day.any():
            zones = sorted({p.timezone for p in registry.pilot_list})
            zone_at = {z: i for i, z in enumerate(zones)}
            self._days = LocalDays(
                zones, [zone_at[registry.pilots[d.pilot].timezone] for d in registry.device_list]
            )
        self._devices = [(d.id, d.pilot, float(d.interval_s)) for d in registry.device_list]
        self._build_pairs()

    def _build_pairs(self) -> None:
        """Which rules each (device, sensor) pair feeds, as a CSR table."""
        pair_ids: list[NDArray[np.int64]] = []
        pair_rules: list[NDArray[np.int64]] = []
        for index, rule in enumerate(self.rules):
            devices = self.registry.device_codes(rule.devices).astype(np.int64)
            if rule.sensor is None:
                sensors = np.arange(self._n_sensors, dtype=np.int64)
            else:
                sensors = np.asarray([self.registry.sensors[rule.sensor].code], np.int64)
            pairs = (devices[:, None] * self._n_sensors + sensors[None, :]).ravel()
            pair_ids.append(pairs)
            pair_rules.append(np.full(len(pairs), index, np.int64))
        n_pairs = self._n_dev * self._n_sensors
        ids = np.concatenate(pair_ids) if pair_ids else np.empty(0, np.int64)
        rules = np.concatenate(pair_rules) if pair_rules else np.empty(0, np.int64)
        order = np.lexsort((rules, ids))
        ids, rules = ids[order], rules[order]
        # The smallest dtypes that hold them: a batch reads these tables at random.
        small = _smallest(len(self.rules))
        self._pair_rule = rules.astype(small)
        count = np.bincount(ids, minlength=n_pairs)
        offsets = np.zeros(n_pairs + 1, dtype=np.int64)
        np.cumsum(count, out=offsets[1:])
        self._pair_offsets = offsets.astype(_smallest(int(offsets[-1])))
        # The same as one row of rules a pair (-1 after its last), when rows are short: one
        # read a reading instead of three.
        width = int(count.max(initial=0))
        self._pair_table: NDArray[np.signedinteger[Any]] | None = None
        if width <= _TABLE_WIDTH:
            table = np.full((n_pairs, max(width, 1)), -1, dtype=small)
            table[ids, np.arange(len(ids)) - offsets[ids]] = rules
            self._pair_table = table

    # --- public ---------------------------------------------------------------------------

    def evaluate(
        self, batch: Readings, state: AlertState, now_ns: int
    ) -> tuple[list[AlertEvent], AlertState]:
        """Events of a batch received at `now_ns`, and the state after it.

        `state` is not changed as the caller sees it, but its store passes to the state
        returned (see the module docstring): go on from the returned state; evaluating or
        reading `state` again works, at the cost of copying it whole.
        """
        key, ts, value = self._expand(batch)  # sorted by key then time, distinct
        events: list[_Event] = []
        with state._lock:
            store, owned = self._claim(state)
            changed = False
            if len(key):
                every = _group(key, ts, value, self._n_dev)
                changed = self._change(
                    store, owned, lambda: self._batch(store, every, now_ns, events)
                )
            after = _after(state, store, owned=owned, changed=changed)
        events.sort(key=lambda e: e[0])
        return [e[1] for e in events], after

    def evaluate_silence(
        self, state: AlertState, now_ns: int
    ) -> tuple[list[AlertEvent], AlertState]:
        """`silent` alarms of devices whose newest reading is older than the rule allows.

        A device never heard from has no row and is not silent. The alarm starts when the
        allowed silence ran out (last reading + k x interval); a reading clears it (in
        `evaluate`). Between, each call raises the open alarm's peak (seconds of silence).
        Like `evaluate`, the store of `state` passes to the state returned.
        """
        events: list[_Event] = []
        with state._lock:
            store, owned = self._claim(state)
            changed = False
            if store.n and self._silent.any():
                changed = self._change(store, owned, lambda: self._silence(store, now_ns, events))
            after = _after(state, store, owned=owned, changed=changed)
        events.sort(key=lambda e: e[0])
        return [e[1] for e in events], after

    # --- the state's store ----------------------------------------------------------------

    def _claim(self, state: AlertState) -> tuple[_Store, bool]:
        """The store to change: the state's own, or a copy in this evaluator's tables.

        Rows of unknown rules or devices are dropped from the copy.
        """
        same_rules = state.rule_ids is self.rule_ids or state.rule_ids == self.rule_ids
        same_devices = state.device_ids is self.device_ids or state.device_ids == self.device_ids
        store = state._current()
        if same_rules and same_devices:
            store.rule_ids, store.device_ids = self.rule_ids, self.device_ids  # `is` from now on
            return store, True
        return self._adopted(store), False

    @staticmethod
    def _change(store: _Store, owned: bool, run: Any) -> bool:
        """`run()` changing `store`; recorded for undo when it is a state's own store."""
        if owned:
            store.undo = _Undo(store)
        try:
            changed: bool = run()
        except BaseException:
            if store.undo is not None:
                store.undo.revert(store, copy=False)
                store.undo = None
            raise
        return changed

    def _adopted(self, old: _Store) -> _Store:
        cols = old.columns()
        rule_at = {r: i for i, r in enumerate(self.rule_ids)}
        device_at = {d: i for i, d in enumerate(self.device_ids)}
        rule_map = np.asarray([rule_at.get(r, -1) for r in old.rule_ids] or [-1], np.int64)
        dev_map = np.asarray([device_at.get(d, -1) for d in old.device_ids] or [-1], np.int64)
        new_rule = rule_map[cols["rule"]]
        new_device = dev_map[cols["device"]]
        rows = np.flatnonzero((new_rule >= 0) & (new_device >= 0))
        keys = new_rule[rows] * self._n_dev + new_device[rows]
        order = np.argsort(keys, kind="stable")
        rows, keys = rows[order], keys[order]
        offsets = cols["window_offsets"]
        window, source = ragged_gather(offsets[:-1][rows], np.diff(offsets)[rows])
        columns = {name: cols[name][rows] for name in ROW_COLUMNS}
        columns["rule"] = (keys // self._n_dev).astype(np.int32)
        columns["device"] = (keys % self._n_dev).astype(np.int32)
        columns["window_offsets"] = window
        columns["window_ts_ns"] = cols["window_ts_ns"][source]
        columns["window_value"] = cols["window_value"][source]
        return _Store.from_columns(self.rule_ids, self.device_ids, columns)

    # --- a batch --------------------------------------------------------------------------

    def _batch(self, store: _Store, every: _Group, now_ns: int, events: list[_Event]) -> bool:
        """Split a batch into live readings and backlog, and evaluate both."""
        if store.layout != self._layout:
            self._drop_stray_windows(store)
        row = store.index()[every.key]
        hot = store.hot(row)  # every row's first cache line, once (a new key's: replaced)
        last_ts = hot[:, HOT["last_ts_ns"]]
        if (row < 0).any():
            last_ts = np.where(row >= 0, last_ts, NONE_NS)
        if len(every.key) < len(every.ts):
            last_ts = last_ts[every.seg]
        live = every.ts > last_ts
        back = every.ts < last_ts
        n_live = int(np.count_nonzero(live))
        if n_live == len(live):
            self._live(store, every, row, hot, now_ns=now_ns, events=events)
        elif n_live:
            group = _group(every.keys[live], every.ts[live], every.value[live], self._n_dev)
            row = store.index()[group.key]
            self._live(store, group, row, store.hot(row), now_ns=now_ns, events=events)
        if back.any():
            group = _group(every.keys[back], every.ts[back], every.value[back], self._n_dev)
            self._backlog(store, group, store.index()[group.key], events)
        return n_live > 0

    def _live(
        self,
        store: _Store,
        g: _Group,
        row: NDArray[Any],
        hot: NDArray[np.int64],
        *,
        now_ns: int,
        events: list[_Event],
    ) -> None:
        """Evaluate live readings.

        Every row's first cache line (`hot`: last reading, pending run, window; also what
        the undo keeps) is read and written; the whole record only of the rows with an alarm
        open, a run pending or a reading past the level (the machine's busy ones: few, in a
        stream). A new key's row is added here.
        """
        new = np.flatnonzero(row < 0)
        if len(new):
            row = row.copy()
            row[new] = store.add_rows(g.key[new])
            hot[new] = store.hot(row[new])
        rows = row.astype(np.intp, copy=False)
        placed, hot = self._place(store, g, rows, hot)
        sig, keep_from = self._signals(g, hot[:, HOT["last_ts_ns"]], placed, keep=True)
        chosen: Index | None = None  # all (a small group)
        if len(rows) >= _BUSY_ONLY_FROM:
            busy = hot[:, HOT["active"]] != 0
            busy |= hot[:, HOT["pending_since_ns"]] != NONE_NS
            busy[sig.seg[sig.past]] = True
            chosen = np.flatnonzero(busy)
        busy_rows = rows if chosen is None else rows[chosen]
        old = store.read(busy_rows)
        carry = Carry(
            active=old["active"],
            start_ns=old["start_ns"],
            start_value=old["start_value"],
            peak=old["peak"],
            pending_ns=old["pending_since_ns"],
            clear_ns=old["clear_since_ns"],
            clear_value=old["clear_value"],
        )
        outcome = run_machine(sig, self._segments(g), carry, busy=chosen)
        transitions = outcome.transitions
        late = _live_late(transitions, sig.ts, now_ns - self.late_after_ns)
        self._transition_events(g, sig, transitions, late=late, events=events)
        line = hot.copy()
        line[:, HOT["last_ts_ns"]] = g.ts[g.last]
        line[:, HOT["last_value"]] = g.value[g.last].view(np.int64)
        if placed is not None:
            assert keep_from is not None
            at = placed.seg
            line[at, HOT["w_base"]] = placed.base
            line[at, HOT["w_cap"]] = placed.cap
            line[at, HOT["w_lo"]] = keep_from
            line[at, HOT["w_hi"]] = placed.windows.end
            store.w_live += int((placed.windows.end - keep_from).sum()) - placed.kept_before
        ended = slice(None) if outcome.busy is None else outcome.busy
        line[ended, HOT["active"]] = outcome.end.active
        line[ended, HOT["pending_since_ns"]] = outcome.end.pending_ns
        store.overwrite(busy_rows, old)  # the busy rows' records, then every row's first line
        store.put_hot(rows, line, hot)
        _ends(store.rows, busy_rows, outcome.end)
        _closed(store.rows, rows, transitions)

    def _backlog(self, store: _Store, g: _Group, row: I64, events: list[_Event]) -> None:
        before = np.full(len(g.key), NONE_NS, dtype=np.int64)
        sig, _ = self._signals(g, before, self._batch_windows(g), keep=False)
        outcome = run_machine(sig, self._segments(g), Carry.idle(len(g.key)))
        t, end = outcome.transitions, outcome.full_end(len(g.key))
        # Close what is still open at each segment's last reading.
        still = np.flatnonzero(end.active)
        closes = Transitions(
            seg=still.astype(np.intp),
            pos=g.last[still],
            fire=np.zeros(len(still), np.bool_),
            mark_ns=g.ts[g.last[still]],
            mark_value=sig.metric[g.last[still]],
            start_ns=end.start_ns[still],
            peak=end.peak[still],
        )
        t = _concat_transitions(t, closes)
        # Every fire is now followed by its clear: pair them and drop those the live alarm
        # (open, or the last closed) already covers.
        fires = np.flatnonzero(t.fire)
        clears = fires + 1
        rows = row[t.seg[fires]].astype(np.intp)
        covered = _covered(store.read(rows), t.start_ns[fires], t.mark_ns[clears])
        keep = np.zeros(len(t.pos), dtype=np.bool_)
        keep[fires[~covered]] = True
        keep[clears[~covered]] = True
        late = np.ones(len(t.pos), np.bool_)
        self._transition_events(g, sig, t, late=late, events=events, keep=keep)

    def _silence(self, store: _Store, now_ns: int, events: list[_Event]) -> bool:
        n = store.n
        every = store.rows[:n]
        rule, device = every["rule"], every["device"]
        last_ts, active = every["last_ts_ns"], every["active"]
        heard = last_ts != NONE_NS
        last = np.where(heard, last_ts, now_ns)
        limit = np.rint(self._level[rule] * self._interval_s[device] * NS_PER_S).astype(np.int64)
        gap = now_ns - last
        silent = self._silent[rule] & heard
        fire = silent & ~active & (gap > limit)
        rows = np.flatnonzero(fire | (silent & active))
        if len(rows) == 0:
            return False
        old = store.read(rows)
        fired = fire[rows]
        rec = copy_records(old)
        rec["active"] = True
        rec["start_ns"] = np.where(fired, last[rows] + limit[rows], old["start_ns"])
        rec["start_value"] = np.where(fired, limit[rows] / NS_PER_S, old["start_value"])
        rec["peak"] = np.fmax(old["peak"], gap[rows] / NS_PER_S)
        store.write(rows, rec, old)
        for i in np.flatnonzero(fired).tolist():
            r, d = int(rule[rows[i]]), int(device[rows[i]])
            self._emit(
                events,
                (r, d, "fired", int(rec["start_ns"][i]), None, now_ns),
                (
                    float(rec["start_value"][i]),
                    float(gap[rows[i]] / NS_PER_S),
                    float(rec["peak"][i]),
                    False,
                ),
            )
        return True

    # --- windows --------------------------------------------------------------------------

    def _drop_stray_windows(self, store: _Store) -> None:
        """Rows of rules that are not windowed (a rule that changed kind) drop their windows."""
        rows = store.rows[: store.n]
        held = rows["w_hi"] - rows["w_lo"]
        stray = np.flatnonzero(~self._table.windowed[rows["rule"]] & (held > 0))
        if len(stray):
            store.write_fields(stray, {"w_lo": rows["w_hi"][stray]})
            store.w_live -= int(held[stray].sum())
        store.layout = self._layout

    def _place(
        self, store: _Store, g: _Group, rows: Index, hot: NDArray[np.int64]
    ) -> tuple[_Placed | None, NDArray[np.int64]]:
        """Write the readings of windowed segments after their rows' windows in the arena.

        A row whose region has no room after its window moves to a new region at the arena's
        end. `hot`: the rows' first cache lines; the arena may be compacted first, and then
        they are read again (returned either way).
        """
        seg = np.flatnonzero(self._table.windowed[g.rule])
        if not len(seg):
            return None, hot
        r = rows[seg]
        k = (g.last[seg] - g.first[seg] + 1).astype(np.int64)
        plan = _plan(hot[seg], k)
        if store.make_room(plan.moved):
            hot = store.hot(rows)
            if (plan := _plan(hot[seg], k)).moved:
                store.make_room(plan.moved)
        base = plan.base.copy()
        moving = np.flatnonzero(plan.move)
        if len(moving):
            size = plan.size[moving]
            base[moving] = store.allocate(plan.moved) + np.cumsum(size) - size
            shifted = moving[plan.kept[moving] > 0]  # their kept entries first
            lo, kept = plan.lo[shifted], plan.kept[shifted]
            _, source = ragged_gather(lo, kept)
            target = source + np.repeat(base[shifted] - lo, kept)
            store.write_arena(target, store.w_ts[source], store.w_value[source])
        start = np.where(plan.move, base, plan.lo)
        after = start + plan.kept
        if len(g.ts) == len(g.key):  # one reading a segment
            readings, pos, of = seg, after, np.arange(len(seg))
        else:
            _, readings = ragged_gather(g.first[seg].astype(np.int64), k)
            pos = readings + np.repeat(after - g.first[seg], k)
            of = np.repeat(np.arange(len(seg)), k)
        store.write_arena(pos, g.ts[readings], g.value[readings])
        key = g.key[seg]
        line = hot[seg]
        day_from, day_least = self._local_days(g, seg, of, readings)
        windows = Windows(
            ts=store.w_ts,
            value=store.w_value,
            rule=g.rule[seg],
            reach=self._reach[key],
            least=self._least[key],
            start=start,
            end=after + k,
            seg=of,
            pos=pos,
            quiet=(line[:, HOT["active"]] == 0) & (line[:, HOT["pending_since_ns"]] == NONE_NS),
            day_from=day_from,
            day_least=day_least,
        )
        before = int(plan.kept.sum())
        return _Placed(seg, r, readings, windows, base, plan.size, before), hot

    def _batch_windows(self, g: _Group) -> _Placed | None:
        """Windowed segments of a backlog: their windows are their own readings."""
        seg = np.flatnonzero(self._table.windowed[g.rule])
        if not len(seg):
            return None
        k = (g.last[seg] - g.first[seg] + 1).astype(np.int64)
        _, readings = ragged_gather(g.first[seg].astype(np.int64), k)
        key = g.key[seg]
        of = np.repeat(np.arange(len(seg)), k)
        day_from, day_least = self._local_days(g, seg, of, readings)
        windows = Windows(
            ts=g.ts,
            value=g.value,
            rule=g.rule[seg],
            reach=self._reach[key],
            least=self._least[key],
            start=g.first[seg],
            end=g.last[seg] + 1,
            seg=of,
            pos=readings,
            day_from=day_from,
            day_least=day_least,
        )
        empty = np.empty(0, dtype=np.int64)
        return _Placed(seg, seg, readings, windows, empty, empty, 0)

    def _local_days(
        self, g: _Group, seg: Index, of: Index, readings: Index
    ) -> tuple[I64 | None, F64 | None]:
        """The local day's start and least count of the readings of day means, or None twice.

        Among the readings of windowed segments `seg` (`of`: each reading's place in `seg`;
        `readings`: its place in the group), those of day means: the local midnight that
        began the reading's day, and `min_coverage` x that day's real length ÷ the interval
        (as a 24-hour window's least count). Arrays over all the readings, zero at those of
        other rules; None and None when there are none.
        """
        if self._days is None:
            return None, None
        rule = g.rule[seg]
        day_seg = self._table.day[rule]
        if not day_seg.any():
            return None, None
        at = np.flatnonzero(day_seg[of])
        owner = of[at]
        device = g.device[seg][owner]
        start, end = self._days.bounds(g.ts[readings[at]], device)
        day_from = np.zeros(len(of), dtype=np.int64)
        day_least = np.zeros(len(of), dtype=np.float64)
        day_from[at] = start
        # as a 24-hour window's: min_coverage x the day's seconds ÷ the interval
        length_s = (end - start) / NS_PER_S
        day_least[at] = self._table.min_coverage[rule[owner]] * length_s / self._interval_s[device]
        return day_from, day_least

    # --- signals --------------------------------------------------------------------------

    def _signals(
        self, g: _Group, before: I64, placed: _Placed | None, *, keep: bool
    ) -> tuple[Signals, Index | None]:
        """What each reading says under its rule, and (with `keep`) where kept windows begin."""
        rule = g.rule if len(g.ts) == len(g.key) else g.rule[g.seg]
        metric = g.value.copy()
        onset = g.ts
        keep_from = None
        if placed is not None:
            measured = metrics.windowed(self._table, placed.windows, keep=keep)
            metric[placed.readings] = measured.metric
            onset = g.ts.copy()
            onset[placed.readings] = measured.onset
            keep_from = measured.keep_from
        silent = np.flatnonzero(self._silent[rule]) if self._silent.any() else None
        if silent is not None and len(silent):
            metric[silent] = metrics.silence(g.ts, silent, g.seg, g.first, before)
        past, safe = metrics.sides(self._table, rule, metric)
        if silent is not None and len(silent):
            past[silent] = False
            safe[silent] = True
        return Signals(g.seg, g.ts, onset, metric, past, safe), keep_from

    def _segments(self, g: _Group) -> Segments:
        return Segments(g.first, g.last, g.rule, self._times)

    # --- events ---------------------------------------------------------------------------

    def _transition_events(
        self,
        g: _Group,
        sig: Signals,
        t: Transitions,
        *,
        late: Bools,
        events: list[_Event],
        keep: Bools | None = None,
    ) -> None:
        chosen = np.flatnonzero(keep) if keep is not None else np.arange(len(t.pos))
        if not len(chosen):
            return
        seg = t.seg[chosen]
        pos = t.pos[chosen]
        rows = zip(
            g.rule[seg].tolist(),
            g.device[seg].tolist(),
            t.fire[chosen].tolist(),
            t.start_ns[chosen].tolist(),
            t.mark_ns[chosen].tolist(),
            sig.ts[pos].tolist(),
            t.mark_value[chosen].tolist(),
            sig.metric[pos].tolist(),
            t.peak[chosen].tolist(),
            late[chosen].tolist(),
            strict=True,
        )
        for r, d, fire, start, mark, at, value, latest, peak, is_late in rows:
            kind: EventType = "fired" if fire else "cleared"
            self._emit(
                events,
                (r, d, kind, start, None if fire else mark, at),
                (value, latest, peak, is_late),
            )

    def _emit(
        self,
        events: list[_Event],
        where: tuple[int, int, EventType, int, int | None, int],
        numbers: tuple[float, float, float, bool],
    ) -> None:
        r, d, kind, start_ns, end_ns, at_ns = where
        value, latest, peak, late = numbers
        rule_id, rule_kind, sensor, severity, label, level, direction, silent = self._about[r]
        device, pilot, interval = self._devices[d]
        alarm = alarm_id(rule_id, device, start_ns)
        event = AlertEvent(
            f"{alarm}:{kind}",
            alarm,
            kind,
            rule_id,
            rule_kind,
            pilot,
            device,
            sensor,
            severity,
            label,
            level * interval if silent else level,
            direction,
            start_ns,
            end_ns,
            at_ns,
            value,
            latest,
            peak,
            late,
            self._window[r],
        )
        events.append(((at_ns, r, d, kind != "fired", start_ns), event))

    # --- input ----------------------------------------------------------------------------

    def _expand(self, batch: Readings) -> tuple[I64, I64, F64]:
        """One entry per (reading, rule it feeds): key, time, value; sorted by key then time.

        Of several readings of a key at one time the last given stays. NaN and codes outside
        the registry feed nothing. The readings are sorted by device then time, expanded to
        their rules, and those sorted by rule (a stable radix sort of small integers): keys
        are rule * n_devices + device.
        """
        device, sensor, ts, value = batch.device, batch.sensor, batch.ts_ns, batch.value
        if not len(device):
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
        ok = np.isfinite(value)
        if not (
            0 <= int(device.min()) <= int(device.max()) < len(self.device_ids)
            and 0 <= int(sensor.min()) <= int(sensor.max()) < self._n_sensors
        ):
            ok &= (device >= 0) & (sensor >= 0)
            ok &= (device < len(self.device_ids)) & (sensor < self._n_sensors)
        if not ok.all():
            device, sensor, ts, value = device[ok], sensor[ok], ts[ok], value[ok]
            if not len(device):
                return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
        order = _by_device_then_time(device, ts)
        device, sensor, ts, value = device[order], sensor[order], ts[order], value[order]
        pair = device.astype(np.int64) * self._n_sensors + sensor
        if self._pair_table is not None:
            fed = self._pair_table[pair].ravel()
            entry = np.flatnonzero(fed >= 0)
            rule = fed[entry]
            source = entry // self._pair_table.shape[1]
        else:
            first = self._pair_offsets[pair].astype(np.int64)
            count = self._pair_offsets[pair + 1] - first
            source = np.repeat(np.arange(len(pair)), count)
            entry = np.repeat(first - (np.cumsum(count) - count), count)
            entry += np.arange(len(source))
            rule = self._pair_rule[entry]
        by_rule = np.argsort(rule, kind="stable")
        source = source[by_rule]
        key = rule[by_rule].astype(np.int64) * self._n_dev + device[source]
        ts, value = ts[source], value[source]
        ends = np.ones(len(key), dtype=np.bool_)  # the last given of each (key, time)
        if len(key) > 1:
            ends[:-1] = (key[1:] != key[:-1]) | (ts[1:] != ts[:-1])
        if not ends.all():
            key, ts, value = key[ends], ts[ends], value[ends]
        return key, ts, value


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where each windowed row's window goes this batch (see `Evaluator._place`)."""

    lo: I64
    kept: I64
    base: I64
    move: Bools  # no room after the window: a new region of `size` entries at the arena's end
    size: I64  # each row's region size after the batch
    moved: int  # entries the moving rows need


def _plan(hot: NDArray[np.int64], k: I64) -> _Plan:
    lo, hi = hot[:, HOT["w_lo"]], hot[:, HOT["w_hi"]]
    base, cap = hot[:, HOT["w_base"]], hot[:, HOT["w_cap"]]
    kept = hi - lo
    move = hi + k > base + cap
    size = np.where(move, region_size(kept + k), cap)
    return _Plan(lo, kept, base, move, size, int(size[move].sum()))


def _by_device_then_time(device: NDArray[np.int32], ts: I64) -> Index:
    """The order of readings by device, then device time; equal ones as given (stable).

    In time order already (a batch as received, mostly): a radix sort of the device codes
    when they fit 16 bits. Else one sort of a composite of both when it fits an int64, else
    a lexsort.
    """
    if len(ts) < 2:
        return np.arange(len(ts))
    if int(device.max()) <= np.iinfo(np.uint16).max and bool(np.all(ts[1:] >= ts[:-1])):
        order: Index = np.argsort(device.astype(np.uint16), kind="stable")
        return order
    t_min = int(ts.min())
    bits = (int(ts.max()) - t_min).bit_length()
    if int(device.max()).bit_length() + bits <= 62:
        composite = (device.astype(np.int64) << bits) | (ts - t_min)
        order = np.argsort(composite, kind="stable")
        return order
    order = np.lexsort((ts, device))
    return order


def _smallest(top: int) -> type[np.signedinteger[Any]]:
    """The smallest signed integer dtype that holds 0 to `top`."""
    for dtype in (np.int16, np.int32):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def _after(state: AlertState, store: _Store, *, owned: bool, changed: bool) -> AlertState:
    """The state to return: the successor of `state` when its store changed."""
    if not owned:
        return AlertState(store, state._lock)
    if not changed:
        store.undo = None
        return state
    return state._successor(store)


def _covered(rec: NDArray[np.void], start: I64, end: I64) -> Bools:
    """Episodes `[start, end]` that overlap the key's open or last closed alarm."""
    open_overlap = rec["active"] & (rec["start_ns"] <= end)
    closed_start = rec["closed_start_ns"]
    closed = closed_start != NONE_NS
    closed_overlap = closed & (closed_start <= end) & (start <= rec["closed_end_ns"])
    out: Bools = open_overlap | closed_overlap
    return out


def _ends(table: NDArray[np.void], rows: Index, end: Carry) -> None:
    """The state busy rows end in, beyond their first line (the others: idle, as they were)."""
    table["start_ns"][rows] = end.start_ns
    table["start_value"][rows] = end.start_value
    table["peak"][rows] = end.peak
    table["clear_since_ns"][rows] = end.clear_ns
    table["clear_value"][rows] = end.clear_value


def _closed(table: NDArray[np.void], rows: Index, t: Transitions) -> None:
    """The last alarm each segment closed live, in its row (else the one it had)."""
    clears = np.flatnonzero(~t.fire)
    if len(clears):
        last = np.ones(len(clears), dtype=np.bool_)
        last[:-1] = t.seg[clears[1:]] != t.seg[clears[:-1]]
        at = clears[last]
        table["closed_start_ns"][rows[t.seg[at]]] = t.start_ns[at]
        table["closed_end_ns"][rows[t.seg[at]]] = t.mark_ns[at]


def _live_late(t: Transitions, ts: I64, cutoff_ns: int) -> Bools:
    """Live events decided by readings older than the cutoff (see the module docstring)."""
    at = ts[t.pos]
    cleared_late = ~t.fire & (at < cutoff_ns)
    fired_late = np.zeros(len(t.pos), dtype=np.bool_)
    if len(t.pos) > 1:
        same_next = t.seg[1:] == t.seg[:-1]
        fired_late[:-1] = t.fire[:-1] & same_next & cleared_late[1:]
    return cleared_late | fired_late


def _concat_transitions(a: Transitions, b: Transitions) -> Transitions:
    """Both sets of transitions, in reading order (a's first at equal positions)."""
    pos = np.concatenate((a.pos, b.pos))
    order = np.argsort(pos, kind="stable")
    return Transitions(
        seg=np.concatenate((a.seg, b.seg))[order],
        pos=pos[order],
        fire=np.concatenate((a.fire, b.fire))[order],
        mark_ns=np.concatenate((a.mark_ns, b.mark_ns))[order],
        mark_value=np.concatenate((a.mark_value, b.mark_value))[order],
        start_ns=np.concatenate((a.start_ns, b.start_ns))[order],
        peak=np.concatenate((a.peak, b.peak))[order],
    )

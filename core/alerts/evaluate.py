"""The alert evaluator: batches of readings (and the clock) in, alarm events and state out.

    evaluator = Evaluator(rules, registry)
    state = AlertState.empty()
    events, state = evaluator.evaluate(batch, state, now_ns)     # a Readings batch received now
    events, state = evaluator.evaluate_silence(state, now_ns)    # the deadman, on a timer

Both are pure: they return a new state and never change the one given (its arrays are
read-only). A key is one rule and one device; its readings are evaluated in device-time order
(sorted within the batch); several readings of a key at one device time count once, the last
given winning, as in the store.

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

The cost is a fixed number of numpy passes over the batch (a sort by key and time included)
plus Python loops over the rules; nothing loops over readings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from core.alerts import metrics
from core.alerts.kernels import F64, I64, NONE_NS, Bools, Index, ragged_gather
from core.alerts.machine import Carry, Segments, Signals, Transitions, run_machine
from core.alerts.rules import Direction, Kind, Rule, Severity, check_finite, rule_ids
from core.alerts.state import ROW_COLUMNS, ROW_DEFAULTS, AlertState
from core.readings import Readings
from core.registry import Registry
from core.timeutil import NS_PER_S

EventType = Literal["fired", "cleared"]
#: Events decided by a reading older than this, before the batch's receipt, are late.
DEFAULT_LATE_AFTER_S = 3600
WINDOWED: frozenset[str] = frozenset({"mean_over_guideline", "rate_of_rise", "flat"})
#: Far enough back that a flat rule's window is cut by its count alone.
_FOREVER_NS = int(np.iinfo(np.int64).max // 4)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alarm opened (`fired`) or closed (`cleared`), for one rule on one device.

    `alarm_id` is a hash of (rule, pilot, device, start_ns): the same readings give the same
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


def alarm_id(rule: str, pilot: str, device: str, start_ns: int) -> str:
    """The deterministic id of an alarm: 24 hex digits of BLAKE2b over its identity."""
    text = f"{rule}\x1f{pilot}\x1f{device}\x1f{start_ns}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class _Group:
    """Readings sorted by key then time, cut into segments (one per key)."""

    ts: I64
    value: F64
    seg: Index
    first: Index
    last: Index
    key: I64
    rule: Index
    device: Index
    row: Index  # the key's row in the state, -1 when it has none


def _group(key: I64, ts: I64, value: F64, state_key: I64, n_devices: int) -> _Group:
    n = len(key)
    begins = np.ones(n, dtype=np.bool_)
    begins[1:] = key[1:] != key[:-1]
    first = np.flatnonzero(begins)
    last = np.append(first[1:] - 1, n - 1).astype(np.intp) if n else first.copy()
    seg_key = key[first]
    row = np.searchsorted(state_key, seg_key).astype(np.intp)
    found = row < len(state_key)
    found[found] = state_key[row[found]] == seg_key[found]
    return _Group(
        ts=ts,
        value=value,
        seg=(np.cumsum(begins) - 1).astype(np.intp),
        first=first,
        last=last,
        key=seg_key,
        rule=(seg_key // n_devices).astype(np.intp),
        device=(seg_key % n_devices).astype(np.intp),
        row=np.where(found, row, -1),
    )


def _sorted_distinct(key: I64, ts: I64, value: F64) -> tuple[I64, I64, F64]:
    """Sorted by key then time; of readings at the same (key, time) the last given stays.

    When key and time fit one int64 together (a batch spanning less than a few days), one
    unstable sort of that composite, then the last given of each equal run; else a lexsort.
    """
    t_min = int(ts.min())
    bits = (int(ts.max()) - t_min).bit_length()
    if int(key.max()).bit_length() + bits <= 62:
        composite = (key << bits) | (ts - t_min)
        order = np.argsort(composite)
        ordered = composite[order]
        begins = np.ones(len(order), dtype=np.bool_)
        begins[1:] = ordered[1:] != ordered[:-1]
        pick = np.maximum.reduceat(order, np.flatnonzero(begins))  # the last given of a run
        return key[pick], ts[pick], value[pick]
    order = np.lexsort((ts, key))  # stable: equal (key, ts) keep the order given
    key, ts, value = key[order], ts[order], value[order]
    keep = np.ones(len(key), dtype=np.bool_)
    keep[:-1] = (key[1:] != key[:-1]) | (ts[1:] != ts[:-1])
    return key[keep], ts[keep], value[keep]


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
        self._high = np.asarray([r.direction == "above" for r in self.rules], np.bool_)
        self._pending_ns = np.asarray([r.pending_s * NS_PER_S for r in self.rules], np.int64)
        self._clear_ns = np.asarray([r.clear_s * NS_PER_S for r in self.rules], np.int64)
        self._level = np.asarray([r.level for r in self.rules], np.float64)
        self._silent = np.asarray([r.kind == "silent" for r in self.rules], np.bool_)
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
        self._pair_rules = rules[order]
        self._pair_count = np.bincount(ids, minlength=n_pairs).astype(np.int64)
        self._pair_first = np.cumsum(self._pair_count) - self._pair_count

    # --- public ---------------------------------------------------------------------------

    def evaluate(
        self, batch: Readings, state: AlertState, now_ns: int
    ) -> tuple[list[AlertEvent], AlertState]:
        """Events of a batch received at `now_ns`, and the state after it."""
        st = self._adopt(state)
        key, ts, value = self._expand(batch)
        if len(key) == 0:
            return [], st
        key, ts, value = _sorted_distinct(key, ts, value)
        st_key = self._keys(st)
        every = _group(key, ts, value, st_key, self._n_dev)
        if len(st):
            last_ts = np.where(every.row >= 0, st.last_ts_ns[every.row], NONE_NS)[every.seg]
        else:
            last_ts = np.full(len(ts), NONE_NS, dtype=np.int64)
        live, back = ts > last_ts, ts < last_ts
        events: list[tuple[Any, ...]] = []
        if live.any():
            group = _group(key[live], ts[live], value[live], st_key, self._n_dev)
            st = self._live(st, group, now_ns, events)
        if back.any():
            group = _group(key[back], ts[back], value[back], self._keys(st), self._n_dev)
            self._backlog(st, group, events)
        events.sort(key=lambda e: e[0])
        return [e[1] for e in events], st

    def evaluate_silence(
        self, state: AlertState, now_ns: int
    ) -> tuple[list[AlertEvent], AlertState]:
        """`silent` alarms of devices whose newest reading is older than the rule allows.

        A device never heard from has no row and is not silent. The alarm starts when the
        allowed silence ran out (last reading + k x interval); a reading clears it (in
        `evaluate`). Between, each call raises the open alarm's peak (seconds of silence).
        """
        st = self._adopt(state)
        if len(st) == 0 or not self._silent.any():
            return [], st
        rule, device = st.rule, st.device
        heard = st.last_ts_ns != NONE_NS
        last = np.where(heard, st.last_ts_ns, now_ns)
        limit = np.rint(self._level[rule] * self._interval_s[device] * NS_PER_S).astype(np.int64)
        gap = now_ns - last
        silent = self._silent[rule] & heard
        fire = silent & ~st.active & (gap > limit)
        rows = np.flatnonzero(fire | (silent & st.active))
        if len(rows) == 0:
            return [], st
        fired = fire[rows]
        start = np.where(fired, last[rows] + limit[rows], st.start_ns[rows])
        start_value = np.where(fired, limit[rows] / NS_PER_S, st.start_value[rows])
        peak = np.fmax(st.peak[rows], gap[rows] / NS_PER_S)
        values = {"active": np.ones(len(rows), np.bool_), "start_ns": start}
        values |= {"start_value": start_value, "peak": peak}
        new_state = self._assemble(st, self._keys(st)[rows], rows.astype(np.intp), values, None)
        events: list[tuple[Any, ...]] = []
        for i in np.flatnonzero(fired):
            r, d = int(rule[rows[i]]), int(device[rows[i]])
            self._emit(
                events,
                (r, d, "fired", int(start[i]), None, now_ns),
                (float(start_value[i]), float(gap[rows[i]] / NS_PER_S), float(peak[i]), False),
            )
        events.sort(key=lambda e: e[0])
        return [e[1] for e in events], new_state

    # --- the two groups -------------------------------------------------------------------

    def _live(
        self, st: AlertState, g: _Group, now_ns: int, events: list[tuple[Any, ...]]
    ) -> AlertState:
        window = self._windows_of(st, g.row)
        before = self._column(st, g.row, "last_ts_ns")
        sig, new_window = self._signals(g, window, before)
        transitions, end = run_machine(sig, self._segments(g), self._carry(st, g.row))
        late = _live_late(transitions, sig.ts, now_ns - self.late_after_ns)
        self._transition_events(g, sig, transitions, late=late, events=events)
        values = {
            "last_ts_ns": g.ts[g.last],
            "last_value": g.value[g.last],
            "active": end.active,
            "start_ns": end.start_ns,
            "start_value": end.start_value,
            "peak": end.peak,
            "pending_since_ns": end.pending_ns,
            "clear_since_ns": end.clear_ns,
            "clear_value": end.clear_value,
        }
        values |= self._closed(st, g, transitions)
        return self._assemble(st, g.key, g.row, values, new_window)

    def _backlog(self, st: AlertState, g: _Group, events: list[tuple[Any, ...]]) -> None:
        before = np.full(len(g.key), NONE_NS, dtype=np.int64)
        sig, _ = self._signals(g, None, before)
        t, end = run_machine(sig, self._segments(g), Carry.idle(len(g.key)))
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
        covered = self._covered(st, g.row[t.seg[fires]], t.start_ns[fires], t.mark_ns[clears])
        keep = np.zeros(len(t.pos), dtype=np.bool_)
        keep[fires[~covered]] = True
        keep[clears[~covered]] = True
        late = np.ones(len(t.pos), np.bool_)
        self._transition_events(g, sig, t, late=late, events=events, keep=keep)

    @staticmethod
    def _covered(st: AlertState, row: Index, start: I64, end: I64) -> Bools:
        """Episodes `[start, end]` that overlap the key's open or last closed alarm."""
        out = np.zeros(len(row), dtype=np.bool_)
        known = row >= 0
        if not known.any():
            return out
        r = row[known]
        s, e = start[known], end[known]
        open_overlap = st.active[r] & (st.start_ns[r] <= e)
        closed = st.closed_start_ns[r] != NONE_NS
        closed_overlap = closed & (st.closed_start_ns[r] <= e) & (s <= st.closed_end_ns[r])
        out[known] = open_overlap | closed_overlap
        return out

    # --- signals --------------------------------------------------------------------------

    def _signals(
        self, g: _Group, window: tuple[I64, I64, F64] | None, before: I64
    ) -> tuple[Signals, tuple[I64, I64, F64] | None]:
        """What each reading says under its rule, and (live) the windows to keep."""
        n, n_seg = len(g.ts), len(g.key)
        metric = np.empty(n, dtype=np.float64)
        past = np.zeros(n, dtype=np.bool_)
        safe = np.zeros(n, dtype=np.bool_)
        onset = g.ts.copy()
        kept_len = np.zeros(n_seg, dtype=np.int64)
        kept_ts: list[I64] = []
        kept_value: list[F64] = []
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(g.rule)) + 1, [n_seg]))
        for s0, s1 in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            rule = self.rules[int(g.rule[s0])]
            span = slice(int(g.first[s0]), int(g.last[s1 - 1]) + 1)
            local = g.seg[span] - s0
            if rule.kind in WINDOWED:
                part = _slice_window(window, s0, s1) if window is not None else None
                measured, kept = self._windowed(
                    rule, g, span, local, devices=g.device[s0:s1], window=part
                )
                if window is not None:
                    kept_len[s0:s1] = np.diff(kept[0])
                    kept_ts.append(kept[1])
                    kept_value.append(kept[2])
            elif rule.kind == "silent":
                begins = np.zeros(len(local), dtype=np.bool_)
                begins[g.first[s0:s1] - span.start] = True
                measured = metrics.silence(g.ts[span], begins, before[s0:s1])
            else:
                measured = metrics.plain(rule, g.ts[span], g.value[span])
            metric[span], past[span], safe[span] = measured.metric, measured.past, measured.safe
            onset[span] = measured.onset
        signals = Signals(g.seg, g.ts, onset, metric, past, safe)
        if window is None:
            return signals, None
        offsets = np.zeros(n_seg + 1, dtype=np.int64)
        np.cumsum(kept_len, out=offsets[1:])
        return signals, (offsets, _cat(kept_ts, np.int64), _cat(kept_value, np.float64))

    def _windowed(
        self,
        rule: Rule,
        g: _Group,
        span: slice,
        local: Index,
        *,
        devices: Index,
        window: tuple[I64, I64, F64] | None,
    ) -> tuple[metrics.Measured, tuple[I64, I64, F64]]:
        n_seg = len(devices)
        if window is None:
            empty = np.empty(0, dtype=np.int64)
            window = (np.zeros(n_seg + 1, np.int64), empty, np.empty(0, np.float64))
        ext = metrics.Extended.build(local, g.ts[span], g.value[span], window)
        interval = self._interval_s[devices]
        if rule.kind == "flat":
            n = metrics.flat_readings(rule, interval)
            measured = metrics.flat(rule, ext, local, n)
            kept = ext.retained(np.full(n_seg, _FOREVER_NS, np.int64), n - 1)
        else:
            kernel = metrics.rolling_mean if rule.kind == "mean_over_guideline" else metrics.rise
            measured = kernel(rule, ext, local, interval)
            cap = metrics.window_cap(rule.window_s, interval) - 1
            kept = ext.retained(np.full(n_seg, rule.window_s * NS_PER_S, np.int64), cap)
        return measured, kept

    def _segments(self, g: _Group) -> Segments:
        return Segments(
            g.first, g.last, self._high[g.rule], self._pending_ns[g.rule], self._clear_ns[g.rule]
        )

    # --- events ---------------------------------------------------------------------------

    def _transition_events(
        self,
        g: _Group,
        sig: Signals,
        t: Transitions,
        *,
        late: Bools,
        events: list[tuple[Any, ...]],
        keep: Bools | None = None,
    ) -> None:
        chosen = np.flatnonzero(keep) if keep is not None else np.arange(len(t.pos))
        at = sig.ts[t.pos]
        latest = sig.metric[t.pos]
        for i in chosen.tolist():
            seg = int(t.seg[i])
            fire = bool(t.fire[i])
            self._emit(
                events,
                (
                    int(g.rule[seg]),
                    int(g.device[seg]),
                    "fired" if fire else "cleared",
                    int(t.start_ns[i]),
                    None if fire else int(t.mark_ns[i]),
                    int(at[i]),
                ),
                (float(t.mark_value[i]), float(latest[i]), float(t.peak[i]), bool(late[i])),
            )

    def _emit(
        self,
        events: list[tuple[Any, ...]],
        where: tuple[int, int, EventType, int, int | None, int],
        numbers: tuple[float, float, float, bool],
    ) -> None:
        r, d, kind, start_ns, end_ns, at_ns = where
        value, latest, peak, late = numbers
        rule = self.rules[r]
        device, pilot = self.device_ids[d], self._pilot[d]
        level = rule.level * float(self._interval_s[d]) if rule.kind == "silent" else rule.level
        alarm = alarm_id(rule.id, pilot, device, start_ns)
        event = AlertEvent(
            id=f"{alarm}:{kind}",
            alarm_id=alarm,
            type=kind,
            rule=rule.id,
            kind=rule.kind,
            pilot=pilot,
            device=device,
            sensor=rule.sensor,
            severity=rule.severity,
            label=rule.label,
            level=level,
            direction=rule.direction,
            start_ns=start_ns,
            end_ns=end_ns,
            at_ns=at_ns,
            value=value,
            latest=latest,
            peak=peak,
            late=late,
        )
        events.append(((at_ns, r, d, kind != "fired", start_ns), event))

    # --- state ----------------------------------------------------------------------------

    def _keys(self, st: AlertState) -> I64:
        return st.rule.astype(np.int64) * self._n_dev + st.device

    def _adopt(self, state: AlertState) -> AlertState:
        """The state in this evaluator's tables: rows of unknown rules or devices dropped."""
        same_rules = state.rule_ids is self.rule_ids or state.rule_ids == self.rule_ids
        same_devices = state.device_ids is self.device_ids or state.device_ids == self.device_ids
        if same_rules and same_devices:
            return state
        rule_at = {r: i for i, r in enumerate(self.rule_ids)}
        device_at = {d: i for i, d in enumerate(self.device_ids)}
        rule_map = np.asarray([rule_at.get(r, -1) for r in state.rule_ids] or [-1], np.int64)
        dev_map = np.asarray([device_at.get(d, -1) for d in state.device_ids] or [-1], np.int64)
        new_rule = rule_map[state.rule] if len(state) else np.empty(0, np.int64)
        new_device = dev_map[state.device] if len(state) else np.empty(0, np.int64)
        rows = np.flatnonzero((new_rule >= 0) & (new_device >= 0))
        keys = new_rule[rows] * self._n_dev + new_device[rows]
        order = np.argsort(keys, kind="stable")
        rows, keys = rows[order], keys[order]
        offsets, source = ragged_gather(
            state.window_offsets[:-1][rows], np.diff(state.window_offsets)[rows]
        )
        columns = {name: getattr(state, name)[rows] for name in ROW_COLUMNS}
        columns["rule"] = (keys // self._n_dev).astype(np.int32)
        columns["device"] = (keys % self._n_dev).astype(np.int32)
        return AlertState(
            self.rule_ids,
            self.device_ids,
            window_offsets=offsets,
            window_ts_ns=state.window_ts_ns[source],
            window_value=state.window_value[source],
            **columns,
        )

    @staticmethod
    def _column(st: AlertState, row: Index, name: str) -> NDArray[Any]:
        column: NDArray[Any] = getattr(st, name)
        fill = ROW_DEFAULTS[name]
        if len(column) == 0:
            return np.full(len(row), fill, dtype=column.dtype)
        return np.where(row >= 0, column[np.maximum(row, 0)], fill).astype(column.dtype)

    def _carry(self, st: AlertState, row: Index) -> Carry:
        return Carry(
            active=self._column(st, row, "active"),
            start_ns=self._column(st, row, "start_ns"),
            start_value=self._column(st, row, "start_value"),
            peak=self._column(st, row, "peak"),
            pending_ns=self._column(st, row, "pending_since_ns"),
            clear_ns=self._column(st, row, "clear_since_ns"),
            clear_value=self._column(st, row, "clear_value"),
        )

    def _closed(self, st: AlertState, g: _Group, t: Transitions) -> dict[str, NDArray[Any]]:
        """The last alarm each segment closed live (or the one the state had)."""
        closed_start = self._column(st, g.row, "closed_start_ns")
        closed_end = self._column(st, g.row, "closed_end_ns")
        clears = np.flatnonzero(~t.fire)
        last = np.ones(len(clears), dtype=np.bool_)
        last[:-1] = t.seg[clears[1:]] != t.seg[clears[:-1]]
        at = clears[last]
        closed_start[t.seg[at]] = t.start_ns[at]
        closed_end[t.seg[at]] = t.mark_ns[at]
        return {"closed_start_ns": closed_start, "closed_end_ns": closed_end}

    def _windows_of(self, st: AlertState, row: Index) -> tuple[I64, I64, F64]:
        """The kept window of each segment's row (empty for a new key)."""
        known = row >= 0
        starts = np.where(known, st.window_offsets[np.maximum(row, 0)], 0)
        lengths = np.zeros(len(row), dtype=np.int64)
        if len(st):
            lengths[known] = np.diff(st.window_offsets)[row[known]]
        offsets, source = ragged_gather(starts.astype(np.int64), lengths)
        return offsets, st.window_ts_ns[source], st.window_value[source]

    def _assemble(
        self,
        st: AlertState,
        seg_key: I64,
        row: Index,
        values: dict[str, NDArray[Any]],
        window: tuple[I64, I64, F64] | None,
    ) -> AlertState:
        """The state with some rows set to `values`, and (when given) their windows replaced.

        The rows are those of `seg_key`; `row` is each one's row, -1 for a new one.
        """
        n_old = len(st)
        new = row < 0
        target = row.copy()
        target[new] = n_old + np.arange(int(np.count_nonzero(new)))
        keys = np.concatenate((self._keys(st), seg_key[new]))
        order = np.argsort(keys, kind="stable") if new.any() else None
        columns: dict[str, NDArray[Any]] = {}
        for name, dtype in ROW_COLUMNS.items():
            if name in ("rule", "device"):
                continue
            column = np.concatenate(
                (getattr(st, name), np.full(int(new.sum()), ROW_DEFAULTS[name], dtype=dtype))
            )
            if name in values:
                column[target] = values[name]
            columns[name] = column if order is None else column[order]
        keys = keys if order is None else keys[order]
        columns["rule"] = (keys // self._n_dev).astype(np.int32)
        columns["device"] = (keys % self._n_dev).astype(np.int32)
        offsets, w_ts, w_value = self._new_windows(st, target, order, window)
        return AlertState(
            self.rule_ids,
            self.device_ids,
            window_offsets=offsets,
            window_ts_ns=w_ts,
            window_value=w_value,
            **columns,
        )

    @staticmethod
    def _new_windows(
        st: AlertState,
        target: Index,
        order: Index | None,
        window: tuple[I64, I64, F64] | None,
    ) -> tuple[I64, I64, F64]:
        if window is None and order is None:
            return st.window_offsets, st.window_ts_ns, st.window_value
        n_rows = len(st) + int(np.count_nonzero(target >= len(st)))
        starts = np.zeros(n_rows, dtype=np.int64)
        lengths = np.zeros(n_rows, dtype=np.int64)
        starts[: len(st)] = st.window_offsets[:-1]
        lengths[: len(st)] = np.diff(st.window_offsets)
        source_ts, source_value = st.window_ts_ns, st.window_value
        if window is not None:
            w_off, w_ts, w_value = window
            starts[target] = len(source_ts) + w_off[:-1]
            lengths[target] = np.diff(w_off)
            source_ts = np.concatenate((source_ts, w_ts))
            source_value = np.concatenate((source_value, w_value))
        if order is not None:
            starts, lengths = starts[order], lengths[order]
        offsets, source = ragged_gather(starts, lengths)
        return offsets, source_ts[source], source_value[source]

    # --- input ----------------------------------------------------------------------------

    def _expand(self, batch: Readings) -> tuple[I64, I64, F64]:
        """One entry per (reading, rule it feeds): key, time, value.

        NaN and codes outside the registry feed nothing.
        """
        device, sensor = batch.device, batch.sensor
        ok = np.isfinite(batch.value) & (device >= 0) & (sensor >= 0)
        ok &= (device < len(self.device_ids)) & (sensor < self._n_sensors)
        if not ok.all():
            device, sensor = device[ok], sensor[ok]
        pair = device.astype(np.int64) * self._n_sensors + sensor
        count = self._pair_count[pair]
        source = np.repeat(np.flatnonzero(ok) if not ok.all() else np.arange(len(ok)), count)
        first = np.repeat(self._pair_first[pair] - (np.cumsum(count) - count), count)
        rule = self._pair_rules[np.arange(len(source)) + first]
        key = rule * self._n_dev + batch.device[source]
        return key, batch.ts_ns[source], batch.value[source]


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


def _slice_window(window: tuple[I64, I64, F64], s0: int, s1: int) -> tuple[I64, I64, F64]:
    offsets, ts, value = window
    lo, hi = int(offsets[s0]), int(offsets[s1])
    return offsets[s0 : s1 + 1] - lo, ts[lo:hi], value[lo:hi]


def _cat(parts: list[Any], dtype: type[Any]) -> NDArray[Any]:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

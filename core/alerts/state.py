"""`AlertState`: what the evaluator remembers between batches, as columns, and its bytes.

One row per key (a rule and a device) that has seen a reading; rules and devices are named by
their ids (`rule_ids`, `device_ids` are the tables the integer columns index), so a state
outlives a reordered rules file or registry. The columns, as `columns()` and the attributes of
the same names give them (rows sorted by (rule, device)):

- `last_ts_ns`, `last_value`: the newest reading evaluated live (device time), its value;
- `active`: an alarm is open;
- `start_ns`, `start_value`: the open alarm's start (its first reading past the level, or the
  onset of a flat run) and the metric there; when idle, those of a pending run (`NONE_NS`
  when there is none);
- `peak`: the most extreme metric since `start_ns`;
- `pending_since_ns`: idle, when the current run past the level began (else `NONE_NS`);
- `clear_since_ns`, `clear_value`: active, when the current run back on the safe side
  began, and the metric there;
- `closed_start_ns`, `closed_end_ns`: the last alarm closed live (a late episode that
  overlaps it is not raised again);
- `window_offsets`, `window_ts_ns`, `window_value`: the recent readings a windowed rule
  (mean, rise, flat) needs, as a ragged array: row i is `window_offsets[i]:[i + 1]`.

`to_bytes()` is an uncompressed NumPy `.npz` archive (a zip of one `.npy` per column, plus
`meta`: JSON with the format name, version and the id tables); `from_bytes()` checks it
whole and refuses anything else with `AlertStateError`. Numbers keep their exact bits, so a
state read back evaluates exactly as the one written.

In memory a state is not those sorted columns but a `_Store` the evaluator updates in place,
so that a batch costs what it touches, not the size of the state (docs/ALERTS.md, "The state"):

- row columns in preallocated arrays, one slot per key in the order keys appeared (slots
  never move), and a dense table from key (`rule * n_devices + device`) to slot, built when
  an evaluator first takes the store (it is as large as the evaluator's own key tables; the
  id tables of bytes alone never size an allocation);
- the kept windows in one arena: each row owns a region `[w_base, w_base + w_cap)` holding
  its window at `[w_lo, w_hi)`, oldest first; a batch appends the new readings after `w_hi`
  and moves `w_lo` forward; a row whose region is full moves to a new, larger region at the
  arena's end; the arena is compacted (copied whole, into new arrays) when the regions left
  behind outweigh the live windows. So a batch never overwrites an arena entry: it writes
  past a row's window or past the arena's used end, where no version of the state holds
  anything.

A state is still a value: `Evaluator.evaluate` takes the store of the state it is given,
changes it in place and returns a new `AlertState` for it; the state given becomes a
*former version*: the undo record of that batch (the old records of the rows the batch
wrote, the counts it moved, the arena arrays it replaced: a cost in proportion to the batch)
and a link to the newer version. Reading or evaluating a former version rebuilds its store
(a copy of the newest one, with the undo records applied newest first: a cost in proportion
to the state, paid only by whoever keeps an old version, never by the caller that always
goes on from the returned state). Undo records live as long as the former versions that need
them. The arrays `columns()` returns are read-only copies. Versions of one lineage share a
lock, so threads may hold and evaluate versions concurrently, one batch at a time.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import zipfile
import zlib
from typing import Any, Generic, NamedTuple, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from core.alerts.kernels import NONE_NS, ragged_gather
from core.errors import PilotsError

FORMAT = "pilots-alert-state"
VERSION = 1
#: Per-row columns and their dtypes, in file order (the key columns first).
ROW_COLUMNS: dict[str, np.dtype[Any]] = {
    "rule": np.dtype(np.int32),
    "device": np.dtype(np.int32),
    "last_ts_ns": np.dtype(np.int64),
    "last_value": np.dtype(np.float64),
    "active": np.dtype(np.bool_),
    "start_ns": np.dtype(np.int64),
    "start_value": np.dtype(np.float64),
    "peak": np.dtype(np.float64),
    "pending_since_ns": np.dtype(np.int64),
    "clear_since_ns": np.dtype(np.int64),
    "clear_value": np.dtype(np.float64),
    "closed_start_ns": np.dtype(np.int64),
    "closed_end_ns": np.dtype(np.int64),
}
WINDOW_COLUMNS: dict[str, np.dtype[Any]] = {
    "window_ts_ns": np.dtype(np.int64),
    "window_value": np.dtype(np.float64),
}
#: What a new row holds before its first batch.
ROW_DEFAULTS: dict[str, Any] = {
    "last_ts_ns": NONE_NS,
    "last_value": np.nan,
    "active": False,
    "start_ns": NONE_NS,
    "start_value": np.nan,
    "peak": np.nan,
    "pending_since_ns": NONE_NS,
    "clear_since_ns": NONE_NS,
    "clear_value": np.nan,
    "closed_start_ns": NONE_NS,
    "closed_end_ns": NONE_NS,
}
#: The store's own per-row columns besides: where each row's window lies in the arena.
ARENA_COLUMNS = ("w_base", "w_cap", "w_lo", "w_hi")
#: One record per row in the store, 128 bytes: the fields every batch reads or writes for
#: each of its rows in the first 64 (one cache line), those of open alarms, pending and
#: clearing runs in the other (read for the few rows that have one).
_LAYOUT = {
    "last_ts_ns": 0,
    "last_value": 8,
    "pending_since_ns": 16,
    "w_base": 24,
    "w_cap": 32,
    "w_lo": 40,
    "w_hi": 48,
    "active": 56,
    "rule": 64,
    "device": 68,
    "start_ns": 72,
    "start_value": 80,
    "peak": 88,
    "clear_since_ns": 96,
    "clear_value": 104,
    "closed_start_ns": 112,
    "closed_end_ns": 120,
}
RECORD = np.dtype(
    {
        "names": list(_LAYOUT),
        "formats": [ROW_COLUMNS.get(name, np.dtype(np.int64)) for name in _LAYOUT],
        "offsets": list(_LAYOUT.values()),
        "itemsize": 128,
    }
)
#: The same bytes as one opaque item: numpy gathers, scatters and copies those an order of
#: magnitude faster than records with fields.
_RAW = np.dtype((np.void, RECORD.itemsize))
#: The first cache line of a record as 8 int64 words: `hot()` reads it for many rows in one
#: gather. Word 1 holds `last_value`'s float64 bits; word 7 `active` in its low byte (the
#: other bytes of it are zero in every record).
HOT_WORDS = 8
HOT = {
    "last_ts_ns": 0,
    "last_value": 1,
    "pending_since_ns": 2,
    "w_base": 3,
    "w_cap": 4,
    "w_lo": 5,
    "w_hi": 6,
    "active": 7,
}
assert all(_LAYOUT[name] == 8 * word for name, word in HOT.items())
_LINE = np.dtype((np.void, 8 * HOT_WORDS))
_MIN_ROWS = 64
_MIN_ARENA = 4096
#: Compact the arena when its used part exceeds this many times the live window entries
#: (plus `_ARENA_SLACK_PER_ROW` a row and `_MIN_ARENA`).
_COMPACT_FACTOR = 3
_ARENA_SLACK_PER_ROW = 16

_T = TypeVar("_T", bound=np.generic)


class AlertStateError(PilotsError):
    """Saved alert state that cannot be read back (truncated, another format, inconsistent)."""


class ActiveAlarm(NamedTuple):
    """An open alarm as the state holds it."""

    rule: str
    device: str
    start_ns: int
    start_value: float
    peak: float


def region_size(kept: NDArray[np.int64]) -> NDArray[np.int64]:
    """The arena region given to a window of `kept` entries: room to grow by half, at least 8."""
    out: NDArray[np.int64] = np.where(kept > 0, kept + np.maximum(kept >> 1, 8), 0)
    return out


def copy_records(records: NDArray[np.void]) -> NDArray[np.void]:
    """A copy of an array of `RECORD`s (the fast way)."""
    out: NDArray[np.void] = records.view(_RAW).copy().view(RECORD)
    return out


def _default_record() -> NDArray[np.void]:
    record = np.zeros(1, dtype=RECORD)
    for name, fill in ROW_DEFAULTS.items():
        record[name] = fill
    return record


_DEFAULT = _default_record()


class _Undo:
    """What one batch changed in a store, to take it back (see the module docstring).

    Rows: the records (or single fields) of the slots written, as they were (slots added
    by the batch are dropped by restoring the row count). The arena: its used end and, when
    the batch replaced the arrays (growth, compaction), the old arrays (a batch overwrites no
    entry in them).
    """

    __slots__ = (
        "arena_old",
        "keys_added",
        "layout0",
        "n0",
        "rows",
        "w_end0",
        "w_live0",
    )

    def __init__(self, store: _Store) -> None:
        self.layout0 = store.layout
        self.n0 = store.n
        self.w_end0 = store.w_end
        self.w_live0 = store.w_live
        self.rows: list[tuple[NDArray[np.intp], str | None, NDArray[Any]]] = []
        self.keys_added: list[NDArray[np.int64]] = []
        self.arena_old: tuple[NDArray[np.int64], NDArray[np.float64]] | None = None

    def revert(self, store: _Store, *, copy: bool) -> None:
        """Take the batch back in `store` (the one it changed, or a copy of a later version)."""
        raw = store.rows.view(_RAW)
        for slots, name, old in reversed(self.rows):
            if name is None:
                raw[slots] = old.view(_RAW)
            elif name == "hot":
                store.lines()[slots] = old.reshape(-1).view(_LINE)
            else:
                store.rows[name][slots] = old
        for keys in self.keys_added:
            store.index()[keys] = -1
        store.n = self.n0
        if self.arena_old is not None:
            ts, value = self.arena_old
            store.w_ts, store.w_value = (ts.copy(), value.copy()) if copy else (ts, value)
        store.w_end, store.w_live = self.w_end0, self.w_live0
        store.layout = self.layout0


class _Store:
    """The mutable columns behind the newest version of a state (see the module docstring).

    `rows` holds one `RECORD` per slot (`n` of them in use); `slot` maps a key to its slot
    (-1: none; built by `index()`); `w_ts`, `w_value` are the arena, `[0, w_end)` in use,
    `w_live` entries of it held by rows. `layout`: which rules are windowed, as the evaluator
    that last changed the store had them (no row of another rule holds a window). `undo`,
    while a batch runs, records what it overwrites.
    """

    __slots__ = (
        "device_ids",
        "layout",
        "n",
        "n_dev",
        "rows",
        "rule_ids",
        "slot",
        "undo",
        "w_end",
        "w_live",
        "w_ts",
        "w_value",
    )

    def __init__(
        self, rule_ids: tuple[str, ...], device_ids: tuple[str, ...], rows: int = 0, arena: int = 0
    ) -> None:
        self.rule_ids = rule_ids
        self.device_ids = device_ids
        self.n_dev = max(len(device_ids), 1)
        self.n = 0
        self.rows = np.zeros(max(rows, _MIN_ROWS), dtype=RECORD)
        self.slot: NDArray[np.int64] | None = None
        self.w_ts = np.zeros(max(arena + 1, _MIN_ARENA), dtype=np.int64)
        self.w_value = np.zeros(max(arena + 1, _MIN_ARENA), dtype=np.float64)
        self.w_end = 0
        self.w_live = 0
        self.layout: bytes | None = None
        self.undo: _Undo | None = None

    # --- whole copies -----------------------------------------------------------------------

    @classmethod
    def from_columns(
        cls,
        rule_ids: tuple[str, ...],
        device_ids: tuple[str, ...],
        columns: dict[str, NDArray[Any]],
    ) -> _Store:
        """A store holding sorted columns as `columns()` gives them (rows with unique keys)."""
        n = len(columns["rule"])
        offsets = columns["window_offsets"]
        n_window = len(columns["window_ts_ns"])
        store = cls(rule_ids, device_ids, rows=n, arena=n_window)
        rows = store.rows[:n]
        for name in ROW_COLUMNS:
            rows[name] = columns[name]
        rows["w_lo"] = offsets[:-1]
        rows["w_hi"] = offsets[1:]
        store.w_ts[:n_window] = columns["window_ts_ns"]
        store.w_value[:n_window] = columns["window_value"]
        store.w_end = store.w_live = n_window
        store.n = n
        store._compact(0)  # each window in a region with room to grow
        return store

    def copy(self) -> _Store:
        """An independent copy."""
        out = _Store(self.rule_ids, self.device_ids, rows=self.n, arena=self.w_end)
        out.rows.view(_RAW)[: self.n] = self.rows.view(_RAW)[: self.n]
        out.slot = None if self.slot is None else self.slot.copy()
        out.w_ts[: self.w_end] = self.w_ts[: self.w_end]
        out.w_value[: self.w_end] = self.w_value[: self.w_end]
        out.n, out.w_end, out.w_live = self.n, self.w_end, self.w_live
        out.layout = self.layout
        return out

    def columns(self) -> dict[str, NDArray[Any]]:
        """The rows sorted by key, and their windows laid end to end (read-only copies)."""
        n = self.n
        rows = self.read(np.argsort(self.keys(np.arange(n)), kind="stable"))
        out = {name: np.ascontiguousarray(rows[name]) for name in ROW_COLUMNS}
        lo = rows["w_lo"]
        offsets, source = ragged_gather(lo, rows["w_hi"] - lo)
        out["window_offsets"] = offsets
        out["window_ts_ns"] = self.w_ts[source]
        out["window_value"] = self.w_value[source]
        for array in out.values():
            array.flags.writeable = False
        return out

    def index(self) -> NDArray[np.int64]:
        """The table from key to slot (built on first use)."""
        if self.slot is None:
            slot = np.full(len(self.rule_ids) * self.n_dev, -1, dtype=np.int64)
            slot[self.keys(np.arange(self.n))] = np.arange(self.n)
            self.slot = slot
        return self.slot

    def keys(self, slots: NDArray[np.intp]) -> NDArray[np.int64]:
        """The key of each slot: rule * n_devices + device."""
        out: NDArray[np.int64] = self.rows["rule"][slots].astype(np.int64) * self.n_dev
        out += self.rows["device"][slots]
        return out

    def lines(self) -> NDArray[np.void]:
        """The first cache line of every record, as one opaque item (a view)."""
        rows = self.rows
        out: NDArray[np.void] = np.ndarray(
            (len(rows),), dtype=_LINE, buffer=rows, strides=(RECORD.itemsize,)
        )
        return out

    def hot(self, slots: NDArray[np.intp]) -> NDArray[np.int64]:
        """A copy of the first cache line of the records of `slots`, as words (see `HOT`)."""
        out: NDArray[np.int64] = self.lines()[slots].view(np.int64).reshape(-1, HOT_WORDS)
        return out

    def put_hot(
        self, slots: NDArray[np.intp], new: NDArray[np.int64], old: NDArray[np.int64]
    ) -> None:
        """The first cache line of the records of `slots` set to `new`.

        `old` is what they hold now (`hot(slots)`), for undo.
        """
        if self.undo is not None:
            self.undo.rows.append((slots, "hot", old))
        self.lines()[slots] = np.ascontiguousarray(new).reshape(-1).view(_LINE)

    def read(self, slots: NDArray[np.intp]) -> NDArray[np.void]:
        """A copy of the records of `slots`."""
        out: NDArray[np.void] = self.rows.view(_RAW)[slots].view(RECORD)
        return out

    # --- changes, recorded in `undo` when there is one --------------------------------------

    def add_rows(self, keys: NDArray[np.int64]) -> NDArray[np.intp]:
        """New rows (in their default state, no window) for keys that have none: their slots."""
        n, k = self.n, len(keys)
        if n + k > len(self.rows):
            grown = np.zeros(max(2 * len(self.rows), n + k), dtype=RECORD)
            grown.view(_RAW)[:n] = self.rows.view(_RAW)[:n]
            self.rows = grown
        slots = np.arange(n, n + k, dtype=np.intp)
        self.rows.view(_RAW)[slots] = _DEFAULT.view(_RAW)
        self.rows["rule"][slots] = keys // self.n_dev
        self.rows["device"][slots] = keys % self.n_dev
        self.index()[keys] = slots
        if self.undo is not None:
            self.undo.keys_added.append(keys)
        self.n = n + k
        return slots

    def overwrite(
        self, slots: NDArray[np.intp], old: NDArray[Any], name: str | None = None
    ) -> None:
        """Record for undo that the rows `slots` hold `old` (in field `name`; None: whole).

        Called before they are written in place.
        """
        if self.undo is not None:
            self.undo.rows.append((slots, name, old))

    def set_field(self, slots: NDArray[np.intp], name: str, values: Any) -> None:
        """`rows[name][slots] = values`, recorded for undo."""
        column = self.rows[name]
        if self.undo is not None:
            self.undo.rows.append((slots, name, column[slots]))
        column[slots] = values

    def write(
        self, slots: NDArray[np.intp], records: NDArray[np.void], old: NDArray[np.void]
    ) -> None:
        """`rows[slots] = records`; `old` is what they hold now (`rows[slots]`, for undo)."""
        if self.undo is not None:
            self.undo.rows.append((slots, None, old))
        self.rows.view(_RAW)[slots] = records.view(_RAW)

    def write_fields(self, slots: NDArray[np.intp], values: dict[str, Any]) -> None:
        """Some fields of some rows set (an array, or one value each)."""
        old = self.read(slots)
        new = copy_records(old)
        for name, value in values.items():
            new[name] = value
        self.write(slots, new, old)

    def write_arena(self, pos: NDArray[np.intp], ts: NDArray[np.int64], value: Any) -> None:
        """Arena entries at `pos` set (nothing to undo).

        They lie past their rows' windows or in regions just allocated: no version of the
        state holds them.
        """
        self.w_ts[pos] = ts
        self.w_value[pos] = value

    def make_room(self, extra: int) -> bool:
        """Room for `extra` more entries at the arena's end; true when it compacted first.

        Compacts when the used part would exceed `_COMPACT_FACTOR` times the live entries
        (the regions rows left behind, or oversized ones), grows the arrays when full. Called
        before any entry of a batch is written (a replaced arena is recorded whole).
        """
        bound = _COMPACT_FACTOR * (self.w_live + extra) + _ARENA_SLACK_PER_ROW * self.n
        compacted = self.w_end + extra > bound + _MIN_ARENA
        if compacted:
            self._compact(extra)
        if self.w_end + extra + 1 > len(self.w_ts):
            size = max(len(self.w_ts) + (len(self.w_ts) >> 1), self.w_end + extra + 1)
            self._replace_arena(size, None)
        return compacted

    def allocate(self, size: int) -> int:
        """The base of `size` entries at the arena's end (after `make_room`)."""
        base = self.w_end
        self.w_end += size
        assert self.w_end < len(self.w_ts)
        return base

    def _compact(self, extra: int) -> None:
        """Every row's window to a region of its size (`region_size`), back to back."""
        n = self.n
        lo, hi = self.rows["w_lo"][:n], self.rows["w_hi"][:n]
        cap = region_size(hi - lo)
        base = np.cumsum(cap) - cap
        _, source = ragged_gather(lo, hi - lo)
        target = source + np.repeat(base - lo, hi - lo)
        used = int(cap.sum())
        room = used + extra + 1
        self._replace_arena(max(room + (room >> 2), _MIN_ARENA), (source, target))
        slots = np.arange(n, dtype=np.intp)
        self.write_fields(
            slots, {"w_hi": base + (hi - lo), "w_lo": base, "w_base": base, "w_cap": cap}
        )
        self.w_end = used

    def _replace_arena(
        self, size: int, moves: tuple[NDArray[np.intp], NDArray[np.int64]] | None
    ) -> None:
        """New arena arrays of `size`: the used part copied, or only entries `moves` says."""
        undo = self.undo
        if undo is not None and undo.arena_old is None:
            undo.arena_old = (self.w_ts, self.w_value)
        ts = np.zeros(size, dtype=np.int64)
        value = np.zeros(size, dtype=np.float64)
        if moves is None:
            ts[: self.w_end] = self.w_ts[: self.w_end]
            value[: self.w_end] = self.w_value[: self.w_end]
        else:
            source, target = moves
            ts[target] = self.w_ts[source]
            value[target] = self.w_value[source]
        self.w_ts, self.w_value = ts, value


class _Column(Generic[_T]):
    """A column of the state, read-only, rows sorted by (rule, device)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Column[_T]: ...
    @overload
    def __get__(self, obj: AlertState, owner: type) -> NDArray[_T]: ...
    def __get__(self, obj: AlertState | None, owner: type) -> _Column[_T] | NDArray[_T]:
        if obj is None:
            return self
        column: NDArray[_T] = obj.columns()[self.name]
        return column


class AlertState:
    """The evaluator's memory between batches (see the module docstring for each column).

    Built by `empty()`, `from_bytes()` and the evaluator; a value: nothing changes it.
    """

    __slots__ = ("_cache", "_lock", "_n", "_next", "_store", "_undo", "device_ids", "rule_ids")

    rule: _Column[np.int32] = _Column()
    device: _Column[np.int32] = _Column()
    last_ts_ns: _Column[np.int64] = _Column()
    last_value: _Column[np.float64] = _Column()
    active: _Column[np.bool_] = _Column()
    start_ns: _Column[np.int64] = _Column()
    start_value: _Column[np.float64] = _Column()
    peak: _Column[np.float64] = _Column()
    pending_since_ns: _Column[np.int64] = _Column()
    clear_since_ns: _Column[np.int64] = _Column()
    clear_value: _Column[np.float64] = _Column()
    closed_start_ns: _Column[np.int64] = _Column()
    closed_end_ns: _Column[np.int64] = _Column()
    window_offsets: _Column[np.int64] = _Column()
    window_ts_ns: _Column[np.int64] = _Column()
    window_value: _Column[np.float64] = _Column()

    def __init__(self, store: _Store, lock: threading.RLock | None = None) -> None:
        self.rule_ids = store.rule_ids
        self.device_ids = store.device_ids
        self._n = store.n
        self._store: _Store | None = store
        self._undo: _Undo | None = None
        self._next: AlertState | None = None
        self._lock = lock if lock is not None else threading.RLock()
        self._cache: dict[str, NDArray[Any]] | None = None

    @classmethod
    def empty(cls) -> AlertState:
        """The state before any reading: no keys, no alarms."""
        return cls(_Store((), ()))

    def __len__(self) -> int:
        return self._n

    def columns(self) -> dict[str, NDArray[Any]]:
        """Every array by name (row columns, then the window's), rows sorted; read-only."""
        if self._cache is None:
            with self._lock:
                self._cache = self._current().columns()
        return self._cache

    def active_alarms(self) -> list[ActiveAlarm]:
        """The alarms open now, by rule then device."""
        with self._lock:
            store = self._current()
            slots = np.flatnonzero(store.rows["active"][: store.n])
            rows = store.read(slots[np.argsort(store.keys(slots), kind="stable")])
            return [
                ActiveAlarm(
                    self.rule_ids[int(row["rule"])],
                    self.device_ids[int(row["device"])],
                    int(row["start_ns"]),
                    float(row["start_value"]),
                    float(row["peak"]),
                )
                for row in rows
            ]

    # --- versions (see the module docstring) ----------------------------------------------

    def _current(self) -> _Store:
        """The store of this version, rebuilt when it is a former version (hold `_lock`)."""
        if self._store is not None:
            return self._store
        chain: list[_Undo] = []
        node: AlertState = self
        while node._store is None:
            assert node._undo is not None and node._next is not None
            chain.append(node._undo)
            node = node._next
        store = node._store.copy()
        for undo in reversed(chain):
            undo.revert(store, copy=True)
        self._store, self._undo, self._next = store, None, None
        return store

    def _successor(self, store: _Store) -> AlertState:
        """The version after a batch changed `store` (hold `_lock`).

        When `store` is this version's own, this version becomes a former one, kept by the
        undo record of the batch (`store.undo`).
        """
        after = AlertState(store, self._lock)
        if store is self._store:
            assert store.undo is not None
            self._store, self._undo, self._next = None, store.undo, after
        store.undo = None
        return after

    # --- bytes ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The state as an `.npz` archive (see the module docstring)."""
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "rule_ids": list(self.rule_ids),
            "device_ids": list(self.device_ids),
        }
        if self._cache is not None:
            columns = self._cache
        else:
            with self._lock:
                columns = self._current().columns()
        buffer = io.BytesIO()
        meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        arrays: dict[str, Any] = {"meta": meta_bytes, **columns}
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AlertState:
        """The state `to_bytes` wrote; `AlertStateError` for anything else.

        Nothing is unpickled, and what is allocated is in proportion to the size of `data`:
        every member must be stored uncompressed, and its array header must match its length.
        """
        arrays = _read_archive(bytes(data))
        meta = _meta(arrays.pop("meta", None))
        _check_columns(arrays)
        rule_ids, device_ids = tuple(meta["rule_ids"]), tuple(meta["device_ids"])
        _check_consistent(arrays, rule_ids, device_ids)
        return cls(_Store.from_columns(rule_ids, device_ids, arrays))


#: What reading a damaged archive can raise, besides `AlertStateError`.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    struct.error,
    zlib.error,
)


def _read_archive(data: bytes) -> dict[str, NDArray[Any]]:
    """The arrays of an uncompressed `.npz` archive (see `AlertState.from_bytes`)."""
    arrays: dict[str, NDArray[Any]] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                name = info.filename
                if not name.endswith(".npy") or name[:-4] in arrays:
                    raise AlertStateError(f"alert state member {name!r} is not expected")
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                    raise AlertStateError(f"alert state member {name!r} is not stored plainly")
                with archive.open(info) as member:
                    raw = member.read(info.file_size + 1)
                arrays[name[:-4]] = _read_npy(name, raw)
    except AlertStateError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise AlertStateError(f"alert state is not a readable archive: {exc}") from exc
    return arrays


def _read_npy(name: str, raw: bytes) -> NDArray[Any]:
    """One `.npy` member: a 1-D array of a plain dtype whose header matches its length."""
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise AlertStateError(f"alert state member {name!r}: npy version {version}")
    if dtype.hasobject or dtype.fields is not None or len(shape) != 1:
        raise AlertStateError(f"alert state member {name!r} is not a 1-D array of numbers")
    offset = stream.tell()
    if int(shape[0]) * dtype.itemsize != len(raw) - offset:
        raise AlertStateError(f"alert state member {name!r} does not hold what its header says")
    out: NDArray[Any] = np.frombuffer(raw, dtype=dtype, count=int(shape[0]), offset=offset)
    return out.copy()


def _meta(raw: NDArray[Any] | None) -> dict[str, Any]:
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise AlertStateError("alert state has no meta entry")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlertStateError(f"alert state meta is not JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AlertStateError(f"not an alert state (format {FORMAT!r} expected)")
    if meta.get("version") != VERSION:
        raise AlertStateError(f"alert state version {meta.get('version')!r}, expected {VERSION}")
    for table in ("rule_ids", "device_ids"):
        ids = meta.get(table)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise AlertStateError(f"alert state meta.{table} must be a list of strings")
        if len(set(ids)) != len(ids):
            raise AlertStateError(f"alert state meta.{table} repeats an id")
    return meta


def _check_columns(arrays: dict[str, NDArray[Any]]) -> None:
    expected = {**ROW_COLUMNS, "window_offsets": np.dtype(np.int64), **WINDOW_COLUMNS}
    if set(arrays) != set(expected):
        raise AlertStateError(
            f"alert state columns {sorted(arrays)} differ from {sorted(expected)}"
        )
    for name, dtype in expected.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != 1:
            raise AlertStateError(f"alert state column {name} must be 1-D {dtype}")
    n = len(arrays["rule"])
    for name in ROW_COLUMNS:
        if len(arrays[name]) != n:
            raise AlertStateError(
                f"alert state column {name} has {len(arrays[name])} rows, not {n}"
            )
    if len(arrays["window_offsets"]) != n + 1:
        raise AlertStateError("alert state window_offsets must have one entry more than rows")


def _check_consistent(
    arrays: dict[str, NDArray[Any]], rule_ids: tuple[str, ...], device_ids: tuple[str, ...]
) -> None:
    offsets = arrays["window_offsets"]
    n_window = len(arrays["window_ts_ns"])
    if (
        offsets[0] != 0
        or offsets[-1] != n_window
        or len(arrays["window_value"]) != n_window
        or bool(np.any(np.diff(offsets) < 0))
    ):
        raise AlertStateError("alert state window offsets are inconsistent")
    for name, table in (("rule", rule_ids), ("device", device_ids)):
        column = arrays[name]
        if len(column) and (int(column.min()) < 0 or int(column.max()) >= len(table)):
            raise AlertStateError(f"alert state column {name} indexes outside its id table")
    key = arrays["rule"].astype(np.int64) * max(len(device_ids), 1) + arrays["device"]
    if bool(np.any(key[1:] <= key[:-1])):
        raise AlertStateError("alert state rows are not sorted by (rule, device) or repeat a key")

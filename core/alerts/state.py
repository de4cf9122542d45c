"""`AlertState`: what the evaluator remembers between batches, as columns, and its bytes.

One row per key (a rule and a device) that has seen a reading, sorted by (rule, device);
rules and devices are named by their ids (`rule_ids`, `device_ids` are the tables the integer
columns index), so a state outlives a reordered rules file or registry. The columns:

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
state read back evaluates exactly as the one written. The arrays of a state are read-only: a
state is a value, and the evaluator builds a new one per batch.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from core.alerts.kernels import NONE_NS
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


class AlertStateError(PilotsError):
    """Saved alert state that cannot be read back (truncated, another format, inconsistent)."""


class ActiveAlarm(NamedTuple):
    """An open alarm as the state holds it."""

    rule: str
    device: str
    start_ns: int
    start_value: float
    peak: float


@dataclass(frozen=True, eq=False)
class AlertState:
    """The evaluator's memory between batches (see the module docstring for each column)."""

    rule_ids: tuple[str, ...]
    device_ids: tuple[str, ...]
    rule: NDArray[np.int32]
    device: NDArray[np.int32]
    last_ts_ns: NDArray[np.int64]
    last_value: NDArray[np.float64]
    active: NDArray[np.bool_]
    start_ns: NDArray[np.int64]
    start_value: NDArray[np.float64]
    peak: NDArray[np.float64]
    pending_since_ns: NDArray[np.int64]
    clear_since_ns: NDArray[np.int64]
    clear_value: NDArray[np.float64]
    closed_start_ns: NDArray[np.int64]
    closed_end_ns: NDArray[np.int64]
    window_offsets: NDArray[np.int64]
    window_ts_ns: NDArray[np.int64]
    window_value: NDArray[np.float64]

    def __post_init__(self) -> None:
        for name in (*ROW_COLUMNS, "window_offsets", *WINDOW_COLUMNS):
            getattr(self, name).flags.writeable = False

    @classmethod
    def empty(cls) -> AlertState:
        """The state before any reading: no keys, no alarms."""
        arrays = {name: np.empty(0, dtype=dtype) for name, dtype in ROW_COLUMNS.items()}
        arrays |= {name: np.empty(0, dtype=dtype) for name, dtype in WINDOW_COLUMNS.items()}
        return cls((), (), window_offsets=np.zeros(1, dtype=np.int64), **arrays)

    def __len__(self) -> int:
        return int(self.rule.shape[0])

    def columns(self) -> dict[str, NDArray[Any]]:
        """Every array by name (row columns, then the window's)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("rule_ids", "device_ids")
        }

    def active_alarms(self) -> list[ActiveAlarm]:
        """The alarms open now, by rule then device."""
        return [
            ActiveAlarm(
                self.rule_ids[int(self.rule[i])],
                self.device_ids[int(self.device[i])],
                int(self.start_ns[i]),
                float(self.start_value[i]),
                float(self.peak[i]),
            )
            for i in np.flatnonzero(self.active)
        ]

    # --- bytes ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The state as an `.npz` archive (see the module docstring)."""
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "rule_ids": list(self.rule_ids),
            "device_ids": list(self.device_ids),
        }
        buffer = io.BytesIO()
        meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        arrays: dict[str, Any] = {"meta": meta_bytes, **self.columns()}
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AlertState:
        """The state `to_bytes` wrote; `AlertStateError` for anything else."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise AlertStateError(f"alert state is not a readable archive: {exc}") from exc
        meta = _meta(arrays.pop("meta", None))
        _check_columns(arrays)
        state = cls(
            tuple(meta["rule_ids"]),
            tuple(meta["device_ids"]),
            **{name: np.ascontiguousarray(array) for name, array in arrays.items()},
        )
        _check_consistent(state)
        return state


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


def _check_consistent(state: AlertState) -> None:
    offsets = state.window_offsets
    n_window = len(state.window_ts_ns)
    if (
        offsets[0] != 0
        or offsets[-1] != n_window
        or len(state.window_value) != n_window
        or bool(np.any(np.diff(offsets) < 0))
    ):
        raise AlertStateError("alert state window offsets are inconsistent")
    for name, table in (("rule", state.rule_ids), ("device", state.device_ids)):
        column = getattr(state, name)
        if len(column) and (int(column.min()) < 0 or int(column.max()) >= len(table)):
            raise AlertStateError(f"alert state column {name} indexes outside its id table")
    key = state.rule.astype(np.int64) * max(len(state.device_ids), 1) + state.device
    if bool(np.any(key[1:] <= key[:-1])):
        raise AlertStateError("alert state rows are not sorted by (rule, device) or repeat a key")

"""The columnar batch of sensor readings that flows from decoding to the store to the core.

One reading is one value of one sensor of one device at one instant. A `Readings` batch holds
four equal-length arrays: `ts_ns` (int64 nanoseconds since the epoch, UTC), `device` and `sensor`
(integer codes into the registry) and `value` (float64). Nothing on a hot path creates one
Python object per reading; operations here are whole-array numpy calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TS_DTYPE = np.dtype(np.int64)
DEVICE_DTYPE = np.dtype(np.int32)
SENSOR_DTYPE = np.dtype(np.int16)
VALUE_DTYPE = np.dtype(np.float64)


@dataclass(frozen=True, slots=True)
class Readings:
    """A batch of readings as four parallel arrays (see the module docstring)."""

    ts_ns: NDArray[np.int64]
    device: NDArray[np.int32]
    sensor: NDArray[np.int16]
    value: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = self.ts_ns.shape
        for name, array, dtype in (
            ("ts_ns", self.ts_ns, TS_DTYPE),
            ("device", self.device, DEVICE_DTYPE),
            ("sensor", self.sensor, SENSOR_DTYPE),
            ("value", self.value, VALUE_DTYPE),
        ):
            if array.ndim != 1 or array.shape != n:
                raise ValueError(f"Readings.{name} must be 1-D, as long as ts_ns (shape {n})")
            if array.dtype != dtype:
                raise TypeError(f"Readings.{name} must be {dtype}, got {array.dtype}")

    @classmethod
    def from_arrays(
        cls,
        ts_ns: Sequence[int] | NDArray[np.integer],
        device: Sequence[int] | NDArray[np.integer],
        sensor: Sequence[int] | NDArray[np.integer],
        value: Sequence[float] | NDArray[np.floating],
    ) -> Readings:
        """Build a batch converting each column to its dtype."""
        return cls(
            np.asarray(ts_ns, dtype=TS_DTYPE),
            np.asarray(device, dtype=DEVICE_DTYPE),
            np.asarray(sensor, dtype=SENSOR_DTYPE),
            np.asarray(value, dtype=VALUE_DTYPE),
        )

    @classmethod
    def empty(cls) -> Readings:
        """A batch with no readings."""
        return cls.from_arrays([], [], [], [])

    @classmethod
    def concat(cls, parts: Sequence[Readings]) -> Readings:
        """Join batches end to end."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.ts_ns for p in parts]),
            np.concatenate([p.device for p in parts]),
            np.concatenate([p.sensor for p in parts]),
            np.concatenate([p.value for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer] | slice) -> Readings:
        """The readings selected by a boolean mask, an index array or a slice, in that order."""
        return Readings(
            self.ts_ns[index], self.device[index], self.sensor[index], self.value[index]
        )

    def sort_order(self) -> NDArray[np.intp]:
        """Indices that sort by device, then sensor, then time (stable)."""
        d, s, t = self.device, self.sensor, self.ts_ns
        if len(d) > 1:
            # Often already so (a store scan): one comparison pass is cheaper than a sort.
            same_d = d[1:] == d[:-1]
            same_s = s[1:] == s[:-1]
            ordered = (d[1:] > d[:-1]) | (
                same_d & ((s[1:] > s[:-1]) | (same_s & (t[1:] >= t[:-1])))
            )
            if bool(ordered.all()):
                return np.arange(len(d), dtype=np.intp)
        return np.lexsort((t, s, d))

    def deduplicated(self) -> Readings:
        """Sorted by (device, sensor, time) with one reading per key, the last one given winning.

        This mirrors the store, where a second write of the same point overwrites the first.
        """
        if len(self) == 0:
            return self
        # Reverse first so that, after a stable sort, the last given of equal keys comes first.
        rev = self.take(np.arange(len(self) - 1, -1, -1))
        ordered = rev.take(rev.sort_order())
        keep = np.ones(len(ordered), dtype=np.bool_)
        keep[1:] = (
            (ordered.device[1:] != ordered.device[:-1])
            | (ordered.sensor[1:] != ordered.sensor[:-1])
            | (ordered.ts_ns[1:] != ordered.ts_ns[:-1])
        )
        return ordered.take(keep)

"""The columnar batch of uplinks: one row per message frame a device sent, with its radio data.

Sensor values travel as `Readings`; what belongs to the transmission itself (frame counter,
radio quality, the gateway that heard it, when it was received) travels here, one row per
frame. The reports compute packet delivery ratio, latency and link quality from these rows.
Like `Readings`, an uplink is keyed by (device, device time): storing it twice leaves one row.

Absent values: `fcnt` -1, `rssi`/`snr` NaN, `sf` 0, `gateway` the empty string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

NO_FCNT = -1
NO_SF = 0


@dataclass(frozen=True, slots=True)
class Uplinks:
    """Per-frame metadata as parallel arrays (see the module docstring)."""

    ts_ns: NDArray[np.int64]
    device: NDArray[np.int32]
    received_ns: NDArray[np.int64]
    fcnt: NDArray[np.int64]
    rssi: NDArray[np.float64]
    snr: NDArray[np.float64]
    sf: NDArray[np.int16]
    gateway: NDArray[np.str_]

    def __post_init__(self) -> None:
        n = self.ts_ns.shape
        for name in self.__slots__:
            array = getattr(self, name)
            if array.ndim != 1 or array.shape != n:
                raise ValueError(f"Uplinks.{name} must be 1-D, as long as ts_ns (shape {n})")
        for name, kind in (
            ("ts_ns", "i"),
            ("received_ns", "i"),
            ("fcnt", "i"),
            ("device", "i"),
            ("rssi", "f"),
            ("snr", "f"),
            ("sf", "i"),
            ("gateway", "U"),
        ):
            if getattr(self, name).dtype.kind != kind:
                raise TypeError(f"Uplinks.{name} has dtype {getattr(self, name).dtype}")

    @classmethod
    def from_columns(
        cls,
        *,
        ts_ns: Sequence[int] | NDArray[np.integer],
        device: Sequence[int] | NDArray[np.integer],
        received_ns: Sequence[int] | NDArray[np.integer],
        fcnt: Sequence[int] | NDArray[np.integer],
        rssi: Sequence[float] | NDArray[np.floating],
        snr: Sequence[float] | NDArray[np.floating],
        sf: Sequence[int] | NDArray[np.integer],
        gateway: Sequence[str] | NDArray[np.str_],
    ) -> Uplinks:
        """Build a batch converting each column to its dtype."""
        gateways = np.asarray(gateway, dtype=np.str_)
        if gateways.size == 0:
            gateways = gateways.astype("<U1")
        return cls(
            np.asarray(ts_ns, dtype=np.int64),
            np.asarray(device, dtype=np.int32),
            np.asarray(received_ns, dtype=np.int64),
            np.asarray(fcnt, dtype=np.int64),
            np.asarray(rssi, dtype=np.float64),
            np.asarray(snr, dtype=np.float64),
            np.asarray(sf, dtype=np.int16),
            gateways,
        )

    @classmethod
    def empty(cls) -> Uplinks:
        """A batch with no rows."""
        return cls.from_columns(
            ts_ns=[], device=[], received_ns=[], fcnt=[], rssi=[], snr=[], sf=[], gateway=[]
        )

    @classmethod
    def concat(cls, parts: Sequence[Uplinks]) -> Uplinks:
        """Join batches end to end."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.__slots__))

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer] | slice) -> Uplinks:
        """The rows selected by a mask, an index array or a slice."""
        return Uplinks(*(getattr(self, name)[index] for name in self.__slots__))

    @property
    def latency_ns(self) -> NDArray[np.int64]:
        """Received minus device time, per row."""
        return self.received_ns - self.ts_ns

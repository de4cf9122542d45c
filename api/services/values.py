"""Values every service shapes the same way: now, instants in the pilot's zone, JSON floats.

Also which devices of a pilot report a sensor and their output rows, and when a device counts
as silent. This module must not read the store or the cache.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from core.registry import Device, Pilot, Registry
from core.timeutil import ns_to_datetime

#: A device is silent when it has not reported for this many of its intervals.
SILENT_AFTER_INTERVALS = 3


def now_ns() -> int:
    """The current instant (one place, so that tests and services agree on what now is)."""
    return time.time_ns()


def local(pilot: Pilot, ts_ns: int | None) -> datetime | None:
    """An instant in the pilot's time zone, None for None."""
    return None if ts_ns is None else ns_to_datetime(int(ts_ns), pilot.tz)


def at(pilot: Pilot, ts_ns: int) -> datetime:
    """An instant in the pilot's time zone."""
    return ns_to_datetime(int(ts_ns), pilot.tz)


def number(value: float | np.floating | None) -> float | None:
    """A float for JSON: None for NaN, infinities and None."""
    if value is None:
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def numbers(values: NDArray[np.floating]) -> list[float | None]:
    """`number` of every element."""
    return [None if not math.isfinite(v) else v for v in values.tolist()]


def devices_with(pilot: Pilot, sensor: str) -> list[Device]:
    """The pilot's devices that report a sensor."""
    return [d for d in pilot.devices if sensor in d.sensors]


def device_rows(registry: Registry, devices: list[Device]) -> NDArray[np.int32]:
    """Row of each device code (-1 for devices not listed), to map store codes to output rows."""
    rows = np.full(len(registry.device_list), -1, dtype=np.int32)
    rows[[d.code for d in devices]] = np.arange(len(devices), dtype=np.int32)
    return rows

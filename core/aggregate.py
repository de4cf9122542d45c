"""The vectorised aggregation core: window statistics over `Readings`.

Everything here is whole-array numpy; there is no per-reading Python loop. Windows are
half-open `[start, start + every)`, aligned to `origin_ns + k * every_ns` (the API passes the
pilot's UTC offset so that `1d` windows start at local midnight). Every requested device gets
every window in the range, with count 0 and NaN statistics where it sent nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.readings import Readings


@dataclass(frozen=True, slots=True)
class Windows:
    """Per-device window statistics of one sensor: arrays of shape (devices, windows)."""

    start_ns: NDArray[np.int64]
    every_ns: int
    devices: NDArray[np.int32]
    count: NDArray[np.int64]
    mean: NDArray[np.float64]
    min: NDArray[np.float64]
    max: NDArray[np.float64]


def window_starts(
    start_ns: int, end_ns: int, every_ns: int, origin_ns: int = 0
) -> NDArray[np.int64]:
    """Starts of the aligned windows that intersect `[start_ns, end_ns)`."""
    if every_ns <= 0:
        raise ValueError("every_ns must be positive")
    if end_ns <= start_ns:
        return np.empty(0, dtype=np.int64)
    first = start_ns - (start_ns - origin_ns) % every_ns
    count = -(-(end_ns - first) // every_ns)
    return first + np.arange(count, dtype=np.int64) * every_ns


def tumbling(
    readings: Readings,
    *,
    sensor: int,
    devices: NDArray[np.int32],
    start_ns: int,
    end_ns: int,
    every_ns: int,
    origin_ns: int = 0,
) -> Windows:
    """Count, mean, min and max per device and window of one sensor.

    Only readings with `start_ns <= ts < end_ns` count, so the first and last windows may be
    partial when the range is not aligned. Duplicate readings (same device, sensor and time)
    count once, the last given winning, as in the store.
    """
    starts = window_starts(start_ns, end_ns, every_ns, origin_ns)
    n_dev, n_win = len(devices), len(starts)
    cells = n_dev * n_win
    selected = readings.take(
        (readings.sensor == sensor) & (readings.ts_ns >= start_ns) & (readings.ts_ns < end_ns)
    ).deduplicated()

    # Position of each reading's device in `devices`, -1 when it was not asked for.
    position = np.full(int(max(devices.max(initial=-1), selected.device.max(initial=-1))) + 1, -1)
    position[devices] = np.arange(n_dev)
    row = position[selected.device]
    keep = row >= 0
    if n_win:
        column = (selected.ts_ns[keep] - starts[0]) // every_ns
        cell = row[keep] * n_win + column
    else:
        cell = np.empty(0, dtype=np.int64)
    values = selected.value[keep]

    count = np.bincount(cell, minlength=cells).astype(np.int64)
    total = np.bincount(cell, weights=values, minlength=cells)
    low = np.full(cells, np.inf)
    high = np.full(cells, -np.inf)
    np.minimum.at(low, cell, values)
    np.maximum.at(high, cell, values)
    empty = count == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean[empty] = np.nan
    low[empty] = np.nan
    high[empty] = np.nan
    shape = (n_dev, n_win)
    return Windows(
        start_ns=starts,
        every_ns=every_ns,
        devices=devices,
        count=count.reshape(shape),
        mean=mean.reshape(shape),
        min=low.reshape(shape),
        max=high.reshape(shape),
    )

"""Window statistics of one sensor of a set of devices, from a `Readings` batch.

The bridge between the columnar batch and the statistics kernel (`core.stats`): it picks the
sensor's readings, optionally leaves out flagged ones, maps devices to output rows (one row per
device, or one pooled row for the whole set) and hands the arrays to the kernel. Whole-array
numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from core.readings import Readings
from core.stats import STATISTICS, Table, Workspace, aggregate


def window_stats(
    readings: Readings,
    *,
    sensor: int,
    devices: NDArray[np.int32],
    edges_ns: NDArray[np.int64],
    pooled: bool = False,
    exclude: NDArray[np.bool_] | None = None,
    quantiles: Sequence[float] = (),
    statistics: Iterable[str] = STATISTICS,
    unique: bool = False,
    workspace: Workspace | None = None,
) -> Table:
    """Statistics of `sensor` per window, one row per device in `devices` (or one, pooled).

    `exclude` is a per-reading mask (flags from `core.flags`) of readings to leave out;
    readings of other sensors or devices are ignored. `unique=True` promises no duplicate
    (device, time), as from a store scan.
    """
    devices = np.asarray(devices, dtype=np.int32)
    top = int(max(devices.max(initial=-1), readings.device.max(initial=-1))) + 1
    row_of = np.full(top, -1, dtype=np.int32)
    row_of[devices] = 0 if pooled else np.arange(len(devices), dtype=np.int32)
    chosen = readings.sensor == sensor
    if exclude is not None:
        chosen &= ~exclude
    rows = row_of[readings.device]
    chosen &= rows >= 0
    if chosen.all():
        ts, dev, value = readings.ts_ns, readings.device, readings.value
    else:
        ts, dev, value, rows = (
            readings.ts_ns[chosen],
            readings.device[chosen],
            readings.value[chosen],
            rows[chosen],
        )
    return aggregate(
        ts,
        dev,
        value,
        group=rows,
        n_groups=1 if pooled else len(devices),
        edges_ns=edges_ns,
        quantiles=quantiles,
        statistics=statistics,
        unique=unique,
        workspace=workspace,
    )

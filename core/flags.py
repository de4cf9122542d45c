"""Per-reading quality flags: out of range, stuck, spike and duplicate, as boolean arrays.

Each flag function takes a `Readings` batch in any order and returns one boolean per reading,
in the batch's own order, so that `readings.take(~mask)` (`exclude_flagged`) gives the batch
without the flagged readings and any statistic can be computed with or without them. A series
is one (device, sensor) pair; stuck and spike look only within a series, ordered by time
(readings at the same instant keep the order given).

This module marks readings; it must not drop, change or reorder them, must not loop over
readings in Python, and must not read the store.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from core.quality import distinct_order, interval_s_of_device
from core.readings import Readings
from core.registry import Registry
from core.timeutil import NS_PER_S

Bools = NDArray[np.bool_]
F64 = NDArray[np.float64]

#: Scale factor making the MAD a consistent estimator of a normal standard deviation.
MAD_TO_SIGMA = 1.4826
#: Rows of the (readings x window) matrix built at once by `spike`, to bound its memory.
SPIKE_CHUNK = 1 << 20
FLAG_NAMES = ("range", "stuck", "spike", "duplicate")
#: Sensors that legitimately hold one value for days (a dry rain gauge reports 0 mm, its tip
#: counter does not move), so stuck and spike checks would flag normal data.
STEADY_SENSORS = ("rain", "rain_tips")


def out_of_range(readings: Readings, registry: Registry) -> Bools:
    """Readings outside their sensor's registered `[min, max]`; NaN counts as outside."""
    value = readings.value
    low = registry.sensor_min[readings.sensor]
    high = registry.sensor_max[readings.sensor]
    return ~((value >= low) & (value <= high))


def duplicated(readings: Readings) -> Bools:
    """Readings that a later one of the same (device, sensor, time) replaces in the store.

    All but the last given of each key are flagged, so excluding them leaves what the store
    keeps; the count equals `core.quality.duplicates`.
    """
    mask = np.ones(len(readings), dtype=np.bool_)
    if len(readings):
        mask[distinct_order(readings.device, readings.sensor, readings.ts_ns)] = False
    return mask


def _series_starts(readings: Readings, order: NDArray[np.intp]) -> Bools:
    """Where a new (device, sensor) series begins, in `order`."""
    device, sensor = readings.device[order], readings.sensor[order]
    begins = np.ones(len(order), dtype=np.bool_)
    begins[1:] = (device[1:] != device[:-1]) | (sensor[1:] != sensor[:-1])
    return begins


def stuck(
    readings: Readings,
    *,
    interval_s_of_device: NDArray[np.floating[Any]] | NDArray[np.integer[Any]],
    min_intervals: int,
) -> Bools:
    """Readings in a run of identical consecutive values lasting at least `min_intervals`.

    A run is a maximal sequence of consecutive readings of one series with exactly the same
    value; it lasts from its first reading's time to its last one's, and is flagged whole when
    that is at least `min_intervals` times the device's interval (indexed by device code). So
    with a 10-minute interval and `min_intervals=6`, seven equal readings an hour apart end to
    end are stuck, six are not. NaN never repeats, so it is never stuck.
    """
    if min_intervals < 1:
        raise ValueError("min_intervals must be at least 1")
    n = len(readings)
    out = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return out
    order = readings.sort_order()
    ts, value = readings.ts_ns[order], readings.value[order]
    begins = _series_starts(readings, order)
    begins[1:] |= value[1:] != value[:-1]
    first = np.flatnonzero(begins)
    last = np.append(first[1:] - 1, n - 1)
    interval = np.asarray(interval_s_of_device, dtype=np.float64)
    limit_ns = min_intervals * interval[readings.device[order][first]] * NS_PER_S
    run_stuck = (ts[last] - ts[first]) >= limit_ns
    out[order] = run_stuck[np.cumsum(begins) - 1]
    return out


def _row_median(rows: F64, count: NDArray[np.intp]) -> F64:
    """Median of each row's first `count` values after sorting (NaN, sorted last, is absent)."""
    ordered = np.sort(rows, axis=1)
    low = np.maximum(count - 1, 0) // 2
    high = np.maximum(count // 2, low)
    a = np.take_along_axis(ordered, low[:, None], axis=1)[:, 0]
    b = np.take_along_axis(ordered, high[:, None], axis=1)[:, 0]
    return np.where(count > 0, (a + b) / 2, np.nan)


def _hampel(
    value: F64,
    position: NDArray[np.intp],
    bounds: tuple[NDArray[np.intp], NDArray[np.intp]],
    half: int,
    scale_floor: float,
) -> tuple[F64, F64]:
    """|x - median| and 1.4826 MAD over each position's window, clipped to its series."""
    low, high = bounds
    neighbours = position[:, None] + np.arange(-half, half + 1)[None, :]
    valid = (neighbours >= low[:, None]) & (neighbours <= high[:, None])
    window = np.where(valid, value[np.clip(neighbours, 0, len(value) - 1)], np.nan)
    count = np.count_nonzero(~np.isnan(window), axis=1)
    median = _row_median(window, count)
    mad = _row_median(np.abs(window - median[:, None]), count)
    return np.abs(value[position] - median), MAD_TO_SIGMA * np.maximum(mad, scale_floor)


def _hampel_full(
    value: F64, centres: tuple[int, int], half: int, scale_floor: float
) -> tuple[F64, F64]:
    """`_hampel` for the centres `[lo, hi)` whose whole window lies in their series, NaN-free.

    The common case by far: sorting each (contiguous) window row is several times faster than
    gathering the general case's clipped windows, and gives the same numbers.
    """
    lo, hi = centres
    width = 2 * half + 1
    windows = sliding_window_view(value[lo - half : hi + half], width)
    median = np.sort(windows, axis=1)[:, half]
    mad = np.sort(np.abs(windows - median[:, None]), axis=1)[:, half]
    return np.abs(value[lo:hi] - median), MAD_TO_SIGMA * np.maximum(mad, scale_floor)


def spike(
    readings: Readings,
    *,
    window: int = 7,
    threshold: float = 5.0,
    mad_floor: float = 0.0,
) -> Bools:
    """Readings whose robust z-score in a centred rolling window exceeds `threshold` (Hampel).

    z = |x - median| / (1.4826 MAD), median and MAD (median absolute deviation from that
    median) over the `window` readings centred on x in its own series (odd, x included),
    counted in readings not time; near a series' ends the window is cut short, never filled
    from another series. Where MAD is 0 (most of the window identical) z is infinite for any
    x off the median and undefined for x on it: such an x is flagged exactly when it differs
    from the median. That flags a lone step in a flat series (which is what a spike looks
    like); where a series legitimately rests on one value, pass `mad_floor` (e.g. the
    sensor's resolution) as the smallest MAD used. NaN readings are neither used nor flagged.
    """
    if window < 3 or window % 2 == 0:
        raise ValueError("window must be an odd number of readings, at least 3")
    n = len(readings)
    out = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return out
    order = readings.sort_order()
    value = readings.value[order]
    begins = _series_starts(readings, order)
    series = np.cumsum(begins) - 1
    first = np.flatnonzero(begins)
    last = np.append(first[1:] - 1, n - 1)
    low, high = first[series], last[series]
    flagged = np.zeros(n, dtype=np.bool_)
    half = window // 2
    index = np.arange(n)
    # Positions whose whole window lies in their own series and holds no NaN take the fast path.
    full = (index - half >= low) & (index + half <= high)
    missing = np.isnan(value)
    if missing.any():
        full &= np.convolve(missing, np.ones(window), mode="same") == 0
    # Chunks bound the (readings x window) matrices; their number is n / SPIKE_CHUNK.
    for start in range(0, n, SPIKE_CHUNK):
        stop = min(start + SPIKE_CHUNK, n)
        at = index[start:stop][~full[start:stop]]
        with np.errstate(divide="ignore", invalid="ignore"):
            if len(at):
                deviation, scale = _hampel(value, at, (low[at], high[at]), half, mad_floor)
                flagged[at] = deviation / scale > threshold  # 0/0 is NaN: not flagged
            lo, hi = max(start, half), min(stop, n - half)
            if hi > lo and full[lo:hi].any():
                deviation, scale = _hampel_full(value, (lo, hi), half, mad_floor)
                inner = full[lo:hi]
                flagged[lo:hi][inner] = (deviation / scale > threshold)[inner]
    out[order] = flagged
    return out


@dataclass(frozen=True, slots=True)
class Flags:
    """One mask (any flag) and the mask of each flag, all in the batch's order."""

    mask: Bools
    by_flag: Mapping[str, Bools]

    @property
    def counts(self) -> dict[str, int]:
        """Flagged readings per flag, and under `any` those with at least one flag."""
        counts = {name: int(np.count_nonzero(m)) for name, m in self.by_flag.items()}
        counts["any"] = int(np.count_nonzero(self.mask))
        return counts

    def take(self, keep: Bools) -> Flags:
        """The flags of the readings `keep` marks (as `Readings.take` with the same mask)."""
        return Flags(self.mask[keep], {name: m[keep] for name, m in self.by_flag.items()})

    @property
    def share(self) -> dict[str, float]:
        """Share of the readings flagged, per flag and `any` (NaN for an empty batch)."""
        n = len(self.mask)
        return {name: count / n if n else float("nan") for name, count in self.counts.items()}


def combined(
    readings: Readings,
    registry: Registry,
    *,
    stuck_min_intervals: int = 12,
    spike_window: int = 7,
    spike_threshold: float = 5.0,
    spike_mad_floor: float = 0.0,
    steady_sensors: Collection[str] = STEADY_SENSORS,
) -> Flags:
    """All flags of a batch whose device and sensor codes come from `registry`.

    Stuck and spike are not checked on `steady_sensors` (ids missing from the registry are
    ignored); range and duplicate are checked on every reading.
    """
    steady = [registry.sensors[s].code for s in steady_sensors if s in registry.sensors]
    checked = np.flatnonzero(~np.isin(readings.sensor, steady))
    subset = readings.take(checked)
    stuck_mask = np.zeros(len(readings), dtype=np.bool_)
    spike_mask = np.zeros(len(readings), dtype=np.bool_)
    stuck_mask[checked] = stuck(
        subset,
        interval_s_of_device=interval_s_of_device(registry),
        min_intervals=stuck_min_intervals,
    )
    spike_mask[checked] = spike(
        subset, window=spike_window, threshold=spike_threshold, mad_floor=spike_mad_floor
    )
    by_flag = {
        "range": out_of_range(readings, registry),
        "stuck": stuck_mask,
        "spike": spike_mask,
        "duplicate": duplicated(readings),
    }
    mask = np.logical_or.reduce(list(by_flag.values()))
    return Flags(mask, by_flag)


def exclude_flagged(readings: Readings, mask: Bools) -> Readings:
    """The batch without the readings `mask` marks, in the same order."""
    return readings.take(~mask)

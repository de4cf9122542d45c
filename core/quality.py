"""Data quality of the pilots' streams, as whole-array numpy.

Completeness, gaps, silent devices, packet delivery, latency and duplicate readings (docs/DOMAIN.md,
"What researchers report on").

Inputs are parallel arrays: the instants of the reports (uplink times, or one sensor's reading
times), the output row of each report's device (`device_row`, in `[0, n_devices)`, usually the
registry device code) and whatever else a measure needs. Registered reporting intervals come in
as one number or one value per device row (`interval_s_of_device` builds that array from the
registry). Outputs are arrays per device row, or per (device row, window).

This module must not loop over readings in Python, read the store, or know about HTTP: callers
choose the devices, the range and the windows (`core.windows`). It must not reimplement the
statistics kernel: latency statistics come from `core.stats.aggregate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from core.readings import Readings
from core.registry import Registry
from core.stats import aggregate
from core.timeutil import NS_PER_S
from core.windows import window_index

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Rows = NDArray[np.integer[Any]]
Bools = NDArray[np.bool_]
#: A registered interval: one for every device, or one per device row.
PerDevice = float | NDArray[np.floating[Any]] | NDArray[np.integer[Any]]

#: `last_seen_ns` of a device that never reported.
NEVER_NS = int(np.iinfo(np.int64).min)


def interval_s_of_device(registry: Registry) -> F64:
    """Registered reporting interval of each device code, in seconds."""
    return np.asarray([d.interval_s for d in registry.device_list], dtype=np.float64)


def distinct_order(*keys: NDArray[Any]) -> NDArray[np.intp]:
    """Indices that sort by `keys` (the first the most significant), one per distinct key.

    Of equal keys the last one given is kept, as the store keeps the last write of a point.
    """
    n = len(keys[0])
    order = np.lexsort(keys[::-1])  # stable: equal keys stay in the order given
    if n < 2:
        return order
    same = np.ones(n - 1, dtype=np.bool_)
    for key in keys:
        ordered = key[order]
        same &= ordered[1:] == ordered[:-1]
    keep = np.ones(n, dtype=np.bool_)
    keep[:-1] = ~same
    return order[keep]


def _per_device(interval_s: PerDevice, n_devices: int) -> F64:
    interval = np.broadcast_to(np.asarray(interval_s, dtype=np.float64), (n_devices,))
    if n_devices and not bool(np.all(interval > 0)):
        raise ValueError("interval_s must be positive for every device")
    return interval


# --- completeness ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completeness:
    """Reports received against reports expected, arrays of shape (devices, windows).

    `expected` is the length of the window that lies inside the requested range divided by the
    registered interval, so a partial first or last window expects proportionally fewer.
    `ratio` is `received / expected`, NaN where nothing is expected, and deliberately not
    capped at 1: a device reporting faster than registered shows a ratio above 1.
    """

    edges_ns: I64
    received: I64
    expected: F64
    ratio: F64


def completeness(
    ts_ns: I64,
    device_row: Rows,
    *,
    n_devices: int,
    interval_s: PerDevice,
    edges_ns: I64,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Completeness:
    """Distinct report instants per device and window against the registered interval.

    Pass uplink times, or the reading times of one sensor. Several reports of the same device
    at the same instant count once. Only reports in `[start_ns, end_ns)` (default: the whole
    span of the edges) count, and only that part of each window is expected.
    """
    edges = np.asarray(edges_ns, dtype=np.int64)
    n_windows = max(len(edges) - 1, 0)
    interval = _per_device(interval_s, n_devices)
    if n_windows == 0:
        nothing = np.zeros((n_devices, 0))
        return Completeness(edges, nothing.astype(np.int64), nothing, nothing.copy())
    low = int(edges[0]) if start_ns is None else max(start_ns, int(edges[0]))
    high = int(edges[-1]) if end_ns is None else min(end_ns, int(edges[-1]))

    inside = (ts_ns >= low) & (ts_ns < high)
    ts, rows = ts_ns[inside], device_row[inside]
    keep = distinct_order(rows, ts)
    ts, rows = ts[keep], rows[keep]
    cell = rows.astype(np.int64) * n_windows + window_index(ts, edges)
    received = np.bincount(cell, minlength=n_devices * n_windows).astype(np.int64)

    covered_ns = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0, None)
    expected = (covered_ns / NS_PER_S)[None, :] / interval[:, None]
    received = received.reshape(n_devices, n_windows)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected > 0, received / expected, np.nan)
    return Completeness(edges, received, expected, ratio)


# --- gaps and silence -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gaps:
    """Silences, one row each, ordered by device row then start.

    A gap runs from one report (or the range start) to the next report (or the range end).
    """

    n_devices: int
    device_row: NDArray[np.int32]
    start_ns: I64
    end_ns: I64
    length_s: F64

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @property
    def longest_s(self) -> F64:
        """Longest gap of each device row, 0 where it had none."""
        out = np.zeros(self.n_devices)
        np.maximum.at(out, self.device_row, self.length_s)
        return out

    @property
    def total_s(self) -> F64:
        """Time spent in gaps by each device row."""
        total = np.bincount(self.device_row, weights=self.length_s, minlength=self.n_devices)
        return total.astype(np.float64)


def gaps(
    ts_ns: I64,
    device_row: Rows,
    *,
    n_devices: int,
    interval_s: PerDevice,
    k: float,
    start_ns: int,
    end_ns: int,
) -> Gaps:
    """Every silence longer than `k` times the device's interval within `[start_ns, end_ns)`.

    The range start and end act as reports, so a silence before the first or after the last
    report counts, and a device without reports has one gap over the whole range. The rule is
    the same for every gap: one not longer than `k` intervals (a whole range that short) is
    not a gap. Input need not be sorted; repeated instants are harmless.
    """
    interval = _per_device(interval_s, n_devices)
    if end_ns <= start_ns:
        empty = np.empty(0, dtype=np.int64)
        return Gaps(n_devices, empty.astype(np.int32), empty, empty.copy(), np.empty(0))
    inside = (ts_ns >= start_ns) & (ts_ns < end_ns)
    every = np.arange(n_devices, dtype=np.int64)
    ts = np.concatenate(
        (
            ts_ns[inside],
            np.full(n_devices, start_ns, np.int64),
            np.full(n_devices, end_ns, np.int64),
        )
    )
    rows = np.concatenate((device_row[inside].astype(np.int64), every, every))
    order = np.lexsort((ts, rows))
    ts, rows = ts[order], rows[order]
    length_ns = ts[1:] - ts[:-1]
    limit_ns = k * interval[rows[1:]] * NS_PER_S
    at = np.flatnonzero((rows[1:] == rows[:-1]) & (length_ns > limit_ns))
    return Gaps(
        n_devices,
        rows[at].astype(np.int32),
        ts[at],
        ts[at + 1],
        length_ns[at] / NS_PER_S,
    )


def last_seen(ts_ns: I64, device_row: Rows, *, n_devices: int) -> I64:
    """Latest report instant of each device row, `NEVER_NS` where it has none."""
    out = np.full(n_devices, NEVER_NS, dtype=np.int64)
    np.maximum.at(out, device_row, ts_ns)
    return out


def silent(last_seen_ns: I64, *, now_ns: int, interval_s: PerDevice, k: float) -> Bools:
    """Devices whose last report is older than `k` intervals at `now_ns`, or who never reported.

    `last_seen_ns` holds one instant per device row, `NEVER_NS` for "never" (see `last_seen`).
    A report from the future (clock skew) is not silence.
    """
    last = np.asarray(last_seen_ns, dtype=np.int64)
    interval = _per_device(interval_s, len(last))
    never = last == NEVER_NS
    age_ns = now_ns - np.where(never, now_ns, last)
    silent_now: Bools = never | (age_ns > k * interval * NS_PER_S)
    return silent_now


# --- packet delivery ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """Packet delivery per device row, summed over its counter sessions.

    `ratio` is NaN for a device without frame counters.
    """

    received: I64
    expected: I64
    ratio: F64
    sessions: I64


def packet_delivery(ts_ns: I64, device_row: Rows, fcnt: I64, *, n_devices: int) -> Delivery:
    """Distinct frame counters over the counter span, per counter session, summed per device.

    Frames are taken in device-time order (equal times by counter). A session is a run whose
    counter never decreases; a lower counter than the previous frame's (a reboot, or a 16-bit
    counter wrapping) starts a new one. Per session, expected is `max - min + 1` and received
    the number of distinct counters, so retransmissions count once. `fcnt == -1` (no counter)
    is ignored.
    """
    has = fcnt >= 0
    ts, rows, counter = ts_ns[has], device_row[has].astype(np.int64), fcnt[has].astype(np.int64)
    order = np.lexsort((counter, ts, rows))
    rows, counter = rows[order], counter[order]
    n = len(rows)
    zeros = np.zeros(n_devices, dtype=np.int64)
    if n == 0:
        return Delivery(zeros, zeros.copy(), np.full(n_devices, np.nan), zeros.copy())
    new_device = np.ones(n, dtype=np.bool_)
    new_device[1:] = rows[1:] != rows[:-1]
    begins = new_device.copy()
    begins[1:] |= counter[1:] < counter[:-1]
    distinct = begins.copy()
    distinct[1:] |= counter[1:] != counter[:-1]
    first = np.flatnonzero(begins)
    last = np.append(first[1:] - 1, n - 1)
    session_rows = rows[first]
    span = counter[last] - counter[first] + 1
    received = np.bincount(rows[distinct], minlength=n_devices).astype(np.int64)
    expected = np.bincount(session_rows, weights=span, minlength=n_devices).astype(np.int64)
    sessions = np.bincount(session_rows, minlength=n_devices).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected > 0, received / expected, np.nan)
    return Delivery(received, expected, ratio, sessions)


# --- latency and duplicates -----------------------------------------------------------------


class Latency(NamedTuple):
    """Received time minus device time per device row, in seconds (NaN without frames)."""

    mean_s: F64
    quantiles_s: dict[float, F64]


def latency(
    received_ns: I64,
    ts_ns: I64,
    device_row: Rows,
    *,
    n_devices: int,
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99),
) -> Latency:
    """Mean and exact quantiles (numpy's linear method) of the latency of each device row.

    Repeated (device, device time) rows count once, the last given winning, as in the store.
    A clock running ahead gives negative latencies; they are kept, not clipped.
    """
    if len(ts_ns) == 0:
        nan = np.full(n_devices, np.nan)
        return Latency(nan, {float(q): nan.copy() for q in quantiles})
    edges = np.asarray([ts_ns.min(), ts_ns.max() + 1], dtype=np.int64)
    delay_s = (received_ns - ts_ns) / NS_PER_S
    table = aggregate(
        ts_ns,
        device_row,
        delay_s,
        group=device_row,
        n_groups=n_devices,
        edges_ns=edges,
        quantiles=quantiles,
    )
    return Latency(table.mean[:, 0], {q: a[:, 0] for q, a in table.quantiles.items()})


def duplicates(readings: Readings) -> int:
    """How many readings repeat an earlier (device, sensor, time)."""
    if len(readings) == 0:
        return 0
    distinct = distinct_order(readings.device, readings.sensor, readings.ts_ns)
    return len(readings) - len(distinct)

"""What a request will cost, estimated from the registry before anything is read or allocated.

The unit is a reading read: a raw reading from the store or the hot cache, an uplink (a report
reads the period's transmissions too), or a rollup row, which weighs `ROLLUP_ROW_READINGS`
readings (its quantile sketch is decoded into Python objects). The number of readings of one
(device, sensor) in a range is the range divided by the device's registered interval, plus
one; the rollup rows of it are the range divided by the rollup resolution, plus one. These are
the registry's promises, so the check costs no I/O; a device that reports faster than its
registered interval is read in proportion (see docs/API.md, "Limits").

A request over `PILOTS_API_MAX_SCAN_READINGS` is refused with `QueryError`, which the routes
answer as 400. This module must not read the store or the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from api.services.errors import QueryError
from core.registry import Device
from core.timeutil import NS_PER_S

#: Memory one reading read costs at the peak of a request (parsing the store's answer, sorting,
#: flags, windows), measured at 170-300 bytes on this project's reports and scans (bench/abuse).
BYTES_PER_READING = 250
#: One hourly or daily rollup row, parsed with its sketch, costs about 2 kB: eight readings.
ROLLUP_ROW_READINGS = 8


def readings(devices: Iterable[Device], sensors: Sequence[str] | None, span_ns: int) -> int:
    """Readings the devices send of those sensors (None: all theirs) in `span_ns`."""
    total = 0
    for device in devices:
        mine = len(device.sensors if sensors is None else set(device.sensors) & set(sensors))
        if mine:
            total += mine * (max(span_ns, 0) // (device.interval_s * NS_PER_S) + 1)
    return total


def uplinks(devices: Iterable[Device], span_ns: int) -> int:
    """Transmissions the devices send in `span_ns`."""
    return sum(max(span_ns, 0) // (d.interval_s * NS_PER_S) + 1 for d in devices)


def rollup_rows(
    devices: Iterable[Device], sensors: Sequence[str], span_ns: int, resolution_ns: int
) -> int:
    """Rollup rows of those devices and sensors in `span_ns`, in readings (weighted)."""
    pairs = sum(len(set(d.sensors) & set(sensors)) for d in devices)
    return pairs * (max(span_ns, 0) // resolution_ns + 1) * ROLLUP_ROW_READINGS


def check(estimate: int, limit: int, what: str) -> None:
    """Refuse a request whose estimated readings exceed `limit`, naming the setting."""
    if estimate > limit:
        raise QueryError(
            f"{what} would read about {estimate} readings, over the limit of {limit} per "
            "request (PILOTS_API_MAX_SCAN_READINGS); ask for a shorter range, fewer sensors "
            "or fewer devices"
        )

"""Queries and aggregation calls behind the routes; no HTTP here beyond the inputs' types.

Routes validate names (pilot, sensor) against the registry before calling; services read the
store, run the numpy core and shape typed responses with times in the pilot's local offset.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from api.schemas import (
    DeviceOut,
    DeviceSeriesOut,
    PilotOut,
    SensorOut,
    SeriesOut,
    ThresholdOut,
    WindowOut,
)
from core.aggregate import window_stats
from core.readings import Readings
from core.registry import Pilot, Registry
from core.store import Store
from core.timeutil import NS_PER_S, format_duration, ns_to_datetime, utc_offset_ns
from core.windows import Fixed, count_windows, fixed_edges


class QueryTooLargeError(ValueError):
    """The answer would hold more points than `PILOTS_API_MAX_POINTS` allows."""


def _sensor_out(registry: Registry, sensor_id: str) -> SensorOut:
    s = registry.sensors[sensor_id]
    return SensorOut(
        id=s.id, name=s.name, unit=s.unit, min=s.min, max=s.max, guideline_24h=s.guideline_24h
    )


def _local(pilot: Pilot, ts_ns: int | None) -> datetime | None:
    return None if ts_ns is None else ns_to_datetime(ts_ns, pilot.tz)


def _last_seen_by_device(latest: Readings) -> dict[int, int]:
    if len(latest) == 0:
        return {}
    order = np.lexsort((latest.ts_ns, latest.device))
    device = latest.device[order]
    last = np.ones(len(device), dtype=np.bool_)
    last[:-1] = device[1:] != device[:-1]
    return dict(zip(device[last].tolist(), latest.ts_ns[order][last].tolist(), strict=True))


def pilot_summary(registry: Registry, store: Store, pilot: Pilot) -> PilotOut:
    """A pilot with its sensors, thresholds and the newest reading time."""
    latest = store.latest(pilot.id)
    last = int(latest.ts_ns.max()) if len(latest) else None
    return PilotOut(
        id=pilot.id,
        name=pilot.name,
        timezone=pilot.timezone,
        theme=pilot.theme,
        devices=len(pilot.devices),
        sensors=[_sensor_out(registry, s) for s in pilot.sensors],
        thresholds=[
            ThresholdOut(sensor=t.sensor, name=t.name, value=t.value) for t in pilot.thresholds
        ],
        last_seen=_local(pilot, last),
    )


def device_list(registry: Registry, store: Store, pilot: Pilot) -> list[DeviceOut]:
    """The pilot's devices with last report time and battery voltage."""
    latest = store.latest(pilot.id)
    seen = _last_seen_by_device(latest)
    battery_code = registry.sensors["battery_v"].code
    is_battery = latest.sensor == battery_code
    battery = dict(
        zip(latest.device[is_battery].tolist(), latest.value[is_battery].tolist(), strict=True)
    )
    return [
        DeviceOut(
            id=d.id,
            kind=d.kind,
            site=d.site,
            lat=d.lat,
            lon=d.lon,
            interval_s=d.interval_s,
            sensors=list(d.sensors),
            last_seen=_local(pilot, seen.get(d.code)),
            battery_v=battery.get(d.code),
        )
        for d in pilot.devices
    ]


def _finite_or_none(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def series(
    registry: Registry,
    store: Store,
    pilot: Pilot,
    sensor_id: str,
    *,
    start_ns: int,
    end_ns: int,
    every_s: int,
    max_points: int,
) -> SeriesOut:
    """Count, mean, min and max per device and window, windows aligned to local time."""
    every_ns = every_s * NS_PER_S
    # Aligning to the local offset makes `1d` windows run from local midnight to midnight.
    origin_ns = -utc_offset_ns(pilot.tz, start_ns)
    devices = [d for d in pilot.devices if sensor_id in d.sensors]
    n_windows = count_windows(Fixed(every_ns, origin_ns), start_ns, end_ns)
    if n_windows * max(len(devices), 1) > max_points:
        raise QueryTooLargeError(
            f"{n_windows} windows x {len(devices)} devices exceeds the limit of {max_points} "
            "points per response (PILOTS_API_MAX_POINTS); use a larger `every` or a shorter range"
        )
    readings = store.scan(pilot.id, [sensor_id], start_ns, end_ns)
    edges = fixed_edges(start_ns, end_ns, every_ns, origin_ns)
    windows = window_stats(
        readings,
        sensor=registry.sensors[sensor_id].code,
        devices=registry.device_codes([d.id for d in devices]),
        edges_ns=edges,
        statistics=("count", "mean", "min", "max"),
        unique=True,
    )
    starts = [ns_to_datetime(t, pilot.tz) for t in windows.starts_ns.tolist()]
    out: list[DeviceSeriesOut] = []
    for row, device in enumerate(devices):
        columns = zip(
            starts,
            windows.count[row].tolist(),
            _finite_or_none(windows.mean[row].tolist()),
            _finite_or_none(windows.min[row].tolist()),
            _finite_or_none(windows.max[row].tolist()),
            strict=True,
        )
        out.append(
            DeviceSeriesOut(
                device=device.id,
                windows=[
                    WindowOut(start=s, count=c, mean=m, min=lo, max=hi)
                    for s, c, m, lo, hi in columns
                ],
            )
        )
    return SeriesOut(
        pilot=pilot.id,
        sensor=sensor_id,
        unit=registry.sensors[sensor_id].unit,
        timezone=pilot.timezone,
        start=ns_to_datetime(start_ns, pilot.tz),
        end=ns_to_datetime(end_ns, pilot.tz),
        every=format_duration(every_s),
        every_s=every_s,
        devices=out,
    )

"""Pilots and devices: who is there, who is online, how complete today is, how the radio is.

Everything comes from one read of the store per request: the newest reading of every device and
sensor (`Store.latest`, one row per pair: bounded by the registry, not by the data) and the
uplinks since local midnight (counted before they are read). This module must not scan readings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from api.schemas import DeviceOut, LatestOut, LinkOut, PilotOut, SensorOut, ThresholdOut
from api.services.values import SILENT_AFTER_INTERVALS, at, device_rows, local, now_ns, number
from core import quality
from core.registry import Pilot, Registry
from core.store import Store
from core.timeutil import DAY_NS, datetime_to_ns, ns_to_datetime
from core.uplinks import Uplinks

log = logging.getLogger(__name__)


def _sensor_out(registry: Registry, sensor_id: str) -> SensorOut:
    s = registry.sensors[sensor_id]
    return SensorOut(
        id=s.id, name=s.name, unit=s.unit, min=s.min, max=s.max, guideline_24h=s.guideline_24h
    )


class PilotState:
    """What the pilot and device listings need, read from the store once per request."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        pilot: Pilot,
        now: int,
        max_uplinks: int,
        *,
        since_ns: int | None = None,
    ) -> None:
        self.pilot = pilot
        self.store = store
        self.now = now
        moment = ns_to_datetime(now, pilot.tz)
        self.midnight = datetime_to_ns(moment.replace(hour=0, minute=0, second=0, microsecond=0))
        self.devices = list(pilot.devices)
        self.rows = device_rows(registry, self.devices)
        self.interval = np.asarray([d.interval_s for d in self.devices], dtype=np.float64)
        latest = store.latest(pilot.id)
        shown = self.rows[latest.device] >= 0
        if since_ns is not None:  # a reader who may see nothing older (a published period)
            shown &= latest.ts_ns >= since_ns
        self.latest = latest.take(shown)
        since = min(self.midnight, now - DAY_NS)
        # Counted before they are read: a network server sending uplinks far faster than the
        # registry says must not make every listing read them all. Past the bound, today's
        # completeness and the radio medians are not given (null), the counts still are.
        found = store.count_uplinks(pilot.id, since, now + 1)
        self.too_many = found > max_uplinks
        if self.too_many:
            log.warning(
                "%s: %d uplinks since %s, over %d (PILOTS_API_MAX_SCAN_READINGS): completeness "
                "and radio quality not computed",
                pilot.id,
                found,
                ns_to_datetime(since, pilot.tz).isoformat(),
                max_uplinks,
            )
            uplinks = Uplinks.empty()
        else:
            uplinks = store.scan_uplinks(pilot.id, since, now + 1)
        kept = self.rows[uplinks.device] >= 0
        if since_ns is not None:
            kept &= uplinks.ts_ns >= since_ns
        self.uplinks = uplinks.take(kept)
        self.registry = registry
        self.since_ns = since_ns
        self.battery_code = registry.sensors["battery_v"].code

    def last_seen(self) -> np.ndarray:
        """Newest reading time per device row (quality.NEVER_NS when none)."""
        return quality.last_seen(
            self.latest.ts_ns, self.rows[self.latest.device], n_devices=len(self.devices)
        )

    def silent(self) -> np.ndarray:
        """Devices that did not report within a few intervals."""
        return quality.silent(
            self.last_seen(), now_ns=self.now, interval_s=self.interval, k=SILENT_AFTER_INTERVALS
        )

    def today(self) -> quality.Completeness:
        """Completeness since local midnight, one window per device."""
        up = self.uplinks
        return quality.completeness(
            up.ts_ns,
            self.rows[up.device],
            n_devices=len(self.devices),
            interval_s=self.interval,
            edges_ns=np.asarray([self.midnight, max(self.now, self.midnight + 1)], np.int64),
        )

    def battery(self) -> dict[int, float]:
        """Battery voltage in each device's newest report."""
        latest = self.latest
        is_battery = latest.sensor == self.battery_code
        return dict(
            zip(
                self.rows[latest.device[is_battery]].tolist(),
                latest.value[is_battery].tolist(),
                strict=True,
            )
        )

    def newest(self) -> list[dict[str, LatestOut]]:
        """Each device row's newest reading per sensor, in the device's sensor order."""
        latest, sensors = self.latest, self.registry.sensor_list
        found: list[dict[str, LatestOut]] = [{} for _ in self.devices]
        # One row per (device, sensor) pair, so this loop is bounded by the registry.
        for device_code, sensor_code, ts, value in zip(
            latest.device.tolist(),
            latest.sensor.tolist(),
            latest.ts_ns.tolist(),
            latest.value.tolist(),
            strict=True,
        ):
            kept = number(value)
            if kept is None:
                continue
            sensor = sensors[sensor_code]
            found[int(self.rows[device_code])][sensor.id] = LatestOut(
                value=kept, unit=sensor.unit, at=at(self.pilot, ts)
            )
        return [
            {s: values[s] for s in sorted(values, key=_order(device.sensors))}
            for device, values in zip(self.devices, found, strict=True)
        ]

    def link(self, row: int) -> LinkOut:
        """RSSI and SNR medians of a device's uplinks in the last 24 hours."""
        if self.too_many:
            start = max(self.now - DAY_NS, self.since_ns or self.now - DAY_NS)
            day = self.store.count_uplinks(
                self.pilot.id, start, self.now + 1, devices=[self.devices[row].id]
            )
            return LinkOut(uplinks=day, rssi_median=None, snr_median=None)
        up: Uplinks = self.uplinks
        mine = (self.rows[up.device] == row) & (up.ts_ns >= self.now - DAY_NS)
        rssi, snr = up.rssi[mine], up.snr[mine]
        rssi, snr = rssi[np.isfinite(rssi)], snr[np.isfinite(snr)]
        return LinkOut(
            uplinks=int(mine.sum()),
            rssi_median=number(np.median(rssi)) if len(rssi) else None,
            snr_median=number(np.median(snr)) if len(snr) else None,
        )


def _order(sensors: tuple[str, ...]) -> Callable[[str], tuple[int, str]]:
    """Sort key: the device's own sensors in registry order, then the others (battery)."""
    position = {s: i for i, s in enumerate(sensors)}
    return lambda s: (position.get(s, len(position)), s)


def _ratio(received: float, expected: float) -> float | None:
    return received / expected if expected > 0 else None


def pilot_summary(
    registry: Registry,
    store: Store,
    pilot: Pilot,
    max_uplinks: int,
    now: int | None = None,
    *,
    since_ns: int | None = None,
) -> PilotOut:
    """A pilot with its sensors, thresholds, devices online, newest reading, completeness.

    `since_ns`: nothing older is used (the start of a published period, for a reader without a
    token).
    """
    state = PilotState(registry, store, pilot, now or now_ns(), max_uplinks, since_ns=since_ns)
    seen = state.last_seen()
    today = state.today()
    newest = int(seen.max()) if len(seen) and seen.max() != quality.NEVER_NS else None
    return PilotOut(
        id=pilot.id,
        name=pilot.name,
        timezone=pilot.timezone,
        theme=pilot.theme,
        devices=len(pilot.devices),
        online=int((~state.silent()).sum()),
        sensors=[_sensor_out(registry, s) for s in pilot.sensors],
        thresholds=[
            ThresholdOut(sensor=t.sensor, name=t.name, value=t.value) for t in pilot.thresholds
        ],
        last_seen=local(pilot, newest),
        completeness_today=None
        if state.too_many
        else _ratio(float(today.received.sum()), float(today.expected.sum())),
    )


def device_list(
    registry: Registry,
    store: Store,
    pilot: Pilot,
    max_uplinks: int,
    now: int | None = None,
    *,
    since_ns: int | None = None,
) -> list[DeviceOut]:
    """The pilot's devices: status, last report, battery, link, completeness, newest readings.

    `since_ns` as in `pilot_summary`.
    """
    state = PilotState(registry, store, pilot, now or now_ns(), max_uplinks, since_ns=since_ns)
    seen = state.last_seen()
    silent = state.silent()
    today = state.today()
    battery = state.battery()
    newest = state.newest()
    out = []
    for row, d in enumerate(state.devices):
        never = int(seen[row]) == quality.NEVER_NS
        out.append(
            DeviceOut(
                id=d.id,
                kind=d.kind,
                site=d.site,
                lat=d.lat,
                lon=d.lon,
                interval_s=d.interval_s,
                sensors=list(d.sensors),
                status="never" if never else ("silent" if silent[row] else "online"),
                last_seen=None if never else local(pilot, int(seen[row])),
                battery_v=battery.get(row),
                link=state.link(row),
                completeness_today=None
                if state.too_many
                else _ratio(float(today.received[row, 0]), float(today.expected[row, 0])),
                latest=newest[row],
            )
        )
    return out

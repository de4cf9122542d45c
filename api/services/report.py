"""A pilot's report for a period: every number a researcher sends to ITU members.

One scan of the period's readings and uplinks, then the numpy core: window statistics
(`core.aggregate`), data quality (`core.quality`), flags (`core.flags`) and thresholds
(`core.thresholds`). The same data also gives the charts of the HTML report. Nothing is
computed here that the core does not compute; this module arranges its answers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np

from api.report_html import SensorChart, render_report
from api.schemas import (
    AlarmOut,
    CompletenessMapOut,
    DeviceReportOut,
    EpisodeOut,
    ExceedanceDayOut,
    ExceedanceOut,
    FlagsOut,
    GapOut,
    RainOut,
    ReportOut,
    RiverOut,
    SensorSummaryOut,
    ThresholdReportOut,
)
from api.services.sources import Scanner, scan_flagged
from api.services.values import SILENT_AFTER_INTERVALS, at, devices_with, now_ns, number
from core import flood, latency, quality, thresholds
from core.aggregate import window_stats
from core.readings import Readings
from core.registry import Pilot, Registry
from core.store import Store
from core.timeutil import HOUR_NS, NS_PER_S, utc_offset_ns
from core.uplinks import NO_SF, Uplinks
from core.windows import calendar_edges, fixed_edges

DAY_S = 86_400.0
#: Gaps longer than this many of a device's intervals are reported.
GAP_INTERVALS = 3
#: How many of the longest gaps the report lists.
GAPS_LISTED = 20
#: Battery voltage taken as empty when projecting days left (Li-ion cut-off).
BATTERY_EMPTY_V = 3.3
#: Points per chart line at most (the window grows with the period).
CHART_POINTS = 400


@dataclass(frozen=True)
class Report:
    """The JSON report and the charts of the HTML one, from the same data."""

    report: ReportOut
    charts: list[SensorChart]

    @cached_property
    def json(self) -> bytes:
        """The report serialised once, for every reader of a kept report."""
        return self.report.model_dump_json().encode()

    @cached_property
    def html(self) -> str:
        """The shareable page, rendered once."""
        return render_report(self.report, self.charts)


class _Period:
    """The period's data, read once."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        readings_from: Scanner,
        pilot: Pilot,
        span: tuple[int, int],
    ) -> None:
        start_ns, end_ns = span
        self.registry = registry
        self.pilot = pilot
        self.start, self.end = start_ns, end_ns
        self.devices = list(pilot.devices)
        self.rows = np.full(len(registry.device_list), -1, dtype=np.int64)
        self.rows[[d.code for d in self.devices]] = np.arange(len(self.devices))
        # The uplinks are read while the readings are read and flagged.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-uplinks") as pool:
            pending = pool.submit(store.scan_uplinks, pilot.id, start_ns, end_ns)
            readings, flags = scan_flagged(
                readings_from,
                registry,
                pilot,
                list(pilot.sensors),
                start_ns=start_ns,
                end_ns=end_ns,
            )
            uplinks = pending.result()
        mine = self.rows[readings.device] >= 0
        self.readings, self.flags = readings.take(mine), flags.take(mine)
        self.uplinks = uplinks.take(self.rows[uplinks.device] >= 0)
        self.repeats = store.count_repeats(pilot.id, start_ns, end_ns)
        self.interval = np.asarray([d.interval_s for d in self.devices], dtype=np.float64)
        self.n = len(self.devices)
        # Local clock hours (whole-hour offsets make them UTC hours shifted by the offset).
        origin = -utc_offset_ns(pilot.tz, start_ns)
        self.hour_edges = fixed_edges(start_ns, end_ns, HOUR_NS, origin)

    def sensor(self, sensor_id: str) -> Readings:
        """The readings of one sensor."""
        return self.readings.take(self.readings.sensor == self.registry.sensors[sensor_id].code)

    def row_of(self, readings: Readings | Uplinks) -> np.ndarray:
        """Output row of each reading or uplink."""
        return self.rows[readings.device]


def build_report(
    registry: Registry,
    store: Store,
    pilot: Pilot,
    start_ns: int,
    end_ns: int,
    *,
    readings_from: Scanner | None = None,
    alarms: list[AlarmOut] | None = None,
) -> Report:
    """The report of `pilot` for `[start_ns, end_ns)`, its readings from the store or a cache.

    `alarms` are the period's alarms as the alarm store lists them (None: no alarm store).
    """
    period = _Period(registry, store, readings_from or store, pilot, (start_ns, end_ns))
    now = now_ns()
    report = ReportOut(
        pilot=pilot.id,
        name=pilot.name,
        timezone=pilot.timezone,
        theme=pilot.theme,
        start=at(pilot, start_ns),
        end=at(pilot, end_ns),
        generated_at=at(pilot, now),
        sensors=_sensor_summaries(period),
        devices=_devices(period, now),
        completeness=_completeness_map(period),
        gaps=_gaps(period),
        flags=_flags(period),
        thresholds=_thresholds(period),
        exceedances=_exceedances(period),
        river=_river(period),
        rain=_rain(period),
        alarms=alarms,
    )
    return Report(report=report, charts=_charts(period))


def _sensor_summaries(period: _Period) -> list[SensorSummaryOut]:
    edges = np.asarray([period.start, period.end], dtype=np.int64)
    out = []
    for sensor_id in period.pilot.sensors:
        sensor = period.registry.sensors[sensor_id]
        devices = devices_with(period.pilot, sensor_id)
        table = window_stats(
            period.readings,
            sensor=sensor.code,
            devices=period.registry.device_codes([d.id for d in devices]),
            edges_ns=edges,
            pooled=True,
            quantiles=(0.5, 0.95),
            statistics=("count", "mean", "min", "max", "std"),
            unique=True,
        )
        of_sensor = period.readings.sensor == sensor.code
        flagged = int(np.count_nonzero(period.flags.mask & of_sensor))
        total = int(np.count_nonzero(of_sensor))
        out.append(
            SensorSummaryOut(
                sensor=sensor_id,
                name=sensor.name,
                unit=sensor.unit,
                devices=len(devices),
                count=int(table.count[0, 0]),
                mean=number(table.mean[0, 0]),
                min=number(table.min[0, 0]),
                max=number(table.max[0, 0]),
                std=number(table.std[0, 0]),
                p50=number(table.quantiles[0.5][0, 0]),
                p95=number(table.quantiles[0.95][0, 0]),
                flagged_share=flagged / total if total else 0.0,
            )
        )
    return out


def _battery(period: _Period) -> tuple[np.ndarray, np.ndarray]:
    """Last voltage and least-squares slope (V/day) of each device's battery."""
    battery = period.sensor("battery_v")
    rows = period.row_of(battery)
    last = np.full(period.n, np.nan)
    slope = np.full(period.n, np.nan)
    order = np.lexsort((battery.ts_ns, rows))
    rows, ts, volts = rows[order], battery.ts_ns[order], battery.value[order]
    if len(rows):
        ends = np.flatnonzero(np.r_[rows[1:] != rows[:-1], True])
        last[rows[ends]] = volts[ends]
        # Slope per device by the closed form of simple regression, all devices at once.
        days = (ts - period.start) / (DAY_S * NS_PER_S)
        n = np.bincount(rows, minlength=period.n).astype(float)
        sx = np.bincount(rows, weights=days, minlength=period.n)
        sy = np.bincount(rows, weights=volts, minlength=period.n)
        sxx = np.bincount(rows, weights=days * days, minlength=period.n)
        sxy = np.bincount(rows, weights=days * volts, minlength=period.n)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
        slope[n < 2] = np.nan
    return last, slope


def _devices(period: _Period, now: int) -> list[DeviceReportOut]:
    up = period.uplinks
    rows = period.row_of(up)
    n = period.n
    whole = quality.completeness(
        up.ts_ns,
        rows,
        n_devices=n,
        interval_s=period.interval,
        edges_ns=np.asarray([period.start, period.end], dtype=np.int64),
    )
    hours = quality.completeness(
        up.ts_ns,
        rows,
        n_devices=n,
        interval_s=period.interval,
        edges_ns=fixed_edges(period.start, period.end, HOUR_NS, period.start),
        start_ns=period.start,
        end_ns=period.end,
    )
    gaps = quality.gaps(
        up.ts_ns,
        rows,
        n_devices=n,
        interval_s=period.interval,
        k=GAP_INTERVALS,
        start_ns=period.start,
        end_ns=period.end,
    )
    counted = up.fcnt >= 0
    delivery = quality.packet_delivery(
        up.ts_ns[counted], rows[counted], up.fcnt[counted], n_devices=n
    )
    latency = quality.latency(up.received_ns, up.ts_ns, rows, n_devices=n, quantiles=(0.9,))
    seen = quality.last_seen(period.readings.ts_ns, period.row_of(period.readings), n_devices=n)
    silent = quality.silent(seen, now_ns=now, interval_s=period.interval, k=SILENT_AFTER_INTERVALS)
    # Only a period running up to now can say whether a device is silent now.
    current = period.end >= now - SILENT_AFTER_INTERVALS * period.interval * NS_PER_S
    last_v, slope = _battery(period)
    out = []
    for row, device in enumerate(period.devices):
        mine = rows == row
        rssi, snr = up.rssi[mine], up.snr[mine]
        rssi, snr = rssi[np.isfinite(rssi)], snr[np.isfinite(snr)]
        sfs = up.sf[mine]
        values, counts = np.unique(sfs[sfs != NO_SF], return_counts=True)
        days_left = None
        if np.isfinite(slope[row]) and slope[row] < 0 and np.isfinite(last_v[row]):
            days_left = max(0.0, float((last_v[row] - BATTERY_EMPTY_V) / -slope[row]))
        expected = float(whole.expected[row, 0])
        out.append(
            DeviceReportOut(
                device=device.id,
                kind=device.kind,
                site=device.site,
                lat=device.lat,
                lon=device.lon,
                reports=int(whole.received[row, 0]),
                completeness=float(whole.received[row, 0]) / expected if expected > 0 else None,
                uptime_hours=float(np.count_nonzero(hours.received[row] > 0)),
                hours=(period.end - period.start) / HOUR_NS,
                gaps=int(np.count_nonzero(gaps.device_row == row)),
                longest_gap_s=float(gaps.longest_s[row]),
                repeats=period.repeats.get(device.id, 0),
                silent_now=bool(silent[row]) if current[row] else None,
                pdr=number(delivery.ratio[row]),
                counter_sessions=int(delivery.sessions[row]),
                latency_mean_s=number(latency.mean_s[row]),
                latency_p90_s=number(latency.quantiles_s[0.9][row]),
                battery_last_v=number(last_v[row]),
                battery_slope_v_per_day=number(slope[row]),
                battery_days_left=days_left,
                rssi_median=number(np.median(rssi)) if len(rssi) else None,
                snr_median=number(np.median(snr)) if len(snr) else None,
                sf_mix={str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
            )
        )
    return out


def _completeness_map(period: _Period) -> CompletenessMapOut:
    up = period.uplinks
    days = calendar_edges(period.start, period.end, "day", period.pilot.tz)
    table = quality.completeness(
        up.ts_ns,
        period.row_of(up),
        n_devices=period.n,
        interval_s=period.interval,
        edges_ns=days,
        start_ns=period.start,
        end_ns=period.end,
    )
    return CompletenessMapOut(
        days=[at(period.pilot, int(d)).date() for d in days[:-1]],
        devices=[d.id for d in period.devices],
        ratio=[[number(v) for v in row] for row in table.ratio.tolist()],
    )


def _gaps(period: _Period) -> list[GapOut]:
    up = period.uplinks
    found = quality.gaps(
        up.ts_ns,
        period.row_of(up),
        n_devices=period.n,
        interval_s=period.interval,
        k=GAP_INTERVALS,
        start_ns=period.start,
        end_ns=period.end,
    )
    longest = np.argsort(-found.length_s, kind="stable")[:GAPS_LISTED]
    return [
        GapOut(
            device=period.devices[int(found.device_row[i])].id,
            start=at(period.pilot, int(found.start_ns[i])),
            end=at(period.pilot, int(found.end_ns[i])),
            length_s=float(found.length_s[i]),
        )
        for i in longest.tolist()
    ]


def _flags(period: _Period) -> FlagsOut:
    counts = period.flags.counts
    n = len(period.readings)
    return FlagsOut(
        readings=n,
        range=counts.get("range", 0),
        stuck=counts.get("stuck", 0),
        spike=counts.get("spike", 0),
        duplicate=counts.get("duplicate", 0),
        repeats=sum(period.repeats.get(d.id, 0) for d in period.devices),
        late=int(
            np.count_nonzero(
                latency.late(
                    period.readings,
                    period.uplinks,
                    after_s_of_device=quality.interval_s_of_device(period.registry),
                )
            )
        ),
        share=counts.get("any", 0) / n if n else 0.0,
    )


def _thresholds(period: _Period) -> list[ThresholdReportOut]:
    out = []
    for threshold in period.pilot.thresholds:
        readings = period.sensor(threshold.sensor)
        found = thresholds.episodes(
            readings.ts_ns,
            readings.value,
            period.row_of(readings),
            level=threshold.value,
            n_devices=period.n,
        )
        out.append(
            ThresholdReportOut(
                sensor=threshold.sensor,
                name=threshold.name,
                level=threshold.value,
                hours_above=float(found.total_s.sum()) / 3600,
                episodes=[
                    EpisodeOut(
                        device=period.devices[int(found.device_row[i])].id,
                        start=at(period.pilot, int(found.start_ns[i])),
                        end=at(period.pilot, int(found.end_ns[i])),
                        duration_s=float(found.duration_s[i]),
                        peak=float(found.peak[i]),
                        open=bool(found.open[i]),
                    )
                    for i in range(len(found))
                ],
            )
        )
    return out


def _exceedances(period: _Period) -> list[ExceedanceOut]:
    out = []
    for sensor_id in period.pilot.sensors:
        guideline = period.registry.sensors[sensor_id].guideline_24h
        if guideline is None:
            continue
        readings = period.sensor(sensor_id)
        daily = thresholds.exceedance_days(
            readings.ts_ns,
            readings.value,
            np.zeros(len(readings), dtype=np.int64),
            n_devices=1,
            tz=period.pilot.tz,
            guideline=guideline,
            start_ns=period.start,
            end_ns=period.end,
        )
        days = daily.exceedances(0)
        hourly = flood.windows_over(
            readings.ts_ns,
            readings.value,
            period.row_of(readings),
            edges_ns=period.hour_edges,
            level=guideline,
        )
        out.append(
            ExceedanceOut(
                sensor=sensor_id,
                guideline=guideline,
                days_with_data=int((~daily.missing[0]).sum()),
                days_missing=int(daily.n_missing[0]),
                days_exceeding=int(daily.n_exceedances[0]),
                days=[ExceedanceDayOut(day=d, mean=m) for d, m in days],
                missing=[d for d, gone in zip(daily.days, daily.missing[0], strict=True) if gone],
                hours_over=hourly.n_over,
                hours_measured=hourly.n_measured,
                indicative=True,
            )
        )
    return out


def _river(period: _Period) -> list[RiverOut]:
    """Trend and largest day-to-day rise of each level gauge, in cm/day."""
    if "level" not in period.pilot.sensors:
        return []
    readings = period.sensor("level")
    rows = period.row_of(readings)
    day_edges = calendar_edges(period.start, period.end, "day", period.pilot.tz)
    rise = flood.daily_rise(
        readings.ts_ns, readings.value, rows, n_rows=period.n, day_edges_ns=day_edges
    )
    trend = flood.trend_per_day(readings.ts_ns, readings.value, rows, n_rows=period.n)
    out = []
    for device in devices_with(period.pilot, "level"):
        row = int(period.rows[device.code])
        day = int(rise.rise_day[row])
        out.append(
            RiverOut(
                device=device.id,
                trend_cm_per_day=number(trend[row] * 100),
                max_rise_cm_per_day=number(rise.rise[row] * 100),
                max_rise_day=at(period.pilot, int(day_edges[day])).date() if day >= 0 else None,
            )
        )
    return out


def _rain(period: _Period) -> list[RainOut]:
    """Total and wettest clock hour of each rain gauge."""
    if "rain" not in period.pilot.sensors:
        return []
    readings = period.sensor("rain")
    rows = period.row_of(readings)
    found = flood.max_intensity(
        readings.ts_ns, readings.value, rows, n_rows=period.n, edges_ns=period.hour_edges
    )
    out = []
    for device in devices_with(period.pilot, "rain"):
        row = int(period.rows[device.code])
        hour = int(found.window[row])
        measured = found.count[row] > 0
        out.append(
            RainOut(
                device=device.id,
                total_mm=number(np.nansum(found.total[row])) if measured.any() else None,
                max_mm_per_hour=number(found.max[row]),
                max_hour=at(period.pilot, int(found.edges_ns[hour])) if hour >= 0 else None,
            )
        )
    return out


def _charts(period: _Period) -> list[SensorChart]:
    span = period.end - period.start
    every = max(HOUR_NS, -(-span // CHART_POINTS // HOUR_NS) * HOUR_NS)  # whole hours, up
    origin = -utc_offset_ns(period.pilot.tz, period.start)
    edges = fixed_edges(period.start, period.end, every, origin)
    times: list[datetime] = [at(period.pilot, int(t)) for t in edges[:-1]]
    levels_of: dict[str, list[tuple[str, float]]] = {}
    for t in period.pilot.thresholds:
        levels_of.setdefault(t.sensor, []).append((t.name, t.value))
    charts = []
    for sensor_id in period.pilot.sensors:
        sensor = period.registry.sensors[sensor_id]
        devices = devices_with(period.pilot, sensor_id)
        table = window_stats(
            period.readings,
            sensor=sensor.code,
            devices=period.registry.device_codes([d.id for d in devices]),
            edges_ns=edges,
            statistics=("count", "mean"),
            unique=True,
        )
        charts.append(
            SensorChart(
                sensor=sensor_id,
                name=sensor.name,
                unit=sensor.unit,
                times=times,
                lines={d.id: [number(v) for v in table.mean[row]] for row, d in enumerate(devices)},
                levels=levels_of.get(sensor_id, []),
                guideline=sensor.guideline_24h,
            )
        )
    return charts

"""Response types of the API: every route returns one of these, never an untyped dict.

Series and comparisons are built as plain data: their `TypedDict` twins are here too.

Times are RFC 3339 with the pilot's UTC offset. Statistics of empty windows are null.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class SensorOut(_Out):
    """A sensor as the registry defines it."""

    id: str
    name: str
    unit: str
    min: float = Field(description="lowest valid value; lower readings are quarantined")
    max: float = Field(description="highest valid value; higher readings are quarantined")
    guideline_24h: float | None = Field(description="WHO 2021 24-hour guideline, if any")


class ThresholdOut(_Out):
    """A named level of a sensor in a pilot (for example the river's flood alert)."""

    sensor: str
    name: str
    value: float


class PilotOut(_Out):
    """A pilot with its fleet, sensors, who is online and how complete today's data is."""

    id: str
    name: str
    timezone: str
    theme: str
    devices: int
    online: int = Field(description="devices that reported within 3 of their intervals")
    sensors: list[SensorOut]
    thresholds: list[ThresholdOut]
    last_seen: datetime | None = Field(description="newest reading of any device, local time")
    completeness_today: float | None = Field(
        description="reports received / expected since local midnight, all devices"
    )


class LinkOut(_Out):
    """Radio quality of a device's recent uplinks (LoRaWAN devices)."""

    uplinks: int
    rssi_median: float | None
    snr_median: float | None


class LatestOut(_Out):
    """A device's newest reading of one sensor."""

    value: float
    unit: str
    at: datetime = Field(description="the reading's time (device time), local")


class DeviceOut(_Out):
    """A device with its status, last report, battery, link quality and completeness."""

    id: str
    kind: str
    site: str
    lat: float | None
    lon: float | None
    interval_s: int = Field(description="expected seconds between reports")
    sensors: list[str]
    status: str = Field(description="online, silent (no report for 3 intervals) or never")
    last_seen: datetime | None = Field(description="newest reading, local time")
    battery_v: float | None = Field(description="battery voltage in the newest report")
    link: LinkOut = Field(description="over the last 24 hours")
    completeness_today: float | None
    latest: dict[str, LatestOut] = Field(
        default_factory=dict,
        description="the newest reading of each of the device's sensors (battery included), "
        "by sensor id, in the device's sensor order; empty when it never reported",
    )


class WindowOut(_Out):
    """Statistics of one window; only those asked for are present, null when count is 0."""

    start: datetime
    count: int
    sum: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None
    first: float | None = None
    last: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class SeriesLineOut(_Out):
    """Every window of the range for one device, or for all devices pooled (`device` null)."""

    device: str | None
    windows: list[WindowOut]


class SensorSeriesOut(_Out):
    """The windows of one sensor."""

    sensor: str
    unit: str
    lines: list[SeriesLineOut]


class SeriesOut(_Out):
    """Windowed statistics of one or more sensors of a pilot."""

    pilot: str
    timezone: str
    start: datetime
    end: datetime
    window: str = Field(description="a duration (10m, 1h, 1d) or day, week, month (local)")
    statistics: list[str]
    pooled: bool
    exclude_flagged: bool
    source: str = Field(description="rollups (precomputed) or raw readings")
    sensors: list[SensorSeriesOut]


class CompareLineOut(_Out):
    """One pilot's windows of a sensor, all its devices pooled."""

    pilot: str
    windows: list[WindowOut]


class CompareOut(_Out):
    """One sensor across pilots."""

    sensor: str
    unit: str
    start: datetime
    end: datetime
    window: str
    pilots: list[CompareLineOut]


# Series and comparisons are built as plain data and serialised by orjson (`api.responses`):
# these are the models above as `TypedDict`s, times as RFC 3339 text.

#: A `WindowOut`: `start`, `count` and the statistics asked for, each null when count is 0.
WindowJson = dict[str, str | int | float | None]


class SeriesLineJson(TypedDict):
    """A `SeriesLineOut` as plain data."""

    device: str | None
    windows: list[WindowJson]


class SensorSeriesJson(TypedDict):
    """A `SensorSeriesOut` as plain data."""

    sensor: str
    unit: str
    lines: list[SeriesLineJson]


class SeriesJson(TypedDict):
    """A `SeriesOut` as plain data."""

    pilot: str
    timezone: str
    start: str
    end: str
    window: str
    statistics: list[str]
    pooled: bool
    exclude_flagged: bool
    source: str
    sensors: list[SensorSeriesJson]


class CompareLineJson(TypedDict):
    """A `CompareLineOut` as plain data."""

    pilot: str
    windows: list[WindowJson]


class CompareJson(TypedDict):
    """A `CompareOut` as plain data."""

    sensor: str
    unit: str
    start: str
    end: str
    window: str
    pilots: list[CompareLineJson]


# -- alarms ------------------------------------------------------------------------------------


class AlarmOut(_Out):
    """An alarm: one rule on one device, from the reading that fired it to the one that cleared it.

    The stored alarm (`alerts.store.Alarm`: times as int64 ns since the epoch, UTC) with its
    times also as RFC 3339 in the pilot's zone, and a link to the dashboard at its start.
    """

    id: str = Field(description="the alarm's id (24 hex digits, the same in every process)")
    rule: str = Field(description="the rule's id, e.g. santa-fe.level.alert")
    kind: str = Field(
        description="threshold, mean_over_guideline, rate_of_rise, silent, battery_low or flat"
    )
    pilot: str
    device: str
    sensor: str | None = Field(description="null for rules on no sensor (silent)")
    severity: str = Field(description="info, warning or critical")
    label: str = Field(description="what the level is called: alert, low battery, ...")
    level: float | None = Field(description="what the metric was compared with")
    direction: str = Field(description="above or below the level")
    state: Literal["active", "cleared"]
    active: bool
    start: datetime = Field(description="the first reading past the level, pilot's local time")
    end: datetime | None = Field(description="the first reading back on the safe side")
    start_ns: int
    end_ns: int | None
    fired_ns: int = Field(description="device time of the reading that fired it")
    cleared_ns: int | None = Field(description="device time of the reading that cleared it")
    value: float | None = Field(description="the metric at the start")
    peak: float | None = Field(description="the most extreme metric while it lasted")
    latest: float | None = Field(description="the metric at its last event")
    late: bool = Field(description="found in a backlog after the fact, not live")
    acked: datetime | None = Field(description="when it was acknowledged, pilot's local time")
    acked_ns: int | None
    acked_by: str | None = Field(description="the name of the token that acknowledged it")
    ack_note: str | None
    seq: int = Field(description="the number of its last change (the stream's event id)")
    link: str = Field(description="the dashboard at the pilot and the alarm's start")


class AckIn(BaseModel):
    """An acknowledgement's optional note."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=500, description="what was done, for the others")


# -- the pilot report --------------------------------------------------------------------------


class SensorSummaryOut(_Out):
    """A sensor over the whole period, all devices pooled."""

    sensor: str
    name: str
    unit: str
    devices: int
    count: int
    mean: float | None
    min: float | None
    max: float | None
    std: float | None
    p50: float | None
    p95: float | None
    flagged_share: float = Field(description="share of readings flagged (range, stuck, spike)")


class DeviceReportOut(_Out):
    """A device over the period."""

    device: str
    kind: str
    site: str
    lat: float | None = Field(default=None, description="the registry's latitude, for the map")
    lon: float | None = Field(default=None, description="the registry's longitude, for the map")
    reports: int
    completeness: float | None
    uptime_hours: float = Field(description="hours with at least one report")
    hours: float = Field(description="hours in the period")
    gaps: int
    longest_gap_s: float
    repeats: int = Field(
        description="transmissions received again and dropped by ingest (LoRaWAN "
        "retransmissions and network-server retries, recognised by frame counter), "
        "counted by the retransmission's time"
    )
    silent_now: bool | None = Field(
        description="no report for 3 intervals; null when the period ended before that"
    )
    pdr: float | None = Field(description="packet delivery ratio from frame counters")
    counter_sessions: int
    latency_mean_s: float | None
    latency_p90_s: float | None
    battery_last_v: float | None
    battery_slope_v_per_day: float | None
    battery_days_left: float | None = Field(description="days until 3.3 V at the present slope")
    rssi_median: float | None
    snr_median: float | None
    sf_mix: dict[str, int] = Field(description="uplinks per LoRa spreading factor")


class GapOut(_Out):
    """A silence longer than the gap threshold."""

    device: str
    start: datetime
    end: datetime
    length_s: float


class CompletenessMapOut(_Out):
    """Completeness per device per local day: the heat map."""

    days: list[date]
    devices: list[str]
    ratio: list[list[float | None]]


class FlagsOut(_Out):
    """Readings flagged, by flag."""

    readings: int
    range: int
    stuck: int
    spike: int
    duplicate: int
    late: int = Field(
        description="received more than one reporting interval after the device's time "
        "(a gateway's backlog); counted, not excluded: the values are sound"
    )
    share: float = Field(
        description="share of readings with a range, stuck, spike or duplicate flag"
    )
    repeats: int = Field(
        description="transmissions received again and dropped by ingest (the devices' "
        "`repeats` summed): not readings, so not part of the share"
    )


class EpisodeOut(_Out):
    """A stretch above (or below) a level."""

    device: str
    start: datetime
    end: datetime
    duration_s: float
    peak: float
    open: bool = Field(description="still above the level when the data ends")


class ThresholdReportOut(_Out):
    """Time past one named level of one sensor."""

    sensor: str
    name: str
    level: float
    hours_above: float
    episodes: list[EpisodeOut]


class ExceedanceDayOut(_Out):
    """A local day whose mean exceeded the guideline."""

    day: date
    mean: float


class ExceedanceOut(_Out):
    """Local days whose 24-hour mean exceeded the WHO guideline (devices pooled)."""

    sensor: str
    guideline: float
    days_with_data: int
    days_missing: int
    days_exceeding: int
    days: list[ExceedanceDayOut]
    missing: list[date] = Field(description="local days without a reading")
    hours_over: int = Field(description="local hours whose mean (devices pooled) is above it")
    hours_measured: int = Field(description="local hours with at least one reading")
    indicative: bool = Field(description="low-cost sensors: indicative, not regulatory")


class RiverOut(_Out):
    """How a river gauge's level moved over the period."""

    device: str
    trend_cm_per_day: float | None = Field(description="least-squares slope of all readings")
    max_rise_cm_per_day: float | None = Field(
        description="largest rise between the means of two consecutive local days"
    )
    max_rise_day: date | None = Field(description="the later of those two days")


class RainOut(_Out):
    """A rain gauge's rain over the period."""

    device: str
    total_mm: float | None
    max_mm_per_hour: float | None = Field(description="the wettest local clock hour")
    max_hour: datetime | None = Field(description="start of that hour")


class ReportOut(_Out):
    """A pilot's results for a period."""

    pilot: str
    name: str
    timezone: str
    theme: str
    start: datetime
    end: datetime
    generated_at: datetime
    sensors: list[SensorSummaryOut]
    devices: list[DeviceReportOut]
    completeness: CompletenessMapOut
    gaps: list[GapOut] = Field(description="the longest silences, longest first")
    flags: FlagsOut
    thresholds: list[ThresholdReportOut]
    exceedances: list[ExceedanceOut]
    river: list[RiverOut] = Field(description="river level gauges (flood pilots)")
    rain: list[RainOut] = Field(description="rain gauges")
    alarms: list[AlarmOut] | None = Field(
        default=None,
        description="the pilot's alarms that overlap the period, oldest first (at most 1000); "
        "null when the API has no alarm store to read",
    )


class QuarantineEntryOut(_Out):
    """One refusal (or, with `refusals` above 1, several of one message) kept by ingest."""

    id: int = Field(description="the entry's id, for `pilots quarantine replay --id`")
    received: datetime
    worker: str = Field(description="the ingest worker that refused it")
    source: str = Field(
        description="the registry device the topic names, `unregistered` when it names none"
    )
    topic: str
    reason: str
    detail: str
    sensor: str | None
    refusals: int = Field(description="refusals of the message this entry stands for")
    length: int = Field(description="the payload's length in bytes")
    sha256: str = Field(description="the payload's SHA-256, hex")
    truncated: bool = Field(description="only the payload's first bytes are kept")
    payload: str = Field(description="the payload as kept (decoded as UTF-8, replaced)")


class DroppedOut(_Out):
    """Refusals the quarantine no longer holds, and why (`cap`, `age`, `store_refused`)."""

    why: str
    reason: str
    refusals: int


class QuarantineOut(_Out):
    """What ingest refused and why, over every ingest worker."""

    counts: dict[str, int] = Field(description="refusals kept, per reason")
    dropped: list[DroppedOut] = Field(description="refusals counted but not kept")
    entries: list[QuarantineEntryOut]


class HealthOut(_Out):
    """Whether the API can serve: `ok`, or `unavailable` when the store does not answer."""

    status: str


class HealthDetailsOut(_Out):
    """The health status with the store in use (no credentials) and the store's reason."""

    status: str
    store: str
    detail: str | None = None

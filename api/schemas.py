"""Response types of the API: every route returns one of these, never a bare dict."""

from __future__ import annotations

from datetime import datetime

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
    """A pilot with its fleet size, sensors and most recent reading time."""

    id: str
    name: str
    timezone: str
    theme: str
    devices: int
    sensors: list[SensorOut]
    thresholds: list[ThresholdOut]
    last_seen: datetime | None = Field(description="newest reading of any device, local time")


class DeviceOut(_Out):
    """A device with what it measures and when it last reported."""

    id: str
    kind: str
    site: str
    lat: float | None
    lon: float | None
    interval_s: int = Field(description="expected seconds between reports")
    sensors: list[str]
    last_seen: datetime | None = Field(description="newest reading, local time")
    battery_v: float | None = Field(description="battery voltage in the newest report")


class WindowOut(_Out):
    """Statistics of one window; `count` 0 means no reading, and the rest are null."""

    start: datetime
    count: int
    mean: float | None
    min: float | None
    max: float | None


class DeviceSeriesOut(_Out):
    """Every window of the range for one device."""

    device: str
    windows: list[WindowOut]


class SeriesOut(_Out):
    """Windowed statistics of one sensor of a pilot, per device."""

    pilot: str
    sensor: str
    unit: str
    timezone: str
    start: datetime
    end: datetime
    every: str
    every_s: int
    devices: list[DeviceSeriesOut]


class HealthOut(_Out):
    """Liveness and the store in use."""

    status: str
    store: str
    detail: str | None = None

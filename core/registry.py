"""The pilot/device registry: which pilots exist, which devices they run, what each measures.

The registry is a TOML file the operator edits (`core/registry.toml` ships the three UTN pilots).
Loading it validates everything once (identifiers, units, ranges, time zones, cross references)
and builds the integer codes and lookup arrays that the columnar `Readings` batch and the numpy
core use. It must not touch the network or the store.
"""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import RegistryError

DEFAULT_REGISTRY_PATH = Path(__file__).with_name("registry.toml")

#: Identifiers become InfluxDB tag values and MQTT topic levels: keep them boring.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]

#: A licence is named by its SPDX id (CC-BY-4.0, CC0-1.0, ODbL-1.0).
LICENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$"

#: Sensors every device reports whatever its kind.
COMMON_SENSORS = ("battery_v",)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SensorSpec(_Spec):
    """One `[sensors.<id>]` table."""

    name: str
    unit: str
    min: float
    max: float
    guideline_24h: float | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> SensorSpec:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class KindSpec(_Spec):
    """One `[kinds.<id>]` table."""

    name: str
    sensors: list[Identifier] = Field(min_length=1)
    interval_s: int = Field(gt=0)


class DeviceSpec(_Spec):
    """One `[[pilots.<id>.devices]]` table."""

    id: Identifier
    kind: Identifier
    site: str = ""
    sensors: list[Identifier] | None = None
    interval_s: int | None = Field(default=None, gt=0)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    dev_eui: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16}$")] | None = None
    lns_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class PilotSpec(_Spec):
    """One `[pilots.<id>]` table with its thresholds and devices."""

    name: str
    timezone: str
    theme: str = ""
    public: bool = False
    public_from: datetime.date | None = None
    public_until: datetime.date | None = None
    #: The licence of what `pilots publish` writes of this pilot (an SPDX id); None: CC-BY-4.0.
    licence: Annotated[str, Field(pattern=LICENCE_PATTERN)] | None = None
    thresholds: dict[Identifier, dict[Identifier, float]] = Field(default_factory=dict)
    devices: list[DeviceSpec] = Field(default_factory=list)


class RegistryFile(_Spec):
    """The whole registry file as written by the operator."""

    sensors: dict[Identifier, SensorSpec]
    kinds: dict[Identifier, KindSpec]
    pilots: dict[Identifier, PilotSpec]


@dataclass(frozen=True, slots=True)
class Sensor:
    """A measured quantity; `code` is its index in `Registry.sensor_list`."""

    id: str
    code: int
    name: str
    unit: str
    min: float
    max: float
    guideline_24h: float | None


@dataclass(frozen=True, slots=True)
class Threshold:
    """A named level of one sensor in one pilot (e.g. the river's flood alert level)."""

    sensor: str
    name: str
    value: float


@dataclass(frozen=True, slots=True)
class Device:
    """A field device; `code` is its index in `Registry.device_list`."""

    id: str
    code: int
    pilot: str
    kind: str
    sensors: tuple[str, ...]
    interval_s: int
    site: str
    lat: float | None
    lon: float | None
    dev_eui: str | None
    lns_id: str | None


@dataclass(frozen=True, slots=True)
class PublicPeriod:
    """What of a pilot anyone may read without a token: readings in `[start_ns, end_ns)`.

    `None` leaves that side open. Set by the pilot's `public`, `public_from` and
    `public_until` (days in the pilot's time zone, `public_until` excluded).
    """

    start_ns: int | None
    end_ns: int | None

    def clip(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """`[start_ns, end_ns)` cut to this period (empty, start >= end, when they miss)."""
        lo = start_ns if self.start_ns is None else max(start_ns, self.start_ns)
        hi = end_ns if self.end_ns is None else min(end_ns, self.end_ns)
        return lo, hi

    def covers(self, start_ns: int, end_ns: int) -> bool:
        """Whether all of `[start_ns, end_ns)` lies in this period."""
        return self.clip(start_ns, end_ns) == (start_ns, end_ns)


@dataclass(frozen=True, slots=True)
class Pilot:
    """A pilot city with its calendar (time zone), thresholds and devices.

    `sensors` lists every sensor some device of the pilot reports, in registry order.
    """

    id: str
    code: int
    name: str
    timezone: str
    theme: str
    thresholds: tuple[Threshold, ...]
    devices: tuple[Device, ...]
    sensors: tuple[str, ...]
    #: Readable without a token when set (`pilots.<id>.public`); None: a token is needed.
    public: PublicPeriod | None = None
    #: The licence its published data packages carry (`pilots.<id>.licence`); None: the default.
    licence: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        """The pilot's time zone, in which its calendar windows are cut."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Registry:
    """The loaded registry: name lookups plus the arrays the vectorised code indexes by code."""

    source: Path
    sensor_list: tuple[Sensor, ...]
    pilot_list: tuple[Pilot, ...]
    device_list: tuple[Device, ...]
    sensors: Mapping[str, Sensor] = field(init=False)
    pilots: Mapping[str, Pilot] = field(init=False)
    devices: Mapping[str, Device] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensors", MappingProxyType({s.id: s for s in self.sensor_list}))
        object.__setattr__(self, "pilots", MappingProxyType({p.id: p for p in self.pilot_list}))
        object.__setattr__(self, "devices", MappingProxyType({d.id: d for d in self.device_list}))

    @cached_property
    def device_pilot(self) -> NDArray[np.int16]:
        """Pilot code of each device code."""
        codes = [self.pilots[d.pilot].code for d in self.device_list]
        return np.asarray(codes, dtype=np.int16)

    @cached_property
    def sensor_min(self) -> NDArray[np.float64]:
        """Lowest valid value of each sensor code."""
        return np.asarray([s.min for s in self.sensor_list], dtype=np.float64)

    @cached_property
    def sensor_max(self) -> NDArray[np.float64]:
        """Highest valid value of each sensor code."""
        return np.asarray([s.max for s in self.sensor_list], dtype=np.float64)

    @cached_property
    def device_sensor_allowed(self) -> NDArray[np.bool_]:
        """`[device code, sensor code]` is true when that device reports that sensor."""
        allowed = np.zeros((len(self.device_list), len(self.sensor_list)), dtype=np.bool_)
        for device in self.device_list:
            allowed[device.code, [self.sensors[s].code for s in device.sensors]] = True
        return allowed

    @cached_property
    def by_dev_eui(self) -> Mapping[str, Device]:
        """Devices by LoRaWAN device EUI (lower-case hex)."""
        return MappingProxyType({d.dev_eui: d for d in self.device_list if d.dev_eui})

    @cached_property
    def by_lns_id(self) -> Mapping[str, Device]:
        """Devices by their id at the LoRaWAN network server (`lns_id`, else `id`)."""
        return MappingProxyType({d.lns_id or d.id: d for d in self.device_list})

    def sensor_codes(self, sensor_ids: list[str] | tuple[str, ...]) -> NDArray[np.int16]:
        """Codes of the named sensors (all must exist)."""
        return np.asarray([self.sensors[s].code for s in sensor_ids], dtype=np.int16)

    def device_codes(self, device_ids: list[str] | tuple[str, ...]) -> NDArray[np.int32]:
        """Codes of the named devices (all must exist)."""
        return np.asarray([self.devices[d].code for d in device_ids], dtype=np.int32)


def load_registry(path: Path | None = None) -> Registry:
    """Read and validate a registry file; `None` loads the shipped default."""
    source = path or DEFAULT_REGISTRY_PATH
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"registry file not found: {source} (PILOTS_REGISTRY)") from exc
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read registry {source}: {exc}") from exc
    return build_registry(raw, source)


def build_registry(raw: dict[str, Any], source: Path) -> Registry:
    """Validate a parsed registry document and assign codes."""
    try:
        spec = RegistryFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RegistryError(f"invalid registry {source}: {problems}") from exc
    return _Builder(spec, source).build()


class _Builder:
    """Cross-reference checks and code assignment, kept out of the public types."""

    def __init__(self, spec: RegistryFile, source: Path) -> None:
        self.spec = spec
        self.source = source

    def fail(self, where: str, message: str) -> RegistryError:
        return RegistryError(f"invalid registry {self.source}: {where}: {message}")

    def build(self) -> Registry:
        for common in COMMON_SENSORS:
            if common not in self.spec.sensors:
                raise self.fail("sensors", f"the common sensor {common!r} must be defined")
        for kind_id, kind in self.spec.kinds.items():
            self.check_sensors(f"kinds.{kind_id}.sensors", kind.sensors)
        sensor_list = tuple(
            Sensor(id=sid, code=code, **s.model_dump())
            for code, (sid, s) in enumerate(self.spec.sensors.items())
        )
        devices: list[Device] = []
        pilots: list[Pilot] = []
        for pilot_code, (pilot_id, p) in enumerate(self.spec.pilots.items()):
            self.check_timezone(pilot_id, p.timezone)
            first = len(devices)
            for index, d in enumerate(p.devices):
                devices.append(self.device(pilot_id, index, d, code=len(devices)))
            pilots.append(
                Pilot(
                    id=pilot_id,
                    code=pilot_code,
                    name=p.name,
                    timezone=p.timezone,
                    theme=p.theme,
                    thresholds=self.thresholds(pilot_id, p),
                    devices=tuple(devices[first:]),
                    sensors=tuple(
                        s for s in self.spec.sensors if any(s in d.sensors for d in devices[first:])
                    ),
                    public=self.public(pilot_id, p),
                    licence=p.licence,
                )
            )
        self.check_unique(devices)
        return Registry(self.source, sensor_list, tuple(pilots), tuple(devices))

    def check_unique(self, devices: list[Device]) -> None:
        """Device ids, EUIs and network-server ids each name one device only."""
        names: dict[str, str] = {}
        for device in devices:
            # An id or network-server id names one device, whichever of the two it is.
            for name in {device.id, device.lns_id} - {None}:
                assert name is not None
                if names.setdefault(name, device.id) != device.id:
                    raise self.fail(
                        f"pilots.{device.pilot}.devices",
                        f"{name!r} names both {names[name]} and {device.id} (id or lns_id)",
                    )
        keys: tuple[tuple[str, Callable[[Device], str | None]], ...] = (
            ("id", lambda d: d.id),
            ("dev_eui", lambda d: d.dev_eui),
        )
        for what, key in keys:
            seen: dict[str, str] = {}
            for device in devices:
                value = key(device)
                if value is None:
                    continue
                if value in seen:
                    raise self.fail(
                        f"pilots.{device.pilot}.devices",
                        f"duplicate {what} {value!r} ({seen[value]} and {device.id})",
                    )
                seen[value] = device.id

    def check_sensors(self, where: str, sensors: list[str]) -> None:
        for sensor in sensors:
            if sensor not in self.spec.sensors:
                raise self.fail(where, f"unknown sensor {sensor!r}")

    def check_timezone(self, pilot_id: str, timezone: str) -> None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise self.fail(f"pilots.{pilot_id}.timezone", f"unknown zone {timezone!r}") from exc

    def public(self, pilot_id: str, p: PilotSpec) -> PublicPeriod | None:
        if not p.public:
            if p.public_from is not None or p.public_until is not None:
                raise self.fail(
                    f"pilots.{pilot_id}", "public_from/public_until need `public = true`"
                )
            return None
        tz = ZoneInfo(p.timezone)

        def midnight(day: datetime.date | None) -> int | None:
            if day is None:
                return None
            local = datetime.datetime(day.year, day.month, day.day, tzinfo=tz)
            return int(local.timestamp()) * 1_000_000_000

        period = PublicPeriod(midnight(p.public_from), midnight(p.public_until))
        if (
            period.start_ns is not None
            and period.end_ns is not None
            and period.start_ns >= period.end_ns
        ):
            raise self.fail(f"pilots.{pilot_id}", "public_until must come after public_from")
        return period

    def thresholds(self, pilot_id: str, p: PilotSpec) -> tuple[Threshold, ...]:
        out: list[Threshold] = []
        for sensor, levels in p.thresholds.items():
            if sensor not in self.spec.sensors:
                raise self.fail(f"pilots.{pilot_id}.thresholds", f"unknown sensor {sensor!r}")
            out.extend(Threshold(sensor, name, value) for name, value in levels.items())
        return tuple(out)

    def device(self, pilot_id: str, index: int, d: DeviceSpec, code: int) -> Device:
        where = f"pilots.{pilot_id}.devices[{index}]"
        kind = self.spec.kinds.get(d.kind)
        if kind is None:
            raise self.fail(where, f"unknown kind {d.kind!r}")
        sensors = d.sensors if d.sensors is not None else kind.sensors
        self.check_sensors(f"{where}.sensors", sensors)
        return Device(
            id=d.id,
            code=code,
            pilot=pilot_id,
            kind=d.kind,
            sensors=tuple(dict.fromkeys([*sensors, *COMMON_SENSORS])),
            interval_s=d.interval_s or kind.interval_s,
            site=d.site,
            lat=d.lat,
            lon=d.lon,
            dev_eui=d.dev_eui.lower() if d.dev_eui else None,
            lns_id=d.lns_id,
        )

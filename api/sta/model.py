"""The SensorThings entities of the registry, as one reader may see them (18-088 §8.2).

What it is for: the entity sets and their relations (`SETS`), the ids (`Key`), the resource
path of a request read into segments (`parse_path`), and the `Catalogue`: every entity but
the observations, built from the registry for one reader. The mapping:

| entity set | one per | `@iot.id` |
|---|---|---|
| Things | device | the device id (`sf-rlv-01`) |
| Locations | device with `lat`/`lon` | the device id |
| HistoricalLocations | (none: devices do not move) | |
| Sensors | device kind | the kind id (`river_level`) |
| ObservedProperties | registry sensor | the sensor id (`level`) |
| Datastreams | device x sensor | `device:sensor` (`sf-rlv-01:level`) |
| FeaturesOfInterest | device | the device id |
| Observations | reading (`api.sta.observations`) | `device:sensor:ts_ns` |

Ids are strings, written in paths as the standard's quoted keys (`Things('sf-rlv-01')`, a
quote doubled inside); a key of digits only may also go unquoted (`Things(42)`). An anonymous
reader's catalogue holds only the devices of published pilots (`api.access.Reader.sees`): a
private pilot's entities are not listed and answer 404 when named, exactly as an id that
does not exist. This module must not read the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from api.access import Reader
from api.sta.errors import bad, not_found, unsupported
from core.registry import Device, Pilot, Registry, Sensor

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEO_JSON = "application/geo+json"
UCUM = "http://unitsofmeasure.org/ucum.html"
#: UCUM codes of the registry's unit symbols (a unit not listed keeps its symbol).
UCUM_CODES = {"°C": "Cel", "µg/m³": "ug/m3", "mg/m³": "mg/m3", "µS/cm": "uS/cm", "°": "deg"}
#: The full names of the registry's units: a Datastream's `unitOfMeasurement.name` is "the full
#: name of the unitOfMeasurement" (18-088 §8.2.4); a unit not listed is named by its symbol.
UNIT_NAMES = {
    "m": "metre",
    "mm": "millimetre",
    "°C": "degree Celsius",
    "%": "percent",
    "hPa": "hectopascal",
    "m/s": "metre per second",
    "°": "degree",
    "mg/L": "milligram per litre",
    "µS/cm": "microsiemens per centimetre",
    "NTU": "nephelometric turbidity unit",
    "µg/m³": "microgram per cubic metre",
    "mg/m³": "milligram per cubic metre",
    "V": "volt",
}


@dataclass(frozen=True, slots=True)
class EntitySet:
    """An entity set: its singular name and its relations (name -> (target set, to many))."""

    name: str
    singular: str
    relations: dict[str, tuple[str, bool]]


SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        EntitySet(
            "Things",
            "Thing",
            {
                "Locations": ("Locations", True),
                "HistoricalLocations": ("HistoricalLocations", True),
                "Datastreams": ("Datastreams", True),
            },
        ),
        EntitySet(
            "Locations",
            "Location",
            {"Things": ("Things", True), "HistoricalLocations": ("HistoricalLocations", True)},
        ),
        EntitySet(
            "HistoricalLocations",
            "HistoricalLocation",
            {"Thing": ("Things", False), "Locations": ("Locations", True)},
        ),
        EntitySet("Sensors", "Sensor", {"Datastreams": ("Datastreams", True)}),
        EntitySet("ObservedProperties", "ObservedProperty", {"Datastreams": ("Datastreams", True)}),
        EntitySet(
            "Datastreams",
            "Datastream",
            {
                "Thing": ("Things", False),
                "Sensor": ("Sensors", False),
                "ObservedProperty": ("ObservedProperties", False),
                "Observations": ("Observations", True),
            },
        ),
        EntitySet(
            "Observations",
            "Observation",
            {
                "Datastream": ("Datastreams", False),
                "FeatureOfInterest": ("FeaturesOfInterest", False),
            },
        ),
        EntitySet(
            "FeaturesOfInterest", "FeatureOfInterest", {"Observations": ("Observations", True)}
        ),
    )
}

#: The properties of each set (besides `@iot.id`), in the order they are written.
PROPERTIES: dict[str, tuple[str, ...]] = {
    "Things": ("name", "description", "properties"),
    "Locations": ("name", "description", "encodingType", "location", "properties"),
    "HistoricalLocations": ("time",),
    "Sensors": ("name", "description", "encodingType", "metadata", "properties"),
    "ObservedProperties": ("name", "definition", "description", "properties"),
    "Datastreams": (
        "name",
        "description",
        "unitOfMeasurement",
        "observationType",
        "observedArea",
        "phenomenonTime",
        "resultTime",
        "properties",
    ),
    "Observations": ("phenomenonTime", "resultTime", "result"),
    "FeaturesOfInterest": ("name", "description", "encodingType", "feature", "properties"),
}


def quote(key: str) -> str:
    """A key as a path writes it: `'sf-rlv-01'`."""
    return "'" + key.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Segment:
    """One step of a resource path: a set or relation name, and a key if one is given."""

    name: str
    key: str | None = None


#: A set, relation or property name (a key inside a complex property may have `_` and digits),
#: then an optional key. An unquoted key is ASCII digits of any length (the path's own bound
#: holds it): a key no entity has is a 404, however long, not a 400.
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63})(?:\((?:'((?:[^']|'')*)'|([0-9]+))\))?$")
MAX_PATH = 512


def parse_path(path: str) -> list[Segment]:
    """The segments of `Things('x')/Datastreams`; `$ref` and `$value` stay as names."""
    if len(path) > MAX_PATH:
        raise bad(f"the resource path is longer than {MAX_PATH} characters")
    segments: list[Segment] = []
    if not path.strip("/"):
        return segments
    for part in path.strip("/").split("/"):
        if part in ("$ref", "$value"):
            segments.append(Segment(part))
            continue
        match = _SEGMENT.match(part)
        if match is None:
            raise bad(
                f"cannot read the path segment {part[:80]!r}: write an entity set, or one "
                "entity with its id quoted, e.g. Things('sf-rlv-01')"
            )
        name, quoted, digits = match.groups()
        key = quoted.replace("''", "'") if quoted is not None else digits
        segments.append(Segment(name, key))
    return segments


@dataclass(frozen=True)
class Entity:
    """One entity: its set, id, properties, and the registry objects it stands for."""

    set: str
    id: str
    props: dict[str, Any]
    device: Device | None = None
    sensor: Sensor | None = None
    kind: str | None = None
    pilot: Pilot | None = field(default=None, compare=False)


def _point(device: Device) -> dict[str, Any] | None:
    if device.lat is None or device.lon is None:
        return None
    return {"type": "Point", "coordinates": [device.lon, device.lat]}


def _where(device: Device) -> str:
    return device.site or device.id


class Catalogue:
    """Every entity but the observations that `reader` may see, from the registry."""

    def __init__(self, registry: Registry, reader: Reader) -> None:
        self.registry = registry
        self.reader = reader
        self.devices = [d for d in registry.device_list if reader.sees(registry.pilots[d.pilot])]
        self._by_id = {d.id: d for d in self.devices}
        kinds = dict.fromkeys(d.kind for d in self.devices)
        sensors = dict.fromkeys(s for d in self.devices for s in d.sensors)
        self.kinds = list(kinds)
        self.sensors = [s for s in registry.sensor_list if s.id in sensors]

    # -- one entity of each set --------------------------------------------------------------

    def pilot(self, device: Device) -> Pilot:
        """The pilot of a device."""
        return self.registry.pilots[device.pilot]

    def thing(self, d: Device) -> Entity:
        """The Thing of a device."""
        pilot = self.pilot(d)
        props = {
            "name": d.id,
            "description": f"{d.kind.replace('_', ' ')} at {_where(d)}, pilot {pilot.name}",
            "properties": {
                "pilot": d.pilot,
                "kind": d.kind,
                "site": d.site,
                "interval_s": d.interval_s,
            },
        }
        return Entity("Things", d.id, props, device=d, pilot=pilot)

    def location(self, d: Device) -> Entity:
        """The Location of a located device."""
        props = {
            "name": _where(d),
            "description": f"where {d.id} stands",
            "encodingType": GEO_JSON,
            "location": _point(d),
            "properties": {"pilot": d.pilot},
        }
        return Entity("Locations", d.id, props, device=d, pilot=self.pilot(d))

    def feature(self, d: Device) -> Entity:
        """The FeatureOfInterest of a device: what its readings are about, at its point."""
        props = {
            "name": _where(d),
            "description": f"the surroundings of {d.id}",
            "encodingType": GEO_JSON,
            "feature": _point(d),
            "properties": {"pilot": d.pilot},
        }
        return Entity("FeaturesOfInterest", d.id, props, device=d, pilot=self.pilot(d))

    def sensor_kind(self, kind: str) -> Entity:
        """The Sensor of a device kind."""
        interval = sorted({d.interval_s for d in self.devices if d.kind == kind})
        props = {
            "name": kind,
            "description": f"{kind.replace('_', ' ')} device",
            "encodingType": "text/plain",
            "metadata": f"device kind {kind} of the Pilot Telemetry registry",
            "properties": {"interval_s": interval},
        }
        return Entity("Sensors", kind, props, kind=kind)

    def observed(self, s: Sensor) -> Entity:
        """The ObservedProperty of a registry sensor."""
        props = {
            "name": s.name,
            "definition": f"urn:pilot-telemetry:sensor:{s.id}",
            "description": f"{s.name} ({s.unit}), valid from {s.min:g} to {s.max:g}",
            "properties": {"sensor": s.id, "unit": s.unit, "min": s.min, "max": s.max},
        }
        return Entity("ObservedProperties", s.id, props, sensor=s)

    def datastream(self, d: Device, s: Sensor) -> Entity:
        """The Datastream of one sensor of one device (times filled in by the renderer)."""
        props = {
            "name": f"{s.name} at {d.id}",
            "description": f"{s.name} measured by {d.id} at {_where(d)}",
            "unitOfMeasurement": {
                "name": UNIT_NAMES.get(s.unit, s.unit),
                "symbol": s.unit,
                "definition": f"{UCUM}#{UCUM_CODES.get(s.unit, s.unit)}",
            },
            "observationType": OM_MEASUREMENT,
            "observedArea": _point(d),
            "phenomenonTime": None,
            "resultTime": None,
            "properties": {"pilot": d.pilot, "device": d.id, "sensor": s.id},
        }
        return Entity(
            "Datastreams", f"{d.id}:{s.id}", props, device=d, sensor=s, pilot=self.pilot(d)
        )

    @cached_property
    def fanout(self) -> dict[str, int]:
        """The most entities each to-many relation of the small sets leads to.

        Keyed "Set/Relation"; what `api.sta.budget` multiplies an expansion's cost by.
        """
        kinds = {k: [d for d in self.devices if d.kind == k] for k in self.kinds}
        return {
            "Things/Locations": 1,
            "Locations/Things": 1,
            "Things/Datastreams": max((len(d.sensors) for d in self.devices), default=0),
            "Sensors/Datastreams": max(
                (sum(len(d.sensors) for d in ds) for ds in kinds.values()), default=0
            ),
            "ObservedProperties/Datastreams": max(
                (sum(s.id in d.sensors for d in self.devices) for s in self.sensors), default=0
            ),
        }

    # -- sets and lookups --------------------------------------------------------------------

    def datastreams_of(self, devices: list[Device], sensor: str | None = None) -> list[Entity]:
        """The Datastreams of the devices (of one sensor only, if named)."""
        return [
            self.datastream(d, self.registry.sensors[s])
            for d in devices
            for s in d.sensors
            if sensor is None or s == sensor
        ]

    def collection(self, name: str) -> list[Entity]:
        """Every entity of a set this reader sees (not Observations)."""
        sets: dict[str, Callable[[], list[Entity]]] = {
            "Things": lambda: [self.thing(d) for d in self.devices],
            "Locations": lambda: [self.location(d) for d in self.devices if _point(d)],
            "HistoricalLocations": list,
            "Sensors": lambda: [self.sensor_kind(k) for k in self.kinds],
            "ObservedProperties": lambda: [self.observed(s) for s in self.sensors],
            "Datastreams": lambda: self.datastreams_of(self.devices),
            "FeaturesOfInterest": lambda: [self.feature(d) for d in self.devices],
        }
        if name not in sets:
            raise not_found(f"no entity set {name[:40]!r}; the sets: {', '.join(SETS)}")
        return sets[name]()

    def device(self, device_id: str) -> Device | None:
        """A device this reader sees."""
        return self._by_id.get(device_id)

    def get(self, name: str, key: str) -> Entity:
        """One entity by set and id (not Observations); 404 if absent or not visible."""
        # The sets are small (one entity per device, kind, sensor or device x sensor).
        for entity in self.collection(name):
            if entity.id == key:
                return entity
        raise not_found(f"no {SETS[name].singular} with id {quote(key)}")

    def related(self, entity: Entity, relation: str) -> list[Entity] | Entity | None:
        """The entities a relation of a (non-Observation) entity leads to."""
        d, s = entity.device, entity.sensor
        many: dict[str, Callable[[], list[Entity]]] = {
            "Things/Locations": lambda: [self.location(d)] if d and _point(d) else [],
            "Things/Datastreams": lambda: self.datastreams_of([d]) if d else [],
            "Locations/Things": lambda: [self.thing(d)] if d else [],
            "Sensors/Datastreams": lambda: self.datastreams_of(
                [x for x in self.devices if x.kind == entity.kind]
            ),
            "ObservedProperties/Datastreams": lambda: self.datastreams_of(
                [x for x in self.devices if s and s.id in x.sensors], s.id if s else None
            ),
        }
        key = f"{entity.set}/{relation}"
        if key in many:
            return many[key]()
        if relation == "HistoricalLocations":
            return []
        if entity.set == "Datastreams" and d is not None and s is not None:
            if relation == "Thing":
                return self.thing(d)
            if relation == "Sensor":
                return self.sensor_kind(d.kind)
            if relation == "ObservedProperty":
                return self.observed(s)
        raise not_found(f"{SETS[entity.set].singular} has no relation {relation[:40]!r}")


def lookup(entity: Entity, path: str) -> Any:
    """A property's value by `$filter`/`$orderby` path (`name`, `properties/pilot`, `id`)."""
    if path in ("id", "@iot.id"):
        return entity.id
    head, _, rest = path.partition("/")
    if entity.set == "Datastreams" and head in ("phenomenonTime", "resultTime"):
        raise unsupported(f"$filter and $orderby on a Datastream's {head} are not supported")
    if head not in entity.props:
        if head in SETS[entity.set].relations:
            raise unsupported(
                f"navigation paths ({path[:60]}) in $filter and $orderby are not supported"
            )
        raise bad(f"{entity.set} have no property {head[:40]!r}")
    value = entity.props[head]
    for part in rest.split("/") if rest else ():
        value = value.get(part) if isinstance(value, dict) else None
    return value

"""The resource path of a SensorThings request walked to what it names (18-088 §9.2).

What it is for: `Resolver.resolve` takes the path's segments (`api.sta.model.parse_path`) and
gives the target: an entity of a small set (`api.sta.model.Entity`), one `Observation`, a
collection of entities (`EntityList`) or of observations (`ObservationList`, the series it
spans, in the order of their Observations' ids: `by_id`), and the property, `$ref` or
`$value` that follows. Relations are followed one step at a time (`related`); an Observation
named by id is read from the store, one reading. The series of a Datastream is cut to what
the reader may see (`series`). This module must not shape answers (`api.sta.render` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.sta.errors import bad, not_found
from api.sta.model import PROPERTIES, SETS, Catalogue, Entity, Segment, quote
from api.sta.observations import EARLIEST_NS, LATEST_NS, ObservationReader, Series
from core.registry import Device, Sensor


@dataclass(frozen=True)
class Observation:
    """One reading as an Observation."""

    series: Series
    ts_ns: int
    value: float


@dataclass(frozen=True)
class EntityList:
    """A collection of entities of a small set, and its path under the service root."""

    set: str
    items: list[Entity]
    path: str


@dataclass(frozen=True)
class ObservationList:
    """The observations of some series, and the collection's path under the service root."""

    series: list[Series]
    path: str


Target = Entity | Observation | EntityList | ObservationList


def by_id(series: list[Series]) -> list[Series]:
    """The series in the order of their Observations' ids (`device:sensor:ts_ns`) as text.

    Sorted by `device:sensor:` rather than the Datastream id, so that a `-` or a digit after a
    shorter id (`a:b-x` against `a:b`) orders as it does in the ids of the Observations.
    Within a series the ids follow time, which is also their text order while the times have
    the same number of digits (19: from 2001-09-09 to 2286).
    """
    return sorted(series, key=lambda s: s.id + ":")


class Resolver:
    """Walks paths for one reader over one store."""

    def __init__(self, catalogue: Catalogue, reader: ObservationReader, root: str) -> None:
        self.catalogue = catalogue
        self.reader = reader
        self.root = root

    def series(self, d: Device, s: Sensor) -> Series:
        """The series of a Datastream within what this reader may see of it."""
        pilot = self.catalogue.pilot(d)
        lo, hi = self.catalogue.reader.period(pilot).clip(EARLIEST_NS, LATEST_NS)
        return Series(pilot, d, s, lo, hi)

    def observation(self, key: str) -> Observation:
        """An Observation by id (`device:sensor:ts_ns`); 404 when absent or not visible."""
        device_id, _, rest = key.partition(":")
        sensor_id, _, stamp = rest.partition(":")
        d = self.catalogue.device(device_id)
        # ASCII digits only (`str.isdigit` is true for '²'); an int64 has at most 19 digits.
        if d is None or sensor_id not in d.sensors or not re.fullmatch(r"-?[0-9]{1,19}", stamp):
            raise not_found(f"no Observation with id {quote(key)}")
        s = self.series(d, self.catalogue.registry.sensors[sensor_id])
        value = self.reader.one(s, int(stamp))
        if value is None:
            raise not_found(f"no Observation with id {quote(key)}")
        return Observation(s, int(stamp), value)

    def top_level(self, segment: Segment) -> Target:
        """The first segment: an entity set or one of its entities."""
        if segment.name not in SETS:
            raise not_found(f"no entity set {segment.name!r}; the sets: {', '.join(SETS)}")
        if segment.name == "Observations":
            if segment.key is not None:
                return self.observation(segment.key)
            devices = self.catalogue.devices
            return ObservationList(
                by_id(
                    [
                        self.series(d, self.catalogue.registry.sensors[s])
                        for d in devices
                        for s in d.sensors
                    ]
                ),
                "Observations",
            )
        if segment.key is not None:
            return self.catalogue.get(segment.name, segment.key)
        return EntityList(segment.name, self.catalogue.collection(segment.name), segment.name)

    def related(self, entity: Entity | Observation, relation: str, path: str) -> Target | None:
        """Where a relation of one entity leads; `path` is the relation's own path."""
        if isinstance(entity, Observation):
            if relation == "Datastream":
                return self.catalogue.datastream(entity.series.device, entity.series.sensor)
            return self.catalogue.feature(entity.series.device)
        device, sensor = entity.device, entity.sensor
        if relation == "Observations" and device is not None:
            registry = self.catalogue.registry
            sensors = [sensor] if sensor else [registry.sensors[x] for x in device.sensors]
            return ObservationList(by_id([self.series(device, x) for x in sensors]), path)
        found = self.catalogue.related(entity, relation)
        if isinstance(found, list):
            return EntityList(SETS[entity.set].relations[relation][0], found, path)
        return found

    def resolve(self, segments: list[Segment]) -> tuple[Target, str | None, str | None]:
        """The target of the path, the property it names (if any), and `$ref`/`$value`.

        The property is a path when it goes into a complex value (`unitOfMeasurement/symbol`).
        """
        target = self.top_level(segments[0])
        path = segments[0].name + (f"({quote(segments[0].key)})" if segments[0].key else "")
        prop: str | None = None
        for i, seg in enumerate(segments[1:], start=1):
            last = i == len(segments) - 1
            if seg.name in ("$ref", "$value"):
                if not last or (seg.name == "$value") != (prop is not None):
                    after = "a property" if seg.name == "$value" else "entities"
                    raise bad(f"{seg.name} ends a path, after {after}")
                return target, prop, seg.name
            if prop is not None and seg.key is None:
                # A key inside a complex property (18-088 §9.2.4): `properties/pilot`.
                prop = f"{prop}/{seg.name}"
                continue
            if prop is not None or isinstance(target, EntityList | ObservationList):
                raise bad(
                    f"cannot go on from {path!r} to {seg.name!r}: name one entity first, "
                    "e.g. Things('id')"
                )
            target, path, prop = self._step(target, path, seg)
        return target, prop, None

    def _step(
        self, target: Entity | Observation, path: str, seg: Segment
    ) -> tuple[Target, str, str | None]:
        """One segment after one entity: a relation (the new target and path) or a property."""
        set_name = "Observations" if isinstance(target, Observation) else target.set
        if seg.name in SETS[set_name].relations:
            path = f"{path}/{seg.name}"
            found = self.related(target, seg.name, path)
            if found is None:
                raise not_found(f"{path} is empty")
            if seg.key is None:
                return found, path, None
            return self._keyed(found, seg), f"{path}({quote(seg.key)})", None
        if seg.name in PROPERTIES[set_name] or seg.name == "id":
            if seg.key is not None:
                raise bad(f"a property takes no key: {seg.name}")
            return target, path, seg.name
        raise not_found(f"{SETS[set_name].singular} has no property or relation {seg.name!r}")

    def _keyed(self, found: Target, seg: Segment) -> Target:
        assert seg.key is not None
        if isinstance(found, EntityList):
            for entity in found.items:
                if entity.id == seg.key:
                    return entity
            raise not_found(f"no {SETS[found.set].singular} with id {quote(seg.key)} there")
        if isinstance(found, ObservationList):
            observation = self.observation(seg.key)
            if observation.series.id not in {s.id for s in found.series}:
                raise not_found(f"no Observation with id {quote(seg.key)} there")
            return observation
        raise bad(f"{seg.name} is one entity; it takes no key")

    # -- answering ---------------------------------------------------------------------------

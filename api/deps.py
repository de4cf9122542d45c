"""Dependencies shared by the routes, as `Annotated` aliases.

The app keeps its settings, registry and store on `app.state` (set by `api.app.create_app`);
these helpers hand them to routes and turn path and query text into validated values once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from api.problems import Problem
from core.registry import Pilot, Registry
from core.settings import Settings
from core.store import Store
from core.timeutil import NS_PER_S, parse_duration_s, parse_instant_ns

DEFAULT_RANGE_S = 24 * 3600


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RegistryDep = Annotated[Registry, Depends(_registry)]
StoreDep = Annotated[Store, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _pilot(
    registry: RegistryDep,
    pilot: Annotated[str, Path(description="pilot id, e.g. santa-fe", max_length=64)],
) -> Pilot:
    found = registry.pilots.get(pilot)
    if found is None:
        known = ", ".join(registry.pilots)
        raise Problem(404, f"unknown pilot {pilot!r}; known pilots: {known}")
    return found


PilotDep = Annotated[Pilot, Depends(_pilot)]


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A validated half-open range `[start_ns, end_ns)`."""

    start_ns: int
    end_ns: int


def _instant(name: str, text: str) -> int:
    try:
        return parse_instant_ns(text)
    except ValueError as exc:
        raise Problem(422, f"{name}: {exc}") from exc


def _time_range(
    start: Annotated[
        str | None,
        Query(description="RFC 3339 with offset; default: 24 h before end", max_length=64),
    ] = None,
    end: Annotated[
        str | None, Query(description="RFC 3339 with offset; default: now", max_length=64)
    ] = None,
) -> TimeRange:
    end_ns = _instant("end", end) if end is not None else time.time_ns()
    start_ns = (
        _instant("start", start) if start is not None else end_ns - DEFAULT_RANGE_S * NS_PER_S
    )
    if start_ns >= end_ns:
        raise Problem(422, "start must be before end")
    return TimeRange(start_ns, end_ns)


TimeRangeDep = Annotated[TimeRange, Depends(_time_range)]


def _every(
    every: Annotated[
        str, Query(description="window length: a whole number with s, m, h, d or w", max_length=16)
    ] = "10m",
) -> int:
    try:
        return parse_duration_s(every)
    except ValueError as exc:
        raise Problem(422, f"every: {exc}") from exc


EverySecondsDep = Annotated[int, Depends(_every)]

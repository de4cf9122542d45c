"""Dependencies shared by the routes, as `Annotated` aliases.

The app's typed state (`api.state.AppState`, built by `api.app.create_app`) is read here and
nowhere else: each thing a route needs has its alias (`SettingsDep`, `RegistryDep`,
`StoreDep`, `SeriesDep`, `ReportsDep`, `ScanSlotsDep`, `MetricsDep`, `AlarmsDep`,
`StreamBoundsDep`). The other helpers turn path and query text into validated values once.
This module must not query the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import tzinfo
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from api.metrics import ApiMetrics
from api.problems import Problem
from api.services.alerts import AlarmService, StreamBounds
from api.services.report_cache import ReportCache
from api.services.series import SeriesService
from api.services.slots import ScanSlots
from api.state import AppState
from core.registry import Pilot, Registry
from core.settings import Settings
from core.store import Store
from core.timeutil import DAY_NS, MINUTE_NS, NS_PER_S, parse_instant_ns, parse_local_instant_ns
from core.windows import Fixed, WindowSpec, parse_window

#: Most values of a repeated query parameter (repeats are dropped first, then counted).
MAX_SENSORS = 20
MAX_DEVICES = 64
DEFAULT_RANGE_S = 24 * 3600
#: Instants a request may name: far enough from int64's ends (1677-2262) that widening to
#: whole windows and adding the flags' context never overflows, and wide enough for any data.
EARLIEST_NS = -2_208_988_800 * NS_PER_S  # 1900-01-01T00:00:00Z
LATEST_NS = 7_258_118_400 * NS_PER_S  # 2200-01-01T00:00:00Z
#: The longest window `every` may name, in seconds (a year and a day).
MAX_EVERY_S = 366 * 86_400


def _state(request: Request) -> AppState:
    # Not checked with isinstance: an app assembled by hand (bench's baseline server) sets
    # only the attributes that the aliases it uses read, on a plain `State`.
    state: AppState = request.app.state
    return state


AppStateDep = Annotated[AppState, Depends(_state)]


def _settings(state: AppStateDep) -> Settings:
    return state.settings


def _registry(state: AppStateDep) -> Registry:
    return state.registry


def _store(state: AppStateDep) -> Store:
    return state.store


def _series(state: AppStateDep) -> SeriesService:
    return state.series


def _reports(state: AppStateDep) -> ReportCache:
    return state.reports


def _slots(state: AppStateDep) -> ScanSlots:
    return state.slots


def _metrics(state: AppStateDep) -> ApiMetrics:
    return state.metrics


def _alarms(state: AppStateDep) -> AlarmService:
    return state.alarms


def _stream_bounds(state: AppStateDep) -> StreamBounds:
    return state.streams


SettingsDep = Annotated[Settings, Depends(_settings)]
RegistryDep = Annotated[Registry, Depends(_registry)]
StoreDep = Annotated[Store, Depends(_store)]
SeriesDep = Annotated[SeriesService, Depends(_series)]
ReportsDep = Annotated[ReportCache, Depends(_reports)]
ScanSlotsDep = Annotated[ScanSlots, Depends(_slots)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
AlarmsDep = Annotated[AlarmService, Depends(_alarms)]
StreamBoundsDep = Annotated[StreamBounds, Depends(_stream_bounds)]


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


def _local_zone(request: Request, registry: Registry) -> tzinfo | None:
    """The zone of the pilot a request names (path or query), if it names exactly one."""
    name = request.path_params.get("pilot") or request.query_params.get("pilot")
    pilot = registry.pilots.get(name) if isinstance(name, str) else None
    return pilot.tz if pilot is not None else None


def instant_ns(name: str, text: str, zone: tzinfo | None = None) -> int:
    """An instant from RFC 3339 text (or local text in `zone`), or a 422 naming `name`."""
    return _instant(name, text, zone)


def _instant(name: str, text: str, zone: tzinfo | None) -> int:
    try:
        ts_ns = parse_instant_ns(text) if zone is None else parse_local_instant_ns(text, zone)
    except (ValueError, OverflowError) as exc:
        raise Problem(422, f"{name}: {exc}") from exc
    if not EARLIEST_NS <= ts_ns < LATEST_NS:
        raise Problem(422, f"{name}: must be from 1900-01-01 to before 2200-01-01")
    return ts_ns


INSTANT_HELP = (
    "RFC 3339 with offset (2026-11-20T00:00:00-03:00); where a pilot is named, also a date "
    "(2026-11-20: its local midnight) or a local time without offset"
)


def _time_range(
    request: Request,
    settings: SettingsDep,
    registry: RegistryDep,
    start: Annotated[
        str | None,
        Query(description=f"{INSTANT_HELP}; default: 24 h before end", max_length=64),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description=f"{INSTANT_HELP}; default: now (rounded up to the minute)", max_length=64
        ),
    ] = None,
) -> TimeRange:
    zone = _local_zone(request, registry)
    # "Now" rounded up to the minute: requests within a minute share one kept answer.
    end_ns = (
        _instant("end", end, zone)
        if end is not None
        else -(-time.time_ns() // MINUTE_NS) * MINUTE_NS
    )
    start_ns = (
        _instant("start", start, zone) if start is not None else end_ns - DEFAULT_RANGE_S * NS_PER_S
    )
    if start_ns >= end_ns:
        raise Problem(422, "start must be before end")
    limit_days = settings.api_max_range_days
    if end_ns - start_ns > limit_days * DAY_NS:
        raise Problem(
            400, f"the range is longer than {limit_days} days (PILOTS_API_MAX_RANGE_DAYS)"
        )
    return TimeRange(start_ns, end_ns)


TimeRangeDep = Annotated[TimeRange, Depends(_time_range)]


def parse_every(text: str, tz: tzinfo, origin_ns: int) -> WindowSpec:
    """A window spec from `every` (a duration, or day / week / month), or a 422 naming it."""
    try:
        spec = parse_window(text, tz, origin_ns)
    except ValueError as exc:
        raise Problem(422, f"every: {exc}; or day, week, month for local calendar windows") from exc
    if isinstance(spec, Fixed) and spec.every_ns > MAX_EVERY_S * NS_PER_S:
        raise Problem(422, f"every: {text!r} is longer than 366 days")
    return spec


EveryQuery = Annotated[
    str,
    Query(
        description="window: a duration (10m, 1h, 1d; aligned to the pilot's local clock) or "
        "day, week, month (local calendar)",
        max_length=16,
        pattern=r"^[A-Za-z0-9]+$",
    ),
]


DevicesQuery = Annotated[
    list[str] | None,
    Query(
        description=f"only these devices; repeat for several (at most {MAX_DEVICES})",
        max_length=MAX_DEVICES,
    ),
]


def unique(values: list[str]) -> list[str]:
    """The values without repeats, in first-seen order (a repeat would read the data again)."""
    return list(dict.fromkeys(values))

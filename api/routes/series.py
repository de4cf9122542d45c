"""`GET /pilots/{pilot}/series` and `GET /compare`: windowed statistics."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.access import PublicPilotDep, PublicReadAccess
from api.auth import ReadAccess
from api.deps import (
    MAX_SENSORS,
    DevicesQuery,
    EveryQuery,
    RegistryDep,
    SeriesDep,
    TimeRangeDep,
    parse_every,
    unique,
)
from api.problems import BUSY_503, Problem, responses
from api.responses import json_response
from api.schemas import CompareOut, SeriesOut
from api.services.errors import QueryError
from api.services.series import SERIES_STATS, SeriesQuery, label
from core.registry import Pilot
from core.timeutil import utc_offset_ns
from core.windows import edges

router = APIRouter(tags=["series"])

ERRORS = responses(400, 401, 404, 422, 503, _503=BUSY_503)

SensorsQuery = Annotated[
    list[str],
    Query(
        description=f"sensor id, e.g. level or pm25; repeat for several (at most {MAX_SENSORS})",
        max_length=MAX_SENSORS,
    ),
]


def _statistics(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SERIES_STATS]
    if unknown or not names:
        raise Problem(
            422, f"stats: unknown {unknown or text!r}; choose from {', '.join(SERIES_STATS)}"
        )
    return ["count", *[s for s in dict.fromkeys(names) if s != "count"]]


def _origin(pilot: Pilot, start_ns: int) -> int:
    # Aligning to the local offset makes `1d` windows run from local midnight to midnight.
    return -utc_offset_ns(pilot.tz, start_ns)


@router.get("/pilots/{pilot}/series", responses=ERRORS, response_model=SeriesOut)
def get_series(
    *,
    reader: PublicReadAccess,
    pilot: PublicPilotDep,
    sensor: SensorsQuery,
    window: TimeRangeDep,
    series: SeriesDep,
    every: EveryQuery = "10m",
    device: DevicesQuery = None,
    stats: Annotated[
        str,
        Query(
            description=f"comma-separated, from: {', '.join(SERIES_STATS)} (pNN exact "
            "quantiles; from rollups on long ranges, within 1 %)",
            max_length=200,
        ),
    ] = "count,mean,min,max",
    pooled: Annotated[bool, Query(description="one line for all devices together")] = False,
    exclude_flagged: Annotated[
        bool, Query(description="leave out readings flagged as stuck, spike or out of range")
    ] = False,
) -> Response:
    """Statistics of one or more sensors per window, per device or pooled.

    Windows are aligned to the pilot's local time (`1d` runs from local midnight); `day`,
    `week` and `month` are local calendar windows. Every window of the range is present for
    every device, with count 0 and null statistics when it sent nothing. Without a token: a
    published pilot, its windows within its published period.
    """
    sensor, device = unique(sensor), None if device is None else unique(device)
    for name in sensor:
        if name not in pilot.sensors:
            raise Problem(
                404,
                f"unknown sensor {name!r} for pilot {pilot.id!r}; "
                f"its sensors: {', '.join(pilot.sensors)}",
            )
    for name in device or ():
        if name not in {d.id for d in pilot.devices}:
            raise Problem(404, f"unknown device {name!r} in pilot {pilot.id!r}")
    query = SeriesQuery(
        pilot=pilot,
        sensors=sensor,
        devices=device,
        window=(spec := parse_every(every, pilot.tz, _origin(pilot, window.start_ns))),
        window_label=label(spec),
        start_ns=window.start_ns,
        end_ns=window.end_ns,
        statistics=_statistics(stats),
        pooled=pooled,
        exclude_flagged=exclude_flagged,
    )
    if reader.anonymous:  # the windows, not only the range, must lie in the public period
        widened = edges(spec, window.start_ns, window.end_ns)
        reader.window(pilot, int(widened[0]), int(widened[-1]))
    try:
        return Response(series.series_json(query), media_type="application/json")
    except QueryError as exc:
        raise Problem(400, str(exc)) from exc


@router.get("/compare", responses=ERRORS, response_model=CompareOut)
def compare(
    *,
    _: ReadAccess,
    sensor: Annotated[str, Query(description="sensor id, e.g. temperature", max_length=64)],
    window: TimeRangeDep,
    registry: RegistryDep,
    series: SeriesDep,
    every: EveryQuery = "1d",
) -> Response:
    """One sensor across the pilots that measure it, each pilot's devices pooled."""
    pilots = [p for p in registry.pilot_list if sensor in p.sensors]
    if not pilots:
        raise Problem(404, f"no pilot measures {sensor!r}")
    spec = parse_every(every, pilots[0].tz, _origin(pilots[0], window.start_ns))
    try:
        return json_response(
            series.compare(
                sensor,
                pilots=pilots,
                window=spec,
                window_label=label(spec),
                start_ns=window.start_ns,
                end_ns=window.end_ns,
            )
        )
    except QueryError as exc:
        raise Problem(400, str(exc)) from exc

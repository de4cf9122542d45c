"""`GET /pilots/{pilot}/series`: windowed statistics of one sensor, per device."""

from typing import Annotated

from fastapi import APIRouter, Query

from api import services
from api.deps import EverySecondsDep, PilotDep, RegistryDep, SettingsDep, StoreDep, TimeRangeDep
from api.problems import Problem
from api.schemas import SeriesOut

router = APIRouter(tags=["series"])


@router.get(
    "/pilots/{pilot}/series",
    responses={
        400: {"description": "the answer would exceed the points limit"},
        404: {"description": "unknown pilot or sensor"},
        422: {"description": "malformed or reversed time range, or malformed window length"},
    },
)
def get_series(
    *,
    pilot: PilotDep,
    sensor: Annotated[str, Query(description="sensor id, e.g. level or pm25", max_length=64)],
    window: TimeRangeDep,
    every_s: EverySecondsDep,
    registry: RegistryDep,
    store: StoreDep,
    settings: SettingsDep,
) -> SeriesOut:
    """Count, mean, min and max of `sensor` per device in windows of `every`.

    Windows are aligned to the pilot's local time (a `1d` window runs from local midnight);
    every window of the range is present for every device, with count 0 when it sent nothing.
    """
    if sensor not in pilot.sensors:
        raise Problem(
            404,
            f"unknown sensor {sensor!r} for pilot {pilot.id!r}; "
            f"its sensors: {', '.join(pilot.sensors)}",
        )
    try:
        return services.series(
            registry,
            store,
            pilot,
            sensor,
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            every_s=every_s,
            max_points=settings.api_max_points,
        )
    except services.QueryTooLargeError as exc:
        raise Problem(400, str(exc)) from exc

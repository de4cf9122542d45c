"""`GET /export`: raw readings or windowed statistics as CSV or Parquet.

Tagged `data` in the OpenAPI document: the tag its clients already group it under.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.auth import ReadAccess
from api.deps import (
    MAX_SENSORS,
    DevicesQuery,
    RegistryDep,
    ScanSlotsDep,
    SeriesDep,
    SettingsDep,
    StoreDep,
    TimeRangeDep,
    parse_every,
    unique,
)
from api.problems import BUSY_503, Problem, responses
from api.services import export as exporting
from api.services.errors import QueryError
from api.services.series import SeriesQuery, label
from core.timeutil import utc_offset_ns

router = APIRouter(tags=["data"])

MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


@router.get(
    "/export",
    responses={
        200: {"content": {MEDIA["csv"]: {}, MEDIA["parquet"]: {}}},
        **responses(400, 401, 404, 422, 503, _404="unknown pilot, sensor or device", _503=BUSY_503),
    },
)
def export(
    *,
    _: ReadAccess,
    pilot: Annotated[str, Query(description="pilot id", max_length=64)],
    sensor: Annotated[
        list[str],
        Query(
            description=f"sensor id; repeat for several (at most {MAX_SENSORS})",
            max_length=MAX_SENSORS,
        ),
    ],
    window: TimeRangeDep,
    registry: RegistryDep,
    store: StoreDep,
    settings: SettingsDep,
    series: SeriesDep,
    slots: ScanSlotsDep,
    format: Annotated[Literal["csv", "parquet"], Query(description="csv or parquet")] = "csv",
    every: Annotated[
        str | None,
        Query(
            description="omit for raw readings; else a window as in /series",
            max_length=16,
            pattern=r"^[A-Za-z0-9]+$",
        ),
    ] = None,
    device: DevicesQuery = None,
) -> StreamingResponse:
    """Raw readings, or windowed statistics, of a pilot's sensors, streamed as CSV or Parquet."""
    sensor, device = unique(sensor), None if device is None else unique(device)
    found = registry.pilots.get(pilot)
    if found is None:
        raise Problem(404, f"unknown pilot {pilot!r}; known pilots: {', '.join(registry.pilots)}")
    for name in sensor:
        if name not in found.sensors:
            raise Problem(404, f"unknown sensor {name!r} for pilot {pilot!r}")
    for name in device or ():
        if name not in {d.id for d in found.devices}:
            raise Problem(404, f"unknown device {name!r} in pilot {pilot!r}")
    try:
        if every is None:
            table = exporting.raw(
                registry,
                store,
                found,
                sensors=sensor,
                start_ns=window.start_ns,
                end_ns=window.end_ns,
                devices=device,
                max_rows=settings.api_export_max_rows,
                max_scan_readings=settings.api_max_scan_readings,
                slots=slots,
            )
        else:
            spec = parse_every(every, found.tz, -utc_offset_ns(found.tz, window.start_ns))
            query = SeriesQuery(
                pilot=found,
                sensors=sensor,
                devices=device,
                window=spec,
                window_label=label(spec),
                start_ns=window.start_ns,
                end_ns=window.end_ns,
                statistics=["count", "mean", "min", "max", "std"],
                pooled=False,
                exclude_flagged=False,
            )
            table = exporting.windowed(series, query)
    except QueryError as exc:
        raise Problem(400, str(exc)) from exc
    chunks = exporting.on_disk(
        exporting.csv_chunks(table, found.timezone)
        if format == "csv"
        else exporting.parquet_chunks(table)
    )
    filename = f"{table.filename}.{format}"
    del table  # only the file is held while the body is sent
    return StreamingResponse(
        chunks,
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

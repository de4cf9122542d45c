"""The folder's tables: readings, daily statistics and devices, as CSV and as Parquet.

Readings are the export service's rows (`api.services.export.raw`), read one slice of the
period at a time (`SLICE_READINGS` as the registry expects them) and appended to both files, so
memory holds a slice, never the period. Daily statistics are the series service's local days
through the export service's `windowed`, one sensor at a time, with the report's completeness
of each device and day; a day the period cuts is asked for as its part in the period alone, so
no day counts a reading outside the period. Devices are the registry's. Each writer returns the
rows it wrote. This module must not compute a figure or format a time itself: the values, and
the CSV text, are the services' (`api.services.export.csv_chunks`); it adds units and arranges.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilots.publishing.period import Period, Services

if TYPE_CHECKING:
    import pyarrow as pa

    from api.schemas import CompletenessMapOut
    from api.services.export import Export
    from core.registry import Registry
    from core.windows import WindowSpec

#: Readings the registry expects in one slice of the period, read and appended at a time.
SLICE_READINGS = 100_000
DAILY_STATISTICS = ("count", "mean", "min", "max", "std")


class _Table:
    """One table appended to as CSV and as Parquet, slice by slice."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema, tz_name: str) -> None:
        import pyarrow.parquet as pq

        self.schema = schema
        self.tz_name = tz_name
        self.csv = (folder / f"{name}.csv").open("wb")
        self.parquet = pq.ParquetWriter(folder / f"{name}.parquet", schema, compression="zstd")
        self.rows = 0

    def append(self, export: Export) -> None:
        """The slice's rows at the end of both files (the CSV header once, first)."""
        import pyarrow as pa

        from api.services.export import csv_chunks

        chunks = csv_chunks(export, self.tz_name)
        first = next(chunks)
        if self.csv.tell():  # the header is already there
            first = first.split(b"\r\n", 1)[1]
        self.csv.write(first)
        for chunk in chunks:
            self.csv.write(chunk)
        table = pa.table(export.columns).select(self.schema.names).cast(self.schema)
        self.parquet.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        """Both files finished (the Parquet footer written)."""
        self.csv.close()
        self.parquet.close()


def _units(registry: Registry, sensors: Any) -> pa.Array:
    """The unit of each row's sensor."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(registry.sensors)
    index = pc.index_in(sensors, value_set=pa.array(names, type=pa.string()))
    return pa.array([registry.sensors[n].unit for n in names], type=pa.string()).take(index)


def _slices(period: Period) -> Iterator[tuple[int, int]]:
    """The period cut in slices of about `SLICE_READINGS` readings as the registry expects."""
    from api.services import cost
    from core.timeutil import DAY_NS, HOUR_NS

    per_day = max(cost.readings(period.pilot.devices, None, DAY_NS), 1)
    step = max(HOUR_NS, DAY_NS * SLICE_READINGS // per_day // HOUR_NS * HOUR_NS)
    for lo in range(period.start_ns, period.end_ns, step):
        yield lo, min(lo + step, period.end_ns)


def write_readings(services: Services, period: Period, folder: Path) -> int:
    """`readings.csv` and `.parquet`: the export's rows, slice after slice, with units."""
    import pyarrow as pa

    from api.services import export
    from api.services.export import Export

    schema = pa.schema(
        [
            ("time", pa.timestamp("ns", tz="UTC")),
            ("device", pa.string()),
            ("sensor", pa.string()),
            ("value", pa.float64()),
            ("unit", pa.string()),
        ]
    )
    table = _Table(folder, "readings", schema, period.pilot.timezone)
    limit = services.settings.api_export_max_rows
    try:
        for lo, hi in _slices(period):
            part = export.raw(
                services.registry,
                services.store,
                period.pilot,
                sensors=period.pilot.sensors,
                start_ns=lo,
                end_ns=hi,
                devices=None,
                max_rows=limit,  # the whole period was counted against it already
                max_scan_readings=limit,
                slots=services.slots,
            )
            units = _units(services.registry, part.columns["sensor"])
            table.append(Export(part.filename, {**part.columns, "unit": units}))
    finally:
        table.close()
    return table.rows


def _days(period: Period) -> list[tuple[WindowSpec, int, int]]:
    """The period as series queries of local days, none reaching outside it.

    The series service widens a range to whole windows: whole days are asked as calendar
    days, and a day the period cuts (a start or an end that is not local midnight) as one
    fixed window of exactly its part in the period.
    """
    from core.windows import Calendar, Fixed, calendar_edges

    start, end, tz = period.start_ns, period.end_ns, period.pilot.tz
    midnights = calendar_edges(start, end, "day", tz).tolist()
    first = midnights[1] if midnights[0] < start else midnights[0]
    last = midnights[-2] if midnights[-1] > end else midnights[-1]
    if first > last:  # within one day, touching neither of its midnights
        return [(Fixed(end - start, start), start, end)]
    parts: list[tuple[WindowSpec, int, int]] = []
    if start < first:
        parts.append((Fixed(first - start, start), start, first))
    if first < last:
        parts.append((Calendar("day", tz), first, last))
    if last < end:
        parts.append((Fixed(end - last, last), last, end))
    return parts


def write_daily(
    services: Services, period: Period, folder: Path, completeness: CompletenessMapOut
) -> int:
    """`daily.csv` and `.parquet`: the series' local-day windows, one sensor at a time."""
    import pyarrow as pa

    from api.services import export
    from api.services.export import Export
    from api.services.series import SeriesQuery

    fields = [
        ("day", pa.date32()),
        ("window_start", pa.timestamp("ns", tz="UTC")),
        ("device", pa.string()),
        ("sensor", pa.string()),
        ("unit", pa.string()),
        ("count", pa.int64()),
        *[(name, pa.float64()) for name in DAILY_STATISTICS if name != "count"],
        ("device_completeness", pa.float64()),
    ]
    table = _Table(folder, "daily", pa.schema(fields), period.pilot.timezone)
    ratio = {
        (day, device): row[d]
        for device, row in zip(completeness.devices, completeness.ratio, strict=True)
        for d, day in enumerate(completeness.days)
    }
    tz = period.pilot.tz
    try:
        for sensor, (window, start_ns, end_ns) in product(period.pilot.sensors, _days(period)):
            query = SeriesQuery(
                pilot=period.pilot,
                sensors=[sensor],
                devices=None,
                window=window,
                window_label="day",
                start_ns=start_ns,
                end_ns=end_ns,
                statistics=list(DAILY_STATISTICS),
                pooled=False,
                exclude_flagged=False,
            )
            part = export.windowed(services.series, query)
            starts = part.columns["window_start"].to_pylist()
            days = [t.astimezone(tz).date() for t in starts]
            devices = part.columns["device"].to_pylist()
            extra = {
                "day": pa.array(days, type=pa.date32()),
                "unit": _units(services.registry, part.columns["sensor"]),
                "device_completeness": pa.array(
                    [ratio.get(key) for key in zip(days, devices, strict=True)], type=pa.float64()
                ),
            }
            columns = {**part.columns, **extra}
            table.append(Export(part.filename, {name: columns[name] for name, _ in fields}))
    finally:
        table.close()
    return table.rows


def write_devices(period: Period, path: Path) -> int:
    """`devices.csv`: the pilot's devices as the registry describes them."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "kind", "site", "lat", "lon", "interval_s", "sensors"])
        for d in period.pilot.devices:
            lat, lon = ("" if v is None else v for v in (d.lat, d.lon))
            writer.writerow([d.id, d.kind, d.site, lat, lon, d.interval_s, " ".join(d.sensors)])
    return len(period.pilot.devices)

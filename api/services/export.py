"""Exports: raw readings or windowed statistics as CSV or Parquet, for pandas, R or a sheet.

The answer is produced in chunks (CSV) or as one file built in a temporary spool (Parquet needs
its footer last), so memory stays bounded by one scan; a scan larger than
`PILOTS_API_EXPORT_MAX_ROWS` is refused before anything is sent. Counting, reading and
building the table take one of the process's `ScanSlots` (a windowed export takes the series'
slot). The slot is given back before the table is sent, and the table is written whole into
an unnamed temporary file before the first byte goes out (`on_disk`): a slow or stalled reader
holds a file, never the table's memory nor a slot.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from api.services import cost
from api.services.errors import QueryError
from api.services.series import SeriesQuery, SeriesService
from api.services.slots import ScanSlots
from api.services.sources import too_many
from core.registry import Pilot, Registry
from core.store import Store
from core.timeutil import ns_to_datetime

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class Export:
    """A named table, ready to be sent as CSV or Parquet."""

    filename: str
    columns: dict[str, pa.Array]


def raw(
    registry: Registry,
    store: Store,
    pilot: Pilot,
    *,
    sensors: Sequence[str],
    start_ns: int,
    end_ns: int,
    devices: Sequence[str] | None,
    max_rows: int,
    max_scan_readings: int,
    slots: ScanSlots,
) -> Export:
    """Every reading of the sensors in the range: time (UTC and local), device, sensor, value.

    Refused before the scan when the registry says it would read more than `max_scan_readings`
    (or `max_rows`), and after it when the store holds more than `max_rows` all the same; the
    count and the scan wait for one of `slots` (`BusyError` when none frees up in time).
    """
    chosen = [d for d in pilot.devices if devices is None or d.id in devices]
    estimate = cost.readings(chosen, sensors, end_ns - start_ns)
    cost.check(estimate, max_scan_readings, "this export")
    if estimate > max_rows:
        raise QueryError(
            f"about {estimate} readings exceed the export limit of {max_rows} rows "
            "(PILOTS_API_EXPORT_MAX_ROWS); export a shorter range or windowed statistics"
        )
    with slots.held():
        found = store.count(pilot.id, list(sensors), start_ns, end_ns, devices=devices)
        if found > max_scan_readings:
            raise too_many(found, max_scan_readings, "this export")
        if found > max_rows:
            raise QueryError(
                f"{found} readings exceed the export limit of {max_rows} rows "
                "(PILOTS_API_EXPORT_MAX_ROWS); export a shorter range or windowed statistics"
            )
        readings = store.scan(pilot.id, list(sensors), start_ns, end_ns, devices=devices)
        order = np.lexsort((readings.ts_ns, readings.sensor, readings.device))
        readings = readings.take(order)
        device_ids = np.asarray([d.id for d in registry.device_list], dtype=object)
        sensor_ids = np.asarray([s.id for s in registry.sensor_list], dtype=object)
        columns = {
            "time": pa.array(readings.ts_ns, type=pa.timestamp("ns", tz="UTC")),
            "device": pa.array(device_ids[readings.device], type=pa.string()),
            "sensor": pa.array(sensor_ids[readings.sensor], type=pa.string()),
            "value": pa.array(readings.value, type=pa.float64()),
        }
    return Export(filename=f"{pilot.id}-readings", columns=columns)


def windowed(service: SeriesService, query: SeriesQuery) -> Export:
    """The windows of a series query as one row per (sensor, device, window)."""
    answer = service.series(query)
    rows: dict[str, list[object]] = {"window_start": [], "sensor": [], "device": []}
    stats = list(query.statistics)
    for name in stats:
        rows[name] = []
    for sensor in answer["sensors"]:
        for line in sensor["lines"]:
            for window in line["windows"]:
                rows["window_start"].append(window["start"])
                rows["sensor"].append(sensor["sensor"])
                rows["device"].append(line["device"] or "all")
                for name in stats:
                    rows[name].append(window[name])
    columns = {
        # RFC 3339 with the pilot's offset, which Arrow parses to the instant.
        "window_start": pa.array(rows["window_start"], type=pa.string()).cast(
            pa.timestamp("ns", tz="UTC")
        ),
        "sensor": pa.array(rows["sensor"], type=pa.string()),
        "device": pa.array(rows["device"], type=pa.string()),
        **{
            name: pa.array(rows[name], type=pa.int64() if name == "count" else pa.float64())
            for name in stats
        },
    }
    return Export(filename=f"{query.pilot.id}-{answer['window']}", columns=columns)


def csv_chunks(export: Export, tz_name: str) -> Iterator[bytes]:
    """The table as CSV, in chunks; times in RFC 3339 with the pilot's offset."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    names = list(export.columns)
    n = len(next(iter(export.columns.values()))) if names else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    for lo in range(0, max(n, 1), CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n)
        columns = []
        for name in names:
            array = export.columns[name].slice(lo, hi - lo)
            if pa.types.is_timestamp(array.type):
                ns = array.cast(pa.int64()).to_numpy(zero_copy_only=False)
                columns.append([ns_to_datetime(int(t), tz).isoformat() for t in ns.tolist()])
            else:
                columns.append(["" if v is None else v for v in array.to_pylist()])
        writer.writerows(zip(*columns, strict=True))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def on_disk(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks written to an unnamed temporary file now, then read back from it as sent."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the generator below)
    try:
        for chunk in chunks:
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise

    def send() -> Iterator[bytes]:
        with spool:
            while chunk := spool.read(1 << 20):
                yield chunk

    return send()


def parquet_chunks(export: Export) -> Iterator[bytes]:
    """The table as one Parquet file, sent in chunks from a temporary spool."""
    table = pa.table(export.columns)
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        pq.write_table(table, spool, compression="zstd")
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            yield chunk

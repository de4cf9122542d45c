"""InfluxQL for the adapter's reads, and its answers parsed back into columns.

What it is for: the statements the InfluxDB adapter sends (built only from identifiers the
registry has validated, `[a-z0-9_-]`, and checked resolutions; every value a caller supplies
travels as a bound parameter) and the parsing of their answers: CSV straight into numpy through
pyarrow for scans, JSON for counts, `latest` and watermarks. Rows of devices or sensors no
longer in the registry are left out. It must not send requests (`core.store.influx.http`).
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import StoreError
from core.readings import Readings
from core.registry import Registry
from core.rollups import SKETCH_COLUMN, VALUE_COLUMNS, Rollups
from core.sketch import Sketches
from core.store.lineprotocol import MEASUREMENT, REPEATS, UPLINKS, WATERMARKS
from core.timeutil import DAY_NS
from core.uplinks import NO_FCNT, NO_SF, Uplinks

#: Scans of more than this are split into `SCAN_PARTS` parts queried at once (see `split`).
SPLIT_SCAN_NS = 2 * DAY_NS
SCAN_PARTS = 4

#: Every column of a CSV answer starts with these (`time` in ns: the queries ask `epoch=ns`).
_CSV_HEAD: dict[str, Any] = {"name": pa.string(), "tags": pa.string(), "time": pa.int64()}
_UPLINK_FIELDS = '"received_ns","fcnt","rssi","snr","sf","gateway"'
_UPLINK_TYPES: dict[str, Any] = {
    **_CSV_HEAD,
    "received_ns": pa.int64(),
    "fcnt": pa.int64(),
    "rssi": pa.float64(),
    "snr": pa.float64(),
    "sf": pa.int64(),
    "gateway": pa.string(),
}
#: The rollup fields (`core.rollups.VALUE_COLUMNS`, then the sketch) and their CSV types.
_ROLLUP_FIELDS = ",".join(f'"{c.name}"' for c in VALUE_COLUMNS) + f',"{SKETCH_COLUMN}"'
_ROLLUP_TYPES: dict[str, Any] = {
    **_CSV_HEAD,
    **{c.name: pa.from_numpy_dtype(c.dtype) for c in VALUE_COLUMNS},
    SKETCH_COLUMN: pa.string(),
}

Params = dict[str, object]


# -- statements ----------------------------------------------------------------------------------


def check_names(
    registry: Registry, pilot: str, sensors: Sequence[str], devices: Sequence[str]
) -> None:
    """Raise `ValueError` unless the pilot, sensors and devices are in the registry."""
    if pilot not in registry.pilots:
        raise ValueError(f"unknown pilot {pilot!r}")
    for sensor in sensors:
        if sensor not in registry.sensors:
            raise ValueError(f"unknown sensor {sensor!r}")
    for device in devices:
        if device not in registry.devices:
            raise ValueError(f"unknown device {device!r}")


def split(start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """A long range as consecutive parts to query concurrently; a short one whole.

    InfluxDB answers each query on one core and pyarrow parses CSV without holding the
    GIL, so a month read as four parts at once takes about half as long on two cores.
    """
    if end_ns - start_ns <= SPLIT_SCAN_NS:
        return [(start_ns, end_ns)]
    edges = [start_ns + (end_ns - start_ns) * i // SCAN_PARTS for i in range(SCAN_PARTS + 1)]
    return list(itertools.pairwise(edges))


def where(
    pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None
) -> tuple[str, Params]:
    """The WHERE clause of a pilot's range (and devices), and its bound parameters."""
    params: Params = {"pilot": pilot, "start": int(start_ns), "end": int(end_ns)}
    clause = '"pilot" = $pilot AND time >= $start AND time < $end'
    if devices is not None:
        for i, device in enumerate(devices):
            params[f"d{i}"] = device
        clause += " AND (" + " OR ".join(f'"device" = $d{i}' for i in range(len(devices))) + ")"
    return clause, params


def scan_readings(sensors: Sequence[str], clause: str) -> str:
    """The sensors' readings, one series per device (sensors checked by `check_names`)."""
    fields = ",".join(f'"{s}"' for s in sensors)
    return f'SELECT {fields} FROM "{MEASUREMENT}" WHERE {clause} GROUP BY "device"'  # noqa: S608


def count_readings(sensors: Sequence[str], clause: str) -> str:
    """How many readings `scan_readings` would return (`count()` of each field)."""
    fields = ",".join(f'count("{s}")' for s in sensors)
    return f'SELECT {fields} FROM "{MEASUREMENT}" WHERE {clause}'  # noqa: S608


def scan_uplinks(clause: str) -> str:
    """The uplinks, one series per device."""
    return f'SELECT {_UPLINK_FIELDS} FROM "{UPLINKS}" WHERE {clause} GROUP BY "device"'  # noqa: S608


def count_uplinks(clause: str) -> str:
    """How many uplinks `scan_uplinks` would return."""
    return f'SELECT count("received_ns") FROM "{UPLINKS}" WHERE {clause}'  # noqa: S608


def count_repeats(clause: str) -> str:
    """Repeated transmissions, counted per device."""
    return f'SELECT count("received_ns") FROM "{REPEATS}" WHERE {clause} GROUP BY "device"'  # noqa: S608


def scan_rollups(
    measurement: str, sensors: Sequence[str], clause: str, params: Params
) -> tuple[str, Params]:
    """The sensors' rollups in a checked resolution's measurement, one series per device and sensor.

    Adds the sensors to `params`.
    """
    for i, sensor_id in enumerate(sensors):
        params[f"s{i}"] = sensor_id
    clause += " AND (" + " OR ".join(f'"sensor" = $s{i}' for i in range(len(sensors))) + ")"
    q = (
        f'SELECT {_ROLLUP_FIELDS} FROM "{measurement}" '  # noqa: S608
        f'WHERE {clause} GROUP BY "device","sensor"'
    )
    return q, params


def latest(sensors: Sequence[str]) -> str:
    """One statement per sensor: its last reading of each device of `$pilot`."""
    statement = (
        'SELECT last("{}") FROM "'  # noqa: S608
        + MEASUREMENT
        + '" WHERE "pilot" = $pilot GROUP BY "device"'
    )
    return "; ".join(statement.format(s) for s in sensors)


#: The value of the watermark `$name`.
GET_WATERMARK = f'SELECT "value" FROM "{WATERMARKS}" WHERE "name" = $name'  # noqa: S608


# -- answers -------------------------------------------------------------------------------------


def read_csv(body: bytes, types: dict[str, Any]) -> Any:
    """A CSV answer as a pyarrow table with these column types."""
    try:
        return pacsv.read_csv(
            io.BytesIO(body), convert_options=pacsv.ConvertOptions(column_types=types)
        )
    except pa.ArrowInvalid as exc:
        raise StoreError(f"unexpected InfluxDB CSV answer: {body[:300]!r}") from exc


def device_codes(table: Any, registry: Registry) -> np.ndarray[Any, np.dtype[np.int32]]:
    """Registry code of each row's `device=<id>` tag, -1 for devices no longer registered."""
    tags = table.column("tags").dictionary_encode().combine_chunks()
    known = registry.devices
    ids = [t.removeprefix("device=") for t in tags.dictionary.to_pylist()]
    lookup = np.asarray([known[i].code if i in known else -1 for i in ids], dtype=np.int32)
    return np.asarray(lookup[tags.indices.to_numpy(zero_copy_only=False)], dtype=np.int32)


def series_codes(
    table: Any, registry: Registry
) -> tuple[np.ndarray[Any, np.dtype[np.int32]], np.ndarray[Any, np.dtype[np.int16]]]:
    """Device and sensor codes of each row's `device=<id>,sensor=<id>` tags (-1: unknown)."""
    tags = table.column("tags").dictionary_encode().combine_chunks()
    devices, sensors = registry.devices, registry.sensors
    device_codes: list[int] = []
    sensor_codes: list[int] = []
    for text in tags.dictionary.to_pylist():
        pairs = dict(part.split("=", 1) for part in text.split(","))
        device_id, sensor_id = pairs.get("device", ""), pairs.get("sensor", "")
        device_codes.append(devices[device_id].code if device_id in devices else -1)
        sensor_codes.append(sensors[sensor_id].code if sensor_id in sensors else -1)
    index = tags.indices.to_numpy(zero_copy_only=False)
    return (
        np.asarray(device_codes, dtype=np.int32)[index],
        np.asarray(sensor_codes, dtype=np.int16)[index],
    )


def readings_from_csv(body: bytes, sensors: Sequence[str], registry: Registry) -> Readings:
    """The readings of a `scan_readings` answer."""
    if not body.strip():
        return Readings.empty()
    types = dict(_CSV_HEAD)
    types.update({s: pa.float64() for s in sensors})
    table = read_csv(body, types)
    device = device_codes(table, registry)
    ts = table.column("time").to_numpy()
    parts: list[Readings] = []
    for sensor in sensors:
        column = table.column(sensor)
        present = column.is_valid().to_numpy(zero_copy_only=False) & (device >= 0)
        values = column.to_numpy(zero_copy_only=False)
        code = registry.sensors[sensor].code
        parts.append(
            Readings.from_arrays(
                ts[present], device[present], np.full(int(present.sum()), code), values[present]
            )
        )
    return Readings.concat(parts)


def uplinks_from_csv(body: bytes, registry: Registry) -> Uplinks:
    """The uplinks of a `scan_uplinks` answer."""
    if not body.strip():
        return Uplinks.empty()
    table = read_csv(body, _UPLINK_TYPES)
    device = device_codes(table, registry)
    keep = device >= 0

    def filled(name: str, missing: object) -> Any:
        return table.column(name).fill_null(missing).to_numpy(zero_copy_only=False)[keep]

    return Uplinks.from_columns(
        ts_ns=table.column("time").to_numpy()[keep],
        device=device[keep],
        received_ns=filled("received_ns", 0),
        fcnt=filled("fcnt", NO_FCNT),
        rssi=table.column("rssi").to_numpy(zero_copy_only=False)[keep],
        snr=table.column("snr").to_numpy(zero_copy_only=False)[keep],
        sf=filled("sf", NO_SF),
        # At most 64 characters: a numpy string column is as wide as its longest value.
        gateway=pc.utf8_slice_codeunits(table.column("gateway").fill_null(""), 0, 64)
        .to_numpy(zero_copy_only=False)[keep]
        .astype(np.str_),
    )


def rollups_from_csv(body: bytes, registry: Registry) -> Rollups:
    """The rollups of a `scan_rollups` answer, sorted by device, sensor and window start."""
    if not body.strip():
        return Rollups.empty()
    table = read_csv(body, _ROLLUP_TYPES)
    device, sensor = series_codes(table, registry)
    keep = (device >= 0) & (sensor >= 0)

    def column(name: str) -> Any:
        return table.column(name).to_numpy(zero_copy_only=False)[keep]

    sketches = np.asarray(table.column(SKETCH_COLUMN).to_pylist(), dtype=object)[keep]
    rollups = Rollups(
        start_ns=column("time"),
        device=device[keep],
        sensor=sensor[keep],
        **{c.name: column(c.name) for c in VALUE_COLUMNS},
        sketch=Sketches.decode(sketches.tolist()),
    )
    return rollups.take(rollups.sort_order())


def _results(body: bytes) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = json.loads(body).get("results", [])
    return results


def sum_counts(body: bytes) -> int:
    """The total of every count in a JSON answer (`count_readings`, `count_uplinks`)."""
    total = 0
    for result in _results(body):
        if "error" in result:
            raise StoreError(f"InfluxDB query failed: {result['error']}")
        for series in result.get("series", []):
            for row in series.get("values", []):
                total += sum(int(v) for v in row[1:] if v is not None)
    return total


def counts_by_device(body: bytes) -> dict[str, int]:
    """The count of each device's series in a JSON answer (`count_repeats`)."""
    out: dict[str, int] = {}
    for result in _results(body):
        for series in result.get("series", []):
            out[series["tags"]["device"]] = int(series["values"][0][1])
    return out


def latest_from_json(body: bytes, sensors: Sequence[str], registry: Registry) -> Readings:
    """The readings of a `latest` answer (its statements in the order of `sensors`)."""
    ts: list[int] = []
    device: list[int] = []
    sensor: list[int] = []
    value: list[float] = []
    for sensor_id, result in zip(sensors, _results(body), strict=False):
        if "error" in result:
            raise StoreError(f"InfluxDB query failed: {result['error']}")
        for series in result.get("series", []):
            device_id = series.get("tags", {}).get("device")
            if device_id not in registry.devices:
                continue
            for row in series.get("values", []):
                ts.append(int(row[0]))
                device.append(registry.devices[device_id].code)
                sensor.append(registry.sensors[sensor_id].code)
                value.append(float(row[1]))
    return Readings.from_arrays(ts, device, sensor, value)


def watermark_from_json(body: bytes) -> int | None:
    """The value in a `GET_WATERMARK` answer, None when the watermark was never set."""
    result = json.loads(body).get("results", [{}])[0]
    if "error" in result:
        raise StoreError(f"InfluxDB query failed: {result['error']}")
    for series in result.get("series", []):
        for row in series.get("values", []):
            return int(row[1])
    return None

"""The InfluxDB adapter: the store of record.

Reads use InfluxQL over `/query`, which InfluxDB 1.x serves, 2.x serves through its v1
compatibility API and 3.x serves natively, asking for CSV (`Accept: application/csv`) because
CSV parsed by pyarrow straight into numpy is more than twice as fast as the JSON answer. Writes
send gzip-compressed line protocol either through `influxdb-client`'s v2 write API (InfluxDB
1.8+, 2.x, 3.x) or to `/write` on older 1.x servers, chosen by `PILOTS_INFLUX_WRITE_API` or, on
`auto`, by the version `/ping` reports.

Rollups live in `rollups_1m`, `rollups_1h`, `rollups_1d` and watermarks in `watermarks`
(schema in `core.store.lineprotocol` and docs/SCHEMA.md), the quarantine in `quarantine` and
`quarantine_dropped` (`core.store.influx_quarantine`).

Queries are built only from identifiers that the registry has validated (they match
`[a-z0-9_-]`); every value a caller supplies travels as a bound parameter.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import urllib3
from urllib3.exceptions import HTTPError

from core.errors import (
    StoreError,
    StoreRejectedError,
    StoreTooLargeError,
    StoreUnavailableError,
)
from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups
from core.settings import Settings
from core.sketch import Sketches
from core.store import check_watermark_name, check_watermark_value
from core.store.influx_quarantine import InfluxQuarantine
from core.store.lineprotocol import (
    MEASUREMENT,
    REPEATS,
    UPLINKS,
    WATERMARKS,
    LineEncoder,
    encode_watermark,
    rollup_measurement,
)
from core.uplinks import NO_FCNT, NO_SF, Uplinks

#: Scans of more than this are split into `SCAN_PARTS` parts queried at once (see `_split`).
SPLIT_SCAN_NS = 2 * 86_400 * 1_000_000_000
SCAN_PARTS = 4

log = logging.getLogger("pilots.store.influx")

WriteApi = Literal["v1", "v2"]

_ROLLUP_FIELDS = '"count","sum","m2","min","max","first","first_ts","last","last_ts","sketch"'
_ROLLUP_TYPES: dict[str, Any] = {
    "name": pa.string(),
    "tags": pa.string(),
    "time": pa.int64(),
    "count": pa.int64(),
    "sum": pa.float64(),
    "m2": pa.float64(),
    "min": pa.float64(),
    "max": pa.float64(),
    "first": pa.float64(),
    "first_ts": pa.int64(),
    "last": pa.float64(),
    "last_ts": pa.int64(),
    "sketch": pa.string(),
}

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: The request's data itself was refused (malformed line, field type conflict).
_DATA_STATUS = frozenset({400, 422})


def _retry_after_s(value: str | None) -> float | None:
    """Seconds of an HTTP `Retry-After` given in seconds (dates are not worth honouring here)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _classify(message: str, status: int, retry_after: str | None = None) -> StoreError:
    """The error class a status calls for (as Telegraf's InfluxDB output classifies them)."""
    if status in _TRANSIENT_STATUS:
        return StoreUnavailableError(
            message, status=status, retry_after_s=_retry_after_s(retry_after)
        )
    if status in _DATA_STATUS:
        return StoreRejectedError(message, status=status)
    if status == 413:
        return StoreTooLargeError(message, status=status)
    return StoreError(message, status=status)


def write_api_for_version(version: str | None) -> WriteApi:
    """Which write API a server of this `X-Influxdb-Version` speaks (v2 from 1.8 on)."""
    match = re.match(r"^v?(\d+)\.(\d+)", version or "")
    if match is None:
        # 3.x and cloud services may not send the header; all of them speak v2.
        return "v2"
    major, minor = int(match.group(1)), int(match.group(2))
    return "v2" if (major, minor) >= (1, 8) else "v1"


class InfluxStore(InfluxQuarantine):
    """`core.store.Store` over InfluxDB's HTTP API."""

    def __init__(
        self,
        url: str,
        database: str,
        registry: Registry,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        org: str = "-",
        write_api: Literal["auto", "v1", "v2"] = "auto",
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.registry = registry
        self.org = org
        self._token = token
        self._username = username
        self._password = password
        self._write_api_setting = write_api
        self._write_api: WriteApi | None = None if write_api == "auto" else write_api
        self._timeout_s = timeout_s
        self._encoder = LineEncoder(registry)
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=8, retries=False, timeout=urllib3.Timeout(total=timeout_s)
        )
        self._v2_client: Any = None
        self._v2_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=SCAN_PARTS, thread_name_prefix="influx-scan")

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry) -> InfluxStore:
        """Build the adapter from `PILOTS_INFLUX_*` settings (does not connect)."""
        assert settings.influx_url is not None
        return cls(
            settings.influx_url,
            settings.influx_database,
            registry,
            token=settings.influx_token.get_secret_value() if settings.influx_token else None,
            username=settings.influx_username,
            password=(
                settings.influx_password.get_secret_value() if settings.influx_password else None
            ),
            org=settings.influx_org,
            write_api=settings.influx_write_api,
            timeout_s=settings.influx_timeout_s,
        )

    # -- HTTP plumbing ---------------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Token {self._token}"}
        if self._username is not None:
            return urllib3.make_headers(basic_auth=f"{self._username}:{self._password or ''}")
        return {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        fields: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        all_headers = {**self._auth_headers(), **(headers or {})}
        try:
            if body is not None:
                query = urlencode(fields or {})
                return self._http.request(
                    method, f"{self.url}{path}?{query}", body=body, headers=all_headers
                )
            if method == "GET":
                return self._http.request(
                    method, f"{self.url}{path}", fields=fields, headers=all_headers
                )
            return self._http.request(
                method,
                f"{self.url}{path}",
                fields=fields,
                headers=all_headers,
                encode_multipart=False,
            )
        except HTTPError as exc:
            raise StoreUnavailableError(f"InfluxDB at {self.url} unreachable: {exc}") from exc

    def _fail(self, what: str, response: urllib3.BaseHTTPResponse) -> StoreError:
        text = response.data.decode(errors="replace").strip()[:500]
        return _classify(
            f"InfluxDB {what} failed with HTTP {response.status}: {text}",
            response.status,
            response.headers.get("Retry-After"),
        )

    def _query(self, q: str, params: dict[str, object], *, csv: bool) -> bytes:
        fields = {"db": self.database, "q": q, "epoch": "ns"}
        if params:
            fields["params"] = json.dumps(params)
        accept = "application/csv" if csv else "application/json"
        response = self._request("POST", "/query", fields=fields, headers={"Accept": accept})
        if response.status != 200:
            raise self._fail("query", response)
        return bytes(response.data)

    # -- lifecycle --------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise unless InfluxDB answers `/ping`; learns the write API on `auto`."""
        response = self._request("GET", "/ping")
        if response.status != 204:
            raise self._fail("ping", response)
        if self._write_api is None:
            version = response.headers.get("X-Influxdb-Version")
            self._write_api = write_api_for_version(version)
            log.info(
                "InfluxDB %s at %s: using the %s write API", version, self.url, self._write_api
            )

    def start(self) -> None:
        """Check InfluxDB answers and that the database exists, creating it where allowed."""
        self.ensure_database()

    def ensure_database(self) -> None:
        """Create the database when the server allows it and it is missing (1.x)."""
        self.ping()
        body = json.loads(self._query("SHOW DATABASES", {}, csv=False))
        result = body.get("results", [{}])[0]
        if "error" in result:
            log.warning(
                "cannot list InfluxDB databases (%s); assuming %s exists",
                result["error"],
                self.database,
            )
            return
        series = result.get("series", [])
        names = {row[0] for s in series for row in s.get("values", [])}
        if self.database in names:
            return
        response = self._request(
            "POST", "/query", fields={"q": f'CREATE DATABASE "{self.database}"'}
        )
        if response.status != 200 or b'"error"' in response.data:
            raise StoreError(
                f"InfluxDB database {self.database!r} does not exist and could not be created "
                "(PILOTS_INFLUX_DATABASE; on InfluxDB 2.x create the bucket and its DBRP mapping): "
                f"{response.data.decode(errors='replace')[:300]}"
            )
        log.info("created InfluxDB database %s", self.database)

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.clear()
        if self._v2_client is not None:
            self._v2_client.close()
            self._v2_client = None

    # -- writes -----------------------------------------------------------------------------------

    def write(
        self, readings: Readings, uplinks: Uplinks | None = None, repeats: Uplinks | None = None
    ) -> None:
        """Write readings and uplinks as line protocol; returns once InfluxDB accepted them."""
        parts = [self._encoder.encode(readings)]
        if uplinks is not None:
            parts.append(self._encoder.encode_uplinks(uplinks))
        if repeats is not None:
            parts.append(self._encoder.encode_uplinks(repeats, REPEATS))
        self._send(b"\n".join(p for p in parts if p))

    def write_rollups(self, resolution: str, rollups: Rollups) -> None:
        """Write rollup rows as whole points of `rollups_<resolution>` (a rewrite replaces)."""
        self._send(self._encoder.encode_rollups(resolution, rollups))

    def set_watermark(self, name: str, value_ns: int) -> None:
        """Write the watermark point (time 0, so it overwrites the previous value)."""
        self._send(encode_watermark(check_watermark_name(name), check_watermark_value(value_ns)))

    def _send(self, body: bytes) -> None:
        if not body:
            return
        if self._write_api is None:
            self.ping()
        if self._write_api == "v1":
            self._write_v1(body)
        else:
            self._write_v2(body)

    def _write_v1(self, body: bytes) -> None:
        response = self._request(
            "POST",
            "/write",
            fields={"db": self.database, "precision": "ns"},
            body=gzip.compress(body, compresslevel=1),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )
        if response.status != 204:
            raise self._fail("write", response)

    def _v2(self) -> Any:
        with self._v2_lock:
            if self._v2_client is None:
                from influxdb_client.client.influxdb_client import InfluxDBClient

                token = self._token or (
                    f"{self._username}:{self._password or ''}" if self._username else ""
                )
                self._v2_client = InfluxDBClient(
                    url=self.url,
                    token=token,
                    org=self.org,
                    timeout=int(self._timeout_s * 1000),
                    enable_gzip=True,
                )
            return self._v2_client

    def _write_v2(self, body: bytes) -> None:
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        client = self._v2()
        try:
            client.write_api(write_options=SYNCHRONOUS).write(
                bucket=self.database, org=self.org, record=body, write_precision=WritePrecision.NS
            )
        except ApiException as exc:
            message = f"InfluxDB write failed with HTTP {exc.status}: {str(exc.body)[:500]}"
            headers: Any = exc.headers or {}
            raise _classify(message, int(exc.status or 0), headers.get("Retry-After")) from exc
        except HTTPError as exc:
            raise StoreUnavailableError(f"InfluxDB at {self.url} unreachable: {exc}") from exc

    # -- reads ------------------------------------------------------------------------------------

    def _check_names(self, pilot: str, sensors: Sequence[str], devices: Sequence[str]) -> None:
        if pilot not in self.registry.pilots:
            raise ValueError(f"unknown pilot {pilot!r}")
        for sensor in sensors:
            if sensor not in self.registry.sensors:
                raise ValueError(f"unknown sensor {sensor!r}")
        for device in devices:
            if device not in self.registry.devices:
                raise ValueError(f"unknown device {device!r}")

    def _split(self, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
        """A long range as consecutive parts to query concurrently; a short one whole.

        InfluxDB answers each query on one core and pyarrow parses CSV without holding the
        GIL, so a month read as four parts at once takes about half as long on two cores.
        """
        if end_ns - start_ns <= SPLIT_SCAN_NS:
            return [(start_ns, end_ns)]
        edges = [start_ns + (end_ns - start_ns) * i // SCAN_PARTS for i in range(SCAN_PARTS + 1)]
        return list(itertools.pairwise(edges))

    def scan(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> Readings:
        """Readings of the pilot's sensors (and devices) with `start_ns <= time < end_ns`."""
        self._check_names(pilot, sensors, devices or ())
        if not sensors or (devices is not None and not devices):
            return Readings.empty()
        parts = self._split(start_ns, end_ns)
        if len(parts) == 1:
            return self._scan_part(pilot, sensors, start_ns, end_ns, devices)
        return Readings.concat(
            list(
                self._pool.map(
                    lambda p: self._scan_part(pilot, sensors, p[0], p[1], devices), parts
                )
            )
        )

    def _scan_part(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None,
    ) -> Readings:
        where, params = self._where(pilot, start_ns, end_ns, devices)
        fields = ",".join(f'"{s}"' for s in sensors)
        # Field names are registry identifiers checked above; values are bound parameters.
        q = f'SELECT {fields} FROM "{MEASUREMENT}" WHERE {where} GROUP BY "device"'  # noqa: S608
        body = self._query(q, params, csv=True)
        if not body.strip():
            return Readings.empty()
        types = {"name": pa.string(), "tags": pa.string(), "time": pa.int64()}
        types.update({s: pa.float64() for s in sensors})
        table = self._read_csv(body, types)
        device = self._device_codes(table)
        ts = table.column("time").to_numpy()
        parts: list[Readings] = []
        for sensor in sensors:
            column = table.column(sensor)
            present = column.is_valid().to_numpy(zero_copy_only=False) & (device >= 0)
            values = column.to_numpy(zero_copy_only=False)
            code = self.registry.sensors[sensor].code
            parts.append(
                Readings.from_arrays(
                    ts[present], device[present], np.full(int(present.sum()), code), values[present]
                )
            )
        return Readings.concat(parts)

    def scan_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> Uplinks:
        """Uplinks of the pilot's devices (or the named ones) with `start_ns <= time < end_ns`."""
        self._check_names(pilot, (), devices or ())
        if devices is not None and not devices:
            return Uplinks.empty()
        parts = self._split(start_ns, end_ns)
        if len(parts) == 1:
            return self._scan_uplinks_part(pilot, start_ns, end_ns, devices)
        return Uplinks.concat(
            list(
                self._pool.map(lambda p: self._scan_uplinks_part(pilot, p[0], p[1], devices), parts)
            )
        )

    def count(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> int:
        """Readings `scan` would return, counted by InfluxDB (`count()` of each field)."""
        self._check_names(pilot, sensors, devices or ())
        if not sensors or (devices is not None and not devices):
            return 0
        where, params = self._where(pilot, start_ns, end_ns, devices)
        fields = ",".join(f'count("{s}")' for s in sensors)
        q = f'SELECT {fields} FROM "{MEASUREMENT}" WHERE {where}'  # noqa: S608
        return self._sum_counts(q, params)

    def count_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> int:
        """Uplinks `scan_uplinks` would return, counted by InfluxDB."""
        self._check_names(pilot, (), devices or ())
        if devices is not None and not devices:
            return 0
        where, params = self._where(pilot, start_ns, end_ns, devices)
        q = f'SELECT count("received_ns") FROM "{UPLINKS}" WHERE {where}'  # noqa: S608
        return self._sum_counts(q, params)

    def _sum_counts(self, q: str, params: dict[str, object]) -> int:
        body = json.loads(self._query(q, params, csv=False))
        total = 0
        for result in body.get("results", []):
            if "error" in result:
                raise StoreError(f"InfluxDB query failed: {result['error']}")
            for series in result.get("series", []):
                for row in series.get("values", []):
                    total += sum(int(v) for v in row[1:] if v is not None)
        return total

    def count_repeats(self, pilot: str, start_ns: int, end_ns: int) -> dict[str, int]:
        """Repeated transmissions received in the range, per device id."""
        self._check_names(pilot, (), ())
        where, params = self._where(pilot, start_ns, end_ns, None)
        q = f'SELECT count("received_ns") FROM "{REPEATS}" WHERE {where} GROUP BY "device"'  # noqa: S608
        body = json.loads(self._query(q, params, csv=False))
        out: dict[str, int] = {}
        for result in body.get("results", []):
            for series in result.get("series", []):
                out[series["tags"]["device"]] = int(series["values"][0][1])
        return out

    def _scan_uplinks_part(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None
    ) -> Uplinks:
        where, params = self._where(pilot, start_ns, end_ns, devices)
        fields = '"received_ns","fcnt","rssi","snr","sf","gateway"'
        q = f'SELECT {fields} FROM "{UPLINKS}" WHERE {where} GROUP BY "device"'  # noqa: S608
        body = self._query(q, params, csv=True)
        if not body.strip():
            return Uplinks.empty()
        types = {
            "name": pa.string(),
            "tags": pa.string(),
            "time": pa.int64(),
            "received_ns": pa.int64(),
            "fcnt": pa.int64(),
            "rssi": pa.float64(),
            "snr": pa.float64(),
            "sf": pa.int64(),
            "gateway": pa.string(),
        }
        table = self._read_csv(body, types)
        device = self._device_codes(table)
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

    def scan_rollups(
        self,
        pilot: str,
        sensors: Sequence[str],
        resolution: str,
        start_ns: int,
        end_ns: int,
        *,
        devices: Sequence[str] | None = None,
    ) -> Rollups:
        """Rollups of the pilot's sensors (and devices) with `start_ns <= start < end_ns`."""
        measurement = rollup_measurement(resolution)
        self._check_names(pilot, sensors, devices or ())
        if not sensors or (devices is not None and not devices):
            return Rollups.empty()
        where, params = self._where(pilot, start_ns, end_ns, devices)
        for i, sensor_id in enumerate(sensors):
            params[f"s{i}"] = sensor_id
        where += " AND (" + " OR ".join(f'"sensor" = $s{i}' for i in range(len(sensors))) + ")"
        # The measurement comes from a checked resolution; values are bound parameters.
        q = (
            f'SELECT {_ROLLUP_FIELDS} FROM "{measurement}" '  # noqa: S608
            f'WHERE {where} GROUP BY "device","sensor"'
        )
        body = self._query(q, params, csv=True)
        if not body.strip():
            return Rollups.empty()
        table = self._read_csv(body, _ROLLUP_TYPES)
        device, sensor = self._series_codes(table)
        keep = (device >= 0) & (sensor >= 0)

        def column(name: str) -> Any:
            return table.column(name).to_numpy(zero_copy_only=False)[keep]

        sketches = np.asarray(table.column("sketch").to_pylist(), dtype=object)[keep]
        rollups = Rollups(
            start_ns=column("time"),
            device=device[keep],
            sensor=sensor[keep],
            count=column("count"),
            sum=column("sum"),
            m2=column("m2"),
            min=column("min"),
            max=column("max"),
            first=column("first"),
            first_ts=column("first_ts"),
            last=column("last"),
            last_ts=column("last_ts"),
            sketch=Sketches.decode(sketches.tolist()),
        )
        return rollups.take(rollups.sort_order())

    def _series_codes(
        self, table: Any
    ) -> tuple[np.ndarray[Any, np.dtype[np.int32]], np.ndarray[Any, np.dtype[np.int16]]]:
        """Device and sensor codes of each row's `device=<id>,sensor=<id>` tags (-1: unknown)."""
        tags = table.column("tags").dictionary_encode().combine_chunks()
        devices, sensors = self.registry.devices, self.registry.sensors
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

    def get_watermark(self, name: str) -> int | None:
        """The watermark's value, None if it was never set."""
        check_watermark_name(name)
        q = f'SELECT "value" FROM "{WATERMARKS}" WHERE "name" = $name'  # noqa: S608
        body = json.loads(self._query(q, {"name": name}, csv=False))
        result = body.get("results", [{}])[0]
        if "error" in result:
            raise StoreError(f"InfluxDB query failed: {result['error']}")
        for series in result.get("series", []):
            for row in series.get("values", []):
                return int(row[1])
        return None

    @staticmethod
    def _where(
        pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None
    ) -> tuple[str, dict[str, object]]:
        params: dict[str, object] = {"pilot": pilot, "start": int(start_ns), "end": int(end_ns)}
        where = '"pilot" = $pilot AND time >= $start AND time < $end'
        if devices is not None:
            for i, device in enumerate(devices):
                params[f"d{i}"] = device
            where += " AND (" + " OR ".join(f'"device" = $d{i}' for i in range(len(devices))) + ")"
        return where, params

    @staticmethod
    def _read_csv(body: bytes, types: dict[str, Any]) -> Any:
        try:
            return pacsv.read_csv(
                io.BytesIO(body), convert_options=pacsv.ConvertOptions(column_types=types)
            )
        except pa.ArrowInvalid as exc:
            raise StoreError(f"unexpected InfluxDB CSV answer: {body[:300]!r}") from exc

    def _device_codes(self, table: Any) -> np.ndarray[Any, np.dtype[np.int32]]:
        """Registry code of each row's `device=<id>` tag, -1 for devices no longer registered."""
        tags = table.column("tags").dictionary_encode().combine_chunks()
        known = self.registry.devices
        ids = [t.removeprefix("device=") for t in tags.dictionary.to_pylist()]
        lookup = np.asarray([known[i].code if i in known else -1 for i in ids], dtype=np.int32)
        return np.asarray(lookup[tags.indices.to_numpy(zero_copy_only=False)], dtype=np.int32)

    def latest(self, pilot: str) -> Readings:
        """The newest reading of each (device, sensor) of the pilot."""
        self._check_names(pilot, (), ())
        sensors = self.registry.pilots[pilot].sensors
        # Sensors come from the registry; the pilot travels as a bound parameter.
        statement = (
            'SELECT last("{}") FROM "'  # noqa: S608
            + MEASUREMENT
            + '" WHERE "pilot" = $pilot GROUP BY "device"'
        )
        q = "; ".join(statement.format(s) for s in sensors)
        body = json.loads(self._query(q, {"pilot": pilot}, csv=False))
        ts: list[int] = []
        device: list[int] = []
        sensor: list[int] = []
        value: list[float] = []
        for sensor_id, result in zip(sensors, body.get("results", []), strict=False):
            if "error" in result:
                raise StoreError(f"InfluxDB query failed: {result['error']}")
            for series in result.get("series", []):
                device_id = series.get("tags", {}).get("device")
                if device_id not in self.registry.devices:
                    continue
                for row in series.get("values", []):
                    ts.append(int(row[0]))
                    device.append(self.registry.devices[device_id].code)
                    sensor.append(self.registry.sensors[sensor_id].code)
                    value.append(float(row[1]))
        return Readings.from_arrays(ts, device, sensor, value)

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

`InfluxStore` is the contract (`core.store.Store`) over three parts: `http` (requests, errors
classified), `write` (the two write APIs) and `query` (InfluxQL built from identifiers the
registry has validated, every value a caller supplies a bound parameter; answers parsed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from core.errors import StoreError
from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups
from core.settings import Settings
from core.store import check_watermark_name, check_watermark_value
from core.store.influx import query
from core.store.influx.http import InfluxHttp, WriteApi, write_api_for_version
from core.store.influx.query import SCAN_PARTS, SPLIT_SCAN_NS
from core.store.influx.write import InfluxWriter
from core.store.influx_quarantine import InfluxQuarantine
from core.store.lineprotocol import REPEATS, LineEncoder, encode_watermark, rollup_measurement
from core.uplinks import Uplinks

__all__ = ["SCAN_PARTS", "SPLIT_SCAN_NS", "InfluxStore", "WriteApi", "write_api_for_version"]

log = logging.getLogger(__name__)


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
        self._http = InfluxHttp(
            url, database, token=token, username=username, password=password, timeout_s=timeout_s
        )
        self.url = self._http.url
        self.database = database
        self.registry = registry
        self.org = org
        self._write_api: WriteApi | None = None if write_api == "auto" else write_api
        self._writer = InfluxWriter(self._http, org)
        self._encoder = LineEncoder(registry)
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

    def _query(self, q: str, params: dict[str, object], *, csv: bool) -> bytes:
        return self._http.query(q, params, csv=csv)

    # -- lifecycle --------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise unless InfluxDB answers `/ping`; learns the write API on `auto`."""
        version = self._http.ping()
        if self._write_api is None:
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
        response = self._http.request(
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
        self._writer.close()

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
        self._writer.send(body, "v1" if self._write_api == "v1" else "v2")

    # -- reads ------------------------------------------------------------------------------------

    def scan(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> Readings:
        """Readings of the pilot's sensors (and devices) with `start_ns <= time < end_ns`."""
        query.check_names(self.registry, pilot, sensors, devices or ())
        if not sensors or (devices is not None and not devices):
            return Readings.empty()
        parts = query.split(start_ns, end_ns)
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
        clause, params = query.where(pilot, start_ns, end_ns, devices)
        body = self._query(query.scan_readings(sensors, clause), params, csv=True)
        return query.readings_from_csv(body, sensors, self.registry)

    def scan_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> Uplinks:
        """Uplinks of the pilot's devices (or the named ones) with `start_ns <= time < end_ns`."""
        query.check_names(self.registry, pilot, (), devices or ())
        if devices is not None and not devices:
            return Uplinks.empty()
        parts = query.split(start_ns, end_ns)
        if len(parts) == 1:
            return self._scan_uplinks_part(pilot, start_ns, end_ns, devices)
        return Uplinks.concat(
            list(
                self._pool.map(lambda p: self._scan_uplinks_part(pilot, p[0], p[1], devices), parts)
            )
        )

    def _scan_uplinks_part(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None
    ) -> Uplinks:
        clause, params = query.where(pilot, start_ns, end_ns, devices)
        body = self._query(query.scan_uplinks(clause), params, csv=True)
        return query.uplinks_from_csv(body, self.registry)

    def count(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> int:
        """Readings `scan` would return, counted by InfluxDB (`count()` of each field)."""
        query.check_names(self.registry, pilot, sensors, devices or ())
        if not sensors or (devices is not None and not devices):
            return 0
        clause, params = query.where(pilot, start_ns, end_ns, devices)
        body = self._query(query.count_readings(sensors, clause), params, csv=False)
        return query.sum_counts(body)

    def count_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> int:
        """Uplinks `scan_uplinks` would return, counted by InfluxDB."""
        query.check_names(self.registry, pilot, (), devices or ())
        if devices is not None and not devices:
            return 0
        clause, params = query.where(pilot, start_ns, end_ns, devices)
        body = self._query(query.count_uplinks(clause), params, csv=False)
        return query.sum_counts(body)

    def count_repeats(self, pilot: str, start_ns: int, end_ns: int) -> dict[str, int]:
        """Repeated transmissions received in the range, per device id."""
        query.check_names(self.registry, pilot, (), ())
        clause, params = query.where(pilot, start_ns, end_ns, None)
        body = self._query(query.count_repeats(clause), params, csv=False)
        return query.counts_by_device(body)

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
        query.check_names(self.registry, pilot, sensors, devices or ())
        if not sensors or (devices is not None and not devices):
            return Rollups.empty()
        clause, params = query.where(pilot, start_ns, end_ns, devices)
        q, params = query.scan_rollups(measurement, sensors, clause, params)
        body = self._query(q, params, csv=True)
        return query.rollups_from_csv(body, self.registry)

    def get_watermark(self, name: str) -> int | None:
        """The watermark's value, None if it was never set."""
        check_watermark_name(name)
        body = self._query(query.GET_WATERMARK, {"name": name}, csv=False)
        return query.watermark_from_json(body)

    def latest(self, pilot: str) -> Readings:
        """The newest reading of each (device, sensor) of the pilot."""
        query.check_names(self.registry, pilot, (), ())
        sensors = self.registry.pilots[pilot].sensors
        body = self._query(query.latest(sensors), {"pilot": pilot}, csv=False)
        return query.latest_from_json(body, sensors, self.registry)

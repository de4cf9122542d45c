"""Line protocol sent to InfluxDB: gzip-compressed, through `/write` (v1) or the v2 write API.

What it is for: `InfluxWriter.send` delivers a body of line protocol (`core.store.lineprotocol`)
with the write API the adapter chose, and raises the `core.errors.StoreError` class a failure
calls for. `influxdb-client` is imported only when the v2 API is first used. It must not
encode points nor choose the write API (the adapter learns it from `/ping`).
"""

from __future__ import annotations

import gzip
import threading
from typing import Any

from urllib3.exceptions import HTTPError

from core.errors import StoreUnavailableError
from core.store.influx.http import InfluxHttp, WriteApi, classify


class InfluxWriter:
    """Writes line protocol to the database of an `InfluxHttp`; safe to share between threads."""

    def __init__(self, http: InfluxHttp, org: str) -> None:
        self._http = http
        self.org = org
        self._v2_client: Any = None
        self._v2_lock = threading.Lock()

    def send(self, body: bytes, api: WriteApi) -> None:
        """Write the body with the given API; returns once InfluxDB accepted all of it."""
        if api == "v1":
            self._write_v1(body)
        else:
            self._write_v2(body)

    def _write_v1(self, body: bytes) -> None:
        response = self._http.request(
            "POST",
            "/write",
            fields={"db": self._http.database, "precision": "ns"},
            body=gzip.compress(body, compresslevel=1),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )
        if response.status != 204:
            raise self._http.fail("write", response)

    def _v2(self) -> Any:
        with self._v2_lock:
            if self._v2_client is None:
                from influxdb_client.client.influxdb_client import InfluxDBClient

                self._v2_client = InfluxDBClient(
                    url=self._http.url,
                    token=self._http.v2_token(),
                    org=self.org,
                    timeout=int(self._http.timeout_s * 1000),
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
                bucket=self._http.database,
                org=self.org,
                record=body,
                write_precision=WritePrecision.NS,
            )
        except ApiException as exc:
            message = f"InfluxDB write failed with HTTP {exc.status}: {str(exc.body)[:500]}"
            headers: Any = exc.headers or {}
            raise classify(message, int(exc.status or 0), headers.get("Retry-After")) from exc
        except HTTPError as exc:
            raise StoreUnavailableError(f"InfluxDB at {self._http.url} unreachable: {exc}") from exc

    def close(self) -> None:
        """Close the v2 client, if one was made."""
        if self._v2_client is not None:
            self._v2_client.close()
            self._v2_client = None

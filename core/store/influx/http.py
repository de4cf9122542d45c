"""One InfluxDB server's HTTP API: authenticated requests, InfluxQL queries, errors classified.

What it is for: every request of the InfluxDB adapter goes through `InfluxHttp`, which adds
the credentials, turns connection failures into `StoreUnavailableError` and an unwanted status
into the `core.errors.StoreError` class it calls for (`classify`). It must not build queries
or parse answers (`core.store.influx.query`) nor encode points (`core.store.lineprotocol`).
"""

from __future__ import annotations

import json
import re
from typing import Literal
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError

from core.errors import (
    StoreError,
    StoreRejectedError,
    StoreTooLargeError,
    StoreUnavailableError,
)

WriteApi = Literal["v1", "v2"]

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: The request's data itself was refused (malformed line, field type conflict).
_DATA_STATUS = frozenset({400, 422})


def _retry_after_s(value: str | None) -> float | None:
    """Seconds of an HTTP `Retry-After` given in seconds (dates are not worth honouring here)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def classify(message: str, status: int, retry_after: str | None = None) -> StoreError:
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


class InfluxHttp:
    """Requests to one InfluxDB server and database, with pooled connections."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self._token = token
        self._username = username
        self._password = password
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=8, retries=False, timeout=urllib3.Timeout(total=timeout_s)
        )

    def v2_token(self) -> str:
        """The token `influxdb-client` sends: the token, else `user:password` (1.8+), else ''."""
        if self._token:
            return self._token
        return f"{self._username}:{self._password or ''}" if self._username else ""

    def _auth_headers(self) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Token {self._token}"}
        if self._username is not None:
            return urllib3.make_headers(basic_auth=f"{self._username}:{self._password or ''}")
        return {}

    def request(
        self,
        method: str,
        path: str,
        *,
        fields: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; raises `StoreUnavailableError` when the server cannot be reached."""
        all_headers = {**self._auth_headers(), **(headers or {})}
        try:
            if body is not None:
                query = urlencode(fields or {})
                return self._pool.request(
                    method, f"{self.url}{path}?{query}", body=body, headers=all_headers
                )
            if method == "GET":
                return self._pool.request(
                    method, f"{self.url}{path}", fields=fields, headers=all_headers
                )
            return self._pool.request(
                method,
                f"{self.url}{path}",
                fields=fields,
                headers=all_headers,
                encode_multipart=False,
            )
        except HTTPError as exc:
            raise StoreUnavailableError(f"InfluxDB at {self.url} unreachable: {exc}") from exc

    def fail(self, what: str, response: urllib3.BaseHTTPResponse) -> StoreError:
        """The error for a request that got an unwanted status (see `classify`)."""
        text = response.data.decode(errors="replace").strip()[:500]
        return classify(
            f"InfluxDB {what} failed with HTTP {response.status}: {text}",
            response.status,
            response.headers.get("Retry-After"),
        )

    def query(self, q: str, params: dict[str, object], *, csv: bool) -> bytes:
        """The answer to InfluxQL `q` on the database, as CSV or as JSON."""
        fields = {"db": self.database, "q": q, "epoch": "ns"}
        if params:
            fields["params"] = json.dumps(params)
        accept = "application/csv" if csv else "application/json"
        response = self.request("POST", "/query", fields=fields, headers={"Accept": accept})
        if response.status != 200:
            raise self.fail("query", response)
        return bytes(response.data)

    def ping(self) -> str | None:
        """Raise unless the server answers `/ping`; returns the version it reports, if any."""
        response = self.request("GET", "/ping")
        if response.status != 204:
            raise self.fail("ping", response)
        version: str | None = response.headers.get("X-Influxdb-Version")
        return version

    def clear(self) -> None:
        """Close pooled connections."""
        self._pool.clear()

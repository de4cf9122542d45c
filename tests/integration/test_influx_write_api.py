"""The two write paths of the InfluxDB adapter and how it chooses between them.

No InfluxDB 2.x or 3.x server can be installed on the development machines, so the v2 write
path is checked against a local HTTP endpoint that records each request (path, bucket, org,
precision, auth, body) and answers as InfluxDB 2.x does. The v1 path runs against real influxd.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from core.errors import StoreError, StoreRejectedError, StoreUnavailableError
from core.readings import Readings
from core.registry import Registry
from core.store.influx import InfluxStore, write_api_for_version
from core.store.lineprotocol import LineEncoder
from tests.services import Influxd, free_port

pytestmark = pytest.mark.integration

T0 = 1_764_300_000_000_000_000


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    url: str
    version: str = "v2.7.11"
    write_status: int = 204
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    port = free_port()
    state = Recorder(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            parts = urlsplit(self.path)
            state.requests.append(
                Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    dict(self.headers.items()),
                    body,
                )
            )

        def do_GET(self) -> None:
            self._record()
            self.send_response(204)
            self.send_header("X-Influxdb-Version", state.version)
            self.end_headers()

        def do_POST(self) -> None:
            self._record()
            if state.write_status == 204:
                self.send_response(204)
                self.end_headers()
                return
            payload = b'{"code":"invalid","message":"field type conflict"}'
            self.send_response(state.write_status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def sample(registry: Registry) -> Readings:
    return Readings.from_arrays(
        [T0, T0 + 1],
        registry.device_codes(["sf-rlv-01", "sn-aq-03"]),
        registry.sensor_codes(["level", "pm25"]),
        [3.5, 17.25],
    )


def test_v2_write_sends_gzip_line_protocol_to_the_bucket(
    recorder: Recorder, registry: Registry
) -> None:
    store = InfluxStore(recorder.url, "pilots", registry, token="s3cret-token", org="utn")
    store.write(sample(registry))
    writes = [r for r in recorder.requests if r.method == "POST"]
    assert len(writes) == 1
    write = writes[0]
    assert write.path == "/api/v2/write"
    assert write.query["bucket"] == ["pilots"]
    assert write.query["org"] == ["utn"]
    assert write.query["precision"] == ["ns"]
    assert write.headers["Authorization"] == "Token s3cret-token"
    assert write.headers["Content-Encoding"] == "gzip"
    assert write.body == (
        b"readings,device=sf-rlv-01,kind=river_level,pilot=santa-fe level=3.5 "
        + str(T0).encode()
        + b"\nreadings,device=sn-aq-03,kind=air_quality,pilot=san-nicolas pm25=17.25 "
        + str(T0 + 1).encode()
    )
    store.close()


def test_v2_write_with_user_and_password_uses_the_18_token_form(
    recorder: Recorder, registry: Registry
) -> None:
    store = InfluxStore(recorder.url, "pilots", registry, username="ingest", password="pw")
    store.write(sample(registry))
    write = next(r for r in recorder.requests if r.method == "POST")
    assert write.headers["Authorization"] == "Token ingest:pw"
    assert write.query["org"] == ["-"]
    store.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, StoreRejectedError),
        (422, StoreRejectedError),
        (503, StoreUnavailableError),
        (429, StoreUnavailableError),
        (401, StoreError),
    ],
)
def test_v2_write_failures_are_classified(
    recorder: Recorder, registry: Registry, status: int, error: type[StoreError]
) -> None:
    recorder.write_status = status
    store = InfluxStore(recorder.url, "pilots", registry, write_api="v2")
    with pytest.raises(error) as caught:
        store.write(sample(registry))
    assert str(status) in str(caught.value)
    assert type(caught.value) is error
    store.close()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.6.7~rc0", "v1"),
        ("1.7.11", "v1"),
        ("1.8.10", "v2"),
        ("v2.7.11", "v2"),
        ("3.0.1", "v2"),
        (None, "v2"),
    ],
)
def test_write_api_follows_the_reported_version(version: str | None, expected: str) -> None:
    assert write_api_for_version(version) == expected


def test_auto_picks_v1_write_on_debian_influxd(
    influxd: Influxd, registry: Registry, database: str
) -> None:
    store = InfluxStore(influxd.url, database, registry)
    store.start()
    readings = sample(registry)
    store.write(readings)
    assert store._write_api == "v1"
    got = store.scan("santa-fe", ["level"], T0, T0 + 10)
    assert got.value.tolist() == [3.5]
    store.close()


def test_a_store_that_is_down_raises_a_transient_error(registry: Registry) -> None:
    store = InfluxStore(f"http://127.0.0.1:{free_port()}", "pilots", registry, timeout_s=2)
    with pytest.raises(StoreUnavailableError):
        store.write(sample(registry))
    with pytest.raises(StoreUnavailableError):
        store.ping()


def test_line_protocol_matches_what_the_v2_path_sends(
    recorder: Recorder, registry: Registry
) -> None:
    store = InfluxStore(recorder.url, "pilots", registry, write_api="v2")
    store.write(sample(registry))
    body = next(r for r in recorder.requests if r.method == "POST").body
    assert body == LineEncoder(registry).encode(sample(registry))
    store.close()

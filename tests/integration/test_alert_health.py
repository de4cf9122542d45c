"""`unhealthy` rules against a real HTTP server on a loopback port, and a real alarm store.

The server answers 200, then 503 (with ingest's JSON body), then is stopped (connection
refused), then answers 200 again on the same port: the alarm fires after `pending_s`, stays one
alarm through the refusals and a restart of the watch (its active alarm adopted from the
store), and clears after `clear_s`. Nothing here measures time: the test waits for events
with deadlines, and the watch's clock decides pending and clearing.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts.health import HealthWatch, HttpFetch
from alerts.message import notification_for
from alerts.store import AlarmQuery, AlarmStore
from core.alerts import AlertEvent, parse_rules
from core.alerts.rules import Rule
from core.registry import Registry

pytestmark = pytest.mark.integration

EVERY_S = 0.05
DEADLINE_S = 20.0
INGEST_DOWN = {"status": "unhealthy", "problems": ["store unreachable for 75 s"]}


class Endpoint:
    """A `/health` on 127.0.0.1 that answers `status` (and its body), stoppable and restartable."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict[str, Any] = {"status": "ok", "problems": []}
        self.delay_s = 0.0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if endpoint.delay_s:
                    time.sleep(endpoint.delay_s)
                payload = orjson.dumps(endpoint.body)
                if self.path == "/big":
                    payload = b"x" * 1_000_000
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client read what it wanted, closed
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    server.start()
    yield server
    server.stop()


class Recording:
    """The real fetch, with every reason it gave kept (None: healthy)."""

    def __init__(self) -> None:
        self.fetch = HttpFetch()
        self.reasons: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, rule: Rule) -> str | None:
        reason = self.fetch(rule)
        with self._lock:
            self.reasons.append(reason)
        return reason

    def seen(self) -> list[str | None]:
        with self._lock:
            return list(self.reasons)


def rule_for(registry: Registry, url: str, **changes: Any) -> tuple[Rule, ...]:
    spec = {
        "id": "system.ingest-1",
        "kind": "unhealthy",
        "url": url,
        "component": "ingest-1",
        "pending_s": 1,
        "clear_s": 1,
        "timeout_s": 1,
        **changes,
    }
    return parse_rules({"defaults": {"include": False}, "rules": [spec]}, registry)


def wait_for(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_S} s: {what}")
        time.sleep(0.01)


def events_until(watch: HealthWatch, store: AlarmStore, kind: str) -> list[AlertEvent]:
    """Drain (recording into the store, as the service does) until an event of `kind` comes."""
    got: list[AlertEvent] = []

    def arrived() -> bool:
        events = watch.drain()
        store.record(events)
        got.extend(events)
        return any(e.type == kind for e in got)

    wait_for(f"a {kind} event", arrived)
    return got


def rounds_pass(watch: HealthWatch, n: int) -> None:
    target = watch.rounds + n
    wait_for(f"{n} rounds", lambda: watch.rounds >= target)


def test_an_episode_fires_once_survives_a_restart_and_clears(
    registry: Registry, endpoint: Endpoint, tmp_path: Path
) -> None:
    store = AlarmStore(tmp_path / "alerts.sqlite")
    rules = rule_for(registry, endpoint.url)
    fetch = Recording()
    watch = HealthWatch(rules, every_s=EVERY_S, fetch=fetch).start()
    try:
        rounds_pass(watch, 3)
        assert watch.drain() == []
        assert set(fetch.seen()) == {None}

        endpoint.answer(503, INGEST_DOWN)
        (fired,) = events_until(watch, store, "fired")
        assert fired.at_ns - fired.start_ns >= 1_000_000_000  # after pending_s, by its clock
        assert fired.label == (f"unhealthy: HTTP 503: store unreachable for 75 s ({endpoint.url})")
        assert (fired.pilot, fired.device, fired.kind) == ("system", "ingest-1", "unhealthy")

        endpoint.stop()  # refused from now on
        wait_for("a refusal", lambda: "connection refused" in fetch.seen())
        rounds_pass(watch, 3)
        assert watch.drain() == []  # the same episode
    finally:
        watch.stop()

    # A restart: a new watch takes the active alarm back from the store.
    active = store.query(AlarmQuery(state="active", pilot="system"))
    assert [a.id for a in active] == [fired.alarm_id]
    restarted = HealthWatch(rules, every_s=EVERY_S, fetch=fetch)
    assert restarted.adopt(active) == 1
    restarted.start()
    try:
        rounds_pass(restarted, 3)
        assert restarted.drain() == []  # still refused: not fired twice

        endpoint.answer(200, {"status": "ok", "problems": []})
        endpoint.start()  # the same port again
        (cleared,) = events_until(restarted, store, "cleared")
        assert (cleared.alarm_id, cleared.start_ns) == (fired.alarm_id, fired.start_ns)
        assert cleared.end_ns is not None
        assert cleared.at_ns - cleared.end_ns >= 1_000_000_000  # after clear_s
        assert cleared.end_ns > fired.at_ns

        endpoint.answer(503, {"status": "unavailable"})  # another episode, another alarm
        (again,) = events_until(restarted, store, "fired")
        assert again.alarm_id != fired.alarm_id
        assert "HTTP 503: unavailable" in again.label
    finally:
        restarted.stop()

    every = store.query(AlarmQuery(pilot="system"))
    assert sorted((a.id, a.active) for a in every) == sorted(
        [(fired.alarm_id, False), (again.alarm_id, True)]
    )
    text = notification_for(fired, registry, dashboard_url="http://127.0.0.1:8000/").text
    assert text.startswith(f"System: ingest-1 ({endpoint.url}) unhealthy since ")
    assert text.endswith(": HTTP 503: store unreachable for 75 s.")
    store.close()


def test_the_fetch_judges_statuses_timeouts_and_refusals(
    registry: Registry, endpoint: Endpoint
) -> None:
    fetch = HttpFetch()
    (rule,) = rule_for(registry, endpoint.url, timeout_s=0.3)
    try:
        assert fetch(rule) is None
        endpoint.answer(204, {})
        assert fetch(rule) is None
        endpoint.answer(302, {})
        assert fetch(rule) == "HTTP 302"  # redirects are not followed
        endpoint.answer(503, INGEST_DOWN)
        assert fetch(rule) == "HTTP 503: store unreachable for 75 s"
        (big,) = rule_for(registry, endpoint.url.replace("/health", "/big"))
        assert fetch(big) == "HTTP 503"  # a megabyte answered: 512 bytes read, not JSON
        endpoint.answer(200, {})
        endpoint.delay_s = 2.0
        assert fetch(rule) == "no answer within 0.3 s"
        endpoint.delay_s = 0.0
        endpoint.stop()
        assert fetch(rule) == "connection refused"
    finally:
        fetch.close()


def test_https_is_checked_against_the_system_or_the_rules_ca_file(
    registry: Registry, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found: apt-get install -y openssl", pytrace=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    endpoint = Endpoint()
    endpoint.start()
    assert endpoint._server is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    endpoint._server.socket = context.wrap_socket(endpoint._server.socket, server_side=True)
    url = endpoint.url.replace("http:", "https:")
    fetch = HttpFetch()
    try:
        (untrusted,) = rule_for(registry, url, timeout_s=2)
        reason = fetch(untrusted)
        assert reason is not None and reason.startswith("TLS error: ")
        (trusted,) = rule_for(registry, url, timeout_s=2, ca_file=str(cert))
        assert fetch(trusted) is None
    finally:
        fetch.close()
        endpoint.stop()

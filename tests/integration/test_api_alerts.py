"""The alarm routes of the real app over a real alarm store, and the operator token scope.

Alarms are recorded with `AlarmStore.record` as the alert service records them; the app is
`api.app.create_app` in a `TestClient`, whose streamed responses arrive chunk by chunk, so the
server-sent events are read as a client reads them. One test runs `pilots api` as a process:
a stream left open must not keep SIGTERM from stopping it, and a client that goes away must
give its stream back. A client that stops reading needs a real socket (a `TestClient` takes
everything at once): those tests serve the app with uvicorn in a thread, over a listening
socket with a small send buffer, and read (or not) with a plain socket.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import orjson
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis import Case, checks

from alerts.store import AlarmStore
from api import problems
from api.app import create_app
from api.auth import TokenError, TokenStore
from api.services.alerts import StreamBounds
from core.alerts import AlertEvent, alarm_id
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import NS_PER_S, parse_instant_ns
from tests.helpers import wait_for
from tests.processes import PilotsProcess, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.integration

MIN = 60 * NS_PER_S
T0 = parse_instant_ns("2026-11-20T14:00:00-03:00")


def event(
    kind: str,
    *,
    rule: str = "santa-fe.level.alert",
    pilot: str = "santa-fe",
    device: str = "sf-rlv-01",
    sensor: str | None = "level",
    severity: str = "warning",
    label: str = "alert",
    start_ns: int = T0,
    end_ns: int | None = None,
    peak: float = 5.41,
    late: bool = False,
) -> AlertEvent:
    """An event of one alarm, as the evaluator makes it (`fired`, or `cleared` at `end_ns`)."""
    alarm = alarm_id(rule, device, start_ns)
    cleared = kind == "cleared"
    return AlertEvent(
        id=f"{alarm}:{kind}",
        alarm_id=alarm,
        type="cleared" if cleared else "fired",
        rule=rule,
        kind="silent" if sensor is None else "threshold",
        pilot=pilot,
        device=device,
        sensor=sensor,
        severity=severity,  # type: ignore[arg-type]
        label=label,
        level=5.3,
        direction="above",
        start_ns=start_ns,
        end_ns=end_ns if cleared else None,
        at_ns=end_ns if cleared and end_ns is not None else start_ns,
        value=5.34,
        latest=5.21 if cleared else 5.34,
        peak=peak,
        late=late,
    )


#: Three alarms of Santa Fe and one of Resistencia around T0.
FLOOD = event("fired")  # active since T0
GAUGE_2 = event("fired", device="sf-rlv-02", start_ns=T0 - 120 * MIN)
GAUGE_2_CLEARED = event(
    "cleared", device="sf-rlv-02", start_ns=T0 - 120 * MIN, end_ns=T0 - 60 * MIN
)
SILENT = event(
    "fired",
    rule="santa-fe.silent",
    device="sf-wx-01",
    sensor=None,
    severity="info",
    label="3 intervals without a reading",
    start_ns=T0 - 30 * MIN,
    peak=5400.0,
)
RESISTENCIA = event(
    "fired",
    rule="resistencia.level.evacuation",
    pilot="resistencia",
    device="rs-rlv-01",
    severity="critical",
    label="evacuation",
    start_ns=T0 + 10 * MIN,
    late=True,
)


@dataclass
class World:
    """The app in a client, its alarm store, and a header per scope."""

    client: TestClient
    alarms: AlarmStore
    headers: dict[str, dict[str, str]]
    data_dir: Path


def make_world(tmp_path: Path, registry: Registry, **settings: Any) -> Iterator[World]:
    data_dir = tmp_path / "var"
    store = EmbeddedStore(data_dir / "store.sqlite", registry)
    tokens = TokenStore.in_data_dir(data_dir)
    headers = {
        scope: {"Authorization": f"Bearer {tokens.create(name, scope)}"}  # type: ignore[arg-type]
        for scope, name in (("read", "ana"), ("operator", "oscar"), ("admin", "ada"))
    }
    headers["read-2"] = {"Authorization": f"Bearer {tokens.create('bea', 'read')}"}
    app = create_app(Settings(data_dir=data_dir, _env_file=None, **settings), registry, store)
    app.state.streams.poll_s = 0.05  # the stream's poll; its behaviour is the same at 0.5 s
    try:
        with TestClient(app) as client:
            # The alert service's side of the store; the app opened its own as it started.
            alarms = AlarmStore(data_dir / "alerts.sqlite")
            try:
                yield World(client, alarms, headers, data_dir)
            finally:
                alarms.close()
    finally:
        tokens.close()
        store.close()


@pytest.fixture
def world(tmp_path: Path, registry: Registry) -> Iterator[World]:
    yield from make_world(tmp_path, registry, api_max_streams=3, api_max_streams_per_token=2)


@pytest.fixture
def recorded(world: World) -> World:
    world.alarms.record([FLOOD, GAUGE_2, SILENT, RESISTENCIA])
    world.alarms.record([GAUGE_2_CLEARED])
    return world


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()]


def assert_problem(response: httpx.Response, status: int, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == problems.PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert words in body["detail"], body
    return body


# -- listing -------------------------------------------------------------------------------------


def test_before_the_alert_service_ever_ran_the_routes_answer_empty(
    tmp_path: Path, registry: Registry
) -> None:
    data_dir = tmp_path / "var"
    store = EmbeddedStore(data_dir / "store.sqlite", registry)
    tokens = TokenStore.in_data_dir(data_dir)
    read = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    app = create_app(Settings(data_dir=data_dir, _env_file=None), registry, store, cache=False)
    assert not (data_dir / "alerts.sqlite").exists()
    # Not started (no lifespan, so no alarm store open): empty, not an error.
    assert TestClient(app).get("/alerts", headers=read).json() == []
    with TestClient(app) as client:
        assert client.get("/alerts", headers=read).json() == []
        with client.stream("GET", "/alerts/stream", headers=read) as response:
            kind, event_id, data = next(sse_events(response))
        assert (kind, event_id) == ("snapshot", "0")
        assert data == {"seq": 0, "alarms": [], "can_acknowledge": False}
        unknown = client.get("/alerts/0123456789abcdef01234567", headers=read)
        assert_problem(unknown, 404, "unknown alarm '0123456789abcdef01234567'")
    tokens.close()
    store.close()


def test_an_alarm_as_the_api_shows_it(recorded: World) -> None:
    [alarm] = recorded.client.get(
        "/alerts", params={"device": "sf-rlv-01"}, headers=recorded.headers["read"]
    ).json()
    assert alarm["id"] == FLOOD.alarm_id
    assert (alarm["state"], alarm["active"], alarm["end"], alarm["end_ns"]) == (
        "active",
        True,
        None,
        None,
    )
    assert alarm["start"] == "2026-11-20T14:00:00-03:00"  # RFC 3339 in the pilot's zone
    assert alarm["start_ns"] == T0
    assert (alarm["rule"], alarm["label"], alarm["severity"]) == (
        "santa-fe.level.alert",
        "alert",
        "warning",
    )
    assert (alarm["peak"], alarm["late"], alarm["acked_by"]) == (5.41, False, None)
    assert alarm["link"].endswith("/#pilot=santa-fe&t=2026-11-20T17:00:00Z")
    one = recorded.client.get(f"/alerts/{FLOOD.alarm_id}", headers=recorded.headers["read"])
    assert one.json() == alarm


def test_filters(recorded: World) -> None:
    def listed(**params: object) -> list[str]:
        return ids(recorded.client.get("/alerts", params=params, headers=recorded.headers["read"]))

    everything = [RESISTENCIA, FLOOD, SILENT, GAUGE_2]  # newest start first
    assert listed() == [e.alarm_id for e in everything]
    assert listed(pilot="santa-fe") == [e.alarm_id for e in (FLOOD, SILENT, GAUGE_2)]
    assert listed(device="sf-wx-01") == [SILENT.alarm_id]
    assert listed(rule="resistencia.level.evacuation") == [RESISTENCIA.alarm_id]
    assert listed(severity="critical") == [RESISTENCIA.alarm_id]
    assert listed(state="cleared") == [GAUGE_2.alarm_id]
    assert listed(state="active", pilot="santa-fe") == [FLOOD.alarm_id, SILENT.alarm_id]
    assert listed(limit=2) == [RESISTENCIA.alarm_id, FLOOD.alarm_id]
    # The period overlaps: the cleared gauge alarm ran from T0-120 min to T0-60 min.
    since = "2026-11-20T12:30:00-03:00"  # T0 - 90 min: inside the gauge alarm
    until = "2026-11-20T13:45:00-03:00"  # T0 - 15 min: after the silence began
    assert listed(since=since, until=until) == [SILENT.alarm_id, GAUGE_2.alarm_id]
    # The gauge alarm ended at 16:00 UTC (T0 - 60 min), the silence is still on.
    assert listed(since="2026-11-20T16:00:00Z") == [e.alarm_id for e in everything]
    assert listed(since="2026-11-20T16:00:01Z") == [
        e.alarm_id for e in (RESISTENCIA, FLOOD, SILENT)
    ]
    # The gauge alarm started at 15:00 UTC: a period until then does not hold it.
    assert listed(until="2026-11-20T15:00:00Z") == []
    assert listed(until="2026-11-20T15:00:01Z") == [GAUGE_2.alarm_id]
    assert listed(pilot="san-nicolas") == []


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"pilot": "atlantis"}, 404, "unknown pilot 'atlantis'; known pilots: santa-fe"),
        ({"device": "xx-01"}, 404, "unknown device 'xx-01'"),
        ({"pilot": "resistencia", "device": "sf-rlv-01"}, 404, "in pilot 'resistencia'"),
        ({"severity": "apocalyptic"}, 422, "severity"),
        ({"state": "asleep"}, 422, "state"),
        ({"since": "yesterday"}, 422, "since"),
        ({"until": "2026-11-20"}, 422, "until"),
        ({"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"}, 422, "before"),
        ({"limit": 0}, 422, "limit"),
        ({"limit": 1001}, 422, "limit"),
    ],
)
def test_bad_filters_are_problems(
    world: World, params: dict[str, object], status: int, words: str
) -> None:
    response = world.client.get("/alerts", params=params, headers=world.headers["read"])
    assert_problem(response, status, words)


def test_every_alarm_route_needs_a_token(world: World) -> None:
    for method, path in (
        ("GET", "/alerts"),
        ("GET", "/alerts/stream"),
        ("GET", f"/alerts/{FLOOD.alarm_id}"),
        ("POST", f"/alerts/{FLOOD.alarm_id}/ack"),
    ):
        assert_problem(world.client.request(method, path), 401, "needs a token")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/alerts"), ("GET", "/alerts/{alarm_id}"), ("POST", "/alerts/{alarm_id}/ack")],
)
def test_no_request_the_schema_allows_breaks_the_alarm_routes(
    recorded: World, method: str, path: str
) -> None:
    """Generated requests: no 5xx, answers as documented (the stream never ends: not here)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", recorded.client.app)
    operation = schema[path][method]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=15, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
    )
    def check(case: Case[Any]) -> None:
        # A schema cannot say which texts are instants: a 422 naming them is right.
        case.call_and_validate(
            headers=recorded.headers["admin"], excluded_checks=[checks.positive_data_acceptance]
        )

    check()


# -- acknowledging -------------------------------------------------------------------------------


def test_acknowledging_needs_the_operator_scope_and_keeps_the_first(recorded: World) -> None:
    client, headers, path = recorded.client, recorded.headers, f"/alerts/{FLOOD.alarm_id}/ack"
    refused = client.post(path, headers=headers["read"], json={"note": "mine"})
    assert_problem(refused, 403, "token 'ana' has the read scope; this needs the operator scope")

    first = client.post(path, headers=headers["operator"], json={"note": "crew on the way"})
    assert first.status_code == 200, first.text
    acked = first.json()
    assert (acked["acked_by"], acked["ack_note"], acked["state"]) == (
        "oscar",
        "crew on the way",
        "active",
    )
    assert acked["acked"] is not None
    assert acked["seq"] == recorded.alarms.last_seq()  # the acknowledgement is a change

    again = client.post(path, headers=headers["admin"], json={"note": "me too"})
    assert again.status_code == 200, again.text
    assert again.json() == acked  # idempotent: the first acknowledgement stays
    assert client.get(f"/alerts/{FLOOD.alarm_id}", headers=headers["read"]).json() == acked

    # The body is optional; an admin token acknowledges too; a cleared alarm can be.
    done = client.post(f"/alerts/{GAUGE_2.alarm_id}/ack", headers=headers["admin"])
    assert done.status_code == 200, done.text
    assert (done.json()["acked_by"], done.json()["ack_note"]) == ("ada", "")


@pytest.mark.parametrize(
    ("body", "words"),
    [({"note": "x" * 501}, "note"), ({"nope": 1}, "nope"), ([1, 2], "dictionary")],
)
def test_a_bad_acknowledgement_body_is_a_problem(recorded: World, body: object, words: str) -> None:
    response = recorded.client.post(
        f"/alerts/{FLOOD.alarm_id}/ack", headers=recorded.headers["operator"], json=body
    )
    assert_problem(response, 422, words)


def test_acknowledging_an_unknown_alarm_is_404(recorded: World) -> None:
    response = recorded.client.post("/alerts/feedface/ack", headers=recorded.headers["operator"])
    assert_problem(response, 404, "unknown alarm 'feedface'")


# -- the stream ----------------------------------------------------------------------------------


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str | None, Any]]:
    """(event, id, data) of each event of a stream; comments are skipped."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                yield fields.get("event", "message"), fields.get("id"), orjson.loads(fields["data"])


def test_the_stream_sends_a_snapshot_then_each_change(recorded: World) -> None:
    headers = recorded.headers["operator"]
    with recorded.client.stream("GET", "/alerts/stream", headers=headers) as response:
        events = sse_events(response)
        kind, event_id, snapshot = next(events)
        assert kind == "snapshot"
        assert event_id == str(snapshot["seq"]) == str(recorded.alarms.last_seq())
        assert snapshot["can_acknowledge"] is True
        active = {a["id"] for a in snapshot["alarms"]}
        assert active == {FLOOD.alarm_id, SILENT.alarm_id, RESISTENCIA.alarm_id}

        # Changes while connected: one cleared, one fired, one acknowledged, in that order.
        recorded.alarms.record([event("cleared", end_ns=T0 + 30 * MIN)])
        new = event("fired", device="sf-rlv-02", start_ns=T0 + 40 * MIN)
        recorded.alarms.record([new])
        recorded.alarms.ack(SILENT.alarm_id, "oscar", "looking")
        changes = [next(events) for _ in range(3)]
    assert [(k, d["id"], d["state"]) for k, _, d in changes] == [
        ("alarm", FLOOD.alarm_id, "cleared"),
        ("alarm", new.alarm_id, "active"),
        ("alarm", SILENT.alarm_id, "active"),
    ]
    assert [int(i or 0) for _, i, _ in changes] == [d["seq"] for _, _, d in changes]
    assert changes[0][2]["end"] == "2026-11-20T14:30:00-03:00"
    assert changes[2][2]["acked_by"] == "oscar"
    assert recorded.client.app.state.streams.open_streams == 0  # type: ignore[attr-defined]


def test_last_event_id_resumes_after_it_without_a_snapshot(recorded: World) -> None:
    seen = recorded.alarms.last_seq()
    recorded.alarms.record([event("cleared", end_ns=T0 + 30 * MIN)])
    recorded.alarms.ack(RESISTENCIA.alarm_id, "oscar")
    headers = {**recorded.headers["read"], "Last-Event-ID": str(seen)}
    with recorded.client.stream("GET", "/alerts/stream", headers=headers) as response:
        events = sse_events(response)
        first, second = next(events), next(events)
    assert [(k, i, d["id"]) for k, i, d in (first, second)] == [
        ("alarm", str(seen + 1), FLOOD.alarm_id),
        ("alarm", str(seen + 2), RESISTENCIA.alarm_id),
    ]
    # An id this store never gave (a store replaced since): a snapshot, as for a new client.
    headers["Last-Event-ID"] = str(seen + 100)
    with recorded.client.stream("GET", "/alerts/stream", headers=headers) as response:
        kind, event_id, _ = next(sse_events(response))
    assert (kind, event_id) == ("snapshot", str(seen + 2))
    headers["Last-Event-ID"] = "forty-two"
    assert_problem(recorded.client.get("/alerts/stream", headers=headers), 422, "last-event-id")


def test_a_stream_resumed_too_far_behind_starts_with_a_snapshot(recorded: World) -> None:
    streams = recorded.client.app.state.streams  # type: ignore[attr-defined]
    streams.max_replay = 2  # 1000 by default: the snapshot's own bound
    last = recorded.alarms.last_seq()
    headers = {**recorded.headers["read"], "Last-Event-ID": str(last - 2)}
    with recorded.client.stream("GET", "/alerts/stream", headers=headers) as response:
        events = sse_events(response)
        replayed = [next(events)[:2] for _ in range(2)]
    assert replayed == [("alarm", str(last - 1)), ("alarm", str(last))]  # within the bound
    for behind in (3, last):  # `Last-Event-ID: 0` asks for every change since the first
        headers["Last-Event-ID"] = str(last - behind)
        with recorded.client.stream("GET", "/alerts/stream", headers=headers) as response:
            kind, event_id, snapshot = next(sse_events(response))
        assert (kind, event_id) == ("snapshot", str(last))
        assert {a["id"] for a in snapshot["alarms"]} == {
            FLOOD.alarm_id,
            SILENT.alarm_id,
            RESISTENCIA.alarm_id,
        }


def test_streams_are_bounded_per_token_and_in_all(world: World) -> None:
    client, headers = world.client, world.headers
    streams = world.client.app.state.streams  # type: ignore[attr-defined]
    with (
        client.stream("GET", "/alerts/stream", headers=headers["read"]) as one,
        client.stream("GET", "/alerts/stream", headers=headers["read"]) as two,
    ):
        assert (one.status_code, two.status_code) == (200, 200)
        third = client.get("/alerts/stream", headers=headers["read"])
        assert_problem(third, 429, "PILOTS_API_MAX_STREAMS_PER_TOKEN")
        assert int(third.headers["retry-after"]) > 0
        with client.stream("GET", "/alerts/stream", headers=headers["read-2"]) as other:
            assert other.status_code == 200  # another token: its own bound
            fourth = client.get("/alerts/stream", headers=headers["read-2"])
            assert_problem(fourth, 429, "serves 3 alarm streams (PILOTS_API_MAX_STREAMS)")
        assert streams.open_streams == 2
    assert streams.open_streams == 0  # every stream closed by its client was given back
    with client.stream("GET", "/alerts/stream", headers=headers["read"]) as again:
        assert again.status_code == 200


def test_stopping_ends_open_streams_and_refuses_new_ones(world: World) -> None:
    streams = world.client.app.state.streams  # type: ignore[attr-defined]
    with world.client.stream("GET", "/alerts/stream", headers=world.headers["read"]) as response:
        events = sse_events(response)
        assert next(events)[0] == "snapshot"
        streams.close()  # what the lifespan's end and SIGTERM do
        assert list(events) == []  # the stream ends
    assert streams.open_streams == 0
    refused = world.client.get("/alerts/stream", headers=world.headers["read"])
    assert_problem(refused, 503, "stopping")


def test_pilots_api_gives_back_a_dropped_stream_and_stops_with_one_open(
    tmp_path: Path, registry: Registry
) -> None:
    data_dir = tmp_path / "var"
    tokens = TokenStore.in_data_dir(data_dir)
    headers = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    tokens.close()
    alarms = AlarmStore(data_dir / "alerts.sqlite")
    alarms.record([FLOOD])
    alarms.close()
    env = {
        "PILOTS_DATA_DIR": str(data_dir),
        "PILOTS_API_PORT": str(free_port()),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        "PILOTS_API_MAX_STREAMS_PER_TOKEN": "1",
    }
    api = PilotsProcess(["api"], env, tmp_path, "api")
    base = f"http://127.0.0.1:{env['PILOTS_API_PORT']}"
    try:
        wait_for_http(f"{base}/health", 30, api)
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            first = open_stream(client)
            assert first is not None
            opened = sse_events(first)  # kept: a closed iterator would close the response
            _, _, snapshot = next(opened)
            assert [a["id"] for a in snapshot["alarms"]] == [FLOOD.alarm_id]
            assert open_stream(client) is None  # the token's one stream is taken
            first.close()  # the client goes away without a word
            # The server notices, and the token's stream is free again.
            held = wait_for(lambda: open_stream(client), 10, "the dropped stream given back")
            try:
                events = sse_events(held)
                assert next(events)[0] == "snapshot"
                code = api.stop(signal.SIGTERM, timeout_s=20)
                assert list(events) == []  # the server ended the stream, and then stopped
            finally:
                held.close()
    finally:
        if api.proc.poll() is None:
            api.stop(signal.SIGKILL)
    assert code == 0, api.output()


def open_stream(client: httpx.Client) -> httpx.Response | None:
    """A stream opened now, or None when the API refuses it (closed at once)."""
    response = client.send(client.build_request("GET", "/alerts/stream"), stream=True)
    if response.status_code == 200:
        return response
    response.read()
    response.close()
    assert response.status_code == 429, response.text
    return None


# -- a client that does not read, over a real socket -----------------------------------------


@dataclass
class Live:
    """The app served by uvicorn on `port`, its streams' bounds, the alarm store, a read token."""

    port: int
    streams: StreamBounds
    alarms: AlarmStore
    token: str


@contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """`app` served by uvicorn in a thread (lifespan included); yields the port."""
    listener = socket.socket()
    # Inherited by the accepted sockets, and then not grown by the kernel: a client that does
    # not read makes the server's sends wait after some 100 KB (with uvicorn's own buffer),
    # not after the megabytes loopback would otherwise hold.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "uvicorn started", interval_s=0.02)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def live(tmp_path: Path, registry: Registry) -> Iterator[Live]:
    data_dir = tmp_path / "var"
    store = EmbeddedStore(data_dir / "store.sqlite", registry)
    tokens = TokenStore.in_data_dir(data_dir)
    token = tokens.create("ana", "read")
    app = create_app(Settings(data_dir=data_dir, _env_file=None), registry, store, cache=False)
    streams: StreamBounds = app.state.streams
    streams.poll_s = 0.05
    alarms = AlarmStore(data_dir / "alerts.sqlite")
    # 400 alarms: some 350 KB of events, more than the sockets and uvicorn's buffer hold.
    alarms.record([event("fired", start_ns=T0 + i * NS_PER_S) for i in range(400)])
    try:
        with served(app) as port:
            yield Live(port, streams, alarms, token)
    finally:
        alarms.close()
        tokens.close()
        store.close()


def idle_reader(live: Live) -> socket.socket:
    """A client that asks for every change (`Last-Event-ID: 0`), reads the status, and stops."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", live.port))
    client.sendall(
        f"GET /alerts/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.token}\r\n"
        "Last-Event-ID: 0\r\n\r\n".encode()
    )
    assert client.recv(15).startswith(b"HTTP/1.1 200")
    return client


def read_to_the_end(client: socket.socket) -> bytes:
    """What the server still sends, up to the end of its chunked body."""
    client.settimeout(5)
    received = b""
    while not received.endswith(b"\r\n0\r\n\r\n"):
        chunk = client.recv(65536)
        assert chunk, "the connection closed before the body's end"
        received += chunk
    return received


def test_a_stream_whose_client_stops_reading_is_dropped_and_its_slot_given_back(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.routes.alerts")
    live.streams.send_timeout_s = 0.5  # 10 s by default
    client = idle_reader(live)
    try:
        assert live.streams.open_streams == 1
        began = time.monotonic()
        wait_for(lambda: live.streams.open_streams == 0, 3, "the stream dropped", 0.02)
        assert time.monotonic() - began >= 0.5  # dropped for its send, not for anything else
        assert "stream of token 'ana' dropped: its client took nothing for 0.5 s" in caplog.text
        # What the server had already taken still arrives, then the body ends (not cut in a
        # chunk): the client reconnects and resumes after the last id it got.
        body = read_to_the_end(client)
        ids = [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")]
        assert ids == list(range(1, len(ids) + 1))
        assert 0 < len(ids) < 400
    finally:
        client.close()


def test_closing_the_streams_cuts_one_whose_client_does_not_read(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.routes.alerts")
    client = idle_reader(live)
    try:
        time.sleep(0.3)  # the server's sends now wait for this client
        began = time.monotonic()
        live.streams.close()  # what SIGTERM, SIGINT and the lifespan's end do
        wait_for(lambda: live.streams.open_streams == 0, 2, "the stream ended", 0.02)
        assert time.monotonic() - began < 0.5  # as docs/ALERTS.md promises
        assert "alarm stream of token 'ana' cut: its client is not reading" in caplog.text
        read_to_the_end(client)  # the body still ends cleanly for a client that reads again
    finally:
        client.close()


# -- the report ----------------------------------------------------------------------------------


def test_the_report_lists_the_periods_alarms(recorded: World) -> None:
    recorded.alarms.ack(GAUGE_2.alarm_id, "oscar")
    params = {"start": "2026-11-20T00:00:00-03:00", "end": "2026-11-21T00:00:00-03:00"}
    read = recorded.headers["read"]
    report = recorded.client.get("/pilots/santa-fe/report", params=params, headers=read)
    assert report.status_code == 200, report.text
    listed = report.json()["alarms"]
    assert [a["id"] for a in listed] == [GAUGE_2.alarm_id, SILENT.alarm_id, FLOOD.alarm_id]

    page = recorded.client.get("/pilots/santa-fe/report.html", params=params, headers=read)
    assert page.status_code == 200
    section = page.text.split('<section id="alarms">', 1)[1].split("</section>", 1)[0]
    rows = section.split("<tr>")[2:]  # after the header row
    assert len(rows) == 3
    gauge, silent, flood = rows
    for text in ("2026-11-20 12:00", "2026-11-20 13:00", "sf-rlv-02", "alert", "5.41", "oscar"):
        assert text in gauge, gauge
    assert "1 h 30 min" in silent  # a silence's peak is its length
    assert "still active" in flood
    assert "warning" in flood

    # The alarm's acknowledgement changes the report: it is rebuilt, not kept.
    recorded.alarms.ack(FLOOD.alarm_id, "ada")
    again = recorded.client.get("/pilots/santa-fe/report", params=params, headers=read).json()
    assert again["alarms"][2]["acked_by"] == "ada"

    other = recorded.client.get("/pilots/san-nicolas/report.html", params=params, headers=read)
    assert "No alarms in this period." in other.text


def test_a_report_without_an_alarm_store_still_works(world: World) -> None:
    world.client.app.state.alarms.close()  # type: ignore[attr-defined]
    params = {"start": "2026-11-20T00:00:00-03:00", "end": "2026-11-21T00:00:00-03:00"}
    read = world.headers["read"]
    report = world.client.get("/pilots/santa-fe/report", params=params, headers=read)
    assert report.status_code == 200, report.text
    assert report.json()["alarms"] is None
    page = world.client.get("/pilots/santa-fe/report.html", params=params, headers=read)
    assert "alarms are not listed" in page.text
    assert world.client.get("/alerts", headers=read).json() == []


# -- the operator scope in an older token file ---------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
    sha256 TEXT NOT NULL UNIQUE,
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_ns IS NULL;
"""


def test_an_older_token_file_is_migrated_keeping_every_token(tmp_path: Path) -> None:
    path = tmp_path / "api-tokens.sqlite"
    # A file of the previous version: its table refuses any scope but read and admin.
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(OLD_SCHEMA)
    live = {"ana": "pt_" + secrets.token_urlsafe(32), "root": "pt_" + secrets.token_urlsafe(32)}
    revoked = "pt_" + secrets.token_urlsafe(32)
    for name, scope, token, revoked_ns in (
        ("ana", "read", revoked, time.time_ns()),
        ("ana", "read", live["ana"], None),
        ("root", "admin", live["root"], None),
    ):
        old.execute(
            "INSERT INTO tokens (name, scope, sha256, created_ns, revoked_ns) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, scope, hashlib.sha256(token.encode()).hexdigest(), time.time_ns(), revoked_ns),
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        old.execute(
            "INSERT INTO tokens (name, scope, sha256, created_ns) VALUES ('x', 'operator', 'h', 1)"
        )
    before = old.execute("SELECT * FROM tokens ORDER BY id").fetchall()
    old.close()

    store = TokenStore(path)
    try:
        after = sqlite3.connect(path).execute("SELECT * FROM tokens ORDER BY id").fetchall()
        assert after == before  # every row, with its id, hash, scope and dates
        for name, token in live.items():
            principal = store.verify(token)
            assert principal is not None
            assert principal.name == name
        assert store.verify(revoked) is None
        principal = store.verify(store.create("oscar", "operator"))
        assert principal is not None
        assert principal.scope == "operator"
        assert principal.allows("read")
        assert principal.allows("operator")
        assert not principal.allows("admin")
        with pytest.raises(TokenError, match="already named 'ana'"):
            store.create("ana", "read")  # the index of live names came along
    finally:
        store.close()
    TokenStore(path).close()  # opening a migrated file again changes nothing
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM tokens").fetchone() == (4,)

"""The alert service against a hostile device, a careless operator and a wrong clock.

Real Mosquitto (the session's), the alert service in this process as the integration tests run
it, its real SQLite stores. Each test states what must hold; those marked "fails now" below
show a problem found in review (issue 14), and pass once it is fixed:

- one device's single 256 KB backlog message (readings alternating across the evacuation level
  with a 30-minute gap, 1 s apart) makes about 11,400 notifications: more than the global
  outbox bound on its own, so the oldest waiting rows, another pilot's real evacuation alarm
  among them, are dropped (`dropped_full`) (fails now, twice);
- a device cannot raise an alarm in another device's name (holds);
- a second service started with the same `PILOTS_ALERT_SESSION_ID` (another data directory, or
  no channel, so the dispatcher lock does not stop it) makes the two take the session from
  each other in a tight loop: neither evaluates anything (fails now);
- a rules file edited while the alarm store cannot be written (disk full) is lost: the watch
  counts it as loaded, the service keeps the old rules for good (fails now);
- a device renamed in the registry leaves its open alarm active for ever (fails now);
- a registry the rules file does not accept is refused, and from then on the readings of the
  renamed device are dropped by the alert service without a word (fails now);
- a read token's stream whose client does not read (after `Last-Event-ID: 0` asked for every
  change since the first) keeps `pilots api` from stopping on SIGTERM: uvicorn waits for the
  response for ever (fails now);
- a wall clock moved back holds the outbox's waiting notifications back for as long as the
  step (fails now);
- a rule label with a line break is accepted, and then no e-mail of that rule can ever be
  built (fails now).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from alerts.message import compose
from alerts.outbox import Outbox
from alerts.service import AlertService
from alerts.store import AlarmQuery, AlarmStore
from api.auth import TokenStore
from core.alerts import AlertEvent, load_rules
from core.errors import ConfigError
from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry
from core.settings import Settings
from core.timeutil import NS_PER_MS, NS_PER_S
from tests.helpers import publish, wait_for
from tests.processes import PilotsProcess, wait_for_http
from tests.services import Mosquitto, free_port

pytestmark = pytest.mark.integration

SECRET = "webhook-" + uuid.uuid4().hex
HOSTILE = "pilots/santa-fe/sf-rlv-01/up"
#: Resistencia's river gauge: its evacuation level is 6.50 m.
GENUINE = "pilots/resistencia/rs-rlv-01/up"


def _settings(mosquitto: Mosquitto, tmp_path: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "mqtt_url": mosquitto.url,
        "data_dir": tmp_path / "var",
        "alert_session_id": f"hostile-{uuid.uuid4().hex[:8]}",
        "alert_checkpoint_every_s": 0.2,
        "alert_reload_every_s": 0.1,
        **extra,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def started() -> Iterator[list[AlertService]]:
    """Services a test starts; each is stopped at its end."""
    services: list[AlertService] = []
    yield services
    for service in services:
        service.stop(5)


def _start(
    services: list[AlertService], settings: Settings, *, subscribed: bool = True
) -> AlertService:
    service = AlertService(settings).start()
    services.append(service)
    if subscribed:
        wait_for(service.subscribed.is_set, 10, "the alert service subscribed")
    return service


def reading(ts_ms: int, level: float, **extra: object) -> dict[str, object]:
    return {"ts": ts_ms, "readings": {"level": level}, **extra}


def flapping_backlog(start_ms: int, max_bytes: int) -> bytes:
    """As many 1-second-apart readings as fit: past 5.70 m, then safe for 30 minutes, again."""
    items: list[dict[str, object]] = []
    t = start_ms
    while True:
        step = [reading(t, 9.0), reading(t + 1000, 0.0), reading(t + 1_801_000, 0.0)]
        if len(orjson.dumps(items + step)) > max_bytes - 64:
            return orjson.dumps(items)
        items += step
        t += 1_802_000


# -- a hostile device --------------------------------------------------------------------------


@dataclass
class Flood:
    genuine_keys: list[str]
    rows: dict[str, str]  # genuine key -> its webhook row's state
    hostile_rows: int  # outbox rows the hostile device's messages made
    outbox_max: int
    forged: int  # alarms of the device the hostile one named in its payload


@pytest.fixture(scope="module")
def flood(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flood]:
    """A real evacuation alarm waits (its receiver is down), then one device's message comes."""
    tmp_path = tmp_path_factory.mktemp("flood")
    receiver_url = f"http://127.0.0.1:{free_port()}/hooks/pilots"  # nobody listens: it is down
    settings = _settings(
        mosquitto, tmp_path, alert_webhook_url=receiver_url, alert_webhook_secret=SECRET
    )
    service = AlertService(settings).start()
    try:
        wait_for(service.subscribed.is_set, 10, "the alert service subscribed")
        outbox = service.outbox
        assert outbox is not None
        now_ms = time.time_ns() // NS_PER_MS
        publish(mosquitto.port, [(GENUINE, orjson.dumps(reading(now_ms, 7.0)))])
        store = service.store
        genuine = wait_for(
            lambda: store.query(AlarmQuery(pilot="resistencia", limit=10)), 10, "the real alarm"
        )
        keys = [f"{a.id}:fired" for a in genuine]
        wait_for(lambda: all(outbox.rows(k) for k in keys), 10, "its notification kept")

        # The hostile device: a live reading, a forged one, then one message of backlog.
        payload = flapping_backlog(now_ms - 200 * 86_400_000, settings.ingest_max_payload_bytes)
        forged = orjson.dumps(reading(now_ms, 9.0, device="rs-rlv-02"))
        publish(
            mosquitto.port,
            [
                (HOSTILE, orjson.dumps(reading(now_ms, 3.0))),
                (HOSTILE, forged),
                (HOSTILE, payload),
            ],
        )
        wait_for(lambda: service.messages >= 4, 30, "the device's messages evaluated")
        wait_for(lambda: service.events > 10, 30, "the backlog's alarms recorded")
        last = -1
        while service.events != last:  # recorded when the count stops moving
            last = service.events
            time.sleep(0.5)
        hostile_ids = [a.id for a in store.query(AlarmQuery(device="sf-rlv-01", limit=1000))]
        # Nothing is delivered (the receiver is down): every row added waits, or was dropped.
        added = sum(outbox.pending().values()) + sum(outbox.dropped.values())
        assert hostile_ids  # the flood did raise alarms
        yield Flood(
            genuine_keys=keys,
            rows={k: outbox.rows(k)["webhook"].state for k in keys},
            hostile_rows=added - len(keys),
            outbox_max=settings.alert_outbox_max,
            forged=len(store.query(AlarmQuery(device="rs-rlv-02"))),
        )
    finally:
        service.stop(5)


def test_one_devices_backlog_does_not_drop_another_pilots_evacuation_notification(
    flood: Flood,
) -> None:
    # Fails now: `Outbox._drop_beyond_bound` drops the oldest waiting rows, whoever they are.
    assert flood.genuine_keys
    assert flood.rows == dict.fromkeys(flood.genuine_keys, "pending")


def test_one_device_message_cannot_fill_the_outbox_on_its_own(flood: Flood) -> None:
    # Fails now: about 11,400 notifications from one 256 KB message (about 1,900 late episodes
    # of three rules), over PILOTS_ALERT_OUTBOX_MAX (10,000) by itself: the global bound no
    # longer protects anyone once one device can fill it with one message.
    assert flood.hostile_rows < flood.outbox_max


def test_a_device_cannot_raise_an_alarm_in_another_devices_name(flood: Flood) -> None:
    assert flood.forged == 0


# -- a careless operator -----------------------------------------------------------------------


def test_a_second_service_on_the_same_session_does_not_stop_both(
    mosquitto: Mosquitto, tmp_path: Path, started: list[AlertService]
) -> None:
    # Fails now: each connection takes the session from the other and reconnects at once
    # (about a thousand times a second, "lost the broker ... (Unspecified error)"), and every
    # message received is rewound before it is evaluated.
    first = _settings(mosquitto, tmp_path / "a")
    second = first.model_copy(update={"data_dir": tmp_path / "b" / "var"})
    a = _start(started, first)
    b = _start(started, second, subscribed=False)
    now_ms = time.time_ns() // NS_PER_MS
    messages = [(HOSTILE, orjson.dumps(reading(now_ms - 10_000 + i, 3.0))) for i in range(5)]
    publish(mosquitto.port, messages)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and a.messages + b.messages < len(messages):
        time.sleep(0.1)
    assert a.messages + b.messages >= len(messages), "neither service evaluated a message"


def _full(store: AlarmStore, full: bool) -> None:
    """The store's disk is full (SQLite says `database or disk is full`), or no longer."""
    with store._lock:
        if full:
            (pages,) = store._db.execute("PRAGMA page_count").fetchone()
            store._db.execute(f"PRAGMA max_page_count = {pages}")
        else:
            store._db.execute("PRAGMA max_page_count = 1073741823")


RULE = """
[defaults]
include = false

[[rules]]
id = "sf.level.test"
kind = "threshold"
pilot = "santa-fe"
sensor = "level"
level = {level}
clear_s = 0
"""


def test_an_edited_rules_file_is_not_lost_when_the_store_fails_meanwhile(
    mosquitto: Mosquitto, tmp_path: Path, started: list[AlertService]
) -> None:
    # Fails now: `_maybe_reload` takes the new rules from the watch, then `flush()` raises
    # (the store cannot be written); the new rules are dropped, the watch counts them as
    # loaded and does not read the unchanged file again. Only "alerts not recorded" is logged.
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE.format(level=8.0))
    settings = _settings(mosquitto, tmp_path, alert_rules=rules, alert_checkpoint_every_s=30)
    service = _start(started, settings)
    now_ms = time.time_ns() // NS_PER_MS
    publish(mosquitto.port, [(HOSTILE, orjson.dumps(reading(now_ms - 5000, 3.0)))])
    wait_for(lambda: service.messages >= 1, 5, "a reading evaluated")
    _full(service.store, True)
    rules.write_text(RULE.format(level=4.0))  # the operator lowers the level meanwhile
    time.sleep(1.0)
    _full(service.store, False)
    publish(mosquitto.port, [(HOSTILE, orjson.dumps(reading(now_ms, 5.0)))])
    wait_for(lambda: service.messages >= 2, 5, "the next reading evaluated")
    time.sleep(0.5)
    assert [r.level for r in service.config.rules] == [4.0]
    assert service.events >= 1  # 5.0 m is past the new level


def _registry_copy(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "registry.toml"
    text = DEFAULT_REGISTRY_PATH.read_text()
    path.write_text(text)
    old = time.time_ns() - 5 * NS_PER_S  # settled: the watch reads it at once
    os.utime(path, ns=(old, old))
    return path, text


def _rename(path: Path, text: str) -> None:
    path.write_text(text.replace('id = "sf-rlv-01"', 'id = "sf-rlv-09"'))
    old = time.time_ns() - NS_PER_S
    os.utime(path, ns=(old, old))


EVACUATION = RULE.format(level=5.7) + "{devices}"


def test_renaming_a_device_does_not_leave_its_alarm_active_for_ever(
    mosquitto: Mosquitto, tmp_path: Path, started: list[AlertService]
) -> None:
    # Fails now: the reload drops the renamed device's state row with its open alarm; the store
    # keeps the alarm active (banner, MQTT retained state) and nothing can clear it; GET
    # /alerts?device=sf-rlv-01 is a 404 since the registry no longer knows the device.
    registry, text = _registry_copy(tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text(EVACUATION.format(devices=""))
    settings = _settings(mosquitto, tmp_path, registry=registry, alert_rules=rules)
    service = _start(started, settings)
    now_ms = time.time_ns() // NS_PER_MS
    publish(mosquitto.port, [(HOSTILE, orjson.dumps(reading(now_ms - 60_000, 6.0)))])
    wait_for(lambda: service.events >= 1, 5, "the evacuation alarm")
    _rename(registry, text)
    wait_for(lambda: service.reloads >= 1, 5, "the renamed registry taken")
    renamed = "pilots/santa-fe/sf-rlv-09/up"
    publish(mosquitto.port, [(renamed, orjson.dumps(reading(now_ms, 3.0)))])  # the river fell
    wait_for(lambda: service.messages >= 2, 5, "the renamed gauge's reading")
    time.sleep(0.5)
    known = load_registry(registry).devices
    active = service.store.query(AlarmQuery(state="active"))
    assert [(a.device, a.rule) for a in active if a.device not in known] == []


def test_readings_the_alert_service_cannot_evaluate_are_not_dropped_silently(
    mosquitto: Mosquitto,
    tmp_path: Path,
    started: list[AlertService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Fails now: the rules name sf-rlv-01, so the renamed registry is refused (one ERROR) and
    # the old one kept; ingest takes the new registry and stores sf-rlv-09's 7 m, while the
    # alert service's validator refuses it as an unknown device, and `_evaluate_held` throws
    # every rejection away: no alarm, no log line, no counter.
    registry, text = _registry_copy(tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text(EVACUATION.format(devices='devices = ["sf-rlv-01"]\n'))
    settings = _settings(mosquitto, tmp_path, registry=registry, alert_rules=rules)
    service = _start(started, settings)
    caplog.set_level(logging.INFO)
    _rename(registry, text)
    wait_for(
        lambda: any("refused" in r.getMessage() for r in caplog.records), 5, "the registry refused"
    )
    caplog.clear()
    now_ms = time.time_ns() // NS_PER_MS
    publish(mosquitto.port, [("pilots/santa-fe/sf-rlv-09/up", orjson.dumps(reading(now_ms, 7.0)))])
    wait_for(lambda: service.messages >= 1, 5, "the renamed gauge's message")
    time.sleep(0.5)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert service.events >= 1 or any("sf-rlv-09" in m for m in said), said


# -- a curious reader --------------------------------------------------------------------------


def test_a_stream_whose_client_does_not_read_does_not_keep_the_api_from_stopping(
    tmp_path: Path,
) -> None:
    # Fails now: the stream's `send` waits for the socket (flow control) and never sees that
    # the streams were closed; uvicorn then waits for that response before the lifespan ends,
    # for ever ("Waiting for connections to close"): a stop or restart of the API waits for
    # systemd's kill (90 s by default), its stores not closed. docs/ALERTS.md promises the
    # streams end within 0.5 s of SIGTERM.
    data_dir = tmp_path / "var"
    tokens = TokenStore.in_data_dir(data_dir)
    token = tokens.create("curious", "read")
    tokens.close()
    store = AlarmStore(data_dir / "alerts.sqlite")
    start = time.time_ns() - 86_400 * NS_PER_S
    store.record(
        [
            AlertEvent(
                id=f"{i:024x}:fired",
                alarm_id=f"{i:024x}",
                type="fired",
                rule="santa-fe.level.alert",
                kind="threshold",
                pilot="santa-fe",
                device="sf-rlv-01",
                sensor="level",
                severity="warning",
                label="alert",
                level=5.3,
                direction="above",
                start_ns=start + i * NS_PER_S,
                end_ns=None,
                at_ns=start + i * NS_PER_S,
                value=9.0,
                latest=9.0,
                peak=9.0,
                late=True,
            )
            for i in range(8000)  # about 7 MB of events: more than the sockets hold
        ]
    )
    store.close()
    port = free_port()
    env = {
        "PILOTS_DATA_DIR": str(data_dir),
        "PILOTS_API_PORT": str(port),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
    }
    api = PilotsProcess(["api"], env, tmp_path, "api")
    reader = socket.socket()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", 30, api)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", port))
        reader.sendall(
            f"GET /alerts/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Last-Event-ID: 0\r\n\r\n".encode()
        )
        assert reader.recv(15).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)  # the server fills the socket; this client never reads again
        api.proc.send_signal(signal.SIGTERM)
        try:
            api.proc.wait(4)
        except subprocess.TimeoutExpired:
            pytest.fail("pilots api did not stop within 4 s of SIGTERM:\n" + api.output()[-400:])
    finally:
        reader.close()
        if api.proc.poll() is None:
            api.proc.kill()
            api.proc.wait()


# -- the clock, and the rules' words -----------------------------------------------------------


def test_a_wall_clock_moved_back_does_not_hold_back_waiting_notifications(
    tmp_path: Path, registry: Registry
) -> None:
    # Fails now: a row is due at `due_ns`, set from the wall clock when it was added; after the
    # clock is stepped back an hour (NTP, an operator), nothing added before is sent for an hour.
    now = [time.time_ns()]
    outbox = Outbox(tmp_path / "alerts.sqlite", ["webhook"], clock=lambda: now[0])
    try:
        outbox.add(
            [
                compose(
                    registry,
                    alarm_id="a" * 24,
                    kind="fired",
                    device="rs-rlv-01",
                    sensor="level",
                    rule_id="resistencia.level.evacuation",
                    severity="critical",
                    level="evacuation",
                    threshold=6.5,
                    value=7.0,
                    start_ns=now[0],
                )
            ]
        )
        now[0] -= 3600 * NS_PER_S
        assert [p.notification.key for p in outbox.due("webhook")] == ["a" * 24 + ":fired"]
    finally:
        outbox.close()


def test_a_rule_label_with_a_line_break_is_refused(tmp_path: Path, registry: Registry) -> None:
    # Fails now: accepted; the label goes into the e-mail subject, where `EmailMessage` raises
    # ValueError on every attempt, retried until the row is dropped three days later.
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE.format(level=5.0) + 'label = "alert\\r\\nBcc: someone@example.org"\n')
    with pytest.raises(ConfigError):
        load_rules(rules, registry)

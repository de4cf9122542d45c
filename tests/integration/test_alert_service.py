"""The storm scenario played through Mosquitto into the alert service, on the scenario's clock.

The fleet publishes Santa Fe's 40-hour storm (`simulators.storm`) in twenty-minute steps of
simulated time; before each step the service's clock is set to the step's end, and the step is
done when the service has evaluated its messages and checked for silent devices at that
moment. So live and late mean what they would mean had the storm happened in real time: the
river's episodes are live alarms, the held gauge's episode, delivered in a burst three hours
after it ended, is a late one.

The alarms must be exactly those the ground truth implies under the test's rules: every
episode of the published levels at or above each level, ended by the first reading below its
clear level (`simulators.truth.level_episodes` with the hysteresis), and a silence wherever a
device sent nothing for three intervals. The webhook receiver (a real HTTP server) must get
each alarm's events once per idempotency key, the late ones worded as late.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.service import AlertService
from alerts.store import Alarm, AlarmQuery, AlarmStore
from core.registry import Registry, load_registry
from core.settings import Settings
from core.timeutil import MINUTE_NS, parse_instant_ns
from ingest.decoders import Router
from ingest.process import process
from ingest.validate import Validator
from simulators.faults import Faults
from simulators.fleet import Fleet, Message
from simulators.formats import DEFAULT_MIX
from simulators.storm import SPAN_NS, storm
from simulators.truth import level_episodes
from tests.helpers import plain, publish, wait_for
from tests.services import Mosquitto
from tests.webhook import Receiver

pytestmark = pytest.mark.integration

PILOT = "santa-fe"
START_NS = parse_instant_ns("2026-11-20T00:00:00-03:00")
STEP_NS = 20 * MINUTE_NS
SECRET = "webhook-" + uuid.uuid4().hex
#: The test's rules: both river levels with a 5 cm hysteresis and no clear delay, and silence.
CLEAR_BAND = 0.05
RULES = f"""
[defaults]
include = false

[[rules]]
id = "sf.level.alert"
kind = "threshold"
pilot = "{PILOT}"
sensor = "level"
threshold = "alert"
clear_level = {5.30 - CLEAR_BAND:.2f}
clear_s = 0

[[rules]]
id = "sf.level.evacuation"
kind = "threshold"
pilot = "{PILOT}"
sensor = "level"
threshold = "evacuation"
severity = "critical"
clear_level = {5.70 - CLEAR_BAND:.2f}
clear_s = 0

[[rules]]
id = "sf.silent"
kind = "silent"
pilot = "{PILOT}"
intervals = 3
"""


class Clock:
    """The service's clock, set by the test."""

    def __init__(self, ns: int) -> None:
        self.ns = ns
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.ns

    def set(self, ns: int) -> None:
        with self._lock:
            self.ns = ns


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET).start()
    yield server
    server.stop()


Reading = tuple[str, str, int, float, int]


def _read_back(messages: list[Message], registry: Registry) -> list[Reading]:
    """Every reading as ingest reads it: (device, sensor, device time, value, published)."""
    settings = Settings(_env_file=None)
    router = Router(settings.ingest_routes)
    validator = Validator(registry, max_future_s=600, max_age_days=3650)
    out = []
    for m in messages:
        checked = process(router, validator, m.topic, m.payload, m.ts_ns, max_payload_bytes=1 << 20)
        for t, d, s, v in zip(
            checked.ts_ns, checked.device, checked.sensor, checked.value, strict=True
        ):
            out.append((registry.device_list[d].id, registry.sensor_list[s].id, t, v, m.ts_ns))
    return out


def _expected_level_alarms(
    readings: list[Reading],
) -> set[tuple[str, str, int, int | None, float, bool]]:
    """Every episode at or above each level, ended by the first reading below its clear level."""
    expected = set()
    for device in sorted({r[0] for r in readings if r[1] == "level"}):
        mine = [(t, v, p) for d, s, t, v, p in readings if d == device and s == "level"]
        ts, vals, pub = (np.asarray(c) for c in zip(*mine, strict=True))
        for rule, level in (("sf.level.alert", 5.30), ("sf.level.evacuation", 5.70)):
            for e in level_episodes(ts, vals, pub, level, clear_below=round(level - CLEAR_BAND, 2)):
                expected.add((rule, device, e.start_ns, e.end_ns, round(e.peak, 6), e.late))
    return expected


def _expected_silences(
    readings: list[Reading], registry: Registry, devices: set[str]
) -> set[tuple[str, int]]:
    """(device, start) of each silence the service saw at a step's end (see the module)."""
    out = set()
    for device in devices:
        limit = 3 * registry.devices[device].interval_s * 10**9
        heard = [(p, t) for d, _, t, _, p in readings if d == device]
        open_start = None
        for hi in range(START_NS + STEP_NS, START_NS + SPAN_NS + 1, STEP_NS):
            last = max(t for p, t in heard if p < hi)
            if open_start is None and hi - last > limit:
                open_start = last + limit
            elif open_start is not None and hi - last <= limit:
                out.add((device, open_start))
                open_start = None
    return out


def _settle(service: AlertService, messages: int) -> None:
    """Wait until the service evaluated `messages` and then looked for silent devices."""
    wait_for(lambda: service.messages >= messages, 10, f"{messages} evaluated", interval_s=0.002)
    checks = service.silence_checks
    wait_for(lambda: service.silence_checks > checks + 1, 10, "a silence check", interval_s=0.002)


def _play(service: AlertService, clock: Clock, fleet: Fleet, port: int) -> list[Message]:
    """Publish the storm step by step on the service's clock (see the module)."""
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"storm-{uuid.uuid4().hex[:6]}")
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    published: list[Message] = []
    try:
        for lo in range(START_NS, START_NS + SPAN_NS, STEP_NS):
            clock.set(lo + STEP_NS)
            step = fleet.messages(lo, lo + STEP_NS)
            for info in [publisher.publish(m.topic, m.payload, qos=1) for m in step]:
                info.wait_for_publish(10)
            published += step
            _settle(service, len(published))
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    return published


def test_the_storm_gives_exactly_the_alarms_its_truth_implies_live_and_late(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    registry = load_registry()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    settings = Settings(
        _env_file=None,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "var",
        alert_rules=rules,
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SECRET,
        alert_session_id=f"alerts-{uuid.uuid4().hex[:8]}",
        alert_eval_every_s=0.01,
        alert_silence_every_s=0.01,
        alert_checkpoint_every_s=0.2,
        alert_retry_base_s=0.1,
        alert_retry_max_s=0.5,
    )
    story = storm(registry, [PILOT], START_NS)
    fleet = Fleet(
        registry, pilots=[PILOT], seed=7, faults=Faults(), formats=DEFAULT_MIX, scenario=story
    )
    clock = Clock(START_NS)
    service = AlertService(settings, clock=clock).start()
    try:
        wait_for(service.subscribed.is_set, 10, "the alert service subscribed")
        published = _play(service, clock, fleet, mosquitto.port)
        store = AlarmStore.from_settings(settings)
        alarms = store.query(AlarmQuery(limit=1000))
        store.close()
        events = 2 * len(alarms)  # every alarm has ended: a fired and a cleared each
        wait_for(lambda: len(set(receiver.keys())) >= events, 30, f"{events} notifications")
    finally:
        service.stop()

    readings = _read_back(published, registry)
    expected = _expected_level_alarms(readings)
    got = [
        (a.rule, a.device, a.start_ns, a.end_ns, round(a.peak, 6), a.late)
        for a in alarms
        if a.kind == "threshold"
    ]
    assert sorted(got) == sorted(expected)  # one alarm per episode, none more
    assert any(late for *_, late in expected)  # the held gauge's episode
    about = story.about[PILOT]
    quiet = {about["silent_device"], about["held_device"]}
    want_silences = _expected_silences(readings, registry, quiet)
    assert {d for d, _ in want_silences} == quiet
    assert {(a.device, a.start_ns) for a in alarms if a.kind == "silent"} == want_silences
    assert len(alarms) == len(expected) + len(want_silences)
    assert all(a.end_ns is not None and not a.active for a in alarms)

    # what the receiver got: every event once per key, signed, the late ones worded as late
    keys = receiver.keys()
    assert len(keys) == len(set(keys)) == 2 * len(alarms)
    assert all(r.signed for r in receiver.received)
    late_ids = {a.id for a in alarms if a.late}
    assert late_ids
    assert all(
        "late" in r.body["text"] for r in receiver.received if r.body["alarm_id"] in late_ids
    )


class Health:
    """A component's /health: a real HTTP server answering 200 or 503 as the test says."""

    def __init__(self) -> None:
        self.status = 200
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"status": "unavailable"}' if health.status != 200 else b'{"status": "ok"}'
                self.send_response(health.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_unhealthy_component_alarms_and_is_told_once_across_a_restart(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    health = Health()
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[defaults]\ninclude = false\n\n[[rules]]\nid = "system.ingest-1"\nkind = "unhealthy"\n'
        f'url = "{health.url}"\ncomponent = "ingest-1"\npending_s = 0\nclear_s = 0\n'
    )
    settings = Settings(
        _env_file=None,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "var",
        alert_rules=rules,
        alert_webhook_url=receiver.url,
        alert_webhook_secret=SECRET,
        alert_session_id=f"alerts-{uuid.uuid4().hex[:8]}",
        alert_health_every_s=0.1,
        alert_retry_base_s=0.1,
        alert_retry_max_s=0.5,
    )

    def alarms() -> list[Alarm]:
        store = AlarmStore.from_settings(settings)
        try:
            return store.query(AlarmQuery(pilot="system"))
        finally:
            store.close()

    try:
        health.status = 503
        service = AlertService(settings).start()
        try:
            wait_for(alarms, 10, "the unhealthy alarm")
        finally:
            service.stop()
        service = AlertService(settings).start()  # a restart while it is still unhealthy
        try:
            health.status = 200
            wait_for(lambda: not alarms()[0].active, 10, "the alarm cleared")
        finally:
            service.stop()
    finally:
        health.close()
    [alarm] = alarms()  # the restart adopted it: not a second alarm
    assert (alarm.rule, alarm.device, alarm.kind) == ("system.ingest-1", "ingest-1", "unhealthy")
    wait_for(lambda: len(set(receiver.keys())) == 2, 10, "both notifications")
    texts = {r.key.rsplit(":", 1)[1]: r.body["text"] for r in receiver.received}
    assert texts["fired"].startswith("System: ingest-1 (")
    assert "unhealthy since" in texts["fired"] and "HTTP 503" in texts["fired"]
    assert texts["cleared"].startswith("System: ingest-1 healthy again")


def test_a_message_the_evaluator_fails_on_is_skipped_and_the_others_still_alarm(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[defaults]\ninclude = false\n\n[[rules]]\nid = "sf.level"\nkind = "threshold"\n'
        'pilot = "santa-fe"\nsensor = "level"\nlevel = 5.3\nclear_s = 0\n'
    )
    settings = Settings(
        _env_file=None,
        mqtt_url=mosquitto.url,
        data_dir=tmp_path / "var",
        alert_rules=rules,
        alert_session_id=f"alerts-{uuid.uuid4().hex[:8]}",
    )
    service = AlertService(settings)
    evaluate = service.config.evaluator.evaluate
    poison = service.config.registry.devices["sf-rlv-02"].code

    def failing_on_poison(readings: Any, *args: Any) -> Any:  # a bug one device's input meets
        if (readings.device == poison).any():
            raise RuntimeError("a bug")
        return evaluate(readings, *args)

    service.config.evaluator.evaluate = failing_on_poison  # type: ignore[method-assign, assignment]
    service.start()
    try:
        wait_for(service.subscribed.is_set, 10, "the alert service subscribed")
        now_ms = time.time_ns() // 1_000_000
        publish(
            mosquitto.port,
            [
                ("pilots/santa-fe/sf-rlv-02/up", plain(now_ms - 60_000, {"level": 5.5})),
                ("pilots/santa-fe/sf-rlv-01/up", plain(now_ms - 60_000, {"level": 5.5})),
            ],
        )
        wait_for(lambda: service.events >= 1, 20, "the good device's alarm")
        wait_for(lambda: service.skipped == 1, 20, "the poisoned message skipped")
    finally:
        service.stop()
    store = AlarmStore.from_settings(settings)
    [alarm] = store.query(AlarmQuery())
    store.close()
    assert (alarm.device, alarm.start_ns) == ("sf-rlv-01", (now_ms - 60_000) * 1_000_000)

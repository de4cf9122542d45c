"""The delivery guarantee under failure: `pilots ingest` killed, InfluxDB down, broker restarted.

Each test streams distinct readings at QoS 1 while something fails, then checks that InfluxDB
holds exactly the readings that were sent (nothing lost, nothing doubled).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from core.registry import Registry
from core.store.influx import InfluxStore
from ingest.spool import DATABASE, Spool
from tests.helpers import StreamPublisher, wait_for
from tests.processes import PilotsProcess
from tests.services import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.integration

MS = 1_000_000
TOPIC = "pilots/san-nicolas/sn-aq-01/up"


def stream(messages: int, per_message: int, start_ms: int) -> list[tuple[str, bytes]]:
    """Messages of `per_message` distinct pm25 readings each, one millisecond apart."""
    out = []
    for m in range(messages):
        frames = [
            {"ts": start_ms + m * per_message + k, "readings": {"pm25": float(m % 500)}}
            for k in range(per_message)
        ]
        out.append((TOPIC, orjson.dumps(frames)))
    return out


def stored_times(store: InfluxStore, start_ms: int, n: int) -> list[int]:
    got = store.scan("san-nicolas", ["pm25"], start_ms * MS, (start_ms + n) * MS)
    return sorted(got.ts_ns.tolist())


def expected_times(start_ms: int, n: int) -> list[int]:
    return [(start_ms + i) * MS for i in range(n)]


def ingest_env(mqtt_url: str, influx_url: str, database: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PILOTS_MQTT_URL": mqtt_url,
        "PILOTS_MQTT_CLIENT_ID": f"delivery-{database}",
        "PILOTS_INFLUX_URL": influx_url,
        "PILOTS_INFLUX_DATABASE": database,
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        "PILOTS_INFLUX_TIMEOUT_S": "2",
    }


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd of this test's own, which it may stop and start."""
    server = Influxd(free_port(), tmp_path / "influxd")
    server.workdir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, which it may restart."""
    broker = Mosquitto(free_port(), tmp_path / "mosquitto")
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.stop()


def test_kill_9_mid_stream_loses_and_doubles_nothing(
    mosquitto: Mosquitto, influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    n_messages, per_message = 10_000, 10  # 100,000 distinct readings
    start_ms = time.time_ns() // MS - 86_400_000
    env = ingest_env(mosquitto.url, influxd.url, database, tmp_path)
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest-1")
    ingest.wait_for_output("ingest ready", 30)
    publisher = StreamPublisher(
        mosquitto.port, stream(n_messages, per_message, start_ms), rate_per_s=2500
    ).start()
    try:
        wait_for(lambda: publisher.sent > n_messages // 3, 30, "a third of the stream sent")
        ingest.proc.kill()  # SIGKILL: no flush, no goodbye
        ingest.proc.wait()
        restarted = PilotsProcess(["ingest"], env, tmp_path, "ingest-2")
        restarted.wait_for_output("ingest ready", 30)
        publisher.wait(120)
    finally:
        publisher.close()
    store = InfluxStore(influxd.url, database, registry)
    total = n_messages * per_message
    wait_for(lambda: len(stored_times(store, start_ms, total)) >= total, 120, "100,000 readings")
    time.sleep(1)  # anything doubled or late would show now
    assert stored_times(store, start_ms, total) == expected_times(start_ms, total)
    assert restarted.stop(signal.SIGTERM) == 0, restarted.output()


def test_a_sigterm_to_the_whole_process_group_still_drains_the_spool(
    mosquitto: Mosquitto, influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    # systemd's default and a terminal's Ctrl-C signal every process of the group: the writer
    # process must leave the stop to the receiver, which drains the spool before it exits.
    n_messages, per_message = 20_000, 5  # 100,000 distinct readings, spooled before the start
    start_ms = time.time_ns() // MS - 86_400_000
    env = ingest_env(mosquitto.url, influxd.url, database, tmp_path)
    (tmp_path / "var").mkdir()
    spool = Spool(tmp_path / "var" / DATABASE)
    spool.append([(time.time_ns(), t, p) for t, p in stream(n_messages, per_message, start_ms)])
    spool.close()
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest", own_group=True)
    ingest.wait_for_output("ingest ready", 30)
    os.killpg(ingest.proc.pid, signal.SIGTERM)
    assert ingest.proc.wait(60) == 0, ingest.output()
    assert "stay in it for the next start" not in ingest.output()
    spool = Spool(tmp_path / "var" / DATABASE)
    assert spool.depth().messages == 0
    spool.close()
    store = InfluxStore(influxd.url, database, registry)
    total = n_messages * per_message
    assert stored_times(store, start_ms, total) == expected_times(start_ms, total)


def test_an_influxdb_outage_loses_nothing_and_shows_in_health(
    mosquitto: Mosquitto, own_influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    n_messages, per_message = 8_000, 5
    start_ms = time.time_ns() // MS - 86_400_000
    env = ingest_env(mosquitto.url, own_influxd.url, database, tmp_path)
    env["PILOTS_INGEST_UNHEALTHY_AFTER_S"] = "10"
    health_url = f"http://127.0.0.1:{env['PILOTS_INGEST_HTTP_PORT']}/health"
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    ingest.wait_for_output("ingest ready", 30)
    assert httpx.get(health_url).status_code == 200
    publisher = StreamPublisher(
        mosquitto.port, stream(n_messages, per_message, start_ms), rate_per_s=100
    ).start()
    try:
        time.sleep(10)
        own_influxd.stop()
        outage_started = time.monotonic()
        during = wait_for(
            lambda: (r := httpx.get(health_url)).status_code == 503 and r,
            30,
            "/health to turn unhealthy during the outage",
        )
        assert any("store" in p for p in during.json()["problems"])
        time.sleep(max(0.0, 60 - (time.monotonic() - outage_started)))
        own_influxd.start()
        publisher.wait(120)
    finally:
        publisher.close()
    store = InfluxStore(own_influxd.url, database, registry)
    total = n_messages * per_message
    wait_for(lambda: len(stored_times(store, start_ms, total)) >= total, 120, "every reading")
    assert stored_times(store, start_ms, total) == expected_times(start_ms, total)
    wait_for(lambda: httpx.get(health_url).status_code == 200, 30, "/health healthy again")
    assert ingest.stop(signal.SIGTERM) == 0, ingest.output()


def test_a_broker_restart_loses_nothing_the_broker_acknowledged(
    own_mosquitto: Mosquitto, influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    n_messages, per_message = 5_000, 4
    start_ms = time.time_ns() // MS - 86_400_000
    env = ingest_env(own_mosquitto.url, influxd.url, database, tmp_path)
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    ingest.wait_for_output("ingest ready", 30)
    publisher = StreamPublisher(
        own_mosquitto.port, stream(n_messages, per_message, start_ms), rate_per_s=1000
    ).start()
    try:
        wait_for(lambda: publisher.sent > n_messages * 2 // 5, 30, "40 % of the stream sent")
        own_mosquitto.restart()  # SIGTERM: mosquitto saves its sessions and queues, then starts
        publisher.wait(120)
        acked = publisher.acked()
    finally:
        publisher.close()
    store = InfluxStore(influxd.url, database, registry)
    want = sorted((start_ms + m * per_message + k) * MS for m in acked for k in range(per_message))
    wait_for(
        lambda: set(want) <= set(stored_times(store, start_ms, n_messages * per_message)),
        120,
        "every acknowledged reading in InfluxDB",
    )
    stored = stored_times(store, start_ms, n_messages * per_message)
    assert len(stored) == len(set(stored))
    # The restart really cut ingest off, and the broker kept its session across it.
    assert "session present: True" in ingest.output()
    assert ingest.stop(signal.SIGTERM) == 0, ingest.output()

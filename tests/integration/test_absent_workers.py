"""A worker of the shared group that is gone holds no reading hostage (ingest.members).

Mosquitto assigns each shared message to a member's session whether the member is connected
or not; a live worker adopts the session of a member absent for `PILOTS_INGEST_ADOPT_AFTER_S`
and takes what the broker holds for it. Real mosquitto, influxd and `pilots ingest`
processes: a worker killed and never restarted, and its owner coming back while the session
is being drained. The network partition is in tests/integration/test_partition.py.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from core.registry import Registry
from core.store.influx import InfluxStore
from ingest.members import SILENT_AFTER_S, Presence, new_epoch, presence_topic
from tests.helpers import StreamPublisher, publish, wait_for
from tests.integration.test_scaleout import DEVICES, MS, stream, worker_env
from tests.processes import PilotsProcess
from tests.services import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.integration

#: Short, so that the tests are: the bound is the same sum with the default (30 s).
ADOPT_AFTER_S = 3
#: How long a reading may wait for an absent worker: its absence noticed (at once for a dead
#: process; after SILENT_AFTER_S for a silent one), PILOTS_INGEST_ADOPT_AFTER_S, the drain.
BOUND_S = SILENT_AFTER_S + ADOPT_AFTER_S + 15


def metric(worker: dict[str, str], name: str, **labels: str) -> float:
    """A sample of a worker's /metrics (0 when absent)."""
    port = worker["PILOTS_INGEST_HTTP_PORT"]
    host = worker.get("PILOTS_INGEST_HTTP_HOST", "127.0.0.1")
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def members(worker: dict[str, str]) -> dict[str, dict[str, object]]:
    """The group as a worker's /health describes it."""
    port = worker["PILOTS_INGEST_HTTP_PORT"]
    host = worker.get("PILOTS_INGEST_HTTP_HOST", "127.0.0.1")
    body = httpx.get(f"http://{host}:{port}/health", timeout=5).json()
    return dict(body["members"])


def stored_times(
    influx_url: str, database: str, registry: Registry, start_ms: int, end_ns: int
) -> dict[str, list[int]]:
    """Per device, the device times of the pm25 readings in the store."""
    got = InfluxStore(influx_url, database, registry).scan(
        "san-nicolas", ["pm25"], start_ms * MS, end_ns, DEVICES
    )
    codes = {registry.devices[d].code: d for d in DEVICES}
    per: dict[str, list[int]] = {d: [] for d in DEVICES}
    for code, ts in zip(got.device.tolist(), got.ts_ns.tolist(), strict=True):
        per[codes[code]].append(ts)
    return per


def assert_each_reading_once(
    influx_url: str,
    database: str,
    registry: Registry,
    start_ms: int,
    messages: int,
    per_message: int,
    within_s: float,
) -> None:
    """Every reading of `stream(messages, per_message, start_ms)` is stored, and once."""
    end_ns = (start_ms + messages // len(DEVICES) * per_message) * MS
    total = messages * per_message

    def count() -> int:
        per_device = stored_times(influx_url, database, registry, start_ms, end_ns)
        return sum(map(len, per_device.values()))

    wait_for(lambda: count() >= total, within_s, f"{total:,} readings stored")
    per_device = total // len(DEVICES)
    expected = [(start_ms + i) * MS for i in range(per_device)]
    for device, times in stored_times(influx_url, database, registry, start_ms, end_ns).items():
        assert sorted(times) == expected, f"{device}: {len(times)} stored, {per_device} sent"


def test_a_worker_killed_and_never_restarted_holds_no_reading(
    mosquitto: Mosquitto, influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    n_messages, per_message = 12_000, 2
    start_ms = time.time_ns() // MS - 86_400_000
    adopt = {"PILOTS_INGEST_ADOPT_AFTER_S": str(ADOPT_AFTER_S)}
    envs = [{**worker_env(n, mosquitto, influxd, database, tmp_path), **adopt} for n in range(3)]
    ids = [env["PILOTS_MQTT_CLIENT_ID"] for env in envs]
    workers = [PilotsProcess(["ingest"], e, tmp_path, f"ingest-{n}") for n, e in enumerate(envs)]
    for worker in workers:
        worker.wait_for_output("ingest ready", 30)
    publisher = StreamPublisher(
        mosquitto.port, stream(n_messages, per_message, start_ms), rate_per_s=1000
    ).start()
    try:
        wait_for(lambda: publisher.sent > n_messages // 4, 30, "a quarter of the stream sent")
        victim = workers[1]
        victim.proc.kill()  # SIGKILL, and it never comes back
        victim.proc.wait()
        publisher.wait(60)
    finally:
        publisher.close()

    # Every reading stored within the bound, with a third of the group gone for good.
    assert_each_reading_once(
        influxd.url, database, registry, start_ms, n_messages, per_message, BOUND_S
    )
    # The next live member in the ring of client ids adopted the session, and only it.
    taken = {
        n: metric(envs[n], "pilots_ingest_adopted_messages_total", member=ids[1]) for n in (0, 2)
    }
    assert taken[2] > 0, (taken, workers[2].output())
    assert taken[0] == 0, taken
    assert "adopted the session of " + ids[1] in workers[2].output()
    # Both survivors say who is absent, and for how long.
    for n in (0, 2):
        seen = members(envs[n])[ids[1]]
        assert seen["state"] == "absent", seen
        assert float(str(seen["absent_s"])) > 0, seen
        assert seen["adopter"] == ids[2], seen
        assert metric(envs[n], "pilots_ingest_group_absent_members") == 1
        assert metric(envs[n], "pilots_ingest_group_member_absent_seconds", member=ids[1]) > 0
    assert members(envs[2])[ids[1]]["drained"] is True

    # The adopted session left the group: what is published now goes to the live members.
    later_ms = start_ms + n_messages // len(DEVICES) * per_message
    publish(mosquitto.port, stream(600, per_message, later_ms))
    assert_each_reading_once(influxd.url, database, registry, later_ms, 600, per_message, 30)
    for n in (0, 2):
        assert workers[n].stop(signal.SIGTERM) == 0, workers[n].output()


def test_the_owner_returning_mid_drain_takes_its_session_back(
    mosquitto: Mosquitto, registry: Registry, database: str, tmp_path: Path
) -> None:
    # An InfluxDB of this test's own: it is stopped so that the adopter's spool fills and the
    # drain stops half way, holding messages unacknowledged, when the owner comes back.
    influxd = Influxd(free_port(), tmp_path / "influxd")
    (tmp_path / "influxd").mkdir()
    influxd.start()
    # ~0.8 kB each: ~8 MB queued for the owner, far more than the adopter's 1 MiB spool
    n_messages, per_message = 10_000, 20
    start_ms = time.time_ns() // MS - 86_400_000
    owner_env, adopter_env = (
        {
            **worker_env(n, mosquitto, influxd, database, tmp_path),
            "PILOTS_INGEST_ADOPT_AFTER_S": str(ADOPT_AFTER_S),
            "PILOTS_INGEST_SPOOL_MAX_BYTES": str(1 << 20),
        }
        for n in range(2)
    )
    owner_id = owner_env["PILOTS_MQTT_CLIENT_ID"]
    owner = PilotsProcess(["ingest"], owner_env, tmp_path, "owner")
    adopter: PilotsProcess | None = None
    worker: PilotsProcess | None  # both loops below; the adopter may not have started
    try:
        owner.wait_for_output("ingest ready", 30)
        owner.proc.kill()  # its session stays, the group's only member: it is handed everything
        owner.proc.wait()
        publish(mosquitto.port, stream(n_messages, per_message, start_ms))
        influxd.stop()
        adopter = PilotsProcess(["ingest"], adopter_env, tmp_path, "adopter")
        adopter.wait_for_output("ingest ready", 30)
        # the adoption starts, fills the adopter's spool, and stops acknowledging
        wait_for(
            lambda: (
                metric(adopter_env, "pilots_ingest_adopted_messages_total", member=owner_id) > 0
                and metric(adopter_env, "pilots_ingest_spool_full") == 1
            ),
            60,
            "the drain under way and stalled",
        )
        drained_first = metric(adopter_env, "pilots_ingest_adopted_messages_total", member=owner_id)
        assert drained_first < n_messages
        owner = PilotsProcess(["ingest"], owner_env, tmp_path, "owner-back")
        owner.wait_for_output("ingest ready", 30)
        adopter.wait_for_output(f"adoption of {owner_id}'s session ended (interrupted", 30)
        influxd.start()
        assert_each_reading_once(
            influxd.url, database, registry, start_ms, n_messages, per_message, 120
        )
        # The owner took the rest: its session was there, with what the adopter had not taken.
        assert "session present: True" in owner.output()
        owner_took = metric(owner_env, "pilots_ingest_messages_total")
        assert owner_took > 0
        assert drained_first + owner_took >= n_messages, (drained_first, owner_took)
        # No fight over the session: the owner is back, and nobody adopts it again.
        time.sleep(ADOPT_AFTER_S + SILENT_AFTER_S)
        assert members(adopter_env)[owner_id]["state"] == "online"
        assert metric(adopter_env, "pilots_ingest_adoptions_total", outcome="interrupted") == 1
        assert metric(adopter_env, "pilots_ingest_adoptions_total", outcome="drained") == 0
        assert owner.output().count("connected to ") == 1, owner.output()
        for worker in (owner, adopter):
            assert worker.stop(signal.SIGTERM) == 0, worker.output()
    finally:
        for worker in (owner, adopter):
            if worker is not None:
                worker.stop(signal.SIGKILL)
        influxd.stop()


def test_a_busy_groups_presence_does_not_keep_an_adoption_from_ending(
    mosquitto: Mosquitto, influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    # A group of tens of workers repeats its presence many times a second. The adopted session
    # receives it too: that traffic must not count as the session's queue still draining, or the
    # adoption never ends and this worker adopts no other absent member.
    envs = [
        {
            **worker_env(n, mosquitto, influxd, database, tmp_path),
            "PILOTS_INGEST_ADOPT_AFTER_S": str(ADOPT_AFTER_S),
        }
        for n in range(2)
    ]
    group, ids = envs[0]["PILOTS_MQTT_SHARED_GROUP"], [e["PILOTS_MQTT_CLIENT_ID"] for e in envs]
    workers = [PilotsProcess(["ingest"], e, tmp_path, f"ingest-{n}") for n, e in enumerate(envs)]
    for worker in workers:
        worker.wait_for_output("ingest ready", 30)
    # 20 more members, named to sort before both workers: the adopter of worker 0 is worker 1.
    noise = [Presence(f"aaa-member-{k:02d}", "online", new_epoch()) for k in range(20)]
    stop = threading.Event()

    def repeat_presence() -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"noise-{database}")
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        while not stop.is_set():
            for presence in noise:  # 20 every 0.5 s: 40 messages a second
                client.publish(presence_topic(group, presence.member), presence.encode())
            stop.wait(0.5)
        client.loop_stop()
        client.disconnect()

    noisy = threading.Thread(target=repeat_presence, daemon=True)
    noisy.start()
    try:
        workers[0].proc.kill()
        workers[0].proc.wait()
        start_ms = time.time_ns() // MS - 86_400_000
        publish(mosquitto.port, stream(600, 2, start_ms))
        assert_each_reading_once(influxd.url, database, registry, start_ms, 600, 2, BOUND_S)
        wait_for(
            lambda: metric(envs[1], "pilots_ingest_adoptions_total", outcome="drained") == 1,
            BOUND_S,
            "the adoption drained",
        )
        assert metric(envs[1], "pilots_ingest_adopted_messages_total", member=ids[0]) > 0
    finally:
        stop.set()
        noisy.join(5)
    assert workers[1].stop(signal.SIGTERM) == 0, workers[1].output()

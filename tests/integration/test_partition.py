"""One ingest worker cut off by the network for 45 seconds, then healed (ingest.members).

Three hosts on this machine (network namespaces, tests/netns.py), one worker each, all
reaching the broker and InfluxDB at the services' address; the middle worker's link is taken
down while a stream of readings goes on, and brought back 45 seconds later (many times the
5-second keepalive and the 3-second adoption delay it runs with). Neither side is told: the
broker notices only when the worker's keepalive runs out, the other workers when its presence
stops. The worker is alive all along and comes back by itself.

Nothing lost, nothing doubled: every reading is stored once. No split-brain: one live worker
adopts the session while the worker is away, the worker takes it back once healed, and nobody
adopts it again; the worker then receives its share of the stream again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import Registry
from tests.helpers import StreamPublisher, wait_for
from tests.integration.test_absent_workers import assert_each_reading_once, members, metric
from tests.integration.test_scaleout import MS, stream
from tests.netns import Network, network
from tests.processes import PilotsProcess
from tests.services import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.integration

CUT_S = 45
RATE_PER_S = 100
ADOPT_AFTER_S = 3


@pytest.fixture
def net() -> Iterator[Network]:
    with network() as made:
        yield made


def test_a_worker_cut_off_for_45_seconds_loses_and_doubles_nothing(
    net: Network, registry: Registry, database: str, tmp_path: Path
) -> None:
    broker = Mosquitto(free_port(), tmp_path / "mosquitto", host=net.server)
    influxd = Influxd(free_port(), tmp_path / "influxd", host=net.server)
    workers: list[PilotsProcess] = []
    try:
        for service in (broker, influxd):
            service.workdir.mkdir()
            service.start()
        partition_and_heal(net, broker, influxd, registry, database, tmp_path, workers)
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL)
        broker.stop()
        influxd.stop()


def partition_and_heal(
    net: Network,
    broker: Mosquitto,
    influxd: Influxd,
    registry: Registry,
    database: str,
    tmp_path: Path,
    workers: list[PilotsProcess],
) -> None:
    """The test's body; `workers` is filled in for the caller to clean up."""
    hosts = [net.host() for _ in range(3)]
    envs = [
        {
            "PILOTS_MQTT_URL": broker.url,
            "PILOTS_MQTT_SHARED_GROUP": f"cut{database[-6:]}",
            "PILOTS_MQTT_CLIENT_ID": f"cut-{database}-{n}",
            "PILOTS_MQTT_KEEPALIVE_S": "5",
            "PILOTS_INGEST_ADOPT_AFTER_S": str(ADOPT_AFTER_S),
            "PILOTS_DATA_DIR": str(tmp_path / f"var-{n}"),
            "PILOTS_INGEST_HTTP_HOST": host.address,
            "PILOTS_INGEST_HTTP_PORT": str(free_port()),
            "PILOTS_INFLUX_URL": influxd.url,
            "PILOTS_INFLUX_DATABASE": database,
        }
        for n, host in enumerate(hosts)
    ]
    cut_id = envs[1]["PILOTS_MQTT_CLIENT_ID"]
    workers.extend(
        PilotsProcess(["ingest"], env, tmp_path, f"ingest-{n}", prefix=host.argv([]))
        for n, (env, host) in enumerate(zip(envs, hosts, strict=True))
    )
    # the stream: 10 s before the cut, the cut, 30 s after
    n_messages, per_message = (CUT_S + 40) * RATE_PER_S, 2
    start_ms = time.time_ns() // MS - 86_400_000
    publisher: StreamPublisher | None = None
    try:
        for worker in workers:
            worker.wait_for_output("ingest ready", 30)
        publisher = StreamPublisher(
            broker.port,
            stream(n_messages, per_message, start_ms),
            rate_per_s=RATE_PER_S,
            host=net.server,
        ).start()
        wait_for(lambda: metric(envs[1], "pilots_ingest_messages_total") > 0, 30, "a share")
        time.sleep(10)
        hosts[1].cut()
        cut_at = time.monotonic()
        # while it is away, the others see it absent and one of them adopts its session
        wait_for(
            lambda: all(members(envs[n])[cut_id].get("state") != "online" for n in (0, 2)),
            60,
            "the cut-off worker seen absent",
        )
        wait_for(
            lambda: (
                sum(
                    metric(envs[n], "pilots_ingest_adoptions_total", outcome="drained")
                    for n in (0, 2)
                )
                == 1
            ),
            60,
            "one drained adoption",
        )
        adopter = 2  # the next client id after the cut-off one's in the ring
        assert metric(envs[adopter], "pilots_ingest_adopted_messages_total", member=cut_id) > 0
        assert members(envs[0])[cut_id]["adopter"] == envs[adopter]["PILOTS_MQTT_CLIENT_ID"]
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        hosts[1].heal()
        wait_for(
            lambda: all(members(envs[n])[cut_id].get("state") == "online" for n in (0, 2)),
            60,
            "the healed worker back in the group",
        )
        back_at = metric(envs[1], "pilots_ingest_messages_total")
        publisher.wait(120)
    finally:
        if publisher is not None:
            publisher.close()

    # Nothing lost, nothing doubled.
    assert_each_reading_once(
        influxd.url, database, registry, start_ms, n_messages, per_message, 120
    )
    # Back in the group: its share of what was published after it came back reached it.
    assert metric(envs[1], "pilots_ingest_messages_total") > back_at
    # No split-brain: one adoption while it was away, none since (the worker coming back, which
    # heard nobody for the whole cut, adopts nobody); each worker held its own session once
    # connected (a connection taken over would show as another "connected to").
    adoptions = {
        n: {
            outcome: metric(envs[n], "pilots_ingest_adoptions_total", outcome=outcome)
            for outcome in ("drained", "interrupted", "refused", "unreachable")
        }
        for n in range(3)
    }
    assert adoptions[adopter]["drained"] == 1, adoptions
    assert sum(sum(a.values()) for a in adoptions.values()) == 1, adoptions
    assert [w.output().count("connected to ") for w in workers] == [1, 2, 1], adoptions
    for worker in workers:
        assert worker.stop(signal.SIGTERM) == 0, worker.output()

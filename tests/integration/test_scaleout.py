"""Three ingest workers on one shared subscription; one is killed with `kill -9` mid-stream.

Every reading must reach InfluxDB exactly once. The killed worker is started again with its
own client id and spool, as compose or systemd restarts it: the broker redelivers what it had
not acknowledged to its session, its spool still holds what it had, and replays overwrite
themselves (a point is keyed by device and device time).
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import orjson
import pytest

from core.registry import Registry
from core.store.influx import InfluxStore
from tests.helpers import StreamPublisher, publish, wait_for
from tests.processes import PilotsProcess
from tests.services import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.integration

MS = 1_000_000
#: Five devices, so that the stream spreads over several series.
DEVICES = [f"sn-aq-{n:02d}" for n in range(1, 6)]
WORKERS = 3


def stream(messages: int, per_message: int, start_ms: int) -> list[tuple[str, bytes]]:
    """Messages of `per_message` distinct pm25 readings, round robin over the devices."""
    out = []
    for m in range(messages):
        device = DEVICES[m % len(DEVICES)]
        base = start_ms + (m // len(DEVICES)) * per_message
        frames = [{"ts": base + k, "readings": {"pm25": float(k)}} for k in range(per_message)]
        out.append((f"pilots/san-nicolas/{device}/up", orjson.dumps(frames)))
    return out


def worker_env(
    n: int, mosquitto: Mosquitto, influxd: Influxd, database: str, tmp_path: Path
) -> dict[str, str]:
    """Worker `n` of a group: its own session, spool and metrics port."""
    return {
        "PILOTS_MQTT_URL": mosquitto.url,
        "PILOTS_MQTT_SHARED_GROUP": f"scale{database[-6:]}",
        # One session, one spool and one metrics port per worker.
        "PILOTS_MQTT_CLIENT_ID": f"scaleout-{database}-{n}",
        "PILOTS_DATA_DIR": str(tmp_path / f"var-{n}"),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        "PILOTS_INFLUX_URL": influxd.url,
        "PILOTS_INFLUX_DATABASE": database,
    }


def test_three_workers_one_killed_mid_stream_store_every_reading_once(
    mosquitto: Mosquitto, influxd: Influxd, registry: Registry, database: str, tmp_path: Path
) -> None:
    n_messages, per_message = 9_000, 4  # 36,000 readings, 7,200 per device
    start_ms = time.time_ns() // MS - 86_400_000
    envs = [worker_env(n, mosquitto, influxd, database, tmp_path) for n in range(WORKERS)]
    workers = [
        PilotsProcess(["ingest"], env, tmp_path, f"ingest-{n}") for n, env in enumerate(envs)
    ]
    for worker in workers:
        worker.wait_for_output("ingest ready", 30)
    publisher = StreamPublisher(
        mosquitto.port, stream(n_messages, per_message, start_ms), rate_per_s=1500
    ).start()
    try:
        wait_for(lambda: publisher.sent > n_messages // 3, 30, "a third of the stream sent")
        victim = workers[1]
        victim.proc.kill()  # SIGKILL: no flush, no acknowledgement of what it holds
        victim.proc.wait()
        workers[1] = PilotsProcess(["ingest"], envs[1], tmp_path, "ingest-1-restarted")
        workers[1].wait_for_output("ingest ready", 30)
        publisher.wait(60)
    finally:
        publisher.close()

    store = InfluxStore(influxd.url, database, registry)
    end_ns = (start_ms + n_messages // len(DEVICES) * per_message) * MS
    total = n_messages * per_message

    def stored() -> dict[str, list[int]]:
        got = store.scan("san-nicolas", ["pm25"], start_ms * MS, end_ns, DEVICES)
        codes = {registry.devices[d].code: d for d in DEVICES}
        per: dict[str, list[int]] = {d: [] for d in DEVICES}
        for code, ts in zip(got.device.tolist(), got.ts_ns.tolist(), strict=True):
            per[codes[code]].append(ts)
        return per

    wait_for(lambda: sum(map(len, stored().values())) >= total, 60, f"{total:,} readings")
    per_device = total // len(DEVICES)
    expected = [(start_ms + i) * MS for i in range(per_device)]
    for device, times in stored().items():
        assert sorted(times) == expected, f"{device}: {len(times)} stored, {per_device} sent"

    # One quarantine for the fleet: what each worker refuses is in the store, seen in one list.
    publish(
        mosquitto.port, [(f"pilots/san-nicolas/{DEVICES[0]}/up", b"{%d" % i) for i in range(30)]
    )
    wait_for(
        lambda: store.quarantine_summary().kept == {"malformed_json": 30},
        30,
        "30 refusals in the one quarantine",
    )
    refusers = {e.worker for e in store.quarantine_entries(limit=None)}
    assert refusers == {env["PILOTS_MQTT_CLIENT_ID"] for env in envs}
    for worker in workers:
        assert worker.stop(signal.SIGTERM) == 0, worker.output()
    # Each worker took a share: the shared subscription spread the stream over all three.
    shares = [re.search(r"ingest stopped: (\d+) messages", w.output()) for w in workers]
    assert all(share and int(share.group(1)) > 0 for share in shares), shares

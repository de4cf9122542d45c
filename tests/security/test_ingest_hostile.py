"""One device floods ingest with junk while the others publish: nobody else loses a reading.

Real mosquitto, real influxd, ingest in-process with a small spool (4 MiB), as an operator who
sized the disk tightly would run it. Before the quarantine moved into the store, three such
junk messages filled the spool for good and stopped every acknowledgement.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from ingest.service import IngestService
from tests.helpers import plain, publish, wait_for
from tests.services import Influxd, Mosquitto

pytestmark = pytest.mark.integration

MS = 1_000_000
GOOD = ["sf-rlv-02", "sf-rg-01", "sf-wx-01"]
SENSOR = {"sf-rlv-02": "level", "sf-rg-01": "rain", "sf-wx-01": "temperature"}
VALUE = {"level": 3.25, "rain": 0.5, "temperature": 24.5}
FLOODER = "pilots/santa-fe/sf-rlv-01/up"


def test_a_flooding_device_stops_nobody_and_every_refusal_has_a_number(
    mosquitto: Mosquitto, influxd: Influxd, database: str, data_dir: Path, registry: Registry
) -> None:
    settings = Settings(
        _env_file=None,
        mqtt_url=mosquitto.url,
        mqtt_client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        influx_url=influxd.url,
        influx_database=database,
        data_dir=data_dir,
        ingest_http_port=0,
        ingest_stop_timeout_s=5,
        ingest_spool_max_bytes=4 << 20,
        ingest_max_payload_bytes=64 << 10,
        quarantine_max_per_device=50,
    )
    store = InfluxStore.from_settings(settings, registry)
    store.start()
    service = IngestService(settings, registry)
    service.start()
    try:
        wait_for(service.subscribed.is_set, 15, "ingest to subscribe")
        now_ms = time.time_ns() // MS
        junk = [(FLOODER, bytes([i % 250 + 1]) * (200 << 10)) for i in range(40)]  # 8 MB
        junk += [(FLOODER, b'{"ts": 1, "readings": {"level": ') for _ in range(200)]
        junk += [(FLOODER, plain(now_ms - i, {"level": 1e9})) for i in range(100)]
        good = [
            (f"pilots/santa-fe/{device}/up", plain(now_ms - 60_000 + i, {SENSOR[device]: v}))
            for i in range(60)
            for device in GOOD
            for v in (VALUE[SENSOR[device]],)
        ]
        flood = threading.Thread(target=publish, args=(mosquitto.port, junk))
        flood.start()
        publish(mosquitto.port, good)
        flood.join(60)

        sensors = sorted(set(SENSOR.values()))
        lo, hi = (now_ms - 120_000) * MS, (now_ms + 1) * MS
        stored = wait_for(
            lambda: r if len(r := store.scan("santa-fe", sensors, lo, hi)) >= 180 else None,
            60,
            "every good reading in InfluxDB",
        )
        assert len(stored) == 180, "no good reading lost, none doubled"

        def refusals() -> int:
            summary = store.quarantine_summary()
            return sum(summary.kept.values()) + sum(summary.dropped.values())

        wait_for(lambda: refusals() == 340, 30, "a number for each of the 340 refusals")
        summary = store.quarantine_summary()
        assert summary.kept.get("oversized", 0) + summary.dropped.get(("cap", "oversized"), 0) == 40
        kept = store.quarantine_entries(source="sf-rlv-01", limit=None)
        assert len(kept) <= 50, "the flooding device's entries stay within its cap"
        big = [e for e in kept if e.reason == "oversized"]
        assert all(e.length == 200 << 10 and len(e.head) < e.length for e in big)

        health = httpx.get(f"http://127.0.0.1:{service.http_port}/health", timeout=5)
        assert health.status_code == 200, health.text
        assert service.metrics.value("pilots_ingest_spool_full") == 0
        wait_for(
            lambda: (
                service.metrics.value("pilots_ingest_quarantine_unkept_total", why="cap")
                == sum(summary.dropped.values())
            ),
            10,
            "the refusals not kept counted in /metrics",
        )
    finally:
        service.stop()
        store.close()

"""Known readings through mosquitto, `pilots ingest` and influxd, read back through `pilots api`.

Every expected number below is worked out by hand from the published readings.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.auth import TokenStore
from tests.helpers import plain, publish, wait_for
from tests.processes import PilotsProcess, stack_env, wait_for_http
from tests.services import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.e2e

MIN_MS = 60_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_known_readings_come_out_of_the_api_exactly(
    mosquitto: Mosquitto, influxd: Influxd, database: str, tmp_path: Path
) -> None:
    env = stack_env(mosquitto.url, influxd.url, database, tmp_path / "var")
    token = TokenStore.in_data_dir(tmp_path / "var").create("e2e", "read")
    auth = {"Authorization": f"Bearer {token}"}
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    api = PilotsProcess(["api"], env, tmp_path, "api")
    try:
        ingest.wait_for_output("ingest ready", 30)
        base = f"http://127.0.0.1:{env['PILOTS_API_PORT']}"
        wait_for_http(f"{base}/health", 30, api)

        # Three 10-minute windows starting three hours ago (UTC-3 has whole-hour offsets, so
        # local 10-minute windows fall on the same instants as UTC ones).
        w0 = (time.time_ns() // 1_000_000 - 3 * 3600_000) // (10 * MIN_MS) * (10 * MIN_MS)
        rlv1 = "pilots/santa-fe/sf-rlv-01/up"
        rlv2 = "pilots/santa-fe/sf-rlv-02/up"
        duplicate = plain(w0 + 25 * MIN_MS, {"level": 3.30}, seq=12)
        publish(
            mosquitto.port,
            [
                (rlv1, plain(w0 + 1 * MIN_MS, {"level": 3.10, "water_temp": 24.0})),
                (rlv1, plain(w0 + 3 * MIN_MS, {"level": 99.0})),  # out of range: quarantined
                (rlv1, plain(w0 + 5 * MIN_MS, {"level": 3.20})),
                (rlv1, plain(w0 + 12 * MIN_MS, {"level": 3.40})),
                (rlv1, duplicate),
                (rlv1, duplicate),  # the same uplink delivered twice
                (rlv1, plain(w0 + 27 * MIN_MS, {"level": 3.60})),
                (
                    rlv2,
                    orjson.dumps(
                        [  # one message carrying three readings
                            {"ts": iso(w0 + 11 * MIN_MS), "readings": {"level": 2.0}},
                            {"ts": iso(w0 + 13 * MIN_MS), "readings": {"level": 2.5}},
                            {"ts": iso(w0 + 19 * MIN_MS), "readings": {"level": 4.0}},
                        ]
                    ),
                ),
                ("pilots/santa-fe/sf-rlv-77/up", plain(w0 + 2 * MIN_MS, {"level": 1.0})),  # unknown
            ],
        )

        # Readings three hours old are late data for the API's cache: a cache loaded before
        # they were stored shows them at its next deep refresh (within a minute, docs/API.md).
        # This test is about the numbers, so it asks once they are in the store.
        def stored() -> int:
            response = httpx.get(
                f"{influxd.url}/query",
                params={"db": database, "q": "SELECT count(level) FROM readings"},
                timeout=10,
            )
            series = response.json()["results"][0].get("series", [])
            return int(series[0]["values"][0][1]) if series else 0

        wait_for(lambda: stored() == 8, 30, "8 level readings in InfluxDB")

        url = (
            f"{base}/pilots/santa-fe/series?sensor=level&every=10m"
            f"&start={iso(w0)}&end={iso(w0 + 30 * MIN_MS)}"
        )

        def complete() -> dict[str, list[dict[str, Any]]] | None:
            response = httpx.get(url, headers=auth, timeout=10)
            assert response.status_code == 200, response.text
            [level] = response.json()["sensors"]
            windows = {line["device"]: line["windows"] for line in level["lines"]}
            total = sum(w["count"] for ws in windows.values() for w in ws)
            return windows if total == 8 else None

        windows = wait_for(complete, 30, "8 level readings through the API")
        assert set(windows) == {"sf-rlv-01", "sf-rlv-02"}
        one, two = windows["sf-rlv-01"], windows["sf-rlv-02"]
        assert [w["count"] for w in one] == [2, 1, 2]
        assert [w["count"] for w in two] == [0, 3, 0]
        assert [w["min"] for w in one] == [3.10, 3.40, 3.30]
        assert [w["max"] for w in one] == [3.20, 3.40, 3.60]
        assert [w["mean"] for w in one] == pytest.approx([3.15, 3.40, 3.45], rel=1e-12)
        assert two[1]["mean"] == pytest.approx(8.5 / 3, rel=1e-12)
        assert (two[1]["min"], two[1]["max"]) == (2.0, 4.0)
        assert two[0] == {
            "start": two[0]["start"],
            "count": 0,
            "mean": None,
            "min": None,
            "max": None,
        }
        starts = [datetime.fromisoformat(w["start"]) for w in one]
        assert [s.timestamp() * 1000 for s in starts] == [w0, w0 + 10 * MIN_MS, w0 + 20 * MIN_MS]
        assert all(
            (offset := s.utcoffset()) is not None and offset.total_seconds() == -3 * 3600
            for s in starts
        ), "window starts are given in the pilot's local offset"

        devices = httpx.get(f"{base}/pilots/santa-fe/devices", headers=auth, timeout=10).json()
        seen = {d["id"]: d["last_seen"] for d in devices}
        assert datetime.fromisoformat(seen["sf-rlv-01"]).timestamp() * 1000 == w0 + 27 * MIN_MS
        assert seen["sf-rg-01"] is None
    finally:
        ingest_code = ingest.stop(signal.SIGTERM)
        api_code = api.stop(signal.SIGTERM)
    assert ingest_code == 0, ingest.output()
    assert api_code == 0, api.output()

    listing = subprocess.run(
        [sys.executable, "-m", "pilots", "quarantine", "list"],
        # The quarantine is the store's: the command needs the store, not ingest's files.
        env={
            "PATH": "/usr/bin:/bin",
            "PILOTS_INFLUX_URL": env["PILOTS_INFLUX_URL"],
            "PILOTS_INFLUX_DATABASE": env["PILOTS_INFLUX_DATABASE"],
            "PILOTS_DATA_DIR": str(tmp_path / "elsewhere"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {
        parts[0]: int(parts[1])
        for line in listing.splitlines()
        if len(parts := line.split()) == 2 and parts[1].isdigit()
    }
    assert counts == {"out_of_range": 1, "unknown_device": 1}
    assert "sf-rlv-77" in listing


def test_ingest_waits_for_an_unreachable_store_and_stops_on_sigterm(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    env = {
        "PILOTS_MQTT_URL": mosquitto.url,
        "PILOTS_INFLUX_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
    }
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    ingest.wait_for_output("store not ready, retrying", 15)
    assert ingest.stop(signal.SIGTERM) == 0, ingest.output()

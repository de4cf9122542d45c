"""`pilots demo`, as `make demo` runs it: everything in one process on embedded defaults."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_for
from tests.processes import PilotsProcess, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.e2e

#: A sensor each pilot's simulated fleet reports.
SENSOR_OF = {"santa-fe": "level", "san-nicolas": "pm25", "resistencia": "ph"}


def test_demo_serves_every_pilot_with_data_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PILOTS_API_PORT": str(port),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        "PILOTS_DEMO_MQTT_PORT": "0",  # any free port: the test must not clash with a broker
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
    }
    demo = PilotsProcess(["demo"], env, tmp_path, "demo")
    base = f"http://127.0.0.1:{port}"
    try:
        pilots = wait_for_http(f"{base}/pilots", 90, demo).json()
        assert [p["id"] for p in pilots] == ["santa-fe", "san-nicolas", "resistencia"]
        start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()

        def counted(pilot: str) -> int:
            body = httpx.get(
                f"{base}/pilots/{pilot}/series",
                params={"sensor": SENSOR_OF[pilot], "start": start, "every": "10m"},
                timeout=10,
            ).json()
            return sum(w["count"] for d in body["devices"] for w in d["windows"])

        for pilot in SENSOR_OF:
            wait_for(lambda p=pilot: counted(p) > 0, 60, f"{pilot} windows with readings")
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.output()
    assert "Traceback" not in demo.output()

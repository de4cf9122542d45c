"""`pilots demo`, as `make demo` runs it: everything in one process on embedded defaults."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import publish, wait_for
from tests.processes import PilotsProcess, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.e2e

#: A sensor each pilot's simulated fleet reports.
SENSOR_OF = {"santa-fe": "level", "san-nicolas": "pm25", "resistencia": "ph"}


def test_demo_serves_every_pilot_with_data_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    mqtt_port = free_port()  # the test must not clash with a broker, and publishes there too
    env = {
        "PILOTS_API_PORT": str(port),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        "PILOTS_DEMO_MQTT_PORT": str(mqtt_port),
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
    }
    demo = PilotsProcess(["demo"], env, tmp_path, "demo")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/ready", 90, demo)
        demo.wait_for_output("#token=", 30)
        token = demo.output().rsplit("#token=", 1)[1].split()[0]
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/pilots", timeout=10).status_code == 401
        pilots = httpx.get(f"{base}/pilots", headers=auth, timeout=10).json()
        assert [p["id"] for p in pilots] == ["santa-fe", "san-nicolas", "resistencia"]
        start = (datetime.now(UTC) - timedelta(hours=2)).isoformat()

        def counted(pilot: str) -> int:
            body = httpx.get(
                f"{base}/pilots/{pilot}/series",
                params={"sensor": SENSOR_OF[pilot], "start": start, "every": "10m"},
                headers=auth,
                timeout=10,
            ).json()
            [sensor] = body["sensors"]
            return sum(w["count"] for line in sensor["lines"] for w in line["windows"])

        for pilot in SENSOR_OF:
            # a def, not `lambda p=pilot:`, whose type mypy cannot infer (python/mypy#15459)
            def has_windows(p: str = pilot) -> bool:
                return counted(p) > 0

            wait_for(has_windows, 60, f"{pilot} windows with readings")

        # A refused message shows in the API's quarantine (the demo's token is an admin's).
        publish(mqtt_port, [("pilots/santa-fe/sf-rlv-01/up", b"{demo junk")])

        def junk() -> list[dict[str, object]]:
            body = httpx.get(f"{base}/quarantine", headers=auth, timeout=10).json()
            return [e for e in body["entries"] if e["payload"] == "{demo junk"]

        (entry,) = wait_for(junk, 30, "the refused message in GET /quarantine")
        assert (entry["reason"], entry["source"]) == ("malformed_json", "sf-rlv-01")

        # The storm: Santa Fe's river is past its evacuation level, a live critical alarm.
        def evacuation() -> list[dict[str, object]]:
            body = httpx.get(
                f"{base}/alerts",
                params={
                    "pilot": "santa-fe",
                    "state": "active",
                    "rule": "santa-fe.level.evacuation",
                },
                headers=auth,
                timeout=10,
            ).json()
            return [a for a in body if not a["late"]]

        (alarm,) = wait_for(evacuation, 30, "the storm's evacuation alarm in GET /alerts")
        assert (alarm["severity"], alarm["device"]) == ("critical", "sf-rlv-01")
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.output()
    assert "Traceback" not in demo.output()

"""`pilots demo`, as `make demo` runs it: everything in one process on embedded defaults.

It opens on whole days of history (three past local days, faults and all), a storm alarm live.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.helpers import publish, wait_for
from tests.processes import PilotsProcess, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.e2e

#: A sensor each pilot's simulated fleet reports.
SENSOR_OF = {"santa-fe": "level", "san-nicolas": "pm25", "resistencia": "ph"}
#: Whole local days of history the demo opens on (its default history, 72 h from a midnight).
PAST_DAYS = 3


def _check_history(base: str, auth: dict[str, str], pilot: dict[str, Any]) -> None:
    """The pilot's last three local days are whole, realistic (not 100 %), and today is too."""
    name = pilot["id"]
    # since local midnight, as the dashboard shows it (an hour of history said 8 %)
    assert pilot["completeness_today"] > 0.5, (name, pilot["completeness_today"])
    midnight = datetime.now(ZoneInfo(pilot["timezone"])).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    period = {
        "start": (midnight - timedelta(days=PAST_DAYS)).isoformat(),
        "end": midnight.isoformat(),
    }
    report = httpx.get(
        f"{base}/pilots/{name}/report", params=period, headers=auth, timeout=30
    ).json()
    table = report["completeness"]
    assert len(table["days"]) == PAST_DAYS
    ratios = [r for row in table["ratio"] for r in row]
    assert len(table["ratio"]) == pilot["devices"]
    # every device on every day, the days nearly whole; the fleet's faults show
    assert min(ratios) > 0.5, (name, table)
    assert 0.85 < sum(ratios) / len(ratios) < 1.0, (name, table)
    body = httpx.get(
        f"{base}/pilots/{name}/series",
        params={**period, "sensor": SENSOR_OF[name], "every": "1h"},
        headers=auth,
        timeout=30,
    ).json()
    [sensor] = body["sensors"]
    hours: dict[str, int] = {}
    for line in sensor["lines"]:
        assert sum(w["count"] > 0 for w in line["windows"]) >= 0.8 * 24 * PAST_DAYS, name
        for w in line["windows"]:
            hours[w["start"]] = hours.get(w["start"], 0) + w["count"]
    # every hour of the three days holds the fleet's readings
    assert len(hours) == 24 * PAST_DAYS, (name, len(hours))
    assert min(hours.values()) > 0, (name, [h for h, n in hours.items() if n == 0])


def test_demo_serves_every_pilot_with_data_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    mqtt_port = free_port()  # the test must not clash with a broker, and publishes there too
    env = {
        "PILOTS_API_PORT": str(port),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        "PILOTS_DEMO_MQTT_PORT": str(mqtt_port),
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
        "PILOTS_DEMO_BACKFILL_HOURS": str(24 * PAST_DAYS),  # the default, whatever is set here
    }
    demo = PilotsProcess(["demo"], env, tmp_path, "demo")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/ready", 90, demo)
        demo.wait_for_output("#token=", 30)
        token = demo.output().rsplit("#token=", 1)[1].split()[0]
        auth = {"Authorization": f"Bearer {token}"}
        # San Nicolás is published in the demo: a stranger reads it, and only it.
        public = httpx.get(f"{base}/pilots", timeout=10)
        assert public.status_code == 200
        assert [p["id"] for p in public.json()] == ["san-nicolas"]
        things = httpx.get(f"{base}/sta/v1.1/Things", timeout=10).json()["value"]
        assert things and {t["properties"]["pilot"] for t in things} == {"san-nicolas"}
        assert httpx.get(f"{base}/pilots/santa-fe/devices", timeout=10).status_code == 401
        pilots = httpx.get(f"{base}/pilots", headers=auth, timeout=10).json()
        assert [p["id"] for p in pilots] == ["santa-fe", "san-nicolas", "resistencia"]
        # The history is stored before the API is announced: the first page is full.
        assert "history: " in demo.output() and " stored in " in demo.output()
        for pilot in pilots:
            _check_history(base, auth, pilot)
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

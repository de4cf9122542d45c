"""The storm scenario through mosquitto, ingest and influxd: the report sees what must alarm.

`pilots simulate --scenario storm` backfills a Santa Fe storm with its ground truth; once ingest
has stored every reading (the held window's burst included), the pilot's report over the storm
must find exactly the truth's episodes past each level (start, end, peak) and one gap, the
silent rain gauge's, as long as the truth's silence.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from api.auth import TokenStore
from core.timeutil import HOUR_NS, NS_PER_S, parse_instant_ns
from tests.helpers import wait_for
from tests.processes import PilotsProcess, stack_env, wait_for_http
from tests.services import Influxd, Mosquitto

pytestmark = pytest.mark.e2e


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_S, UTC).isoformat().replace("+00:00", "Z")


def _stored(influxd: Influxd, database: str) -> int:
    response = httpx.get(
        f"{influxd.url}/query",
        params={"db": database, "q": "SELECT count(*) FROM readings"},
        timeout=10,
    )
    response.raise_for_status()
    series = response.json()["results"][0].get("series", [])
    return sum(v for s in series for v in s["values"][0][1:] if v)


def test_the_report_over_a_storm_finds_what_its_truth_says_must_alarm(
    mosquitto: Mosquitto, influxd: Influxd, database: str, tmp_path: Path
) -> None:
    env = stack_env(mosquitto.url, influxd.url, database, tmp_path / "var")
    token = TokenStore.in_data_dir(tmp_path / "var").create("e2e", "admin")
    start_ns = (time.time_ns() // HOUR_NS - 42) * HOUR_NS
    truth_path = tmp_path / "truth.json"
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    api = PilotsProcess(["api"], env, tmp_path, "api")
    try:
        ingest.wait_for_output("ingest ready", 30)
        simulate = PilotsProcess(
            [
                "simulate",
                "--scenario=storm",
                f"--start={iso(start_ns)}",
                "--seed=3",
                f"--truth={truth_path}",
            ],
            env,
            tmp_path,
            "simulate",
        )
        assert simulate.proc.wait(120) == 0, simulate.output()
        truth = orjson.loads(truth_path.read_bytes())
        scenario = truth["scenario"]
        want = truth["totals"]["readings_expected_stored"]
        wait_for(lambda: _stored(influxd, database) >= want, 60, f"{want} readings stored")

        base = f"http://127.0.0.1:{env['PILOTS_API_PORT']}"
        wait_for_http(f"{base}/health", 30, api)
        report = httpx.get(
            f"{base}/pilots/santa-fe/report",
            params={"start": scenario["start"], "end": scenario["end"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert report.status_code == 200, report.text
        body = report.json()
    finally:
        ingest.stop()
        api.stop()

    found = sorted(
        (
            e["device"],
            level["name"],
            parse_instant_ns(e["start"]),
            parse_instant_ns(e["end"]),
            e["peak"],
        )
        for level in body["thresholds"]
        for e in level["episodes"]
    )
    expected = sorted(
        (
            e["device"],
            e["level_name"],
            parse_instant_ns(e["start"]),
            parse_instant_ns(e["end"]),
            e["peak"],
        )
        for e in scenario["threshold_episodes"]
    )
    assert found == expected
    assert any(e["late"] for e in scenario["threshold_episodes"])  # stored all the same
    [silence] = scenario["silences"]
    [gap] = body["gaps"]
    assert gap["device"] == silence["device"]
    assert parse_instant_ns(gap["start"]) == parse_instant_ns(silence["last_before"])
    assert parse_instant_ns(gap["end"]) == parse_instant_ns(silence["first_after"])
    assert gap["length_s"] == silence["silent_s"]

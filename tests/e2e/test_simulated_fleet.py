"""A faulty simulated fleet through mosquitto, ingest and influxd, against its ground truth.

`pilots simulate` backfills half a day of the three pilots with realistic faults in every payload
format and writes what it did; the stored readings, the quarantine, the duplicates ingest
recognised and the report's gaps and repeats must all be what the ground truth says.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from api.auth import TokenStore
from core.timeutil import NS_PER_S, parse_instant_ns
from simulators.fleet import Fleet
from simulators.formats import LORAWAN
from tests.helpers import wait_for
from tests.processes import PilotsProcess, stack_env, wait_for_http
from tests.services import Influxd, Mosquitto
from tests.unit.helpers import shipped_registry

pytestmark = pytest.mark.e2e

HOUR_NS = 3600 * NS_PER_S
SEED = 8  # a seed whose fleet holds all four payload formats
GAP_INTERVALS = 3  # the report's rule: a silence longer than 3 intervals is a gap


def iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NS_PER_S, UTC).isoformat().replace("+00:00", "Z")


def _stored(influxd: Influxd, database: str) -> Counter[tuple[str, str]]:
    response = httpx.get(
        f"{influxd.url}/query",
        params={"db": database, "q": "SELECT count(*) FROM readings GROUP BY device"},
        timeout=10,
    )
    response.raise_for_status()
    out: Counter[tuple[str, str]] = Counter()
    for series in response.json()["results"][0].get("series", []):
        device = series["tags"]["device"]
        for column, value in zip(series["columns"], series["values"][0], strict=True):
            if column.startswith("count_") and value:
                out[device, column.removeprefix("count_")] = value
    return out


def _expected_gaps(truth: dict[str, Any], start_ns: int, end_ns: int) -> dict[str, int]:
    """Gaps per device by the report's rule, from the reports the truth says never arrived."""
    registry = shipped_registry()
    schedule = Fleet(registry, seed=SEED)
    missing: dict[str, set[int]] = {d: set() for d in truth["devices"]}
    for episode in truth["episodes"]:
        device = registry.devices[episode["device"]]
        step = device.interval_s * NS_PER_S
        first = parse_instant_ns(episode["start"])
        every = range(first, first + episode["reports"] * step, step)
        if episode["fault"] == "dropout" or (
            episode["fault"] == "backlog" and parse_instant_ns(episode["delivered"]) >= end_ns
        ):
            missing[device.id].update(every)
    for event in truth["events"]:
        if event["fault"] == "malformed":
            missing[event["device"]].add(parse_instant_ns(event["at"]))
    out = {}
    for device_id in truth["devices"]:
        device = registry.devices[device_id]
        sent = schedule.report_times(device, start_ns, end_ns).tolist()
        kept = np.asarray([start_ns, *(t for t in sent if t not in missing[device_id]), end_ns])
        limit_ns = GAP_INTERVALS * device.interval_s * NS_PER_S
        out[device_id] = int(np.count_nonzero(np.diff(kept) > limit_ns))
    return out


def test_a_faulty_fleet_arrives_as_its_ground_truth_says(
    mosquitto: Mosquitto, influxd: Influxd, database: str, tmp_path: Path
) -> None:
    env = stack_env(mosquitto.url, influxd.url, database, tmp_path / "var")
    token = TokenStore.in_data_dir(tmp_path / "var").create("e2e", "admin")
    auth = {"Authorization": f"Bearer {token}"}
    end_ns = (time.time_ns() // HOUR_NS - 1) * HOUR_NS
    start_ns = end_ns - 12 * HOUR_NS
    truth_path = tmp_path / "truth.json"
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    api = PilotsProcess(["api"], env, tmp_path, "api")
    try:
        ingest.wait_for_output("ingest ready", 30)
        simulate = PilotsProcess(
            [
                "simulate",
                "--mode=backfill",
                f"--start={iso(start_ns)}",
                f"--end={iso(end_ns)}",
                f"--seed={SEED}",
                "--faults=realistic",
                # more of the faults ingest must catch than a real half-day would show
                "--fault=malformed=0.01",
                "--fault=out_of_range=0.005",
                "--fault=duplicate=0.03",
                # a skewed clock moves reports across the period's edges; its own test covers it
                "--fault=clock_skew=0",
                f"--truth={truth_path}",
            ],
            env,
            tmp_path,
            "simulate",
        )
        assert simulate.proc.wait(120) == 0, simulate.output()
        truth = orjson.loads(truth_path.read_bytes())
        formats = {about["format"] for about in truth["devices"].values()}
        assert formats == {"plain", "senml", "chirpstack", "tts"}

        expected = Counter(
            {
                (device, sensor): counts["expected_stored"]
                for device, about in truth["devices"].items()
                for sensor, counts in about["sensors"].items()
                if counts.get("expected_stored")
            }
        )
        want = sum(expected.values())
        wait_for(
            lambda: sum(_stored(influxd, database).values()) >= want, 60, f"{want} readings stored"
        )
        time.sleep(1)  # anything beyond the truth would be arriving now
        assert _stored(influxd, database) == expected  # nothing lost, nothing doubled

        base = f"http://127.0.0.1:{env['PILOTS_API_PORT']}"
        wait_for_http(f"{base}/health", 30, api)
        quarantine = httpx.get(f"{base}/quarantine", headers=auth, timeout=10).json()
        assert quarantine["counts"] == truth["expected_quarantine"]

        malformed = {(e["device"], e["at"]) for e in truth["events"] if e["fault"] == "malformed"}
        # a LoRaWAN retransmission is recognised by its frame counter and dropped; a repeat of a
        # device-timed message is the same point again and overwrites itself
        repeats = Counter(
            e["device"]
            for e in truth["events"]
            if e["fault"] == "duplicate"
            and truth["devices"][e["device"]]["format"] in LORAWAN
            and (e["device"], e["at"]) not in malformed
        )
        lorawan_repeats = sum(repeats.values())
        assert lorawan_repeats > 0
        metrics = httpx.get(
            f"http://127.0.0.1:{env['PILOTS_INGEST_HTTP_PORT']}/metrics", timeout=10
        ).text
        found = re.search(r"^pilots_ingest_duplicates_total (\S+)$", metrics, re.MULTILINE)
        assert found is not None and float(found.group(1)) == lorawan_repeats

        gaps = _expected_gaps(truth, start_ns, end_ns)
        assert sum(gaps.values()) > 0
        for pilot in ("santa-fe", "san-nicolas", "resistencia"):
            report = httpx.get(
                f"{base}/pilots/{pilot}/report",
                params={"start": iso(start_ns), "end": iso(end_ns)},
                headers=auth,
                timeout=60,
            )
            assert report.status_code == 200, report.text
            body = report.json()
            for device in body["devices"]:
                assert device["gaps"] == gaps[device["device"]], device["device"]
                assert device["repeats"] == repeats[device["device"]], device["device"]
            assert body["flags"]["repeats"] == sum(repeats[d["device"]] for d in body["devices"])
    finally:
        ingest.stop()
        api.stop()

"""bench/sta: paging a month of one Datastream through SensorThings, against the store's own read.

Store: a real influxd holding 30 days of one series, `sf-rlv-01`'s river level, one reading a
minute (43,200 readings; the registry copy used here registers the device at 60 s).

Measured, in this order, each the best of `--runs`:
  baseline    the same month read straight from the store (`InfluxStore.scan`: InfluxQL over
              `/query`, CSV parsed by pyarrow into numpy), in readings/s
  sta         `/sta/v1.1/Datastreams('sf-rlv-01:level')/Observations?$top=10000`, following
              `@iot.nextLink` (a time cursor) to the end, each page parsed by orjson, from
              `pilots api` (one worker) in observations/s
  sta/json    the same, each page parsed by the standard library's json (what `requests`,
              `httpx` and so the FROST client do)
  dataArray   the same as `sta` with `$resultFormat=dataArray`

The client (httpx) runs in this process on the same two cores as the API and influxd. The
target is 100,000 observations/s for `sta`.

Run: `.venv/bin/python -m bench.sta` (needs the `bench` extra for tomli-w; Debian's influxdb).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.api import start_server, wait_ready, write_registry
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH
from core.store.influx import InfluxStore
from core.timeutil import DAY_NS, MINUTE_NS
from localservices import Influxd, free_port

DATABASE = "bench_sta"
DEVICE, SENSOR = "sf-rlv-01", "level"
TARGET_PER_S = 100_000


def page_through(url: str, headers: dict[str, str], *, fast: bool) -> tuple[int, int]:
    """Observations and pages read by following nextLinks from `url`.

    `fast` parses each page with orjson, otherwise with the standard library's json (as
    `httpx`'s and `requests`' `.json()` do, and so the FROST client).
    """
    n = pages = 0
    next_url: str | None = url
    with httpx.Client(headers=headers, timeout=120) as client:
        while next_url is not None:
            response = client.get(next_url)
            response.raise_for_status()
            body = orjson.loads(response.content) if fast else response.json()
            for item in body["value"]:
                n += len(item["dataArray"]) if "dataArray" in item else 1
            next_url = body.get("@iot.nextLink")
            pages += 1
    return n, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    for device in raw["pilots"]["santa-fe"]["devices"]:
        if device["id"] == DEVICE:
            device["interval_s"] = 60
    with tempfile.TemporaryDirectory(prefix="bench-sta-") as tmp:
        work = Path(tmp)
        registry, registry_path = write_registry(raw, work)
        influxd = Influxd(free_port(), work)
        influxd.start()
        try:
            store = InfluxStore(influxd.url, DATABASE, registry)
            store.start()
            end_ns = time.time_ns() // DAY_NS * DAY_NS
            start_ns = end_ns - args.days * DAY_NS
            ts = np.arange(start_ns, end_ns, MINUTE_NS, dtype=np.int64)
            rng = np.random.default_rng(1)
            values = np.round(3 + np.cumsum(rng.normal(0, 0.002, len(ts))), 3)
            n = len(ts)
            store.write(
                Readings.from_arrays(
                    ts,
                    np.full(n, registry.devices[DEVICE].code),
                    np.full(n, registry.sensors[SENSOR].code),
                    values,
                )
            )
            print(f"series {DEVICE}:{SENSOR}: {n:,} readings over {args.days} days")
            best = float("inf")
            for _ in range(args.runs):
                t = time.perf_counter()
                got = len(store.scan("santa-fe", [SENSOR], start_ns, end_ns, devices=[DEVICE]))
                best = min(best, time.perf_counter() - t)
            assert got == n, (got, n)
            baseline = n / best
            print(f"baseline  store scan: {n:,} in {best:.3f} s -> {baseline:,.0f} readings/s")
            store.close()

            from api.auth import TokenStore

            token = TokenStore.in_data_dir(work / "var").create("bench", "read")
            headers = {"Authorization": f"Bearer {token}"}
            port = free_port()
            env = {
                "PILOTS_INFLUX_URL": influxd.url,
                "PILOTS_INFLUX_DATABASE": DATABASE,
                "PILOTS_REGISTRY": str(registry_path),
                "PILOTS_DATA_DIR": str(work / "var"),
                "PILOTS_LOG_LEVEL": "WARNING",
            }
            api = start_server(
                ["-m", "pilots", "api", "--port", str(port), "--workers", "1"],
                env,
                work / "api.log",
                port,
            )
            try:
                wait_ready(api)
                base = f"{api.base}/sta/v1.1/Datastreams('{DEVICE}:{SENSOR}')/Observations"
                figures: dict[str, float] = {}
                for name, query, fast in (
                    ("sta", "?$top=10000", True),
                    ("sta/json", "?$top=10000", False),
                    ("dataArray", "?$top=10000&$resultFormat=dataArray", True),
                ):
                    best = float("inf")
                    pages = 0
                    for _ in range(args.runs):
                        t = time.perf_counter()
                        got, pages = page_through(base + query, headers, fast=fast)
                        best = min(best, time.perf_counter() - t)
                        assert got == n, (name, got, n)
                    figures[name] = n / best
                    print(
                        f"{name:<10} {pages} pages: {n:,} in {best:.3f} s -> "
                        f"{figures[name]:,.0f} observations/s "
                        f"({figures[name] / baseline:.2f} x the store scan)"
                    )
            finally:
                api.stop()
            verdict = "meets" if figures["sta"] >= TARGET_PER_S else "misses"
            print(
                f"sta {figures['sta']:,.0f}/s {verdict} the target of {TARGET_PER_S:,}/s; "
                f"ratio to the store scan {figures['sta'] / baseline:.2f}"
            )
        finally:
            influxd.stop()


if __name__ == "__main__":
    main()

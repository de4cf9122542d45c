"""bench/api: the API's warm answers against answering every request from InfluxDB, one run.

Store: a real influxd holding 30 days of the three pilots, each fleet grown to `--scale` times
its registered devices (42 per pilot by default) reporting every `--interval` seconds: about
11.8 million readings and 2.7 million uplinks, with the hourly and daily rollups ingest keeps.

Measured, in this order:
  load        writing the readings, uplinks and rollups into InfluxDB (points/s)
  read        one pilot's 30 days of one sensor out of InfluxDB into numpy, as CSV parsed by
              pyarrow (what the store adapter does) and as InfluxDB's JSON parsed by orjson
  cold start  `pilots api` started on an empty cache until its first 30-day report for one
              pilot answers (process start included)
  warm        32 concurrent clients for `--seconds` each: `series` (what the dashboard asks:
              24 h in 10-minute windows, 7 days hourly, 30 days in 6-hour windows, per device,
              one sensor, every pilot) and `report` (each pilot's last 7 and 30 days), against
              `pilots api` once every distinct request has been answered once
  baseline    the same requests against a server that answers each from InfluxDB
              (bench/baseline_api.py): `series` with InfluxQL `GROUP BY time(), device`
              (InfluxDB aggregates), `report` built from a fresh scan of the period (no
              cache); one request per client for reports (each takes seconds)

The clients (httpx, asyncio) run in this process on the same two cores as the servers.

Run: `.venv/bin/python -m bench.api` (needs the `bench` extra for tomli-w; Debian's influxdb).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from core.readings import Readings
from core.registry import Registry, build_registry
from core.rollups import coarsen, compute_rollups, day_origin_ns
from core.settings import Settings
from core.store.influx import InfluxStore
from core.uplinks import Uplinks
from localservices import Influxd, free_port

#: The repository: the registry the fleets grow from, the servers' working directory.
ROOT = Path(__file__).resolve().parents[1]

S = 1_000_000_000
HOUR_NS = 3600 * S
DAY_NS = 24 * HOUR_NS
DATABASE = "bench"


# --- the fleet and its data ---------------------------------------------------------------


def write_registry(raw: dict[str, Any], work: Path) -> tuple[Registry, Path]:
    """`raw` written as `work/registry.toml` (for the servers) and loaded (for this process)."""
    import tomli_w

    path = work / "registry.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return build_registry(raw, path), path


def grown_registry(scale: int, interval_s: int) -> dict[str, Any]:
    """The project's registry with each pilot's devices repeated `scale` times, all at one rate."""
    raw = tomllib.loads((ROOT / "core" / "registry.toml").read_text(encoding="utf-8"))
    for pilot in raw["pilots"].values():
        grown = []
        for copy in range(scale):
            for device in pilot["devices"]:
                twin = {k: v for k, v in device.items() if k not in {"dev_eui", "lns_id"}}
                if copy:
                    twin["id"] = f"{device['id']}-x{copy}"
                twin["interval_s"] = interval_s
                grown.append(twin)
        pilot["devices"] = grown
    return raw


def day_of_data(
    registry: Registry, day_start_ns: int, interval_s: int, seed: int
) -> tuple[Readings, Uplinks]:
    """One day of every device: a reading of each of its sensors and an uplink per interval."""
    rng = np.random.default_rng(seed)
    step = interval_s * S
    slots = np.arange(day_start_ns, day_start_ns + DAY_NS, step, dtype=np.int64)
    ts_parts, dev_parts, sen_parts, val_parts = [], [], [], []
    up_ts, up_dev = [], []
    for device in registry.device_list:
        jitter = rng.integers(0, 5 * S, len(slots))
        ts = slots + jitter + device.code * 7 * S % step
        up_ts.append(ts)
        up_dev.append(np.full(len(ts), device.code, dtype=np.int32))
        phase = 2 * np.pi * ((ts % DAY_NS) / DAY_NS)
        for sensor_id in device.sensors:
            sensor = registry.sensors[sensor_id]
            low, high = sensor.min, min(sensor.max, sensor.min + 1000.0)
            wave = 0.45 + 0.1 * np.sin(phase + device.code) + rng.normal(0, 0.02, len(ts))
            ts_parts.append(ts)
            dev_parts.append(np.full(len(ts), device.code, dtype=np.int32))
            sen_parts.append(np.full(len(ts), sensor.code, dtype=np.int16))
            val_parts.append(np.round(low + (high - low) * np.clip(wave, 0, 1), 3))
    readings = Readings.from_arrays(
        np.concatenate(ts_parts),
        np.concatenate(dev_parts),
        np.concatenate(sen_parts),
        np.concatenate(val_parts),
    )
    ts_all = np.concatenate(up_ts)
    n = len(ts_all)
    per_day = len(slots)
    day_index = (day_start_ns // DAY_NS) % 100_000
    uplinks = Uplinks.from_columns(
        ts_ns=ts_all,
        device=np.concatenate(up_dev),
        received_ns=ts_all + rng.integers(S, 3 * S, n),
        fcnt=np.tile(np.arange(per_day), len(up_ts)) + day_index * per_day,
        rssi=np.round(rng.normal(-95, 6, n), 1),
        snr=np.round(rng.normal(7, 2, n), 1),
        sf=rng.choice([7, 8, 9, 10], n),
        gateway=np.full(n, "gw-1"),
    )
    return readings, uplinks


def load(store: InfluxStore, registry: Registry, days: int, interval_s: int, end_ns: int) -> int:
    """Write `days` of data ending at `end_ns`, with hourly and daily rollups; points written."""
    points = 0
    origins = {p.id: day_origin_ns(p.tz) for p in registry.pilot_list}
    pilot_of = registry.device_pilot
    for day in range(days):
        start = end_ns - (days - day) * DAY_NS
        readings, uplinks = day_of_data(registry, start, interval_s, seed=day)
        readings = readings.take(readings.ts_ns < end_ns)
        uplinks = uplinks.take(uplinks.ts_ns < end_ns)
        store.write(readings, uplinks)
        hourly = coarsen(compute_rollups(readings, "1m"), "1m", "1h")
        store.write_rollups("1h", hourly)
        for pilot in registry.pilot_list:
            mine = pilot_of[hourly.device] == pilot.code
            daily = coarsen(hourly.take(mine), "1h", "1d", origin_ns=origins[pilot.id])
            store.write_rollups("1d", daily)
        points += len(readings) + len(uplinks) + len(hourly)
        print(f"  day {day + 1}/{days}: {len(readings):,} readings", end="\r", flush=True)
    print()
    return points


# --- reading out of InfluxDB ------------------------------------------------------------


def read_json(url: str, pilot: str, sensor: str, start_ns: int, end_ns: int) -> int:
    """The same scan as the adapter's, as InfluxDB's JSON parsed by orjson into numpy."""
    q = (
        f'SELECT "{sensor}" FROM "readings" WHERE "pilot" = \'{pilot}\' '
        f'AND time >= {start_ns} AND time < {end_ns} GROUP BY "device"'
    )
    query = urllib.parse.urlencode({"db": DATABASE, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(f"{url}/query?{query}", timeout=600) as response:
        body = orjson.loads(response.read())
    parts = []
    for series in body["results"][0].get("series", []):
        rows = series["values"]
        ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        parts.append((ts, values))
    return sum(len(ts) for ts, _ in parts)


# --- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """A server process on a port."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(args: list[str], env: dict[str, str], log: Path, port: int) -> Server:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    return Server(proc, port, log)


def wait_ready(server: Server, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready:\n{server.log.read_text()[-3000:]}")


# --- clients --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Latencies of one run."""

    name: str
    n: int
    errors: int
    wall_s: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, name: str, seconds: list[float], errors: int, wall_s: float) -> Timing:
        ms = np.asarray(seconds or [np.nan]) * 1000
        return cls(name, len(seconds), errors, wall_s, *np.percentile(ms, [50, 99]).tolist())

    def line(self) -> str:
        return (
            f"{self.name:<36} n={self.n:>6}  p50 {self.p50_ms:8.1f} ms  "
            f"p99 {self.p99_ms:8.1f} ms  {self.n / self.wall_s:7.1f} req/s"
            + (f"  errors {self.errors}" if self.errors else "")
        )


async def _hammer(
    base: str,
    requests: list[tuple[str, dict[str, str]]],
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float | None,
    per_client: int | None,
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=900) as c:
        start = time.perf_counter()
        stop_at = start + seconds if seconds is not None else None

        async def client(k: int) -> None:
            nonlocal errors
            i = k
            done = 0
            while True:
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                if per_client is not None and done >= per_client:
                    return
                path, params = requests[i % len(requests)]
                t = time.perf_counter()
                response = await c.get(path, params=params)
                elapsed = time.perf_counter() - t
                if response.status_code == 200:
                    latencies.append(elapsed)
                else:
                    errors += 1
                    if errors <= 3:
                        print(f"  {response.status_code} {path}: {response.text[:200]}")
                i += clients
                done += 1

        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def hammer(
    name: str,
    base: str,
    requests: list[tuple[str, dict[str, str]]],
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float | None = None,
    per_client: int | None = None,
) -> Timing:
    latencies, errors, wall = asyncio.run(
        _hammer(base, requests, headers, clients=clients, seconds=seconds, per_client=per_client)
    )
    timing = Timing.of(name, latencies, errors, wall)
    print(timing.line(), flush=True)
    return timing


WRK_SCRIPT = """
local paths = {%s}
local i = %d
wrk.headers["Authorization"] = "%s"
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\\n", summary.requests, bad,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def wrk(
    name: str,
    base: str,
    requests: list[tuple[str, dict[str, str]]],
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float,
) -> Timing:
    """`wrk` (C, one thread: it leaves the cores to the server) cycling through the requests."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api needs wrk: apt-get install -y wrk")
    paths = ", ".join(
        '"' + path + "?" + urllib.parse.urlencode(params) + '"' for path, params in requests
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (paths, 0, headers["Authorization"]))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{seconds:.0f}s",
            "--timeout",
            "60s",
            "-s",
            script.name,
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    n, bad, p50_us, p99_us, duration_us = (int(v) for v in line.split()[1:])
    timing = Timing(name, n, bad, duration_us / 1e6, p50_us / 1000, p99_us / 1000)
    print(timing.line(), flush=True)
    return timing


def warm_up(
    base: str, requests: list[tuple[str, dict[str, str]]], headers: dict[str, str], workers: int
) -> None:
    """Every request answered by every worker (each connection lands on one of them), until a
    whole round is fast."""
    for _ in range(20):
        t = time.perf_counter()
        for path, params in requests * 2 * workers:
            httpx.get(f"{base}{path}", params=params, headers=headers, timeout=600)
        if time.perf_counter() - t < 0.05 * len(requests) * 2 * workers:
            return


def iso(ts_ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ns / S, UTC).isoformat().replace("+00:00", "Z")


def workload(
    registry: Registry, end_ns: int
) -> tuple[list[tuple[str, dict[str, str]]], list[tuple[str, dict[str, str]]]]:
    """The series and report requests: every pilot, the dashboard's three periods."""
    series = []
    for pilot in registry.pilot_list:
        sensor = pilot.sensors[0]
        for span_h, every in ((24, "10m"), (7 * 24, "1h"), (30 * 24, "6h")):
            params = {
                "sensor": sensor,
                "every": every,
                "start": iso(end_ns - span_h * HOUR_NS),
                "end": iso(end_ns),
            }
            series.append((f"/pilots/{pilot.id}/series", params))
    reports = [
        (
            f"/pilots/{p.id}/report",
            {"start": iso(end_ns - days * DAY_NS), "end": iso(end_ns)},
        )
        for p in registry.pilot_list
        for days in (7, 30)
    ]
    return series, reports


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scale", type=int, default=6, help="each fleet this many times over")
    parser.add_argument("--interval", type=int, default=120, help="seconds between reports")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="API processes (one per core)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per warm run")
    parser.add_argument("--keep", type=Path, help="keep InfluxDB's data in this directory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        registry, registry_path = write_registry(grown_registry(args.scale, args.interval), work)
        influxd = Influxd(free_port(), work)
        influxd.start()
        try:
            run(args, work, registry, registry_path, influxd.url)
        finally:
            influxd.stop()


def run(
    args: argparse.Namespace, work: Path, registry: Registry, registry_path: Path, url: str
) -> None:
    env = {
        "PILOTS_INFLUX_URL": url,
        "PILOTS_INFLUX_DATABASE": DATABASE,
        "PILOTS_REGISTRY": str(registry_path),
        "PILOTS_DATA_DIR": str(work / "var"),
        "PILOTS_LOG_LEVEL": "WARNING",
        "PILOTS_INFLUX_TIMEOUT_S": "900",  # the baseline's reports queue up behind each other
        # The grown fleet's 30-day reports read millions of readings: far past the default
        # per-request bound (docs/OPERATIONS.md, Hostile input), which this bench is not about.
        "PILOTS_API_MAX_SCAN_READINGS": "100000000",
    }
    settings = Settings(
        influx_url=url,
        influx_database=DATABASE,
        registry=registry_path,
        data_dir=work / "var",
        _env_file=None,
    )
    store = InfluxStore.from_settings(settings, registry)
    store.start()
    end_ns = time.time_ns() // HOUR_NS * HOUR_NS
    devices = len(registry.device_list)
    print(
        f"fleet: {devices} devices ({devices // len(registry.pilot_list)} per pilot), "
        f"every {args.interval} s, {args.days} days"
    )
    t = time.perf_counter()
    points = load(store, registry, args.days, args.interval, end_ns)
    load_s = time.perf_counter() - t
    print(f"load: {points:,} points in {load_s:.1f} s ({points / load_s:,.0f} points/s)")

    pilot = registry.pilot_list[0]
    sensor = pilot.sensors[0]
    start_30 = end_ns - args.days * DAY_NS
    best_csv = best_json = float("inf")
    n_csv = n_json = 0
    for _ in range(3):
        t = time.perf_counter()
        n_csv = len(store.scan(pilot.id, [sensor], start_30, end_ns))
        best_csv = min(best_csv, time.perf_counter() - t)
        t = time.perf_counter()
        n_json = read_json(url, pilot.id, sensor, start_30, end_ns)
        best_json = min(best_json, time.perf_counter() - t)
    print(
        f"read {pilot.id}/{sensor}, {args.days} days: CSV+pyarrow {n_csv:,} points in "
        f"{best_csv:.2f} s ({n_csv / best_csv:,.0f}/s); JSON+orjson {n_json:,} in "
        f"{best_json:.2f} s ({n_json / best_json:,.0f}/s)"
    )
    store.close()

    from api.auth import TokenStore

    token = TokenStore.in_data_dir(work / "var").create(f"bench-{time.time_ns()}", "read")
    headers = {"Authorization": f"Bearer {token}"}
    series, reports = workload(registry, end_ns)

    # Cold start: process start, empty cache, first 30-day report of one pilot.
    port = free_port()
    t = time.perf_counter()
    api = start_server(
        ["-m", "pilots", "api", "--port", str(port), "--workers", str(args.workers)],
        env,
        work / "api.log",
        port,
    )
    try:
        path, params = reports[1]  # the first pilot's 30 days
        while True:
            try:
                response = httpx.get(
                    f"{api.base}{path}", params=params, headers=headers, timeout=600
                )
                if response.status_code == 200:
                    break
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            except httpx.TransportError:
                if api.proc.poll() is not None:
                    raise RuntimeError(api.log.read_text()[-3000:]) from None
                time.sleep(0.05)
        cold_s = time.perf_counter() - t
        print(f"cold start to first {args.days}-day report of {pilot.id}: {cold_s:.2f} s")

        warm_up(api.base, series + reports, headers, args.workers)
        wrk(
            "(warming every worker)",
            api.base,
            series + reports,
            headers,
            clients=args.clients,
            seconds=5,
        )
        warm_series = wrk(
            "warm series (pilots api)",
            api.base,
            series,
            headers,
            clients=args.clients,
            seconds=args.seconds,
        )
        report_runs = [
            wrk(
                f"warm report (pilots api) run {k + 1}",
                api.base,
                reports,
                headers,
                clients=args.clients,
                seconds=args.seconds,
            )
            for k in range(3)
        ]
        print("warm report p99 per run: " + ", ".join(f"{t.p99_ms:.1f} ms" for t in report_runs))
        warm_report = max(report_runs, key=lambda t: t.p99_ms)
    finally:
        api.stop()

    # The same series with no answers kept: every request computed from the hot cache.
    port = free_port()
    api = start_server(
        ["-m", "pilots", "api", "--port", str(port), "--workers", str(args.workers)],
        {**env, "PILOTS_API_ANSWERS_KEPT": "0"},
        work / "api-computed.log",
        port,
    )
    try:
        wait_ready(api)
        warm_up(api.base, series, headers, args.workers)
        computed = wrk(
            "warm series, computed each time",
            api.base,
            series,
            headers,
            clients=args.clients,
            seconds=args.seconds,
        )
    finally:
        api.stop()

    port = free_port()
    base = start_server(
        ["-m", "bench.baseline_api", "--port", str(port)],
        env,
        work / "baseline.log",
        port,
    )
    try:
        wait_ready(base)
        base_series = wrk(
            "baseline series (GROUP BY time())",
            base.base,
            series,
            headers,
            clients=args.clients,
            seconds=args.seconds,
        )
        base_report = hammer(
            "baseline report (scan per request)",
            base.base,
            reports,
            headers,
            clients=args.clients,
            per_client=1,
        )
    finally:
        base.stop()

    print()
    print(
        f"{'':<8} {'p50 ms':>9} {'p99 ms':>9} {'base p50':>10} {'base p99':>10}"
        f" {'p50 x':>7} {'p99 x':>7}"
    )
    for name, warm, basis in (
        ("series", warm_series, base_series),
        ("computed", computed, base_series),
        ("report", warm_report, base_report),
    ):
        print(
            f"{name:<8} {warm.p50_ms:>9.1f} {warm.p99_ms:>9.1f} {basis.p50_ms:>10.1f} "
            f"{basis.p99_ms:>10.1f} {basis.p50_ms / warm.p50_ms:>7.1f} "
            f"{basis.p99_ms / warm.p99_ms:>7.1f}"
        )
    print(f"cold start to first report: {cold_s:.2f} s")


if __name__ == "__main__":
    main()

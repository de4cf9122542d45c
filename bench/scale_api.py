"""bench/scale_api: the API's latency and memory against fleet size and against the report's period.

Two sweeps over real components: an influxd loaded as bench/api loads it (whatever
`bench.api.load` writes of `bench.api.grown_registry`'s fleet: readings, uplinks, hourly and
daily rollups; its writes cut into bodies influxd accepts), then, for every point, a fresh
`pilots api --workers 2` started on an empty cache, and wrk at 32 connections. Settings as
bench/api's (`PILOTS_API_MAX_SCAN_READINGS` raised so that the grown fleets' reports are
answered, everything else the defaults).

  fleet   the bench fleet (bench/api's: the three pilots' registered devices x6, 126 devices
          reporting every 120 s) x1, x10 and x30: 126, 1,260 and 3,780 devices, with **1 day**
          of history each (not bench/api's 30: x30 for 30 days would be ~450 M points, hours of
          loading here; a day of x30 is 15 M). Requests per pilot: `series` of its first sensor
          per device in 10-minute windows over the last 6 h and hourly over the last 24 h (the
          dashboard's 10-minute windows over 24 h would pass `PILOTS_API_MAX_POINTS` at x30),
          `report` of the last 6 h and 24 h. A fresh influxd per point.
  period  one fleet: **the pilots' own 21 devices**, all reporting every **600 s** (bench/api's
          generator gives every device one interval; the registry's are 300 to 900 s), with
          **365 days** of history in one influxd (~7 M points). For each period P of 1, 7, 30,
          90 and 365 days, per pilot: `report` of the last P days and `series` of its first
          sensor per device over P in 90 to 170 windows (10m, 1h, 6h, 1d, 3d), so that the
          series answer keeps about the same size.

Measured at every point:
  cold start  `pilots api` started until its first report answers: the first pilot's longest
              period (process start and the cache's fill included)
  warm        wrk, 32 connections, `--seconds` each: `series`, then `report`, cycling through the
              point's requests, once every worker has answered each (answers kept where the API
              keeps them); answers are counted by status code, and a share refused (503 past
              `PILOTS_API_MAX_CONCURRENT_SCANS`) is printed (wrk's percentiles include them)
  1 client    one request at a time: the warm requests (kept) and requests never asked before
              (the period's start moved by a window or an hour: computed, from the hot cache
              where it holds the range, from InfluxDB where not); p50 of each and their ratio
  RSS         resident memory of the API: the supervisor and its children (2 workers and
              multiprocessing's resource tracker) summed, sampled every 0.1 s from start to stop
              (peak), and right after the warm runs (after)
  baseline    bench/baseline_api.py (answers each request from InfluxDB, nothing kept): `series`
              with wrk as above, and one `report` (the cold start's request) on its own
  answer      the mean size of a `series` and a `report` answer (both grow with the fleet)

The clients run on the same two cores as the servers and influxd. Plots and tables go to
docs/scaling/ (`bench/plot.py`): api-fleet, api-fleet-rss, api-fleet-cold, api-period,
api-period-rss, api-period-cold.

Run: `.venv/bin/python -m bench.scale_api` (about 16 minutes on 2 cores; `--quick` for a short
run of x1 and x3 and of periods of 1, 7 and 30 days, written to a temporary directory; `--only
fleet|period` for one sweep). Needs the `bench` extra, Debian's influxdb and wrk.
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.api import (
    DATABASE,
    DAY_NS,
    HOUR_NS,
    WRK_SCRIPT,
    Server,
    Timing,
    grown_registry,
    iso,
    load,
    start_server,
    wait_ready,
    write_registry,
    wrk,
)
from bench.plot import OUT, Curve, Series, write
from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from localservices import Influxd, free_port

#: The bench fleet: bench/api's grown registry, each pilot's devices this many times over.
BENCH_SCALE = 6
#: The period sweep's fleet: the pilots' own (each registered device once).
PILOTS_SCALE = 1
#: The fleet sweep's `series` and `report` spans (hours) and its series windows.
FLEET_SPANS = ((6, "10m"), (24, "1h"))
#: A request: path and query parameters.
Request = tuple[str, dict[str, str]]
MB = 1 << 20
CLIENTS = 32
WORKERS = 2


# --- the API's memory -----------------------------------------------------------------------


class RssSampler:
    """The summed resident memory of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.every_s = every_s
        self.peak_mb = 0.0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def now_mb(self) -> float:
        """The tree's resident memory now (0 once the process is gone)."""
        total = 0
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        alive = 0
        for proc in tree:
            try:
                total += int(proc.memory_info().rss)
                alive += 1
            except psutil.NoSuchProcess:
                continue
        self.processes = max(self.processes, alive)
        return total / MB

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.now_mb())
            self._stop.wait(self.every_s)


# --- one point of a sweep -------------------------------------------------------------------


@dataclass
class Workload:
    """What one point asks: the warm requests, never-asked ones, and the cold start's report."""

    series: list[Request]
    reports: list[Request]
    fresh_series: list[Request]
    fresh_reports: list[Request]
    cold: Request


@dataclass
class Point:
    """What one point measured."""

    x: float
    cold_s: float
    series: Timing
    report: Timing
    series_refused: float  # share of wrk's requests refused (then `series` times the answered)
    report_refused: float
    computed_series_ms: float
    computed_report_ms: float
    kept_series_ms: float
    kept_report_ms: float
    rss_peak_mb: float
    rss_after_mb: float
    processes: int
    series_bytes: float
    report_bytes: float
    base_series: Timing | None
    base_report_ms: float | None

    def lines(self) -> list[str]:
        """The point's figures, for the log."""
        base = (
            ""
            if self.base_series is None or self.base_report_ms is None
            else (
                f"  baseline: series p50 {self.base_series.p50_ms:.1f} ms p99 "
                f"{self.base_series.p99_ms:.1f} ms; one report {self.base_report_ms:.0f} ms"
            )
        )
        return [
            f"  cold start {self.cold_s:.2f} s; RSS ({self.processes} processes) peak "
            f"{self.rss_peak_mb:,.0f} MB, after the warm runs {self.rss_after_mb:,.0f} MB",
            f"  1 client: computed series p50 {self.computed_series_ms:.1f} ms, report p50 "
            f"{self.computed_report_ms:.1f} ms; warm (kept) series {self.kept_series_ms:.1f} ms, "
            f"report {self.kept_report_ms:.1f} ms; warm/computed: series "
            f"{self.kept_series_ms / self.computed_series_ms:.3f}, report "
            f"{self.kept_report_ms / self.computed_report_ms:.3f}",
            f"  answers: series {self.series_bytes / 1024:,.0f} KiB, report "
            f"{self.report_bytes / 1024:,.0f} KiB on average" + base,
        ]


def get(base: str, request: Request, headers: dict[str, str]) -> tuple[float, int]:
    """One request on a new connection: seconds taken and the answer's bytes; fails unless 200."""
    path, params = request
    t = time.perf_counter()
    response = httpx.get(f"{base}{path}", params=params, headers=headers, timeout=900)
    elapsed = time.perf_counter() - t
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code} {path} {params}: {response.text[:300]}")
    return elapsed, len(response.content)


def cold_start(api: Server, request: Request, headers: dict[str, str], began: float) -> float:
    """Seconds from `began` (the process's start) until `request` answers."""
    path, params = request
    while True:
        try:
            response = httpx.get(f"{api.base}{path}", params=params, headers=headers, timeout=900)
        except httpx.TransportError:
            if api.proc.poll() is not None:
                raise RuntimeError(api.log.read_text()[-3000:]) from None
            time.sleep(0.05)
            continue
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
        return time.perf_counter() - began


def sequential_ms(base: str, requests: list[Request], headers: dict[str, str]) -> float:
    """Median milliseconds of the requests asked one at a time."""
    return statistics.median(get(base, r, headers)[0] for r in requests) * 1000


def attempt(base: str, request: Request, headers: dict[str, str]) -> tuple[float, int] | None:
    """`get`, but None when the API is busy (503: its scan slots taken, or a build of the same
    answer still running past the wait)."""
    path, params = request
    t = time.perf_counter()
    response = httpx.get(f"{base}{path}", params=params, headers=headers, timeout=900)
    elapsed = time.perf_counter() - t
    if response.status_code == 503:
        return None
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code} {path} {params}: {response.text[:300]}")
    return elapsed, len(response.content)


def warm_every_worker(
    base: str, requests: list[Request], headers: dict[str, str]
) -> tuple[float, float]:
    """Every request answered by every worker; seconds taken and the answers' mean bytes.

    Request by request, in rounds of 2 x workers connections at once (each lands on one worker
    or the other, and both compute at once), until two rounds in a row in which every answer
    came and took at most twice the fastest seen plus 20 ms: a kept answer, on both workers but
    with a chance of 2 in 2**8. bench/api's `warm_up` asks for 50 ms a request, which the large
    answers of x30 never reach.
    """
    began = time.perf_counter()
    sizes: list[int] = []
    with ThreadPoolExecutor(max_workers=2 * WORKERS) as pool:
        for request in requests:
            fastest, streak = float("inf"), 0
            for _ in range(20):
                futures = [pool.submit(attempt, base, request, headers) for _ in range(2 * WORKERS)]
                answers = [f.result() for f in futures]
                times = [a[0] for a in answers if a is not None]
                sizes += [a[1] for a in answers if a is not None]
                fastest = min([fastest, *times])
                warm = len(times) == len(answers) and max(times) <= 2 * fastest + 0.02
                streak = streak + 1 if warm else 0
                if streak == 2:
                    break
                if len(times) < len(answers):
                    time.sleep(1)  # a build still running: let it finish
            else:
                print(f"  answer times still uneven after 20 rounds: {request}", flush=True)
    return time.perf_counter() - began, statistics.mean(sizes)


#: Appended to bench/api's wrk script: counts the answers by status code and prints them.
STATUS_LUA = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
local timings = done
done = function(summary, latency, requests)
  timings(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      io.write(string.format("STATUS %d %d\\n", code, n))
    end
  end
end
"""


def warm_run(
    name: str, base: str, requests: list[Request], headers: dict[str, str], seconds: float
) -> tuple[Timing, float]:
    """bench/api's wrk run (its script, one thread, 32 connections), also counting status codes.

    Returns the timing (wrk's percentiles are of every answer, refusals included) and the share
    of answers that were not 200, whose codes are printed.
    """
    paths = ", ".join(f'"{path}?{urllib.parse.urlencode(params)}"' for path, params in requests)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (paths, 0, headers["Authorization"]) + STATUS_LUA)
    command = ["wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds:.0f}s", "--timeout", "60s"]
    try:
        out = subprocess.run(
            [*command, "-s", script.name, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    n, bad, p50_us, p99_us, duration_us = (int(v) for v in line.split()[1:])
    timing = Timing(name, n, bad, duration_us / 1e6, p50_us / 1000, p99_us / 1000)
    print(timing.line(), flush=True)
    codes = {
        int(code): int(count)
        for code, count in (x.split()[1:] for x in out.splitlines() if x.startswith("STATUS"))
    }
    refused = sum(count for code, count in codes.items() if code != 200)
    if refused:
        print(
            "  answers by status: "
            + ", ".join(f"{code}: {count:,}" for code, count in sorted(codes.items()))
            + " (the percentiles include the refusals)",
            flush=True,
        )
    return timing, refused / max(n, 1)


def measure(
    x: float,
    env: dict[str, str],
    work: Path,
    load_: Workload,
    headers: dict[str, str],
    seconds: float,
) -> Point:
    """One point: `pilots api` from cold start to the warm and computed runs, then the baseline."""
    port = free_port()
    began = time.perf_counter()
    api = start_server(
        ["-m", "pilots", "api", "--port", str(port), "--workers", str(WORKERS)],
        env,
        work / f"api-{x:g}.log",
        port,
    )
    rss = RssSampler(api.proc.pid)
    rss.start()
    try:
        cold_s = cold_start(api, load_.cold, headers, began)
        print(f"  cold start to the first report: {cold_s:.2f} s", flush=True)
        warm_s, series_bytes = warm_every_worker(api.base, load_.series, headers)
        more_s, report_bytes = warm_every_worker(api.base, load_.reports, headers)
        print(f"  every worker answered every request in {warm_s + more_s:.1f} s", flush=True)
        series, series_refused = warm_run(
            "warm series (pilots api)", api.base, load_.series, headers, seconds
        )
        report, report_refused = warm_run(
            "warm report (pilots api)", api.base, load_.reports, headers, seconds
        )
        rss_after = rss.now_mb()
        kept_series = sequential_ms(api.base, load_.series, headers)
        kept_report = sequential_ms(api.base, load_.reports, headers)
        computed_series = sequential_ms(api.base, load_.fresh_series, headers)
        computed_report = sequential_ms(api.base, load_.fresh_reports, headers)
    finally:
        api.stop()
        rss.stop()

    base_series: Timing | None = None
    base_report: float | None = None
    port = free_port()
    baseline = start_server(
        ["-m", "bench.baseline_api", "--port", str(port)], env, work / f"base-{x:g}.log", port
    )
    try:
        wait_ready(baseline)
        base_series = wrk(
            "baseline series (GROUP BY time())",
            baseline.base,
            load_.series,
            headers,
            clients=CLIENTS,
            seconds=seconds,
        )
        if base_series.n == 0:  # nothing answered within the run: no latency to show
            base_series = None
        base_report = get(baseline.base, load_.cold, headers)[0] * 1000
    finally:
        baseline.stop()
    point = Point(
        x=x,
        cold_s=cold_s,
        series=series,
        report=report,
        series_refused=series_refused,
        report_refused=report_refused,
        computed_series_ms=computed_series,
        computed_report_ms=computed_report,
        kept_series_ms=kept_series,
        kept_report_ms=kept_report,
        rss_peak_mb=rss.peak_mb,
        rss_after_mb=rss_after,
        processes=rss.processes,
        series_bytes=series_bytes,
        report_bytes=report_bytes,
        base_series=base_series,
        base_report_ms=base_report,
    )
    print("\n".join(point.lines()), flush=True)
    return point


# --- the data -------------------------------------------------------------------------------


#: The largest write body sent (influxd's `max-body-size` is 25 MB).
CHUNK_BYTES = 8 << 20


class ChunkedStore(InfluxStore):
    """The store adapter with its writes cut at line ends into bodies influxd takes.

    `bench.api.load` writes a day at a time: at x3 the bench fleet and more, a day's line
    protocol is past influxd's 25 MB `max-body-size`.
    """

    def _send(self, body: bytes) -> None:
        start = 0
        while start < len(body):
            stop = len(body)
            if stop - start > CHUNK_BYTES:
                stop = body.rfind(b"\n", start, start + CHUNK_BYTES)
                if stop <= start:  # one line longer than a chunk: send it whole
                    stop = body.find(b"\n", start + CHUNK_BYTES)
                    stop = len(body) if stop < 0 else stop
            super()._send(body[start:stop])
            start = stop + 1


@contextmanager
def loaded(
    work: Path, scale: int, interval_s: int, days: int, end_ns: int
) -> Iterator[tuple[Registry, dict[str, str], dict[str, str]]]:
    """A fresh influxd holding `days` of the grown fleet ending at `end_ns`.

    Yields the registry, the servers' environment and a read token's headers.
    """
    registry, registry_path = write_registry(grown_registry(scale, interval_s), work)
    influxd = Influxd(free_port(), work)
    influxd.start()
    try:
        env = {
            "PILOTS_INFLUX_URL": influxd.url,
            "PILOTS_INFLUX_DATABASE": DATABASE,
            "PILOTS_REGISTRY": str(registry_path),
            "PILOTS_DATA_DIR": str(work / "var"),
            "PILOTS_LOG_LEVEL": "WARNING",
            "PILOTS_INFLUX_TIMEOUT_S": "900",
            # as bench/api: the grown fleets' reports read millions of readings, far past the
            # default per-request bound (docs/OPERATIONS.md, Hostile input)
            "PILOTS_API_MAX_SCAN_READINGS": "100000000",
        }
        settings = Settings(
            influx_url=influxd.url,
            influx_database=DATABASE,
            registry=registry_path,
            data_dir=work / "var",
            _env_file=None,
        )
        store = ChunkedStore.from_settings(settings, registry)
        store.start()
        devices = len(registry.device_list)
        print(f"{devices:,} devices, every {interval_s} s, {days} days:", flush=True)
        t = time.perf_counter()
        try:
            with redirect_stdout(io.StringIO()) as progress:  # its progress, one line a day
                points = load(store, registry, days, interval_s, end_ns)
        finally:
            store.close()
        days_loaded = [x.strip() for x in progress.getvalue().split("\r") if x.strip()]
        print("  " + (days_loaded or ["(no progress printed)"])[-1], flush=True)
        load_s = time.perf_counter() - t
        print(f"  load: {points:,} points in {load_s:.1f} s ({points / load_s:,.0f} points/s)")
        from api.auth import TokenStore

        token = TokenStore.in_data_dir(work / "var").create(f"scale-{time.time_ns()}", "read")
        yield registry, env, {"Authorization": f"Bearer {token}"}
    finally:
        influxd.stop()


def series_request(pilot: str, sensor: str, every: str, start_ns: int, end_ns: int) -> Request:
    params = {"sensor": sensor, "every": every, "start": iso(start_ns), "end": iso(end_ns)}
    return f"/pilots/{pilot}/series", params


def report_request(pilot: str, start_ns: int, end_ns: int) -> Request:
    return f"/pilots/{pilot}/report", {"start": iso(start_ns), "end": iso(end_ns)}


def fleet_workload(registry: Registry, end_ns: int) -> Workload:
    """Per pilot, `series` of its first sensor per device and `report`: last 6 h and 24 h.

    The series are in 10-minute windows over 6 h and hourly over 24 h: at most 144 windows a
    device, which keeps x30's 1,260 devices a pilot under `PILOTS_API_MAX_POINTS`.
    """
    series, reports, fresh_series, fresh_reports = [], [], [], []
    for pilot in registry.pilot_list:
        sensor = pilot.sensors[0]
        for hours, every in FLEET_SPANS:
            start = end_ns - hours * HOUR_NS
            series.append(series_request(pilot.id, sensor, every, start, end_ns))
            reports.append(report_request(pilot.id, start, end_ns))
        for k in (1,):  # never asked: the last day less an hour
            start = end_ns - (24 - k) * HOUR_NS
            fresh_series.append(series_request(pilot.id, sensor, "1h", start, end_ns))
            fresh_reports.append(report_request(pilot.id, start, end_ns))
    return Workload(series, reports, fresh_series, fresh_reports, cold=reports[1])


#: Series windows per period, so that each answer holds about 100-170 windows.
WINDOW_OF_PERIOD = {1: "10m", 7: "1h", 30: "6h", 90: "1d", 365: "3d"}


def period_workload(registry: Registry, end_ns: int, days: int) -> Workload:
    """Per pilot, `series` of its first sensor per device and `report` over the last `days`."""
    from core.timeutil import parse_duration_s

    every = WINDOW_OF_PERIOD.get(days, "1d")
    step = parse_duration_s(every) * 1_000_000_000
    start = end_ns - days * DAY_NS
    series, reports, fresh_series, fresh_reports = [], [], [], []
    for pilot in registry.pilot_list:
        sensor = pilot.sensors[0]
        series.append(series_request(pilot.id, sensor, every, start, end_ns))
        reports.append(report_request(pilot.id, start, end_ns))
        for k in (1,):  # never asked: the start moved by a whole window, or an hour
            fresh_series.append(series_request(pilot.id, sensor, every, start + k * step, end_ns))
            fresh_reports.append(report_request(pilot.id, start + k * HOUR_NS, end_ns))
    return Workload(series, reports, fresh_series, fresh_reports, cold=reports[0])


# --- the sweeps -----------------------------------------------------------------------------


def fleet_sweep(args: argparse.Namespace, end_ns: int) -> list[Point]:
    points = []
    for times in args.fleet:
        print(f"\n=== fleet x{times} ===", flush=True)
        with tempfile.TemporaryDirectory(prefix="scale-api-fleet-") as tmp:
            work = Path(tmp)
            with loaded(
                work, BENCH_SCALE * times, args.fleet_interval, args.fleet_days, end_ns
            ) as (registry, env, headers):
                workload = fleet_workload(registry, end_ns)
                x = float(len(registry.device_list))
                points.append(measure(x, env, work, workload, headers, args.seconds))
    return points


def period_sweep(args: argparse.Namespace, end_ns: int) -> list[Point]:
    points = []
    history = max(args.periods)
    print(f"\n=== periods {', '.join(map(str, args.periods))} days ===", flush=True)
    with tempfile.TemporaryDirectory(prefix="scale-api-period-") as tmp:
        work = Path(tmp)
        with loaded(work, PILOTS_SCALE, args.period_interval, history, end_ns) as (
            registry,
            env,
            headers,
        ):
            for days in args.periods:
                print(f"--- period {days} days ---", flush=True)
                workload = period_workload(registry, end_ns, days)
                points.append(measure(float(days), env, work, workload, headers, args.seconds))
    return points


# --- the curves -----------------------------------------------------------------------------


#: Above this share of refusals a warm run's percentiles (which include the fast 503s) are not
#: plotted; the table printed has them with the share.
REFUSED_PLOTTED = 0.01


def latency_curve(name: str, title: str, xlabel: str, points: list[Point], note: str) -> Curve:
    """Warm p50 and p99 of `pilots api` and the baseline's series; runs mostly refused left out."""
    lines = {
        label: Series(label)
        for label in (
            "report p50",
            "report p99",
            "series p50",
            "series p99",
            "baseline series p50",
            "baseline series p99",
        )
    }
    left_out = []
    for p in points:
        for kind, timing, refused in (
            ("report", p.report, p.report_refused),
            ("series", p.series, p.series_refused),
        ):
            shown = refused <= REFUSED_PLOTTED
            lines[f"{kind} p50"].add(p.x, timing.p50_ms if shown else None)
            lines[f"{kind} p99"].add(p.x, timing.p99_ms if shown else None)
            if not shown:
                left_out.append(f"{kind} at {p.x:,.0f} ({refused:.0%} refused)")
        base = p.base_series
        lines["baseline series p50"].add(p.x, None if base is None else base.p50_ms)
        lines["baseline series p99"].add(p.x, None if base is None else base.p99_ms)
    if left_out:
        note += "; not plotted: " + ", ".join(left_out)
    return Curve(name, title, xlabel, "ms", list(lines.values()), logx=True, logy=True, note=note)


def rss_curve(name: str, title: str, xlabel: str, points: list[Point], note: str) -> Curve:
    """RSS on linear axes: growth linear in x is a straight line."""
    peak, after = Series("peak RSS"), Series("RSS after the warm runs")
    for p in points:
        peak.add(p.x, p.rss_peak_mb)
        after.add(p.x, p.rss_after_mb)
    return Curve(name, title, xlabel, "MB (the API's processes)", [peak, after], note=note)


def cold_curve(name: str, title: str, xlabel: str, points: list[Point], note: str) -> Curve:
    cold, computed, base = (
        Series("cold start to first report"),
        Series("report computed, 1 client"),
        Series("baseline report, 1 request"),
    )
    for p in points:
        cold.add(p.x, p.cold_s)
        computed.add(p.x, p.computed_report_ms / 1000)
        base.add(p.x, None if p.base_report_ms is None else p.base_report_ms / 1000)
    return Curve(name, title, xlabel, "s", [cold, computed, base], logx=True, logy=True, note=note)


def summary(title: str, xlabel: str, unit: str, points: list[Point]) -> None:
    """The sweep as one table, and how its figures grew from the first point to the last."""
    print(f"\n{title}")
    print(
        "warm: wrk, 32 connections (ref: share refused, included in p50/p99); "
        "1 client: kept (warm) and computed (never asked) p50; base: bench/baseline_api, "
        "series p50 at 32 connections, one report; RSS MB: supervisor + workers; KiB: answers"
    )
    print(
        f"{xlabel:>8} {'cold s':>6} | {'rep p50':>7} {'p99':>6} {'ref':>4} | {'ser p50':>7}"
        f" {'p99':>6} {'ref':>4} | {'rep kept':>8} {'comp':>7} {'ser kept':>8} {'comp':>6} |"
        f" {'base ser':>8} {'base rep':>8} | {'RSS peak':>8} {'after':>6} |"
        f" {'ser KiB':>7} {'rep KiB':>7}"
    )
    for p in points:
        base_series = float("nan") if p.base_series is None else p.base_series.p50_ms
        base_report = float("nan") if p.base_report_ms is None else p.base_report_ms
        print(
            f"{p.x:>8,.0f} {p.cold_s:>6.1f} | {p.report.p50_ms:>7.1f} {p.report.p99_ms:>6.0f}"
            f" {p.report_refused:>4.0%} | {p.series.p50_ms:>7.1f} {p.series.p99_ms:>6.0f}"
            f" {p.series_refused:>4.0%} | {p.kept_report_ms:>8.1f} {p.computed_report_ms:>7.0f}"
            f" {p.kept_series_ms:>8.1f} {p.computed_series_ms:>6.0f} | {base_series:>8.0f}"
            f" {base_report:>8.0f} | {p.rss_peak_mb:>8,.0f} {p.rss_after_mb:>6,.0f} |"
            f" {p.series_bytes / 1024:>7,.0f} {p.report_bytes / 1024:>7,.0f}"
        )
    first, last = points[0], points[-1]
    print(
        f"{xlabel} {first.x:,.0f} -> {last.x:,.0f} (x{last.x / first.x:g}): peak RSS "
        f"x{last.rss_peak_mb / first.rss_peak_mb:.2f}, after the warm runs "
        f"x{last.rss_after_mb / first.rss_after_mb:.2f}; warm report p50 "
        f"x{last.report.p50_ms / first.report.p50_ms:.2f}, p99 "
        f"x{last.report.p99_ms / first.report.p99_ms:.2f}; warm series p50 "
        f"x{last.series.p50_ms / first.series.p50_ms:.2f}, p99 "
        f"x{last.series.p99_ms / first.series.p99_ms:.2f}; cold start "
        f"x{last.cold_s / first.cold_s:.2f}; computed report "
        f"x{last.computed_report_ms / first.computed_report_ms:.1f}"
    )
    for a, b in itertools.pairwise(points):
        peak = (b.rss_peak_mb - a.rss_peak_mb) / (b.x - a.x)
        after = (b.rss_after_mb - a.rss_after_mb) / (b.x - a.x)
        print(
            f"  {xlabel} {a.x:,.0f} -> {b.x:,.0f}: RSS {peak:+.2f} MB (peak), {after:+.2f} MB "
            f"(after) per added {unit}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short development run")
    parser.add_argument("--only", choices=("fleet", "period"), help="one sweep only")
    parser.add_argument("--seconds", type=float, default=8.0, help="per wrk run")
    parser.add_argument("--out", type=Path, help="plots and tables (default docs/scaling/)")
    args = parser.parse_args()
    if args.quick:
        args.fleet, args.fleet_days, args.fleet_interval = [1, 3], 1, 120
        args.periods, args.period_interval = [1, 7, 30], 600
        args.seconds = min(args.seconds, 3.0)
        out = args.out or Path(tempfile.mkdtemp(prefix="scale-api-quick-"))
    else:
        args.fleet, args.fleet_days, args.fleet_interval = [1, 10, 30], 1, 120
        args.periods, args.period_interval = [1, 7, 30, 90, 365], 600
        out = args.out or OUT
    end_ns = time.time_ns() // HOUR_NS * HOUR_NS
    began = time.perf_counter()
    command = "bench/scale_api" + (" --quick" if args.quick else "")

    if args.only in (None, "fleet"):
        points = fleet_sweep(args, end_ns)
        note = (
            f"{command}: bench fleet x{'/'.join(map(str, args.fleet))}, every "
            f"{args.fleet_interval} s, {args.fleet_days} days; wrk -c32; 2 cores"
        )
        summary(f"fleet ({args.fleet_days} days of history)", "devices", "device", points)
        for curve in (
            latency_curve("api-fleet", "Warm API latency against fleet", "devices", points, note),
            rss_curve("api-fleet-rss", "API memory against fleet", "devices", points, note),
            cold_curve("api-fleet-cold", "Cold and computed report", "devices", points, note),
        ):
            print(f"\n{curve.title} ({out / curve.name}.svg)\n{write(curve, out)}")

    if args.only in (None, "period"):
        points = period_sweep(args, end_ns)
        note = (
            f"{command}: 21 devices every {args.period_interval} s, "
            f"{max(args.periods)} days held; wrk -c32; 2 cores"
        )
        summary("period (days)", "days", "day of period", points)
        for curve in (
            latency_curve(
                "api-period", "Warm API latency against the period", "days", points, note
            ),
            rss_curve(
                "api-period-rss", "API memory against the report's period", "days", points, note
            ),
            cold_curve("api-period-cold", "Cold and computed report", "days", points, note),
        ):
            print(f"\n{curve.title} ({out / curve.name}.svg)\n{write(curve, out)}")
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

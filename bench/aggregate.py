"""bench/aggregate: the numpy core against pandas, polars, DuckDB and InfluxDB, one run.

Workload (the issue's): 10 million readings of 3,000 series over 24 hours, in 1-minute windows:
count, mean, min and max per series and window; then the same with the exact 95th percentile.
Readings arrive as a store scan gives them: per series, in time order. Every engine gets the
same three arrays (time in ns, series id, value) and computes the window itself.

Each engine runs in a process of its own: the data is generated (seeded, identical), the
process's resident memory noted, one warm-up run made, then the best of three timed; peak memory
is the process's high-water mark minus what it held before the first run, reported next to the
size of the input arrays. Single-threaded unless said (DuckDB also at 2 threads, for reference).
InfluxDB answers `GROUP BY time(1m)` on the first 1 million of the same readings.

Run: `.venv/bin/python -m bench.aggregate` (needs the `bench` extra: pandas, polars, duckdb).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: The working directory of the engines' processes, so that `-m bench.aggregate` imports.
ROOT = Path(__file__).resolve().parents[1]

N = 10_000_000
SERIES = 3000
DAY_NS = 86_400 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000
T0 = 1_764_000_000_000_000_000  # a minute boundary
REPEATS = 3


def make_data(n: int, series: int, seed: int = 7) -> tuple[Any, Any, Any]:
    """n readings of `series` series over one day, sorted by (series, time) as a scan returns."""
    rng = np.random.default_rng(seed)
    sid = np.sort(rng.integers(0, series, n)).astype(np.int32)
    offsets = rng.integers(0, DAY_NS, n)
    # Sort times within each series: one lexsort of (offset, series).
    order = np.lexsort((offsets, sid))
    ts = T0 + offsets[order]
    value = np.round(rng.normal(40.0, 12.0, n), 2)
    return ts.astype(np.int64), sid, value


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- engines: each returns a function that runs the aggregation once --------------------------


def core_engine(ts: Any, sid: Any, value: Any, p95: bool) -> Callable[[], object]:
    from core.stats import Workspace, aggregate
    from core.windows import fixed_edges

    edges = fixed_edges(T0, T0 + DAY_NS, MINUTE_NS)
    workspace = Workspace()
    statistics = ("count",) if p95 else ("count", "mean", "min", "max")
    quantiles = (0.95,) if p95 else ()

    def run() -> object:
        table = aggregate(
            ts,
            sid,
            value,
            group=sid,
            n_groups=SERIES,
            edges_ns=edges,
            statistics=statistics,
            quantiles=quantiles,
            unique=True,
            workspace=workspace,
        )
        if p95:
            return table.quantiles[0.95]
        return table.mean

    return run


def pandas_engine(ts: Any, sid: Any, value: Any, p95: bool) -> Callable[[], object]:
    import pandas as pd

    def run() -> object:
        frame = pd.DataFrame({"series": sid, "minute": (ts - T0) // MINUTE_NS, "v": value})
        grouped = frame.groupby(["series", "minute"], sort=False)["v"]
        if p95:
            return grouped.agg(["count"]).join(grouped.quantile(0.95).rename("p95"))
        return grouped.agg(["count", "mean", "min", "max"])

    return run


def polars_engine(ts: Any, sid: Any, value: Any, p95: bool) -> Callable[[], object]:
    import polars as pl

    def run() -> object:
        frame = pl.DataFrame({"series": sid, "ts": ts, "v": value})
        frame = frame.with_columns(((pl.col("ts") - T0) // MINUTE_NS).alias("minute"))
        aggs = [pl.len().alias("count")]
        if p95:
            aggs.append(pl.col("v").quantile(0.95, interpolation="linear").alias("p95"))
        else:
            aggs += [
                pl.col("v").mean(),
                pl.col("v").min().alias("min"),
                pl.col("v").max().alias("max"),
            ]
        return frame.group_by(["series", "minute"]).agg(aggs)

    return run


def duckdb_engine(threads: int) -> Callable[[Any, Any, Any, bool], Callable[[], object]]:
    def make(ts: Any, sid: Any, value: Any, p95: bool) -> Callable[[], object]:
        import duckdb
        import pyarrow as pa

        con = duckdb.connect()
        con.execute(f"SET threads TO {threads}")
        table = pa.table({"series": sid, "ts": ts, "v": value})
        con.register("readings", table)
        stat = "quantile_cont(v, 0.95)" if p95 else "avg(v), min(v), max(v)"
        sql = (
            f"SELECT series, (ts - {T0}) // {MINUTE_NS} AS minute, count(*), {stat} "
            "FROM readings GROUP BY ALL"
        )

        def run() -> object:
            return con.execute(sql).fetch_arrow_table()

        return run

    return make


ENGINES: dict[str, Callable[[Any, Any, Any, bool], Callable[[], object]]] = {
    "core (numpy)": core_engine,
    "pandas groupby": pandas_engine,
    "polars": polars_engine,
    "duckdb 1 thread": duckdb_engine(1),
    "duckdb 2 threads": duckdb_engine(2),
}


def child(engine: str, p95: bool, n: int) -> None:
    """Run one engine in this process and print its figures as JSON."""
    if engine.startswith("polars"):
        os.environ.setdefault("POLARS_MAX_THREADS", "1")
    ts, sid, value = make_data(n, SERIES)
    input_mb = (ts.nbytes + sid.nbytes + value.nbytes) / 2**20
    before = _maxrss_mb()
    run = ENGINES[engine](ts, sid, value, p95)
    run()
    best = min(_timed(run) for _ in range(REPEATS))
    peak = _maxrss_mb() - before
    print(json.dumps({"engine": engine, "seconds": best, "input_mb": input_mb, "peak_mb": peak}))


def _timed(run: Callable[[], object]) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


# -- InfluxDB -----------------------------------------------------------------------------------


def influx(n: int) -> dict[str, float]:
    """InfluxDB's own GROUP BY time(1m) on the first n readings of the same data."""
    from localservices import Influxd, free_port

    ts, sid, value = make_data(N, SERIES)
    keep = np.argsort(ts, kind="stable")[:n]  # the first n readings in time, all series
    ts, sid, value = ts[keep], sid[keep], value[keep]
    with tempfile.TemporaryDirectory() as tmp:
        server = Influxd(free_port(), Path(tmp))
        server.start()
        try:
            _query(server.url, 'CREATE DATABASE "bench"')
            lines = [
                f"m,series={s} v={v!r} {t}"
                for s, v, t in zip(sid.tolist(), value.tolist(), ts.tolist(), strict=True)
            ]
            for lo in range(0, len(lines), 50_000):
                body = "\n".join(lines[lo : lo + 50_000]).encode()
                request = urllib.request.Request(
                    f"{server.url}/write?db=bench&precision=ns", data=body
                )
                urllib.request.urlopen(request, timeout=300).read()
            out = {}
            for label, stat in (
                ("count/mean/min/max", "count(v), mean(v), min(v), max(v)"),
                ("p95", "count(v), percentile(v, 95)"),
            ):
                q = (
                    f"SELECT {stat} FROM m WHERE time >= {T0} AND time < {T0 + DAY_NS} "
                    'GROUP BY time(1m), "series"'
                )
                _query(server.url, q, "bench")  # warm-up

                # a def, not `lambda q=q:`, whose type mypy cannot infer (python/mypy#15459)
                def query(q: str = q) -> bytes:
                    return _query(server.url, q, "bench")

                out[label] = min(_timed(query) for _ in range(REPEATS))
            return out
        finally:
            server.stop()


def _query(url: str, q: str, db: str | None = None) -> bytes:
    fields = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
    request = urllib.request.Request(
        f"{url}/query",
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Accept": "application/csv"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return bytes(response.read())


# -- driver -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--p95", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--readings", type=int, default=N)
    parser.add_argument("--influx-readings", type=int, default=1_000_000)
    parser.add_argument("--skip-influx", action="store_true")
    parser.add_argument("--only-influx", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.p95, args.readings)
        return
    if args.only_influx:
        report_influx(args.influx_readings)
        return
    print(
        f"{args.readings:,} readings, {SERIES:,} series, 24 h, 1-minute windows "
        f"({SERIES * 1440:,} cells); best of {REPEATS} after a warm-up; one process each"
    )
    for p95 in (False, True):
        label = "count, mean, min, max + exact p95" if p95 else "count, mean, min, max"
        print(f"\n{label}")
        print(f"{'engine':<20}{'seconds':>9}{'readings/s':>14}{'peak MB':>9}{'x input':>9}")
        results = {}
        for engine in ENGINES:
            command = [
                sys.executable,
                "-m",
                "bench.aggregate",
                "--child",
                engine,
                "--readings",
                str(args.readings),
                *(["--p95"] if p95 else []),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            results[engine] = figures
            rate = args.readings / figures["seconds"]
            print(
                f"{engine:<20}{figures['seconds']:>9.3f}{rate / 1e6:>11.1f} M/s"
                f"{figures['peak_mb']:>9.0f}{figures['peak_mb'] / figures['input_mb']:>9.2f}",
                flush=True,
            )
        core = args.readings / results["core (numpy)"]["seconds"]
        duck1 = args.readings / results["duckdb 1 thread"]["seconds"]
        duck2 = args.readings / results["duckdb 2 threads"]["seconds"]
        print(
            f"core / duckdb (1 thread): {core / duck1:.2f}x; core / duckdb (2 threads): "
            f"{core / duck2:.2f}x"
        )
    if not args.skip_influx:
        report_influx(args.influx_readings)


def report_influx(n: int) -> None:
    """Run and print the InfluxDB part."""
    seconds = influx(n)
    print(f"\nInfluxDB 1.6.7 GROUP BY time(1m), series on {n:,} readings:")
    for label, s in seconds.items():
        print(f"{label:<20}{s:>9.3f}{n / s / 1e6:>11.2f} M/s")


if __name__ == "__main__":
    main()

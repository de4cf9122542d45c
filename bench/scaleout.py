"""bench/scaleout: ingest's throughput with 1, 2 and 3 workers on one shared subscription.

Same preloading as bench/ingest (whose helpers it uses): each worker's persistent session is
created first, subscribed to `$share/<group>/...` when there is more than one worker, and the
whole stream is published into the broker's queues while the workers are away. The broker
assigns each message to one session, connected or not, so a worker that is still starting holds
back its share: the clock therefore starts only when **every** worker is connected, and the
readings already in InfluxDB at that moment are subtracted. It stops when InfluxDB answers
`count()` with every reading. Two streams: single-reading plain JSON messages, and 50-reading
SenML packs.

On one machine the workers share its cores with Mosquitto and influxd, so this measures what
another worker adds on the same host; on separate hosts each worker brings its own cores.

Run: `.venv/bin/python -m bench.scaleout` (defaults below).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.ingest import (
    ROUTES,
    Result,
    _influx_count,
    _influx_query,
    _rss_mb,
    make_session,
    pack_stream,
    publish_all,
    single_stream,
)
from tests.services import Influxd, Mosquitto, free_port


def scaleout_variant(
    name: str,
    port: int,
    influx_url: str,
    messages: list[tuple[str, bytes]],
    readings: int,
    field: str,
    workers: int,
    workdir: Path,
) -> Result:
    """`pilots ingest` x `workers` on one shared subscription, timed once all are connected."""
    database = f"scale_{uuid.uuid4().hex[:6]}"
    group = f"bench{uuid.uuid4().hex[:4]}"
    ids = [f"bench-scale-{uuid.uuid4().hex[:6]}" for _ in range(workers)]
    for client_id in ids:
        make_session(port, client_id, [f"$share/{group}/{f}" for f in ROUTES], v5=False)
    publish_all(port, messages)
    _influx_query(influx_url, f'CREATE DATABASE "{database}"')
    procs, logs = [], []
    for i, client_id in enumerate(ids):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")},
            "PILOTS_MQTT_URL": f"mqtt://127.0.0.1:{port}",
            "PILOTS_MQTT_CLIENT_ID": client_id,
            "PILOTS_MQTT_SHARED_GROUP": group,
            "PILOTS_INFLUX_URL": influx_url,
            "PILOTS_INFLUX_DATABASE": database,
            "PILOTS_DATA_DIR": str(workdir / f"{database}-{i}"),
            "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        }
        log = workdir / f"{database}-{i}.log"
        logs.append(log)
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pilots", "ingest"],
                    env=env,
                    cwd=workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    while not all("connected to" in log.read_text(errors="replace") for log in logs):
        time.sleep(0.005)
    began = time.perf_counter()
    before = _influx_count(influx_url, database, field)
    peak = 0.0
    while _influx_count(influx_url, database, field) < readings:
        peak = max(peak, *(_rss_mb(p.pid) for p in procs))
        if time.perf_counter() - began > 900:
            raise RuntimeError(f"{name}: not every reading arrived")
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    share = (readings - before) / readings
    return Result(name, round(len(messages) * share), readings - before, elapsed, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="single-reading messages")
    parser.add_argument("--packs", type=int, default=20_000, help="50-reading SenML packs")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    broker = Mosquitto(free_port(), workdir / "mosquitto", max_queued_messages=10_000_000)
    influxd = Influxd(free_port(), workdir / "influxd")
    broker.workdir.mkdir()
    influxd.workdir.mkdir()
    broker.start()
    influxd.start()
    try:
        start_ms = int(time.time() * 1000) - 86_400_000
        streams = [
            ("single", single_stream(args.messages, start_ms), 1, "pm25"),
            ("senml-50", pack_stream(args.packs, start_ms), 50, "no2"),
        ]
        publish_rate = publish_all(broker.port, streams[0][1][:20_000])
        results: list[tuple[int, str, Result]] = []
        for label, stream, per, field in streams:
            for workers in counts:
                name = f"ingest-{workers}w {label}"
                result = scaleout_variant(
                    name,
                    broker.port,
                    influxd.url,
                    stream,
                    len(stream) * per,
                    field,
                    workers,
                    workdir,
                )
                print(f"  {name}: {result.readings_per_s:,.0f} readings/s", flush=True)
                results.append((workers, label, result))
        report(results, publish_rate)
    finally:
        broker.stop()
        influxd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(results: list[tuple[int, str, Result]], publish_rate: float) -> None:
    print(f"\npublisher (preload, not timed): {publish_rate:,.0f} msg/s")
    print(
        f"{'stream':<10}{'workers':>8}{'messages':>10}{'readings':>11}{'seconds':>9}"
        f"{'msg/s':>10}{'readings/s':>12}{'vs 1 worker':>13}{'peak RSS/worker':>17}"
    )
    base: dict[str, float] = {}
    for workers, label, r in results:
        base.setdefault(label, r.readings_per_s)
        rss = f"{r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else ""
        print(
            f"{label:<10}{workers:>8}{r.messages:>10,}{r.readings:>11,}{r.seconds:>9.2f}"
            f"{r.messages_per_s:>10,.0f}{r.readings_per_s:>12,.0f}"
            f"{r.readings_per_s / base[label]:>12.2f}x{rss:>17}"
        )


if __name__ == "__main__":
    main()

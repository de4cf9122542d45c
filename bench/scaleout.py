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
import shutil
import tempfile
import time
from pathlib import Path

from bench.ingest import (
    Result,
    ingest_variant,
    pack_stream,
    publish_all,
    services,
    single_stream,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="single-reading messages")
    parser.add_argument("--packs", type=int, default=20_000, help="50-reading SenML packs")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    try:
        with services(workdir) as (broker, influxd):
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
                    result = ingest_variant(
                        name,
                        broker.port,
                        influxd.url,
                        stream,
                        len(stream) * per,
                        field,
                        workers,
                        workdir,
                        all_connected=True,
                    )
                    print(f"  {name}: {result.readings_per_s:,.0f} readings/s", flush=True)
                    results.append((workers, label, result))
            report(results, publish_rate)
    finally:
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

"""bench/abuse, ingest's part: good devices' throughput while one device floods junk.

The same good stream (single-reading plain JSON messages of the five San Nicolás air-quality
devices) is ingested by `pilots ingest` four times in one run: alone (the baseline), and
interleaved with junk from one other device: one junk message per ten good ones, small (cut-off
JSON and readings far out of range, half each) or with one in fifty a 200 kB payload of bytes;
and one small junk message per good one. Timing is bench/ingest's: the whole stream is queued in
the broker first, then the clock runs from the worker's connection until InfluxDB holds every
good reading. Target (issue 11): good readings/s during a flood at least 0.8x of it without.

Run: `.venv/bin/python -m bench.abuse_ingest`, or as part of `make bench-abuse`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from bench.ingest import Result, ingest_variant, services, single_stream

FLOODER = "pilots/santa-fe/sf-rlv-01/up"


def junk(n: int, start_ms: int, *, large: bool) -> list[tuple[str, bytes]]:
    """n refused messages from one device: malformed, out of range, and (`large`) 1 in 50 huge."""
    out = []
    for i in range(n):
        if large and i % 50 == 0:
            payload = bytes([i % 250 + 1]) * 200_000
        elif i % 2:
            payload = b'{"ts": 1, "readings": {"level": '
        else:
            payload = orjson.dumps({"ts": start_ms + i, "readings": {"level": 1e9}})
        out.append((FLOODER, payload))
    return out


def interleave(
    good: list[tuple[str, bytes]], bad: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """Spread `bad` evenly through `good`."""
    if not bad:
        return list(good)
    step = len(good) / len(bad)
    out: list[tuple[str, bytes]] = []
    j = 0
    for i, message in enumerate(good):
        out.append(message)
        while j < len(bad) and j * step <= i:
            out.append(bad[j])
            j += 1
    out.extend(bad[j:])
    return out


def run(messages: int, workdir: Path) -> list[tuple[str, Result, int]]:
    """The baseline and the three floods, on one broker and one InfluxDB."""
    with services(workdir) as (broker, influxd):
        start_ms = int(time.time() * 1000) - 86_400_000
        good = single_stream(messages, start_ms)
        out = []
        for name, per_good, large in (
            ("no flood", 0.0, False),
            ("flood 1:10, small", 0.1, False),
            ("flood 1:10, 1 in 50 of 200 kB", 0.1, True),
            ("flood 1:1, small", 1.0, False),
        ):
            bad = junk(int(messages * per_good), start_ms, large=large)
            stream = interleave(good, bad)
            result = ingest_variant(
                f"abuse {name}", broker.port, influxd.url, stream, messages, "pm25", 1, workdir
            )
            out.append((name, result, len(bad)))
            print(f"  {name}: {result.readings_per_s:,.0f} good readings/s", flush=True)
        return out


def report(results: list[tuple[str, Result, int]]) -> None:
    """The table for docs/BENCHMARKS.md."""
    base = results[0][1].readings_per_s
    print("\n| run | junk messages | good readings | seconds | good readings/s | vs no flood |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, result, bad in results:
        print(
            f"| {name} | {bad:,} | {result.readings:,} | {result.seconds:.2f} | "
            f"{result.readings_per_s:,.0f} | {result.readings_per_s / base:.2f}x |"
        )


def main() -> None:
    """Run and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="good messages")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    try:
        report(run(args.messages, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

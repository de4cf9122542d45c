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

With `--absent`, instead measures how long readings wait when one of three workers is gone
(`absent_run`): three workers take a steady stream (`--rate` single-reading messages/s, each
carrying its publish time as its device time), one is killed (SIGKILL) after a warm-up and
started again `--absent-minutes` later. Twice in the same run: with adoption off
(`PILOTS_INGEST_ADOPT_AFTER_S=0`, the behaviour before `ingest.adoption`) and with the default.
Each reading's delay is the time a poll of InfluxDB first returned it minus its publish time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import (
    SINGLE_TOPIC,
    Result,
    ingest_variant,
    pack_stream,
    publish_all,
    services,
    single_stream,
)
from localservices import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="single-reading messages")
    parser.add_argument("--packs", type=int, default=20_000, help="50-reading SenML packs")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure")
    parser.add_argument("--absent", action="store_true", help="one of three workers stopped")
    parser.add_argument("--absent-minutes", type=float, default=5.0, help="with --absent")
    parser.add_argument("--rate", type=float, default=100.0, help="with --absent: messages/s")
    parser.add_argument("--poll-s", type=float, default=0.5, help="with --absent: InfluxDB polls")
    args = parser.parse_args()
    if args.absent:
        absent_main(args.absent_minutes * 60, args.rate, args.poll_s)
        return
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


# -- one of three workers absent (--absent) ---------------------------------------------------

#: Publishing before the worker is stopped, and after it is started again.
WARMUP_S = 20.0
AFTER_S = 30.0
#: How long to wait, once publishing ends, for every reading to be in InfluxDB.
SETTLE_S = 180.0
#: A reading that took longer than this waited for a worker (the live path takes ~1 s).
HELD_S = 5.0
#: 'after': readings published while the worker is absent should wait at most this long
#: (adoption after 30 s, plus the drain and the poll); longer is reported as a failure.
AFTER_BOUND_S = 60.0
VICTIM = 1  # of workers 0, 1, 2: worker 2 is next in the ring of client ids, and adopts it
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


@dataclass
class AbsentResult:
    """One variant: what was published when, when each reading was first seen, and checks."""

    name: str
    adopt: str
    #: (device time in ms, publish wall time in s), in publishing order
    published: list[tuple[int, float]]
    #: device time in ms -> wall time (s) of the poll that first returned it
    seen: dict[int, float]
    killed_at: float
    restarted_at: float
    stored_rows: int = 0
    stored_distinct: int = 0
    unexpected: int = 0
    unacked: int = 0
    query_s_max: float = 0.0
    adoptions: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(1 for ts, _ in self.published if ts not in self.seen)

    def delays(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Delays (s) of the readings published in [since, until) and seen, sorted."""
        return sorted(
            self.seen[ts] - at
            for ts, at in self.published
            if since <= at < until and ts in self.seen
        )


def _readings_since(url: str, database: str, since_ms: int) -> list[int]:
    """Device times (ms) of the pm25 readings stored at or after `since_ms`."""
    q = f'SELECT "pm25" FROM "readings" WHERE time >= {since_ms}ms'
    fields = urllib.parse.urlencode({"q": q, "db": database, "epoch": "ms"}).encode()
    request = urllib.request.Request(f"{url}/query", data=fields)
    with urllib.request.urlopen(request, timeout=30) as response:
        body = orjson.loads(response.read())
    series = body["results"][0].get("series", [])
    return [int(row[0]) for s in series for row in s["values"]]


class Poller:
    """Polls InfluxDB every `every_s` for readings not seen yet, noting when each first shows.

    `order` is the publisher's list of device times, appended to as it publishes (in increasing
    order); each poll asks for everything from the oldest one not seen yet.
    """

    def __init__(self, url: str, database: str, order: list[int], every_s: float) -> None:
        self.url = url
        self.database = database
        self.order = order
        self.every_s = every_s
        self.seen: dict[int, float] = {}
        self.caught_up = 0  # order[:caught_up] are all seen
        self.query_s_max = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def all_seen(self) -> bool:
        return self.caught_up >= len(self.order)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            due += self.every_s
            self._poll()
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _poll(self) -> None:
        order = self.order
        while self.caught_up < len(order) and order[self.caught_up] in self.seen:
            self.caught_up += 1
        if self.caught_up >= len(order):
            return
        began = time.perf_counter()
        try:
            found = _readings_since(self.url, self.database, order[self.caught_up])
        except (OSError, urllib.error.URLError, KeyError, IndexError, orjson.JSONDecodeError):
            return
        now = time.time()
        self.query_s_max = max(self.query_s_max, time.perf_counter() - began)
        for ts in found:
            self.seen.setdefault(ts, now)


class Publisher:
    """Publishes single-reading messages at a steady rate, each reading's device time its
    publish wall time in ms (made strictly increasing, so that every reading is distinct)."""

    def __init__(self, port: int, rate: float) -> None:
        self.rate = rate
        self.order: list[int] = []
        self.published: list[tuple[int, float]] = []
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self._last_ms = 0
        self._due = time.perf_counter()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-absent-pub-{uuid.uuid4().hex[:6]}"
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def publish_for(self, seconds: float) -> None:
        """Go on publishing for `seconds` (keeping to the rate across calls)."""
        self._due = max(self._due, time.perf_counter() - 1 / self.rate)
        end = time.perf_counter() + seconds
        while self._due < end:
            wait = self._due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            self._publish_one()
            self._due += 1 / self.rate

    def _publish_one(self) -> None:
        at = time.time()
        ts = max(int(at * 1000), self._last_ms + 1)
        self._last_ms = ts
        n = len(self.order)
        payload = orjson.dumps({"ts": ts, "readings": {"pm25": float(n % 997)}})
        self.published.append((ts, at))
        self.infos.append(self._client.publish(SINGLE_TOPIC.format(n=1 + n % 5), payload, qos=1))
        self.order.append(ts)

    def close(self) -> int:
        """Wait for the broker's acknowledgements; returns how many never came."""
        for info in self.infos:
            info.wait_for_publish(60)
        self._client.disconnect()
        self._client.loop_stop()
        return sum(1 for info in self.infos if not info.is_published())


def _start_worker(env: dict[str, str], workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pilots", "ingest"],
            env={**base, **env},
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for_logs(logs: list[Path], text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(text in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not in every log of {logs} after {timeout_s} s")
        time.sleep(0.05)


def _forget_sessions(port: int, client_ids: list[str]) -> None:
    """Drop the workers' sessions (a clean-session connection), so that a later variant's
    stream is not also queued for them."""
    for client_id in client_ids:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        connected = threading.Event()
        client.on_connect = lambda *a, done=connected: done.set()
        client.connect("127.0.0.1", port)
        client.loop_start()
        connected.wait(10)
        client.disconnect()
        client.loop_stop()


def _adoption_lines(logs: list[Path], killed_at: float) -> list[str]:
    """The workers' log lines about adoptions, timed from the kill."""
    out = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if (
                "adopting its session" in line
                or "adopted the session" in line
                or ("adoption of" in line and "ended" in line)
            ):
                at = datetime.strptime(line[:23], LOG_TIME).timestamp()
                message = line[23:].split(": ", 1)[-1]
                out.append(f"+{at - killed_at:6.1f} s {log.stem}: {message}")
    return sorted(out)


def _check_stored(influx_url: str, database: str, result: AbsentResult) -> None:
    """Every reading stored once: the store's rows against what was published."""
    first = result.published[0][0]
    stored = _readings_since(influx_url, database, first)
    sent = {ts for ts, _ in result.published}
    result.stored_rows = len(stored)
    result.stored_distinct = len(set(stored))
    result.unexpected = len(set(stored) - sent)


def absent_variant(
    name: str,
    adopt_after_s: str | None,
    port: int,
    influx_url: str,
    workdir: Path,
    absent_s: float,
    rate: float,
    poll_s: float,
) -> AbsentResult:
    """Three workers, one killed for `absent_s` while `rate` messages/s are published."""
    database = f"absent_{name}_{uuid.uuid4().hex[:6]}"
    create = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    with urllib.request.urlopen(f"{influx_url}/query", data=create, timeout=30) as response:
        response.read()
    group = f"absent{uuid.uuid4().hex[:6]}"
    envs = [
        {
            "PILOTS_MQTT_URL": f"mqtt://127.0.0.1:{port}",
            "PILOTS_MQTT_SHARED_GROUP": group,
            "PILOTS_MQTT_CLIENT_ID": f"bench-absent-{group}-{n}",
            "PILOTS_INFLUX_URL": influx_url,
            "PILOTS_INFLUX_DATABASE": database,
            "PILOTS_DATA_DIR": str(workdir / f"{name}-{n}"),
            "PILOTS_INGEST_HTTP_PORT": str(free_port()),
            **({"PILOTS_INGEST_ADOPT_AFTER_S": adopt_after_s} if adopt_after_s else {}),
        }
        for n in range(3)
    ]
    logs = [workdir / f"{name}-{n}.log" for n in range(3)]
    procs = [_start_worker(env, workdir, log) for env, log in zip(envs, logs, strict=True)]
    _wait_for_logs(logs, "ingest ready", 60)
    publisher = Publisher(port, rate)
    poller = Poller(influx_url, database, publisher.order, poll_s).start()
    publisher.publish_for(WARMUP_S)
    killed_at = time.time()
    procs[VICTIM].send_signal(signal.SIGKILL)
    procs[VICTIM].wait(30)
    print(f"  {name}: worker {VICTIM} killed; absent for {absent_s:.0f} s", flush=True)
    publisher.publish_for(absent_s)
    restarted_at = time.time()
    procs[VICTIM] = _start_worker(envs[VICTIM], workdir, logs[VICTIM])
    print(f"  {name}: worker {VICTIM} started again", flush=True)
    publisher.publish_for(AFTER_S)
    unacked = publisher.close()
    settle = time.monotonic() + SETTLE_S
    while not poller.all_seen() and time.monotonic() < settle:
        time.sleep(0.2)
    time.sleep(2 * poll_s)  # a last look, for anything stored twice or unexpected
    poller.stop()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(60)
    _forget_sessions(port, [env["PILOTS_MQTT_CLIENT_ID"] for env in envs])
    result = AbsentResult(
        name,
        "off" if adopt_after_s == "0" else "30 s (default)",
        publisher.published,
        poller.seen,
        killed_at,
        restarted_at,
        unacked=unacked,
        query_s_max=poller.query_s_max,
        adoptions=_adoption_lines(logs, killed_at),
    )
    _check_stored(influx_url, database, result)
    return result


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted `values`."""
    return values[min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))]


def _row(variant: str, adopt: str, label: str, delays: list[float], of: int) -> str:
    if not delays:
        return f"{variant:<8}{adopt:<16}{label:<26}{0:>8}"
    share = f"{100 * len(delays) / of:.0f} %"
    stats = "".join(f"{_quantile(delays, q):>8.1f}" for q in (0.5, 0.9, 0.99)) + (
        f"{delays[-1]:>8.1f}"
    )
    over = "".join(f"{sum(1 for d in delays if d > s):>9,}" for s in (10, 60))
    return f"{variant:<8}{adopt:<16}{label:<26}{len(delays):>8,}{share:>7}{stats}{over}"


def absent_report(results: list[AbsentResult], absent_s: float, rate: float, poll_s: float) -> None:
    print(
        f"\n1 of 3 workers killed (SIGKILL) after {WARMUP_S:.0f} s, started again "
        f"{absent_s:.0f} s later, {AFTER_S:.0f} s more; {rate:,.0f} single-reading msg/s"
    )
    print(
        f"delay = first InfluxDB poll (every {poll_s} s) that returned the reading - its "
        f"publish time; held = delay > {HELD_S:.0f} s"
    )
    print(
        f"{'variant':<8}{'adoption':<16}{'readings':<26}{'n':>8}{'share':>7}{'p50 s':>8}"
        f"{'p90 s':>8}{'p99 s':>8}{'max s':>8}{'> 10 s':>9}{'> 60 s':>9}"
    )
    for r in results:
        window = r.delays(r.killed_at, r.restarted_at)
        held = [d for d in window if d > HELD_S]
        every = r.delays()
        print(_row(r.name, r.adopt, "published while absent", window, len(window)))
        print(_row(r.name, r.adopt, "  of which held (> 5 s)", held, len(window)))
        print(_row(r.name, r.adopt, "whole run", every, len(every)))
    for r in results:
        print(
            f"\n{r.name}: sent {len(r.published):,} (unacknowledged by the broker: {r.unacked}); "
            f"stored {r.stored_rows:,} rows, {r.stored_distinct:,} distinct device times; "
            f"never seen {r.missing}, unexpected {r.unexpected}; slowest poll "
            f"{r.query_s_max:.2f} s"
        )
        for line in r.adoptions or ["no adoption"]:
            print(f"  {line}")


def _problems(results: list[AbsentResult]) -> list[str]:
    """What the run shows wrong with ingest (nothing, normally)."""
    out = []
    for r in results:
        sent = len(r.published)
        if r.missing or r.unexpected or r.unacked or r.stored_rows != sent:
            out.append(f"{r.name}: {sent:,} sent, {r.stored_rows:,} stored, {r.missing} missing")
        window = r.delays(r.killed_at, r.restarted_at)
        if r.adopt != "off" and window and window[-1] > AFTER_BOUND_S:
            out.append(f"{r.name}: a reading published while absent waited {window[-1]:.0f} s")
        if r.adopt != "off" and not any("adopted the session" in a for a in r.adoptions):
            out.append(f"{r.name}: no adoption drained the absent worker's session")
    return out


def absent_main(absent_s: float, rate: float, poll_s: float) -> None:
    """Both variants in one run, then the table; the workdir is kept if anything is wrong."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-absent-"))
    keep = True
    try:
        with services(workdir) as (broker, influxd):
            results = [
                absent_variant(
                    name, adopt, broker.port, influxd.url, workdir, absent_s, rate, poll_s
                )
                for name, adopt in (("before", "0"), ("after", None))
            ]
        absent_report(results, absent_s, rate, poll_s)
        problems = _problems(results)
        for problem in problems:
            print(f"PROBLEM: {problem}")
        keep = bool(problems)
    finally:
        if keep:
            print(f"workdir kept for inspection: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

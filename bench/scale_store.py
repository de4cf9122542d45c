"""bench/scale_store: InfluxDB's disk bytes per reading after a week of simulated fleet.

docs/SCALING.md leaves `b`, the bytes a stored value takes, unmeasured. This measures it on the
real path: `pilots simulate --mode backfill` (the realistic fault profile, every payload format
the fleet's devices have) publishes to Mosquitto, `pilots ingest` decodes, validates and writes
what it would write in production (readings, uplinks, repeats, the quarantine, the 1-minute,
hourly and daily rollups, the rollup watermark, whatever else ingest keeps) into influxd 1.x.

Two fleets, each in its own database of one influxd, one after the other:
  pilots  the registry's 21 devices at their registered intervals (300 to 900 s)
  bench   bench/api's fleet: the 21 devices x6, 126 devices every 120 s

A week ending at the last whole hour is published a day at a time. After 1, 2, 4 and 7 days:
wait until ingest has received every message published, emptied its spool and brought the
rollups up to date; let influxd snapshot its cache and compact every shard fully (it runs with
its cold durations shortened to 2 and 3 s through its `INFLUXDB_DATA_*` variables, so a full
compaction follows within seconds instead of the default 4 hours); then

  readings    `SELECT count(*) FROM readings`, summed over the fields: every stored value
              (sensor values, battery voltage), the `count` of docs/SCALING.md
  data, wal   `du -sb` of `data/<db>` and `wal/<db>` (apparent bytes, as docs/SCALING.md says)
  allocated   `du -s -B1` of the same: the series file (`data/<db>/_series`, one per database)
              preallocates 32 MiB of sparse segments that `du -sb` counts and the disk does not
  tsm         the TSM files alone: the data proper, which grows with the readings

and bytes per reading of each. After the week, what each kind of point takes: measurements are
dropped one group after the other (rollups_1m; rollups_1h and rollups_1d; uplinks and
repeats; every other but readings, named in the output), each time compacting again, and the
TSM bytes each drop freed is that group's share; what remains is the readings alone.

Plot and table: docs/scaling/store-bytes.svg (`bench/plot.py`).

Run: `.venv/bin/python -m bench.scale_store` (about 5 minutes; `--quick`: 1 and 2 days, to a
temporary directory). Needs Debian's mosquitto and influxdb.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.api import DAY_NS, HOUR_NS, ROOT, grown_registry, iso
from bench.plot import OUT, Curve, Series, write
from localservices import Influxd, Mosquitto, free_port

#: influxd's settings for a prompt full compaction (its defaults: 10 minutes and 4 hours).
COMPACT_NOW = {
    "INFLUXDB_DATA_CACHE_SNAPSHOT_WRITE_COLD_DURATION": "2s",
    "INFLUXDB_DATA_COMPACT_FULL_WRITE_COLD_DURATION": "3s",
}
#: Groups of measurements dropped in turn after the week, to size each one's share.
DROPS = (
    ("rollups 1m", ("rollups_1m",)),
    ("rollups 1h+1d", ("rollups_1h", "rollups_1d")),
    ("uplinks+repeats", ("uplinks", "repeats")),
)
MB = 1_000_000


# --- influxd --------------------------------------------------------------------------------


def query(url: str, q: str, database: str | None = None) -> list[dict[str, object]]:
    """An InfluxQL statement's series (an error raises)."""
    fields = {"q": q, **({"db": database} if database else {})}
    body = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"{url}/query", data=body)
    with urllib.request.urlopen(request, timeout=300) as response:
        result = orjson.loads(response.read())["results"][0]
    if "error" in result:
        raise RuntimeError(f"{q}: {result['error']}")
    series: list[dict[str, object]] = result.get("series", [])
    return series


def stored_values(url: str, database: str, measurement: str = "readings") -> int:
    """`SELECT count(*)`, summed over the measurement's fields."""
    total = 0
    for s in query(url, f'SELECT count(*) FROM "{measurement}"', database):
        values = s["values"]
        assert isinstance(values, list)
        total += sum(v for v in values[0][1:] if isinstance(v, int))
    return total


def measurements(url: str, database: str) -> list[str]:
    out = []
    for s in query(url, "SHOW MEASUREMENTS", database):
        values = s["values"]
        assert isinstance(values, list)
        out += [str(v[0]) for v in values]
    return out


def du(path: Path, *, apparent: bool = True) -> int:
    """`du -sb` (apparent bytes) or `du -s -B1` (allocated) of a path; 0 when absent."""
    if not path.exists():
        return 0
    flags = ["-sb"] if apparent else ["-s", "-B1"]
    out = subprocess.run(["du", *flags, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def files(path: Path, suffix: str) -> list[Path]:
    return [p for p in path.rglob(f"*{suffix}") if p.is_file()] if path.exists() else []


def settled(influxd: Influxd, database: str) -> bool:
    """Whether every shard of the database is one fully compacted TSM file and its WAL empty."""
    data = influxd.workdir / "data" / database
    wal = influxd.workdir / "wal" / database
    if any(p.stat().st_size for p in files(wal, ".wal")):
        return False
    if files(data, ".tmp") or files(data, ".tombstone"):
        return False
    shards = [p for p in data.glob("*/*") if p.is_dir()]
    return all(len(list(shard.glob("*.tsm"))) <= 1 for shard in shards)


def wait_settled(influxd: Influxd, database: str, timeout_s: float = 300) -> float:
    """Seconds until the database is settled twice in a row, a second apart (at least the
    cold durations); raises after `timeout_s`."""
    began = time.monotonic()
    time.sleep(4)  # past the full compaction's cold duration
    streak = 0
    while time.monotonic() - began < timeout_s:
        streak = streak + 1 if settled(influxd, database) else 0
        if streak >= 2:
            return time.monotonic() - began
        time.sleep(1)
    raise RuntimeError(f"{database}: influxd did not compact within {timeout_s:.0f} s")


# --- ingest and the simulator ---------------------------------------------------------------


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any `PILOTS_*` variable, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")}, **extra}


@dataclass
class Ingest:
    """A `pilots ingest` process on one database, and what it has taken."""

    proc: subprocess.Popen[bytes]
    log: Path
    http_port: int
    data_dir: Path

    def metric(self, name: str) -> float:
        """A sample of its Prometheus metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def pending_rollups(self) -> int:
        """Minutes noted for the rollup maintainer and not yet rolled up."""
        path = self.data_dir / "rollups.sqlite"
        if not path.exists():
            return 0
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            (n,) = db.execute("SELECT COUNT(*) FROM touched").fetchone()
        return int(n)

    def wait_caught_up(self, published: int, timeout_s: float = 600) -> float:
        """Seconds until it received `published` messages, wrote them all and rolled them up."""
        began = time.monotonic()
        streak = 0
        while time.monotonic() - began < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingest exited:\n{self.log.read_text()[-3000:]}")
            done = (
                self.metric("pilots_ingest_messages_total") >= published
                and self.metric("pilots_ingest_spool_messages") == 0
                and self.pending_rollups() == 0
            )
            streak = streak + 1 if done else 0
            if streak >= 3:
                return time.monotonic() - began
            time.sleep(0.5)
        raise RuntimeError(f"ingest did not catch up in {timeout_s:.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_ingest(env: dict[str, str], work: Path, name: str) -> Ingest:
    """`pilots ingest`, returned once it is subscribed."""
    http_port = free_port()
    data_dir = work / f"{name}-var"
    log = work / f"{name}-ingest.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilots", "ingest"],
            env=clean_env(
                {
                    **env,
                    "PILOTS_MQTT_CLIENT_ID": f"scale-store-{name}",
                    "PILOTS_DATA_DIR": str(data_dir),
                    "PILOTS_INGEST_HTTP_PORT": str(http_port),
                }
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    ingest = Ingest(proc, log, http_port, data_dir)
    deadline = time.monotonic() + 60
    while "ready: subscribed" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            ingest.stop()
            raise RuntimeError(f"ingest did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return ingest


def simulate(env: dict[str, str], start_ns: int, end_ns: int, seed: int) -> int:
    """`pilots simulate` backfilling `[start_ns, end_ns)`; the messages it published."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pilots",
            "simulate",
            "--mode=backfill",
            f"--start={iso(start_ns)}",
            f"--end={iso(end_ns)}",
            f"--seed={seed}",
            "--faults=realistic",
        ],
        env=clean_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"published ([\d,]+) messages", out.stdout + out.stderr)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"simulate failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return int(match.group(1).replace(",", ""))


# --- the measurement ------------------------------------------------------------------------


@dataclass
class Disk:
    """One database's disk use at one moment."""

    readings: int
    data: int
    wal: int
    allocated: int
    tsm: int
    series_file: int

    @classmethod
    def of(cls, influxd: Influxd, database: str) -> Disk:
        data = influxd.workdir / "data" / database
        wal = influxd.workdir / "wal" / database
        return cls(
            readings=stored_values(influxd.url, database),
            data=du(data),
            wal=du(wal),
            allocated=du(data, apparent=False) + du(wal, apparent=False),
            tsm=sum(p.stat().st_size for p in files(data, ".tsm")),
            series_file=du(data / "_series"),
        )

    def per_reading(self, n: int) -> float:
        return n / self.readings if self.readings else float("nan")


@dataclass
class FleetRun:
    """A fleet's week: the disk at each checkpoint, then each measurement group's share."""

    name: str
    devices: int
    days: list[int] = field(default_factory=list)
    disks: list[Disk] = field(default_factory=list)
    published: list[int] = field(default_factory=list)  # messages, by each checkpoint
    messages: int = 0
    shares: list[tuple[str, int]] = field(default_factory=list)


HEADER = (
    f"{'fleet':<7} {'days':>4} {'messages':>9} {'readings':>10} {'data MB':>8} {'wal MB':>7}"
    f" {'alloc MB':>8} {'tsm MB':>7} {'B/rd du':>8} {'B/rd data':>9} {'B/rd alloc':>10}"
    f" {'B/rd tsm':>8}"
)


def row(run: FleetRun, i: int) -> str:
    days, disk, messages = run.days[i], run.disks[i], run.published[i]
    return (
        f"{run.name:<7} {days:>4} {messages:>9,} {disk.readings:>10,} {disk.data / MB:>8.2f}"
        f" {disk.wal / MB:>7.2f} {disk.allocated / MB:>8.2f} {disk.tsm / MB:>7.2f}"
        f" {disk.per_reading(disk.data + disk.wal):>8.1f} {disk.per_reading(disk.data):>9.1f}"
        f" {disk.per_reading(disk.allocated):>10.1f} {disk.per_reading(disk.tsm):>8.2f}"
    )


def run_fleet(
    name: str,
    registry: Path,
    mosquitto: Mosquitto,
    influxd: Influxd,
    work: Path,
    end_ns: int,
    checkpoints: list[int],
) -> FleetRun:
    """Publish the fleet's days, measuring at each checkpoint, then size each measurement."""
    from core.registry import load_registry

    database = f"store_{name}"
    env = {
        "PILOTS_MQTT_URL": mosquitto.url,
        "PILOTS_INFLUX_URL": influxd.url,
        "PILOTS_INFLUX_DATABASE": database,
        "PILOTS_REGISTRY": str(registry),
        "PILOTS_INFLUX_TIMEOUT_S": "120",
    }
    run = FleetRun(name, len(load_registry(registry).device_list))
    print(f"\n{name}: {run.devices} devices, {max(checkpoints)} days", flush=True)
    ingest = start_ingest(env, work, name)
    start_ns = end_ns - max(checkpoints) * DAY_NS
    done = 0
    try:
        for days in checkpoints:
            t = time.perf_counter()
            run.messages += simulate(env, start_ns + done * DAY_NS, start_ns + days * DAY_NS, 0)
            published_s = time.perf_counter() - t
            caught_s = ingest.wait_caught_up(run.messages)
            settle_s = wait_settled(influxd, database)
            done = days
            disk = Disk.of(influxd, database)
            run.days.append(days)
            run.disks.append(disk)
            run.published.append(run.messages)
            print(
                f"  day {days}: published in {published_s:.1f} s, ingest caught up "
                f"{caught_s:.1f} s later, compacted in {settle_s:.1f} s",
                flush=True,
            )
            print("  " + row(run, len(run.days) - 1), flush=True)
    finally:
        ingest.stop()
    run.shares = shares(influxd, database)
    return run


def shares(influxd: Influxd, database: str) -> list[tuple[str, int]]:
    """TSM bytes of each group of measurements: freed by dropping it and compacting again."""
    wait_settled(influxd, database)
    before = Disk.of(influxd, database).tsm
    out = []
    present = measurements(influxd.url, database)
    rest = tuple(m for m in present if m != "readings" and not any(m in g for _, g in DROPS))
    for label, group in (*DROPS, ("the rest but readings", rest)):
        names = [m for m in group if m in present]
        for m in names:
            query(influxd.url, f'DROP MEASUREMENT "{m}"', database)
        if names:
            wait_settled(influxd, database)
        after = Disk.of(influxd, database).tsm
        out.append((f"{label} ({', '.join(names) or 'none'})", before - after))
        before = after
    out.append(("readings", before))
    return out


# --- the run --------------------------------------------------------------------------------


@contextmanager
def services(work: Path) -> Iterator[tuple[Mosquitto, Influxd]]:
    """Mosquitto and an influxd that compacts a shard fully a few seconds after its last write."""
    mosquitto = Mosquitto(free_port(), work / "mosquitto", max_queued_messages=2_000_000)
    mosquitto.workdir.mkdir()
    influxd = Influxd(free_port(), work / "influxd")
    influxd.workdir.mkdir()
    saved = {k: os.environ.get(k) for k in COMPACT_NOW}
    os.environ.update(COMPACT_NOW)  # influxd.start passes this process's environment on
    try:
        influxd.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        mosquitto.start()
        try:
            yield mosquitto, influxd
        finally:
            mosquitto.stop()
    finally:
        influxd.stop()


def report(runs: list[FleetRun], out: Path, note: str) -> None:
    print("\nbytes per reading (B/rd): du = data + wal (du -sb), data = data/<db> alone, alloc =")
    print("allocated blocks (du -s -B1, data + wal), tsm = the TSM files alone")
    print(HEADER)
    for run in runs:
        for i in range(len(run.days)):
            print(row(run, i))
    for run in runs:
        last = run.disks[-1]
        total = sum(b for _, b in run.shares)
        print(f"\n{run.name}, after {run.days[-1]} days: TSM bytes by kind of point")
        for label, b in run.shares:
            print(
                f"  {label:<64} {b / MB:>8.2f} MB {100 * b / total:>5.1f} %"
                f" {b / last.readings:>7.2f} B/reading"
            )
        month = last.readings / run.days[-1] * 30 / run.devices
        print(
            f"  readings alone: {run.shares[-1][1] / last.readings:.2f} B/reading; all TSM "
            f"{last.tsm / last.readings:.2f} B/reading; {month:,.0f} readings per device per "
            f"30 days: {last.tsm / last.readings * month / MB:.2f} MB per device-month (TSM)"
        )
    lines = []
    for run in runs:
        du_all = Series(f"{run.name}: du -sb data+wal")
        alloc = Series(f"{run.name}: allocated")
        tsm = Series(f"{run.name}: TSM files")
        for days, disk in zip(run.days, run.disks, strict=True):
            du_all.add(days, disk.per_reading(disk.data + disk.wal))
            alloc.add(days, disk.per_reading(disk.allocated))
            tsm.add(days, disk.per_reading(disk.tsm))
        lines += [du_all, alloc, tsm]
    curve = Curve(
        "store-bytes",
        "InfluxDB bytes per stored reading",
        "days stored",
        "bytes per reading",
        lines,
        logy=True,
        note=note,
    )
    print(f"\n{curve.title} ({out / curve.name}.svg)\n{write(curve, out, digits=2)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 days, for development")
    parser.add_argument("--out", type=Path, help="plot and table (default docs/scaling/)")
    args = parser.parse_args()
    checkpoints = [1, 2] if args.quick else [1, 2, 4, 7]
    out = args.out or (Path(tempfile.mkdtemp(prefix="scale-store-")) if args.quick else OUT)
    end_ns = time.time_ns() // HOUR_NS * HOUR_NS
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scale-store-") as tmp:
        work = Path(tmp)
        import tomli_w

        bench_registry = work / "bench-registry.toml"
        bench_registry.write_text(tomli_w.dumps(grown_registry(6, 120)), encoding="utf-8")
        runs = []
        with services(work) as (mosquitto, influxd):
            for name, registry in (
                ("pilots", ROOT / "core" / "registry.toml"),
                ("bench", bench_registry),
            ):
                runs.append(
                    run_fleet(name, registry, mosquitto, influxd, work, end_ns, checkpoints)
                )
        command = "bench/scale_store" + (" --quick" if args.quick else "")
        note = (
            f"{command}: pilots simulate (realistic faults) -> mosquitto -> pilots ingest -> "
            "influxd 1.6, compacted"
        )
        report(runs, out, note)
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

"""bench/scale_ingest: ingest's throughput and memory against the number of connected devices.

Every device is its own MQTT connection to Mosquitto (bench/mqtt_swarm.py: a hand-written
MQTT 3.1.1 publisher, thousands of devices per process), publishing at QoS 1 what a device
publishes: plain JSON `{"ts": ..., "readings": {"pm25": ...}}` on `pilots/san-nicolas/<device>/up`
(bench/ingest.py's `single_stream` format, one reading per message, so messages/s = readings/s).
The registry ingest runs with is the shipped one plus exactly the devices that connected (and
the probe below), so every reading is accepted.

Per point (a number of devices), against fresh brokers and `pilots ingest` as operators run it
(a subprocess: receiver plus writer process), on one real influxd for the sweep:
  connect     every device connects (CONNECT/CONNACK); the brokers' own count is read from
              `$SYS/broker/clients/connected`
  ceiling     saturating: every device publishes as fast as the broker acknowledges (QoS 1,
              1 to 20 messages in flight per device, ~4,000 in all) for `--saturating-s`,
              received by an empty paho subscriber (bench/ingest.py's "ceiling" idea, in a
              process of its own): what a subscriber can take at that connection count
  realistic   ingest subscribed; each device one message every `--interval-s` (60 s: one
              LoRaWAN-style uplink a minute, five times the planning example's 300 s in
              docs/SCALING.md; the registry's kinds report every 300-900 s) for `--realistic-s`
              (45 s: three devices in four send, each its first message, so InfluxDB creates
              their series here)
  saturating  ingest subscribed; every device flat out as in the ceiling, for `--saturating-s`
              (10 s); then the backlog is drained, publishers stopped, for at most
              `--drain-timeout-s` (60 s)
Measured: readings stored per second (realistic: ingest's `readings_written` counter over the
window; saturating: the window's readings stored by the end of the drain over the window plus
the drain, since ingest writes in batches of up to 20,000), messages/s ingest received in the
window (against the ceiling's), the publishers' own rate; end-to-end latency from a probe device
that publishes a reading every 0.5 s with its publish time as device time and polls InfluxDB
every 10 ms until it is there (p50/p99 of the probes in the window); peak RSS of ingest
(receiver + writer) and of the brokers, CPU of both (share of one core); and, ingest stopped,
where every reading the brokers acknowledged is: InfluxDB's `count()`, ingest's durable spool,
or still queued at the brokers (with Mosquitto's own count of what it holds); if influxd does
not answer `count()` within `--count-timeout-s` (queries ingest gave up on go on running in it),
it is restarted on its data and asked again. ingest's warnings are counted from its log.

Limits of one machine, and how the bench meets them:
  file descriptors  a process may hold 20,000 here (soft = hard; raising the hard limit needs
                    CAP_SYS_RESOURCE, which root lacks in this container: the bench tries and
                    prints the outcome). Mosquitto is one process, so one broker holds about
                    19,990 clients: a point above that is run twice, (a) on one broker,
                    connecting until it refuses (the reason, as the devices saw it, is printed),
                    then measured with the devices it holds (a few let go to leave room for
                    ingest, the ceiling subscriber, the probe and the monitors); and (b) over
                    edge brokers of 18,000 devices each, each bridged at QoS 1 into the core
                    broker that ingest reads (a real Mosquitto bridge: one connection per edge at
                    the core). The swarm keeps at most 15,000 sockets per process.
  source addresses  devices bind to 127.77.x.y, 4,000 per address
  listen backlog    Mosquitto listens with a backlog of 100: the swarm opens at most 24
                    connections at once per process
  memory            a paho client per device costs ~34 KB and a thread (bench/mqtt_swarm.py)
  CPU               the swarm runs at nice 10: real devices do not use the server's cores
  InfluxDB          1.x refuses a tag's 100,001st value (`max-values-per-tag`), and the device
                    is a tag: influxd runs with it off (INFLUXDB_DATA_MAX_VALUES_PER_TAG=0)

Output: tables, and docs/scaling/ingest-devices-throughput.svg and ingest-devices-rss.svg (with
their Markdown tables) through bench/plot.py.

Run: `.venv/bin/python -m bench.scale_ingest` (100, 1,000, 10,000 and 100,000 devices, the
last both on one broker to its limit and over edge brokers; about 15 minutes), `--quick` (100
and 1,000 devices, short windows), `--devices 100,5000`, `--topology one|edges|both`,
`--no-plots` (print only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench import plot
from bench.ingest import _influx_query, _rss_mb
from bench.mqtt_swarm import Plan, Published, Swarm
from ingest.spool import DATABASE as SPOOL_DATABASE
from localservices import Influxd, Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
PILOT = "san-nicolas"
DEVICE_ID = "sw-{i:06d}"
TOPIC = "pilots/" + PILOT + "/{device}/up"
PROBE = "bench-probe"
#: A probe not in InfluxDB this long after its publish is counted apart, and the next one sent.
PROBE_GIVE_UP_S = 120.0
#: Connections left free on a broker at its descriptor limit (ingest, ceiling, probe, monitor).
RESERVE = 16
#: Devices per edge broker when one broker cannot hold them all.
PER_EDGE = 18_000
#: Every broker's additions to localservices' configuration (the listener is the last one).
BROKER_CONF = "max_connections -1\nsys_interval 1\nconnection_messages false\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STORE_TOPIC = "$SYS/broker/store/messages/count"
BEGAN = time.perf_counter()


def say(message: str) -> None:
    """A progress line, with the time since the sweep began."""
    print(f"[{time.perf_counter() - BEGAN:5.0f} s] {message}", flush=True)


# -- the fleet --------------------------------------------------------------------------------


def write_registry(path: Path, devices: list[int], interval_s: int) -> None:
    """The shipped registry plus the swarm's connected devices and the probe, in San Nicolás."""
    import tomli_w

    raw = tomllib.loads((ROOT / "core" / "registry.toml").read_text(encoding="utf-8"))
    fleet = raw["pilots"][PILOT]["devices"]
    fleet.extend(
        {
            "id": DEVICE_ID.format(i=i),
            "kind": "air_quality",
            "sensors": ["pm25"],
            "interval_s": interval_s,
            "site": "bench swarm",
        }
        for i in devices
    )
    fleet.append({"id": PROBE, "kind": "air_quality", "sensors": ["pm10"], "site": "bench"})
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")


def raise_fd_limit(wanted: int) -> str:
    """Raise this process's descriptor limit (inherited by the brokers and the swarm)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        return f"RLIMIT_NOFILE raised from {soft}/{hard} to {wanted}"
    except (ValueError, OSError) as exc:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return f"RLIMIT_NOFILE stays {hard} (soft = hard): raising it to {wanted} failed: {exc}"


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- processes: brokers, ingest, the ceiling subscriber ----------------------------------------


def _tree(pid: int) -> list[int]:
    """A process and its descendants."""
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out.extend(_tree(int(child)))
    except (OSError, ValueError):
        pass
    return out


def _running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes and their descendants have used."""
    total = 0
    for pid in {p for root in pids for p in _tree(root)}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def broker_clients(port: int) -> int:
    """`$SYS/broker/clients/connected`, less this monitor."""
    return sys_value(port, "$SYS/broker/clients/connected") - 1


def sys_value(port: int, topic: str) -> int:
    """A `$SYS` number, with this monitor counted: the broker publishes a changed value every
    second (`sys_interval 1`), so the retained value 2.5 s after connecting includes it."""
    values: list[int] = []
    first = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        values.append(int(m.payload))
        first.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sys-{uuid.uuid4().hex[:6]}")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(2.5)
    client.subscribe(topic)
    first.wait(10)
    client.disconnect()
    client.loop_stop()
    return values[0] if values else -1


class Brokers:
    """The core Mosquitto (ingest reads it) and, for more devices than one holds, edge brokers
    bridged into it at QoS 1."""

    def __init__(self, workdir: Path, edges: int) -> None:
        self.core = self._start(workdir / "core", "")
        self.edges = [
            self._start(
                workdir / f"edge-{k}",
                f"connection core\naddress 127.0.0.1:{self.core.port}\ntopic pilots/# out 1\n"
                f"remote_clientid bench-edge-{k}\nbridge_protocol_version mqttv311\n"
                "notifications false\n",
            )
            for k in range(edges)
        ]

    @staticmethod
    def _start(workdir: Path, bridge: str) -> Mosquitto:
        broker = Mosquitto(
            free_port(),
            workdir,
            max_queued_messages=10_000_000,
            extra_conf=BROKER_CONF + bridge,
        )
        workdir.mkdir(parents=True)
        broker.start()
        return broker

    @property
    def device_ports(self) -> tuple[int, ...]:
        """Where devices connect: the edges if there are any, else the core."""
        return tuple(b.port for b in self.edges) or (self.core.port,)

    @property
    def all(self) -> list[Mosquitto]:
        return [self.core, *self.edges]

    @property
    def pids(self) -> list[int]:
        return [b.proc.pid for b in self.all if b.proc]

    def rss_mb(self) -> float:
        return sum(_rss_mb(pid) for pid in self.pids)

    def devices_connected(self) -> int:
        """The devices the brokers count (an edge also counts its own bridge)."""
        if not self.edges:
            return broker_clients(self.core.port)
        with ThreadPoolExecutor(len(self.edges)) as pool:
            return sum(n - 1 for n in pool.map(broker_clients, [e.port for e in self.edges]))

    def stored(self) -> int:
        """Messages the brokers hold (`$SYS/broker/store/messages/count`), summed."""
        with ThreadPoolExecutor(len(self.all)) as pool:
            return sum(pool.map(lambda b: sys_value(b.port, STORE_TOPIC), self.all))

    def refusal(self) -> str:
        """The core broker's last warning or error about accepting clients, if any."""
        lines = self.core.log.read_text(errors="replace").splitlines()
        found = [ln for ln in lines if "accept" in ln.lower() or "error" in ln.lower()]
        return found[-1].split(": ", 1)[-1] if found else ""

    def stop(self) -> None:
        for broker in reversed(self.all):
            broker.stop()


def _ceiling_main(port: int, counter: Any, ready: Any, stop: Any) -> None:
    """The ceiling: paho at QoS 1 (automatic acknowledgements), a callback that only counts."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-ceiling-{os.getpid()}")

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        counter.value += 1

    client.on_message = on_message
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe("pilots/+/+/up", 1)
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


class Ingest:
    """`pilots ingest` as operators run it, on its own database; read through its /metrics."""

    def __init__(
        self, workdir: Path, port: int, influx_url: str, registry: Path, extra: dict[str, str]
    ) -> None:
        self.workdir = workdir
        self.database = f"scale_{uuid.uuid4().hex[:8]}"
        _influx_query(influx_url, f'CREATE DATABASE "{self.database}"')
        self.http_port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")},
            "PILOTS_MQTT_URL": f"mqtt://127.0.0.1:{port}",
            "PILOTS_MQTT_CLIENT_ID": f"bench-ingest-{uuid.uuid4().hex[:6]}",
            "PILOTS_INFLUX_URL": influx_url,
            "PILOTS_INFLUX_DATABASE": self.database,
            "PILOTS_REGISTRY": str(registry),
            "PILOTS_DATA_DIR": str(workdir / "var"),
            "PILOTS_INGEST_HTTP_PORT": str(self.http_port),
            **extra,
        }
        self.log = workdir / "ingest.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pilots", "ingest"],
                env=env,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while "connected to" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest did not connect:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """ingest's counters: readings written, messages received, refusals (all reasons)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        out = {"written": 0.0, "messages": 0.0, "refused": 0.0}
        names = {
            "pilots_ingest_readings_written_total": "written",
            "pilots_ingest_messages_total": "messages",
            "pilots_ingest_refused_total": "refused",
        }
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in names:
                out[names[name]] += float(line.rsplit(" ", 1)[1])
        return out

    def written(self) -> int:
        return int(self.metrics()["written"])

    def spooled(self, sample: int) -> tuple[int, list[tuple[str, int]]]:
        """The swarm's messages left in the spool (read once ingest has stopped), and `sample`
        of them spread over it as (device, ts in ms)."""
        path = self.workdir / "var" / SPOOL_DATABASE
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute(
                "SELECT topic, payload FROM messages WHERE topic LIKE ? ORDER BY id",
                (TOPIC.format(device="sw-%"),),
            ).fetchall()
        step = max(1, len(rows) // max(1, sample))
        picked = [(t.split("/")[2], int(json.loads(p)["ts"])) for t, p in rows[::step][:sample]]
        return len(rows), picked

    def warnings(self) -> list[str]:
        """ingest's warnings and errors, counted by message (up to the first colon after the
        logger's name)."""
        counts: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and parts[2] in {"WARNING", "ERROR"}:
                logger, _, text = parts[3].partition(": ")
                counts[f"{parts[2]} {logger}: {text.split(':')[0]}"] += 1
        return [f"ingest log: {n} x {what}" for what, n in counts.most_common(3)]

    def stop(self) -> None:
        """SIGTERM, and wait for the writer process too (it may outlive the receiver by
        PILOTS_INGEST_STOP_TIMEOUT_S, finishing its batch)."""
        children = _tree(self.proc.pid)[1:]
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 90
        while any(_running(pid) for pid in children):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)


class Probe:
    """One more device: a PM10 reading every 0.5 s with its publish time as device time, then
    InfluxDB polled every 10 ms until that point is there; the difference is the latency."""

    def __init__(self, port: int, influx_url: str, database: str) -> None:
        self.influx_url, self.database = influx_url, database
        self.phase: str | None = None
        #: (phase, when InfluxDB first returned it, latency in seconds)
        self.samples: list[tuple[str, float, float]] = []
        self.sent = 0
        #: Phases of probes not seen in InfluxDB within `PROBE_GIVE_UP_S`.
        self.given_up: list[str] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=PROBE)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _stored(self, ts_ms: int) -> bool:
        where = f"\"device\" = '{PROBE}' AND time = {ts_ms}ms"
        q = f'SELECT count("pm10") FROM "readings" WHERE {where}'
        try:
            return _count_of(_influx_query(self.influx_url, q, self.database)) > 0
        except (OSError, ValueError):  # InfluxDB busy past the query's timeout: ask again
            return False

    def _run(self) -> None:
        topic = TOPIC.format(device=PROBE)
        while not self._stop.is_set():
            phase = self.phase
            if phase is None:
                time.sleep(0.05)
                continue
            began = time.time()
            ts_ms = int(began * 1000)
            body = f'{{"ts":{ts_ms},"readings":{{"pm10":{ts_ms % 997}.5}}}}'
            self.client.publish(topic, body, qos=1).wait_for_publish(60)
            self.sent += 1
            while not self._stored(ts_ms):
                if self._stop.wait(0.01):
                    return
                if time.time() - began > PROBE_GIVE_UP_S:
                    self.given_up.append(phase)
                    break
            else:
                seen = time.time()
                self.samples.append((phase, seen, seen - ts_ms / 1000))
            self._stop.wait(max(0.0, began + 0.5 - time.time()))

    def latencies_ms(self, phase: str) -> list[float]:
        return sorted(lat * 1000 for p, _, lat in self.samples if p == phase)

    def seen_between(self, start: float, end: float) -> int:
        return sum(1 for _, seen, _ in self.samples if start <= seen < end)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()


def influx_count(url: str, database: str, field: str, timeout_s: float) -> int | None:
    """`count()` of a field over every series; None if InfluxDB does not answer in time."""
    fields = {"q": f'SELECT count("{field}") FROM "readings"', "db": database}
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(fields).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return _count_of(json.loads(response.read()))
    except (OSError, ValueError):
        return None


def point_stored(url: str, database: str, device: str, ts_ms: int) -> bool:
    """Whether InfluxDB holds the swarm reading of `device` at `ts_ms`."""
    q = f'SELECT count("pm25") FROM "readings" WHERE "device" = \'{device}\' AND time = {ts_ms}ms'
    try:
        return _count_of(_influx_query(url, q, database)) > 0
    except (OSError, ValueError):
        return False


def _count_of(body: dict[str, object]) -> int:
    try:
        return int(body["results"][0]["series"][0]["values"][0][1])  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return 0


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Window:
    """One measured window with ingest subscribed."""

    seconds: float
    published: Published
    #: The swarm's readings ingest wrote during the window (saturating: see `settle`).
    stored: int
    #: Messages ingest received (spooled and acknowledged) during the window.
    received: int
    latency_ms: list[float]
    ingest_rss_mb: float
    ingest_cpu: float
    broker_cpu: float
    broker_rss_mb: float
    #: After a saturating window: how long ingest took to store what the broker had queued.
    drain_s: float = 0.0
    drained: int = 0
    #: Probes not in InfluxDB `PROBE_GIVE_UP_S` after their publish (not in `latency_ms`).
    given_up: int = 0
    #: The time `stored` took (the window; saturating: the window and the drain).
    stored_seconds: float = 0.0

    @property
    def stored_per_s(self) -> float:
        return self.stored / (self.stored_seconds or self.seconds)

    @property
    def received_per_s(self) -> float:
        return self.received / self.seconds

    @property
    def published_per_s(self) -> float:
        return self.published.sent / self.seconds

    def percentile(self, q: float) -> float | None:
        if not self.latency_ms:
            return None
        return self.latency_ms[min(len(self.latency_ms) - 1, int(q * len(self.latency_ms)))]


@dataclass
class Point:
    """Everything measured at one number of devices."""

    requested: int
    topology: str
    brokers: int
    connected: int = 0
    broker_count: int = 0
    connect_s: float = 0.0
    #: Why fewer than `requested` are connected ("" if all are).
    limit: str = ""
    broker_rss_idle_mb: float = 0.0
    swarm_rss_mb: float = 0.0
    ceiling_per_s: float = 0.0
    ceiling_pub_per_s: float = 0.0
    realistic: Window | None = None
    saturating: Window | None = None
    acked: int = 0
    #: None: InfluxDB did not answer `count()` in time.
    in_influx: int | None = 0
    probes_acked: int = 0
    probes_in_influx: int | None = 0
    refused: int = 0
    #: Swarm messages (1 reading each) left in ingest's spool when it stopped.
    spooled: int = 0
    #: Mosquitto's `$SYS/broker/store/messages/count`, summed over the brokers, ingest stopped,
    #: less the count when the devices had connected (its retained `$SYS` messages).
    broker_store: int = 0
    store_baseline: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.requested:,} {self.topology}"


@dataclass
class Run:
    """The sweep's settings and what it shares: influxd, the working directory."""

    interval_s: int
    realistic_s: float
    saturating_s: float
    drain_timeout_s: float
    count_timeout_s: float
    influxd: Influxd
    workdir: Path
    #: Extra environment for `pilots ingest` (`--ingest-env`).
    ingest_env: dict[str, str] = field(default_factory=dict)

    @property
    def influx_url(self) -> str:
        return self.influxd.url


def inflight_window(devices: int) -> int:
    """Messages each device keeps unacknowledged when saturating: ~4,000 in all, 1 to 20 each."""
    return max(1, min(20, 4_000 // max(1, devices)))


def connect(point: Point, swarm: Swarm, brokers: Brokers) -> list[int]:
    """Connect the swarm; at a broker's limit let `RESERVE` go. Returns the connected devices."""
    result = swarm.connect()
    point.connect_s = result.seconds
    indices = result.indices
    if result.errors:
        refusal = brokers.refusal()
        point.limit = f"stopped at {len(indices):,} connected: {result.errors[0]}" + (
            f"; mosquitto: {refusal}" if refusal else ""
        )
        indices = swarm.drop(RESERVE)
    point.connected = len(indices)
    time.sleep(2.5)  # $SYS is published every second
    point.broker_count = brokers.devices_connected()
    point.broker_rss_idle_mb = brokers.rss_mb()
    point.store_baseline = brokers.stored()
    point.swarm_rss_mb = swarm.rss_mb()
    return indices


def ceiling(point: Point, swarm: Swarm, brokers: Brokers, seconds: float) -> None:
    """Saturating publishers, an empty paho subscriber on the core broker."""
    context = mp.get_context("spawn")
    counter = context.Value("q", 0, lock=False)
    ready, stop = context.Event(), context.Event()
    proc = context.Process(
        target=_ceiling_main, args=(brokers.core.port, counter, ready, stop), daemon=True
    )
    proc.start()
    if not ready.wait(30):
        raise RuntimeError("the ceiling subscriber did not subscribe")
    start_at = time.time() + 0.5
    until = start_at + seconds
    swarm.start_saturating(start_at, until, inflight_window(point.connected))
    _sleep_until(start_at)
    before = counter.value
    _sleep_until(until)
    received = counter.value - before
    published = swarm.published()
    stop.set()
    proc.join(30)
    point.ceiling_per_s = received / seconds
    point.ceiling_pub_per_s = published.sent / seconds
    if published.lost:
        point.notes.append(f"ceiling: the broker closed {published.lost} device connections")


def _sleep_until(when: float) -> None:
    time.sleep(max(0.0, when - time.time()))


def window(
    name: str,
    start: Callable[[float, float], None],
    seconds: float,
    swarm: Swarm,
    brokers: Brokers,
    ingest: Ingest,
    probe: Probe,
) -> Window:
    """Start the swarm's phase, sample ingest and the brokers through it, collect its counts."""
    start_at = time.time() + 0.5
    until = start_at + seconds
    probe.phase = name
    start(start_at, until)
    _sleep_until(start_at)
    metrics0 = ingest.metrics()
    cpu0 = (cpu_s([ingest.proc.pid]), cpu_s(brokers.pids))
    rss = [0.0, 0.0]
    while time.time() < until:
        rss = [max(rss[0], _rss_mb(ingest.proc.pid)), max(rss[1], brokers.rss_mb())]
        time.sleep(min(0.5, max(0.0, until - time.time())))
    metrics1 = ingest.metrics()
    cpu1 = (cpu_s([ingest.proc.pid]), cpu_s(brokers.pids))
    published = swarm.published()
    probe.phase = None
    probes = probe.seen_between(start_at, until)
    return Window(
        seconds=seconds,
        published=published,
        stored=int(metrics1["written"] - metrics0["written"]) - probes,
        received=int(metrics1["messages"] - metrics0["messages"]) - probes,
        latency_ms=probe.latencies_ms(name),
        given_up=probe.given_up.count(name),
        ingest_rss_mb=rss[0],
        ingest_cpu=(cpu1[0] - cpu0[0]) / seconds,
        broker_cpu=(cpu1[1] - cpu0[1]) / seconds,
        broker_rss_mb=rss[1],
    )


def drain(ingest: Ingest, probe: Probe, expected: int, timeout_s: float) -> tuple[float, int]:
    """Wait until ingest has written `expected` swarm readings (plus the probes)."""
    began = time.perf_counter()
    start = ingest.written()
    peak_wait = began + timeout_s
    while ingest.written() < expected + probe.sent and time.perf_counter() < peak_wait:
        time.sleep(0.1)
    return time.perf_counter() - began, ingest.written() - start


def settle(w: Window, ingest: Ingest, probe: Probe, acked: int, timeout_s: float) -> None:
    """After a saturating window: drain the backlog, and take the window's rate as its readings
    stored by then over the window plus the drain (no batch boundary falls inside)."""
    w.drain_s, w.drained = drain(ingest, probe, acked, timeout_s)
    pending = max(0, acked + probe.sent - ingest.written())
    w.stored = w.published.acked - pending
    w.stored_seconds = w.seconds + w.drain_s


def with_ingest(
    point: Point, run: Run, workdir: Path, registry: Path, swarm: Swarm, brokers: Brokers
) -> None:
    """The realistic and the saturating window with ingest subscribed; then the counts."""
    ingest = Ingest(workdir, brokers.core.port, run.influx_url, registry, run.ingest_env)
    say(f"{point.label}: ingest connected")
    probe = Probe(brokers.device_ports[0], run.influx_url, ingest.database)
    try:
        time.sleep(1.0)
        point.realistic = window(
            "realistic",
            lambda a, u: swarm.start_realistic(a, u, run.interval_s),
            run.realistic_s,
            swarm,
            brokers,
            ingest,
            probe,
        )
        acked = point.realistic.published.acked
        drain(ingest, probe, acked, 30)
        say(f"{point.label}: realistic {point.realistic.stored_per_s:,.1f} readings/s")
        point.saturating = window(
            "saturating",
            lambda a, u: swarm.start_saturating(a, u, inflight_window(point.connected)),
            run.saturating_s,
            swarm,
            brokers,
            ingest,
            probe,
        )
        acked += point.saturating.published.acked
        settle(point.saturating, ingest, probe, acked, run.drain_timeout_s)
        say(
            f"{point.label}: saturating {point.saturating.stored_per_s:,.0f} readings/s "
            f"(backlog {point.saturating.drained:,} drained in {point.saturating.drain_s:.0f} s)"
        )
        point.acked, point.refused = acked, int(ingest.metrics()["refused"])
    finally:
        probe.close()
        point.probes_acked = probe.sent
        ingest.stop()
    account(point, run, ingest, brokers)
    point.notes += ingest.warnings()


def restart(influxd: Influxd, timeout_s: float) -> None:
    """Stop influxd and start it again on its data; wait up to `timeout_s` for its index."""
    influxd.stop()
    try:
        influxd.start()
    except RuntimeError:  # localservices waits 30 s; a large index takes longer to load
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{influxd.url}/ping", timeout=2) as response:
                    if response.status == 204:
                        return
            except OSError:
                pass
            alive = influxd.proc is not None and influxd.proc.poll() is None
            if not alive or time.monotonic() > deadline:
                raise
            time.sleep(1)


def account(point: Point, run: Run, ingest: Ingest, brokers: Brokers) -> None:
    """Where every acknowledged reading is, ingest stopped: InfluxDB, ingest's spool (durable,
    written at its next start) or still at the brokers (queued for ingest's session)."""
    began = time.perf_counter()
    point.spooled, sample = ingest.spooled(100)
    point.broker_store = brokers.stored() - point.store_baseline
    point.in_influx = influx_count(run.influx_url, ingest.database, "pm25", run.count_timeout_s)
    if point.in_influx is None:
        # Queries ingest gave up on (its timeout) go on running inside influxd, which has no
        # query timeout of its own; a restart ends them, and counts what it made durable.
        restart(run.influxd, 300)
        point.notes.append(
            f"InfluxDB did not answer count() within {run.count_timeout_s:.0f} s (busy with"
            " queries ingest had given up on); influxd restarted to count"
        )
        point.in_influx = influx_count(run.influx_url, ingest.database, "pm25", run.count_timeout_s)
    point.probes_in_influx = influx_count(
        run.influx_url, ingest.database, "pm10", run.count_timeout_s
    )
    if sample:
        stored = sum(point_stored(run.influx_url, ingest.database, d, ts) for d, ts in sample)
        point.notes.append(
            f"of {len(sample)} messages sampled across ingest's spool, {stored} are already in"
            " InfluxDB (written, not yet taken out of the spool when ingest stopped)"
        )
    say(f"{point.label}: counted in {time.perf_counter() - began:.0f} s")


def measure(requested: int, topology: str, run: Run) -> Point:
    """One point: fresh brokers, the swarm, the ceiling, then ingest's two windows."""
    edges = math.ceil(requested / PER_EDGE) if topology == "edges" else 0
    point = Point(requested, f"over {edges} edges" if edges else "on 1 broker", 1 + edges)
    workdir = run.workdir / f"{requested}-{topology}"
    brokers = Brokers(workdir, edges)
    per_broker = PER_EDGE if edges else requested
    plan = Plan(requested, brokers.device_ports, per_broker, DEVICE_ID, TOPIC)
    swarm = Swarm(plan)
    try:
        devices = connect(point, swarm, brokers)
        say(
            f"{point.label}: {point.connected:,} connected in {point.connect_s:.1f} s "
            f"(brokers count {point.broker_count:,})" + (f"; {point.limit}" if point.limit else "")
        )
        ceiling(point, swarm, brokers, run.saturating_s)
        say(f"{point.label}: ceiling {point.ceiling_per_s:,.0f} msg/s")
        registry = workdir / "registry.toml"
        write_registry(registry, devices, run.interval_s)
        with_ingest(point, run, workdir, registry, swarm, brokers)
    finally:
        swarm.close()
        brokers.stop()
    return point


# -- reporting ----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _n(w: Window) -> str:
    """Probes with a latency, and those given up on (`+k`)."""
    return f"{len(w.latency_ms)}" + (f"+{w.given_up}" if w.given_up else "")


def _print_connections(points: list[Point]) -> None:
    print("\nconnections (each device its own MQTT connection)")
    print(
        f"{'point':<22}{'connected':>10}{'broker says':>12}{'brokers':>8}{'connect s':>10}"
        f"{'conn/s':>8}{'swarm RSS':>10}{'mosq RSS idle':>14}"
    )
    for p in points:
        print(
            f"{p.label:<22}{p.connected:>10,}{p.broker_count:>12,}{p.brokers:>8}"
            f"{p.connect_s:>10.1f}{p.connected / max(p.connect_s, 1e-9):>8,.0f}"
            f"{p.swarm_rss_mb:>7,.0f} MB{p.broker_rss_idle_mb:>11,.0f} MB"
        )
    for p in points:
        if p.limit:
            print(f"  {p.label}: {p.limit}")


def _print_realistic(points: list[Point], interval_s: int) -> None:
    print(f"\nrealistic: each device one message every {interval_s} s (1 reading per message)")
    print(
        f"{'point':<22}{'devices':>9}{'offered/s':>10}{'stored/s':>10}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'n':>5}{'ingest CPU':>11}{'ingest RSS':>11}{'mosq CPU':>9}"
        f"{'mosq RSS':>10}"
    )
    for p in points:
        w = p.realistic
        if w is None:
            continue
        print(
            f"{p.label:<22}{p.connected:>9,}{w.published_per_s:>10,.1f}{w.stored_per_s:>10,.1f}"
            f"{_ms(w.percentile(0.5)):>8}{_ms(w.percentile(0.99)):>8}{_n(w):>5}"
            f"{w.ingest_cpu:>10.0%} {w.ingest_rss_mb:>7,.0f} MB{w.broker_cpu:>8.0%} "
            f"{w.broker_rss_mb:>6,.0f} MB"
        )


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _print_saturating(points: list[Point]) -> None:
    print("\nsaturating: every device publishing as fast as the broker acknowledges (QoS 1)")
    print(
        f"{'':<22}{'ceiling':>18}{'ingest':>35}{'latency ms':>18}{'drain':>14}"
        f"{'ingest':>14}{'mosquitto':>14}"
    )
    print(
        f"{'point':<22}{'pub/s':>8}{'recv/s':>10}{'pub/s':>8}{'recv/s':>8}{'x':>5}"
        f"{'stored/s':>9}{'x':>5}{'p50':>7}{'p99':>7}{'n':>4}{'stored':>9}{'s':>5}"
        f"{'CPU':>6}{'RSS':>8}{'CPU':>6}{'RSS':>8}"
    )
    for p in points:
        w = p.saturating
        if w is None:
            continue
        print(
            f"{p.label:<22}{p.ceiling_pub_per_s:>8,.0f}{p.ceiling_per_s:>10,.0f}"
            f"{w.published_per_s:>8,.0f}{w.received_per_s:>8,.0f}"
            f"{_ratio(w.received_per_s, p.ceiling_per_s):>5.2f}"
            f"{w.stored_per_s:>9,.0f}{_ratio(w.stored_per_s, p.ceiling_per_s):>5.2f}"
            f"{_ms(w.percentile(0.5)):>7}{_ms(w.percentile(0.99)):>7}{_n(w):>4}"
            f"{w.drained:>9,}{w.drain_s:>5.0f}{w.ingest_cpu:>6.0%}{w.ingest_rss_mb:>5,.0f} MB"
            f"{w.broker_cpu:>6.0%}{w.broker_rss_mb:>5,.0f} MB"
        )
    print(
        "  pub/s: the swarm's publishes; recv/s: messages/s the subscriber (ceiling: an empty paho"
        " client; ingest: spooled and acknowledged) took from the broker in the window; x: over"
        " the ceiling's recv/s; stored/s: the window's readings in InfluxDB by the end of the"
        " drain, over the window plus the drain; drain: readings ingest stored after the window"
        " with the publishers stopped, and how long (at most --drain-timeout-s); CPU: share of"
        " one core in the window; RSS: peak"
    )


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _print_integrity(points: list[Point]) -> None:
    print(
        "\nnothing lost: the readings the brokers acknowledged to the devices, ingest stopped,"
        " against where they are"
    )
    print(
        f"{'point':<22}{'acked':>10}{'InfluxDB':>10}{'spool':>8}{'brokers':>9}{'store':>7}"
        f"{'probes':>7}{'InfluxDB':>9}{'quarantined':>12}{'closed':>7}"
    )
    for p in points:
        closed = sum(w.published.lost for w in (p.realistic, p.saturating) if w)
        at_brokers = None if p.in_influx is None else p.acked - p.in_influx - p.spooled
        print(
            f"{p.label:<22}{p.acked:>10,}{_count(p.in_influx):>10}{p.spooled:>8,}"
            f"{_count(at_brokers):>9}{p.broker_store:>7,}{p.probes_acked:>7,}"
            f"{_count(p.probes_in_influx):>9}{p.refused:>12,}{closed:>7,}"
        )
        for note in p.notes:
            print(f"  {p.label}: {note}")
    print(
        "  InfluxDB: count() of the swarm's readings; spool: left in ingest's durable spool"
        " (written at its next start); brokers: acked - InfluxDB - spool, still queued for"
        " ingest's persistent session (negative when the spool also holds readings InfluxDB has:"
        " see the sample); store: mosquitto's own count of the messages it holds, less its"
        " count before publishing; closed: device connections the brokers closed"
    )


def report(points: list[Point], run: Run) -> None:
    _print_connections(points)
    _print_realistic(points, run.interval_s)
    _print_saturating(points)
    _print_integrity(points)


def _series(label: str, points: list[Point], y: Callable[[Point], float | None]) -> plot.Series:
    series = plot.Series(label)
    for p in sorted(points, key=lambda p: p.connected):
        series.add(p.connected, y(p))
    return series


def plots(points: list[Point], run: Run, note: str) -> None:
    """docs/scaling/ingest-devices-throughput.svg and ingest-devices-rss.svg, with tables."""
    groups = {p.topology: [q for q in points if q.topology == p.topology] for p in points}
    throughput: list[plot.Series] = []
    rss: list[plot.Series] = []
    for topology, members in groups.items():
        tag = "" if topology == "on 1 broker" else f" ({topology} bridged to 1)"
        throughput += [
            _series(
                f"ingest, realistic (1 msg/device/{run.interval_s} s){tag}",
                members,
                lambda p: p.realistic.stored_per_s if p.realistic else None,
            ),
            _series(
                f"ingest, saturating, stored{tag}",
                members,
                lambda p: p.saturating.stored_per_s if p.saturating else None,
            ),
            _series(
                f"ingest, saturating, received{tag}",
                members,
                lambda p: p.saturating.received_per_s if p.saturating else None,
            ),
            _series(f"empty paho subscriber, saturating{tag}", members, lambda p: p.ceiling_per_s),
        ]
        rss += [
            _series(
                f"ingest (receiver + writer), peak{tag}",
                members,
                lambda p: max(w.ingest_rss_mb for w in (p.realistic, p.saturating) if w),
            ),
            _series(f"mosquitto, devices connected{tag}", members, lambda p: p.broker_rss_idle_mb),
            _series(
                f"mosquitto, peak{tag}",
                members,
                lambda p: max(w.broker_rss_mb for w in (p.realistic, p.saturating) if w),
            ),
        ]
    curves = [
        plot.Curve(
            "ingest-devices-throughput",
            "Ingest against connected devices (one MQTT connection each)",
            "devices connected",
            "readings/s stored (1 reading per message)",
            throughput,
            logx=True,
            logy=True,
            note=note,
        ),
        plot.Curve(
            "ingest-devices-rss",
            "Memory against connected devices",
            "devices connected",
            "RSS (MB)",
            rss,
            logx=True,
            note=note,
        ),
    ]
    for curve in curves:
        print(f"\n{curve.title} (docs/scaling/{curve.name}.svg)\n{plot.write(curve)}")


# -- the sweep ----------------------------------------------------------------------------------


def topologies(requested: int, capacity: int, choice: str) -> list[str]:
    """One broker when it holds them; above that, one broker to its limit and/or edges."""
    if requested <= capacity:
        return ["one"]
    return {"both": ["one", "edges"], "one": ["one"], "edges": ["edges"]}[choice]


def _terminated(signum: int, frame: object) -> None:
    say("SIGTERM: stopping the brokers, influxd, ingest and the swarm")
    sys.exit(143)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="100,1000,10000,100000", help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 devices, short")
    parser.add_argument("--interval-s", type=int, default=60, help="realistic: s per message")
    parser.add_argument("--realistic-s", type=float, default=45.0, help="realistic window")
    parser.add_argument("--saturating-s", type=float, default=10.0, help="saturating windows")
    parser.add_argument(
        "--drain-timeout-s", type=float, default=60.0, help="wait for the saturating backlog"
    )
    parser.add_argument(
        "--count-timeout-s", type=float, default=60.0, help="wait for InfluxDB's count()"
    )
    parser.add_argument(
        "--ingest-env",
        action="append",
        default=[],
        metavar="PILOTS_X=value",
        help="run ingest with this setting too (repeatable)",
    )
    parser.add_argument(
        "--topology",
        choices=["both", "one", "edges"],
        default="both",
        help="above one broker's limit: one broker to its limit, edge brokers, or both",
    )
    parser.add_argument("--no-plots", action="store_true", help="print only")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: the brokers, influxd, ingest and the swarm are stopped.
    signal.signal(signal.SIGTERM, _terminated)
    if args.quick:
        args.devices, args.realistic_s, args.saturating_s = "100,1000", 10.0, 5.0
    began = time.perf_counter()
    print(raise_fd_limit(1_048_576))
    capacity = fd_limit() - 100
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-ingest-"))
    # InfluxDB 1.x refuses a tag's 100,001st value by default (`max-values-per-tag`), and the
    # device is a tag: 100,000 devices and the probe need it off (influxd reads INFLUXDB_*).
    os.environ["INFLUXDB_DATA_MAX_VALUES_PER_TAG"] = "0"
    print("influxd: max-values-per-tag 0 (its default, 100,000, refuses the 100,001st device)")
    influxd = Influxd(free_port(), workdir / "influxd")
    influxd.workdir.mkdir()
    influxd.start()
    run = Run(
        args.interval_s,
        args.realistic_s,
        args.saturating_s,
        args.drain_timeout_s,
        args.count_timeout_s,
        influxd,
        workdir,
        dict(kv.split("=", 1) for kv in args.ingest_env),
    )
    points: list[Point] = []
    try:
        for requested in (int(d) for d in args.devices.split(",") if d):
            for topology in topologies(requested, capacity, args.topology):
                points.append(measure(requested, topology, run))
        report(points, run)
        if not args.no_plots:
            note = (
                f"bench/scale_ingest, {os.cpu_count()} cores, mosquitto 2.0.11, influxd 1.6; "
                f"realistic {args.realistic_s:.0f} s, saturating {args.saturating_s:.0f} s windows"
            )
            plots(points, run, note)
    finally:
        influxd.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

"""bench/alerts: from a device's publish to the webhook's receipt, and the alert service's cost.

Everything real, on loopback: a Mosquitto per scenario (`localservices`), `pilots alerts run`
as operators run it (a process of its own: its own interpreter lock, so the publisher and the
receiver in this process do not slow it, and its CPU time is its own, read from /proc), and a
webhook receiver in this process (a real HTTP server that records when each idempotency key
arrived). The rules are the registry's defaults (what a deployment without a rules file runs)
plus one threshold rule, `bench.probe`, on a dedicated probe device (`sf-probe-01`, air
temperature only, so of the default rules only `flat` and `silent` see it): past 40 °C fires,
30 °C or less clears, no pending or clearing time.

A scenario: the registry's fleet (its devices copied to 10,000 for the load scenarios) is
published in real time, device times being wall times, in the simulator's payload mix
(`simulators.fleet`, no faults): first the last interval of reports at once, so the service's
state holds every device as a long-running service's would, then on the clock. After a probe
pair has come through and the service's outbox is empty, the measured window starts: every
`--probe-every-s` the probe device publishes 45 °C and 20 °C in turn, each giving a `fired` or
`cleared` notification. The latency of each is its arrival at the receiver minus its publish
(one clock, this process's `perf_counter`).

Baseline in the same run, on the same probe messages: a bare bridge (this module with
`--bridge`, a process of its own): paho subscribed at QoS 1 to the same topic filters as the
service, POSTing each probe message to the same receiver the moment it arrives, with no
decoding, evaluation, outbox or store. The difference is what the alert service adds.

Scenarios:
  pilots   the shipped registry's devices at their registered intervals (about 0.04 msg/s)
  load     10,000 copies at the registered intervals' aggregate (about 20 msg/s)
  high     10,000 copies at `--high-rate` (1,000 msg/s): headroom

Printed per scenario: latency n, p50, p90, p99, max for the service and the bridge; the
readings/s published (and so evaluated) in the window, the service's CPU seconds (utime + stime
of the process, every thread) per reading, and the bridge's per message. Then, after each
scenario, in this process with nothing else running: the window's messages decoded and
validated as ingest does (`ingest.process`, the part ingest pays too) and evaluated in the
service's batches (one per `PILOTS_ALERT_EVAL_EVERY_S` of publish time, on the state the
warm-up left), each timed: the evaluation's own cost per reading; and the state's `to_bytes`
(the checkpoint's) and one silence check. Nothing is asserted.

Run: `.venv/bin/python -m bench.alerts` (`--seconds`, `--scenarios`, `--devices`,
`--high-rate`, `--probe-every-s`; `--service-env PILOTS_X=value` to run the service with another
setting), or `make bench-alerts`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import urllib3
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.alerts import AlertState, Evaluator, load_rules
from core.readings import Readings
from core.registry import Registry, build_registry, load_registry
from core.settings import Settings
from core.timeutil import NS_PER_MS, NS_PER_S
from ingest.decoders import Router
from ingest.dedupe import FrameCache
from ingest.process import columns, process
from ingest.validate import Validator
from localservices import Mosquitto, free_port, terminate
from simulators.fleet import Fleet, Message
from simulators.formats import DEFAULT_MIX
from simulators.load import load_registry_text

ROOT = Path(__file__).resolve().parents[1]
PROBE_ID = "sf-probe-01"
PROBE_PILOT = "santa-fe"
PROBE_TOPIC = f"pilots/{PROBE_PILOT}/{PROBE_ID}/up"
PROBE_RULE = "bench.probe"
HIGH, LOW = 45.0, 20.0
SECRET = "bench-" + uuid.uuid4().hex
BRIDGE_KEY = "bridge:"

PROBE_DEVICE = f"""
# The benchmark's probe: one air temperature, published every half second.
[[pilots.{PROBE_PILOT}.devices]]
id = "{PROBE_ID}"
kind = "weather"
sensors = ["temperature"]
"""

RULES = f"""
[defaults]
include = true

[[rules]]
id = "{PROBE_RULE}"
kind = "threshold"
pilot = "{PROBE_PILOT}"
sensor = "temperature"
devices = ["{PROBE_ID}"]
level = 40.0
clear_level = 30.0
pending_s = 0
clear_s = 0
"""


# -- the webhook receiver ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # perf_counter when the request came in
    key: str
    body: dict[str, Any]


class Receiver:
    """A webhook receiver on a loopback port: records each POST's arrival time, answers 204."""

    def __init__(self) -> None:
        self.port = free_port()
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/pilots"

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

            def do_POST(self) -> None:
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("X-Pilots-Idempotency-Key", "")
                parsed = orjson.loads(body) if body else {}
                with receiver._lock:
                    receiver._arrivals.append(Arrival(at, key, parsed))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def probe_ts_ms(arrival: Arrival) -> int | None:
    """The probe reading's device time (ms) an arrival answers; None if not a probe's."""
    if arrival.key.startswith(BRIDGE_KEY):
        return int(arrival.key[len(BRIDGE_KEY) :])
    body = arrival.body
    if body.get("rule_id") != PROBE_RULE:
        return None
    ts_ns = body["start_ns"] if body.get("kind") == "fired" else body.get("end_ns")
    return None if ts_ns is None else int(ts_ns) // NS_PER_MS


# -- the bare bridge (the baseline), run as `python -m bench.alerts --bridge ...` --------------


def bridge_main(port: int, url: str) -> None:
    """Subscribe as the service does; POST each probe message to `url` as it arrives."""
    http = urllib3.PoolManager(num_pools=1, retries=False, timeout=urllib3.Timeout(total=10))
    filters = list(Settings(_env_file=None).ingest_routes)

    def on_connect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        client.subscribe([(f, 1) for f in filters])

    def on_subscribe(
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        print("bridge ready", flush=True)

    # the receiver tells the bridge's arrivals from the service's by the key's prefix
    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != PROBE_TOPIC:
            return
        ts = orjson.loads(msg.payload)["ts"]
        http.request(
            "POST",
            url,
            body=bytes(msg.payload),
            headers={
                "Content-Type": "application/json",
                "X-Pilots-Idempotency-Key": f"{BRIDGE_KEY}{ts}",
            },
        )

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bridge-{uuid.uuid4().hex}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_forever()


# -- the scenario's processes and files --------------------------------------------------------


@dataclass
class Scenario:
    name: str
    label: str
    registry_text: str
    background: tuple[str, ...]  # the device ids publishing in the background
    target_per_s: float


def scenarios(names: Sequence[str], devices: int, high_rate: float) -> list[Scenario]:
    shipped = load_registry()
    text = shipped.source.read_text(encoding="utf-8").rstrip() + "\n"
    own = tuple(d.id for d in shipped.device_list)
    per_device = sum(1 / d.interval_s for d in shipped.device_list) / len(shipped.device_list)
    registered = devices * per_device
    copies = tuple(f"{shipped.device_list[i % len(own)].id}-l{i:06d}" for i in range(devices))
    out = []
    for name in names:
        if name == "pilots":
            out.append(
                Scenario(
                    name,
                    f"the shipped registry's {len(own)} devices at their intervals",
                    text + PROBE_DEVICE,
                    own,
                    per_device * len(own),
                )
            )
        elif name in ("load", "high"):
            rate = registered if name == "load" else high_rate
            body = load_registry_text(shipped, devices, rate)
            what = "the registered intervals' rate" if name == "load" else f"{rate:,.0f} msg/s"
            out.append(
                Scenario(name, f"{devices:,} copies at {what}", body + PROBE_DEVICE, copies, rate)
            )
        else:
            raise SystemExit(f"unknown scenario {name!r}: pilots, load, high")
    return out


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")}


def wait_for_output(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"no {text!r} in {log} (exit {proc.poll()}):\n{tail}")
        time.sleep(0.05)


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process, every thread."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def outbox_pending(database: Path) -> int:
    """Notifications the service's outbox still holds (it may not exist yet)."""
    if not database.exists():
        return 0
    db = sqlite3.connect(database, timeout=5)
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()
    return int(n)


# -- publishing ----------------------------------------------------------------------------------


def publisher(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{uuid.uuid4().hex}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class Background(threading.Thread):
    """The fleet on the clock: each message published at its device time (wall clock)."""

    def __init__(self, client: mqtt.Client, fleet: Fleet, start_ns: int) -> None:
        super().__init__(name="background", daemon=True)
        self.client = client
        self.fleet = fleet
        self.cursor = start_ns
        self.stop = threading.Event()
        #: (publish wall ns, message) of every message published
        self.sent: list[tuple[int, Message]] = []

    def run(self) -> None:
        tick = NS_PER_S // 2
        while not self.stop.is_set():
            batch = self.fleet.messages(self.cursor, self.cursor + tick)
            self.cursor += tick
            for m in batch:
                wait = (m.ts_ns - time.time_ns()) / NS_PER_S
                if wait > 0.001 and self.stop.wait(wait):
                    return
                self.client.publish(m.topic, m.payload, qos=1)
                self.sent.append((time.time_ns(), m))
            wait = (self.cursor - time.time_ns()) / NS_PER_S
            if wait > 0:
                self.stop.wait(wait)


class Probe:
    """The probe device: 45 °C and 20 °C in turn, each publish time kept by device time."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.high = True
        self.last_ms = 0
        #: device time (ms) -> perf_counter at publish
        self.published: dict[int, float] = {}
        #: (publish wall ns, message) of every probe message
        self.sent: list[tuple[int, Message]] = []

    def publish(self) -> int:
        ts_ms = max(time.time_ns() // NS_PER_MS, self.last_ms + 1)
        self.last_ms = ts_ms
        value = HIGH if self.high else LOW
        self.high = not self.high
        payload = orjson.dumps({"ts": ts_ms, "readings": {"temperature": value}})
        self.published[ts_ms] = time.perf_counter()
        self.client.publish(PROBE_TOPIC, payload, qos=1)
        self.sent.append((time.time_ns(), Message(ts_ms * NS_PER_MS, PROBE_TOPIC, payload)))
        return ts_ms


def arrived(receiver: Receiver, ts_ms: int, bridge: bool) -> bool:
    for a in receiver.arrivals():
        if a.key.startswith(BRIDGE_KEY) == bridge and probe_ts_ms(a) == ts_ms:
            return True
    return False


# -- one scenario --------------------------------------------------------------------------------


@dataclass
class Latency:
    n: int
    expected: int
    ms: list[float]

    def pct(self, q: float) -> float:
        return float(np.percentile(self.ms, q)) if self.ms else float("nan")


@dataclass
class Replay:
    batches: int
    readings: int
    decode_s: float
    evaluate_s: float
    keys: int
    kept: int
    to_bytes_s: float = 0.0
    state_mb: float = 0.0
    silence_s: float = 0.0


@dataclass
class Result:
    scenario: Scenario
    window_s: float
    background_sent: int
    service: Latency
    bridge: Latency
    service_cpu_s: float
    bridge_cpu_s: float
    service_rss_mb: float
    other_notifications: int
    probe_messages: int
    replay: Replay = field(default_factory=lambda: Replay(0, 0, 0.0, 0.0, 0, 0))

    @property
    def readings(self) -> int:
        return self.replay.readings


def latencies(receiver: Receiver, probe: Probe, window: set[int], bridge: bool) -> Latency:
    first: dict[int, float] = {}
    for a in receiver.arrivals():
        if a.key.startswith(BRIDGE_KEY) != bridge:
            continue
        ts = probe_ts_ms(a)
        if ts is not None and ts in window and ts not in first:
            first[ts] = a.at
    ms = sorted((at - probe.published[ts]) * 1e3 for ts, at in first.items())
    return Latency(len(ms), len(window), ms)


def run_scenario(sc: Scenario, args: argparse.Namespace, workdir: Path) -> Result:
    here = workdir / sc.name
    here.mkdir()
    registry_path = here / "registry.toml"
    registry_path.write_text(sc.registry_text, encoding="utf-8")
    rules_path = here / "rules.toml"
    rules_path.write_text(RULES, encoding="utf-8")
    registry = build_registry(tomllib.loads(sc.registry_text), registry_path)
    broker = Mosquitto(free_port(), here / "mosquitto", max_queued_messages=1_000_000)
    broker.workdir.mkdir()
    broker.start()
    receiver = Receiver().start()
    data = here / "var"
    env = {
        **clean_env(),
        "PILOTS_MQTT_URL": broker.url,
        "PILOTS_DATA_DIR": str(data),
        "PILOTS_REGISTRY": str(registry_path),
        "PILOTS_ALERT_RULES": str(rules_path),
        "PILOTS_ALERT_SESSION_ID": f"bench-alerts-{uuid.uuid4().hex[:8]}",
        "PILOTS_ALERT_WEBHOOK_URL": receiver.url,
        "PILOTS_ALERT_WEBHOOK_SECRET": SECRET,
        "PILOTS_LOG_LEVEL": "INFO",
        **args.service_env,
    }
    service_log, bridge_log = here / "alerts.log", here / "bridge.log"
    service = spawn([sys.executable, "-m", "pilots", "alerts", "run"], env, here, service_log)
    bridge = spawn(
        [sys.executable, "-m", "bench.alerts", "--bridge", str(broker.port), receiver.url],
        {**clean_env(), "PYTHONPATH": str(ROOT)},
        here,
        bridge_log,
    )
    background_client = publisher(broker.port, "fleet")
    probe = Probe(publisher(broker.port, "probe"))
    fleet = Fleet(registry, devices=set(sc.background), formats=DEFAULT_MIX)
    background: Background | None = None
    try:
        wait_for_output(service_log, "alerts ready", service, 60)
        wait_for_output(bridge_log, "bridge ready", bridge, 30)
        # warm-up: the last interval of reports at once, then the fleet on the clock
        now = time.time_ns()
        span = max(registry.devices[d].interval_s for d in sc.background) * NS_PER_S
        warm = fleet.messages(now - span, now)
        infos = [background_client.publish(m.topic, m.payload, qos=1) for m in warm]
        for info in infos:
            info.wait_for_publish(120)
        background = Background(background_client, fleet, now)
        background.start()
        settle(service, probe, receiver, data / "alerts.sqlite", args.settle_timeout_s)
        print(
            f"  {sc.name}: warm ({len(warm):,} messages at once); measuring {args.seconds:g} s",
            flush=True,
        )
        # the measured window
        cpu0, bcpu0, wall0 = cpu_s(service.pid), cpu_s(bridge.pid), time.time_ns()
        sent0 = len(background.sent)
        window: set[int] = set()
        began = time.perf_counter()
        k = 0
        while time.perf_counter() - began < args.seconds:
            window.add(probe.publish())
            k += 1
            due = began + k * args.probe_every_s
            time.sleep(max(0.0, due - time.perf_counter()))
        wall1, ended = time.time_ns(), time.perf_counter()
        cpu1, bcpu1 = cpu_s(service.pid), cpu_s(bridge.pid)
        rss = rss_mb(service.pid)
        background.stop.set()
        background.join()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = latencies(receiver, probe, window, bridge=False)
            if got.n == len(window) and latencies(receiver, probe, window, True).n == len(window):
                break
            time.sleep(0.2)
        service_latency = latencies(receiver, probe, window, bridge=False)
        bridge_latency = latencies(receiver, probe, window, bridge=True)
        others = sum(
            1
            for a in receiver.arrivals()
            if began <= a.at < ended and not a.key.startswith(BRIDGE_KEY) and probe_ts_ms(a) is None
        )
    finally:
        if background is not None:
            background.stop.set()
        terminate(service, 30)
        terminate(bridge, 10)
        for client in (background_client, probe.client):
            client.disconnect()
            client.loop_stop()
        receiver.stop()
        broker.stop()
    in_window = [(t, m) for t, m in background.sent[sent0:] if wall0 <= t < wall1]
    probes = [(t, m) for t, m in probe.sent if wall0 <= t < wall1]
    result = Result(
        sc,
        (wall1 - wall0) / NS_PER_S,
        len(in_window),
        service_latency,
        bridge_latency,
        cpu1 - cpu0,
        bcpu1 - bcpu0,
        rss,
        others,
        len(probes),
    )
    # what the service had evaluated before the window: the burst, then the clock's messages
    before = [*background.sent[:sent0], *((t, m) for t, m in probe.sent if t < wall0)]
    result.replay = replay(
        registry,
        rules_path,
        [*warm, *(m for _, m in sorted(before, key=lambda p: p[0]))],
        sorted(in_window + probes, key=lambda p: p[0]),
        wall0,
        args.eval_every_s,
    )
    return result


def settle(
    service: subprocess.Popen[bytes],
    probe: Probe,
    receiver: Receiver,
    database: Path,
    timeout_s: float,
) -> None:
    """Wait until a probe pair has come through and the outbox holds nothing."""
    deadline = time.monotonic() + timeout_s
    pair = [probe.publish(), probe.publish()]
    while not (all(arrived(receiver, ts, False) for ts in pair) and outbox_pending(database) == 0):
        if service.poll() is not None:
            raise RuntimeError("the alert service exited during the warm-up")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the alert service did not settle in {timeout_s:g} s: probe pair "
                f"{[arrived(receiver, ts, False) for ts in pair]}, outbox holds "
                f"{outbox_pending(database)}"
            )
        time.sleep(0.2)


# -- the replay: decoding and evaluation timed apart, on the window's messages --------------------


def replay(
    registry: Registry,
    rules_path: Path,
    warm: list[Message],
    window: list[tuple[int, Message]],
    start_ns: int,
    every_s: float,
) -> Replay:
    settings = Settings(_env_file=None)
    router = Router(settings.ingest_routes)
    validator = Validator(
        registry,
        max_future_s=settings.ingest_max_future_s,
        max_age_days=settings.ingest_max_age_days,
        frames=FrameCache(settings.ingest_dedupe_window_s * NS_PER_S),
    )
    evaluator = Evaluator(
        load_rules(rules_path, registry), registry, late_after_s=settings.alert_late_after_s
    )

    def decode(messages: Sequence[tuple[int, Message]]) -> Readings:
        checks = [
            (
                process(
                    router,
                    validator,
                    m.topic,
                    m.payload,
                    t,
                    max_payload_bytes=settings.ingest_max_payload_bytes,
                ),
                t,
            )
            for t, m in messages
        ]
        return columns(checks)[0]

    warm_readings = decode([(m.ts_ns, m) for m in warm])
    _, state = evaluator.evaluate(warm_readings, AlertState.empty(), start_ns)
    keys, kept = len(state), len(state.window_ts_ns)
    step = int(every_s * NS_PER_S)
    bins: dict[int, list[tuple[int, Message]]] = {}
    for t, m in window:
        bins.setdefault((t - start_ns) // step, []).append((t, m))
    decode_s = evaluate_s = 0.0
    readings = 0
    for b in sorted(bins):
        began = time.perf_counter()
        batch = decode(bins[b])
        mid = time.perf_counter()
        _, state = evaluator.evaluate(batch, state, start_ns + (b + 1) * step)
        decode_s += mid - began
        evaluate_s += time.perf_counter() - mid
        readings += len(batch)
    out = Replay(len(bins), readings, decode_s, evaluate_s, keys, kept)
    # what the service does besides, on its clock: the checkpoint's bytes, the silence check
    began = time.perf_counter()
    data = state.to_bytes()
    out.to_bytes_s = time.perf_counter() - began
    out.state_mb = len(data) / 1e6
    began = time.perf_counter()
    evaluator.evaluate_silence(state, start_ns + len(bins) * step)
    out.silence_s = time.perf_counter() - began
    return out


# -- reporting -----------------------------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    for r in results:
        sc = r.scenario
        print(f"{sc.name:<8}{sc.label}: target {sc.target_per_s:,.2f} msg/s")
    print(
        f"\npublish -> webhook receipt of the probe's events, one every {args.probe_every_s:g} s "
        f"for {args.seconds:g} s; ms"
    )
    print(
        f"{'scenario':<10}{'sent msg/s':>11}  {'path':<8}{'n':>9}{'p50':>8}{'p90':>8}{'p99':>8}"
        f"{'max':>8}"
    )
    for r in results:
        rate = r.background_sent / r.window_s
        for path, lat in (("bridge", r.bridge), ("alerts", r.service)):
            name = r.scenario.name if path == "bridge" else ""
            shown = f"{rate:11,.2f}" if path == "bridge" else " " * 11
            print(
                f"{name:<10}{shown}  {path:<8}{f'{lat.n}/{lat.expected}':>9}{lat.pct(50):8.0f}"
                f"{lat.pct(90):8.0f}{lat.pct(99):8.0f}{lat.pct(100):8.0f}"
            )
    print("\nCPU over the window (utime + stime, every thread of the process)")
    print(
        f"{'scenario':<10}{'readings/s':>11}{'alerts s':>10}{'% core':>8}{'µs/reading':>12}"
        f"{'bridge s':>10}{'µs/msg':>8}{'other notif.':>14}{'RSS MB':>8}"
    )
    for r in results:
        messages = r.background_sent + r.probe_messages
        print(
            f"{r.scenario.name:<10}{r.readings / r.window_s:11,.1f}{r.service_cpu_s:10.2f}"
            f"{r.service_cpu_s / r.window_s * 100:8.1f}"
            f"{r.service_cpu_s / max(r.readings, 1) * 1e6:12,.1f}{r.bridge_cpu_s:10.2f}"
            f"{r.bridge_cpu_s / max(messages, 1) * 1e6:8,.1f}{r.other_notifications:14,}"
            f"{r.service_rss_mb:8.0f}"
        )
    print(
        f"\nreplay in this process, nothing else running: the window's messages decoded and "
        f"validated as ingest does, then evaluated in {args.eval_every_s:g}-s batches"
    )
    print(
        f"{'scenario':<10}{'batches':>8}{'readings':>10}{'keys':>8}{'kept':>8}"
        f"{'decode µs/r':>13}{'evaluate µs/r':>15}{'ms/batch':>10}{'to_bytes ms':>13}"
        f"{'MB':>6}{'silence ms':>12}"
    )
    for r in results:
        p = r.replay
        n = max(p.readings, 1)
        print(
            f"{r.scenario.name:<10}{p.batches:>8,}{p.readings:>10,}{p.keys:>8,}{p.kept:>8,}"
            f"{p.decode_s / n * 1e6:13.1f}{p.evaluate_s / n * 1e6:15.1f}"
            f"{p.evaluate_s / max(p.batches, 1) * 1e3:10.2f}{p.to_bytes_s * 1e3:13.1f}"
            f"{p.state_mb:6.1f}{p.silence_s * 1e3:12.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--scenarios", default="pilots,load,high")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--high-rate", type=float, default=1_000.0, help="msg/s of 'high'")
    parser.add_argument("--probe-every-s", type=float, default=0.5)
    parser.add_argument("--settle-timeout-s", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="PILOTS_X=VALUE",
        help="a setting for the alert service (repeatable), e.g. PILOTS_ALERT_EVAL_EVERY_S=0.05",
    )
    parser.add_argument("--bridge", nargs=2, metavar=("PORT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bridge:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        bridge_main(int(args.bridge[0]), args.bridge[1])
        return
    pairs = [item.split("=", 1) for item in args.service_env]
    if any(len(p) != 2 or not p[0].startswith("PILOTS_") for p in pairs):
        parser.error("--service-env takes PILOTS_<SETTING>=<value>")
    args.service_env = dict(pairs)
    every = args.service_env.get("PILOTS_ALERT_EVAL_EVERY_S")
    args.eval_every_s = float(every or Settings.model_fields["alert_eval_every_s"].default)
    if args.service_env:
        shown = " ".join(f"{k}={v}" for k, v in args.service_env.items())
        print(f"alert service settings besides the defaults: {shown}")
    chosen = scenarios([s for s in args.scenarios.split(",") if s], args.devices, args.high_rate)
    workdir = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    results = []
    try:
        for sc in chosen:
            print(f"  {sc.name}: {sc.label} (target {sc.target_per_s:,.2f} msg/s)", flush=True)
            results.append(run_scenario(sc, args, workdir))
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args)


if __name__ == "__main__":
    main()

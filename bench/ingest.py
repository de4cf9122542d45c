"""bench/ingest: how fast ingest moves readings from Mosquitto into InfluxDB, against baselines.

Every variant consumes the same preloaded stream: the consumer's persistent session is created
first, the whole stream is published into the broker's queue for it (QoS 1) while it is away,
and then the consumer connects and the clock runs until it is done. The publisher is thus never
running while anything is measured, so it cannot be the bottleneck; the ceiling receivers show
how fast the broker hands the stream out.

Variants (all QoS 1, same broker and InfluxDB, same run):
  ceiling-mosquitto_sub   mosquitto_sub -q 1 -c, counting messages
  ceiling-paho            a paho-mqtt subscriber with an empty callback (auto acknowledgement)
  naive-bridge            paho + one HTTP /write per message, the tutorial bridge
  ceiling-influx-write    InfluxDB's own /write ceiling: the packs' readings as the line protocol
                          ingest writes, gzip-compressed beforehand, posted in 20,000-line
                          batches from one client (no MQTT, no decoding: influxd's work alone)
  bridge-influxdb-python  the peer a user would write instead: paho + the InfluxDB 1.x client
                          (influxdb-python; influxdb-client needs InfluxDB 1.8+, this is 1.6.7)
                          as its documentation shows, points batched 5,000 to a `write_points`
  ingest-1w / ingest-2w   `pilots ingest`, one or two workers (shared subscription), until every
                          reading is queryable in InfluxDB

Run: `.venv/bin/python -m bench.ingest` (defaults below), or `make bench-ingest`.
With `--outage`, instead streams 10,000 readings/s for 5 minutes while InfluxDB is stopped and
reports ingest's peak RSS, then restarts InfluxDB and checks that every reading arrives.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from localservices import Influxd, Mosquitto, free_port

SINGLE_TOPIC = "pilots/san-nicolas/sn-aq-{n:02d}/up"
PACK_TOPIC = "pilots/san-nicolas/sn-aq-{n:02d}/senml"
ROUTES = ["pilots/+/+/up", "pilots/+/+/senml"]


@dataclass
class Result:
    name: str
    messages: int
    readings: int
    seconds: float
    peak_rss_mb: float | None = None

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds


# -- the stream -------------------------------------------------------------------------------


def single_stream(n: int, start_ms: int) -> list[tuple[str, bytes]]:
    """n plain JSON messages of one reading each, spread over the five air-quality devices."""
    return [
        (
            SINGLE_TOPIC.format(n=1 + i % 5),
            orjson.dumps({"ts": start_ms + i // 5, "readings": {"pm25": float(i % 997)}}),
        )
        for i in range(n)
    ]


def pack_stream(n: int, start_ms: int, per_pack: int = 50) -> list[tuple[str, bytes]]:
    """n SenML packs of `per_pack` readings each (one device, one sensor, one ms apart)."""
    out = []
    for i in range(n):
        device = 1 + i % 5
        base_s = (start_ms + (i // 5) * per_pack) / 1000
        records = [{"bn": f"sn-aq-{device:02d}/", "bt": base_s, "n": "no2", "v": float(i % 97)}]
        records += [
            {"n": "no2", "t": k / 1000, "v": float((i + k) % 97)} for k in range(1, per_pack)
        ]
        out.append((PACK_TOPIC.format(n=device), orjson.dumps(records)))
    return out


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker acknowledges; returns messages per second."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    began = time.perf_counter()
    # In chunks: paho's message ids wrap at 65,535.
    for lo in range(0, len(messages), 30_000):
        infos = [client.publish(t, p, qos=1) for t, p in messages[lo : lo + 30_000]]
        for info in infos:
            info.wait_for_publish(600)
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    return len(messages) / elapsed


def make_session(port: int, client_id: str, filters: list[str], *, v5: bool) -> None:
    """Create a persistent session subscribed to `filters`, then leave it."""
    if v5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        client.connect("127.0.0.1", port)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.loop_start()
    client.subscribe([(f, 1) for f in filters])
    done.wait(10)
    client.disconnect()
    client.loop_stop()


# -- consumers --------------------------------------------------------------------------------


def paho_subscriber(
    name: str,
    port: int,
    messages: list[tuple[str, bytes]],
    handle: Callable[[mqtt.MQTTMessage], None],
) -> Result:
    """A paho 3.1.1 subscriber (auto acknowledgement) draining the preloaded stream."""
    client_id = f"bench-{uuid.uuid4().hex[:6]}"
    make_session(port, client_id, ["pilots/#"], v5=False)
    publish_all(port, messages)
    count = 0
    done = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        nonlocal count
        handle(m)
        count += 1
        if count == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = on_message
    began = time.perf_counter()
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(900)
    elapsed = time.perf_counter() - began
    client.disconnect()
    client.loop_stop()
    return Result(name, len(messages), len(messages), elapsed)


def paho_ceiling(port: int, messages: list[tuple[str, bytes]]) -> Result:
    """The ceiling: a callback that does nothing."""
    return paho_subscriber("ceiling-paho", port, messages, lambda m: None)


def mosquitto_sub_ceiling(port: int, messages: list[tuple[str, bytes]]) -> Result:
    client_id = f"bench-msub-{uuid.uuid4().hex[:6]}"
    make_session(port, client_id, ["pilots/#"], v5=False)
    publish_all(port, messages)
    binary = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
    began = time.perf_counter()
    subprocess.run(
        [
            binary,
            "-p",
            str(port),
            "-q",
            "1",
            "-c",
            "-i",
            client_id,
            "-t",
            "pilots/#",
            "-C",
            str(len(messages)),
        ],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    elapsed = time.perf_counter() - began
    return Result("ceiling-mosquitto_sub", len(messages), len(messages), elapsed)


def naive_bridge(port: int, influx_url: str, messages: list[tuple[str, bytes]]) -> Result:
    """The tutorial bridge: parse, then one blocking HTTP write per message."""
    database = f"naive_{uuid.uuid4().hex[:6]}"
    _influx_query(influx_url, f'CREATE DATABASE "{database}"')
    url = f"{influx_url}/write?db={database}&precision=ms"

    def write_one(m: mqtt.MQTTMessage) -> None:
        doc = json.loads(m.payload)
        device = m.topic.split("/")[2]
        lines = "\n".join(
            f"readings,device={device} {k}={v} {doc['ts']}" for k, v in doc["readings"].items()
        )
        urllib.request.urlopen(urllib.request.Request(url, data=lines.encode()), timeout=10).read()

    return paho_subscriber("naive-bridge", port, messages, write_one)


def influx_write_ceiling(influx_url: str, messages: list[tuple[str, bytes]], per: int) -> Result:
    """InfluxDB alone: the packs' readings as ingest's line protocol, posted by one client.

    The bodies are encoded and compressed before the clock starts, so the figure is what influxd
    takes in (on the cores it shares with nothing else then), the most any writer can reach.
    """
    from core.readings import Readings
    from core.registry import load_registry
    from core.store.lineprotocol import LineEncoder

    registry = load_registry()
    sensor = registry.sensor_list.index(registry.sensors["no2"])
    codes = {d.id: d.code for d in registry.device_list}
    ts: list[int] = []
    devices: list[int] = []
    values: list[float] = []
    for topic, payload in messages:
        records = orjson.loads(payload)
        base = records[0]["bt"]
        code = codes[topic.split("/")[2]]
        for r in records:
            ts.append(round((base + r.get("t", 0)) * 1e9))
            devices.append(code)
            values.append(r["v"])
    readings = Readings.from_arrays(ts, devices, [sensor] * len(ts), values)
    encoder = LineEncoder(registry)
    batch = 20_000
    bodies = [
        gzip.compress(encoder.encode(readings.take(slice(lo, lo + batch))), compresslevel=1)
        for lo in range(0, len(readings), batch)
    ]
    database = f"ceiling_{uuid.uuid4().hex[:6]}"
    _influx_query(influx_url, f'CREATE DATABASE "{database}"')
    address = urllib.parse.urlsplit(influx_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port)
    began = time.perf_counter()
    for body in bodies:
        connection.request(
            "POST",
            f"/write?db={database}&precision=ns",
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )
        response = connection.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"influxd answered {response.status} to a write")
    elapsed = time.perf_counter() - began
    connection.close()
    stored = _influx_count(influx_url, database, "no2")
    if stored != len(readings):
        raise RuntimeError(f"ceiling: {stored} of {len(readings)} readings stored")
    return Result("ceiling-influx-write", len(messages), len(readings), elapsed)


def influxdb_python_bridge(
    name: str, port: int, influx_url: str, messages: list[tuple[str, bytes]], readings: int
) -> Result:
    """paho + influxdb-python, as its documentation shows, batching 5,000 points a write.

    Plain JSON messages and SenML packs are turned into point dicts (`measurement`, `tags`,
    `time`, `fields`) and written with `InfluxDBClient.write_points` once 5,000 are waiting,
    from paho's callback (the documented, synchronous client); the rest when the stream ends.
    No validation, no spool, no deduplication: the bridge's cost is its decoding and the
    client's. Timed until InfluxDB holds every reading.
    """
    from influxdb import InfluxDBClient

    address = urllib.parse.urlsplit(influx_url)
    database = f"peer_{uuid.uuid4().hex[:6]}"
    client = InfluxDBClient(host=address.hostname, port=address.port, database=database)
    client.create_database(database)
    points: list[dict[str, object]] = []

    def flush() -> None:
        client.write_points(points, time_precision="n", batch_size=5_000)
        points.clear()

    def handle(m: mqtt.MQTTMessage) -> None:
        device = m.topic.split("/")[2]
        document = json.loads(m.payload)
        if isinstance(document, list):  # SenML
            base = document[0].get("bt", 0)
            for r in document:
                points.append(
                    {
                        "measurement": "readings",
                        "tags": {"device": device},
                        "time": round((base + r.get("t", 0)) * 1e9),
                        "fields": {r.get("n", "no2"): float(r["v"])},
                    }
                )
        else:
            points.append(
                {
                    "measurement": "readings",
                    "tags": {"device": device},
                    "time": document["ts"] * 1_000_000,
                    "fields": {k: float(v) for k, v in document["readings"].items()},
                }
            )
        if len(points) >= 5_000:
            flush()

    field = "pm25" if messages[0][0].endswith("/up") else "no2"
    result = paho_subscriber(name, port, messages, handle)
    began = time.perf_counter()
    if points:
        flush()
    while _influx_count(influx_url, database, field) < readings:
        if time.perf_counter() - began > 300:
            raise RuntimeError(f"{name}: not every reading arrived")
        time.sleep(0.05)
    client.close()
    seconds = result.seconds + time.perf_counter() - began
    return Result(name, len(messages), readings, seconds)


def _influx_query(url: str, q: str, db: str | None = None) -> dict[str, object]:
    fields = {"q": q, **({"db": db} if db else {})}
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode(fields).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def _influx_count(url: str, database: str, field: str) -> int:
    body = _influx_query(url, f'SELECT count("{field}") FROM "readings"', database)
    try:
        return int(body["results"][0]["series"][0]["values"][0][1])  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return 0


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (ingest's writer is a child)."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            total += sum(_rss_mb(int(child)) for child in children)
    except (OSError, ValueError):
        pass
    return total


def ingest_variant(
    name: str,
    port: int,
    influx_url: str,
    messages: list[tuple[str, bytes]],
    readings: int,
    field: str,
    workers: int,
    workdir: Path,
    protocol: str = "3.1.1",
    *,
    all_connected: bool = False,
) -> Result:
    """`pilots ingest` x `workers` (one shared subscription when more than one) on a preloaded
    queue, timed until InfluxDB holds every reading.

    The clock starts when the first worker is connected, or with `all_connected` when every
    one is (the broker holds a starting worker's share of the queue for it); readings stored
    before the clock starts are not counted.
    """
    database = f"ingest_{uuid.uuid4().hex[:6]}"
    group = f"bench{uuid.uuid4().hex[:4]}" if workers > 1 else None
    ids = [f"bench-ingest-{uuid.uuid4().hex[:6]}" for _ in range(workers)]
    filters = [f"$share/{group}/{f}" if group else f for f in ROUTES]
    for client_id in ids:
        make_session(port, client_id, filters, v5=protocol == "5")
    publish_all(port, messages)
    procs = []
    logs = []
    for i, client_id in enumerate(ids):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")},
            "PILOTS_MQTT_URL": f"mqtt://127.0.0.1:{port}",
            "PILOTS_MQTT_CLIENT_ID": client_id,
            "PILOTS_INFLUX_URL": influx_url,
            "PILOTS_INFLUX_DATABASE": database,
            "PILOTS_DATA_DIR": str(workdir / f"{name}-{i}"),
            "PILOTS_INGEST_HTTP_PORT": str(free_port()),
            "PILOTS_MQTT_PROTOCOL": protocol,
            **({"PILOTS_MQTT_SHARED_GROUP": group} if group else {}),
        }
        log = workdir / f"{name}-{i}.log"
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
    _influx_query(influx_url, f'CREATE DATABASE "{database}"')
    # The clock starts when the first (or every) worker is connected: Python's start-up is not
    # ingest.
    connected = all if all_connected else any
    while not connected("connected to" in log.read_text(errors="replace") for log in logs):
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


def outage_run(workdir: Path, minutes: float, readings_per_s: int) -> None:
    """Stream `readings_per_s` for `minutes` with InfluxDB stopped; report ingest's peak RSS."""
    broker = Mosquitto(free_port(), workdir / "outage-mosquitto", max_queued_messages=10_000_000)
    influxd = Influxd(free_port(), workdir / "outage-influxd")
    broker.workdir.mkdir()
    influxd.workdir.mkdir()
    broker.start()
    influxd.start()
    per_message = 10
    database = "outage"
    _influx_query(influxd.url, f'CREATE DATABASE "{database}"')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")},
        "PILOTS_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
        "PILOTS_MQTT_CLIENT_ID": "bench-outage",
        "PILOTS_INFLUX_URL": influxd.url,
        "PILOTS_INFLUX_DATABASE": database,
        "PILOTS_DATA_DIR": str(workdir / "outage-var"),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
    }
    log = workdir / "outage-ingest.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilots", "ingest"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    while "ingest ready" not in log.read_text(errors="replace"):
        time.sleep(0.05)
    influxd.stop()
    messages_per_s = readings_per_s // per_message
    total = int(minutes * 60 * messages_per_s)
    start_ms = int(time.time() * 1000) - 86_400_000
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-outage-pub")
    publisher.max_inflight_messages_set(1000)
    publisher.max_queued_messages_set(0)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    peak = 0.0
    began = time.perf_counter()
    infos = []
    for m in range(total):
        due = began + m / messages_per_s
        while time.perf_counter() < due:
            time.sleep(max(0.0, min(0.01, due - time.perf_counter())))
        frames = [
            {"ts": start_ms + m * per_message + k, "readings": {"pm25": float(k)}}
            for k in range(per_message)
        ]
        infos.append(publisher.publish(SINGLE_TOPIC.format(n=1), orjson.dumps(frames), qos=1))
        if m % messages_per_s == 0:
            peak = max(peak, _rss_mb(proc.pid))
            if len(infos) > 30_000:
                for info in infos:
                    info.wait_for_publish(60)
                infos = []
    for info in infos:
        info.wait_for_publish(60)
    streamed = time.perf_counter() - began
    peak = max(peak, _rss_mb(proc.pid))
    print(
        f"outage: {total * per_message:,} readings streamed over {streamed:.0f} s "
        f"({total * per_message / streamed:,.0f} readings/s) with InfluxDB stopped; "
        f"ingest peak RSS (with its writer) {peak:.0f} MB",
        flush=True,
    )
    influxd.start()
    recovered = time.perf_counter()
    while _influx_count(influxd.url, database, "pm25") < total * per_message:
        peak = max(peak, _rss_mb(proc.pid))
        time.sleep(0.5)
    print(
        f"outage: InfluxDB back; all {total * per_message:,} readings stored "
        f"{time.perf_counter() - recovered:.0f} s later; peak RSS overall {peak:.0f} MB"
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    publisher.disconnect()
    publisher.loop_stop()
    broker.stop()
    influxd.stop()


# -- reporting --------------------------------------------------------------------------------


@contextmanager
def services(workdir: Path) -> Iterator[tuple[Mosquitto, Influxd]]:
    """A mosquitto with room to queue a whole stream, and an influxd, stopped on the way out."""
    broker = Mosquitto(free_port(), workdir / "mosquitto", max_queued_messages=10_000_000)
    influxd = Influxd(free_port(), workdir / "influxd")
    broker.workdir.mkdir()
    influxd.workdir.mkdir()
    broker.start()
    influxd.start()
    try:
        yield broker, influxd
    finally:
        broker.stop()
        influxd.stop()


def report(results: list[Result], publish_rate: float) -> None:
    print(f"\npublisher (preload, not timed in any variant): {publish_rate:,.0f} msg/s")
    print(
        f"{'variant':<28}{'messages':>10}{'readings':>10}{'seconds':>9}{'msg/s':>11}"
        f"{'readings/s':>12}{'peak RSS':>10}"
    )
    for r in results:
        rss = f"{r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else ""
        print(
            f"{r.name:<28}{r.messages:>10,}{r.readings:>10,}{r.seconds:>9.2f}"
            f"{r.messages_per_s:>11,.0f}{r.readings_per_s:>12,.0f}{rss:>10}"
        )
    by = {r.name: r for r in results}
    paho = by.get("ceiling-paho")
    naive = by.get("naive-bridge")
    write = by.get("ceiling-influx-write")
    for name in ("ingest-1w single", "ingest-2w single"):
        if name in by and paho:
            print(
                f"{name}: {by[name].messages_per_s / paho.messages_per_s:.2f} x the paho ceiling"
                " (target 0.9)"
                + (
                    f", {by[name].messages_per_s / naive.messages_per_s:.0f} x the naive bridge"
                    if naive
                    else ""
                )
            )
    for name in ("ingest-1w senml-50", "ingest-2w senml-50"):
        if name in by and write:
            print(
                f"{name}: {by[name].readings_per_s / write.readings_per_s:.2f} x InfluxDB's "
                "/write ceiling (target 0.5)"
            )
    for label in ("single", "senml-50"):
        peer = by.get(f"bridge-influxdb-python {label}")
        if peer and f"ingest-1w {label}" in by:
            ratio = by[f"ingest-1w {label}"].readings_per_s / peer.readings_per_s
            print(f"ingest-1w {label}: {ratio:.2f} x the influxdb-python bridge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="single-reading messages")
    parser.add_argument("--packs", type=int, default=20_000, help="50-reading SenML packs")
    parser.add_argument("--naive", type=int, default=5_000, help="messages for the naive bridge")
    parser.add_argument("--only", default="", help="comma-separated variant name prefixes")
    parser.add_argument("--outage", action="store_true", help="the memory-through-outage run")
    parser.add_argument("--outage-minutes", type=float, default=5.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    if args.outage:
        try:
            outage_run(workdir, args.outage_minutes, 10_000)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    try:
        with services(workdir) as (broker, influxd):
            start_ms = int(time.time() * 1000) - 86_400_000
            single = single_stream(args.messages, start_ms)
            packs = pack_stream(args.packs, start_ms)
            publish_rate = publish_all(broker.port, single[: min(50_000, len(single))])
            runs: list[tuple[str, Callable[[], Result]]] = [
                ("ceiling-mosquitto_sub", partial(mosquitto_sub_ceiling, broker.port, single)),
                ("ceiling-paho", partial(paho_ceiling, broker.port, single)),
                (
                    "naive-bridge",
                    partial(naive_bridge, broker.port, influxd.url, single[: args.naive]),
                ),
            ]
            runs.append(
                ("ceiling-influx-write", partial(influx_write_ceiling, influxd.url, packs, 50))
            )
            for label, stream, per in (("single", single, 1), ("senml-50", packs, 50)):
                name = f"bridge-influxdb-python {label}"
                runs.append(
                    (
                        name,
                        partial(
                            influxdb_python_bridge,
                            name,
                            broker.port,
                            influxd.url,
                            stream,
                            len(stream) * per,
                        ),
                    )
                )
            for workers in (1, 2):
                for label, stream, per in (("single", single, 1), ("senml-50", packs, 50)):
                    name = f"ingest-{workers}w {label}"
                    field = "pm25" if per == 1 else "no2"
                    runs.append(
                        (
                            name,
                            partial(
                                ingest_variant,
                                name,
                                broker.port,
                                influxd.url,
                                stream,
                                len(stream) * per,
                                field,
                                workers,
                                workdir,
                            ),
                        )
                    )
            runs.append(
                (
                    "ingest-1w single mqtt5",
                    partial(
                        ingest_variant,
                        "ingest-1w single mqtt5",
                        broker.port,
                        influxd.url,
                        single,
                        len(single),
                        "pm25",
                        1,
                        workdir,
                        "5",
                    ),
                )
            )
            wanted = [p for p in args.only.split(",") if p]
            results = []
            for name, run in runs:
                if wanted and not any(name.startswith(p) for p in wanted):
                    continue
                result = run()
                print(f"  {result.name}: {result.readings_per_s:,.0f} readings/s", flush=True)
                results.append(result)
            report(results, publish_rate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

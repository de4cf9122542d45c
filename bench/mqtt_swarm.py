"""bench/mqtt_swarm: many simulated devices, each on its own MQTT 3.1.1 connection, in a few
processes.

Hand-written, not paho: a paho `Client` per device needs a network-loop thread (`loop_start`)
and costs ~34 KB of RSS each (measured here: 1,000 connected clients, 33.7 KB each), so 100,000
devices would be 3.4 GB and 100,000 threads, more than this machine's `kernel.pid_max` (32,768)
lets exist at all. A device here needs five exchanges (CONNECT/CONNACK, PUBLISH at QoS 1/PUBACK,
PINGREQ/PINGRESP, DISCONNECT), so each is a small `asyncio.Protocol` with slots on uvloop: a
socket and about 3 KB of process memory (measured: 100,000 devices in 7 processes, 429 MB),
up to 15,000 per process.

Practical limits it handles:
  source addresses   device i binds its socket to 127.77.x.y, a new address every
                     `Plan.per_address` devices (all of 127.0.0.0/8 is loopback on Linux), so
                     each address needs only that many of the 28,232 ephemeral ports
  descriptors        each process raises its soft `RLIMIT_NOFILE` to the hard limit and holds
                     at most `PER_PROCESS` sockets, below the 20,000 a process may open here
  the listen backlog mosquitto listens with a backlog of 100: each process opens at most
                     `Plan.connect_concurrency` connections at once, waiting for each CONNACK
  the CPU            the processes run at `Plan.nice` 10: real devices do not share the
                     server's cores, so here the system under test gets them first

Publishing (QoS 1, plain JSON `{"ts": ..., "readings": {"pm25": ...}}` on the device's `up`
topic, the format bench/ingest.py's `single_stream` uses):
  realistic   every device one message every `interval_s`, at its own phase in the interval
              (spread evenly over the swarm), `ts` the wall clock in milliseconds
  saturating  every device keeps `window` messages unacknowledged: each PUBACK sends the next,
              so the swarm publishes as fast as the broker takes messages; `ts` counts one
              millisecond per message from a day ago, so no two messages of a device share a
              point in the store
Every device sends PINGREQ when it has sent nothing for half its keepalive.

`Swarm` drives the processes from the caller's process over pipes; every command goes to every
process at once and returns the sums.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import uvloop

#: Devices one process holds at most (sockets, each a descriptor, under the 20,000 here).
PER_PROCESS = 15_000
#: One device's message: a JSON object with its time and one PM2.5 reading.
PAYLOAD = b'{"ts":%d,"readings":{"pm25":%d.5}}'
#: Spreads the devices' phases evenly over the interval (the golden ratio's fraction).
PHI = 0.6180339887498949

CONNACK, PUBACK, PINGRESP = 2, 4, 13
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


@dataclass(frozen=True)
class Plan:
    """Who the devices are and where they connect."""

    devices: int
    #: Brokers' ports; device i connects to `ports[i // per_broker]`.
    ports: tuple[int, ...]
    per_broker: int
    device_id: str = "sw-{i:06d}"
    topic: str = "pilots/san-nicolas/{device}/up"
    host: str = "127.0.0.1"
    keepalive_s: int = 60
    #: Connections per source address (127.77.x.y).
    per_address: int = 4_000
    connect_timeout_s: float = 15.0
    #: Connections a process opens at once (mosquitto's listen backlog is 100).
    connect_concurrency: int = 24
    #: The processes' niceness: real devices do not use the server's CPU, so on one machine
    #: the system under test gets the CPU first and the swarm what is left.
    nice: int = 10

    def port(self, i: int) -> int:
        return self.ports[min(i // self.per_broker, len(self.ports) - 1)]

    def source(self, i: int) -> str:
        block = i // self.per_address
        return f"127.77.{block // 250}.{1 + block % 250}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, keepalive_s: int) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session, no login."""
    cid = client_id.encode()
    body = (
        b"\x00\x04MQTT\x04\x02" + keepalive_s.to_bytes(2, "big") + len(cid).to_bytes(2, "big") + cid
    )
    return b"\x10" + _varint(len(body)) + body


class _RefusedError(ConnectionError):
    """The broker answered CONNACK with a non-zero return code."""


class _Device(asyncio.Protocol):
    """One device: its connection, its message ids and what it has in flight."""

    __slots__ = (
        "alive",
        "buf",
        "connack",
        "index",
        "inflight",
        "last_tx",
        "mid",
        "seq",
        "topic",
        "transport",
        "worker",
    )

    def __init__(self, worker: _Worker, index: int, connack: asyncio.Future[None]) -> None:
        self.worker = worker
        self.index = index
        topic = worker.plan.topic.format(device=worker.plan.device_id.format(i=index)).encode()
        self.topic = len(topic).to_bytes(2, "big") + topic
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[None] | None = connack
        self.buf = b""
        self.alive = False
        self.inflight = 0
        self.mid = 0
        self.seq = 0
        self.last_tx = worker.clock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport; they are one
        self.transport = cast("asyncio.Transport", transport)
        plan = self.worker.plan
        self.transport.write(connect_packet(plan.device_id.format(i=self.index), plan.keepalive_s))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.alive:
            self.worker.lost += 1
        self.alive = False
        if self.connack is not None and not self.connack.done():
            self.connack.set_exception(
                ConnectionError(f"closed by the broker before CONNACK ({exc or 'EOF'})")
            )

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n = len(buf)
        i = 0
        acks = 0
        while i + 2 <= n:
            length, j, shift = 0, i + 1, 0
            while j < n:
                byte = buf[j]
                length |= (byte & 0x7F) << shift
                j += 1
                if byte < 0x80:
                    break
                shift += 7
            else:
                break
            if j + length > n:
                break
            kind = buf[i] >> 4
            if kind == PUBACK:
                acks += 1
            elif kind == CONNACK:
                self._connack(buf[j + 1])
            i = j + length
        self.buf = buf[i:]
        if acks:
            self.worker.acked_by(self, acks)

    def _connack(self, code: int) -> None:
        if self.connack is None or self.connack.done():
            return
        if code == 0:
            self.alive = True
            self.connack.set_result(None)
        else:
            self.connack.set_exception(_RefusedError(f"CONNACK return code {code}"))

    def publish(self, count: int, ts_ms: int | None = None) -> None:
        """Send `count` PUBLISH packets at QoS 1 in one write."""
        if not self.alive or count <= 0 or self.transport is None:
            return
        packets = []
        for _ in range(count):
            self.seq += 1
            self.mid = self.mid % 65_535 + 1
            ts = self.worker.base_ms + self.seq if ts_ms is None else ts_ms
            payload = PAYLOAD % (ts, self.seq % 997)
            body_len = len(self.topic) + 2 + len(payload)
            packets.append(
                b"\x32" + _varint(body_len) + self.topic + self.mid.to_bytes(2, "big") + payload
            )
        self.transport.write(b"".join(packets))
        self.inflight += count
        self.worker.sent += count
        self.last_tx = self.worker.clock

    def ping(self) -> None:
        if self.alive and self.transport is not None:
            self.transport.write(PINGREQ_PACKET)
            self.last_tx = self.worker.clock

    def disconnect(self) -> None:
        if self.transport is not None:
            if self.alive:
                self.transport.write(DISCONNECT_PACKET)
            self.alive = False
            self.transport.close()


class _Worker:
    """The devices of one process and its counters."""

    def __init__(self, plan: Plan, lo: int, hi: int) -> None:
        self.plan = plan
        self.lo, self.hi = lo, hi
        self.devices: list[_Device] = []
        self.clock = time.monotonic()
        self.base_ms = int(time.time() * 1000) - 86_400_000
        self.error = ""
        self.sent = self.acked = self.lost = self.pings = 0
        self.window = 0
        self.saturating = False

    # -- connecting -------------------------------------------------------------------------

    async def connect_all(self) -> dict[str, Any]:
        """Connect every device in order, a few at a time; stop at the first failure."""
        began = time.perf_counter()
        indices = iter(range(self.lo, self.hi))
        runners = [self._connect_some(indices) for _ in range(self.plan.connect_concurrency)]
        await asyncio.gather(*runners)
        self.devices.sort(key=lambda d: d.index)
        return {
            "indices": [d.index for d in self.devices],
            "error": self.error,
            "seconds": time.perf_counter() - began,
        }

    async def _connect_some(self, indices: Iterator[int]) -> None:
        for i in indices:
            if self.error:
                return
            try:
                await asyncio.wait_for(self._open(i), self.plan.connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                what = str(exc) or f"no CONNACK within {self.plan.connect_timeout_s:.0f} s"
                self.error = self.error or f"device {i}: {type(exc).__name__}: {what}"
                return

    async def _open(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        device = _Device(self, i, loop.create_future())
        try:
            await loop.create_connection(
                lambda: device,
                self.plan.host,
                self.plan.port(i),
                local_addr=(self.plan.source(i), 0),
            )
            assert device.connack is not None
            await device.connack
        except BaseException:
            device.disconnect()
            raise
        device.connack = None
        self.devices.append(device)

    def drop(self, count: int) -> dict[str, Any]:
        """Disconnect the last `count` devices (room for other clients at a broker's limit)."""
        gone = self.devices[len(self.devices) - count :] if count else []
        del self.devices[len(self.devices) - len(gone) :]
        for device in gone:
            device.disconnect()
        return {"indices": [d.index for d in self.devices]}

    # -- publishing -------------------------------------------------------------------------

    def _reset(self) -> None:
        self.sent = self.acked = self.lost = self.pings = 0

    def acked_by(self, device: _Device, count: int) -> None:
        device.inflight -= count
        self.acked += count
        if self.saturating:
            device.publish(self.window - device.inflight)

    async def _settle(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the acknowledgements of what was sent (at most `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        alive = sum(1 for d in self.devices if d.alive)
        return {"sent": self.sent, "acked": self.acked, "lost": self.lost, "alive": alive}

    async def saturate(self, start_at: float, until: float, window: int) -> dict[str, Any]:
        """From `start_at` to `until` (wall clock): every device keeps `window` in flight."""
        self._reset()
        self.window = window
        await asyncio.sleep(max(0.0, start_at - time.time()))
        self.saturating = True
        for device in self.devices:
            device.publish(window - device.inflight)
        await asyncio.sleep(max(0.0, until - time.time()))
        self.saturating = False
        return await self._settle(60.0)

    async def realistic(self, start_at: float, until: float, interval_s: float) -> dict[str, Any]:
        """From `start_at` to `until`: each device one message per interval, at its phase."""
        self._reset()
        order = sorted(self.devices, key=lambda d: (d.index * PHI) % 1.0)
        offsets = [((d.index * PHI) % 1.0) * interval_s for d in order]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        k = cycle = 0
        while order:
            now = time.time()
            if now >= until:
                break
            due = now - start_at - cycle * interval_s
            ts_ms = int(now * 1000)
            while k < len(order) and offsets[k] <= due:
                order[k].publish(1, ts_ms)
                k += 1
            if k == len(order):
                k, cycle = 0, cycle + 1
                continue
            await asyncio.sleep(0.005)
        return await self._settle(30.0)

    # -- keepalive and the end ----------------------------------------------------------------

    async def tick(self) -> None:
        """A coarse clock, and PINGREQ for devices quiet for half their keepalive."""
        last_scan = self.clock
        while True:
            await asyncio.sleep(1.0)
            self.clock = time.monotonic()
            if self.clock - last_scan < 5.0:
                continue
            last_scan = self.clock
            quiet = self.clock - self.plan.keepalive_s / 2
            for device in self.devices:
                if device.last_tx < quiet:
                    device.ping()
                    self.pings += 1

    async def close(self) -> dict[str, Any]:
        for device in self.devices:
            device.disconnect()
        await asyncio.sleep(0.5)
        return {"closed": len(self.devices)}


async def _serve(conn: Connection, plan: Plan, lo: int, hi: int) -> None:
    worker = _Worker(plan, lo, hi)
    loop = asyncio.get_running_loop()
    ticker = asyncio.create_task(worker.tick())
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        name, args = command[0], command[1:]
        if name == "connect":
            conn.send(await worker.connect_all())
        elif name == "saturate":
            conn.send(await worker.saturate(*args))
        elif name == "realistic":
            conn.send(await worker.realistic(*args))
        elif name == "drop":
            conn.send(worker.drop(*args))
        elif name == "close":
            ticker.cancel()
            conn.send(await worker.close())
            return


def _worker_main(conn: Connection, plan: Plan, lo: int, hi: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if plan.nice:
        os.nice(plan.nice)
    uvloop.run(_serve(conn, plan, lo, hi))


@dataclass
class Connected:
    """What connecting the swarm did."""

    #: The devices (indices) that connected, in order.
    indices: list[int]
    seconds: float
    #: The first failure of each process that had one ("" if every device connected).
    errors: list[str]


@dataclass
class Published:
    """What one publishing phase did, summed over the processes."""

    sent: int
    acked: int
    #: Connections the broker closed during the phase.
    lost: int
    alive: int


class Swarm:
    """The processes holding the devices of a `Plan`, driven over pipes."""

    def __init__(self, plan: Plan, processes: int | None = None) -> None:
        self.plan = plan
        count = processes or max(1, math.ceil(plan.devices / PER_PROCESS))
        context = mp.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        step = math.ceil(plan.devices / count)
        for lo in range(0, plan.devices, step):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_worker_main,
                args=(child, plan, lo, min(plan.devices, lo + step)),
                daemon=True,
            )
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)
        self._busy = False

    def send(self, *command: object) -> None:
        """Send a command to every process (collect the answers with `results`)."""
        assert not self._busy, "the previous command's results were not collected"
        for pipe in self._pipes:
            pipe.send(command)
        self._busy = True

    def results(self) -> list[dict[str, Any]]:
        answers = [pipe.recv() for pipe in self._pipes]
        self._busy = False
        return answers

    def connect(self) -> Connected:
        """Connect every device (each process stops at its first failure)."""
        self.send("connect")
        answers = self.results()
        return Connected(
            sorted(i for a in answers for i in a["indices"]),
            max(a["seconds"] for a in answers),
            [a["error"] for a in answers if a["error"]],
        )

    def drop(self, count: int) -> list[int]:
        """Disconnect `count` devices (from the end of each process's); returns the others."""
        per = math.ceil(count / len(self._pipes))
        self.send("drop", per)
        return sorted(i for a in self.results() for i in a["indices"])

    def start_saturating(self, start_at: float, until: float, window: int) -> None:
        self.send("saturate", start_at, until, window)

    def start_realistic(self, start_at: float, until: float, interval_s: float) -> None:
        self.send("realistic", start_at, until, interval_s)

    def published(self) -> Published:
        """Wait for the phase to end (every acknowledgement in or a minute) and sum it."""
        answers = self.results()
        return Published(*(sum(a[k] for a in answers) for k in ("sent", "acked", "lost", "alive")))

    def rss_mb(self) -> float:
        """The processes' resident memory together."""
        total = 0.0
        for proc in self._procs:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self._procs]

    def close(self) -> None:
        """DISCONNECT every device and end the processes."""
        if self._busy:
            self.results()
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close",))
        for pipe in self._pipes:
            with contextlib.suppress(EOFError, OSError):
                pipe.recv()
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()

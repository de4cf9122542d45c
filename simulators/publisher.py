"""Publish a fleet's messages to an MQTT broker, in each of the simulator's modes.

- backfill: a past period with its historical timestamps, as fast as the broker acknowledges
  (QoS 1, a wide in-flight window), with a progress bar: message by message as the devices
  send them (`backfill`), or as history packs, a device's six hours in one message
  (`publish_history`, `simulators.history`: days in seconds, as the demo opens);
- real time: wakes every second and sends what fell due;
- fast-forward: simulated time runs N times faster than the wall clock, up to now;
- load: a fleet sized for a target message rate, for a while, reporting the rate achieved.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from core.errors import PilotsError
from core.settings import MqttTarget
from core.timeutil import NS_PER_S
from simulators.fleet import Fleet, Message
from simulators.history import Limits, history

log = logging.getLogger(__name__)

_INFLIGHT = 1000
_TICK_S = 1.0
#: History packs published (and acknowledged) at a time: a stop is seen between two slices.
_HISTORY_SLICE = 500


class PublishError(PilotsError):
    """The broker refused the connection or a publication."""


class Publisher:
    """One MQTT connection that publishes fleet messages at QoS 1."""

    def __init__(self, target: MqttTarget, *, client_id: str | None = None) -> None:
        self.target = target
        self.sent = 0
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pilots-sim-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        if target.username is not None:
            self._client.username_pw_set(target.username, target.password)
        if target.tls:
            self._client.tls_set(ca_certs=target.ca_file)
        self._client.max_inflight_messages_set(_INFLIGHT)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self._refusal = str(reason)
        self._connected.set()

    def connect(self, timeout_s: float = 30.0) -> None:
        """Connect, retrying while the broker is not up yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._client.connect(self.target.host, self.target.port, keepalive=30)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise PublishError(f"cannot reach broker {self.target}: {exc}") from exc
                time.sleep(0.5)
        self._client.loop_start()
        if not self._connected.wait(max(1.0, deadline - time.monotonic())) or self._refusal:
            raise PublishError(f"broker {self.target} refused the connection: {self._refusal}")

    def publish(self, messages: list[Message], timeout_s: float = 120.0) -> int:
        """Publish at QoS 1 and wait until the broker has acknowledged every message."""
        try:
            infos = [self._client.publish(m.topic, m.payload, qos=1) for m in messages]
        except ValueError as exc:  # paho refuses a topic or payload outright
            raise PublishError(f"cannot publish: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        for info in infos:
            # While the connection is down paho keeps QoS 1 messages and sends them once it has
            # reconnected by itself; wait_for_publish would raise at once, so poll instead.
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.005 if info.rc == mqtt.MQTT_ERR_SUCCESS else 0.2)
            if not info.is_published():
                raise PublishError(f"broker {self.target} did not acknowledge in {timeout_s} s")
        self.sent += len(messages)
        return len(messages)

    def close(self) -> None:
        """Disconnect cleanly."""
        self._client.disconnect()
        self._client.loop_stop()


def backfill(
    publisher: Publisher,
    fleet: Fleet,
    start_ns: int,
    end_ns: int,
    *,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Publish `[start_ns, end_ns)` with its historical timestamps, as fast as the broker takes.

    An hour of simulated time at a time; a progress bar on the terminal if asked.
    """
    sent = 0
    chunk = 3600 * NS_PER_S
    hours = max(1, -(-(end_ns - start_ns) // chunk))
    with Progress(
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("h · {task.fields[sent]:,} messages"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("backfill", total=hours, sent=0)
        for lo in range(start_ns, end_ns, chunk):
            if stop is not None and stop.is_set():
                break
            sent += publisher.publish(fleet.messages(lo, min(lo + chunk, end_ns)))
            bar.update(task, advance=1, sent=sent)
    log.info("backfill: %d messages over %.1f h published", sent, (end_ns - start_ns) / chunk)
    return sent


def publish_history(
    publisher: Publisher,
    fleet: Fleet,
    start_ns: int,
    end_ns: int,
    *,
    limits: Limits | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Publish `[start_ns, end_ns)` as history packs (`simulators.history`); messages sent.

    The same readings and faults as `backfill`, in a fraction of the messages: each device's
    reports of six hours in one message, within ingest's `limits`. Real time goes on from
    `end_ns` (`run_realtime(start_ns=end_ns)`), which publishes what the history left to later
    (a gateway's backlog delivered after `end_ns`).
    """
    packs = history(fleet, start_ns, end_ns, limits=limits, now_ns=max(end_ns, time.time_ns()))
    sent = 0
    with Progress(
        TextColumn("history"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("messages"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("history", total=len(packs))
        for lo in range(0, len(packs), _HISTORY_SLICE):
            if stop is not None and stop.is_set():
                break
            sent += publisher.publish(packs[lo : lo + _HISTORY_SLICE])
            bar.update(task, completed=sent)
    log.info(
        "history: %.1f h in %d messages (of %d) published",
        (end_ns - start_ns) / 3600e9,
        sent,
        len(packs),
    )
    return sent


def run_clock(
    publisher: Publisher,
    fleet: Fleet,
    stop: threading.Event,
    *,
    start_ns: int | None = None,
    speed: float = 1.0,
    end_ns: int | None = None,
) -> int:
    """Publish what falls due as simulated time runs `speed` times the wall clock's pace.

    Simulated time starts at `start_ns` (default now) and runs until `stop` is set or it
    reaches `end_ns`.

    Real time is speed 1. Fast-forward never runs ahead of the real clock (ingest refuses
    readings from the future): once it has caught up, it goes on in real time.
    """
    wall0 = time.time_ns()
    last = start_ns if start_ns is not None else wall0
    sim0 = last
    sent = 0
    while not stop.wait(_TICK_S / max(1.0, min(speed, 10.0))):
        wall = time.time_ns()
        # Real time is the wall clock itself: a start in the past (after a backfill, which
        # took a while) is caught up at once rather than lagged behind for good.
        now = wall if speed == 1.0 else min(sim0 + int((wall - wall0) * speed), wall)
        if end_ns is not None:
            now = min(now, end_ns)
        if now > last:
            batch = fleet.messages(last, now)
            if batch:
                sent += publisher.publish(batch)
            last = now
        if end_ns is not None and last >= end_ns:
            break
    return sent


def run_realtime(
    publisher: Publisher, fleet: Fleet, stop: threading.Event, *, start_ns: int | None = None
) -> int:
    """Publish what falls due each second until `stop` is set; returns messages sent."""
    return run_clock(publisher, fleet, stop, start_ns=start_ns)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load run achieved."""

    devices: int
    target_per_s: float
    sent: int
    seconds: float

    @property
    def rate_per_s(self) -> float:
        """Messages the broker acknowledged per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def run_load(
    publisher: Publisher,
    fleet: Fleet,
    stop: threading.Event,
    *,
    target_per_s: float,
    duration_s: float,
    report_every_s: float = 10.0,
) -> LoadResult:
    """Publish a (load) fleet in real time for `duration_s`, logging the rate achieved.

    Messages for the next tick are generated while the broker acknowledges the current one, so
    generation and publishing overlap; when either falls behind, the achieved rate says so.
    """
    tick_ns = int(0.5 * NS_PER_S)
    begin = time.time_ns()
    until = begin + int(duration_s * NS_PER_S)
    sent = 0
    last_report = begin
    sent_at_report = 0
    with ThreadPoolExecutor(1, thread_name_prefix="load-gen") as pool:
        cursor = begin
        ahead: Future[list[Message]] | None = pool.submit(fleet.messages, cursor, cursor + tick_ns)
        while ahead is not None and not stop.is_set():
            batch = ahead.result()
            cursor += tick_ns
            if cursor >= until:
                ahead = None
            else:
                ahead = pool.submit(fleet.messages, cursor, min(cursor + tick_ns, until))
            wait_s = (cursor - time.time_ns()) / NS_PER_S
            if wait_s > 0:
                stop.wait(wait_s)  # a stop still publishes what was generated (and recorded)
            sent += publisher.publish(batch)
            now = time.time_ns()
            if now - last_report >= report_every_s * NS_PER_S:
                rate = (sent - sent_at_report) * NS_PER_S / (now - last_report)
                log.info("load: %.0f messages/s (target %.0f)", rate, target_per_s)
                last_report, sent_at_report = now, sent
        if ahead is not None:  # stopped early: the batch generated ahead goes out too
            sent += publisher.publish(ahead.result())
    seconds = (time.time_ns() - begin) / NS_PER_S
    return LoadResult(len(fleet.devices), target_per_s, sent, seconds)

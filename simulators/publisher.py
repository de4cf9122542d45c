"""Publish a fleet's messages to an MQTT broker: a backfill of the past, then real time.

Backfill sends history with its historical timestamps as fast as the broker acknowledges
(QoS 1, a wide in-flight window). Real time wakes every second and sends what fell due.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.settings import MqttTarget
from core.timeutil import NS_PER_S
from simulators.fleet import Fleet, Message

log = logging.getLogger("pilots.simulate")

_INFLIGHT = 1000
_TICK_S = 1.0


class PublishError(RuntimeError):
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
            self._client.tls_set()
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
        infos = [self._client.publish(m.topic, m.payload, qos=1) for m in messages]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise PublishError(f"broker {self.target} did not acknowledge in {timeout_s} s")
        self.sent += len(messages)
        return len(messages)

    def close(self) -> None:
        """Disconnect cleanly."""
        self._client.disconnect()
        self._client.loop_stop()


def backfill(publisher: Publisher, fleet: Fleet, hours: float, *, now_ns: int | None = None) -> int:
    """Publish the fleet's last `hours` of history, one hour of messages at a time."""
    end = now_ns if now_ns is not None else time.time_ns()
    start = end - int(hours * 3600 * NS_PER_S)
    sent = 0
    chunk = 3600 * NS_PER_S
    for lo in range(start, end, chunk):
        sent += publisher.publish(fleet.messages(lo, min(lo + chunk, end)))
    log.info("backfill: %d messages over %.1f h published", sent, hours)
    return sent


def run_realtime(
    publisher: Publisher, fleet: Fleet, stop: threading.Event, *, start_ns: int | None = None
) -> int:
    """Publish what falls due each second until `stop` is set; returns messages sent."""
    last = start_ns if start_ns is not None else time.time_ns()
    sent = 0
    while not stop.wait(_TICK_S):
        now = time.time_ns()
        batch = fleet.messages(last, now)
        if batch:
            sent += publisher.publish(batch)
        last = now
    return sent

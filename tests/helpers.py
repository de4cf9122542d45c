"""Small helpers for tests that talk to real services."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import TypeVar

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval_s)
        last = check()
    return last


def publish(port: int, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
    """Publish (topic, payload) pairs to a local broker and wait for every acknowledgement."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published(), "the broker did not acknowledge a publication"
    client.disconnect()
    client.loop_stop()
    return len(infos)


def plain(ts_ms: int, readings: dict[str, object], **extra: object) -> bytes:
    """A plain JSON device-contract payload."""
    return orjson.dumps({"ts": ts_ms, "readings": readings, **extra})

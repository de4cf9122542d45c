"""Small helpers for tests that talk to real services."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | Literal[False] | None],
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last = check()
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


class StreamPublisher:
    """Publishes messages at a steady rate from a thread, surviving broker restarts.

    The session is persistent (clean session off, a fixed client id), so paho resends what the
    broker had not acknowledged when the connection dropped. `acked()` gives the indices of the
    messages the broker acknowledged (PUBACK): those the broker is responsible for.
    """

    def __init__(
        self,
        port: int,
        messages: list[tuple[str, bytes]],
        rate_per_s: float,
        host: str = "127.0.0.1",
    ) -> None:
        self.messages = messages
        self.rate_per_s = rate_per_s
        self.infos: list[mqtt.MQTTMessageInfo] = []
        # Message ids the broker acknowledged (ids are unique below 65,536 messages per run).
        self._acked_mids: set[int] = set()
        assert len(messages) < 65_000
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-stream-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)
        # paho annotates whole seconds; its reconnect wait takes a float as well
        self._client.reconnect_delay_set(0.2, 2)  # type: ignore[arg-type]
        self._client.on_publish = lambda c, u, mid, reason, props: self._acked_mids.add(mid)
        self._client.connect(host, port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def sent(self) -> int:
        return len(self.infos)

    def acked(self) -> set[int]:
        # Not info.is_published(): a message published while the connection was down carries
        # rc NO_CONN for good, although paho sends it after reconnecting.
        return {i for i, info in enumerate(self.infos) if info.mid in self._acked_mids}

    def _run(self) -> None:
        start = time.monotonic()
        for index, (topic, payload) in enumerate(self.messages):
            delay = start + index / self.rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.infos.append(self._client.publish(topic, payload, qos=1))

    def start(self) -> StreamPublisher:
        self._thread.start()
        return self

    def wait(self, timeout_s: float) -> None:
        """Until every message is published and acknowledged by the broker."""
        self._thread.join(timeout_s)
        wait_for(lambda: len(self.acked()) == len(self.messages), timeout_s, "every PUBACK")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

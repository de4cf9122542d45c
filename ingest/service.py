"""The ingest service: a paho-mqtt subscriber that stores readings before acknowledging them.

Lifecycle: construct (checks configuration only), `start()` (connects, subscribes, starts the
writer thread), `stop()` (stops taking messages, writes and acknowledges what it holds,
disconnects). The MQTT session is persistent (fixed client id, clean session off) and every
message is QoS 1 with manual acknowledgement, so a message is acknowledged only once its
readings are in the store and its refusals in the quarantine; anything not yet acknowledged
when the process dies is redelivered by the broker.

Two threads: paho's network thread decodes and validates each message and puts it on a bounded
queue (a full queue blocks it, which stops reading from the socket: backpressure, not loss);
the writer thread drains the queue into one store write per batch, then acknowledges.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import StoreError, StoreRejectedError
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store import Store
from ingest.decoders import decoder_for
from ingest.quarantine import Quarantine, QuarantineError, Refused
from ingest.reasons import Reason, Rejection
from ingest.validate import Validator

log = logging.getLogger("pilots.ingest")

_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0


@dataclass(slots=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_ns: int
    readings: Readings
    rejections: list[Rejection]


@dataclass(slots=True)
class IngestStats:
    """Counters since start (read them for logs and tests; metrics come from these)."""

    messages: int = 0
    readings_accepted: int = 0
    readings_written: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    write_retries: int = 0
    batches: int = 0


class IngestService:
    """Subscribe, decode, validate, store, acknowledge (see the module docstring)."""

    def __init__(
        self, settings: Settings, registry: Registry, store: Store, quarantine: Quarantine
    ) -> None:
        self.settings = settings
        self.target = settings.mqtt()
        self.store = store
        self.quarantine = quarantine
        self.validator = Validator(
            registry,
            max_future_s=settings.ingest_max_future_s,
            max_age_days=settings.ingest_max_age_days,
        )
        self.stats = IngestStats()
        self.subscribed = threading.Event()
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=settings.ingest_queue_max)
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.target.username is not None:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying until the broker answers) and start consuming."""
        log.info("ingest connecting to %s as %s", self.target, self.settings.mqtt_client_id)
        self._writer.start()
        self._client.connect_async(
            self.target.host, self.target.port, keepalive=self.settings.mqtt_keepalive_s
        )
        self._client.loop_start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, store and acknowledge those held, then disconnect.

        If the store stays unreachable past the timeout, what is held is left unacknowledged
        and the broker redelivers it to the next session.
        """
        self._stopping.set()
        self._writer.join(timeout_s)
        if self._writer.is_alive():
            log.warning("store unreachable at shutdown; unacknowledged messages stay with broker")
            self._abort.set()
            self._writer.join(5)
        self._client.disconnect()
        self._client.loop_stop()
        log.info(
            "ingest stopped: %d messages, %d readings written, refused %s",
            self.stats.messages,
            self.stats.readings_written,
            dict(self.stats.refused) or "none",
        )

    # -- paho callbacks (network thread) ----------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.target, reason_code)
            return
        log.info("connected to %s (session present: %s)", self.target, flags.session_present)
        client.subscribe(self.settings.mqtt_topic, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused the subscription to %s", self.settings.mqtt_topic)
            return
        log.info("ingest ready: subscribed to %s at QoS 1", self.settings.mqtt_topic)
        self.subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.target, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker redelivers it to the next session
        received_ns = time.time_ns()
        payload = bytes(msg.payload)
        readings, rejections = self._process(msg.topic, payload, received_ns)
        item = _Message(msg.mid, msg.qos, msg.topic, payload, received_ns, readings, rejections)
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                break
            except queue.Full:
                continue

    def _process(
        self, topic: str, payload: bytes, received_ns: int
    ) -> tuple[Readings, list[Rejection]]:
        """Decode and validate one message; never raises."""
        self.stats.messages += 1
        try:
            if len(payload) > self.settings.ingest_max_payload_bytes:
                limit = self.settings.ingest_max_payload_bytes
                detail = f"{len(payload)} bytes, limit {limit} (PILOTS_INGEST_MAX_PAYLOAD_BYTES)"
                return Readings.empty(), [Rejection(Reason.OVERSIZED, detail)]
            decoder = decoder_for(topic)
            if decoder is None:
                return Readings.empty(), [Rejection(Reason.BAD_TOPIC, f"no format for {topic!r}")]
            decoded = decoder(topic, payload)
            checked = self.validator.check(decoded.frames, received_ns)
            return checked.readings, decoded.rejections + checked.rejections
        except Exception as exc:  # a bug must cost one message, never the service
            log.exception("cannot process a message on %s", topic)
            return Readings.empty(), [Rejection(Reason.INTERNAL_ERROR, repr(exc)[:500])]

    # -- writer thread ----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            batch = [first]
            size = len(first.readings)
            while size < self.settings.ingest_batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                size += len(item.readings)
            if not self._flush(batch):
                return

    def _flush(self, batch: list[_Message]) -> bool:
        """Store a batch and acknowledge it; False when shutdown gave up on the store."""
        readings = Readings.concat([m.readings for m in batch])
        refused = [
            Refused(m.received_ns, m.topic, m.payload, r) for m in batch for r in m.rejections
        ]
        delay = _BACKOFF_MIN_S
        while True:
            try:
                self._keep_refused(refused)
                self.store.write(readings)
                break
            except StoreRejectedError as exc:
                # The store refused the data itself: keep every message of the batch, and move on.
                log.error("store refused a batch of %d readings: %s", len(readings), exc)
                refused = [
                    Refused(
                        m.received_ns,
                        m.topic,
                        m.payload,
                        Rejection(Reason.STORE_REJECTED, str(exc)[:500]),
                    )
                    for m in batch
                    if len(m.readings)
                ]
                readings = Readings.empty()
                continue
            except (StoreError, QuarantineError) as exc:
                self.stats.write_retries += 1
                log.warning("write failed, retrying in %.1f s: %s", delay, exc)
            if self._abort.wait(delay * random.uniform(0.5, 1.0)):  # noqa: S311  jitter only
                return False
            delay = min(delay * 2, _BACKOFF_MAX_S)
        for message in batch:
            if message.qos:
                self._client.ack(message.mid, message.qos)
        self.stats.readings_written += len(readings)
        self.stats.readings_accepted += sum(len(m.readings) for m in batch)
        self.stats.batches += 1
        return True

    def _keep_refused(self, refused: list[Refused]) -> None:
        if not refused:
            return
        self.quarantine.add(refused)
        for r in refused:
            self.stats.refused[r.rejection.reason.value] += 1
        log.info("quarantined %d refusals: %s", len(refused), refused[0].rejection.detail)
        refused.clear()

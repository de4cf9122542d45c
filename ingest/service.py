"""The ingest service: MQTT in, spool, store out; nothing lost, nothing doubled.

Two stages, joined by the spool (`ingest.spool`):

- the **receiver** (this module) runs the MQTT session on one thread of its own: it reads the
  messages the broker sends, commits each group of them to the spool in one transaction, and
  only then acknowledges them. Reading, committing and acknowledging on one thread is what lets
  it keep up with the broker: there is no hand-off between threads, and so no contention for
  the interpreter lock, on the path to the acknowledgement.
- the **writer** (`ingest.writer`) decodes, validates and writes the spooled messages to the
  store, in a child process (`PILOTS_INGEST_WRITER=process`, the default, using the second
  core) or a thread.

The MQTT session is persistent (a fixed client id; 3.1.1 with clean session off, or MQTT 5 with
clean start off and a session expiry) and every subscription is QoS 1 with manual
acknowledgement. The broker's in-flight window (Mosquitto's `max_inflight_messages`, or the MQTT 5
receive maximum) bounds what the receiver holds unacknowledged. While the spool is over
`PILOTS_INGEST_SPOOL_MAX_BYTES` the receiver commits nothing and so acknowledges nothing: the
broker keeps the rest.

With a shared group (`PILOTS_MQTT_SHARED_GROUP`) the workers keep a presence on the broker and
a live worker adopts the session of one that stays absent (`ingest.members`,
`ingest.adoption`): the broker assigns a shared message to a member's session even while the
member is away, and without adoption that share would wait for the member to come back.

Lifecycle: construct (checks configuration, opens the spool), `start()` (the writer first, so
messages left in the spool by a previous run are written oldest first; then the broker),
`stop()` (stops reading, commits and acknowledges what it holds, disconnects, lets the writer
drain the spool for up to `PILOTS_INGEST_STOP_TIMEOUT_S`; what is left stays for the next start).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import ConfigError
from core.quarantine import KEY_SPACING_NS
from core.registry import Registry
from core.reload import Watched, watch_registry
from core.settings import Settings
from core.store import open_store
from ingest.adoption import Adoption
from ingest.decoders import Router
from ingest.members import (
    PRESENCE_EVERY_S,
    Members,
    Presence,
    State,
    is_presence,
    new_epoch,
    presence_filter,
    presence_topic,
    valid_member,
)
from ingest.metrics import Health, HttpEndpoint, IngestMetrics, MetricEvents, make_app
from ingest.session import connect_session, granted, session_client
from ingest.spool import DATABASE, Spool, SpoolError
from ingest.writer import BACKOFF_MAX_S, SpoolWriter, start_store
from ingest.writer_process import HELD_AT_SPAWN, Tally, writer_process

log = logging.getLogger(__name__)

#: How long the receiver waits on the socket when idle, and so how long a lone message waits
#: before it is committed and acknowledged.
_LOOP_TIMEOUT_S = 0.01
#: Commit at least this often while messages keep arriving.
_COMMIT_EVERY_S = 0.05
#: The spool's size is checked before every commit (two PRAGMAs): a drain of thousands of
#: messages a second must not overshoot PILOTS_INGEST_SPOOL_MAX_BYTES between checks.
_FULL_CHECK_S = 0.0


class IngestService:
    """Receive, spool, acknowledge; the writer stores (see the module docstring)."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.target = settings.mqtt()
        self.client_id = settings.mqtt_client_name()
        self.router = Router(settings.ingest_routes)
        self.metrics = IngestMetrics()
        self.health = Health(settings.ingest_unhealthy_after_s)
        self.events = MetricEvents(self.metrics, self.health)
        self.spool = Spool(settings.data_dir / DATABASE)
        self.subscribed = threading.Event()
        # (client, mid, qos, received_ns, topic, payload) of messages read but not yet
        # committed; the client is this worker's own, or an adopted session's
        self._pending: list[tuple[mqtt.Client, int, int, int, str, bytes]] = []
        self._pending_since = 0.0
        self._last_received_ns = 0
        self._received = 0
        self._counted = 0
        self._connected = False
        self._stopping = threading.Event()
        self._draining = multiprocessing.get_context("spawn").Event()
        self._abort = multiprocessing.get_context("spawn").Event()
        self._spool_full = False
        self._full_checked = 0.0
        self.group = settings.mqtt_shared_group
        if self.group and not valid_member(self.client_id):
            raise ConfigError(
                f"PILOTS_MQTT_CLIENT_ID {self.client_id!r}: in a shared group a worker's client id "
                "names its presence topic; use letters, digits and . _ @ - (at most 128)"
            )
        self.epoch = new_epoch()
        self.members = Members(self.client_id, settings.ingest_adopt_after_s)
        self._members_lock = threading.Lock()  # the HTTP thread reads what the receiver writes
        self._presence_at = 0.0
        self._adoption: Adoption | None = None
        self._client = self._make_client()
        self._network = threading.Thread(target=self._network_loop, name="ingest-mqtt", daemon=True)
        self._writer: Any = None
        #: The thread writer's registry watch (the writer process keeps its own).
        self._watch: Watched[Registry] | None = None
        self._events_reader: threading.Thread | None = None
        if self.group:
            self.health.group = self.group_view
            self.metrics.watch_members(self._absent_members)
        self._http = HttpEndpoint(
            settings.ingest_http_host,
            settings.ingest_http_port,
            make_app(self.metrics, self.health),
        )
        self._export_spool_gauges()

    @property
    def http_port(self) -> int:
        """The port of /metrics and /health (useful when configured as 0: any free port)."""
        return self._http.port

    def _export_spool_gauges(self) -> None:
        def oldest_age() -> float:
            oldest = self.spool.depth().oldest_ns
            return 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)

        self.metrics.spool_messages.set_function(lambda: float(self.spool.depth().messages))
        self.metrics.spool_bytes.set_function(lambda: float(self.spool.used_bytes()))
        self.metrics.spool_age.set_function(oldest_age)

    def _make_client(self) -> mqtt.Client:
        client = session_client(self.settings, self.target, self.client_id, self.target.username)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        if self.group:
            # published by the broker if this connection ends without a DISCONNECT
            absent = Presence(self.client_id, "absent", self.epoch)
            client.will_set(self._presence_topic, absent.encode(), qos=1, retain=True)
        return client

    # -- the shared group -------------------------------------------------------------------------

    @property
    def _presence_topic(self) -> str:
        return presence_topic(self.group or "", self.client_id)

    def group_view(self) -> dict[str, dict[str, object]]:
        """The group's members as this worker sees them (for /health)."""
        with self._members_lock:
            return self.members.view(time.monotonic())

    def _absent_members(self) -> dict[str, float]:
        now = time.monotonic()
        with self._members_lock:
            return {name: m.absent_for(now) for name, m in self.members.absent(now).items()}

    def _announce(self, state: State = "online") -> None:
        if not self.group:
            return
        presence = Presence(self.client_id, state, self.epoch)
        self._client.publish(self._presence_topic, presence.encode(), qos=1, retain=True)
        self._presence_at = time.monotonic()

    def _tend_group(self) -> None:
        """Repeat this worker's presence; start, drive and finish adoptions."""
        if not self.group or not self._connected:
            return
        now = time.monotonic()
        if now - self._presence_at >= PRESENCE_EVERY_S:
            # repeated whenever connected, even if a subscription was refused: a live worker
            # must never look silent to the others
            self._announce()
        if not self.subscribed.is_set():
            return
        adoption = self._adoption
        if adoption is None:
            with self._members_lock:
                due = self.members.due(now)
            if due:
                self._adoption = Adoption(
                    due[0],
                    settings=self.settings,
                    target=self.target,
                    own_client_id=self.client_id,
                    # the owner subscribes to all of them again when it comes back
                    filters=[*self._shared_filters(), presence_filter(self.group)],
                    on_message=self._on_adopted_message,
                )
                self._adoption.start()
            return
        adoption.loop()
        if adoption.outcome is None:
            return
        # what it read and did not commit goes back to the session it came from
        self._pending = [p for p in self._pending if p[0] is not adoption.client]
        self.metrics.adoptions.labels(adoption.outcome).inc()
        with self._members_lock:
            self.members.finished(
                adoption.due,
                drained=adoption.outcome == "drained",
                messages=adoption.acked,
                now=time.monotonic(),
            )
        self._adoption = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (spooled messages first), then the broker connection."""
        depth = self.spool.depth()
        if depth.messages:
            log.info("spool holds %d messages from before; writing them first", depth.messages)
        self._http.start()
        self._start_writer()
        log.info(
            "ingest connecting to %s as %s (MQTT %s); metrics and health on http://%s:%d",
            self.target,
            self.client_id,
            self.settings.mqtt_protocol,
            self.settings.ingest_http_host,
            self.http_port,
        )
        self._network.start()

    def _start_writer(self) -> None:
        if self.settings.ingest_writer == "thread":
            self._watch = watch_registry(
                self.settings.registry,
                every_s=self.settings.alert_reload_every_s,
                value=self.registry,
            )
            self._writer = threading.Thread(
                target=self._writer_thread, name="ingest-writer", daemon=True
            )
            self._writer.start()
            return
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        self._writer = context.Process(
            target=writer_process,
            args=(self.settings, send, self._draining, self._abort, os.getpid()),
            name="pilots-ingest-writer",
            daemon=True,
        )
        # The child inherits this thread's signal mask: a stop signal sent to the whole group
        # while it starts stays pending until `writer_process` ignores it (a stop is ours to
        # order), and a SIGHUP until it handles it; here they are only delayed, never lost.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_AT_SPAWN)
        try:
            self._writer.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        send.close()
        self._events_reader = threading.Thread(
            target=self._read_events, args=(receive,), name="ingest-events", daemon=True
        )
        self._events_reader.start()

    def reload_registry(self) -> None:
        """Have the writer look at the registry file now (for SIGHUP), not at its next look.

        The receiver itself needs no registry (its subscriptions are the routes): the writer,
        which decodes and validates, takes a valid new one between two batches.
        """
        if self._watch is not None:
            self._watch.request()
            return
        pid = getattr(self._writer, "pid", None)
        if pid is not None and self._writer.is_alive():
            os.kill(pid, signal.SIGHUP)

    def _writer_thread(self) -> None:
        store = open_store(self.settings, self.registry)
        spool = Spool(self.settings.data_dir / DATABASE)
        writer: SpoolWriter | None = None
        try:

            def nothing_to_write() -> bool:
                return self._draining.is_set() and spool.depth().messages == 0

            if not start_store(store, self.events, self._abort, nothing_to_write):
                return
            writer = SpoolWriter(
                spool,
                store,
                settings=self.settings,
                registry=self.registry,
                events=self.events,
                abort=self._abort,
                watch=self._watch,
            )
            writer.run(draining=self._draining.is_set)
        finally:
            if writer is not None:
                writer.close()
            spool.close()
            store.close()

    def _read_events(self, conn: Any) -> None:
        while True:
            try:
                tally: Tally = conn.recv()
            except (EOFError, OSError):
                return
            tally.replay_into(self.events)

    def stop(self) -> None:
        """Stop reading, spool and acknowledge what is held, disconnect, drain the spool."""
        deadline = time.monotonic() + self.settings.ingest_stop_timeout_s
        self._stopping.set()
        self._network.join(max(1.0, deadline - time.monotonic()))
        self._draining.set()
        self._writer.join(max(0.1, deadline - time.monotonic()))
        if self._writer.is_alive():
            self._abort.set()
            self._writer.join(15)
        if self._writer.is_alive() and hasattr(self._writer, "terminate"):
            self._writer.terminate()
        left = self.spool.depth().messages
        if left:
            log.warning(
                "the spool was not drained within PILOTS_INGEST_STOP_TIMEOUT_S: %d messages "
                "stay in it for the next start",
                left,
            )
        if self._events_reader is not None:
            self._events_reader.join(5)
        self._http.stop()
        log.info(
            "ingest stopped: %d messages, %d readings written, %d duplicates dropped",
            int(self.metrics.value("pilots_ingest_messages_total")),
            int(self.metrics.value("pilots_ingest_readings_written_total")),
            int(self.metrics.value("pilots_ingest_duplicates_total")),
        )
        self.spool.close()

    # -- the receiver's thread --------------------------------------------------------------------

    def _network_loop(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            if not self._connected and not self._connect():
                if self._stopping.wait(delay):
                    break
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = 1.0
            before = self._received
            rc = self._client.loop(timeout=_LOOP_TIMEOUT_S)
            self._tend_group()
            # Nothing arrived during this turn: the socket is quiet, commit what is pending.
            self._maybe_commit(quiet=self._received == before)
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                self._lost(f"{mqtt.error_string(rc)}")
        self._shutdown_session()

    def _connect(self) -> bool:
        try:
            connect_session(self._client, self.settings, self.target)
        except (OSError, ValueError) as exc:
            log.warning("cannot reach the broker %s: %s", self.target, exc)
            return False
        self._connected = True
        return True

    def _lost(self, why: str) -> None:
        # Unacknowledged messages are the broker's again: it redelivers them to this session.
        self._pending = [p for p in self._pending if p[0] is not self._client]
        was_connected, self._connected = self._connected, False
        self.subscribed.clear()
        self.health.broker(False)
        self.metrics.broker_up.set(0)
        if was_connected and not self._stopping.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self.target, why)

    def _shutdown_session(self) -> None:
        if self._connected:
            self._maybe_commit(force=True)
            if self._adoption is not None:
                self._adoption.close()
            # others see this worker stopped, and adopt its session if it stays away
            self._announce("stopped")
            self._client.disconnect()
            for _ in range(10):  # let the acknowledgements and the DISCONNECT go out
                if self._client.loop(timeout=0.01) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._connected = False

    def _maybe_commit(self, *, quiet: bool = False, force: bool = False) -> None:
        """Commit and acknowledge what is pending when the socket is quiet or enough waited.

        Committing many messages at once makes one spool transaction (one fsync) serve them
        all; under load the group grows by itself, idle a message waits one loop turn.
        """
        pending = self._pending
        if not pending:
            return
        due = time.monotonic() - self._pending_since >= _COMMIT_EVERY_S
        if not (force or quiet or due or len(pending) >= self.settings.ingest_commit_max):
            return
        if not self._room_in_spool():
            return
        try:
            self.spool.append(
                [(received, topic, payload) for _, _, _, received, topic, payload in pending]
            )
        except SpoolError as exc:
            log.error("cannot commit to the spool, retrying: %s", exc)
            self._stopping.wait(0.5)
            return
        adopted = self._adoption.client if self._adoption is not None else None
        took = 0
        for client, mid, qos, *_ in pending:
            if qos:
                client.ack(mid, qos)
            if client is adopted:
                took += 1
        if took and self._adoption is not None:
            self._adoption.took(took)
            self.metrics.adopted.labels(self._adoption.member).inc(took)
        self.metrics.messages.inc(self._received - self._counted)
        self._counted = self._received
        self.metrics.acked.inc(len(pending))
        pending.clear()

    def _room_in_spool(self) -> bool:
        now = time.monotonic()
        if now - self._full_checked >= _FULL_CHECK_S:
            self._full_checked = now
            full = self.spool.used_bytes() >= self.settings.ingest_spool_max_bytes
            if full != self._spool_full:
                self._spool_full = full
                self.health.spool_full = full
                self.metrics.spool_full.set(int(full))
                if full:
                    log.warning(
                        "spool full (PILOTS_INGEST_SPOOL_MAX_BYTES): acknowledgements stop until "
                        "the store takes more; the broker keeps the messages"
                    )
                else:
                    log.info("spool has room again; acknowledging")
        return not self._spool_full

    # -- paho callbacks (on the receiver's thread) ------------------------------------------------

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
        self.health.broker(True)
        self.metrics.broker_up.set(1)
        log.info("connected to %s (session present: %s)", self.target, flags.session_present)
        subscriptions = [(topic_filter, 1) for topic_filter in self._shared_filters()]
        if self.group:
            with self._members_lock:
                self.members.reset()
            self._announce()
            subscriptions.append((presence_filter(self.group), 0))
        client.subscribe(subscriptions)

    def _shared_filters(self) -> list[str]:
        group = self.group
        return [
            f"$share/{group}/{topic_filter}" if group else topic_filter
            for topic_filter in self.router.topic_filters
        ]

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if granted(reason_codes, "ingest", self.router.topic_filters):
            self.subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._lost(str(reason_code))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.group and is_presence(msg.topic, self.group):
            if msg.qos:  # also routed (a route as wide as `#`): nothing to spool
                client.ack(msg.mid, msg.qos)
            member = msg.topic.rsplit("/", 1)[-1]
            presence = Presence.parse(msg.topic, bytes(msg.payload)) if msg.payload else None
            if presence is not None or not msg.payload:
                with self._members_lock:
                    self.members.heard(presence, member, time.monotonic())
            return
        self._take(client, msg)

    def _on_adopted_message(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> bool:
        """Take a message of an adopted session; False for its presence subscription's."""
        if self.group and is_presence(msg.topic, self.group):
            if msg.qos:
                client.ack(msg.mid, msg.qos)
            return False
        self._take(client, msg)
        return True

    def _take(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        # Receive times of one worker are spaced so that quarantine keys never meet
        # (`core.quarantine.KEY_SPACING_NS`); the shift is nanoseconds, even in bursts.
        received_ns = max(time.time_ns(), self._last_received_ns + KEY_SPACING_NS)
        self._last_received_ns = received_ns
        self._pending.append((client, msg.mid, msg.qos, received_ns, msg.topic, bytes(msg.payload)))
        self._received += 1  # counted into the metric at the next commit, not per message

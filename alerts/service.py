"""The alert service: device messages in, alarms and notifications out, nothing lost.

One process (`pilots alerts run`) evaluates every reading once, however many ingest workers
share the fleet: it keeps an MQTT session of its own (`PILOTS_ALERT_SESSION_ID`, persistent,
QoS 1, acknowledged by hand) on the same device topics as ingest, not in ingest's shared group,
so the broker gives it a copy of every message. It decodes and validates them with ingest's own
decoders and checks (`ingest.process`), so it sees the readings ingest stores.

One thread does everything. Every `PILOTS_ALERT_EVAL_EVERY_S` (or sooner when many messages
wait) it evaluates the messages received since (`core.alerts.Evaluator`, by device time), adds
the events' notifications to the outbox (`alerts.outbox`: committed, idempotent by key) and
records the events in the alarm store (`alerts.store`, idempotent by alarm id). Every
`PILOTS_ALERT_CHECKPOINT_EVERY_S` (or when the broker's in-flight window is nearly used) it
saves the evaluator's state with the evaluated messages' digests in one transaction, and only
then acknowledges those messages to the broker.

A crash (`kill -9`) anywhere leaves a consistent record: the broker redelivers every message
not yet acknowledged, and they are evaluated again from the last saved state, giving the same
events with the same deterministic ids, which the outbox and the alarm store already hold (a
notification added before the crash is sent after it, with the same key). A message
acknowledged is one whose evaluation was saved; one redelivered after its evaluation was saved
(the crash fell between the save and the acknowledgement) carries MQTT's DUP flag and its
digest is known: it is only acknowledged. The dispatcher (`alerts.outbox.Dispatcher`) sends
what the outbox holds, after a restart too.

Silent devices are judged on the clock every `PILOTS_ALERT_SILENCE_EVERY_S`. The rules file
(`PILOTS_ALERT_RULES`) and the registry (`PILOTS_REGISTRY`) are looked at every
`PILOTS_ALERT_RELOAD_EVERY_S` (and at once on SIGHUP): a changed file is loaded and checked,
and only then replaces the running rules between two batches, the state carried over (rows of
removed rules or devices dropped); a bad file is refused with its reason and the old rules
keep working.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alerts.channels import enabled_channels
from alerts.health import HealthWatch
from alerts.late import Merged, bound_late, merged_words
from alerts.message import Notification, notification_for
from alerts.outbox import Dispatcher, Outbox
from alerts.retire import retired, retired_words
from alerts.store import DATABASE, AlarmStore
from core.alerts import AlertEvent, AlertState, AlertStateError, Evaluator, Rule, load_rules
from core.alerts.rules import SYSTEM_PILOT, UNHEALTHY
from core.durable import exclusive
from core.errors import PilotsError
from core.registry import Registry, load_registry
from core.reload import Watched, registry_change, registry_path
from core.settings import Settings
from core.timeutil import NS_PER_S
from ingest.decoders import Router
from ingest.dedupe import FrameCache
from ingest.process import columns, process
from ingest.session import connect_session, granted, session_client
from ingest.validate import Checked, Validator

log = logging.getLogger(__name__)

#: Most messages held unacknowledged before an evaluation is forced.
HOLD_MAX = 5_000
#: The longest the thread sleeps waiting for the broker (shorter with a shorter evaluation period).
_LOOP_TIMEOUT_S = 0.05
_BACKOFF_MAX_S = 30.0
#: A connection the broker closes within this many seconds counts towards the back-off.
_SHORT_LIVED_S = 10
#: How often the counts of readings not evaluated are logged, and how many kinds are named.
_REFUSALS_EVERY_S = 60.0
_TOLD_MAX = 100
#: The lock file that keeps a second alert service off the same data directory.
SERVICE_LOCK = DATABASE + ".service.lock"


class AlertServiceError(PilotsError):
    """The alert service cannot run as configured."""


@dataclass(frozen=True, slots=True)
class Rules:
    """The registry and rules in force, and the evaluator built from them."""

    registry: Registry
    rules: tuple[Rule, ...]
    evaluator: Evaluator
    #: A hash of the files they came from: the same files give the same rules.
    digest: bytes = b""


def load(settings: Settings) -> Rules:
    """Load and check the registry and the rules (a `PilotsError` says what is wrong)."""
    paths = [registry_path(settings.registry)]
    if settings.alert_rules is not None:
        paths.append(settings.alert_rules)
    h = hashlib.blake2b(digest_size=16)
    for path in paths:
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\x00missing")
    registry = load_registry(settings.registry)
    rules = load_rules(settings.alert_rules, registry)
    try:
        evaluator = Evaluator(rules, registry, late_after_s=settings.alert_late_after_s)
    except ValueError as exc:
        raise PilotsError(f"alert rules refused: {exc}") from exc
    return Rules(registry, rules, evaluator, h.digest())


def digest(topic: str, payload: bytes) -> bytes:
    """What recognises a message redelivered after it was evaluated."""
    h = hashlib.blake2b(digest_size=16)
    h.update(topic.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update(payload)
    return h.digest()


@dataclass(slots=True)
class _Held:
    client: mqtt.Client
    mid: int
    qos: int
    dup: bool
    received_ns: int
    topic: str
    payload: bytes


class AlertService:
    """Evaluate, record, notify (see the module docstring).

    Lifecycle: construct (opens the stores, loads the rules and the saved state), `start()`
    (the dispatcher, then the broker on a thread of its own), `stop()` (evaluates and
    acknowledges what it holds, disconnects, stops the dispatcher).
    """

    def __init__(self, settings: Settings, *, clock: Any = time.time_ns) -> None:
        self.settings = settings
        self.clock = clock
        paths = [registry_path(settings.registry)]
        if settings.alert_rules is not None:
            paths.append(settings.alert_rules)
        self._watch: Watched[Rules] = Watched(
            paths,
            lambda: load(settings),
            name="alert rules and registry",
            every_s=settings.alert_reload_every_s,
        )
        self.config = self._watch.load()
        self._to_retire: list[tuple[Rules, Rules]] = []
        self._lock_file = self._take_lock()
        self.store = AlarmStore.from_settings(settings)
        channels = enabled_channels(settings)
        self.outbox: Outbox | None = None
        self.dispatcher: Dispatcher | None = None
        if channels:
            self.outbox = Outbox.from_settings(settings, [c.name for c in channels])
            self.dispatcher = Dispatcher.from_settings(settings, self.outbox, channels)
        self.state = self._saved_state()
        self.health = HealthWatch(
            self.config.rules, clock=clock, every_s=settings.alert_health_every_s
        )
        self.health.adopt(a for a in self.store.active() if a.pilot == SYSTEM_PILOT)
        #: Events made by the clock or a reload, not by messages: a rewind does not make them again.
        self._clock_events: list[AlertEvent] = []
        self._clock_notes: list[Notification] = []
        self._refusals: Counter[str] = Counter()
        self._refusals_told: set[str] = set()
        self._refusals_at = time.monotonic()
        self.router = Router(settings.ingest_routes)
        self._frames = FrameCache(settings.ingest_dedupe_window_s * NS_PER_S)
        self.validator = self._validator(self.config.registry)
        self._init_evaluation()
        #: Readings and messages evaluated, events recorded, silence checks run, since start.
        self.evaluated = 0
        self.messages = 0
        self.silence_checks = 0
        self.events = 0
        self.reloads = 0
        #: Messages the evaluator failed on (a bug), skipped.
        self.skipped = 0
        self._init_session()

    def _init_evaluation(self) -> None:
        """What is held, evaluated and not yet saved, and when each step is due."""
        self._silence_at = time.monotonic()
        self._held: list[_Held] = []
        self._held_since = 0.0
        #: Evaluated, not yet saved: what to acknowledge once saved (payloads are not kept).
        self._done: list[tuple[mqtt.Client, int, int]] = []
        self._digests: list[bytes] = []
        self._unrecorded: list[AlertEvent] = []
        self._merged: dict[str, Merged] = {}
        self._dirty = False
        self._saved_at = time.monotonic()
        self._ack_at = max(1, min(HOLD_MAX, self.settings.mqtt_receive_maximum * 4 // 5))

    def _init_session(self) -> None:
        """The MQTT client of the service's own session, and its thread (not started)."""
        settings = self.settings
        self.target = settings.mqtt(settings.alert_session_id)
        self._loop_timeout_s = min(_LOOP_TIMEOUT_S, settings.alert_eval_every_s / 2)
        self._connected = False
        self._connected_at = 0.0
        self._quick_losses = 0
        self._stopping = threading.Event()
        self.subscribed = threading.Event()
        self._client = session_client(
            settings, self.target, settings.alert_session_id, self.target.username
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)

    def _take_lock(self) -> IO[str]:
        lock = exclusive(Path(self.settings.data_dir) / SERVICE_LOCK)
        if lock is None:
            raise AlertServiceError(
                f"another alert service is running on {self.settings.data_dir} "
                "(PILOTS_DATA_DIR): run one alert service"
            )
        return lock

    # --- setup ----------------------------------------------------------------------------

    def _validator(self, registry: Registry) -> Validator:
        return Validator(
            registry,
            max_future_s=self.settings.ingest_max_future_s,
            max_age_days=self.settings.ingest_max_age_days,
            frames=self._frames,
        )

    def _saved_state(self) -> AlertState:
        raw = self.store.saved_state()
        if raw is None:
            return AlertState.empty()
        try:
            return AlertState.from_bytes(raw)
        except AlertStateError as exc:
            log.error(
                "the saved alert state is unreadable (%s); starting without it: open alarms "
                "are forgotten and windows start empty",
                exc,
            )
            return AlertState.empty()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> AlertService:
        """Start the dispatcher and the evaluation thread."""
        if self.dispatcher is not None:
            self.dispatcher.start()
        self.health.start()
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Evaluate what is held, disconnect, stop the dispatcher, close the stores."""
        self._stopping.set()
        self.health.stop()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._record_clock_safely()
        if self.dispatcher is not None:
            self.dispatcher.stop(timeout_s)
        if self.outbox is not None:
            self.outbox.close()
        self.store.close()
        self._lock_file.close()

    def reload(self) -> None:
        """Look at the rules and registry files at the next turn (what SIGHUP does)."""
        self._watch.request()

    # --- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            if not self._connected and self._quick_losses and not self._back_off():
                break
            if not self._connected and not self._connect():
                # the broker away: health events (ingest is likely unhealthy too) still go out
                waited = 0.0
                while waited < delay and not self._stopping.wait(min(1.0, delay - waited)):
                    self._record_clock_safely()
                    waited += 1.0
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            delay = 1.0
            rc = self._client.loop(timeout=self._loop_timeout_s)
            try:
                self._turn()
            except PilotsError as exc:  # a store that cannot be written: hold, retry
                log.error("alerts not recorded, will retry: %s", exc)
                self._stopping.wait(1.0)
            except Exception:  # a bug: say so, keep what is held, try again
                log.exception("alert evaluation failed, will retry")
                self._stopping.wait(1.0)
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                self._lost(mqtt.error_string(rc))
        self._shutdown()
        self._connected = False

    def _back_off(self) -> bool:
        """Wait before connecting again; False if stopped meanwhile.

        The broker closed the last connections soon after they were made: another client on
        this session id takes it over each time (a second alert service), and connecting at
        once would take it back, endlessly.
        """
        wait = min(_BACKOFF_MAX_S, 2.0 ** (self._quick_losses - 1))
        if self._quick_losses >= 3:
            log.error(
                "the broker closed this session's connection %d times within %d s of connecting: "
                "is another client using the session id %r (PILOTS_ALERT_SESSION_ID, a second "
                "alert service?); connecting again in %.0f s",
                self._quick_losses,
                _SHORT_LIVED_S,
                self.settings.alert_session_id,
                wait,
            )
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            if self._stopping.wait(min(1.0, left)):
                return False
            self._record_clock_safely()
        return True

    def _shutdown(self) -> None:
        if not self._connected:
            return
        try:
            self.flush()
        except PilotsError as exc:
            log.error("alerts at stop not recorded (redelivered at the next start): %s", exc)
        self._client.disconnect()
        for _ in range(10):  # let the acknowledgements and the DISCONNECT go out
            if self._client.loop(timeout=0.01) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def _turn(self) -> None:
        now = time.monotonic()
        self._maybe_reload()
        if self._held and (
            len(self._held) >= self._ack_at
            or now - self._held_since >= self.settings.alert_eval_every_s
        ):
            self._evaluate_held()
        if now - self._silence_at >= self.settings.alert_silence_every_s:
            self._silence_at = now
            self._silence()
        self._record_events()
        self._record_clock()
        self._retire_pending()
        if self._dirty and (
            len(self._done) >= self._ack_at
            or now - self._saved_at >= self.settings.alert_checkpoint_every_s
        ):
            self._checkpoint()

    def _connect(self) -> bool:
        try:
            connect_session(self._client, self.settings, self.target)
        except (OSError, ValueError) as exc:
            log.warning("cannot reach the broker %s: %s", self.target, exc)
            return False
        self._connected = True
        return True

    def _lost(self, why: str) -> None:
        # Unacknowledged messages are the broker's again: it redelivers them to this session,
        # and they are evaluated again from the saved state.
        was, self._connected = self._connected, False
        self.subscribed.clear()
        if was and self._connected_at:
            short = time.monotonic() - self._connected_at < _SHORT_LIVED_S
            self._quick_losses = self._quick_losses + 1 if short else 0
        if self._done or self._held:
            self._rewind()
        if was and not self._stopping.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self.target, why)

    def _rewind(self) -> None:
        """Go back to the saved state and forget the messages not yet acknowledged.

        The broker sends them again after a reconnection, and they are evaluated again.
        """
        self._held, self._done, self._digests = [], [], []
        self._unrecorded = []  # the same events come again, with the same ids
        self._frames = FrameCache(self._frames.window_ns)  # frames seen since then come again
        self.validator = self._validator(self.config.registry)
        self.state = self._saved_state()
        self._dirty = False

    # --- paho callbacks (on this thread) --------------------------------------------------

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
        self._connected_at = time.monotonic()
        log.info("alerts connected to %s (session present: %s)", self.target, flags.session_present)
        client.subscribe([(f, 1) for f in self.router.topic_filters])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if granted(reason_codes, "alerts", self.router.topic_filters):
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
        if not self._held:
            self._held_since = time.monotonic()
        self._held.append(
            _Held(
                client, msg.mid, msg.qos, bool(msg.dup), self.clock(), msg.topic, bytes(msg.payload)
            )
        )

    # --- evaluation -----------------------------------------------------------------------

    def _evaluate_held(self) -> None:
        held, self._held = self._held, []
        digests = [digest(m.topic, m.payload) for m in held]
        redelivered = [d for d, m in zip(digests, held, strict=True) if m.dup]
        known = self.store.evaluated(redelivered) if redelivered else set()
        fresh = [m for d, m in zip(digests, held, strict=True) if d not in known]
        checks = [
            (
                process(
                    self.router,
                    self.validator,
                    m.topic,
                    m.payload,
                    m.received_ns,
                    max_payload_bytes=self.settings.ingest_max_payload_bytes,
                ),
                m.received_ns,
            )
            for m in fresh
        ]
        self._note_refusals([m.topic for m in fresh], [c for c, _ in checks])
        readings, _, _ = columns(checks)
        now = self.clock()
        try:
            events, self.state = self.config.evaluator.evaluate(readings, self.state, now)
        except Exception:  # a bug met by some input: keep it to the message that meets it
            log.exception("evaluating %d messages failed; evaluating them one by one", len(fresh))
            events = self._one_by_one(fresh, [c for c, _ in checks], now)
        events, merged = bound_late(events)
        self._merged.update(merged)
        self._unrecorded.extend(events)
        self._done.extend((m.client, m.mid, m.qos) for m in held)
        self._digests.extend(digests)
        self._dirty = True
        self.evaluated += len(readings)
        self.messages += len(held)

    def _one_by_one(self, fresh: list[_Held], checks: list[Checked], now: int) -> list[AlertEvent]:
        """Evaluate message by message; one the evaluator fails on is skipped, and said so.

        A failed evaluation leaves the state as it was (the evaluator takes its batch back),
        so the others go on from it: one message cannot stop the alerts of the whole fleet.
        """
        events: list[AlertEvent] = []
        for m, checked in zip(fresh, checks, strict=True):
            readings, _, _ = columns([(checked, m.received_ns)])
            try:
                more, self.state = self.config.evaluator.evaluate(readings, self.state, now)
            except Exception:
                self.skipped += 1
                log.error(
                    "a message on %s could not be evaluated and is skipped (ingest stores it "
                    "as usual; digest %s)",
                    m.topic,
                    digest(m.topic, m.payload).hex(),
                )
                continue
            events.extend(more)
        return events

    def _note_refusals(self, topics: list[str], checks: list[Checked]) -> None:
        """Say what could not be evaluated: each new (reason, topic) at once, counts every minute.

        Ingest quarantines the same messages; here they are only counted, never silent.
        """
        for topic, checked in zip(topics, checks, strict=True):
            for r in checked.rejections:
                key = f"{r.reason.value} on {topic}"
                self._refusals[r.reason.value] += r.records
                if key not in self._refusals_told and len(self._refusals_told) < _TOLD_MAX:
                    self._refusals_told.add(key)
                    log.warning("not evaluated: %s: %s (ingest quarantines it)", key, r.detail)
        if self._refusals and time.monotonic() - self._refusals_at >= _REFUSALS_EVERY_S:
            counts = ", ".join(f"{n} {why}" for why, n in self._refusals.most_common())
            log.warning("readings not evaluated in the last minute: %s", counts)
            self._refusals.clear()
            self._refusals_told.clear()
            self._refusals_at = time.monotonic()

    def _silence(self) -> None:
        events, self.state = self.config.evaluator.evaluate_silence(self.state, self.clock())
        self.silence_checks += 1
        if events:
            self._unrecorded.extend(events)
            self._dirty = True
            self._saved_at = 0.0  # save at once: a clock-made event is not redelivered

    def _record_events(self) -> None:
        """Hand the events to the outbox, then to the alarm store (both idempotent)."""
        events = self._unrecorded
        if not events:
            return
        if self.outbox is not None:
            self.outbox.add(self._notifications(events))
        self.store.record(events, now_ns=self.clock())
        self._unrecorded = []
        self._merged.clear()
        self.events += len(events)
        for e in events:
            log.info(
                "alarm %s %s%s: %s (%s) at %s",
                e.alarm_id,
                e.type,
                " (late)" if e.late else "",
                e.rule,
                e.label,
                e.device,
            )

    def _record_clock(self) -> None:
        """Hand the events of the health watch and of reloads to the outbox and the alarm store.

        They are made by the clock or a reload, not by messages: kept apart from the evaluator's
        events, which a rewind forgets because redelivery makes them again. Both hand-overs are
        idempotent: a failure keeps them for the next turn.
        """
        self._clock_events.extend(self.health.drain())
        events = self._clock_events
        if not events:
            return
        if self.outbox is not None:
            self.outbox.add(
                self._clock_notes + self._notifications(events[len(self._clock_notes) :])
            )
        self.store.record(events, now_ns=self.clock())
        self._clock_events, self._clock_notes = [], []
        self.events += len(events)
        for e in events:
            log.info("alarm %s %s: %s (%s) at %s", e.alarm_id, e.type, e.rule, e.label, e.device)

    def _record_clock_safely(self) -> None:
        try:
            self._record_clock()
        except PilotsError as exc:
            log.error("health or reload events not recorded, will retry: %s", exc)

    def _checkpoint(self) -> None:
        """Save the state with the digests, then acknowledge the evaluated messages."""
        self._record_events()
        self.store.record(
            [], state=self.state.to_bytes(), evaluated=self._digests, now_ns=self.clock()
        )
        for client, mid, qos in self._done:
            if qos and client.is_connected():
                client.ack(mid, qos)
        self._done, self._digests = [], []
        self._dirty = False
        self._saved_at = time.monotonic()

    def flush(self) -> None:
        """Evaluate, record and save everything held (on the service's thread, or stopped)."""
        if self._held:
            self._evaluate_held()
        self._record_events()
        if self._dirty:
            self._checkpoint()

    def _notifications(self, events: list[AlertEvent]) -> list[Notification]:
        registry = self.config.registry
        url = self.settings.alert_dashboard_url
        out: list[Notification] = []
        for e in events:
            try:
                note = notification_for(e, registry, dashboard_url=url)
            except (KeyError, ValueError) as exc:
                log.error("alarm %s: no notification could be written: %s", e.id, exc)
                continue
            merged = self._merged.get(e.alarm_id)
            if merged is not None:
                note = merged_words(note, merged, note.timezone or None)
            out.append(note)
        return out

    # --- reloading ------------------------------------------------------------------------

    def _maybe_reload(self) -> None:
        config = self._watch.check()  # a refusal is logged there, and the running rules kept
        if config is None:
            return
        if config.digest == self.config.digest:
            log.info("alert rules and registry looked at again: unchanged")
            return
        # What is held was received under the old rules: evaluated with them first. Nothing
        # here needs the store to be writable: what is not yet recorded or saved stays pending.
        if self._held:
            try:
                self._evaluate_held()
            except BaseException:
                self._watch.request()  # the files are read again at the next turn: not lost
                raise
        old = self.config
        self.config = config
        self.validator = self._validator(config.registry)
        self.health.replace_rules(config.rules)
        self._to_retire.append((old, config))
        self._dirty = True  # the state as the new rules adopt it is saved at the next turn
        self.reloads += 1
        log.info(
            "alert rules reloaded: %d rules (was %d); %s",
            len(config.rules),
            len(old.rules),
            registry_change(old.registry, config.registry),
        )

    def _retire_pending(self) -> None:
        """Close the alarms reloads left without a rule or device (retried until recorded)."""
        while self._to_retire:
            old, new = self._to_retire[0]
            self._retire(old, new)
            self._to_retire.pop(0)

    def _retire(self, old: Rules, new: Rules) -> None:
        """Close the active alarms whose rule or device the new rules no longer have.

        Their state goes with the reload (the evaluator drops it), so nothing else would ever
        clear them. The event says what happened, worded with the old registry, which still
        knows the device.
        """
        rules = {r.id: r for r in new.rules}
        now = self.clock()
        for alarm in self.store.active():
            rule = rules.get(alarm.rule)
            if alarm.kind == UNHEALTHY or (
                rule is not None
                and alarm.device in new.registry.devices
                and (not rule.devices or alarm.device in rule.devices)
            ):
                continue
            event = retired(alarm, now)
            self._clock_events.insert(len(self._clock_notes), event)
            try:
                note = notification_for(
                    event, old.registry, dashboard_url=self.settings.alert_dashboard_url
                )
            except (KeyError, ValueError) as exc:
                log.error("alarm %s: no notification could be written: %s", alarm.id, exc)
                self._clock_events.remove(event)
                self.store.record([event], now_ns=now)
                continue
            self._clock_notes.append(retired_words(note, alarm, old.registry))
            log.warning(
                "alarm %s (%s at %s) closed: its rule or device is no longer configured",
                alarm.id,
                alarm.rule,
                alarm.device,
            )
        self._record_clock()

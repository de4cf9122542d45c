"""Adopting an absent worker's session: take its queue into this worker's spool, then let go.

Chosen by `ingest.members`, a live worker connects as the absent one (its client id, and its
login where each worker has its own), with its session kept (clean session off, or MQTT 5 clean
start off and the same session expiry), so the broker hands over what it queued for that
session, the messages it had sent and not seen acknowledged first. The adoption then
unsubscribes the session from the shared group (and from the group's presence, which the
owner subscribes to again when it returns), so that the broker assigns it nothing more,
and takes every queued message as the worker's own: spooled, committed, then acknowledged, on
the receiver's thread (`ingest.service`). Once nothing is held and no reading has arrived for
`DRAIN_QUIET_S` (other traffic, such as presence, does not count), it disconnects, leaving the
session empty and out of the group.

Every way this can end keeps the delivery guarantee:

- the owner comes back while the session is being drained: the broker gives the session to the
  later connection (the owner), closes the adoption's, and redelivers to the owner whatever the
  adoption had not acknowledged; the owner subscribes again as it does on every connect, and
  the adoption ends without retrying. A message the adoption spooled but could not acknowledge
  in time is stored twice and kept once (a point is keyed by device and device time);
- two workers adopt the same session at once (their views of the group differed for a moment):
  the broker keeps the later connection, the earlier one ends as above and waits its backoff;
- the adopting worker dies: its own absence is noticed and its own session adopted; what it had
  not acknowledged went back to the session it was draining.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.settings import MqttTarget, Settings
from ingest.members import Due
from ingest.session import connect_session, session_client

log = logging.getLogger(__name__)

#: Drained: nothing held and nothing arrived for this long after the broker confirmed the
#: unsubscription (the broker sends a session's queue as fast as acknowledgements free its
#: in-flight window, so a pause this long means the queue is empty).
DRAIN_QUIET_S = 1.0
#: An adoption that has not even connected after this long is given up (and retried later).
CONNECT_TIMEOUT_S = 10.0
#: Most packets read in one turn of the receiver's loop.
_BURST = 1000

#: drained: done; interrupted: the connection ended first (the owner came back, another worker
#: adopted the session, the broker went away); refused: the broker refused the login;
#: unreachable: no connection was made.
Outcome = Literal["drained", "interrupted", "refused", "unreachable"]


class Adoption:
    """One adopted session, driven by the receiver's loop (`loop`) until `outcome` is set."""

    def __init__(
        self,
        due: Due,
        *,
        settings: Settings,
        target: MqttTarget,
        own_client_id: str,
        filters: list[str],
        on_message: Callable[[mqtt.Client, mqtt.MQTTMessage], bool],
    ) -> None:
        self.due = due
        self.member = due.member
        self.filters = filters
        self.settings = settings
        self.target = target
        self.outcome: Outcome | None = None
        self.received = 0
        self.acked = 0
        self.started = time.monotonic()
        self._on_message = on_message
        self._unsubscribed = False
        self._letting_go = False
        self._last_message = time.monotonic()
        self._connected = False
        # A worker whose broker login is its client id logs in as the absent worker; the
        # workers share one password (`pilots devices provision --ingest-workers N`).
        username = target.username
        if username is not None and username == own_client_id:
            username = self.member
        self.client = self._make_client(username)

    def _make_client(self, username: str | None) -> mqtt.Client:
        client = session_client(self.settings, self.target, self.member, username)
        client.on_connect = self._connected_cb
        client.on_unsubscribe = self._unsubscribed_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        return client

    # -- driven by the receiver ---------------------------------------------------------------

    def start(self) -> None:
        """Connect as the absent member (the CONNACK arrives in `loop`)."""
        log.warning(
            "ingest worker %s absent: adopting its session to take what the broker holds for it",
            self.member,
        )
        try:
            connect_session(self.client, self.settings, self.target)
        except (OSError, ValueError) as exc:
            self._end("unreachable", str(exc))

    def loop(self) -> None:
        """One turn: read what arrived, and let go once drained."""
        if self.outcome is not None:
            return
        # paho reads one packet a call: read what is waiting, up to an in-flight window's worth
        for _ in range(_BURST):
            before = self.received
            rc = self.client.loop(timeout=0)
            if self.outcome is not None:
                return
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                self._end("interrupted", mqtt.error_string(rc))
                return
            if self.received == before:
                break
        now = time.monotonic()
        if not self._connected and now - self.started > CONNECT_TIMEOUT_S:
            self._end("unreachable", "no answer to CONNECT")
            return
        if (
            self._unsubscribed
            and self.acked >= self.received
            and now - self._last_message >= DRAIN_QUIET_S
        ):
            self._letting_go = True
            self.client.disconnect()
            for _ in range(10):  # let the DISCONNECT go out
                if self.client.loop(timeout=0.01) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            self._end("drained", "")

    def took(self, messages: int) -> None:
        """`messages` of this adoption were committed to the spool and acknowledged."""
        self.acked += messages

    def close(self) -> None:
        """Drop the connection whatever the state (the receiver is stopping)."""
        if self.outcome is None:
            self.client.disconnect()
            self.client.loop(timeout=0.01)
            self._end("interrupted", "ingest stopping")

    def _end(self, outcome: Outcome, why: str) -> None:
        self.outcome = outcome
        took = time.monotonic() - self.started
        if outcome == "drained":
            log.warning(
                "adopted the session of %s: %d messages taken into this worker's spool in "
                "%.1f s; its session is out of the group until it comes back",
                self.member,
                self.acked,
                took,
            )
        else:
            log.warning(
                "adoption of %s's session ended (%s: %s) after %d messages; retried later "
                "if it is still absent",
                self.member,
                outcome,
                why,
                self.acked,
            )

    # -- paho callbacks -------------------------------------------------------------------------

    def _connected_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._end("refused", str(reason_code))
            return
        self._connected = True
        self._last_message = time.monotonic()
        if not flags.session_present:
            log.info("%s has no session on the broker: nothing to adopt", self.member)
        client.unsubscribe(self.filters)

    def _unsubscribed_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._unsubscribed = True
        self._last_message = time.monotonic()

    def _disconnected_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.outcome is None and not self._letting_go:
            self._end("interrupted", str(reason_code))

    def _message_cb(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Only what the session was assigned counts as its queue draining: the group's
        # presence, many messages a second in a large group, would otherwise never let it end.
        if self._on_message(client, msg):  # taken (a reading), not the session's other traffic
            self._last_message = time.monotonic()
            self.received += 1

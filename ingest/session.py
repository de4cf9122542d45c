"""Ingest's persistent MQTT sessions: the client and the CONNECT.

Used for a worker's own session and for one it adopts (`ingest.adoption`).

A session is persistent (3.1.1 with clean session off, or MQTT 5 with clean start off and
`PILOTS_MQTT_SESSION_EXPIRY_S`) and acknowledged by hand, after the spool's commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.settings import MqttTarget, Settings

log = logging.getLogger(__name__)


def session_client(
    settings: Settings, target: MqttTarget, client_id: str, username: str | None
) -> mqtt.Client:
    """A paho client for the session `client_id`, logging in as `username` (None: no login)."""
    if settings.mqtt_protocol == "5":
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
    if username is not None:
        client.username_pw_set(username, target.password)
    if target.tls:
        client.tls_set(ca_certs=target.ca_file)
    return client


def connect_session(client: mqtt.Client, settings: Settings, target: MqttTarget) -> None:
    """Send CONNECT keeping the session (raises OSError or ValueError when it cannot)."""
    if settings.mqtt_protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.mqtt_session_expiry_s
        props.ReceiveMaximum = settings.mqtt_receive_maximum
        client.connect(
            target.host,
            target.port,
            keepalive=settings.mqtt_keepalive_s,
            clean_start=False,
            properties=props,
        )
    else:
        client.connect(target.host, target.port, keepalive=settings.mqtt_keepalive_s)


def granted(reason_codes: Sequence[ReasonCode], who: str, filters: Sequence[str]) -> bool:
    """Whether the broker granted every subscription of a SUBACK, said in the log either way."""
    if any(code.is_failure for code in reason_codes):
        log.error("broker refused a subscription of %s: %s", who, [str(c) for c in reason_codes])
        return False
    log.info("%s ready: subscribed at QoS 1 to %s", who, ", ".join(filters))
    return True

"""The broker refuses what ingest would refuse, on a real Mosquitto with the provisioned logins.

The broker runs as the shipped configurations set it up: the dynamic-security plugin reading
the file `pilots devices provision` writes, client ids bound to logins, and `max_packet_size`
sized from ingest's payload limit. A device that knows ingest's shared group cannot join it
(nor read any topic), so ingest receives every message; a network server publishes only its
own applications' uplinks; a packet over the limit disconnects its sender and reaches no one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.registry import Registry
from core.settings import Settings
from pilots.provision import (
    CREDENTIALS_FILE,
    HEALTHCHECK_LOGIN,
    HEALTHCHECK_PASSWORD_FILE,
    HEALTHCHECK_TOPIC,
    Provisioned,
    network_server_applications,
    plan_logins,
    provision,
)
from tests.helpers import wait_for
from tests.services import MAX_PACKET_SIZE, Mosquitto, dynsec_conf, free_port

pytestmark = pytest.mark.integration

ROUTES = Settings.model_fields["ingest_routes"].get_default(call_default_factory=True)
MAX_PAYLOAD_BYTES = int(Settings.model_fields["ingest_max_payload_bytes"].default)
WORKERS = ("pilots-ingest-1", "pilots-ingest-2")
INGEST_PASSWORD = "ingest-" + uuid.uuid4().hex
#: The worst case: the device knows the group's name.
GROUP = "ingest-" + uuid.uuid4().hex[:8]
CHIRPSTACK_APP = str(uuid.uuid4())
TTS_APP = "river-levels@pilots"
TOPIC_01 = "pilots/santa-fe/sf-rlv-01/up"


def credentials(path: Path) -> dict[str, str]:
    """login -> password, as the operator reads them from the credentials file."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            login, password, *_topics = line.split()
            found[login] = password
    return found


@dataclass
class Listener:
    """A client logged in as `login`, subscribed to `filters`: its SUBACK and what it receives."""

    port: int
    login: str
    password: str
    filters: list[str]
    granted: list[ReasonCode] = field(default_factory=list)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    client: mqtt.Client | None = None

    def start(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.login)
        client.username_pw_set(self.login, self.password)

        def on_connect(c: mqtt.Client, u: object, f: object, code: ReasonCode, p: object) -> None:
            c.subscribe([(topic_filter, 1) for topic_filter in self.filters])

        def on_subscribe(
            c: mqtt.Client, u: object, mid: int, codes: list[ReasonCode], p: object
        ) -> None:
            self.granted.extend(codes)

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            self.received.append((msg.topic, bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self.client = client
        wait_for(lambda: len(self.granted) == len(self.filters), 10, f"{self.login}'s SUBACK")

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def publish_as(port: int, login: str, password: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait for every PUBACK, in order.

    Mosquitto queues a message for its subscribers before it acknowledges it, so whatever a
    later PUBACK'd message reaches, an earlier one would have reached first. With MQTT 3.1.1 a
    publication the rules forbid is acknowledged too, and dropped.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=login)
    client.username_pw_set(login, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published(), f"{login}: no PUBACK for {topic}"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def provisioned(tmp_path: Path, registry: Registry) -> Provisioned:
    servers = network_server_applications(
        [f"chirpstack={CHIRPSTACK_APP}", f"tts-bridge=tts:{TTS_APP}"]
    )
    logins = plan_logins(registry, ROUTES, ingest_login=WORKERS, network_servers=servers)
    return provision(
        tmp_path / "auth",
        logins,
        given=dict.fromkeys(WORKERS, INGEST_PASSWORD),
        credentials=tmp_path / "auth" / CREDENTIALS_FILE,
    )


@pytest.fixture
def passwords(provisioned: Provisioned) -> dict[str, str]:
    return credentials(provisioned.credentials or Path())


@pytest.fixture
def broker(tmp_path: Path, provisioned: Provisioned) -> Iterator[Mosquitto]:
    broker = Mosquitto(
        free_port(),
        tmp_path / "mosquitto",
        allow_anonymous=False,
        extra_conf=dynsec_conf(provisioned.directory) + "use_username_as_clientid true\n",
    )
    broker.workdir.mkdir(parents=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def ingest(broker: Mosquitto) -> Iterator[Listener]:
    """An ingest worker on the shared subscription of every route, as `pilots ingest` subscribes."""
    listener = Listener(
        broker.port, WORKERS[0], INGEST_PASSWORD, [f"$share/{GROUP}/{f}" for f in ROUTES]
    )
    listener.start()
    assert not any(code.is_failure for code in listener.granted), listener.granted
    yield listener
    listener.stop()


def test_a_device_cannot_join_ingest_s_shared_group_and_ingest_receives_every_message(
    broker: Mosquitto, ingest: Listener, passwords: dict[str, str]
) -> None:
    spy = Listener(
        broker.port,
        "sf-rlv-02",
        passwords["sf-rlv-02"],
        [
            f"$share/{GROUP}/pilots/+/+/up",  # ingest's own filter
            f"$share/{GROUP}/pilots/#",
            "pilots/#",
            "#",
        ],
    )
    spy.start()
    try:
        assert [code.is_failure for code in spy.granted] == [True] * 4
        sent = [(TOPIC_01, f"reading {n}".encode()) for n in range(20)]
        publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], sent)
        wait_for(lambda: len(ingest.received) >= len(sent), 30, "ingest to receive all 20")
    finally:
        spy.stop()
    assert sorted(ingest.received) == sorted(sent), "ingest lost or doubled messages"
    assert spy.received == []


def test_a_network_server_publishes_only_its_own_applications_uplinks(
    broker: Mosquitto, ingest: Listener, passwords: dict[str, str]
) -> None:
    eui = "a840410001010101"
    ours = f"application/{CHIRPSTACK_APP}/device/{eui}/event/up"
    theirs = f"application/{uuid.uuid4()}/device/{eui}/event/up"
    ours_tts = f"v3/{TTS_APP}/devices/sf-rlv-lora-01/up"
    theirs_tts = "v3/other-app@pilots/devices/sf-rlv-lora-01/up"
    # the forgeries first: had any gone through, it would arrive before the genuine uplinks
    publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], [(ours, b"device posing")])
    publish_as(
        broker.port,
        "chirpstack",
        passwords["chirpstack"],
        [(theirs, b"another application"), (ours_tts, b"wrong server"), (ours, b"genuine")],
    )
    publish_as(
        broker.port,
        "tts-bridge",
        passwords["tts-bridge"],
        [(theirs_tts, b"another application"), (ours, b"wrong server"), (ours_tts, b"genuine")],
    )
    wait_for(lambda: len(ingest.received) >= 2, 10, "both genuine uplinks")
    assert ingest.received == [(ours, b"genuine"), (ours_tts, b"genuine")]


def test_a_packet_over_the_limit_disconnects_its_sender_and_reaches_no_one(
    broker: Mosquitto, ingest: Listener, passwords: dict[str, str]
) -> None:
    dropped: list[ReasonCode] = []
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sf-rlv-01")
    device.username_pw_set("sf-rlv-01", passwords["sf-rlv-01"])
    device.on_disconnect = lambda c, u, flags, code, props: dropped.append(code)
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    try:
        largest = device.publish(TOPIC_01, b"a" * MAX_PAYLOAD_BYTES, qos=1)
        largest.wait_for_publish(10)
        assert largest.is_published(), "a payload of ingest's limit was refused"
        oversized = device.publish(TOPIC_01, b"b" * MAX_PACKET_SIZE, qos=1)
        wait_for(lambda: dropped, 10, "the broker to disconnect the device")
        assert not oversized.is_published()
    finally:
        device.disconnect()
        device.loop_stop()
    publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], [(TOPIC_01, b"after")])
    wait_for(lambda: (TOPIC_01, b"after") in ingest.received, 10, "the message after")
    assert [len(payload) for _, payload in ingest.received] == [MAX_PAYLOAD_BYTES, len(b"after")]


def test_an_mqtt5_client_is_told_the_limit(broker: Mosquitto, passwords: dict[str, str]) -> None:
    announced: list[Properties | None] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sf-rlv-01", protocol=mqtt.MQTTv5)
    client.username_pw_set("sf-rlv-01", passwords["sf-rlv-01"])
    client.on_connect = lambda c, u, flags, code, props: announced.append(props)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        wait_for(lambda: announced, 10, "CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    assert getattr(announced[0], "MaximumPacketSize", None) == MAX_PACKET_SIZE


def test_the_health_check_reads_the_broker_version_and_nothing_else(
    broker: Mosquitto, provisioned: Provisioned
) -> None:
    password = (provisioned.directory / HEALTHCHECK_PASSWORD_FILE).read_text().strip()
    health = Listener(broker.port, HEALTHCHECK_LOGIN, password, [HEALTHCHECK_TOPIC, "$SYS/#"])
    health.start()
    try:
        assert [code.is_failure for code in health.granted] == [False, True]
        wait_for(lambda: health.received, 10, "the retained broker version")
    finally:
        health.stop()
    assert health.received[0][0] == HEALTHCHECK_TOPIC

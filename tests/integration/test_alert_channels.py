"""Alarm notifications delivered through real servers: HTTP, Mosquitto and SMTP.

The webhook's receiver is a real `http.server` on a loopback port that checks each signature
as a user's receiver would; the broker is the session's Mosquitto; the mail server is
aiosmtpd's. Beyond delivery: a receiver down for a while and back (nothing lost, attempts
counted), a dispatcher killed with SIGKILL between sending and marking (sent again with the
same key: after deduplication by key, each exactly once), an overfilled outbox (the drops
counted by reason) and a refusal (recorded once, not retried).
"""

from __future__ import annotations

import email
import email.policy
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from paho.mqtt.enums import CallbackAPIVersion

from alerts.channels import SAID_BYTES, EmailChannel, MqttChannel, WebhookChannel
from alerts.message import Notification, compose
from alerts.outbox import DROPPED_FULL, Channel, Dispatcher, Outbox
from core.registry import Registry
from core.settings import MqttTarget
from core.timeutil import NS_PER_S, parse_instant_ns
from tests.helpers import wait_for
from tests.services import Mosquitto, free_port
from tests.webhook import Receiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "webhook-" + uuid.uuid4().hex
T0 = parse_instant_ns("2026-12-06T14:05:00-03:00")


def note(registry: Registry, alarm: str, kind: str = "fired") -> Notification:
    return compose(
        registry,
        alarm_id=alarm,
        kind=kind,  # type: ignore[arg-type]
        device="sf-rlv-01",
        sensor="level",
        rule_id="santa-fe.level.alert",
        severity="warning",
        level="alert",
        threshold=5.3,
        value=5.34 if kind == "fired" else 5.21,
        peak=None if kind == "fired" else 5.41,
        start_ns=T0,
        end_ns=None if kind == "fired" else T0 + 3600 * NS_PER_S,
        dashboard_url="https://pilots.example.org/",
    )


def dispatch(outbox: Outbox, channel: Channel) -> Dispatcher:
    """A started dispatcher with a short backoff (the defaults are 1 s, at most 60 s)."""
    return Dispatcher(outbox, [channel], retry_base_s=0.1, retry_max_s=0.5).start()


def alarms(registry: Registry, count: int) -> list[Notification]:
    run = uuid.uuid4().hex[:8]
    return [note(registry, f"sf-rlv-01.level.alert.{run}-{i}") for i in range(count)]


# -- the webhook's receiver ----------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "alerts.sqlite", ["webhook"])
    yield box
    box.close()


def webhook_dispatcher(outbox: Outbox, receiver: Receiver) -> Dispatcher:
    channel = WebhookChannel(receiver.url, SECRET, timeout_s=5)
    return dispatch(outbox, channel)


def test_the_webhook_delivers_signed_json(
    registry: Registry, outbox: Outbox, receiver: Receiver
) -> None:
    sent = [*alarms(registry, 2), note(registry, "sf-rlv-01.level.alert.x", "cleared")]
    dispatcher = webhook_dispatcher(outbox, receiver)
    outbox.add(sent)
    wait_for(lambda: len(receiver.received) == 3, 15, "three requests")
    wait_for(lambda: outbox.pending() == {"webhook": 0}, 15, "all marked delivered")
    dispatcher.stop()
    assert all(r.signed for r in receiver.received)
    assert [r.key for r in receiver.received] == [n.key for n in sent]
    assert [r.event for r in receiver.received] == ["fired", "fired", "cleared"]
    assert [r.body for r in receiver.received] == [n.as_dict() for n in sent]
    assert outbox.delivered == {"webhook": 3} and not outbox.retried


def test_a_receiver_down_for_a_while_gets_everything_once_back(
    registry: Registry, outbox: Outbox, receiver: Receiver
) -> None:
    receiver.stop()  # down: connections refused
    sent = alarms(registry, 12)
    dispatcher = webhook_dispatcher(outbox, receiver)
    started = time.monotonic()
    outbox.add(sent[:6])
    wait_for(lambda: outbox.retried["webhook"] >= 3, 15, "failed attempts while down")
    outbox.add(sent[6:])  # more arrive during the outage
    wait_for(
        lambda: time.monotonic() - started >= 5 and outbox.retried["webhook"] >= 6,
        20,
        "five seconds down",
    )
    receiver.busy = 2  # back, but asking for a second twice (503 with Retry-After)
    receiver.start()
    wait_for(lambda: outbox.pending() == {"webhook": 0}, 20, "everything delivered")
    dispatcher.stop()
    assert sorted(set(receiver.keys())) == sorted(n.key for n in sent)
    assert all(r.signed for r in receiver.received)
    assert receiver.statuses.count(503) == 2
    assert outbox.delivered == {"webhook": 12}
    assert outbox.retried["webhook"] >= 8  # the refused connections and the two 503s
    assert not outbox.dropped and not outbox.refused
    attempts = [outbox.rows(n.key)["webhook"].attempts for n in sent]
    assert sum(attempts) == 12 + outbox.retried["webhook"]


CRASHING_DISPATCHER = """
import os, signal, sys, time
from pathlib import Path
from alerts.channels import WebhookChannel
from alerts.outbox import Dispatcher, Outbox

path, url, secret, crash_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


class KilledAfterSending(WebhookChannel):
    sent = 0

    def send(self, notification):
        super().send(notification)  # the receiver has it and said so ...
        self.sent += 1
        if self.sent == crash_after:  # ... and the process dies before marking it delivered
            os.kill(os.getpid(), signal.SIGKILL)


Dispatcher(Outbox(Path(path), ["webhook"]), [KilledAfterSending(url, secret)]).start()
time.sleep(60)
"""


def test_killed_between_sending_and_marking_it_is_sent_again_with_the_same_key(
    registry: Registry, outbox: Outbox, receiver: Receiver
) -> None:
    sent = alarms(registry, 5)
    outbox.add(sent)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_DISPATCHER, str(outbox.path), receiver.url, SECRET, "3"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    assert receiver.keys() == [n.key for n in sent[:3]]
    assert outbox.pending() == {"webhook": 3}  # the third was sent, never marked

    dispatcher = webhook_dispatcher(outbox, receiver)  # the restart
    wait_for(lambda: outbox.pending() == {"webhook": 0}, 15, "the rest delivered")
    dispatcher.stop()
    keys = receiver.keys()
    assert Counter(keys) == {n.key: 2 if n is sent[2] else 1 for n in sent}
    repeats = [r for r in receiver.received if r.key == sent[2].key]
    assert repeats[0].body == repeats[1].body and all(r.signed for r in repeats)
    assert sorted(dict.fromkeys(keys)) == sorted(n.key for n in sent)  # deduplicated: once each


def test_an_overfilled_outbox_drops_the_oldest_and_counts_them(
    registry: Registry, tmp_path: Path, receiver: Receiver
) -> None:
    box = Outbox(tmp_path / "alerts.sqlite", ["webhook"], max_pending=10)
    sent = alarms(registry, 25)
    for start in range(0, 25, 5):  # in batches, as an evaluator hands them over
        box.add(sent[start : start + 5])
    assert box.dropped == {("webhook", DROPPED_FULL): 15}
    assert box.pending() == {"webhook": 10}
    assert box.rows(sent[0].key)["webhook"].reason == DROPPED_FULL
    dispatcher = webhook_dispatcher(box, receiver)
    wait_for(lambda: box.pending() == {"webhook": 0}, 15, "the kept ten delivered")
    dispatcher.stop()
    assert receiver.keys() == [n.key for n in sent[15:]]
    box.close()


def test_a_refusal_is_recorded_once_and_not_retried(
    registry: Registry, outbox: Outbox, receiver: Receiver
) -> None:
    bad, good, later = alarms(registry, 3)
    receiver.refuse.add(bad.key)
    dispatcher = webhook_dispatcher(outbox, receiver)
    outbox.add([bad, good])
    wait_for(lambda: outbox.pending() == {"webhook": 0}, 15, "both done")
    outbox.add([later])
    wait_for(lambda: outbox.delivered["webhook"] == 2, 15, "a later one delivered")
    dispatcher.stop()
    row = outbox.rows(bad.key)["webhook"]
    assert (row.state, row.attempts) == ("refused", 1)
    assert row.reason == f"HTTP 400 from {receiver.url}: unknown pilot"
    assert outbox.refused == {"webhook": 1} and not outbox.retried
    assert receiver.keys() == [bad.key, good.key, later.key]


def test_a_refusal_with_an_endless_body_is_recorded_from_its_first_bytes(
    registry: Registry, outbox: Outbox, receiver: Receiver
) -> None:
    # A receiver (or whatever answers at its address) may answer with a body of any size: the
    # dispatcher keeps the head of it as the reason and goes on, never reading it all.
    (bad,) = alarms(registry, 1)
    receiver.endless.add(bad.key)
    dispatcher = webhook_dispatcher(outbox, receiver)
    outbox.add([bad])
    wait_for(lambda: outbox.refused.get("webhook") == 1, 15, "the refusal recorded")
    dispatcher.stop()
    row = outbox.rows(bad.key)["webhook"]
    assert row.reason == f"HTTP 400 from {receiver.url}: " + "x" * SAID_BYTES


# -- MQTT ----------------------------------------------------------------------------------------


class Subscriber:
    """A client that records what arrives on a filter (retained messages included)."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = lambda c, u, message: self.messages.append(message)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        result, _ = self.client.subscribe(topic_filter, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS

    def retained_now(self, probe_topic: str) -> dict[str, bytes]:
        """The retained messages, known complete once a probe published after them arrives."""
        probe = uuid.uuid4().hex.encode()
        self.client.publish(probe_topic, probe, qos=1)
        wait_for(lambda: any(m.payload == probe for m in self.messages), 10, "the probe")
        return {m.topic: bytes(m.payload) for m in self.messages if m.retain}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_publishes_each_event_and_keeps_the_active_alarms_retained(
    registry: Registry, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    box = Outbox(tmp_path / "alerts.sqlite", ["mqtt"])
    channel = MqttChannel(
        MqttTarget.parse(mosquitto.url), f"test-alerts-{uuid.uuid4().hex[:8]}", timeout_s=5
    )
    one, two = alarms(registry, 2)
    events = Subscriber(mosquitto.port, "pilots/santa-fe/alerts")
    dispatcher = dispatch(box, channel)
    box.add([one, two])
    wait_for(lambda: box.pending() == {"mqtt": 0}, 15, "both published")
    active = "pilots/santa-fe/alerts/active"
    newcomer = Subscriber(mosquitto.port, f"{active}/#")
    retained = newcomer.retained_now(f"{active}/probe")
    newcomer.close()
    assert {t: orjson.loads(p)["key"] for t, p in retained.items() if "sf-rlv-01" in t} == {
        f"{active}/{one.alarm_id}": one.key,
        f"{active}/{two.alarm_id}": two.key,
    }

    cleared = note(registry, one.alarm_id, "cleared")
    box.add([cleared])
    wait_for(lambda: box.pending() == {"mqtt": 0}, 15, "the clearing published")
    wait_for(lambda: len(events.messages) == 3, 10, "three events")
    dispatcher.stop()
    events.close()
    assert [orjson.loads(m.payload)["key"] for m in events.messages] == [
        one.key,
        two.key,
        cleared.key,
    ]
    assert all(m.qos == 1 for m in events.messages)
    later = Subscriber(mosquitto.port, f"{active}/#")
    retained = later.retained_now(f"{active}/probe")
    later.close()
    ours = {t for t in retained if one.alarm_id in t or two.alarm_id in t}
    assert ours == {f"{active}/{two.alarm_id}"}  # the cleared alarm is no longer retained
    assert box.delivered == {"mqtt": 3}
    box.close()


def test_mqtt_with_the_broker_away_retries_until_it_is_back(
    registry: Registry, tmp_path: Path
) -> None:
    broker = Mosquitto(free_port(), tmp_path / "mosquitto")
    box = Outbox(tmp_path / "alerts.sqlite", ["mqtt"])
    channel = MqttChannel(
        MqttTarget.parse(broker.url), f"test-alerts-{uuid.uuid4().hex[:8]}", timeout_s=1
    )
    dispatcher = dispatch(box, channel)
    sent = alarms(registry, 3)
    box.add(sent)
    wait_for(lambda: box.retried["mqtt"] >= 2, 15, "attempts while no broker listens")
    broker.start()
    try:
        wait_for(lambda: box.pending() == {"mqtt": 0}, 30, "published once the broker is up")
        dispatcher.stop()
    finally:
        broker.stop()
    assert box.delivered == {"mqtt": 3}
    box.close()


# -- e-mail --------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd's handler: keeps each accepted message, refuses the addresses told."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"


LOGIN = ("alerts", "smtp-" + uuid.uuid4().hex)


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        LOGIN[0].encode(),
        LOGIN[1].encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smtp-tls")
    script = ROOT / "deploy" / "tls" / "make-dev-ca.sh"
    done = subprocess.run(
        ["sh", str(script), str(out), "localhost", "127.0.0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and "openssl not found" in done.stderr:
        pytest.fail("openssl not found: apt-get install -y openssl", pytrace=False)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def smtp_server(tls_dir: Path) -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_dir / "certs" / "server.crt", tls_dir / "certs" / "server.key")
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
    )
    controller.start()
    yield controller, inbox
    controller.stop()


def mailer(server: Controller, tls_dir: Path, to: list[str], **extra: Any) -> EmailChannel:
    return EmailChannel(
        "127.0.0.1",
        server.port,
        "Pilot Telemetry <alerts@pilots.example.org>",
        to,
        user=LOGIN[0],
        password=LOGIN[1],
        ca_file=tls_dir / "certs" / "ca.crt",
        timeout_s=5,
        **extra,
    )


def test_email_over_starttls_with_a_login(
    registry: Registry, tmp_path: Path, smtp_server: tuple[Controller, Inbox], tls_dir: Path
) -> None:
    server, inbox = smtp_server
    box = Outbox(tmp_path / "alerts.sqlite", ["email"])
    channel = mailer(server, tls_dir, ["river@pilots.example.org", "ops@pilots.example.org"])
    dispatcher = dispatch(box, channel)
    (fired,) = alarms(registry, 1)
    box.add([fired])
    wait_for(lambda: box.pending() == {"email": 0}, 15, "the mail accepted")
    dispatcher.stop()
    (mail,) = inbox.messages
    assert mail["Subject"] == (
        "[WARNING] Santa Fe: river level passed its alert level 5.30 m at sf-rlv-01"
    )
    assert mail["To"] == "river@pilots.example.org, ops@pilots.example.org"
    assert mail["X-Pilots-Idempotency-Key"] == fired.key
    body = mail.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert fired.text in content and fired.link in content
    assert box.delivered == {"email": 1}
    box.close()


def test_a_wrong_login_is_retried_and_a_refused_mailbox_recorded(
    registry: Registry, tmp_path: Path, smtp_server: tuple[Controller, Inbox], tls_dir: Path
) -> None:
    server, inbox = smtp_server
    inbox.refuse.add("nobody@pilots.example.org")
    box = Outbox(tmp_path / "alerts.sqlite", ["email"])
    wrong = mailer(server, tls_dir, ["river@pilots.example.org"])
    wrong._password = "not-it"  # the operator's typo: fixed, the rows go out
    dispatcher = dispatch(box, wrong)
    (fired,) = alarms(registry, 1)
    box.add([fired])
    wait_for(lambda: box.retried["email"] >= 2, 15, "login failures retried")
    dispatcher.stop()
    assert box.pending() == {"email": 1} and "login" in (box.rows(fired.key)["email"].reason or "")

    refused = mailer(server, tls_dir, ["nobody@pilots.example.org"])
    dispatcher = dispatch(box, refused)
    wait_for(lambda: box.pending() == {"email": 0}, 15, "the row done")
    dispatcher.stop()
    row = box.rows(fired.key)["email"]
    assert row.state == "refused" and "550" in (row.reason or "")
    assert box.refused == {"email": 1} and not inbox.messages
    box.close()

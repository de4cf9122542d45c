"""The channels an alarm notification goes out on: a webhook, MQTT and e-mail.

Each `send` returns only once the receiver has confirmed (HTTP 2xx, the broker's PUBACK, the
SMTP server's 250 after the message); otherwise it raises `DeliveryError` (worth retrying) or
`RefusedError` (the receiver refused this notification for good), and the dispatcher
(`alerts.outbox`) decides what comes next. Channels hold no queue of their own: what is not
confirmed stays in the outbox.

- webhook: POST of the notification as JSON, signed with HMAC-SHA256 of the exact body
  (`X-Pilots-Signature: sha256=<hex>`), with `X-Pilots-Idempotency-Key` and `X-Pilots-Event`.
  urllib3, already a runtime dependency, with a connection pool, explicit timeouts, no
  retries of its own (the outbox retries) and no redirects followed.
- mqtt: paho-mqtt, QoS 1: the event to `pilots/<pilot>/alerts`, and the alarm's state retained
  on `pilots/<pilot>/alerts/active/<alarm id>` while it is on (an empty retained message
  when it is over removes it), so a new subscriber sees what is active now.
- email: the standard library's smtplib, STARTTLS and login optional. Sending one message
  per alarm event needs nothing more, and the standard library is the best-kept SMTP client
  there is (no third-party library brings anything a single send needs).
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import logging
import smtplib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import urllib3
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from alerts.message import Notification, subject
from alerts.outbox import Channel, DeliveryError, RefusedError
from core.errors import ConfigError
from core.settings import CLIENT_ID_LOGIN, DEFAULT_MQTT_PORT, MqttTarget, Settings

log = logging.getLogger(__name__)

USER_AGENT = "pilot-telemetry-alerts/1"
#: HTTP statuses that are worth retrying although they are 4xx.
RETRYABLE_4XX = frozenset({408, 429})
#: Statuses whose `Retry-After` is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Pilots-Signature` value: `sha256=` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_after_s(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None if none."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


#: How much of a receiver's refusal is read and kept as its reason.
SAID_BYTES = 200


class WebhookChannel:
    """POSTs each notification as signed JSON to one URL."""

    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 10.0) -> None:
        if not secret:
            raise ConfigError("PILOTS_ALERT_WEBHOOK_SECRET: the webhook needs a secret to sign")
        self.url = url
        self._secret = secret.encode()
        self._http = urllib3.PoolManager(
            num_pools=1, timeout=urllib3.Timeout(total=timeout_s), retries=False
        )

    def body(self, notification: Notification) -> bytes:
        """What is posted: the notification's fields and text, as JSON."""
        return notification.to_json()

    def send(self, notification: Notification) -> None:
        """POST and return on 2xx; raise by the status otherwise (see the module docstring)."""
        body = self.body(notification)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Pilots-Signature": signature(self._secret, body),
            "X-Pilots-Idempotency-Key": notification.key,
            "X-Pilots-Event": notification.kind,
        }
        try:
            response = self._http.request(
                "POST", self.url, body=body, headers=headers, redirect=False, preload_content=False
            )
            try:
                # At most the head of what the receiver says: its body may be of any size.
                head = b"" if 200 <= response.status < 300 else response.read(SAID_BYTES)
            finally:
                response.close()  # the rest unread: this connection is not reused
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url} unreachable: {exc}") from exc
        status = response.status
        if 200 <= status < 300:
            return
        said = head.decode("utf-8", errors="replace").strip()
        reason = f"HTTP {status} from {self.url}" + (f": {said}" if said else "")
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            raise RefusedError(reason)
        wait = None
        if status in RETRY_AFTER_STATUSES:
            wait = retry_after_s(response.headers.get("Retry-After"))
        raise DeliveryError(reason, retry_after_s=wait)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.clear()


class MqttChannel:
    """Publishes each event, and the alarm's retained state, to the broker with QoS 1."""

    name = "mqtt"

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        *,
        protocol: str = "3.1.1",
        timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self._v5 = protocol == "5"
        version = mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            clean_session=None if self._v5 else True,
        )
        if target.username is not None:
            self._client.username_pw_set(target.username, target.password)
        if target.tls:
            self._client.tls_set(ca_certs=target.ca_file)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._refusals: dict[int, str] = {}
        self._refused_login: str | None = None
        self._started = False

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self._refused_login = str(reason)
            return
        self._refused_login = None
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._connected.clear()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        if self._v5 and reason.is_failure:
            self._refusals[mid] = str(reason)

    def _connect(self) -> None:
        if not self._started:
            self._client.connect_async(self.target.host, self.target.port, self.keepalive_s)
            self._client.loop_start()
            self._started = True
        if not self._connected.wait(self.timeout_s):
            why = f" (refused: {self._refused_login})" if self._refused_login else ""
            raise DeliveryError(f"not connected to the broker {self.target}{why}")

    @staticmethod
    def topics(notification: Notification) -> tuple[str, str]:
        """The event topic and the alarm's retained-state topic."""
        base = f"pilots/{notification.pilot}/alerts"
        return base, f"{base}/active/{notification.alarm_id}"

    def send(self, notification: Notification) -> None:
        """Publish both messages and return once the broker acknowledged each (PUBACK)."""
        self._connect()
        event_topic, state_topic = self.topics(notification)
        body = notification.to_json()
        state = body if notification.active else b""
        infos = [
            self._client.publish(event_topic, body, qos=1),
            self._client.publish(state_topic, state, qos=1, retain=True),
        ]
        for info in infos:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                why = mqtt.error_string(info.rc)
                raise DeliveryError(f"publish to {self.target} failed: {why}")
            try:
                info.wait_for_publish(self.timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise DeliveryError(f"publish to {self.target} failed: {exc}") from exc
            if not info.is_published():
                raise DeliveryError(f"no PUBACK from {self.target} within {self.timeout_s} s")
            refusal = self._refusals.pop(info.mid, None)
            if refusal is not None:
                raise RefusedError(f"the broker {self.target} refused the publication: {refusal}")

    def close(self) -> None:
        """Disconnect."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False


class EmailChannel:
    """Sends each notification as one e-mail: the subject says what crossed what."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = True,
        user: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not recipients:
            raise ConfigError("PILOTS_ALERT_SMTP_TO: no recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.starttls = starttls
        self.user = user
        self._password = password
        self._ca_file = ca_file
        self.timeout_s = timeout_s

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail: the subject, the text and the dashboard link, and the key as a header."""
        mail = EmailMessage(policy=email.policy.SMTP)
        mail["Subject"] = subject(notification)
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(localtime=False)
        # The same key gives the same Message-ID: a mail system may drop a repeat as a copy.
        digest = hashlib.sha256(notification.key.encode()).hexdigest()[:32]
        mail["Message-ID"] = f"<{digest}@pilots-alerts>"
        mail["X-Pilots-Idempotency-Key"] = notification.key
        mail["X-Pilots-Event"] = notification.kind
        mail.set_content(f"{notification.text}\n\n{notification.link}\n", cte="quoted-printable")
        # The body is encoded (76-character lines); the headers are folded when sent, and
        # Python folds a subject that fits on the next line right after `Subject:`, which some
        # readers show with a leading space: headers may be up to RFC 5322's 998 characters.
        mail.policy = email.policy.SMTP.clone(max_line_length=998)
        return mail

    def send(self, notification: Notification) -> None:
        """Connect, send one message and return once the server accepted it (250)."""
        try:
            mail = self.message(notification)
        except ValueError as exc:  # a header the e-mail format cannot hold: never will
            raise RefusedError(f"the e-mail cannot be written: {exc}") from exc
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self._ca_file))
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self._password or "")
                refused = smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise self._by_code(min(codes), f"every recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            # The login, not the message: fixing PILOTS_ALERT_SMTP_* lets the rows go out.
            raise DeliveryError(f"SMTP login to {self.host} refused: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            raise self._by_code(exc.smtp_code, f"SMTP {exc.smtp_code} from {self.host}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP server {self.host}:{self.port}: {exc}") from exc
        if refused:
            log.warning("alert %s: some recipients refused: %s", notification.key, refused)

    @staticmethod
    def _by_code(code: int, reason: str) -> DeliveryError | RefusedError:
        return RefusedError(reason) if 500 <= code < 600 else DeliveryError(reason)

    def close(self) -> None:
        """Nothing is kept open between sends."""


def recipients(text: str | None) -> list[str]:
    """`a@x, b@y` → the addresses."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def enabled_channels(settings: Settings) -> list[Channel]:
    """The channels the settings turn on: webhook (URL set), mqtt (on), email (host set)."""
    out: list[Channel] = []
    timeout = settings.alert_send_timeout_s
    if settings.alert_webhook_url:
        secret = settings.alert_webhook_secret
        out.append(
            WebhookChannel(
                settings.alert_webhook_url,
                secret.get_secret_value() if secret else "",
                timeout_s=timeout,
            )
        )
    if settings.alert_mqtt:
        out.append(
            MqttChannel(
                alert_mqtt_target(settings),
                settings.alert_mqtt_client_id,
                protocol=settings.mqtt_protocol,
                timeout_s=timeout,
                keepalive_s=settings.mqtt_keepalive_s,
            )
        )
    if settings.alert_smtp_host:
        password = settings.alert_smtp_password
        out.append(
            EmailChannel(
                settings.alert_smtp_host,
                settings.alert_smtp_port,
                settings.alert_smtp_from or "",
                recipients(settings.alert_smtp_to),
                starttls=settings.alert_smtp_starttls,
                user=settings.alert_smtp_user,
                password=password.get_secret_value() if password else None,
                ca_file=settings.alert_smtp_ca_file,
                timeout_s=timeout,
            )
        )
    return out


def alert_mqtt_target(settings: Settings) -> MqttTarget:
    """The broker of `PILOTS_MQTT_URL`, logged in as the alerts' client id where it says so."""
    target = MqttTarget.parse(settings.mqtt_url or f"mqtt://127.0.0.1:{DEFAULT_MQTT_PORT}")
    if target.username is not None and CLIENT_ID_LOGIN in target.username:
        username = target.username.replace(CLIENT_ID_LOGIN, settings.alert_mqtt_client_id)
        target = replace(target, username=username)
    if settings.mqtt_ca_file is not None:
        target = replace(target, ca_file=str(settings.mqtt_ca_file))
    return target

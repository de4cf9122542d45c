"""The alert outbox and dispatcher without servers: durability, the bound, retries, refusals.

The channels here are fakes that answer as told; tests/integration/test_alert_channels.py
sends to a real HTTP receiver, Mosquitto and an SMTP server.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.channels import EmailChannel, MqttChannel, WebhookChannel, enabled_channels
from alerts.message import Notification, compose
from alerts.outbox import (
    DROPPED_AGE,
    DROPPED_FULL,
    DeliveryError,
    Dispatcher,
    Outbox,
    OutboxError,
    Pending,
    RefusedError,
    backoff_s,
)
from core.errors import ConfigError
from core.registry import Registry
from core.settings import Settings, load_settings
from core.timeutil import NS_PER_S, parse_instant_ns
from tests.helpers import wait_for

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
        value=5.34,
        start_ns=T0,
        end_ns=None if kind == "fired" else T0 + 60 * NS_PER_S,
    )


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Fake:
    """A channel that answers from a script (an exception to raise, or None: confirmed)."""

    def __init__(self, name: str, script: list[Exception | None] | None = None) -> None:
        self.name = name
        self.script = list(script or [])
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        with self.lock:
            self.sent.append(notification.key)
            outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome

    def close(self) -> None:
        pass


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "alerts.sqlite"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    box = Outbox(path, ["webhook", "mqtt"], max_pending=100)
    yield box
    box.close()


def dispatch(outbox: Outbox, *channels: Fake, seed: int = 1) -> Dispatcher:
    return Dispatcher(
        outbox, channels, retry_base_s=0.01, retry_max_s=0.05, rng=random.Random(seed)
    ).start()


def test_an_added_notification_is_durable_one_row_per_channel(
    registry: Registry, outbox: Outbox, path: Path
) -> None:
    assert outbox.add([note(registry, "a1"), note(registry, "a2")]) == 4
    reopened = Outbox(path, ["webhook", "mqtt"])
    assert reopened.pending() == {"webhook": 2, "mqtt": 2}
    assert [row.notification for row in reopened.due("webhook")] == [
        note(registry, "a1"),
        note(registry, "a2"),
    ]
    reopened.close()


def test_the_same_key_twice_is_one_notification_even_after_delivery(
    registry: Registry, outbox: Outbox
) -> None:
    outbox.add([note(registry, "a1")])
    assert outbox.add([note(registry, "a1"), note(registry, "a1")]) == 0
    assert outbox.pending() == {"webhook": 1, "mqtt": 1}
    for channel in ("webhook", "mqtt"):
        (row,) = outbox.due(channel)
        outbox.mark_delivered(row)
    assert outbox.add([note(registry, "a1")]) == 0  # still remembered: not sent again
    assert outbox.pending() == {"webhook": 0, "mqtt": 0}
    assert outbox.delivered == {"webhook": 1, "mqtt": 1}


def test_overfilled_the_oldest_waiting_rows_are_dropped_and_counted(
    registry: Registry, path: Path
) -> None:
    box = Outbox(path, ["webhook", "mqtt"], max_pending=5)
    box.add([note(registry, f"a{i}") for i in range(4)])  # 8 rows, room for 5
    assert box.pending() == {"webhook": 2, "mqtt": 3}
    assert box.dropped == {("webhook", DROPPED_FULL): 2, ("mqtt", DROPPED_FULL): 1}
    # the oldest went: a0 on both channels, then a1 on the first
    assert box.rows("a0:fired")["webhook"].state == "dropped"
    assert box.rows("a0:fired")["webhook"].reason == DROPPED_FULL
    assert box.rows("a1:fired")["mqtt"].state == "pending"
    assert [r.notification.alarm_id for r in box.due("webhook")] == ["a2", "a3"]
    box.close()


def test_rows_waiting_too_long_are_dropped_and_counted(registry: Registry, path: Path) -> None:
    clock = Clock()
    box = Outbox(path, ["webhook"], max_pending=10, max_age_s=3600, clock=clock)
    box.add([note(registry, "old")])
    clock.now += 1800 * NS_PER_S
    box.add([note(registry, "young")])
    clock.now += 1801 * NS_PER_S
    assert box.expire() == 1
    assert box.dropped == {("webhook", DROPPED_AGE): 1}
    assert box.rows("old:fired")["webhook"].reason == DROPPED_AGE
    assert box.pending() == {"webhook": 1}
    clock.now += 3601 * NS_PER_S  # the dropped row is forgotten, the young one dropped in turn
    box.expire()
    assert box.rows("old:fired") == {}
    assert box.dropped[("webhook", DROPPED_AGE)] == 2
    box.close()


def test_one_alarms_events_go_out_in_order_others_pass(registry: Registry, path: Path) -> None:
    clock = Clock()
    box = Outbox(path, ["mqtt"], clock=clock)
    box.add([note(registry, "a1"), note(registry, "a1", "cleared"), note(registry, "a2")])
    first, *_ = box.due("mqtt")
    box.retry_later(first, 30.0, "broker down")
    # a1's cleared waits behind its fired, a2 goes on
    assert [r.notification.key for r in box.due("mqtt")] == ["a2:fired"]
    assert box.next_due_ns("mqtt") == T0
    clock.now += 31 * NS_PER_S
    assert [r.notification.key for r in box.due("mqtt")] == ["a2:fired", "a1:fired"]
    assert box.retried == {"mqtt": 1}
    box.close()


def test_the_dispatcher_retries_until_the_channel_confirms(
    registry: Registry, outbox: Outbox
) -> None:
    webhook = Fake("webhook", [DeliveryError("down"), DeliveryError("down"), None])
    mqtt = Fake("mqtt")
    dispatcher = dispatch(outbox, webhook, mqtt)
    outbox.add([note(registry, "a1")])
    wait_for(lambda: outbox.pending() == {"webhook": 0, "mqtt": 0}, 10, "both delivered")
    dispatcher.stop()
    assert webhook.sent == ["a1:fired"] * 3 and mqtt.sent == ["a1:fired"]
    assert outbox.retried == {"webhook": 2}
    assert outbox.delivered == {"webhook": 1, "mqtt": 1}
    row = outbox.rows("a1:fired")["webhook"]
    assert (row.state, row.attempts) == ("delivered", 3)


def test_a_permanent_refusal_is_recorded_and_never_retried(
    registry: Registry, outbox: Outbox
) -> None:
    webhook = Fake("webhook", [RefusedError("HTTP 400: unknown pilot")])
    dispatcher = dispatch(outbox, webhook, Fake("mqtt"))
    outbox.add([note(registry, "a1"), note(registry, "a2")])
    wait_for(lambda: outbox.pending()["webhook"] == 0, 10, "the webhook rows done")
    dispatcher.stop()
    assert webhook.sent == ["a1:fired", "a2:fired"]
    row = outbox.rows("a1:fired")["webhook"]
    assert (row.state, row.reason) == ("refused", "HTTP 400: unknown pilot")
    assert outbox.refused == {"webhook": 1}
    assert outbox.delivered["webhook"] == 1


def test_a_retry_after_is_waited_out(registry: Registry, path: Path) -> None:
    clock = Clock()  # frozen: the row never becomes due again while the test looks
    box = Outbox(path, ["webhook"], clock=clock)
    webhook = Fake("webhook", [DeliveryError("HTTP 429", retry_after_s=120.0)])
    dispatcher = dispatch(box, webhook)
    box.add([note(registry, "a1")])
    wait_for(lambda: box.retried["webhook"] == 1, 10, "the failed attempt counted")
    dispatcher.stop()
    due = box.next_due_ns("webhook")
    assert due is not None and due - clock.now >= 120 * NS_PER_S
    assert box.rows("a1:fired")["webhook"].reason == "HTTP 429"
    box.close()


def test_a_channel_fault_is_retried_not_a_dead_thread(registry: Registry, outbox: Outbox) -> None:
    webhook = Fake("webhook", [KeyError("bug"), None])
    dispatcher = dispatch(outbox, webhook, Fake("mqtt"))
    outbox.add([note(registry, "a1")])
    wait_for(lambda: outbox.delivered["webhook"] == 1, 10, "delivered after the fault")
    dispatcher.stop()
    assert outbox.retried == {"webhook": 1}


def test_a_row_no_version_can_read_is_refused_not_a_dead_channel(
    registry: Registry, outbox: Outbox, path: Path
) -> None:
    outbox.add([note(registry, "a1")])
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE outbox SET body = ? WHERE channel = 'webhook'", (b'{"key": "a1"}',))
    db.close()
    assert outbox.due("webhook") == []
    row = outbox.rows("a1:fired")["webhook"]
    assert row.state == "refused" and (row.reason or "").startswith("unreadable row")
    assert outbox.refused == {"webhook": 1}


def test_an_outbox_failure_pauses_the_channel_and_it_goes_on(
    registry: Registry, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_due = outbox.due
    calls: list[str] = []

    def failing_once(channel: str, limit: int = 100) -> list[Pending]:
        calls.append(channel)
        if calls.count(channel) == 1:
            raise OutboxError("disk full")
        return real_due(channel, limit)

    monkeypatch.setattr(outbox, "due", failing_once)
    outbox.add([note(registry, "a1")])
    dispatcher = dispatch(outbox, Fake("webhook"), Fake("mqtt"))
    wait_for(lambda: outbox.delivered == {"webhook": 1, "mqtt": 1}, 10, "delivered after it")
    dispatcher.stop()


def test_stopped_mid_way_a_new_dispatcher_sends_what_was_not_confirmed(
    registry: Registry, path: Path
) -> None:
    box = Outbox(path, ["webhook"])
    box.add([note(registry, f"a{i}") for i in range(3)])
    (first, *_) = box.due("webhook")
    box.mark_delivered(first)  # the rest were sent, perhaps, but never confirmed
    box.close()
    again = Outbox(path, ["webhook"])
    webhook = Fake("webhook")
    dispatcher = dispatch(again, webhook)
    wait_for(lambda: again.pending()["webhook"] == 0, 10, "the rest delivered")
    dispatcher.stop()
    assert webhook.sent == ["a1:fired", "a2:fired"]
    again.close()


def test_one_dispatcher_per_outbox(registry: Registry, outbox: Outbox) -> None:
    first = dispatch(outbox, Fake("webhook"), Fake("mqtt"))
    with pytest.raises(OutboxError, match="another alert dispatcher"):
        Dispatcher(outbox, [Fake("webhook")]).start()
    first.stop()
    Dispatcher(outbox, [Fake("webhook")]).start().stop()


def test_channels_must_be_the_outboxs(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="do not match"):
        Dispatcher(outbox, [Fake("email")])


@pytest.mark.parametrize("failures", range(1, 12))
def test_backoff_is_full_jitter_under_a_cap(failures: int) -> None:
    rng = random.Random(failures)
    ceiling = min(60.0, 1.0 * 2 ** (failures - 1))
    delays = [backoff_s(failures, 1.0, 60.0, rng) for _ in range(400)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling


# -- the channels' settings ----------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No `PILOTS_*` variables from the caller's shell and no `.env` file from the checkout."""
    for name in list(os.environ):
        if name.upper().startswith("PILOTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_no_channel_unless_configured(env: pytest.MonkeyPatch) -> None:
    assert enabled_channels(load_settings()) == []


def test_each_configured_channel_is_enabled(env: pytest.MonkeyPatch) -> None:
    env.setenv("PILOTS_ALERT_WEBHOOK_URL", "https://hooks.example.org/pilots")
    env.setenv("PILOTS_ALERT_WEBHOOK_SECRET", "9f2c61d0a4b7e853")
    env.setenv("PILOTS_ALERT_MQTT", "true")
    env.setenv("PILOTS_MQTT_URL", "mqtt://{client_id}:pw@broker:1883")
    env.setenv("PILOTS_ALERT_SMTP_HOST", "smtp.example.org")
    env.setenv("PILOTS_ALERT_SMTP_FROM", "pilots@example.org")
    env.setenv("PILOTS_ALERT_SMTP_TO", "ops@example.org, river@example.org")
    webhook, mqtt, email = enabled_channels(load_settings())
    assert isinstance(webhook, WebhookChannel) and webhook.url.endswith("/pilots")
    assert isinstance(mqtt, MqttChannel) and mqtt.target.username == "pilots-alerts"
    assert isinstance(email, EmailChannel)
    assert email.recipients == ("ops@example.org", "river@example.org")
    assert (email.port, email.starttls) == (587, True)


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"PILOTS_ALERT_WEBHOOK_URL": "https://h.example"}, "PILOTS_ALERT_WEBHOOK_SECRET"),
        ({"PILOTS_ALERT_WEBHOOK_URL": "hooks.example", "PILOTS_ALERT_WEBHOOK_SECRET": "k"}, "http"),
        ({"PILOTS_ALERT_SMTP_HOST": "smtp.example"}, "PILOTS_ALERT_SMTP_FROM"),
        ({"PILOTS_ALERT_DASHBOARD_URL": "pilots.example"}, "PILOTS_ALERT_DASHBOARD_URL"),
        ({"PILOTS_ALERT_OUTBOX_MAX": "0"}, "PILOTS_ALERT_OUTBOX_MAX"),
    ],
)
def test_incomplete_channels_are_refused_at_start(
    env: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=problem):
        load_settings()


@pytest.mark.parametrize("variable", ["PILOTS_ALERT_WEBHOOK_SECRET", "PILOTS_ALERT_SMTP_PASSWORD"])
def test_production_refuses_a_placeholder_alert_secret(
    env: pytest.MonkeyPatch, variable: str
) -> None:
    env.setenv("PILOTS_ALERT_WEBHOOK_URL", "https://hooks.example.org/pilots")
    env.setenv("PILOTS_ALERT_WEBHOOK_SECRET", "a-real-9f2c61d0a4b7e853")
    env.setenv("PILOTS_ALERT_SMTP_PASSWORD", "a-real-Zr9mWq")
    env.setenv(variable, "changeme")
    env.setenv("PILOTS_ENV", "production")
    with pytest.raises(ConfigError, match=f"{variable} is a placeholder"):
        load_settings()
    env.setenv("PILOTS_ENV", "development")
    assert load_settings().alert_webhook_secret is not None


def test_the_outbox_lives_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, alert_outbox_max=7)
    box = Outbox.from_settings(settings, ["email"])
    assert box.path == tmp_path / "alerts.sqlite"
    assert box.max_pending == 7
    box.close()

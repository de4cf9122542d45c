"""`unhealthy` rules: the pending and clear logic of `HealthWatch`, on a fake clock and fetch.

The endpoints' answers are a dict the test changes; the clock is a number the test moves;
`poll()` is one round. The HTTP side (`HttpFetch`) against a real server is in
tests/integration/test_alert_health.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import ReadTimeoutError

from alerts.health import (
    HealthWatch,
    failure,
    health_rules,
    status_reason,
)
from alerts.message import Notification, notification_for, subject
from alerts.store import Alarm
from core.alerts import AlertEvent, parse_rules
from core.alerts.evaluate import alarm_id
from core.alerts.rules import Rule
from core.registry import Registry
from core.timeutil import NS_PER_S

URL = "http://127.0.0.1:9101/health"
#: 2026-12-06 14:05 UTC.
T0 = 1_796_565_900 * NS_PER_S
DASHBOARD = "http://127.0.0.1:8000/"


class Clock:
    """A clock the test moves, in seconds after T0."""

    def __init__(self) -> None:
        self.ns = T0

    def __call__(self) -> int:
        return self.ns

    def at(self, seconds: float) -> None:
        self.ns = T0 + int(seconds * NS_PER_S)


class Answers:
    """What each rule's endpoint answers: None healthy, else the reason; every call counted."""

    def __init__(self) -> None:
        self.reason: dict[str, str | None] = {}
        self.calls: list[str] = []

    def __call__(self, rule: Rule) -> str | None:
        self.calls.append(rule.id)
        return self.reason.get(rule.id)


def rules_of(registry: Registry, *specs: dict[str, Any]) -> tuple[Rule, ...]:
    document = {"defaults": {"include": False}, "rules": list(specs)}
    return parse_rules(document, registry, source="rules.toml")


def ingest(**changes: Any) -> dict[str, Any]:
    return {
        "id": "system.ingest-1",
        "kind": "unhealthy",
        "url": URL,
        "component": "ingest-1",
        "pending_s": 60,
        "clear_s": 0,
        **changes,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def answers() -> Answers:
    return Answers()


def watch_of(rules: tuple[Rule, ...], clock: Clock, answers: Answers) -> HealthWatch:
    return HealthWatch(rules, clock=clock, every_s=15, fetch=answers)


def run(
    watch: HealthWatch, clock: Clock, answers: Answers, script: list[tuple[float, Any]]
) -> None:
    """At each time (seconds after T0), the endpoint answers this, and a round runs."""
    for seconds, reason in script:
        clock.at(seconds)
        answers.reason["system.ingest-1"] = reason
        watch.poll()


def s(seconds: float) -> int:
    return T0 + int(seconds * NS_PER_S)


# --- pending and clearing -------------------------------------------------------------------


def test_it_fires_once_unhealthy_for_pending_s_starting_when_first_seen(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    watch = watch_of(rules_of(registry, ingest()), clock, answers)
    run(watch, clock, answers, [(0, None), (15, "HTTP 503"), (30, "HTTP 503"), (45, "HTTP 503")])
    run(watch, clock, answers, [(60, "HTTP 503")])
    assert watch.drain() == []  # 45 s unhealthy: still pending
    run(watch, clock, answers, [(75, "HTTP 503")])
    (fired,) = watch.drain()
    start = s(15)
    expected_id = alarm_id("system.ingest-1", "ingest-1", start)
    assert fired == AlertEvent(
        id=f"{expected_id}:fired",
        alarm_id=expected_id,
        type="fired",
        rule="system.ingest-1",
        kind="unhealthy",
        pilot="system",
        device="ingest-1",
        sensor=None,
        severity="critical",
        label=f"unhealthy: HTTP 503 ({URL})",
        level=60.0,
        direction="above",
        start_ns=start,
        end_ns=None,
        at_ns=s(75),
        value=60.0,
        latest=60.0,
        peak=60.0,
        late=False,
    )
    run(watch, clock, answers, [(90, "connection refused"), (105, "HTTP 503")])
    assert watch.drain() == []  # one alarm per episode
    assert watch.open_alarms() == {"system.ingest-1": expected_id}


def test_a_blip_shorter_than_pending_fires_nothing_and_the_next_run_starts_afresh(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    watch = watch_of(rules_of(registry, ingest(pending_s=30)), clock, answers)
    run(watch, clock, answers, [(0, "HTTP 503"), (15, "HTTP 503"), (30, None)])
    run(watch, clock, answers, [(45, "no answer within 5 s"), (60, "HTTP 503")])
    assert watch.drain() == []
    run(watch, clock, answers, [(75, "HTTP 503")])
    (fired,) = watch.drain()
    assert (fired.start_ns, fired.at_ns, fired.value) == (s(45), s(75), 30.0)
    assert fired.label == f"unhealthy: no answer within 5 s ({URL})"  # the run's first reason


def test_it_clears_after_clear_s_healthy_and_a_relapse_keeps_the_alarm(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    watch = watch_of(rules_of(registry, ingest(pending_s=0, clear_s=30)), clock, answers)
    run(watch, clock, answers, [(0, "HTTP 503")])
    (fired,) = watch.drain()
    assert (fired.start_ns, fired.at_ns, fired.value) == (s(0), s(0), 0.0)  # pending 0: at once
    run(watch, clock, answers, [(15, None), (30, "HTTP 503")])  # healthy 15 s, then not again
    run(watch, clock, answers, [(45, None), (60, None)])
    assert watch.drain() == []  # healthy for 15 s of the 30
    run(watch, clock, answers, [(75, None)])
    (cleared,) = watch.drain()
    assert cleared.type == "cleared"
    assert cleared.alarm_id == fired.alarm_id and cleared.id == f"{fired.alarm_id}:cleared"
    assert (cleared.start_ns, cleared.end_ns, cleared.at_ns) == (s(0), s(45), s(75))
    assert (cleared.value, cleared.latest, cleared.peak) == (45.0, 45.0, 45.0)
    assert cleared.label == fired.label
    assert watch.open_alarms() == {}
    # the next episode is another alarm
    run(watch, clock, answers, [(90, "HTTP 500")])
    (again,) = watch.drain()
    assert again.type == "fired" and again.alarm_id != fired.alarm_id
    assert again.start_ns == s(90)


def test_clear_s_zero_clears_at_the_first_healthy_answer(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    watch = watch_of(rules_of(registry, ingest(pending_s=15)), clock, answers)
    run(watch, clock, answers, [(0, "HTTP 503"), (15, "HTTP 503"), (30, None)])
    fired, cleared = watch.drain()
    assert (fired.type, cleared.type) == ("fired", "cleared")
    assert (cleared.end_ns, cleared.at_ns, cleared.value) == (s(30), s(30), 30.0)


def test_a_fetch_that_fails_is_unhealthy_with_its_reason(registry: Registry, clock: Clock) -> None:
    def broken(rule: Rule) -> str | None:
        raise RuntimeError("a bug")

    watch = HealthWatch(rules_of(registry, ingest(pending_s=0)), clock=clock, fetch=broken)
    watch.poll()
    (fired,) = watch.drain()
    assert fired.label == f"unhealthy: check failed: RuntimeError ({URL})"


def test_each_rule_is_judged_on_its_own_and_only_unhealthy_rules_are_watched(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    rules = rules_of(
        registry,
        ingest(pending_s=0),
        ingest(id="system.api", url="http://127.0.0.1:8000/health", component=None, pending_s=0),
        {"id": "river", "kind": "threshold", "sensor": "level", "level": 5.3},
    )
    assert [r.id for r in health_rules(rules)] == ["system.ingest-1", "system.api"]
    watch = watch_of(rules, clock, answers)
    answers.reason["system.api"] = "HTTP 503: unavailable"
    watch.poll()
    (fired,) = watch.drain()
    assert (fired.rule, fired.device) == ("system.api", "127.0.0.1:8000")
    assert answers.calls == ["system.ingest-1", "system.api"]  # one request per rule a round
    assert watch.drain() == []


# --- a restart: adopt() ---------------------------------------------------------------------


def alarm(event: AlertEvent, **changes: Any) -> Alarm:
    """The store's row of a fired event."""
    fields: dict[str, Any] = {
        "id": event.alarm_id,
        "rule": event.rule,
        "kind": event.kind,
        "pilot": event.pilot,
        "device": event.device,
        "sensor": event.sensor,
        "severity": event.severity,
        "label": event.label,
        "level": event.level,
        "direction": event.direction,
        "start_ns": event.start_ns,
        "end_ns": None,
        "fired_ns": event.at_ns,
        "cleared_ns": None,
        "value": event.value,
        "peak": event.peak,
        "latest": event.latest,
        "late": False,
        "active": True,
        "acked_ns": None,
        "acked_by": None,
        "ack_note": None,
        "seq": 1,
    }
    return Alarm(**(fields | changes))


def test_an_adopted_alarm_is_not_fired_again_and_clears_when_healthy(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    rules = rules_of(registry, ingest(pending_s=0, clear_s=30))
    before = watch_of(rules, clock, answers)
    run(before, clock, answers, [(0, "HTTP 503")])
    (fired,) = before.drain()
    # a restart: a new watch, the store's active alarms adopted
    after = watch_of(rules, clock, answers)
    assert after.adopt([alarm(fired)]) == 1
    run(after, clock, answers, [(100, "connection refused"), (115, None), (130, None)])
    assert after.drain() == []
    run(after, clock, answers, [(145, None)])
    (cleared,) = after.drain()
    assert (cleared.type, cleared.alarm_id, cleared.start_ns) == (
        "cleared",
        fired.alarm_id,
        fired.start_ns,
    )
    assert (cleared.end_ns, cleared.device, cleared.label) == (s(115), "ingest-1", fired.label)


def test_only_the_rules_own_active_alarms_are_adopted(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    rules = rules_of(registry, ingest(pending_s=0))
    source = watch_of(rules, clock, answers)
    run(source, clock, answers, [(0, "HTTP 503")])
    (fired,) = source.drain()
    others = [
        alarm(fired, active=False),  # cleared
        alarm(fired, rule="system.gone"),  # no such rule now
        alarm(fired, kind="threshold"),
        alarm(fired, label="unhealthy: HTTP 503 (http://127.0.0.1:9102/health)"),  # another URL
    ]
    watch = watch_of(rules, clock, answers)
    assert watch.adopt(others) == 0
    older = alarm(fired, id="0" * 24, start_ns=s(-600))
    assert watch.adopt([older, alarm(fired)]) == 1  # the newest of the rule's
    assert watch.open_alarms() == {"system.ingest-1": fired.alarm_id}
    assert watch.adopt([older]) == 0  # the rule has its alarm


# --- a reload: replace_rules() --------------------------------------------------------------


def test_a_reload_keeps_the_state_of_rules_whose_id_and_url_stay(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    rules = rules_of(
        registry,
        ingest(pending_s=0, clear_s=600),
        ingest(id="system.api", url="http://127.0.0.1:8000/health", pending_s=0),
        ingest(id="system.ingest-2", url="http://127.0.0.1:9102/health", pending_s=0),
    )
    watch = watch_of(rules, clock, answers)
    answers.reason.update({r.id: "HTTP 503" for r in rules})
    watch.poll()
    fired = {e.rule: e for e in watch.drain()}
    assert set(fired) == {"system.ingest-1", "system.api", "system.ingest-2"}
    watch.replace_rules(
        rules_of(
            registry,
            ingest(pending_s=0, clear_s=0, severity="warning"),  # same id and URL: kept
            ingest(id="system.api", url="http://127.0.0.1:8001/health", pending_s=0),  # moved
            ingest(id="system.ingest-3", url="http://127.0.0.1:9103/health", pending_s=0),
        )  # system.ingest-2 removed
    )
    assert [r.id for r in watch.rules] == ["system.ingest-1", "system.api", "system.ingest-3"]
    assert watch.open_alarms() == {"system.ingest-1": fired["system.ingest-1"].alarm_id}
    clock.at(30)
    answers.reason = {"system.api": "connection refused"}
    watch.poll()
    events = {e.rule: e for e in watch.drain()}
    cleared = events["system.ingest-1"]  # with the new clear_s (0), severity too
    assert (cleared.type, cleared.alarm_id, cleared.severity) == (
        "cleared",
        fired["system.ingest-1"].alarm_id,
        "warning",
    )
    moved = events["system.api"]  # a new URL: a new watch, a new alarm
    assert moved.type == "fired" and moved.alarm_id != fired["system.api"].alarm_id
    assert moved.label == "unhealthy: connection refused (http://127.0.0.1:8001/health)"
    assert set(events) == {"system.ingest-1", "system.api"}


# --- the thread -----------------------------------------------------------------------------


def test_the_thread_asks_every_rule_once_a_round_with_a_bounded_number_of_threads(
    registry: Registry,
) -> None:
    specs = [
        ingest(id=f"system.ingest-{i}", url=f"http://127.0.0.1:910{i}/health") for i in range(6)
    ]
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    calls: list[str] = []

    def slow(rule: Rule) -> str | None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            calls.append(rule.id)
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return None

    watch = HealthWatch(rules_of(registry, *specs), every_s=0.05, fetch=slow, workers=2)
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while watch.rounds < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        watch.stop()
    assert watch.rounds >= 3
    assert state["most"] <= 2
    rounds = watch.rounds
    with lock:
        counts = {rule_id: calls.count(rule_id) for rule_id in {r["id"] for r in specs}}
    # every rule as often as the others: one request each a round (one round may be cut short)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert min(counts.values()) >= rounds - 1


def test_a_watch_starts_once_and_refuses_a_bad_period(registry: Registry) -> None:
    with pytest.raises(ValueError, match="every_s"):
        HealthWatch((), every_s=0)
    watch = HealthWatch((), every_s=60).start()
    try:
        with pytest.raises(RuntimeError, match="once"):
            watch.start()
    finally:
        watch.stop()


# --- reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, b"", "HTTP 503"),
        (
            503,
            b'{"status": "unhealthy", "problems": ["store unreachable for 75 s", "spool full"]}',
            "HTTP 503: store unreachable for 75 s; spool full",
        ),
        (503, b'{"status":"unavailable"}', "HTTP 503: unavailable"),
        (  # cut at the body limit, the members not closed: the problems are still found
            503,
            b'{"status":"unhealthy","problems":["broker unreachable for 61 s"],"members":{"a',
            "HTTP 503: broker unreachable for 61 s",
        ),
        (500, b"<html>Internal\nServer Error</html>", "HTTP 500"),
        (301, b"", "HTTP 301"),
    ],
)
def test_a_status_reason_says_what_the_body_says(status: int, body: bytes, reason: str) -> None:
    assert status_reason(status, body) == reason


def test_a_reason_is_one_short_line(registry: Registry) -> None:
    long = status_reason(503, b'{"status": "' + b"x\\n" * 300 + b'"}')
    assert len(long) == 160 and "\n" not in long and long.endswith("\N{HORIZONTAL ELLIPSIS}")
    (rule,) = rules_of(registry, ingest(timeout_s=2.5))
    assert failure(
        ReadTimeoutError(HTTPConnectionPool("127.0.0.1"), "/health", "timed out"), rule
    ) == ("no answer within 2.5 s")


# --- the notification -----------------------------------------------------------------------


def test_the_notification_names_the_component_the_url_and_the_reason_in_utc(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    watch = watch_of(rules_of(registry, ingest(pending_s=60)), clock, answers)
    reason = "HTTP 503: store unreachable for 75 s"
    run(watch, clock, answers, [(0, reason), (60, reason), (300, None)])
    fired_event, cleared_event = watch.drain()
    fired = notification_for(fired_event, registry, dashboard_url=DASHBOARD)
    cleared = notification_for(cleared_event, registry, dashboard_url=DASHBOARD)
    assert fired.text == (
        "System: ingest-1 (http://127.0.0.1:9101/health) unhealthy since 14:05 UTC on "
        "2026-12-06: HTTP 503: store unreachable for 75 s."
    )
    assert cleared.text == "System: ingest-1 healthy again at 14:10 UTC on 2026-12-06 after 5 min."
    assert (fired.title, cleared.title) == (
        "System: ingest-1 unhealthy",
        "System: ingest-1 healthy again",
    )
    assert subject(fired) == "[CRITICAL] System: ingest-1 unhealthy"
    assert (fired.pilot, fired.pilot_name, fired.device, fired.site) == (
        "system",
        "System",
        "ingest-1",
        URL,
    )
    assert (fired.sensor, fired.sensor_name, fired.unit, fired.timezone) == ("", "", "s", "UTC")
    assert (fired.rule_kind, fired.threshold, fired.value) == ("unhealthy", 60.0, 60.0)
    assert (fired.key, cleared.key) == (fired_event.id, cleared_event.id)
    assert (fired.active, cleared.active) == (True, False)
    assert cleared.peak == 300.0
    assert fired.link == DASHBOARD
    assert Notification.from_json(fired.to_json()) == fired


def test_a_late_or_unparsed_health_alarm_still_reads(
    registry: Registry, clock: Clock, answers: Answers
) -> None:
    watch = watch_of(rules_of(registry, ingest(pending_s=0)), clock, answers)
    run(watch, clock, answers, [(0, "HTTP 502"), (600, None)])
    fired, cleared = watch.drain()
    late = notification_for(dataclasses.replace(cleared, late=True), registry, dashboard_url="")
    assert late.text == (
        "System: ingest-1 (http://127.0.0.1:9101/health) was unhealthy for 10 min from 14:05 UTC "
        "on 2026-12-06: HTTP 502."
    )
    bare = dataclasses.replace(fired, label="unhealthy: HTTP 502")
    assert notification_for(bare, registry, dashboard_url="").text == (
        "System: ingest-1 unhealthy since 14:05 UTC on 2026-12-06: HTTP 502."
    )

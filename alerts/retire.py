"""Alarms closed because their rule or device is no longer configured (a reload removed it).

The evaluator drops the state of rules and devices that are gone, so such an alarm would stay
active for ever: the alert service closes it with a `cleared` event at the reload, and the
notification says so plainly instead of claiming the value came back.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC

from alerts.message import Notification
from alerts.store import Alarm
from core.alerts import AlertEvent
from core.registry import Registry
from core.timeutil import ns_to_datetime


def retired(alarm: Alarm, now_ns: int) -> AlertEvent:
    """The `cleared` event that closes `alarm` at `now_ns`."""

    def finite(x: float) -> float:
        return x if math.isfinite(x) else 0.0

    return AlertEvent(
        id=f"{alarm.id}:cleared",
        alarm_id=alarm.id,
        type="cleared",
        rule=alarm.rule,
        kind=alarm.kind,  # type: ignore[arg-type]  # a kind the store got from an event
        pilot=alarm.pilot,
        device=alarm.device,
        sensor=alarm.sensor,
        severity=alarm.severity,  # type: ignore[arg-type]
        label=alarm.label,
        level=alarm.level,
        direction=alarm.direction,  # type: ignore[arg-type]
        start_ns=alarm.start_ns,
        end_ns=max(now_ns, alarm.start_ns),
        at_ns=now_ns,
        value=finite(alarm.latest),
        latest=finite(alarm.latest),
        peak=finite(alarm.peak),
        late=False,
    )


def retired_words(note: Notification, alarm: Alarm, registry: Registry) -> Notification:
    """`note` (the event's notification) saying that the alarm was closed, not cleared."""
    pilot = registry.pilots.get(alarm.pilot)
    tz = pilot.tz if pilot is not None else UTC
    since = ns_to_datetime(alarm.start_ns, tz).strftime("%H:%M on %Y-%m-%d")
    head = f"{note.pilot_name}: the alarm {alarm.rule} at {alarm.device}"
    return replace(
        note,
        title=f"{head} closed: no longer configured",
        text=(
            f"{head} (active since {since}) was closed: its rule or device was removed from "
            "the configuration, so it is no longer watched."
        ),
    )

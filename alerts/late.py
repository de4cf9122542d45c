"""Many late episodes of one rule and device in one evaluation become one late alarm.

A backlog is worth telling, but a backlog can also be a flood: one message of a device (up to
`PILOTS_INGEST_MAX_PAYLOAD_BYTES`) can hold thousands of readings crossing a level back and
forth, each crossing an episode, each episode an alarm and two notifications on every channel.
So, per (rule, device) and evaluation, the first `MERGE_AFTER` late episodes are told one by
one and the rest as one: a late alarm from the first of them to the end of the last, with the
most extreme peak, whose notification says how many episodes it stands for and when they
were. Live alarms are never merged (hysteresis and pending already make them one per episode).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from alerts.message import Notification
from core.alerts import AlertEvent
from core.timeutil import ns_to_datetime

#: Late episodes of one rule and device in one evaluation that are told one by one.
MERGE_AFTER = 3


@dataclass(frozen=True, slots=True)
class Merged:
    """What a merged late alarm stands for."""

    episodes: int
    first_start_ns: int
    last_end_ns: int | None


def bound_late(
    events: list[AlertEvent], keep: int = MERGE_AFTER
) -> tuple[list[AlertEvent], dict[str, Merged]]:
    """The events with the late episodes beyond `keep` per (rule, device) merged into one.

    Returns the events (in their order; a merged alarm's events where its first episode's
    were) and, by the merged alarm's id, what each merged alarm stands for.
    """
    episodes: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_alarm: dict[str, list[AlertEvent]] = defaultdict(list)
    for e in events:
        if e.late:
            if e.alarm_id not in by_alarm:
                episodes[(e.rule, e.device)].append(e.alarm_id)
            by_alarm[e.alarm_id].append(e)
    replaced: dict[str, AlertEvent] = {}
    dropped: set[str] = set()
    merged: dict[str, Merged] = {}
    for ids in episodes.values():
        if len(ids) - keep >= 2:
            merged.update(_merge(ids[keep:], by_alarm, replaced, dropped))
    out = [replaced.get(e.id, e) for e in events if e.id not in dropped or e.id in replaced]
    placed = {e.id for e in out}
    out += [e for event_id, e in replaced.items() if event_id not in placed]
    return out, merged


def _merge(
    rest: list[str],
    by_alarm: dict[str, list[AlertEvent]],
    replaced: dict[str, AlertEvent],
    dropped: set[str],
) -> dict[str, Merged]:
    """Merge the episodes `rest` into the first of them (filling `replaced` and `dropped`)."""
    first, last = rest[0], rest[-1]
    opening = by_alarm[first][0]
    cleared = [e for a in rest for e in by_alarm[a] if e.type == "cleared"]
    peaks = [e.peak for e in by_alarm[first] + cleared]
    peak = max(peaks) if opening.direction == "above" else min(peaks)
    if opening.type == "fired":
        replaced[opening.id] = replace(opening, peak=peak)
    end = cleared[-1] if cleared and cleared[-1].alarm_id == last else None
    if end is not None:
        # the first episode's own clear gives way to the merged one, which has its id
        dropped.update(e.id for e in by_alarm[first] if e.type == "cleared")
        replaced[f"{first}:cleared"] = replace(
            end, id=f"{first}:cleared", alarm_id=first, start_ns=opening.start_ns, peak=peak
        )
    dropped.update(e.id for a in rest[1:] for e in by_alarm[a])
    return {
        first: Merged(
            episodes=len(rest),
            first_start_ns=opening.start_ns,
            last_end_ns=end.end_ns if end is not None else None,
        )
    }


def merged_words(note: Notification, merged: Merged, tz_name: str | None) -> Notification:
    """`note` saying how many late episodes its alarm stands for, and when they were."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name) if tz_name else None
    fmt = "%Y-%m-%d %H:%M"
    first = ns_to_datetime(merged.first_start_ns, tz).strftime(fmt) if tz else "?"
    span = f"from {first}"
    if merged.last_end_ns is not None and tz is not None:
        span += f" to {ns_to_datetime(merged.last_end_ns, tz).strftime(fmt)}"
    tail = (
        f" It stands for {merged.episodes} late episodes {span}, found in one backlog of the "
        "device; they are not told one by one."
    )
    return replace(note, text=note.text + tail, title=f"{note.title} ({merged.episodes} times)")

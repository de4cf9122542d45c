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
    by_alarm: dict[str, list[AlertEvent]] = defaultdict(list)
    for e in events:
        by_alarm[e.alarm_id].append(e)
    # Only whole late episodes: both events here and late. An alarm that fired before this
    # evaluation (its clear alone is here) or fired live is never merged.
    episodes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for alarm, evs in by_alarm.items():
        if (
            len(evs) == 2
            and all(e.late for e in evs)
            and {e.type for e in evs}
            == {
                "fired",
                "cleared",
            }
        ):
            episodes[(evs[0].rule, evs[0].device)].append(alarm)
    replaced: dict[str, AlertEvent] = {}
    dropped: set[str] = set()
    merged: dict[str, Merged] = {}
    for ids in episodes.values():
        if len(ids) - keep >= 2:
            ids.sort(key=lambda a: (by_alarm[a][0].start_ns, a))
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
    """Merge the whole episodes `rest` (by start) into the first (filling the two tables)."""
    first = rest[0]
    fired = {a: next(e for e in by_alarm[a] if e.type == "fired") for a in rest}
    cleared = {a: next(e for e in by_alarm[a] if e.type == "cleared") for a in rest}
    opening = fired[first]
    peaks = [e.peak for e in cleared.values()]
    peak = max(peaks) if opening.direction == "above" else min(peaks)
    last = max(rest, key=lambda a: (cleared[a].end_ns or cleared[a].at_ns, a))
    end = cleared[last]
    replaced[opening.id] = replace(opening, peak=peak)
    replaced[cleared[first].id] = replace(
        end, id=cleared[first].id, alarm_id=first, start_ns=opening.start_ns, peak=peak
    )
    dropped.update(e.id for a in rest[1:] for e in by_alarm[a])
    return {
        first: Merged(episodes=len(rest), first_start_ns=opening.start_ns, last_end_ns=end.end_ns)
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

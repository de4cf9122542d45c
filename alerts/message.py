"""What an alarm notification says: the `Notification` value and its plain-words text.

A notification is built once, when the alert evaluator hands an alarm's event (fired, cleared,
or late: found in a device's backlog after it was over) to the outbox: its text, title and
dashboard link are written then, in the pilot's local time and with the registry's names and
units, and every channel sends the same words. The idempotency key is the caller's
(`<alarm id>:<kind>`): the same event handed over twice is one notification, and a receiver
that sees the key twice has seen one event.

    Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) passed its alert level 5.30 m
    at 14:05 (UTC-03:00) on 2026-12-06; 5.34 m now.

(The offset's minus is the true minus sign, U+2212, in the text itself.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson

from core.registry import Registry
from core.timeutil import MINUTE_NS, ns_to_datetime

Kind = Literal["fired", "cleared", "late"]
KINDS: tuple[str, ...] = get_args(Kind)
Direction = Literal["above", "below"]

#: Characters an alarm id may not hold: it is an MQTT topic level (`.../alerts/active/<id>`).
_TOPIC_UNSAFE = frozenset("/+#\x00")
MINUS = "\N{MINUS SIGN}"
EN_DASH = "\N{EN DASH}"


@dataclass(frozen=True, slots=True)
class Notification:
    """One event of one alarm, as every channel delivers it.

    `key` is the idempotency key (stable across retries, restarts and channels); `alarm_id`
    names the alarm (its events share it; the MQTT channel keeps its state retained under
    it). Times are int64 ns; `end_ns` is None while the alarm is active. `value` is the
    reading that made the event (the crossing reading when fired, the first one back when
    cleared), `peak` the furthest past the threshold during the alarm, when known.
    """

    key: str
    alarm_id: str
    kind: Kind
    pilot: str
    pilot_name: str
    device: str
    site: str
    sensor: str
    sensor_name: str
    rule_id: str
    severity: str
    level: str
    direction: Direction
    threshold: float
    unit: str
    value: float
    peak: float | None
    start_ns: int
    end_ns: int | None
    timezone: str
    link: str
    title: str
    text: str

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a notification needs an idempotency key")
        if not self.alarm_id or _TOPIC_UNSAFE & set(self.alarm_id):
            raise ValueError(f"alarm id {self.alarm_id!r} is empty or holds / + # or NUL")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        numbers = (self.threshold, self.value, self.peak)
        if not all(v is None or math.isfinite(v) for v in numbers):
            raise ValueError("threshold, value and peak must be finite numbers")

    @property
    def active(self) -> bool:
        """Whether the alarm is still on after this event (cleared and finished late: not)."""
        return self.kind == "fired" or (self.kind == "late" and self.end_ns is None)

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (what the webhook posts)."""
        return asdict(self)

    def to_json(self) -> bytes:
        """The notification as JSON bytes."""
        return orjson.dumps(self.as_dict())

    @classmethod
    def from_json(cls, data: bytes) -> Notification:
        """The notification `to_json` wrote."""
        return cls(**orjson.loads(data))


def compose(
    registry: Registry,
    *,
    alarm_id: str,
    kind: Kind,
    device: str,
    sensor: str,
    rule_id: str,
    severity: str,
    level: str,
    threshold: float,
    value: float,
    start_ns: int,
    end_ns: int | None = None,
    peak: float | None = None,
    direction: Direction = "above",
    dashboard_url: str = "http://127.0.0.1:8000/",
    key: str | None = None,
) -> Notification:
    """A notification with its text, from the registry's names, units, sites and time zone.

    `level` is the threshold's name (`alert`, `evacuation`, or a phrase such as `WHO 24-hour
    guideline`); `key` defaults to `<alarm id>:<kind>`. An unknown device or sensor is a
    `KeyError`: the evaluator only raises alarms for registered ones.
    """
    dev = registry.devices[device]
    pilot = registry.pilots[dev.pilot]
    spec = registry.sensors[sensor]
    tz = pilot.tz
    fields: dict[str, Any] = {
        "key": key or f"{alarm_id}:{kind}",
        "alarm_id": alarm_id,
        "kind": kind,
        "pilot": pilot.id,
        "pilot_name": pilot.name,
        "device": dev.id,
        "site": dev.site,
        "sensor": sensor,
        "sensor_name": spec.name,
        "rule_id": rule_id,
        "severity": severity,
        "level": level,
        "direction": direction,
        "threshold": float(threshold),
        "unit": spec.unit,
        "value": float(value),
        "peak": None if peak is None else float(peak),
        "start_ns": int(start_ns),
        "end_ns": None if end_ns is None else int(end_ns),
        "timezone": pilot.timezone,
        "link": dashboard_link(dashboard_url, pilot.id, start_ns),
    }
    words = _Words(fields, tz)
    return Notification(**fields, title=words.title(), text=words.text())


def dashboard_link(base_url: str, pilot: str, at_ns: int) -> str:
    """The dashboard at a pilot and a moment: `<base>#pilot=<id>&t=<RFC 3339 UTC>`."""
    moment = ns_to_datetime(at_ns).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{base_url}#pilot={quote(pilot, safe='')}&t={quote(moment, safe=':')}"


def subject(n: Notification) -> str:
    """An e-mail subject: severity (and event when not fired), pilot, what crossed what."""
    tag = n.severity.upper() if n.kind == "fired" else f"{n.severity.upper()}, {n.kind}"
    return f"[{tag}] {n.title}"


def utc_offset(moment: datetime) -> str:
    """`UTC-03:00` (with U+2212, the true minus sign), `UTC+05:30`, or `UTC`."""
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return "UTC"
    sign = MINUS if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def quantity(value: float, unit: str, decimals: int) -> str:
    """`5.30 m`, `270°`, `pH 7.10`: a value with its unit, as people write it."""
    number = f"{value:.{decimals}f}"
    if unit == "pH":
        return f"pH {number}"
    if unit in {"°", ""}:
        return f"{number}{unit}"
    return f"{number} {unit}"


def decimals_for(threshold: float) -> int:
    """Decimals that show a threshold and the values beside it: 5.30 m, 15.0 µg/m³, 1500 µS/cm."""
    size = abs(threshold)
    if size >= 100:
        return 0
    return 1 if size >= 10 else 2


def duration(ns: int) -> str:
    """`4 h 35 min`, `2 d 3 h`, `12 min`, `under a minute`."""
    minutes = max(int(ns // MINUTE_NS), 0)
    if minutes == 0:
        return "under a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


def level_phrase(level: str) -> str:
    """`alert` → `its alert level`; a guideline or limit keeps its own words."""
    words = level.replace("_", " ").strip()
    if words.lower().startswith("who") or words.lower().endswith("guideline"):
        return f"the {words}"
    if words.lower().endswith(("level", "limit", "threshold")):
        return f"its {words}"
    return f"its {words} level"


def lower_name(name: str) -> str:
    """`River level` → `river level`; an acronym stays as it is (`PM2.5`, `pH`)."""
    if len(name) > 1 and name[0].isupper() and not name[1].isupper():
        return name[0].lower() + name[1:]
    return name


class _Words:
    """The sentences of one notification (kept apart from the value: built once, then stored)."""

    def __init__(self, f: dict[str, Any], tz: ZoneInfo) -> None:
        self.f = f
        self.tz = tz
        self.places = decimals_for(f["threshold"])
        # `Barrio Somisa (zona industrial)` inside parentheses reads `(Barrio Somisa, zona ...)`
        place = f["site"].replace(" (", ", ").replace("(", "").replace(")", "")
        site = f" ({place})" if place else ""
        self.what = f"{lower_name(f['sensor_name'])} at {f['device']}{site}"
        self.level = f"{level_phrase(f['level'])} {self.amount(f['threshold'])}"
        self.above = f["direction"] == "above"

    def amount(self, value: float) -> str:
        return quantity(value, self.f["unit"], self.places)

    def when(self, at_ns: int) -> str:
        local = ns_to_datetime(at_ns, self.tz)
        return f"{local:%H:%M} ({utc_offset(local)}) on {local:%Y-%m-%d}"

    def peak(self) -> str:
        word = "peak" if self.above else "lowest"
        return "" if self.f["peak"] is None else f"{word} {self.amount(self.f['peak'])}"

    def title(self) -> str:
        f = self.f
        verb = {
            ("fired", True): "passed",
            ("fired", False): "fell below",
            ("late", True): "was above",
            ("late", False): "was below",
            ("cleared", True): "back below",
            ("cleared", False): "back above",
        }[(f["kind"], self.above)]
        what = lower_name(f["sensor_name"])
        return f"{f['pilot_name']}: {what} {verb} {self.level} at {f['device']}"

    def text(self) -> str:
        f = self.f
        head = f"{f['pilot_name']}: {self.what}"
        if f["kind"] == "fired":
            verb = "passed" if self.above else "fell below"
            now = self.amount(f["value"])
            return f"{head} {verb} {self.level} at {self.when(f['start_ns'])}; {now} now."
        if f["kind"] == "cleared":
            return self.cleared(head)
        return self.late(head)

    def cleared(self, head: str) -> str:
        f = self.f
        end_ns = f["end_ns"] if f["end_ns"] is not None else f["start_ns"]
        verb, side = ("fell back below", "above") if self.above else ("rose back above", "below")
        lasted = f"after {duration(end_ns - f['start_ns'])} {side} it"
        peak = f" ({self.peak()})" if f["peak"] is not None else ""
        now = self.amount(f["value"])
        return f"{head} {verb} {self.level} at {self.when(end_ns)}, {lasted}{peak}; {now} now."

    def late(self, head: str) -> str:
        f = self.f
        start = ns_to_datetime(f["start_ns"], self.tz)
        verb = "passed" if self.above else "fell below"
        peak = f", {self.peak()}" if f["peak"] is not None else ""
        if f["end_ns"] is None:
            span = f"started {start:%H:%M}"
        else:
            end = ns_to_datetime(f["end_ns"], self.tz)
            fmt = "%H:%M" if end.date() == start.date() else "%Y-%m-%d %H:%M"
            span = f"happened {start:{fmt}}{EN_DASH}{end:{fmt}}"
        note = f"(late: {span}, reported when the device's backlog arrived)"
        return f"{head} {verb} {self.level} at {self.when(f['start_ns'])}{peak} {note}."

"""What an alarm notification says: the `Notification` value and its plain-words text.

A notification is built once, when the alert evaluator hands an alarm's event (fired, cleared,
or late: found in a device's backlog after it was over) to the outbox: its text, title and
dashboard link are written then, in the pilot's local time and with the registry's names and
units, and every channel sends the same words. `notification_for(event, registry, ...)` builds
it from an evaluator `AlertEvent`; `compose(registry, ...)` from the fields themselves.

The idempotency key is the event's id (`<alarm id>:fired` or `<alarm id>:cleared`, as
`AlertEvent.id`; `compose` defaults to `<alarm id>:<kind>`): the same event handed over twice
is one notification, and a receiver that sees the key twice has seen one event. A late episode
gives two events of one alarm, both of kind `late`, told apart by their keys and `end_ns`.

The words follow the rule's kind (`rule_kind`):

    Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) passed its alert level 5.30 m
    at 14:05 (UTC-03:00) on 2026-12-06; 5.34 m now.
    San Nicolás de los Arroyos: 24-hour mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) rose
    above the WHO 24-hour guideline 15 µg/m³ at 14:05 (UTC-03:00) on 2026-12-06; mean
    17.2 µg/m³ now.
    San Nicolás de los Arroyos: the mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) today
    (local day) rose above the WHO 24-hour guideline 15 µg/m³ at 19:05 (UTC-03:00) on
    2026-12-06; mean 17.2 µg/m³ so far today.
    Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) rising 6 cm per hour (over
    5 cm/h) since 14:05 (UTC-03:00) on 2026-12-06; rising 7 cm per hour now.
    Santa Fe: sf-rg-01 (Facultad Regional Santa Fe) has sent nothing since 13:35 (UTC-03:00)
    on 2026-12-06 (expected every 10 min).
    Santa Fe: battery at sf-rg-01 (Facultad Regional Santa Fe) fell to 3.35 V (low: 3.40 V
    or less) at 05:40 (UTC-03:00) on 2026-12-06; 3.35 V now.
    San Nicolás de los Arroyos: PM2.5 at sn-aq-01 (Plaza Mitre, centro) has reported the same
    value since 12:05 (UTC-03:00) on 2026-12-06 (stuck or flat-lined sensor).

(The offset's minus is the true minus sign, U+2212, in the text itself.)

An `unhealthy` alarm (`alerts.health`: a component's health endpoint) has no registry pilot
or device: its pilot is `system` (named `System`), its device the component, times in UTC;
the reason and the URL come from its label (`core.alerts.rules.health_label`), the URL is
also its `site`, the numbers are seconds unhealthy (`unit` `s`), and its link is the
dashboard itself:

    System: ingest-1 (http://127.0.0.1:9101/health) unhealthy since 14:05 UTC on 2026-12-06:
    HTTP 503: store unreachable for 75 s.
    System: ingest-1 healthy again at 14:10 UTC on 2026-12-06 after 5 min.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal, get_args
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson

from core.alerts.evaluate import AlertEvent
from core.alerts.rules import KINDS as RULE_KINDS
from core.alerts.rules import SYSTEM_PILOT, UNHEALTHY, MeanWindow, parse_health_label
from core.alerts.rules import Kind as RuleKind
from core.registry import Registry
from core.timeutil import MINUTE_NS, NS_PER_S, ns_to_datetime

Kind = Literal["fired", "cleared", "late"]
KINDS: tuple[str, ...] = get_args(Kind)
Direction = Literal["above", "below"]

#: Characters an alarm id may not hold: it is an MQTT topic level (`.../alerts/active/<id>`).
_TOPIC_UNSAFE = frozenset("/+#\x00")
MINUS = "\N{MINUS SIGN}"
EN_DASH = "\N{EN DASH}"
#: Why a late event comes now.
BACKLOG = "reported when the device's backlog arrived"
STUCK = "stuck or flat-lined sensor"
#: What an `unhealthy` alarm's pilot is called.
SYSTEM_NAME = "System"


@dataclass(frozen=True, slots=True)
class Notification:
    """One event of one alarm, as every channel delivers it.

    `key` is the idempotency key (stable across retries, restarts and channels); `alarm_id`
    names the alarm (its events share it; the MQTT channel keeps its state retained under
    it). `kind` is the event: `fired`, `cleared`, or `late` for either of an episode found
    after the fact (`late` is then true; the late fired has no `end_ns`, the late cleared
    has one). `rule_kind` is the kind of the rule that raised it (`threshold`,
    `mean_over_guideline`, `rate_of_rise`, `silent`, `battery_low`, `flat`, `unhealthy`: see
    the module docstring for the last).

    Times are int64 ns; `end_ns` is None in a fired event, late or not. The numbers are the rule's
    metric, in `unit`: `threshold` is what it was compared with (named `level`), `value` the
    metric that made the event (at the start when fired, at the end when cleared), `latest`
    the metric at the reading that decided the event (the text's "now"), `peak` the furthest
    past the threshold during the alarm, when known. The metric is the reading (`threshold`,
    `battery_low`), the rolling mean (or the local day's mean so far), the rise per hour, the
    range of the last readings (`flat`), or for `silent` the seconds of silence (`threshold`:
    the allowed silence), with `unit` empty. `sensor`, `sensor_name` are empty for a `silent`
    rule on any sensor.
    """

    key: str
    alarm_id: str
    kind: Kind
    late: bool
    pilot: str
    pilot_name: str
    device: str
    site: str
    sensor: str
    sensor_name: str
    rule_id: str
    rule_kind: RuleKind
    severity: str
    level: str
    direction: Direction
    threshold: float
    unit: str
    value: float
    latest: float
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
        if self.rule_kind not in RULE_KINDS:
            raise ValueError(f"rule_kind must be one of {RULE_KINDS}, got {self.rule_kind!r}")
        if self.late is not (self.kind == "late"):
            raise ValueError(f"late must be true exactly for kind 'late', got {self.late!r}")
        numbers = (self.threshold, self.value, self.latest, self.peak)
        if not all(v is None or math.isfinite(v) for v in numbers):
            raise ValueError("threshold, value, latest and peak must be finite numbers")

    @property
    def active(self) -> bool:
        """Whether the alarm is on after this event: only after a `fired`.

        A `late` event never is: the evaluator reports late only episodes that are over (one
        still open at a backlog's last reading is closed there; one still open live is a
        `fired` that is not late), so the MQTT channel keeps no retained state for it, and a
        late `cleared` removes any.
        """
        return self.kind == "fired"

    def as_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (what the webhook posts)."""
        return asdict(self)

    def to_json(self) -> bytes:
        """The notification as JSON bytes."""
        return orjson.dumps(self.as_dict())

    @classmethod
    def from_json(cls, data: bytes) -> Notification:
        """The notification `to_json` wrote.

        One written before `rule_kind`, `late` and `latest` existed reads as a threshold
        alarm, late when its kind is, its latest value its value.
        """
        fields = orjson.loads(data)
        if isinstance(fields, dict):
            fields.setdefault("rule_kind", "threshold")
            fields.setdefault("late", fields.get("kind") == "late")
            fields.setdefault("latest", fields.get("value"))
        return cls(**fields)


def notification_for(event: AlertEvent, registry: Registry, *, dashboard_url: str) -> Notification:
    """The notification of an evaluator event, worded for its rule's kind.

    `fired` and `cleared` keep their type; a late event (`event.late`) is `late`, the late
    fired without an end and the late cleared with its real end. The key is `event.id`, so
    the two events of a late episode are two notifications. An unknown device or sensor is a
    `KeyError`: the evaluator only raises alarms for registered ones.
    """
    kind: Kind = "late" if event.late else event.type
    latest = event.latest if math.isfinite(event.latest) else event.value
    return compose(
        registry,
        alarm_id=event.alarm_id,
        kind=kind,
        device=event.device,
        sensor=event.sensor,
        rule_id=event.rule,
        rule_kind=event.kind,
        severity=event.severity,
        level=event.label,
        threshold=event.level,
        value=event.value,
        latest=latest,
        peak=event.peak if math.isfinite(event.peak) else None,
        start_ns=event.start_ns,
        end_ns=event.end_ns,
        direction=event.direction,
        dashboard_url=dashboard_url,
        key=event.id,
        window=event.window,
    )


def compose(
    registry: Registry,
    *,
    alarm_id: str,
    kind: Kind,
    device: str,
    sensor: str | None,
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
    rule_kind: RuleKind = "threshold",
    latest: float | None = None,
    window: MeanWindow = "rolling",
) -> Notification:
    """A notification with its text, from the registry's names, units, sites and time zone.

    `level` is the threshold's name (`alert`, `evacuation`, or a phrase such as `WHO 24-hour
    guideline`); `key` defaults to `<alarm id>:<kind>`; `latest` to `value`. `sensor` may be
    None only for a `silent` rule. An unknown device or sensor is a `KeyError`: the
    evaluator only raises alarms for registered ones. An `unhealthy` alarm needs neither:
    `device` is its component, and the registry is not read. `window`: a mean's (`day`: the
    mean of the pilot's local day so far, worded so).
    """
    if rule_kind == UNHEALTHY:
        return _health_notification(
            {
                "key": key or f"{alarm_id}:{kind}",
                "alarm_id": alarm_id,
                "kind": kind,
                "device": device,
                "rule_id": rule_id,
                "severity": severity,
                "level": level,
                "direction": direction,
                "threshold": float(threshold),
                "value": float(value),
                "latest": float(value if latest is None else latest),
                "peak": None if peak is None else float(peak),
                "start_ns": int(start_ns),
                "end_ns": None if end_ns is None else int(end_ns),
                "link": dashboard_url,
            }
        )
    dev = registry.devices[device]
    pilot = registry.pilots[dev.pilot]
    spec = registry.sensors[sensor] if sensor is not None else None
    if spec is None and rule_kind != "silent":
        raise ValueError(f"a {rule_kind} alarm needs a sensor")
    fields: dict[str, Any] = {
        "key": key or f"{alarm_id}:{kind}",
        "alarm_id": alarm_id,
        "kind": kind,
        "late": kind == "late",
        "pilot": pilot.id,
        "pilot_name": pilot.name,
        "device": dev.id,
        "site": dev.site,
        "sensor": spec.id if spec else "",
        "sensor_name": spec.name if spec else "",
        "rule_id": rule_id,
        "rule_kind": rule_kind,
        "severity": severity,
        "level": level,
        "direction": direction,
        "threshold": float(threshold),
        "unit": spec.unit if spec and rule_kind != "silent" else "",
        "value": float(value),
        "latest": float(value if latest is None else latest),
        "peak": None if peak is None else float(peak),
        "start_ns": int(start_ns),
        "end_ns": None if end_ns is None else int(end_ns),
        "timezone": pilot.timezone,
        "link": dashboard_link(dashboard_url, pilot.id, start_ns),
    }
    words_of = _WORDS.get(rule_kind, _Words)
    if rule_kind == "mean_over_guideline" and window == "day":
        words_of = _DayMeanWords
    words = words_of(fields, pilot.tz, dev.interval_s)
    return Notification(**fields, title=words.title(), text=words.text())


def _health_notification(fields: dict[str, Any]) -> Notification:
    """An `unhealthy` alarm's notification: no registry pilot, device or sensor; UTC."""
    reason, url = parse_health_label(fields["level"])
    fields |= {
        "late": fields["kind"] == "late",
        "pilot": SYSTEM_PILOT,
        "pilot_name": SYSTEM_NAME,
        "site": url or "",
        "sensor": "",
        "sensor_name": "",
        "rule_kind": UNHEALTHY,
        "unit": "s",
        "timezone": "UTC",
    }
    words = _HealthWords(fields, reason, url)
    return Notification(**fields, title=words.title(), text=words.text())


class _HealthWords:
    """`unhealthy`: a component's health endpoint, unhealthy since its start (times in UTC)."""

    def __init__(self, f: dict[str, Any], reason: str, url: str | None) -> None:
        self.f = f
        self.reason = reason
        self.component = f["device"]
        self.named = f"{self.component} ({url})" if url else self.component
        self.start_ns: int = f["start_ns"]
        self.end_ns: int = f["end_ns"] if f["end_ns"] is not None else f["start_ns"]

    @staticmethod
    def when(at_ns: int) -> str:
        moment = ns_to_datetime(at_ns)
        return f"{moment:%H:%M} UTC on {moment:%Y-%m-%d}"

    def because(self) -> str:
        """`: HTTP 503.`: the reason as the sentence's end."""
        return f": {self.reason}" + ("" if self.reason.endswith(".") else ".")

    def title(self) -> str:
        headline = {
            "fired": f"{self.component} unhealthy",
            "cleared": f"{self.component} healthy again",
            "late": f"{self.component} was unhealthy",
        }[self.f["kind"]]
        return f"{SYSTEM_NAME}: {headline}"

    def text(self) -> str:
        f = self.f
        lasted = duration(self.end_ns - self.start_ns)
        if f["kind"] == "fired":
            body = f"{self.named} unhealthy since {self.when(self.start_ns)}{self.because()}"
        elif f["kind"] == "cleared":
            body = f"{self.component} healthy again at {self.when(self.end_ns)} after {lasted}."
        elif f["end_ns"] is None:
            body = f"{self.named} was unhealthy from {self.when(self.start_ns)}{self.because()}"
        else:
            since = self.when(self.start_ns)
            body = f"{self.named} was unhealthy for {lasted} from {since}{self.because()}"
        return f"{SYSTEM_NAME}: {body}"


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


def with_unit(number: str, unit: str) -> str:
    """`5.30 m`, `270°`, `pH 7.10`: a written number with its unit, as people write it."""
    if unit == "pH":
        return f"pH {number}"
    if unit in {"°", ""}:
        return f"{number}{unit}"
    return f"{number} {unit}"


def quantity(value: float, unit: str, decimals: int) -> str:
    """`5.30 m`, `270°`, `pH 7.10`: a value with its unit, as people write it."""
    return with_unit(f"{value:.{decimals}f}", unit)


def plain_number(value: float, decimals: int) -> str:
    """At most `decimals` decimals, no trailing zeros: `15`, `6.3`, `0.05`."""
    text = f"{value:.{max(decimals, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


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


_WINDOW = re.compile(r"\b\d+-(?:hour|minute|second)\b")


def window_of(label: str) -> str:
    """The window a mean rule's label names (`WHO 24-hour guideline` → `24-hour`), or `rolling`."""
    found = _WINDOW.search(label)
    return found.group(0) if found else "rolling"


class _Words:
    """The sentences of one notification (kept apart from the value: built once, then stored).

    This class words a `threshold` alarm; each other rule kind has a subclass. `text()` is
    the pilot's name and one of `fired`, `cleared`, `late_fired`, `late_cleared`; `title()`
    the pilot's name and `headline()`.
    """

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        self.f = f
        self.tz = tz
        self.interval_s = interval_s
        self.places = decimals_for(f["threshold"])
        # `Barrio Somisa (zona industrial)` inside parentheses reads `(Barrio Somisa, zona ...)`
        place = f["site"].replace(" (", ", ").replace("(", "").replace(")", "")
        self.place = f"{f['device']} ({place})" if place else f["device"]
        self.name = lower_name(f["sensor_name"])
        self.what = f"{self.name} at {self.place}"
        self.level = f"{level_phrase(f['level'])} {self.amount(f['threshold'])}"
        self.above = f["direction"] == "above"
        self.start_ns: int = f["start_ns"]
        self.end_ns: int = f["end_ns"] if f["end_ns"] is not None else f["start_ns"]

    # --- helpers --------------------------------------------------------------------------

    def amount(self, value: float) -> str:
        return quantity(value, self.f["unit"], self.places)

    def when(self, at_ns: int) -> str:
        local = ns_to_datetime(at_ns, self.tz)
        return f"{local:%H:%M} ({utc_offset(local)}) on {local:%Y-%m-%d}"

    def lasted(self) -> str:
        return duration(self.end_ns - self.start_ns)

    def late_note(self, start_ns: int | None = None, aside: str = "") -> str:
        """`(late: started 02:10, ...)`, or with the end `(late: happened 02:10-03:40, ...)`.

        `aside` goes first in the same parentheses: `(expected every 10 min; late: ...)`.
        """
        start = ns_to_datetime(self.start_ns if start_ns is None else start_ns, self.tz)
        if self.f["end_ns"] is None:
            span = f"started {start:%H:%M}"
        else:
            end = ns_to_datetime(self.f["end_ns"], self.tz)
            fmt = "%H:%M" if end.date() == start.date() else "%Y-%m-%d %H:%M"
            span = f"happened {start:{fmt}}{EN_DASH}{end:{fmt}}"
        return f"({aside + '; ' if aside else ''}late: {span}, {BACKLOG})"

    def peak(self, word: str | None = None) -> str:
        """`peak 5.41 m` (`lowest` from above), or nothing when unknown."""
        if self.f["peak"] is None:
            return ""
        word = word or ("peak" if self.above else "lowest")
        return f"{word} {self.amount(self.f['peak'])}"

    def with_peak(self, sep: str = ", ", word: str | None = None) -> str:
        """The peak after a separator (`, peak 5.41 m`), or nothing when unknown."""
        peak = self.peak(word)
        return f"{sep}{peak}" if peak else ""

    # --- the sentences --------------------------------------------------------------------

    def title(self) -> str:
        return f"{self.f['pilot_name']}: {self.headline()}"

    def text(self) -> str:
        f = self.f
        if f["kind"] == "fired":
            body = self.fired()
        elif f["kind"] == "cleared":
            body = self.cleared()
        elif f["end_ns"] is None:
            body = self.late_fired()
        else:
            body = self.late_cleared()
        return f"{f['pilot_name']}: {body}"

    def headline(self) -> str:
        verb = {
            ("fired", True): "passed",
            ("fired", False): "fell below",
            ("late", True): "was above",
            ("late", False): "was below",
            ("cleared", True): "back below",
            ("cleared", False): "back above",
        }[(self.f["kind"], self.above)]
        return f"{self.name} {verb} {self.level} at {self.f['device']}"

    def fired(self) -> str:
        verb = "passed" if self.above else "fell below"
        now = self.amount(self.f["latest"])
        return f"{self.what} {verb} {self.level} at {self.when(self.start_ns)}; {now} now."

    def cleared(self) -> str:
        verb, side = ("fell back below", "above") if self.above else ("rose back above", "below")
        peak = f" ({self.peak()})" if self.f["peak"] is not None else ""
        now = self.amount(self.f["latest"])
        return (
            f"{self.what} {verb} {self.level} at {self.when(self.end_ns)}, "
            f"after {self.lasted()} {side} it{peak}; {now} now."
        )

    def late_fired(self) -> str:
        side = "above" if self.above else "below"
        at = self.when(self.start_ns)
        return f"{self.what} was {side} {self.level} at {at} {self.late_note()}."

    def late_cleared(self) -> str:
        side = "above" if self.above else "below"
        return (
            f"{self.what} was {side} {self.level} at {self.when(self.start_ns)}"
            f"{self.with_peak()} {self.late_note()}."
        )


class _MeanWords(_Words):
    """`mean_over_guideline`: the rolling mean above a guideline (shown as written: 15 µg/m³)."""

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        super().__init__(f, tz, interval_s)
        self.mean = f"{window_of(f['level'])} mean"
        self.what = f"{self.mean} of {self.name} at {self.place}"
        guideline = with_unit(plain_number(f["threshold"], self.places), f["unit"])
        self.level = f"{level_phrase(f['level'])} {guideline}"

    def headline(self) -> str:
        verb = {"fired": "rose above", "cleared": "back below", "late": "was above"}
        what = f"{self.mean} of {self.name}"
        return f"{what} {verb[self.f['kind']]} {self.level} at {self.f['device']}"

    def fired(self) -> str:
        now = self.amount(self.f["latest"])
        return f"{self.what} rose above {self.level} at {self.when(self.start_ns)}; mean {now} now."

    def cleared(self) -> str:
        peak = f" ({self.peak('peak')})" if self.f["peak"] is not None else ""
        now = self.amount(self.f["latest"])
        return (
            f"{self.what} fell back below {self.level} at {self.when(self.end_ns)}, "
            f"after {self.lasted()} above it{peak}; mean {now} now."
        )

    def late_fired(self) -> str:
        at = self.when(self.start_ns)
        return f"{self.what} was above {self.level} at {at} {self.late_note()}."

    def late_cleared(self) -> str:
        return (
            f"{self.what} was above {self.level} at {self.when(self.start_ns)}"
            f"{self.with_peak(word='peak')} {self.late_note()}."
        )


class _DayMeanWords(_MeanWords):
    """`mean_over_guideline` with `window = "day"`: the mean of the pilot's local day so far.

    The day restarts at local midnight, so "today" is the day of the reading that decided;
    a late episode names no "today" (its day is its start's).
    """

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        super().__init__(f, tz, interval_s)
        self.mean = "local-day mean"
        self.what = f"the mean of {self.name} at {self.place} today (local day)"
        self.was = f"the local-day mean of {self.name} at {self.place}"

    def fired(self) -> str:
        now = self.amount(self.f["latest"])
        return (
            f"{self.what} rose above {self.level} at {self.when(self.start_ns)}; "
            f"mean {now} so far today."
        )

    def cleared(self) -> str:
        peak = f" ({self.peak('peak')})" if self.f["peak"] is not None else ""
        now = self.amount(self.f["latest"])
        return (
            f"{self.what} is back below {self.level} since {self.when(self.end_ns)}, "
            f"after {self.lasted()} above it{peak}; mean {now} so far today."
        )

    def late_fired(self) -> str:
        at = self.when(self.start_ns)
        return f"{self.was} was above {self.level} at {at} {self.late_note()}."

    def late_cleared(self) -> str:
        return (
            f"{self.was} was above {self.level} at {self.when(self.start_ns)}"
            f"{self.with_peak(word='peak')} {self.late_note()}."
        )


class _RiseWords(_Words):
    """`rate_of_rise`: the rise per hour, in cm for a level in metres (else the unit per hour)."""

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        super().__init__(f, tz, interval_s)
        self.scale, self.unit = (100.0, "cm") if f["unit"] == "m" else (1.0, str(f["unit"]))
        limit = f["threshold"] * self.scale
        size = abs(limit)
        self.rate_places = decimals_for(limit) - (1 if size >= 1 else 0)
        number = plain_number(limit, self.rate_places)
        short = "/" not in self.unit and self.unit not in {"", "pH", "°"}
        self.limit = f"{number} {self.unit}/h" if short else self.per_hour(f["threshold"])

    def per_hour(self, value: float) -> str:
        """`6 cm per hour`, `12 µS/cm per hour`: a rise per hour in the sensor's unit."""
        number = plain_number(abs(value) * self.scale, self.rate_places)
        return f"{with_unit(number, self.unit)} per hour"

    def motion(self, value: float) -> str:
        """`rising 6 cm per hour`, `falling 2 cm per hour`, or `steady`."""
        if plain_number(abs(value) * self.scale, self.rate_places) == "0":
            return "steady"
        return f"{'rising' if value > 0 else 'falling'} {self.per_hour(value)}"

    def headline(self) -> str:
        verb = {"fired": "rising over", "cleared": "no longer rising over", "late": "rose over"}
        return f"{self.name} {verb[self.f['kind']]} {self.limit} at {self.f['device']}"

    def fired(self) -> str:
        f = self.f
        return (
            f"{self.what} rising {self.per_hour(f['value'])} (over {self.limit}) "
            f"since {self.when(self.start_ns)}; {self.motion(f['latest'])} now."
        )

    def cleared(self) -> str:
        f = self.f
        fastest = f" (fastest {self.per_hour(f['peak'])})" if f["peak"] is not None else ""
        return (
            f"{self.what} slowed below {self.limit} at {self.when(self.end_ns)}, after "
            f"{self.lasted()} rising faster{fastest}; {self.motion(f['latest'])} now."
        )

    def late_fired(self) -> str:
        return (
            f"{self.what} was rising {self.per_hour(self.f['value'])} (over {self.limit}) "
            f"at {self.when(self.start_ns)} {self.late_note()}."
        )

    def late_cleared(self) -> str:
        f = self.f
        fastest = f", fastest {self.per_hour(f['peak'])}" if f["peak"] is not None else ""
        return (
            f"{self.what} was rising over {self.limit} from {self.when(self.start_ns)}"
            f"{fastest} {self.late_note()}."
        )


class _SilentWords(_Words):
    """`silent`: no reading since the last one (`start_ns` less the allowed silence)."""

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        super().__init__(f, tz, interval_s)
        self.last_ns = self.start_ns - round(f["threshold"] * NS_PER_S)
        self.every = f"expected every {duration(interval_s * NS_PER_S)}"
        self.nothing = f"no {self.name} reading" if f["sensor"] else "nothing"

    def silence(self) -> str:
        return duration(self.end_ns - self.last_ns)

    def headline(self) -> str:
        device = self.f["device"]
        return {
            "fired": f"{device} silent ({self.every})",
            "cleared": f"{device} reporting again",
            "late": f"{device} was silent",
        }[self.f["kind"]]

    def fired(self) -> str:
        since = self.when(self.last_ns)
        return f"{self.place} has sent {self.nothing} since {since} ({self.every})."

    def cleared(self) -> str:
        return (
            f"{self.place} reported again at {self.when(self.end_ns)} "
            f"after {self.silence()} of silence."
        )

    def late_fired(self) -> str:
        return (
            f"{self.place} sent {self.nothing} after {self.when(self.last_ns)} "
            f"{self.late_note(self.last_ns, self.every)}."
        )

    def late_cleared(self) -> str:
        return (
            f"{self.place} sent {self.nothing} for {self.silence()} after "
            f"{self.when(self.last_ns)} {self.late_note(self.last_ns, self.every)}."
        )


class _BatteryWords(_Words):
    """`battery_low`: the battery at or below a level."""

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        super().__init__(f, tz, interval_s)
        self.what = f"battery at {self.place}"
        self.low = f"{self.amount(f['threshold'])} or less"

    def headline(self) -> str:
        device = self.f["device"]
        return {
            "fired": f"battery low at {device} ({self.amount(self.f['value'])})",
            "cleared": f"battery recovered at {device}",
            "late": f"battery was low at {device}",
        }[self.f["kind"]]

    def fired(self) -> str:
        f = self.f
        return (
            f"{self.what} fell to {self.amount(f['value'])} (low: {self.low}) "
            f"at {self.when(self.start_ns)}; {self.amount(f['latest'])} now."
        )

    def cleared(self) -> str:
        f = self.f
        lowest = f" ({self.peak('lowest')})" if f["peak"] is not None else ""
        return (
            f"{self.what} recovered to {self.amount(f['value'])} at {self.when(self.end_ns)}, "
            f"after {self.lasted()} low{lowest}; {self.amount(f['latest'])} now."
        )

    def late_fired(self) -> str:
        return (
            f"{self.what} was down to {self.amount(self.f['value'])} (low: {self.low}) "
            f"at {self.when(self.start_ns)} {self.late_note()}."
        )

    def late_cleared(self) -> str:
        return (
            f"{self.what} was low ({self.low}) from {self.when(self.start_ns)}"
            f"{self.with_peak(word='lowest')} {self.late_note()}."
        )


class _FlatWords(_Words):
    """`flat`: the last readings within `epsilon` of each other (0: all the same)."""

    def __init__(self, f: dict[str, Any], tz: ZoneInfo, interval_s: int) -> None:
        super().__init__(f, tz, interval_s)
        epsilon = f["threshold"]
        within = f"values within {with_unit(f'{epsilon:g}', f['unit'])} of each other"
        self.same = "the same value" if epsilon <= 0 else within

    def headline(self) -> str:
        verb = {"fired": "stuck", "cleared": "changing again", "late": "was stuck"}
        return f"{self.name} {verb[self.f['kind']]} at {self.f['device']}"

    def fired(self) -> str:
        return f"{self.what} has reported {self.same} since {self.when(self.start_ns)} ({STUCK})."

    def cleared(self) -> str:
        return (
            f"{self.what} changed again at {self.when(self.end_ns)}, "
            f"after {self.lasted()} of {self.same}."
        )

    def late_fired(self) -> str:
        return (
            f"{self.what} reported {self.same} from {self.when(self.start_ns)} "
            f"{self.late_note(aside=STUCK)}."
        )

    def late_cleared(self) -> str:
        return (
            f"{self.what} reported {self.same} for {self.lasted()} from "
            f"{self.when(self.start_ns)} {self.late_note(aside=STUCK)}."
        )


_WORDS: dict[str, type[_Words]] = {
    "threshold": _Words,
    "mean_over_guideline": _MeanWords,
    "rate_of_rise": _RiseWords,
    "silent": _SilentWords,
    "battery_low": _BatteryWords,
    "flat": _FlatWords,
}

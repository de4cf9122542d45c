"""Numbers, durations and instants as the report page writes them (plain text, not yet escaped).

Times are shown in the pilot's zone with their UTC offset; a missing or non-finite value is a
dash. This module must not produce markup or compute statistics: it formats given values.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

GUIDELINE_LABEL = "WHO 2021 24-h guideline"
DASH = "—"
EN_DASH = "\u2013"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def num(value: float | None, places: int = 3) -> str:
    """`places` decimals at or above 1, as many significant digits below (0.0012, not 0.001)."""
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    digits = places if magnitude >= 0 else min(places - 1 - magnitude, 12)
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def signed(value: float | None, places: int = 3) -> str:
    """A rate with its direction: "+1.5", "-0.2"; zero and no value carry no sign."""
    text = num(value, places)
    return text if text in {DASH, "0"} or text.startswith("-") else "+" + text


def pct(share: float | None) -> str:
    """A share as a percentage with one decimal: "12.3 %"."""
    if share is None or not math.isfinite(share):
        return DASH
    return f"{share * 100:.1f} %"


def duration(seconds: float | None) -> str:
    """A length of time: "42 s", "3 min 5 s", "2 h 15 min", "3 d 4 h"."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    if seconds < 0:  # latency under clock skew
        return "-" + duration(-seconds)
    if seconds < 60:
        return f"{num(seconds)} s"
    if round(seconds) < 3600:  # latencies and short gaps: keep the seconds
        mins, secs = divmod(round(seconds), 60)
        return f"{mins} min" + (f" {secs} s" if secs else "")
    return _long_duration(seconds)


def _long_duration(seconds: float) -> str:
    """An hour or more: "2 h 15 min", "3 d 4 h"."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def zone(name: str, sample: datetime) -> tzinfo:
    """The report's time zone by name; the offset `sample` carries if the name is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # The registry validates zones; a report built elsewhere keeps the offset it carries.
        return sample.tzinfo or ZoneInfo("UTC")


def in_zone(moment: datetime, tz: tzinfo) -> datetime:
    """The instant in `tz` (a naive time is taken as already local)."""
    return moment.astimezone(tz) if moment.tzinfo is not None else moment


def offset_label(moment: datetime) -> str:
    """The instant's UTC offset: "UTC-03:00", "UTC"; empty for a naive time."""
    offset = moment.utcoffset()
    if offset is None:
        return ""
    minutes = round(offset.total_seconds() / 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def stamp(moment: datetime, tz: tzinfo) -> str:
    """Local date and time to the minute, without the offset."""
    return f"{in_zone(moment, tz):%Y-%m-%d %H:%M}"


def when(moment: datetime, tz: tzinfo) -> str:
    """Local date and time to the minute, with the offset."""
    local = in_zone(moment, tz)
    return f"{local:%Y-%m-%d %H:%M} ({offset_label(local)})"


def day_label(day: date) -> str:
    """A short day: "1 Mar"."""
    return f"{day.day} {_MONTHS[day.month - 1]}"


def period_days(start: datetime, end: datetime, tz: tzinfo) -> list[date]:
    """Local days the period touches; an end at local midnight does not add a day."""
    if end <= start:
        return []
    first = in_zone(start, tz).date()
    last = in_zone(end - timedelta(microseconds=1), tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]

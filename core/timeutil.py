"""Conversions between the project's integer nanosecond timestamps and what people write.

Durations are written like InfluxQL's (`90s`, `10m`, `1h`, `1d`, `1w`); instants as RFC 3339
with an explicit offset. A naive timestamp is refused rather than guessed: the pilots live in
UTC-3 and a silent UTC assumption would shift every calendar window by three hours. Only where
the pilot, and so its time zone, is known does a date or offset-less time mean its local time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

#: The project's time unit conversions, defined here once.
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
MINUTE_NS = 60 * NS_PER_S
HOUR_NS = 3600 * NS_PER_S
DAY_NS = 86_400 * NS_PER_S

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^(\d{1,9})([smhdw])$")
#: Fractional seconds; `datetime` keeps six digits, the rest are added back as nanoseconds.
_FRACTION = re.compile(r":\d\d[.,](\d+)")


def parse_duration_s(text: str) -> int:
    """Seconds in a duration such as `10m`; raises `ValueError` naming the accepted forms."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"invalid duration {text!r}: use a positive whole number with s, m, h, d or w, e.g. 10m"
        )
    return int(match.group(1)) * _UNITS_S[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of a duration in whole seconds (`600` → `10m`)."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS_S[unit] == 0:
            return f"{seconds // _UNITS_S[unit]}{unit}"
    return f"{seconds}s"


def parse_instant_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp that carries an offset."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(f"invalid RFC 3339 timestamp {text!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset; add Z or ±hh:mm")
    fraction = _FRACTION.search(text)
    sub_us_ns = int(fraction.group(1)[6:9].ljust(3, "0")) if fraction else 0
    return datetime_to_ns(moment) + sub_us_ns


def parse_local_instant_ns(text: str, tz: tzinfo) -> int:
    """Like `parse_instant_ns`, but a date or a time without offset is local time in `tz`.

    `2026-11-20` is local midnight starting that day and `2026-11-20T06:00` six in the morning
    there: what a researcher means when they name a pilot's day.
    """
    cleaned = text.strip()
    try:
        moment = datetime.fromisoformat(cleaned.replace("z", "Z"))
    except ValueError as exc:
        raise ValueError(
            f"invalid timestamp {text!r}: use a date (2026-11-20), a local time "
            "(2026-11-20T06:00) or RFC 3339 with offset"
        ) from exc
    if moment.tzinfo is not None:
        return parse_instant_ns(cleaned)
    fraction = _FRACTION.search(cleaned)
    sub_us_ns = int(fraction.group(1)[6:9].ljust(3, "0")) if fraction else 0
    return datetime_to_ns(moment.replace(tzinfo=tz)) + sub_us_ns


def datetime_to_ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch of an aware datetime (no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: an offset is required")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def ns_to_datetime(ts_ns: int, tz: tzinfo = UTC) -> datetime:
    """The aware datetime (microsecond precision) of a nanosecond timestamp, in `tz`."""
    seconds, rest_ns = divmod(int(ts_ns), NS_PER_S)
    return datetime.fromtimestamp(seconds, tz).replace(microsecond=rest_ns // 1000)


def utc_offset_ns(tz: tzinfo, at_ns: int) -> int:
    """The zone's offset from UTC at an instant, in nanoseconds (UTC-3 → -3 h)."""
    offset = ns_to_datetime(at_ns, tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds()) * NS_PER_S

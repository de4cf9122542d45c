"""Durations and instants as people write them, to and from integer nanoseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.timeutil import (
    NS_PER_S,
    datetime_to_ns,
    format_duration,
    ns_to_datetime,
    parse_duration_s,
    parse_instant_ns,
    parse_local_instant_ns,
    utc_offset_ns,
)

HOUR_NS = 3600 * NS_PER_S
# 2024-01-01T00:00:00Z: 19723 days after the epoch (54 years with 13 leap days).
JAN_2024_NS = (54 * 365 + 13) * 86_400 * NS_PER_S


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1d", 86_400), ("1w", 604_800), (" 2h ", 7200)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["0s", "10", "m", "1.5h", "-1h", "1y", "1H", "10 m", "", "1h30m"])
def test_bad_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"s, m, h, d or w"):
        parse_duration_s(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1s"),
        (90, "90s"),
        (600, "10m"),
        (5400, "90m"),
        (3600, "1h"),
        (86_400, "1d"),
        (172_800, "2d"),
        (604_800, "1w"),
        (1_209_600, "2w"),
    ],
)
def test_format_duration_is_the_shortest_exact_spelling(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**7))
def test_format_then_parse_duration_round_trips(seconds: int) -> None:
    assert parse_duration_s(format_duration(seconds)) == seconds


def test_z_and_minus_three_are_the_same_instant() -> None:
    utc = parse_instant_ns("2024-01-01T03:00:00Z")
    local = parse_instant_ns("2024-01-01T00:00:00-03:00")
    assert utc == local == JAN_2024_NS + 3 * HOUR_NS
    assert parse_instant_ns("2024-01-01t03:00:00z") == utc
    assert parse_instant_ns("2024-01-01T03:00:00+00:00") == utc


def test_epoch_is_zero() -> None:
    assert parse_instant_ns("1970-01-01T00:00:00Z") == 0
    assert parse_instant_ns("1969-12-31T21:00:00-03:00") == 0
    assert parse_instant_ns("1969-12-31T23:59:59Z") == -NS_PER_S


@pytest.mark.parametrize("text", ["2024-01-01T00:00:00", "2024-01-01 00:00:00", "2024-01-01"])
def test_naive_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_instant_ns(text)


def test_a_pilots_date_is_its_local_midnight() -> None:
    cordoba = ZoneInfo("America/Argentina/Cordoba")
    assert parse_local_instant_ns("2024-01-01", cordoba) == JAN_2024_NS + 3 * HOUR_NS
    assert parse_local_instant_ns("2024-01-01T06:00", cordoba) == JAN_2024_NS + 9 * HOUR_NS
    assert parse_local_instant_ns("2024-01-01T00:00:00.000000001Z", cordoba) == JAN_2024_NS + 1
    with pytest.raises(ValueError, match="a date"):
        parse_local_instant_ns("monday", cordoba)


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-01T00:00:00Z", "1700000000000"])
def test_unparseable_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_instant_ns(text)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ns(datetime(2024, 1, 1))


def test_microseconds_are_exact_far_from_the_epoch() -> None:
    # float seconds * 1e9 cannot represent this to the nanosecond (it needs ~61 bits)
    moment = datetime(2024, 1, 1, 0, 0, 0, 123_457, tzinfo=UTC)
    assert datetime_to_ns(moment) == JAN_2024_NS + 123_457_000
    assert parse_instant_ns("2024-01-01T00:00:00.123457Z") == JAN_2024_NS + 123_457_000


@pytest.mark.parametrize(
    ("fraction", "ns"),
    [("1", 100_000_000), ("123456789", 123_456_789), ("000000001", 1), ("1234567", 123_456_700)],
)
def test_fractional_seconds_keep_their_nanoseconds(fraction: str, ns: int) -> None:
    assert parse_instant_ns(f"2024-01-01T00:00:00.{fraction}Z") == JAN_2024_NS + ns
    assert parse_instant_ns(f"2023-12-31T21:00:00.{fraction}-03:00") == JAN_2024_NS + ns


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=5, minutes=30))]
        ),
    )
)
def test_isoformat_round_trips_through_nanoseconds(moment: datetime) -> None:
    ts_ns = parse_instant_ns(moment.isoformat())
    assert ts_ns == datetime_to_ns(moment)
    back = ns_to_datetime(ts_ns)
    assert back == moment
    assert back.utcoffset() == timedelta(0)


def test_ns_to_datetime_in_a_zone_and_truncates_to_microseconds() -> None:
    ts_ns = JAN_2024_NS + 3 * HOUR_NS + 123_456_789
    local = ns_to_datetime(ts_ns, ZoneInfo("America/Argentina/Cordoba"))
    assert (local.year, local.month, local.day, local.hour, local.microsecond) == (
        2024,
        1,
        1,
        0,
        123_456,
    )
    assert local.utcoffset() == timedelta(hours=-3)
    before_epoch = ns_to_datetime(-1)
    assert before_epoch == datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_utc_offset_of_the_pilots() -> None:
    cordoba = ZoneInfo("America/Argentina/Cordoba")
    assert utc_offset_ns(cordoba, JAN_2024_NS) == -3 * HOUR_NS
    assert utc_offset_ns(cordoba, JAN_2024_NS + 180 * 86_400 * NS_PER_S) == -3 * HOUR_NS
    assert utc_offset_ns(UTC, JAN_2024_NS) == 0
    assert utc_offset_ns(ZoneInfo("Asia/Kolkata"), JAN_2024_NS) == 5 * HOUR_NS + 30 * 60 * NS_PER_S

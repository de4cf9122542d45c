"""What an alarm notification says: plain words, the pilot's local time, the registry's units."""

from __future__ import annotations

import pytest

from alerts.message import Notification, compose, dashboard_link, duration, subject
from core.registry import Registry
from core.timeutil import MINUTE_NS, parse_instant_ns

FIRED_AT = parse_instant_ns("2026-12-06T14:05:00-03:00")


def river(registry: Registry, kind: str = "fired", **extra: object) -> Notification:
    fields: dict[str, object] = {
        "alarm_id": "sf-rlv-01.level.alert.1",
        "kind": kind,
        "device": "sf-rlv-01",
        "sensor": "level",
        "rule_id": "santa-fe.level.alert",
        "severity": "warning",
        "level": "alert",
        "threshold": 5.30,
        "value": 5.34,
        "start_ns": FIRED_AT,
        "dashboard_url": "https://pilots.example.org/",
    }
    fields.update(extra)
    return compose(registry, **fields)  # type: ignore[arg-type]


def test_fired_in_the_pilots_local_time_with_the_registrys_words(registry: Registry) -> None:
    n = river(registry)
    assert n.text == (
        "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) passed its alert level 5.30 m "
        "at 14:05 (UTC\N{MINUS SIGN}03:00) on 2026-12-06; 5.34 m now."
    )
    assert (n.pilot, n.pilot_name, n.unit, n.timezone) == (
        "santa-fe",
        "Santa Fe",
        "m",
        "America/Argentina/Cordoba",
    )
    assert n.key == "sf-rlv-01.level.alert.1:fired"
    assert n.active
    assert subject(n) == (
        "[WARNING] Santa Fe: river level passed its alert level 5.30 m at sf-rlv-01"
    )


def test_the_link_opens_the_dashboard_at_the_pilot_and_the_moment(registry: Registry) -> None:
    assert river(registry).link == (
        "https://pilots.example.org/#pilot=santa-fe&t=2026-12-06T17:05:00Z"
    )
    assert dashboard_link("http://127.0.0.1:8000/", "san-nicolas", 0) == (
        "http://127.0.0.1:8000/#pilot=san-nicolas&t=1970-01-01T00:00:00Z"
    )


def test_cleared_says_how_long_and_how_high(registry: Registry) -> None:
    end = FIRED_AT + (4 * 60 + 35) * MINUTE_NS
    n = river(registry, "cleared", end_ns=end, value=5.21, peak=5.41)
    assert n.text == (
        "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) fell back below its alert "
        "level 5.30 m at 18:40 (UTC\N{MINUS SIGN}03:00) on 2026-12-06, after 4 h 35 min above "
        "it (peak 5.41 m); 5.21 m now."
    )
    assert n.key.endswith(":cleared")
    assert not n.active
    assert subject(n).startswith("[WARNING, cleared] Santa Fe: river level back below")


def test_late_says_when_it_happened_and_why_it_comes_now(registry: Registry) -> None:
    start = parse_instant_ns("2026-12-06T02:10:00-03:00")
    end = parse_instant_ns("2026-12-06T03:40:00-03:00")
    n = river(registry, "late", start_ns=start, end_ns=end, value=5.33, peak=5.41)
    assert n.text == (
        "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) passed its alert level 5.30 m "
        "at 02:10 (UTC\N{MINUS SIGN}03:00) on 2026-12-06, peak 5.41 m (late: happened "
        "02:10\N{EN DASH}03:40, reported when the device's backlog arrived)."
    )
    assert not n.active  # over before it was known: nothing stays retained


def test_a_late_alarm_across_midnight_names_both_days(registry: Registry) -> None:
    start = parse_instant_ns("2026-12-05T23:10:00-03:00")
    end = parse_instant_ns("2026-12-06T01:00:00-03:00")
    n = river(registry, "late", start_ns=start, end_ns=end)
    assert "(late: happened 2026-12-05 23:10\N{EN DASH}2026-12-06 01:00," in n.text


def test_a_late_alarm_still_on_is_active(registry: Registry) -> None:
    n = river(registry, "late", end_ns=None)
    assert n.active
    assert "(late: started 14:05, reported when the device's backlog arrived)." in n.text


def test_air_quality_against_a_guideline_keeps_the_acronym_and_unit(registry: Registry) -> None:
    n = compose(
        registry,
        alarm_id="sn-aq-04.pm25.who.7",
        kind="fired",
        device="sn-aq-04",
        sensor="pm25",
        rule_id="san-nicolas.pm25.who",
        severity="info",
        level="WHO 24-hour guideline",
        threshold=15.0,
        value=87.34,
        start_ns=FIRED_AT,
    )
    assert n.text == (
        "San Nicolás de los Arroyos: PM2.5 at sn-aq-04 (Barrio Somisa, zona industrial) passed "
        "the WHO 24-hour guideline 15.0 µg/m³ at 14:05 (UTC\N{MINUS SIGN}03:00) on 2026-12-06; "
        "87.3 µg/m³ now."
    )


def test_a_level_crossed_from_above(registry: Registry) -> None:
    n = compose(
        registry,
        alarm_id="rs-wq-01.do.min.1",
        kind="fired",
        device="rs-wq-01",
        sensor="dissolved_oxygen",
        rule_id="resistencia.do.min",
        severity="warning",
        level="minimum",
        threshold=4.0,
        value=3.2,
        start_ns=FIRED_AT,
        direction="below",
    )
    assert n.text == (
        "Resistencia: dissolved oxygen at rs-wq-01 (Laguna Argüello) fell below its minimum "
        "level 4.00 mg/L at 14:05 (UTC\N{MINUS SIGN}03:00) on 2026-12-06; 3.20 mg/L now."
    )


def test_the_json_round_trips_and_carries_every_field(registry: Registry) -> None:
    n = river(registry, "cleared", end_ns=FIRED_AT + 3 * MINUTE_NS, peak=5.5)
    assert Notification.from_json(n.to_json()) == n
    body = n.as_dict()
    for name in ("key", "pilot", "device", "rule_id", "severity", "kind", "start_ns", "end_ns"):
        assert name in body
    assert body["text"] == n.text and body["link"] == n.link


@pytest.mark.parametrize("alarm_id", ["", "a/b", "a+b", "a#"])
def test_an_alarm_id_that_is_no_topic_level_is_refused(registry: Registry, alarm_id: str) -> None:
    with pytest.raises(ValueError, match="alarm id"):
        river(registry, alarm_id=alarm_id)


def test_a_value_that_is_not_a_number_is_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="finite"):
        river(registry, value=float("nan"))


@pytest.mark.parametrize(
    ("minutes", "words"),
    [(0, "under a minute"), (12, "12 min"), (60, "1 h"), (275, "4 h 35 min"), (3060, "2 d 3 h")],
)
def test_durations_in_words(minutes: int, words: str) -> None:
    assert duration(minutes * MINUTE_NS) == words

"""What an alarm notification says: plain words per rule kind, the pilot's local time, the
registry's names and units; and which notification each evaluator event becomes."""

from __future__ import annotations

import tomllib
from typing import Any

import numpy as np
import orjson
import pytest

from alerts.message import (
    Notification,
    compose,
    dashboard_link,
    duration,
    notification_for,
    subject,
    window_of,
)
from core.alerts import AlertEvent, AlertState, Evaluator, alarm_id, default_rules, parse_rules
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry, load_registry
from core.timeutil import MINUTE_NS, NS_PER_S, ns_to_datetime, parse_instant_ns

FIRED_AT = parse_instant_ns("2026-12-06T14:05:00-03:00")
CLEARED_AT = parse_instant_ns("2026-12-06T18:40:00-03:00")
URL = "https://pilots.example.org/"
OFFSET = "UTC\N{MINUS SIGN}03:00"
LATE_WHY = "reported when the device's backlog arrived"


@pytest.fixture(scope="module")
def shipped() -> Registry:
    """The shipped registry, loaded as the brief says (`load_registry()`)."""
    return load_registry()


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
        "dashboard_url": URL,
    }
    fields.update(extra)
    return compose(registry, **fields)  # type: ignore[arg-type]


# -- evaluator events, built as the evaluator builds them ----------------------------------------

#: One rule of each kind, as the defaults make them: kind -> (rule id, device, sensor, label,
#: level, direction). `silent`'s level is the allowed silence in seconds (3 x 600 s).
RULES: dict[str, tuple[str, str, str | None, str, float, str]] = {
    "threshold": ("santa-fe.level.alert", "sf-rlv-01", "level", "alert", 5.30, "above"),
    "mean_over_guideline": (
        "san-nicolas.pm25.mean-24h",
        "sn-aq-01",
        "pm25",
        "WHO 24-hour guideline",
        15.0,
        "above",
    ),
    "rate_of_rise": ("santa-fe.level.rise", "sf-rlv-01", "level", "rise per hour", 0.05, "above"),
    "silent": (
        "santa-fe.silent",
        "sf-rg-01",
        None,
        "3 intervals without a reading",
        1800.0,
        "above",
    ),
    "battery_low": ("santa-fe.battery_v.low", "sf-rg-01", "battery_v", "low battery", 3.4, "below"),
    "flat": ("san-nicolas.pm25.flat", "sn-aq-01", "pm25", "unchanged readings", 0.0, "below"),
}

#: The metric per kind: (value when fired, value when cleared, latest, peak).
NUMBERS: dict[str, tuple[float, float, float, float]] = {
    "threshold": (5.34, 5.21, 5.20, 5.41),
    "mean_over_guideline": (15.4, 14.6, 17.23, 23.4),
    "rate_of_rise": (0.06, 0.04, 0.07, 0.093),
    "silent": (1800.0, 5400.0, 5400.0, 5400.0),
    "battery_low": (3.35, 3.45, 3.52, 3.31),
    "flat": (0.0, 0.4, 0.4, 0.0),
}


def event(
    registry: Registry,
    kind: str,
    type_: str = "fired",
    *,
    late: bool = False,
    start_ns: int = FIRED_AT,
    end_ns: int | None = None,
    **extra: Any,
) -> AlertEvent:
    """An `AlertEvent` of the rule of `kind` above, as the evaluator would emit it."""
    rule, device, sensor, label, level, direction = RULES[kind]
    fired_value, cleared_value, latest, peak = NUMBERS[kind]
    pilot = registry.devices[device].pilot
    alarm = alarm_id(rule, device, start_ns)
    cleared = type_ == "cleared"
    end = (end_ns if end_ns is not None else CLEARED_AT) if cleared else None
    fields: dict[str, Any] = {
        "id": f"{alarm}:{type_}",
        "alarm_id": alarm,
        "type": type_,
        "rule": rule,
        "kind": kind,
        "pilot": pilot,
        "device": device,
        "sensor": sensor,
        "severity": "warning",
        "label": label,
        "level": level,
        "direction": direction,
        "start_ns": start_ns,
        "end_ns": end,
        "at_ns": end if end is not None else start_ns,
        "value": cleared_value if cleared else fired_value,
        "latest": latest,
        "peak": peak,
        "late": late,
    }
    fields.update(extra)
    return AlertEvent(**fields)


def note(registry: Registry, kind: str, type_: str = "fired", **extra: Any) -> Notification:
    return notification_for(event(registry, kind, type_, **extra), registry, dashboard_url=URL)


# -- threshold (and compose, as the channels use it) ---------------------------------------------


def test_fired_in_the_pilots_local_time_with_the_registrys_words(registry: Registry) -> None:
    n = river(registry)
    assert n.text == (
        "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) passed its alert level 5.30 m "
        f"at 14:05 ({OFFSET}) on 2026-12-06; 5.34 m now."
    )
    assert (n.pilot, n.pilot_name, n.unit, n.timezone) == (
        "santa-fe",
        "Santa Fe",
        "m",
        "America/Argentina/Cordoba",
    )
    assert (n.rule_kind, n.late, n.latest) == ("threshold", False, 5.34)
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
    n = river(registry, "cleared", end_ns=CLEARED_AT, value=5.21, peak=5.41)
    assert n.text == (
        "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) fell back below its alert "
        f"level 5.30 m at 18:40 ({OFFSET}) on 2026-12-06, after 4 h 35 min above "
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
        "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) was above its alert level "
        f"5.30 m at 02:10 ({OFFSET}) on 2026-12-06, peak 5.41 m (late: happened "
        f"02:10\N{EN DASH}03:40, {LATE_WHY})."
    )
    assert n.late
    assert not n.active  # over before it was known: nothing stays retained


def test_a_late_alarm_across_midnight_names_both_days(registry: Registry) -> None:
    start = parse_instant_ns("2026-12-05T23:10:00-03:00")
    end = parse_instant_ns("2026-12-06T01:00:00-03:00")
    n = river(registry, "late", start_ns=start, end_ns=end)
    assert "(late: happened 2026-12-05 23:10\N{EN DASH}2026-12-06 01:00," in n.text


def test_a_late_fired_says_when_it_started_and_is_not_active(registry: Registry) -> None:
    n = river(registry, "late", end_ns=None)
    assert n.text.endswith(f"(late: started 14:05, {LATE_WHY}).")
    assert "was above its alert level 5.30 m" in n.text
    # its cleared is in the same backlog: a retained state would show a past alarm as on
    assert not n.active


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
        f"the WHO 24-hour guideline 15.0 µg/m³ at 14:05 ({OFFSET}) on 2026-12-06; "
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
        f"level 4.00 mg/L at 14:05 ({OFFSET}) on 2026-12-06; 3.20 mg/L now."
    )


def test_the_json_round_trips_and_carries_every_field(registry: Registry) -> None:
    n = river(registry, "cleared", end_ns=FIRED_AT + 3 * MINUTE_NS, peak=5.5)
    assert Notification.from_json(n.to_json()) == n
    body = n.as_dict()
    for name in ("key", "pilot", "device", "rule_id", "rule_kind", "severity", "kind", "late"):
        assert name in body
    assert body["text"] == n.text and body["link"] == n.link


def test_a_body_written_before_rule_kind_and_late_still_reads(registry: Registry) -> None:
    body = river(registry, "late", end_ns=CLEARED_AT).as_dict()
    for name in ("rule_kind", "late", "latest"):
        del body[name]
    n = Notification.from_json(orjson.dumps(body))
    assert (n.rule_kind, n.late, n.latest, n.kind) == ("threshold", True, 5.34, "late")


@pytest.mark.parametrize("alarm_id", ["", "a/b", "a+b", "a#"])
def test_an_alarm_id_that_is_no_topic_level_is_refused(registry: Registry, alarm_id: str) -> None:
    with pytest.raises(ValueError, match="alarm id"):
        river(registry, alarm_id=alarm_id)


def test_a_value_that_is_not_a_number_is_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="finite"):
        river(registry, value=float("nan"))


def test_inconsistent_fields_are_refused(registry: Registry) -> None:
    body = river(registry).as_dict()
    with pytest.raises(ValueError, match="late"):
        Notification(**{**body, "late": True})
    with pytest.raises(ValueError, match="rule_kind"):
        Notification(**{**body, "rule_kind": "sometimes"})
    with pytest.raises(ValueError, match="needs a sensor"):
        river(registry, sensor=None)


@pytest.mark.parametrize(
    ("minutes", "words"),
    [(0, "under a minute"), (12, "12 min"), (60, "1 h"), (275, "4 h 35 min"), (3060, "2 d 3 h")],
)
def test_durations_in_words(minutes: int, words: str) -> None:
    assert duration(minutes * MINUTE_NS) == words


# -- notification_for: which notification each event becomes ------------------------------------


@pytest.mark.parametrize("kind", list(RULES))
def test_each_event_becomes_its_kind_key_and_state(shipped: Registry, kind: str) -> None:
    fired = event(shipped, kind, "fired")
    cleared = event(shipped, kind, "cleared")
    late_fired = event(shipped, kind, "fired", late=True)
    late_cleared = event(shipped, kind, "cleared", late=True)
    made = [notification_for(e, shipped, dashboard_url=URL) for e in (fired, cleared)]
    made += [notification_for(e, shipped, dashboard_url=URL) for e in (late_fired, late_cleared)]
    assert [n.kind for n in made] == ["fired", "cleared", "late", "late"]
    assert [n.late for n in made] == [False, False, True, True]
    assert [n.active for n in made] == [True, False, False, False]
    assert [n.key for n in made] == [fired.id, cleared.id, late_fired.id, late_cleared.id]
    # a late episode's two events are two notifications of one alarm
    assert made[2].key != made[3].key
    assert made[2].alarm_id == made[3].alarm_id == late_fired.alarm_id
    assert made[2].key.endswith(":fired") and made[3].key.endswith(":cleared")
    assert (made[2].end_ns, made[3].end_ns) == (None, CLEARED_AT)
    for n, e in zip(made, (fired, cleared, late_fired, late_cleared), strict=True):
        assert (n.rule_kind, n.rule_id, n.severity, n.level) == (e.kind, e.rule, "warning", e.label)
        assert (n.threshold, n.value, n.latest, n.peak) == (e.level, e.value, e.latest, e.peak)
        assert (n.start_ns, n.direction, n.device, n.pilot) == (
            e.start_ns,
            e.direction,
            e.device,
            e.pilot,
        )
        assert n.text.startswith(f"{shipped.pilots[e.pilot].name}: ")
        assert n.title.startswith(f"{shipped.pilots[e.pilot].name}: ")
        assert Notification.from_json(n.to_json()) == n
    assert "late:" not in made[0].text + made[1].text
    assert made[2].text.endswith(f"{LATE_WHY}).") and "late: started " in made[2].text
    assert "late: happened " in made[3].text
    assert subject(made[2]).startswith("[WARNING, late] ")


@pytest.mark.parametrize(
    ("kind", "fired", "cleared"),
    [
        (
            "threshold",
            "river level at sf-rlv-01 (Puerto de Santa Fe) passed its alert level 5.30 m at 14:05 "
            f"({OFFSET}) on 2026-12-06; 5.20 m now.",
            "river level at sf-rlv-01 (Puerto de Santa Fe) fell back below its alert level "
            f"5.30 m at 18:40 ({OFFSET}) on 2026-12-06, after 4 h 35 min above it (peak "
            "5.41 m); 5.20 m now.",
        ),
        (
            "mean_over_guideline",
            "24-hour mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) rose above the WHO 24-hour "
            f"guideline 15 µg/m³ at 14:05 ({OFFSET}) on 2026-12-06; mean 17.2 µg/m³ now.",
            "24-hour mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) fell back below the WHO "
            f"24-hour guideline 15 µg/m³ at 18:40 ({OFFSET}) on 2026-12-06, after 4 h 35 min "
            "above it (peak 23.4 µg/m³); mean 17.2 µg/m³ now.",
        ),
        (
            "rate_of_rise",
            "river level at sf-rlv-01 (Puerto de Santa Fe) rising 6 cm per hour (over 5 cm/h) "
            f"since 14:05 ({OFFSET}) on 2026-12-06; rising 7 cm per hour now.",
            "river level at sf-rlv-01 (Puerto de Santa Fe) slowed below 5 cm/h at 18:40 "
            f"({OFFSET}) on 2026-12-06, after 4 h 35 min rising faster (fastest 9.3 cm per "
            "hour); rising 7 cm per hour now.",
        ),
        (
            "silent",
            "sf-rg-01 (Facultad Regional Santa Fe) has sent nothing since 13:35 "
            f"({OFFSET}) on 2026-12-06 (expected every 10 min).",
            f"sf-rg-01 (Facultad Regional Santa Fe) reported again at 18:40 ({OFFSET}) on "
            "2026-12-06 after 5 h 5 min of silence.",
        ),
        (
            "battery_low",
            "battery at sf-rg-01 (Facultad Regional Santa Fe) fell to 3.35 V (low: 3.40 V or "
            f"less) at 14:05 ({OFFSET}) on 2026-12-06; 3.52 V now.",
            "battery at sf-rg-01 (Facultad Regional Santa Fe) recovered to 3.45 V at 18:40 "
            f"({OFFSET}) on 2026-12-06, after 4 h 35 min low (lowest 3.31 V); 3.52 V now.",
        ),
        (
            "flat",
            "PM2.5 at sn-aq-01 (Plaza Mitre, centro) has reported the same value since 14:05 "
            f"({OFFSET}) on 2026-12-06 (stuck or flat-lined sensor).",
            f"PM2.5 at sn-aq-01 (Plaza Mitre, centro) changed again at 18:40 ({OFFSET}) on "
            "2026-12-06, after 4 h 35 min of the same value.",
        ),
    ],
)
def test_the_words_of_each_rule_kind(
    shipped: Registry, kind: str, fired: str, cleared: str
) -> None:
    pilot = shipped.pilots[shipped.devices[RULES[kind][1]].pilot].name
    assert note(shipped, kind, "fired").text == f"{pilot}: {fired}"
    assert note(shipped, kind, "cleared").text == f"{pilot}: {cleared}"


@pytest.mark.parametrize(
    ("kind", "late_fired", "late_cleared"),
    [
        (
            "threshold",
            "was above its alert level 5.30 m at 14:05",
            "was above its alert level 5.30 m at 14:05 ({offset}) on 2026-12-06, peak 5.41 m",
        ),
        (
            "mean_over_guideline",
            "24-hour mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) was above the WHO 24-hour "
            "guideline 15 µg/m³ at 14:05",
            "was above the WHO 24-hour guideline 15 µg/m³ at 14:05 ({offset}) on 2026-12-06, "
            "peak 23.4 µg/m³",
        ),
        (
            "rate_of_rise",
            "was rising 6 cm per hour (over 5 cm/h) at 14:05",
            "was rising over 5 cm/h from 14:05 ({offset}) on 2026-12-06, fastest 9.3 cm per hour",
        ),
        (
            "silent",
            "sent nothing after 13:35",
            "sent nothing for 5 h 5 min after 13:35 ({offset}) on 2026-12-06 (expected every "
            "10 min; late: happened 13:35\N{EN DASH}18:40",
        ),
        (
            "battery_low",
            "battery at sf-rg-01 (Facultad Regional Santa Fe) was down to 3.35 V (low: 3.40 V or "
            "less) at 14:05",
            "was low (3.40 V or less) from 14:05 ({offset}) on 2026-12-06, lowest 3.31 V",
        ),
        (
            "flat",
            "reported the same value from 14:05",
            "reported the same value for 4 h 35 min from 14:05 ({offset}) on 2026-12-06 (stuck "
            "or flat-lined sensor; late: happened 14:05\N{EN DASH}18:40",
        ),
    ],
)
def test_the_late_words_of_each_rule_kind(
    shipped: Registry, kind: str, late_fired: str, late_cleared: str
) -> None:
    first = note(shipped, kind, "fired", late=True)
    second = note(shipped, kind, "cleared", late=True)
    assert late_fired.format(offset=OFFSET) in first.text
    assert late_cleared.format(offset=OFFSET) in second.text
    started = "13:35" if kind == "silent" else "14:05"
    assert first.text.endswith(f"late: started {started}, {LATE_WHY}).")
    assert second.text.endswith(f"late: happened {started}\N{EN DASH}18:40, {LATE_WHY}).")


def test_the_late_pair_of_a_threshold_alarm_word_for_word(shipped: Registry) -> None:
    start = parse_instant_ns("2026-12-06T02:10:00-03:00")
    end = parse_instant_ns("2026-12-06T03:40:00-03:00")
    first = note(shipped, "threshold", "fired", late=True, start_ns=start)
    second = note(shipped, "threshold", "cleared", late=True, start_ns=start, end_ns=end)
    head = "Santa Fe: river level at sf-rlv-01 (Puerto de Santa Fe) was above its alert level"
    assert first.text == (
        f"{head} 5.30 m at 02:10 ({OFFSET}) on 2026-12-06 (late: started 02:10, {LATE_WHY})."
    )
    assert second.text == (
        f"{head} 5.30 m at 02:10 ({OFFSET}) on 2026-12-06, peak 5.41 m (late: happened "
        f"02:10\N{EN DASH}03:40, {LATE_WHY})."
    )
    assert (
        first.title
        == second.title
        == ("Santa Fe: river level was above its alert level 5.30 m at sf-rlv-01")
    )


@pytest.mark.parametrize(
    ("kind", "titles"),
    [
        (
            "threshold",
            (
                "Santa Fe: river level passed its alert level 5.30 m at sf-rlv-01",
                "Santa Fe: river level back below its alert level 5.30 m at sf-rlv-01",
                "Santa Fe: river level was above its alert level 5.30 m at sf-rlv-01",
            ),
        ),
        (
            "mean_over_guideline",
            (
                "San Nicolás de los Arroyos: 24-hour mean of PM2.5 rose above the WHO 24-hour "
                "guideline 15 µg/m³ at sn-aq-01",
                "San Nicolás de los Arroyos: 24-hour mean of PM2.5 back below the WHO 24-hour "
                "guideline 15 µg/m³ at sn-aq-01",
                "San Nicolás de los Arroyos: 24-hour mean of PM2.5 was above the WHO 24-hour "
                "guideline 15 µg/m³ at sn-aq-01",
            ),
        ),
        (
            "rate_of_rise",
            (
                "Santa Fe: river level rising over 5 cm/h at sf-rlv-01",
                "Santa Fe: river level no longer rising over 5 cm/h at sf-rlv-01",
                "Santa Fe: river level rose over 5 cm/h at sf-rlv-01",
            ),
        ),
        (
            "silent",
            (
                "Santa Fe: sf-rg-01 silent (expected every 10 min)",
                "Santa Fe: sf-rg-01 reporting again",
                "Santa Fe: sf-rg-01 was silent",
            ),
        ),
        (
            "battery_low",
            (
                "Santa Fe: battery low at sf-rg-01 (3.35 V)",
                "Santa Fe: battery recovered at sf-rg-01",
                "Santa Fe: battery was low at sf-rg-01",
            ),
        ),
        (
            "flat",
            (
                "San Nicolás de los Arroyos: PM2.5 stuck at sn-aq-01",
                "San Nicolás de los Arroyos: PM2.5 changing again at sn-aq-01",
                "San Nicolás de los Arroyos: PM2.5 was stuck at sn-aq-01",
            ),
        ),
    ],
)
def test_the_titles_of_each_rule_kind(
    shipped: Registry, kind: str, titles: tuple[str, str, str]
) -> None:
    made = (
        note(shipped, kind, "fired"),
        note(shipped, kind, "cleared"),
        note(shipped, kind, "cleared", late=True),
    )
    assert tuple(n.title for n in made) == titles
    assert [subject(n).split("] ")[0] for n in made] == [
        "[WARNING",
        "[WARNING, cleared",
        "[WARNING, late",
    ]


def test_a_silent_alarm_has_no_sensor_and_counts_from_the_last_reading(shipped: Registry) -> None:
    # the last reading 13:35; silence allowed 3 x 10 min, so the alarm starts at 14:05
    n = note(shipped, "silent", "fired")
    assert (n.sensor, n.sensor_name, n.unit) == ("", "", "")
    assert (n.threshold, n.value) == (1800.0, 1800.0)  # seconds: allowed, and at the start
    assert "has sent nothing since 13:35" in n.text
    assert Notification.from_json(n.to_json()) == n
    # a 15-minute sonde with 2 intervals allowed: last reading 13:35, start 14:05
    sonde = note(shipped, "silent", "fired", device="rs-wq-01", pilot="resistencia")
    assert sonde.text == (
        "Resistencia: rs-wq-01 (Laguna Argüello) has sent nothing since 13:35 "
        f"({OFFSET}) on 2026-12-06 (expected every 15 min)."
    )


def test_a_silent_rule_on_one_sensor_names_it(shipped: Registry) -> None:
    n = note(shipped, "silent", "fired", sensor="level", device="sf-rlv-01")
    assert (n.sensor, n.sensor_name, n.unit) == ("level", "River level", "")
    assert "sf-rlv-01 (Puerto de Santa Fe) has sent no river level reading since 13:35" in n.text


def test_a_rise_in_another_unit_is_that_unit_per_hour(shipped: Registry) -> None:
    n = note(
        shipped,
        "rate_of_rise",
        device="rs-wq-01",
        pilot="resistencia",
        sensor="conductivity",
        level=10.0,
        value=12.0,
        latest=-3.0,
        peak=15.5,
    )
    assert n.text == (
        "Resistencia: electrical conductivity at rs-wq-01 (Laguna Argüello) rising 12 µS/cm per "
        f"hour (over 10 µS/cm per hour) since 14:05 ({OFFSET}) on 2026-12-06; falling 3 µS/cm "
        "per hour now."
    )
    turbid = note(shipped, "rate_of_rise", device="rs-wq-01", sensor="turbidity", level=20.0)
    assert "(over 20 NTU/h)" in turbid.text


def test_a_mean_limit_of_another_window_says_its_window(shipped: Registry) -> None:
    n = note(shipped, "mean_over_guideline", label="8-hour mean limit", level=20.0)
    assert n.text.startswith(
        "San Nicolás de los Arroyos: 8-hour mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) "
        "rose above its 8-hour mean limit 20 µg/m³ at 14:05"
    )
    assert window_of("mean limit") == "rolling"


def test_a_local_day_mean_says_today_and_clears_on_a_later_day(shipped: Registry) -> None:
    fired = note(shipped, "mean_over_guideline", window="day")
    assert fired.text == (
        "San Nicolás de los Arroyos: the mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) today "
        f"(local day) rose above the WHO 24-hour guideline 15 µg/m³ at 14:05 ({OFFSET}) on "
        "2026-12-06; mean 17.2 µg/m³ so far today."
    )
    title = (
        "San Nicolás de los Arroyos: local-day mean of PM2.5 rose above the WHO 24-hour "
        "guideline 15 µg/m³ at sn-aq-01"
    )
    assert (fired.title, subject(fired)) == (title, f"[WARNING] {title}")
    assert (fired.rule_kind, fired.value, fired.latest) == ("mean_over_guideline", 15.4, 17.23)
    # Cleared by the next day's mean, once that day was covered (its 216th reading, 17:55).
    back = parse_instant_ns("2026-12-07T17:55:00-03:00")
    cleared = note(
        shipped, "mean_over_guideline", "cleared", window="day", end_ns=back, latest=10.04
    )
    assert cleared.text == (
        "San Nicolás de los Arroyos: the mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) today "
        "(local day) is back below the WHO 24-hour guideline 15 µg/m³ since 17:55 "
        f"({OFFSET}) on 2026-12-07, after 1 d 3 h above it (peak 23.4 µg/m³); mean 10.0 µg/m³ "
        "so far today."
    )
    assert cleared.title == (
        "San Nicolás de los Arroyos: local-day mean of PM2.5 back below the WHO 24-hour "
        "guideline 15 µg/m³ at sn-aq-01"
    )
    # Found in a backlog: no "today", the day is the start's.
    late = note(shipped, "mean_over_guideline", "cleared", window="day", late=True, end_ns=back)
    assert late.text == (
        "San Nicolás de los Arroyos: the local-day mean of PM2.5 at sn-aq-01 (Plaza Mitre, "
        f"centro) was above the WHO 24-hour guideline 15 µg/m³ at 14:05 ({OFFSET}) on "
        "2026-12-06, peak 23.4 µg/m³ (late: happened 2026-12-06 14:05\N{EN DASH}2026-12-07 "
        f"17:55, {LATE_WHY})."
    )
    late_fired = note(shipped, "mean_over_guideline", window="day", late=True)
    assert late_fired.text == (
        "San Nicolás de los Arroyos: the local-day mean of PM2.5 at sn-aq-01 (Plaza Mitre, "
        f"centro) was above the WHO 24-hour guideline 15 µg/m³ at 14:05 ({OFFSET}) on "
        f"2026-12-06 (late: started 14:05, {LATE_WHY})."
    )
    # compose takes the window too; a rolling mean (the default) keeps its words.
    composed = compose(
        shipped,
        alarm_id="a",
        kind="fired",
        device="sn-aq-01",
        sensor="pm25",
        rule_id="san-nicolas.pm25.mean-day",
        rule_kind="mean_over_guideline",
        severity="warning",
        level="WHO 24-hour guideline",
        threshold=15.0,
        value=15.4,
        latest=17.23,
        start_ns=FIRED_AT,
        window="day",
        dashboard_url=URL,
    )
    assert composed.text == fired.text
    assert note(shipped, "mean_over_guideline").text.startswith(
        "San Nicolás de los Arroyos: 24-hour mean of PM2.5 at sn-aq-01"
    )


def test_a_local_day_mean_alarm_of_the_evaluator_is_worded_as_one(shipped: Registry) -> None:
    rules = parse_rules(
        {
            "defaults": {"include": False},
            "rules": [
                {
                    "id": "san-nicolas.pm25.mean-day",
                    "kind": "mean_over_guideline",
                    "pilot": "san-nicolas",
                    "sensor": "pm25",
                    "window": "day",
                }
            ],
        },
        shipped,
    )
    midnight = parse_instant_ns("2026-12-06T00:00:00-03:00")
    values = [20.0] * 288
    pm25 = Readings.from_arrays(
        [midnight + i * 5 * MINUTE_NS for i in range(288)],
        [shipped.devices["sn-aq-01"].code] * 288,
        [shipped.sensors["pm25"].code] * 288,
        values,
    )
    events, _ = Evaluator(rules, shipped).evaluate(pm25, AlertState.empty(), int(pm25.ts_ns[-1]))
    assert [(e.type, e.window) for e in events] == [("fired", "day")]
    n = notification_for(events[0], shipped, dashboard_url=URL)
    assert n.text == (
        "San Nicolás de los Arroyos: the mean of PM2.5 at sn-aq-01 (Plaza Mitre, centro) today "
        f"(local day) rose above the WHO 24-hour guideline 15 µg/m³ at 17:55 ({OFFSET}) on "
        "2026-12-06; mean 20.0 µg/m³ so far today."
    )


def test_a_flat_run_within_epsilon_says_how_close(shipped: Registry) -> None:
    n = note(shipped, "flat", device="sf-rlv-01", sensor="level", level=0.005)
    assert "river level at sf-rlv-01 (Puerto de Santa Fe) has reported values within 0.005 m " in (
        n.text
    )


# -- local time and offset, per pilot ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pilot", "device"),
    [("santa-fe", "sf-rg-01"), ("san-nicolas", "sn-aq-01"), ("resistencia", "rs-rg-01")],
)
@pytest.mark.parametrize("kind", ["battery_low", "silent"])
def test_each_pilot_in_its_own_local_time(
    shipped: Registry, pilot: str, device: str, kind: str
) -> None:
    at = parse_instant_ns("2026-12-07T02:30:00Z")  # 23:30 the day before, in Argentina
    n = note(shipped, kind, "cleared", device=device, pilot=pilot, end_ns=at)
    zone = shipped.pilots[pilot].tz
    local = ns_to_datetime(at, zone)
    assert (local.hour, local.minute, local.day) == (23, 30, 6)  # UTC-3, no daylight saving
    assert f"at 23:30 ({OFFSET}) on 2026-12-06" in n.text
    assert n.timezone == shipped.pilots[pilot].timezone


def test_the_offset_follows_the_pilots_zone(shipped: Registry) -> None:
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    raw["pilots"]["santa-fe"]["timezone"] = "Asia/Kolkata"
    moved = build_registry(raw, DEFAULT_REGISTRY_PATH)
    n = notification_for(event(moved, "threshold"), moved, dashboard_url=URL)
    assert "at 22:35 (UTC+05:30) on 2026-12-06" in n.text  # 17:05 UTC
    late = notification_for(
        event(moved, "threshold", "cleared", late=True, end_ns=FIRED_AT + 2 * 3600 * NS_PER_S),
        moved,
        dashboard_url=URL,
    )
    assert f"(late: happened 2026-12-06 22:35\N{EN DASH}2026-12-07 00:35, {LATE_WHY})" in (
        late.text
    )


# -- events from the evaluator itself ------------------------------------------------------------


def readings(
    registry: Registry, device: str, sensor: str, ts: list[int], values: list[float]
) -> Readings:
    n = len(ts)
    return Readings.from_arrays(
        ts,
        [registry.devices[device].code] * n,
        [registry.sensors[sensor].code] * n,
        values,
    )


def test_the_evaluators_late_episode_is_two_notifications(shipped: Registry) -> None:
    evaluator = Evaluator(default_rules(shipped), shipped)
    now = FIRED_AT + 200 * MINUTE_NS
    _, state = evaluator.evaluate(
        readings(shipped, "sf-rlv-01", "level", [now], [5.0]), AlertState.empty(), now
    )
    levels = [5.1, 5.2, 5.31, 5.4, 5.5, 5.45, 5.2, 5.1, 5.1, 5.1, 5.1, 5.1]
    ts = [FIRED_AT + i * 10 * MINUTE_NS for i in range(len(levels))]
    events, _ = evaluator.evaluate(readings(shipped, "sf-rlv-01", "level", ts, levels), state, now)
    alerts = [e for e in events if e.rule == "santa-fe.level.alert"]
    assert [(e.type, e.late) for e in alerts] == [("fired", True), ("cleared", True)]
    first, second = (notification_for(e, shipped, dashboard_url=URL) for e in alerts)
    assert first.alarm_id == second.alarm_id and first.key != second.key
    assert (first.key, second.key) == (alerts[0].id, alerts[1].id)
    assert not first.active and not second.active
    assert first.text.endswith(
        f"at 14:25 ({OFFSET}) on 2026-12-06 (late: started 14:25, {LATE_WHY})."
    )
    assert second.text.endswith(f"peak 5.50 m (late: happened 14:25\N{EN DASH}15:05, {LATE_WHY}).")


def test_the_evaluators_silence_and_its_end(shipped: Registry) -> None:
    evaluator = Evaluator(default_rules(shipped), shipped)
    _, state = evaluator.evaluate(
        readings(shipped, "sf-rg-01", "rain", [FIRED_AT], [0.0]), AlertState.empty(), FIRED_AT
    )
    fired, state = evaluator.evaluate_silence(state, FIRED_AT + 45 * MINUTE_NS)
    back = FIRED_AT + 90 * MINUTE_NS
    cleared, _ = evaluator.evaluate(
        readings(shipped, "sf-rg-01", "rain", [back], [0.0]), state, back
    )
    [silence] = fired
    [end] = [e for e in cleared if e.kind == "silent"]
    assert silence.sensor is None
    one, two = (notification_for(e, shipped, dashboard_url=URL) for e in (silence, end))
    assert one.text == (
        "Santa Fe: sf-rg-01 (Facultad Regional Santa Fe) has sent nothing since 14:05 "
        f"({OFFSET}) on 2026-12-06 (expected every 10 min)."
    )
    assert two.text == (
        "Santa Fe: sf-rg-01 (Facultad Regional Santa Fe) reported again at 15:35 "
        f"({OFFSET}) on 2026-12-06 after 1 h 30 min of silence."
    )
    assert (one.active, two.active, one.sensor, two.kind) == (True, False, "", "cleared")
    assert np.isclose(one.threshold, 1800.0)

"""Alert rules: the defaults the registry gives, the operator's file, and every refusal named."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.alerts import AlertState, Evaluator, default_rules, load_rules, parse_rules
from core.alerts.rules import Rule, health_label, parse_health_label
from core.errors import ConfigError
from core.readings import Readings
from core.registry import Registry
from core.timeutil import NS_PER_S

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "core" / "alerts.example.toml"


def by_id(rules: tuple[Rule, ...]) -> dict[str, Rule]:
    return {r.id: r for r in rules}


def parse(registry: Registry, document: dict[str, Any]) -> dict[str, Rule]:
    return by_id(parse_rules(document, registry, source="rules.toml"))


def refusal(registry: Registry, document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_rules(document, registry, source="rules.toml")
    message = str(info.value)
    assert message.startswith("invalid alert rules rules.toml: ")
    return message


def own(*rules: dict[str, Any]) -> dict[str, Any]:
    """A rules document without the registry's defaults."""
    return {"defaults": {"include": False}, "rules": list(rules)}


RIVER = {"id": "river", "kind": "threshold", "pilot": "santa-fe", "sensor": "level", "level": 5.3}
#: The river rule with a named registry threshold in place of a number.
NAMED = {k: v for k, v in RIVER.items() if k != "level"}


# --- the defaults ---------------------------------------------------------------------------


def test_each_registry_river_level_is_a_rule_the_lowest_a_warning_the_higher_critical(
    registry: Registry,
) -> None:
    rules = by_id(default_rules(registry))
    expected = {
        "santa-fe.level.alert": (5.30, "warning"),
        "santa-fe.level.evacuation": (5.70, "critical"),
        "resistencia.level.alert": (6.00, "warning"),
        "resistencia.level.evacuation": (6.50, "critical"),
    }
    for rule_id, (level, severity) in expected.items():
        rule = rules[rule_id]
        assert (rule.kind, rule.level, rule.severity) == ("threshold", level, severity)
        assert rule.direction == "above"
        assert rule.pending_s == 0
        assert rule.clear_s == 1800
        assert rule.clear_level == pytest.approx(level * 0.99)  # a 1 % band: 5.3 cm at 5.30 m
    assert rules["santa-fe.level.alert"].devices == ("sf-rlv-01", "sf-rlv-02")
    assert rules["resistencia.level.alert"].devices == ("rs-rlv-01",)


def test_each_who_guideline_is_a_rolling_24_hour_mean_rule_where_a_device_measures_it(
    registry: Registry,
) -> None:
    rules = by_id(default_rules(registry))
    means = {r.id: r for r in rules.values() if r.kind == "mean_over_guideline"}
    assert set(means) == {f"san-nicolas.{s}.mean-24h" for s in ("pm25", "pm10", "no2", "co")}
    pm25 = means["san-nicolas.pm25.mean-24h"]
    assert (pm25.level, pm25.window_s, pm25.label) == (15.0, 86_400, "WHO 24-hour guideline")
    assert pm25.devices == tuple(f"sn-aq-0{i}" for i in range(1, 6))
    # No calendar-day rule by default: it would double the alarms of an episode (defaults.py).
    assert {r.window for r in means.values()} == {"rolling"}


def test_every_pilot_watches_its_devices_for_silence_low_battery_and_stuck_sensors(
    registry: Registry,
) -> None:
    rules = by_id(default_rules(registry))
    for pilot in registry.pilot_list:
        every = tuple(d.id for d in pilot.devices)
        silent = rules[f"{pilot.id}.silent"]
        assert (silent.kind, silent.sensor, silent.devices, silent.level) == (
            "silent",
            None,
            every,
            3.0,
        )
        battery = rules[f"{pilot.id}.battery_v.low"]
        assert (battery.level, battery.direction, battery.devices) == (3.4, "below", every)
        flats = {r.sensor for r in rules.values() if r.kind == "flat" and r.pilot == pilot.id}
        # rain legitimately repeats 0 and the tip counter stands still on dry days
        assert flats == set(pilot.sensors) - {"rain", "rain_tips", "battery_v"}
    rises = {r.id: r.level for r in rules.values() if r.kind == "rate_of_rise"}
    assert rises == {"santa-fe.level.rise": 0.05, "resistencia.level.rise": 0.05}


def test_no_file_means_the_defaults(registry: Registry) -> None:
    assert load_rules(None, registry) == default_rules(registry)


# --- the file -------------------------------------------------------------------------------


def test_the_example_file_loads_against_the_shipped_registry(registry: Registry) -> None:
    rules = by_id(load_rules(EXAMPLE, registry))
    alert = rules["santa-fe.level.alert"]  # replaces the default of that id
    assert (alert.level, alert.pending_s, alert.clear_level, alert.label) == (
        5.30,
        600,
        5.25,
        "alert",
    )
    oxygen = rules["resistencia.dissolved_oxygen.low"]
    assert (oxygen.direction, oxygen.level, oxygen.clear_level) == ("below", 3.0, 3.5)
    assert oxygen.devices == ("rs-wq-01", "rs-wq-02")
    assert "san-nicolas.wind_dir.flat" not in rules  # disabled
    assert "san-nicolas.wind_speed.flat" in rules  # the other defaults stay
    day = rules["san-nicolas.pm25.mean-day"]
    assert (day.kind, day.window, day.level) == ("mean_over_guideline", "day", 15.0)
    assert rules["san-nicolas.pm25.mean-24h"].window == "rolling"
    ingest = rules["system.ingest-1"]
    assert (ingest.kind, ingest.url, ingest.component) == (
        "unhealthy",
        "http://127.0.0.1:9101/health",
        "ingest-1",
    )


def test_a_file_can_leave_the_defaults_out_and_rules_default_to_every_fitting_device(
    registry: Registry,
) -> None:
    rules = parse(
        registry, own({"id": "any-level", "kind": "threshold", "sensor": "level", "level": 7})
    )
    assert list(rules) == ["any-level"]
    assert rules["any-level"].devices == ("sf-rlv-01", "sf-rlv-02", "rs-rlv-01")
    assert rules["any-level"].pilot is None


def test_rule_kinds_take_their_documented_defaults(registry: Registry) -> None:
    rules = parse(
        registry,
        own(
            {"id": "b", "kind": "battery_low", "pilot": "resistencia"},
            {"id": "r", "kind": "rate_of_rise", "pilot": "santa-fe", "rise_per_h": 0.1},
            {"id": "f", "kind": "flat", "sensor": "ph"},
            {"id": "s", "kind": "silent", "pilot": "san-nicolas", "sensor": "pm25"},
        ),
    )
    assert (rules["b"].sensor, rules["b"].level) == ("battery_v", 3.4)
    assert rules["b"].clear_level == pytest.approx(3.434)
    assert (rules["r"].sensor, rules["r"].window_s, rules["r"].min_span_s) == (
        "level",
        10_800,
        5400,
    )
    assert (rules["f"].span_s, rules["f"].readings, rules["f"].level) == (7200, None, 0.0)
    assert rules["s"].devices == tuple(f"sn-aq-0{i}" for i in range(1, 6))
    assert all(r.severity == "warning" for r in rules.values())


MEAN = {"id": "m", "kind": "mean_over_guideline", "pilot": "san-nicolas", "sensor": "pm25"}


def test_a_mean_is_rolling_or_over_the_local_calendar_day(registry: Registry) -> None:
    rules = parse(
        registry,
        own(
            MEAN,
            {**MEAN, "id": "d", "window": "day"},
            {**MEAN, "id": "dl", "window": "day", "level": 25, "min_coverage": 0.5},
            {**MEAN, "id": "r8", "window": "rolling", "window_s": 8 * 3600, "level": 25},
        ),
    )
    assert (rules["m"].window, rules["m"].window_s) == ("rolling", 86_400)
    day = rules["d"]
    # The day is the window; its window_s only sets the cap on the readings kept.
    assert (day.window, day.window_s, day.min_coverage) == ("day", 86_400, 0.75)
    assert (day.level, day.clear_level, day.label) == (15.0, 14.85, "WHO 24-hour guideline")
    assert day.devices == tuple(f"sn-aq-0{i}" for i in range(1, 6))
    assert (rules["dl"].label, rules["dl"].min_coverage) == ("local-day mean limit", 0.5)
    assert rules["r8"].label == "8-hour mean limit"
    assert {r.window for r in parse(registry, own(RIVER)).values()} == {"rolling"}


def test_a_threshold_can_name_a_registry_level(registry: Registry) -> None:
    rules = parse(registry, own({**NAMED, "threshold": "evacuation"}))
    assert rules["river"].level == 5.70
    assert rules["river"].label == "evacuation"


@pytest.mark.parametrize(
    ("document", "place", "words"),
    [
        (own({**RIVER, "pending_s": -5}), "rules[0].pending_s", "greater than or equal to 0"),
        (own(RIVER, {**RIVER, "id": "b", "kind": "tresh"}), "rules[1]", "does not match"),
        (own({"id": "s", "kind": "silent", "clear_s": 60}), "rules[0].clear_s", "Extra inputs"),
        (own({**RIVER, "severity": "panic"}), "rules[0].severity", "'info', 'warning'"),
        (own({**RIVER, "sensor": "levl"}), "rules[0].sensor", "unknown sensor 'levl'"),
        (own({**RIVER, "pilot": "rosario"}), "rules[0].pilot", "unknown pilot 'rosario'"),
        (
            own({**RIVER, "devices": ["sf-rlv-01", "rs-rlv-01"]}),
            "rules[0].devices[1]",
            "belongs to 'resistencia'",
        ),
        (own({**RIVER, "devices": ["sf-rg-01"]}), "rules[0].devices[0]", "does not report"),
        (own({**RIVER, "devices": ["sf-rlv-09"]}), "rules[0].devices[0]", "unknown device"),
        (own({**RIVER, "clear_level": 5.4}), "rules[0].clear_level", "at or below the level"),
        (
            own({**RIVER, "below": True, "clear_level": 5.2}),
            "rules[0].clear_level",
            "at or above the level",
        ),
        (own({**RIVER, "clear_level": 5.2, "clear_margin": 0.1}), "rules[0]", "not both"),
        (own({**RIVER, "threshold": "alert"}), "rules[0]", "not both"),
        (own({**NAMED, "threshold": "flood"}), "rules[0].threshold", "no level"),
        (own({**RIVER, "level": float("nan")}), "rules[0].level", "finite"),
        (own({**RIVER, "level": float("inf")}), "rules[0].level", "finite"),
        (own(RIVER, RIVER), "rules[1].id", "duplicate id 'river'"),
        (own({**RIVER, "id": "Santa Fe"}), "rules[0].id", "pattern"),
        (own({**RIVER, "colour": "red"}), "rules[0].colour", "Extra inputs"),
        (
            own({"id": "m", "kind": "mean_over_guideline", "sensor": "level"}),
            "rules[0].level",
            "no guideline_24h",
        ),
        (
            own({"id": "m", "kind": "mean_over_guideline", "sensor": "pm25", "min_coverage": 2}),
            "rules[0].min_coverage",
            "less than or equal to 1",
        ),
        (own({**MEAN, "window": "week"}), "rules[0].window", "'rolling' or 'day'"),
        (
            own({**MEAN, "window": "day", "window_s": 86_400}),
            "rules[0]",
            'window_s is for window = "rolling"',
        ),
        (own({**RIVER, "window": "day"}), "rules[0].window", "Extra inputs"),
        (
            own({"id": "r", "kind": "rate_of_rise", "rise_per_h": 0.1, "min_span_s": 99_999}),
            "rules[0]",
            "exceeds window_s",
        ),
        (own({"id": "f", "kind": "flat", "sensor": "ph", "readings": 1}), "rules[0].readings", "2"),
        (
            own(
                {
                    "id": "x",
                    "kind": "threshold",
                    "pilot": "san-nicolas",
                    "sensor": "level",
                    "level": 1,
                }
            ),
            "rules[0]",
            "no device of san-nicolas reports 'level'",
        ),
        (
            {"defaults": {"disable": ["santa-fe.level.flood"]}},
            "defaults.disable[0]",
            "not a default",
        ),
        ({"rules": {"id": "x"}}, "rules", "valid list"),
    ],
)
def test_a_bad_rule_is_refused_naming_its_place(
    registry: Registry, document: dict[str, Any], place: str, words: str
) -> None:
    message = refusal(registry, document)
    assert f": {place}: " in message
    assert words in message


def test_a_missing_or_broken_file_is_a_config_error_naming_it(
    registry: Registry, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match=r"not found: .*nowhere\.toml"):
        load_rules(missing, registry)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rules]\nid = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot read alert rules .*broken\.toml"):
        load_rules(broken, registry)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[[rules]]\nid = "x"\nkind = "silent"\nintervals = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"wrong.toml: rules\[0\].intervals: "):
        load_rules(wrong, registry)


def test_every_field_the_example_documents_is_a_real_field(registry: Registry) -> None:
    # The example's tables parse with extra keys refused, so a typo in it would fail here.
    document = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert len(document["rules"]) == 9
    assert {r["kind"] for r in document["rules"]} == {
        "threshold",
        "mean_over_guideline",
        "rate_of_rise",
        "silent",
        "battery_low",
        "flat",
        "unhealthy",
    }
    parse_rules(document, registry)


def test_core_alerts_imports_no_service_package() -> None:
    code = (
        "import sys, core.alerts\n"
        "services = ('ingest', 'api', 'pilots', 'simulators', 'alerts')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in services]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- unhealthy: a component's health endpoint ---------------------------------------------

INGEST = {"id": "system.ingest-1", "kind": "unhealthy", "url": "http://127.0.0.1:9101/health"}


def test_an_unhealthy_rule_resolves_to_no_pilot_devices_or_sensor(registry: Registry) -> None:
    rules = parse(
        registry,
        own(
            {
                **INGEST,
                "component": "ingest-1",
                "pending_s": 30,
                "clear_s": 120,
                "severity": "warning",
                "timeout_s": 2.5,
            }
        ),
    )
    rule = rules["system.ingest-1"]
    assert (rule.kind, rule.pilot, rule.devices, rule.sensor) == ("unhealthy", None, (), None)
    assert (rule.url, rule.component, rule.timeout_s, rule.ca_file) == (
        "http://127.0.0.1:9101/health",
        "ingest-1",
        2.5,
        None,
    )
    assert (rule.pending_s, rule.clear_s, rule.severity) == (30, 120, "warning")
    assert (rule.level, rule.clear_level, rule.direction, rule.label) == (
        30.0,
        30.0,
        "above",
        "unhealthy",
    )


def test_an_unhealthy_rule_takes_its_documented_defaults(registry: Registry) -> None:
    rules = parse(
        registry,
        own(
            INGEST,
            {"id": "api", "kind": "unhealthy", "url": "https://Pilots.Example.org/health"},
            {"id": "v6", "kind": "unhealthy", "url": "http://[::1]:8000/health"},
        ),
    )
    ingest = rules["system.ingest-1"]
    assert (ingest.component, ingest.pending_s, ingest.clear_s) == ("127.0.0.1:9101", 60, 0)
    assert (ingest.severity, ingest.timeout_s) == ("critical", 5.0)
    assert rules["api"].component == "pilots.example.org:443"
    assert rules["v6"].component == "[::1]:8000"


def test_an_unhealthy_rule_may_trust_a_ca_file(registry: Registry, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    url = "https://127.0.0.1:8443/health"
    rules = parse(registry, own({**INGEST, "url": url, "ca_file": str(ca)}))
    assert rules["system.ingest-1"].ca_file == str(ca)
    message = refusal(registry, own({**INGEST, "url": url, "ca_file": str(tmp_path / "no.pem")}))
    assert ": rules[0].ca_file: no such file" in message


@pytest.mark.parametrize(
    ("changes", "place", "words"),
    [
        ({"url": "ftp://127.0.0.1/health"}, "rules[0].url", "http:// or https://"),
        ({"url": "127.0.0.1:9101/health"}, "rules[0].url", "http:// or https://"),
        ({"url": "http:///health"}, "rules[0].url", "no host"),
        ({"url": "http://127.0.0.1:99999/health"}, "rules[0].url", "not a valid URL"),
        ({"url": "http://127.0.0.1:0/health"}, "rules[0].url", "1 to 65535"),
        ({"url": "http://127.0.0.1/health?token=x"}, "rules[0].url", "no query or fragment"),
        ({"url": "http://127.0.0.1/health#x"}, "rules[0].url", "no query or fragment"),
        ({"url": "http://127.0.0.1/he alth"}, "rules[0].url", "no spaces"),
        ({"url": ""}, "rules[0].url", "at least 1 character"),
        ({"url": "http://h/" + "x" * 600}, "rules[0].url", "at most 512 characters"),
        ({"component": "Ingest 1"}, "rules[0].component", "pattern"),
        ({"timeout_s": 0}, "rules[0].timeout_s", "greater than 0"),
        ({"timeout_s": 61}, "rules[0].timeout_s", "less than or equal to 60"),
        ({"pending_s": -1}, "rules[0].pending_s", "greater than or equal to 0"),
        ({"severity": "panic"}, "rules[0].severity", "'info', 'warning'"),
        ({"pilot": "santa-fe"}, "rules[0].pilot", "Extra inputs"),
        ({"devices": ["sf-rlv-01"]}, "rules[0].devices", "Extra inputs"),
        ({"sensor": "level"}, "rules[0].sensor", "Extra inputs"),
        ({"label": "down"}, "rules[0].label", "Extra inputs"),
        ({"ca_file": "/etc/ssl/ca.pem"}, "rules[0]", "https url only"),
    ],
)
def test_a_bad_unhealthy_rule_is_refused_naming_its_place(
    registry: Registry, changes: dict[str, Any], place: str, words: str
) -> None:
    message = refusal(registry, own({**INGEST, **changes}))
    assert f": {place}: " in message
    assert words in message


def test_a_url_with_credentials_is_refused_without_repeating_them(registry: Registry) -> None:
    message = refusal(registry, own({**INGEST, "url": "http://ops:s3cret@127.0.0.1:9101/health"}))
    assert ": rules[0].url: " in message
    assert "must not hold credentials" in message
    assert "s3cret" not in message


def test_a_missing_url_is_refused(registry: Registry) -> None:
    message = refusal(registry, own({"id": "x", "kind": "unhealthy"}))
    assert ": rules[0].url: Field required" in message


def test_the_health_label_carries_the_reason_and_the_url() -> None:
    url = "http://127.0.0.1:9101/health"
    label = health_label("HTTP 503: store unreachable (75 s)", url)
    assert label == "unhealthy: HTTP 503: store unreachable (75 s) (http://127.0.0.1:9101/health)"
    assert parse_health_label(label) == ("HTTP 503: store unreachable (75 s)", url)
    assert parse_health_label("alert") == ("alert", None)
    assert parse_health_label("unhealthy: HTTP 503") == ("HTTP 503", None)


def test_the_evaluator_ignores_unhealthy_rules(registry: Registry) -> None:
    # Given to the evaluator with the others (as the service loads them), an unhealthy rule
    # feeds on no device: the same events, readings and silences alike, as without it.
    document = own(
        INGEST,
        {**RIVER, "clear_s": 0},
        {"id": "quiet", "kind": "silent", "pilot": "santa-fe", "devices": ["sf-rlv-01"]},
    )
    every = parse_rules(document, registry, source="rules.toml")
    others = tuple(r for r in every if r.kind != "unhealthy")
    assert len(others) == len(every) - 1
    t0 = 1_796_576_700 * NS_PER_S
    minutes = np.arange(6, dtype=np.int64) * 600 * NS_PER_S
    batch = Readings.from_arrays(
        t0 + minutes,
        [registry.devices["sf-rlv-01"].code] * 6,
        [registry.sensors["level"].code] * 6,
        [5.0, 5.2, 5.4, 5.5, 5.1, 5.0],
    )
    results = []
    for rules in (every, others):
        evaluator = Evaluator(rules, registry)
        events, state = evaluator.evaluate(batch, AlertState.empty(), t0 + minutes[-1])
        silence, _ = evaluator.evaluate_silence(state, t0 + 5 * 3600 * NS_PER_S)
        results.append(events + silence)
    assert results[0] == results[1]
    assert [(e.rule, e.type) for e in results[0]] == [
        ("river", "fired"),
        ("river", "cleared"),
        ("quiet", "fired"),
    ]

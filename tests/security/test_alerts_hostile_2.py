"""Second hostile review of the alert service (after 4325d35): unit-level, no broker.

Each test states what must hold; those that fail now show a problem found in review.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.late import bound_late
from alerts.message import compose
from alerts.outbox import Outbox
from core.alerts import AlertEvent, AlertState, Evaluator, parse_rules
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.timeutil import MINUTE_NS, NS_PER_S, datetime_to_ns

T0 = datetime_to_ns(datetime(2026, 11, 20, 12, tzinfo=UTC))


def at(minute: float) -> int:
    return T0 + round(minute * MINUTE_NS)


def series(
    registry: Registry, device: str, sensor: str, minute: Sequence[float], value: Sequence[float]
) -> Readings:
    n = len(minute)
    return Readings.from_arrays(
        [at(m) for m in minute],
        [registry.devices[device].code] * n,
        [registry.sensors[sensor].code] * n,
        value,
    )


def rules_from(registry: Registry, *rules: dict[str, Any]) -> Any:
    return parse_rules({"defaults": {"include": False}, "rules": list(rules)}, registry)


def _pairs_consistent(events: Sequence[AlertEvent], opened_before: set[str]) -> list[str]:
    """Problems: a cleared without a fired (now or before), an alarm fired and never closed."""
    fired = {e.alarm_id for e in events if e.type == "fired"} | opened_before
    cleared = {e.alarm_id for e in events if e.type == "cleared"}
    problems = [f"cleared without fired: {a}" for a in sorted(cleared - fired)]
    problems += [f"left open: {a}" for a in sorted(fired - cleared)]
    return problems


# --- alerts/late.py ----------------------------------------------------------------------------


def _flapping_backlog_and_late_live_clear(registry: Registry) -> tuple[Evaluator, Any, Any]:
    rules = rules_from(
        registry,
        {"id": "lvl", "kind": "threshold", "sensor": "level", "level": 5.3, "clear_s": 0},
    )
    evaluator = Evaluator(rules, registry)
    # Live: the river is over the level from minute 1000: alarm L0 open (live, not late).
    live = series(registry, "sf-rlv-01", "level", [1000, 1010], [5.4, 5.4])
    opened, state = evaluator.evaluate(live, AlertState.empty(), at(1010))
    assert [e.type for e in opened] == ["fired"] and not opened[0].late
    # One message of the gateway's queue, received much later: five flapping episodes from
    # before minute 1000 (backlog) and the readings after 1010 that bring the river down
    # (in order, so live, but old: their clear is late).
    back = [m for k in range(5) for m in (100 * k, 100 * k + 10)]
    back_v = [v for _ in range(5) for v in (5.4, 5.0)]
    after = [1020, 1030]
    batch = series(registry, "sf-rlv-01", "level", back + after, [*back_v, 5.0, 5.0])
    return evaluator, (opened, state), batch


def test_merging_late_episodes_never_swallows_the_clear_of_an_alarm_already_open(
    registry: Registry,
) -> None:
    """FAILS NOW: a live alarm's late `cleared` is merged into a backlog episode and dropped."""
    evaluator, (opened, state), batch = _flapping_backlog_and_late_live_clear(registry)
    events, _ = evaluator.evaluate(batch, state, at(5000))
    # the evaluator itself is consistent: the open alarm is cleared
    assert not _pairs_consistent(events, {opened[0].alarm_id})
    bounded, _ = bound_late(events)
    assert not _pairs_consistent(bounded, {opened[0].alarm_id}), [
        (e.type, e.alarm_id[:8], e.late) for e in bounded
    ]


def test_a_merged_alarm_ends_after_it_starts_and_covers_no_live_alarm(registry: Registry) -> None:
    """FAILS NOW: the merged backlog alarm is given the end of the live alarm's clear."""
    evaluator, (opened, state), batch = _flapping_backlog_and_late_live_clear(registry)
    events, _ = evaluator.evaluate(batch, state, at(5000))
    bounded, _ = bound_late(events)
    live_start = opened[0].start_ns
    for e in bounded:
        if e.type == "cleared" and e.alarm_id != opened[0].alarm_id:
            assert e.end_ns is not None and e.end_ns <= live_start, (e.alarm_id, e.end_ns)


def _note(registry: Registry, alarm: str, kind: str, severity: str = "warning") -> Any:
    n = compose(
        registry,
        alarm_id=alarm,
        kind=kind,  # type: ignore[arg-type]
        device="sf-rlv-01",
        sensor="level",
        rule_id="santa-fe.level.alert",
        severity=severity,
        level="alert",
        threshold=5.3,
        value=5.34,
        start_ns=T0,
        end_ns=None if kind == "fired" else T0 + 60 * NS_PER_S,
    )
    return n


def test_over_the_bound_the_late_clear_of_a_waiting_live_alarm_is_not_dropped_alone(
    registry: Registry, tmp_path: Path
) -> None:
    """FAILS NOW: `rank` drops a late `cleared` (rank 0) while its live `fired` (rank 2)
    stays: the receivers are told an evacuation alarm opened, never that it closed."""
    box = Outbox(tmp_path / "o.db", ["webhook"], max_pending=2)
    box.add([_note(registry, "a1", "fired", "critical")])
    late_clear = dataclasses.replace(
        _note(registry, "a1", "cleared", "critical"), kind="late", late=True
    )
    box.add([late_clear, _note(registry, "a2", "fired", "critical")])
    rows = {k: box.rows(k)["webhook"].state for k in ("a1:fired", "a1:cleared", "a2:fired")}
    box.close()
    assert not (rows["a1:fired"] == "pending" and rows["a1:cleared"] == "dropped"), rows


# --- a device moved to another pilot ----------------------------------------------------------


def _two_pilots(device_pilot: str) -> Registry:
    shipped = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    dev = {"id": "x-aq", "kind": "air_quality", "sensors": ["pm25"]}
    raw: dict[str, Any] = {
        "sensors": shipped["sensors"],
        "kinds": shipped["kinds"],
        "pilots": {
            p: {"name": p, "timezone": "UTC", "devices": [dev] if p == device_pilot else []}
            for p in ("a", "b")
        },
    }
    # a pilot may need a device: give the other pilot one of its own
    other = "b" if device_pilot == "a" else "a"
    raw["pilots"][other]["devices"] = [
        {"id": f"{other}-aq", "kind": "air_quality", "sensors": ["pm25"]}
    ]
    return build_registry(raw, Path("<moved>"))


def test_a_device_moved_to_another_pilot_clears_the_alarm_it_opened() -> None:
    """FAILS NOW: the alarm id hashes the pilot; after a reload that moves the device, the
    state's open alarm clears under a new id (a `cleared` without `fired`), and the old alarm
    stays active for ever (`_retire` keeps it: rule and device still configured)."""
    before, after = _two_pilots("a"), _two_pilots("b")
    spec = {"id": "pm", "kind": "threshold", "sensor": "pm25", "level": 50.0, "clear_s": 0}
    ev1 = Evaluator(rules_from(before, spec), before)
    fired, state = ev1.evaluate(
        series(before, "x-aq", "pm25", [0], [80.0]), AlertState.empty(), at(0)
    )
    assert [e.type for e in fired] == ["fired"]
    ev2 = Evaluator(rules_from(after, spec), after)
    cleared, _ = ev2.evaluate(series(after, "x-aq", "pm25", [10], [10.0]), state, at(10))
    assert [e.type for e in cleared] == ["cleared"]
    assert cleared[0].alarm_id == fired[0].alarm_id

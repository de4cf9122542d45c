"""The rules derived from the registry, used when no rules file is given.

Per pilot, in this order (ids in brackets):

- one `threshold` per named registry level (`<pilot>.<sensor>.<name>`): the lowest level of a
  sensor is `warning`, every higher one `critical` (Santa Fe's river: alert 5.30 m warning,
  evacuation 5.70 m critical); pending 0 s, clear 1 % of the level below it for 30 minutes;
- one `mean_over_guideline` per sensor with a WHO `guideline_24h` that some device of the
  pilot reports (`<pilot>.<sensor>.mean-24h`): the rolling 24-hour mean strictly above it.
  No calendar-day rule (`window = "day"`) is derived: beside the rolling one it would raise
  a second alarm, and a second notification, for nearly every episode of the same device and
  sensor, where the day's figure is what the report's exceedance days already count; an
  operator adds it in the rules file (`core/alerts.example.toml`, `<pilot>.<sensor>.mean-day`);
- one `rate_of_rise` per sensor of `RISE_PER_H` (`<pilot>.level.rise`): 5 cm/h over 3 hours;
- `silent` (`<pilot>.silent`): 3 intervals without any reading;
- `battery_low` (`<pilot>.battery_v.low`): 3.4 V or less;
- one `flat` per sensor not in `core.flags.STEADY_SENSORS` (rain legitimately repeats 0) nor
  the battery (`<pilot>.<sensor>.flat`), severity `info`: the readings of the last 2 hours
  all equal, the report's `stuck` flag in live form.
"""

from __future__ import annotations

from core.alerts.rules import (
    BATTERY_SENSOR,
    DEFAULT_BATTERY_V,
    DEFAULT_CLEAR_S,
    DEFAULT_FLAT_SPAN_S,
    DEFAULT_MEAN_WINDOW_S,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_RISE_WINDOW_S,
    DEFAULT_SILENT_INTERVALS,
    Rule,
    clear_level_of,
)
from core.flags import STEADY_SENSORS
from core.registry import Pilot, Registry

#: Sensors that get a rate-of-rise rule, with the limit in their unit per hour (5 cm/h).
RISE_PER_H = {"level": 0.05}


def default_rules(registry: Registry) -> tuple[Rule, ...]:
    """Every default rule of every pilot (see the module docstring)."""
    rules: list[Rule] = []
    for pilot in registry.pilot_list:
        rules.extend(_thresholds(registry, pilot))
        rules.extend(_means(registry, pilot))
        rules.extend(_rises(registry, pilot))
        rules.extend(_device_health(registry, pilot))
    return tuple(rules)


def _devices(pilot: Pilot, sensor: str | None) -> tuple[str, ...]:
    return tuple(d.id for d in pilot.devices if sensor is None or sensor in d.sensors)


def _thresholds(registry: Registry, pilot: Pilot) -> list[Rule]:
    out: list[Rule] = []
    for sensor in dict.fromkeys(t.sensor for t in pilot.thresholds):
        devices = _devices(pilot, sensor)
        levels = sorted((t for t in pilot.thresholds if t.sensor == sensor), key=lambda t: t.value)
        if not devices:
            continue
        for rank, threshold in enumerate(levels):
            out.append(
                Rule(
                    id=f"{pilot.id}.{sensor}.{threshold.name}",
                    kind="threshold",
                    pilot=pilot.id,
                    sensor=sensor,
                    devices=devices,
                    severity="warning" if rank == 0 else "critical",
                    label=threshold.name,
                    level=threshold.value,
                    clear_level=clear_level_of(threshold.value, False, None, None),
                    direction="above",
                    pending_s=0,
                    clear_s=DEFAULT_CLEAR_S,
                )
            )
    return out


def _means(registry: Registry, pilot: Pilot) -> list[Rule]:
    out: list[Rule] = []
    for sensor in pilot.sensors:
        guideline = registry.sensors[sensor].guideline_24h
        if guideline is None:
            continue
        out.append(
            Rule(
                id=f"{pilot.id}.{sensor}.mean-24h",
                kind="mean_over_guideline",
                pilot=pilot.id,
                sensor=sensor,
                devices=_devices(pilot, sensor),
                severity="warning",
                label="WHO 24-hour guideline",
                level=guideline,
                clear_level=clear_level_of(guideline, False, None, None),
                direction="above",
                pending_s=0,
                clear_s=DEFAULT_CLEAR_S,
                window_s=DEFAULT_MEAN_WINDOW_S,
                min_coverage=DEFAULT_MIN_COVERAGE,
            )
        )
    return out


def _rises(registry: Registry, pilot: Pilot) -> list[Rule]:
    return [
        Rule(
            id=f"{pilot.id}.{sensor}.rise",
            kind="rate_of_rise",
            pilot=pilot.id,
            sensor=sensor,
            devices=_devices(pilot, sensor),
            severity="warning",
            label="rise per hour",
            level=limit,
            clear_level=clear_level_of(limit, False, None, None),
            direction="above",
            pending_s=0,
            clear_s=DEFAULT_CLEAR_S,
            window_s=DEFAULT_RISE_WINDOW_S,
            min_span_s=DEFAULT_RISE_WINDOW_S // 2,
        )
        for sensor, limit in RISE_PER_H.items()
        if sensor in registry.sensors and sensor in pilot.sensors
    ]


def _device_health(registry: Registry, pilot: Pilot) -> list[Rule]:
    every = _devices(pilot, None)
    if not every:
        return []
    out = [
        Rule(
            id=f"{pilot.id}.silent",
            kind="silent",
            pilot=pilot.id,
            sensor=None,
            devices=every,
            severity="warning",
            label=f"{DEFAULT_SILENT_INTERVALS:g} intervals without a reading",
            level=DEFAULT_SILENT_INTERVALS,
            clear_level=DEFAULT_SILENT_INTERVALS,
            direction="above",
            pending_s=0,
            clear_s=0,
        )
    ]
    if BATTERY_SENSOR in pilot.sensors:
        out.append(
            Rule(
                id=f"{pilot.id}.{BATTERY_SENSOR}.low",
                kind="battery_low",
                pilot=pilot.id,
                sensor=BATTERY_SENSOR,
                devices=_devices(pilot, BATTERY_SENSOR),
                severity="warning",
                label="low battery",
                level=DEFAULT_BATTERY_V,
                clear_level=clear_level_of(DEFAULT_BATTERY_V, True, None, None),
                direction="below",
                pending_s=0,
                clear_s=DEFAULT_CLEAR_S,
            )
        )
    for sensor in pilot.sensors:
        if sensor in STEADY_SENSORS or sensor == BATTERY_SENSOR:
            continue
        out.append(
            Rule(
                id=f"{pilot.id}.{sensor}.flat",
                kind="flat",
                pilot=pilot.id,
                sensor=sensor,
                devices=_devices(pilot, sensor),
                severity="info",
                label="unchanged readings",
                level=0.0,
                clear_level=0.0,
                direction="below",
                pending_s=0,
                clear_s=DEFAULT_CLEAR_S,
                span_s=DEFAULT_FLAT_SPAN_S,
            )
        )
    return out

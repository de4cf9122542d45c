"""The storm scenario: the ground truth of what live alerts must raise, played by a pilot's fleet.

For each chosen pilot with river levels in the registry (`[pilots.<id>.thresholds.level]`:
Santa Fe's alert 5.30 m and evacuation 5.70 m, Resistencia's 6.00 and 6.50 m), over the 40
hours after its start (hours below are counted from it):

- the **flood gauge** (the pilot's first river gauge) rises from 0.45 m below the alert level,
  hovers around it from 5 h to 7 h (±3 cm, readings on both sides: hysteresis matters), rises
  over the evacuation level to a crest 0.25 m above it at 13 h, stays above it until about
  19 h and recedes below both levels near 22 h; at most about 20 cm an hour, smooth;
- a storm's rain (about 35 mm, peaking near 22 mm/h at 2.75 h) falls on the pilot's rain
  gauges, and the **silent device** (its first rain gauge) sends nothing at all from 2:00 to
  3:30, then reports again;
- the **held device** (the pilot's second river gauge, Laguna Setúbal in Santa Fe; the flood
  gauge itself where the pilot has one gauge, as in Resistencia) has a second, smaller wave
  that crosses the alert level at about 31 h and falls back below it near 34 h, inside a
  gateway outage from 30 h to 36 h: every report of the outage is held and delivered in one
  burst at 37 h, oldest first, a second apart. Its alarm is late: started and ended before
  anyone could know. The held device publishes in a device-timed format (plain JSON or SenML).

Every other level gauge of the pilot stays half a metre below the alert level. Outside the 40
hours, and for every other device and sensor, the fleet plays its normal signals. The scripted
devices (every river and rain gauge of the pilot) have no random faults whatever the fleet's
rates, so the ground truth is exact. The devices report at their registered intervals (the
simulators do not model a gauge reporting faster above the alert level). Levels carry a
gauge's 2 mm of noise, a hash of (device, seed, instant) like every signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.registry import Device, Pilot, Registry
from core.timeutil import HOUR_NS
from simulators.script import Hold, Hover, Scenario, ScenarioKind, Script, Shape
from simulators.signals import Context, normal, uniform
from simulators.truth import iso

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

NAME = "storm"
SENSOR = "level"
#: The pilot a storm plays on when none is chosen.
DEFAULT_PILOT = "santa-fe"
SPAN_H = 40.0
SPAN_NS = int(SPAN_H * HOUR_NS)

HOVER_H = (5.0, 7.0)
#: Below the alert level by this much, the hover's centre; its swing is `_HOVER_SWING_M`.
_HOVER_CENTRE_M = -0.002
_HOVER_SWING_M = 0.028
CREST_H = (13.0, 16.0)
SILENCE_H = (2.0, 3.5)
HOLD_H = (30.0, 36.0)
DELIVERY_H = 37.0
_RAIN_PEAK_H, _RAIN_WIDTH_H, _RAIN_PEAK_MM_H = 2.75, 0.7, 22.0
_TIP_MM = 0.2
_NOISE_M = 0.002
# noise streams of the scenario's own (the signals use 1 to 12, their normal draws up to 25)
_S_LEVEL, _S_RAIN = 40, 41

#: A knot of a hydrograph: (hours after the start, which level it is relative to, metres).
#: "low" is the pilot's lowest level (alert), "high" its highest (evacuation).
Knot = tuple[float, str, float]
_FLOOD: tuple[Knot, ...] = (
    (0.0, "low", -0.45),
    (HOVER_H[0], "low", _HOVER_CENTRE_M),
    (HOVER_H[1], "low", _HOVER_CENTRE_M),
    (CREST_H[0], "high", 0.25),
    (CREST_H[1], "high", 0.20),
    (26.0, "low", -0.40),
)
_CALM: tuple[Knot, ...] = ((SPAN_H, "low", -0.50),)
#: The held device's second wave, over the alert level and back inside the held window.
_SECOND_WAVE: tuple[Knot, ...] = ((33.0, "low", 0.10), (35.5, "low", -0.20), (SPAN_H, "low", -0.35))
_LAGGING: tuple[Knot, ...] = ((0.0, "low", -0.55), (26.0, "low", -0.40), *_SECOND_WAVE)
_QUIET: tuple[Knot, ...] = ((0.0, "low", -0.55), (26.0, "low", -0.45), (SPAN_H, "low", -0.50))


def _at(start_ns: int, hours: float) -> int:
    return start_ns + int(hours * HOUR_NS)


def _curve(knots: Sequence[Knot], low: float, high: float, hours: F64) -> F64:
    """The hydrograph through `knots`: half-cosine steps, level at each knot (smooth, C1)."""
    xs = np.asarray([k[0] for k in knots])
    ys = np.asarray([(low if k[1] == "low" else high) + k[2] for k in knots])
    i = np.clip(np.searchsorted(xs, hours, side="right") - 1, 0, len(xs) - 2)
    s = np.clip((hours - xs[i]) / (xs[i + 1] - xs[i]), 0.0, 1.0)
    out: F64 = ys[i] + (ys[i + 1] - ys[i]) * (1.0 - np.cos(np.pi * s)) / 2.0
    return out


def _hover(hours: F64) -> F64:
    """The swing around the alert level: two waves inside an envelope, flat at both ends."""
    s = np.clip((hours - HOVER_H[0]) / (HOVER_H[1] - HOVER_H[0]), 0.0, 1.0)
    out: F64 = _HOVER_SWING_M * np.sin(np.pi * s) * np.sin(4.0 * np.pi * s)
    return out


def _level_shape(
    start_ns: int, knots: tuple[Knot, ...], low: float, high: float, *, hover: bool
) -> Shape:
    """A gauge's level along `knots` (plus the hover, for the flood gauge) during the storm."""

    def shape(ctx: Context, ts_ns: I64, clean: dict[str, F64]) -> dict[str, F64]:
        if SENSOR not in clean or len(ts_ns) == 0:
            return clean
        hours = (ts_ns - start_ns).astype(np.float64) / HOUR_NS
        level = _curve(knots, low, high, hours) + _NOISE_M * normal(ctx.key, ts_ns, _S_LEVEL)
        if hover:
            level = level + _hover(hours)
        inside = (hours >= 0.0) & (hours < SPAN_H)
        return {**clean, SENSOR: np.where(inside, level, clean[SENSOR])}

    return shape


def _rain_shape(start_ns: int, then: Shape | None = None) -> Shape:
    """The storm's rain added to a rain gauge's, in whole 0.2 mm tips (after `then`)."""

    def shape(ctx: Context, ts_ns: I64, clean: dict[str, F64]) -> dict[str, F64]:
        if then is not None:
            clean = then(ctx, ts_ns, clean)
        if "rain" not in clean or len(ts_ns) == 0:
            return clean
        hours = (ts_ns - start_ns).astype(np.float64) / HOUR_NS
        mm_h = _RAIN_PEAK_MM_H * np.exp(-0.5 * ((hours - _RAIN_PEAK_H) / _RAIN_WIDTH_H) ** 2)
        mm_h *= 0.8 + 0.4 * uniform(ctx.key, ts_ns, _S_RAIN)
        extra = np.floor(mm_h * ctx.device.interval_s / 3600.0 / _TIP_MM) * _TIP_MM
        inside = (hours >= 0.0) & (hours < SPAN_H)
        return {**clean, "rain": clean["rain"] + np.where(inside, extra, 0.0)}

    return shape


def _levels(pilot: Pilot) -> dict[str, float]:
    levels = sorted((t for t in pilot.thresholds if t.sensor == SENSOR), key=lambda t: t.value)
    return {t.name: t.value for t in levels}


def storm_pilots(registry: Registry) -> list[str]:
    """The pilots a storm can play on: river levels in the registry and a gauge reporting them."""
    return [
        p.id
        for p in registry.pilot_list
        if _levels(p) and any(SENSOR in d.sensors for d in p.devices)
    ]


def _roles(pilot: Pilot) -> tuple[Device, Device, Device]:
    """(flood gauge, silent device, held device) of a pilot."""
    gauges = [d for d in pilot.devices if SENSOR in d.sensors]
    flood = gauges[0]
    held = gauges[1] if len(gauges) > 1 else flood
    others = [d for d in pilot.devices if d not in (flood, held)]
    rain = [d for d in others if "rain" in d.sensors]
    if not (rain or others):
        raise ValueError(f"the storm needs a device besides the river gauges in {pilot.id!r}")
    return flood, (rain or others)[0], held


def storm(registry: Registry, pilots: Sequence[str], start_ns: int) -> Scenario:
    """The storm scenario on each of `pilots`, starting at `start_ns` (see the module)."""
    possible = storm_pilots(registry)
    for wanted in pilots:
        if wanted not in possible:
            raise ValueError(
                f"the storm scenario needs river levels ({SENSOR} thresholds and a gauge): "
                f"pilot {wanted!r} has none; choose one of {', '.join(possible)}"
            )
    scripts: dict[str, Script] = {}
    about: dict[str, dict[str, Any]] = {}
    hovers: list[Hover] = []
    for pilot_id in pilots:
        pilot = registry.pilots[pilot_id]
        scripts.update(_pilot_scripts(pilot, start_ns))
        flood, silent, held = _roles(pilot)
        levels = _levels(pilot)
        low_name = next(iter(levels))
        hovers.append(
            Hover(
                flood.id,
                SENSOR,
                low_name,
                levels[low_name],
                _at(start_ns, HOVER_H[0]),
                _at(start_ns, HOVER_H[1]),
            )
        )
        about[pilot_id] = {
            "sensor": SENSOR,
            "levels": levels,
            "flood_gauge": flood.id,
            "silent_device": silent.id,
            "held_device": held.id,
            "rain_gauges": [d.id for d in pilot.devices if "rain" in d.sensors],
            "scripted_devices": sorted(d.id for d in pilot.devices if d.id in scripts),
            "hover": [iso(_at(start_ns, h)) for h in HOVER_H],
            "crest": [iso(_at(start_ns, h)) for h in CREST_H],
            "silence": [iso(_at(start_ns, h)) for h in SILENCE_H],
            "hold": [iso(_at(start_ns, h)) for h in HOLD_H],
            "delivery": iso(_at(start_ns, DELIVERY_H)),
        }
    return Scenario(
        name=NAME,
        start_ns=start_ns,
        end_ns=start_ns + SPAN_NS,
        pilots=tuple(pilots),
        scripts=scripts,
        about=about,
        hovers=tuple(hovers),
    )


def _pilot_scripts(pilot: Pilot, start_ns: int) -> dict[str, Script]:
    """The scripts of one pilot's river and rain gauges (and of its silent device)."""
    flood, silent, held = _roles(pilot)
    levels = list(_levels(pilot).values())
    low, high = levels[0], levels[-1]
    hold = Hold(_at(start_ns, HOLD_H[0]), _at(start_ns, HOLD_H[1]), _at(start_ns, DELIVERY_H))
    silence = (_at(start_ns, SILENCE_H[0]), _at(start_ns, SILENCE_H[1]))
    scripts: dict[str, Script] = {}
    for device in pilot.devices:
        shape: Shape | None = None
        if SENSOR in device.sensors:
            if device == flood:
                knots = _FLOOD + (_SECOND_WAVE if held == flood else _CALM)
            else:
                knots = _LAGGING if device == held else _QUIET
            shape = _level_shape(start_ns, knots, low, high, hover=device == flood)
        if "rain" in device.sensors:
            shape = _rain_shape(start_ns, shape)
        if shape is None and device != silent:
            continue
        scripts[device.id] = Script(
            shape=shape,
            silences=(silence,) if device == silent else (),
            holds=(hold,) if device == held else (),
        )
    return scripts


#: Every scenario `pilots simulate --scenario` plays, by name.
SCENARIOS = {
    NAME: ScenarioKind(
        name=NAME,
        span_ns=SPAN_NS,
        default_pilots=(DEFAULT_PILOT,),
        build=storm,
        summary="a river gauge over its alert and evacuation levels and back (hovering at the "
        "alert level on the way up), a rain gauge silent for 90 minutes, and a gauge's 6-hour "
        "gateway outage delivered in one late burst, over 40 h",
    )
}

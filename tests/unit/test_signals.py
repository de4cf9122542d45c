"""The simulated signals follow the pilots' days and seasons as docs/DOMAIN.md says."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from core.registry import Device
from core.timeutil import NS_PER_S, parse_instant_ns
from simulators.signals import SIGNALS, Context, battery, radio

from .helpers import shipped_registry

HOUR_NS = 3600 * NS_PER_S
START_NS = parse_instant_ns("2024-11-01T00:00:00-03:00")  # local midnight, late spring


def _context(device_id: str, seed: int = 0) -> Context:
    reg = shipped_registry()
    device = reg.devices[device_id]
    return Context(device, reg.pilots[device.pilot], seed)


@cache
def _days(days: int = 20) -> np.ndarray:
    """Every 10 minutes for `days` days, from local midnight."""
    return START_NS + np.arange(0, days * 144, dtype=np.int64) * 600 * NS_PER_S


def _by_local_hour(values: np.ndarray) -> np.ndarray:
    hours = ((_days() - START_NS) // HOUR_NS) % 24
    return np.asarray([values[hours == h].mean() for h in range(24)])


def _of_kind(kind: str) -> Device:
    return next(d for d in shipped_registry().device_list if d.kind == kind)


def test_air_temperature_is_lowest_near_dawn_and_highest_mid_afternoon() -> None:
    device = _of_kind("weather")
    values = SIGNALS["weather"](_context(device.id), _days())
    temperature = _by_local_hour(values["temperature"])
    humidity = _by_local_hour(values["humidity"])
    assert int(np.argmin(temperature)) in {5, 6, 7}
    assert int(np.argmax(temperature)) in {14, 15, 16}
    assert 13 <= temperature.min() <= 21 and 27 <= temperature.max() <= 35  # DOMAIN.md
    # relative humidity moves opposite
    assert int(np.argmax(humidity)) in {5, 6, 7}
    assert np.corrcoef(values["temperature"], values["humidity"])[0, 1] < -0.8


def test_dissolved_oxygen_and_ph_are_lowest_at_dawn() -> None:
    device = _of_kind("water_quality")
    values = SIGNALS["water_quality"](_context(device.id), _days())
    for sensor in ("dissolved_oxygen", "ph"):
        by_hour = _by_local_hour(values[sensor])
        assert int(np.argmin(by_hour)) in {5, 6, 7}, sensor
        assert int(np.argmax(by_hour)) in {14, 15, 16}, sensor


def test_air_pollution_peaks_at_rush_hours_and_pm_over_reads_in_humid_air() -> None:
    device = _of_kind("air_quality")
    pm25 = _by_local_hour(SIGNALS["air_quality"](_context(device.id), _days())["pm25"])
    assert min(pm25[9], pm25[20]) > 1.8 * max(pm25[14], pm25[2])
    # same traffic (none) at 02:00, humid, and 14:00, dry: the humid hour reads higher
    assert pm25[2] > 1.05 * pm25[14]


def test_the_battery_charges_by_day_only_and_fades() -> None:
    device = _of_kind("weather")
    ctx = _context(device.id)
    by_hour = _by_local_hour(battery(ctx, _days()))
    night = [*range(20, 24), *range(6)]
    assert all(b <= a + 0.005 for a, b in zip(by_hour[night], by_hour[night[1:]], strict=False))
    assert int(np.argmax(by_hour)) in {12, 13, 14}
    assert by_hour.min() >= 3.3 and by_hour.max() <= 4.2


@pytest.mark.parametrize("device_id", ["sf-rlv-01", "rs-rlv-01"])
def test_the_river_stays_in_its_range_and_sometimes_passes_the_alert_level(device_id: str) -> None:
    reg = shipped_registry()
    ctx = _context(device_id)
    year = START_NS + np.arange(0, 365 * 24, dtype=np.int64) * HOUR_NS
    level = SIGNALS["river_level"](ctx, year)["level"]
    alert = next(t.value for t in reg.pilots[ctx.pilot.id].thresholds if t.name == "alert")
    above = float(np.mean(level >= alert))
    assert 0.0 < above < 0.2, above
    assert level.min() >= 0.3 and level.max() <= 7.0


def test_rain_raises_the_river_over_the_following_hours() -> None:
    ctx = _context("sf-rlv-01")
    gauge = _of_kind("rain_gauge")
    rain_ctx = _context(gauge.id)
    times = START_NS + np.arange(0, 120 * 24, dtype=np.int64) * HOUR_NS
    rain = SIGNALS["rain_gauge"](rain_ctx, times)["rain"]
    level = SIGNALS["river_level"](ctx, times)["level"]
    wet = np.flatnonzero(rain > 0)
    assert len(wet) > 0
    # twelve hours after rain the river is higher than just before it, more often than not
    before, after = level[wet - 1], level[np.minimum(wet + 12, len(level) - 1)]
    assert np.mean(after > before) > 0.8


def test_radio_quality_stays_within_lora_ranges() -> None:
    for device in shipped_registry().device_list:
        rssi, snr, sf = radio(_context(device.id), _days(2))
        assert rssi.min() >= -130 and rssi.max() <= -55, device.id
        assert snr.min() >= -20 and snr.max() <= 12, device.id
        assert set(sf.tolist()) <= set(range(7, 13)) and len(set(sf.tolist())) == 1, device.id

"""Plausible signals for each device kind, as pure vectorised functions of time.

Each function takes the instants (int64 ns) at which a device reports and returns one float64
array per sensor. Values follow the pilot's local clock (weather peaks mid-afternoon, dissolved
oxygen is lowest at dawn, air pollution peaks at rush hours) and carry noise that is a hash of
(device, seed, instant): the same device at the same instant always reads the same, whatever
batches a run is cut into. Ranges: docs/DOMAIN.md, "Typical values and daily patterns" (late
spring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from zlib import crc32

import numpy as np
from numpy.typing import NDArray

from core.registry import Device, Pilot
from core.timeutil import DAY_NS, HOUR_NS, utc_offset_ns

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

_STORM_WIDTH_H = 1.2
_SUNRISE_H, _SUNSET_H = 6.5, 19.5
_RAIN_MEMORY_DAYS = 8
#: Metres of river rise per millimetre of rain over the catchment, at the response's peak.
_LEVEL_M_PER_MM = 0.006
#: NTU of extra turbidity per millimetre of recent rain.
_TURBIDITY_PER_MM = 0.8


#: The noise key of one device, or one per instant (a batch of devices of one kind and pilot).
Key = int | I64


@dataclass(frozen=True, slots=True)
class Context:
    """What a signal needs besides time: the device, its pilot and the run's seed.

    For a batch of devices of one kind, pilot and interval, `keys` holds each instant's device
    key and `device` stands for them all.
    """

    device: Device
    pilot: Pilot
    seed: int
    keys: I64 | None = None

    @property
    def key(self) -> Key:
        """A stable 32-bit key of (device, seed) for the noise hash (per instant in a batch)."""
        if self.keys is not None:
            return self.keys
        return crc32(f"{self.device.id}/{self.seed}".encode())


def _mix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: a well-mixed 64-bit hash of each element."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(key: Key, ts_ns: I64, stream: int) -> F64:
    """Deterministic uniform noise in [0, 1) for (key, stream) at each instant."""
    base = np.uint64((key << 16) ^ (stream * 0x9E3779B9) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        h = _mix64(ts_ns.astype(np.uint64) + base)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def normal(key: Key, ts_ns: I64, stream: int) -> F64:
    """Deterministic standard normal noise (Box-Muller over two uniform streams)."""
    u1 = np.maximum(uniform(key, ts_ns, 2 * stream + 1), 1e-300)
    u2 = uniform(key, ts_ns, 2 * stream + 2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def local_hour(pilot: Pilot, ts_ns: I64) -> F64:
    """Hour of the local day (0 to 24, fractional) at each instant."""
    if len(ts_ns) == 0:
        return np.empty(0)
    offset = utc_offset_ns(pilot.tz, int(ts_ns[0]))
    return ((ts_ns + offset) % DAY_NS).astype(np.float64) / HOUR_NS


def _daily(hour: F64, peak_hour: float) -> F64:
    """A cosine day: +1 at `peak_hour`, -1 twelve hours away."""
    return np.cos(2.0 * np.pi * (hour - peak_hour) / 24.0)


def _diurnal(hour: F64, low_hour: float, high_hour: float) -> F64:
    """A day that is not a plain cosine: -1 at `low_hour`, +1 at `high_hour`.

    It rises and falls along half-cosines of their own lengths (a dawn minimum and a
    mid-afternoon maximum, nine hours apart, as air temperature does).
    """
    rise = (high_hour - low_hour) % 24.0
    since = (hour - low_hour) % 24.0
    return np.where(
        since < rise,
        -np.cos(np.pi * since / rise),
        np.cos(np.pi * (since - rise) / (24.0 - rise)),
    )


def _bump(hour: F64, centre: F64 | float, width_h: float) -> F64:
    return np.exp(-0.5 * ((hour - centre) / width_h) ** 2)


def _storm_days(ctx: Context, day: I64) -> tuple[F64, F64, F64]:
    """Each local day's storm, shared by a pilot's devices: (peak mm/h or 0, centre hour, mm)."""
    pilot_key = crc32(f"{ctx.pilot.id}/{ctx.seed}".encode())
    stormy = uniform(pilot_key, day, 1) < 0.15
    centre = 15.0 + 6.0 * uniform(pilot_key, day, 2)
    peak_mm_h = np.where(stormy, 5.0 + 25.0 * uniform(pilot_key, day, 3), 0.0)
    # the day's rain: a Gaussian hour-bump integrates to peak * width * sqrt(2 pi)
    return peak_mm_h, centre, peak_mm_h * _STORM_WIDTH_H * np.sqrt(2.0 * np.pi)


def _local_day(ctx: Context, ts_ns: I64) -> I64:
    return ((ts_ns + utc_offset_ns(ctx.pilot.tz, int(ts_ns[0]))) // DAY_NS).astype(np.int64)


def _storm(ctx: Context, ts_ns: I64) -> F64:
    """Rain intensity in mm/h: some afternoons and evenings carry a storm, shared by a pilot."""
    hour = local_hour(ctx.pilot, ts_ns)
    peak_mm_h, centre, _ = _storm_days(ctx, _local_day(ctx, ts_ns))
    return peak_mm_h * _bump(hour, centre, _STORM_WIDTH_H)


def _after_rain(ctx: Context, ts_ns: I64, rise_h: float, fall_h: float) -> F64:
    """Recent rain (mm) weighted by how a water body answers it.

    The response rises over `rise_h` and falls over `fall_h` (hours after the storm). A pure
    function of time: the last days' storms are recomputed from their hashes, not carried along.
    """
    day = _local_day(ctx, ts_ns)
    hour = local_hour(ctx.pilot, ts_ns)
    out = np.zeros(len(ts_ns))
    for back in range(_RAIN_MEMORY_DAYS):
        _, centre, mm = _storm_days(ctx, day - back)
        since_h = back * 24.0 + hour - centre
        response = np.where(
            since_h > 0, (1.0 - np.exp(-since_h / rise_h)) * np.exp(-since_h / fall_h), 0.0
        )
        out += mm * response
    return out


def river_level(ctx: Context, ts_ns: I64) -> dict[str, F64]:
    """Slow river, centimetres per day; water temperature with a small daily swing.

    The river rises and falls over months (shared by a pilot's gauges) and weeks (per gauge);
    after heavy rain it rises tens of centimetres a day and falls back over days. At the top of
    a high season, a storm takes it past the flood alert level now and then.
    """
    base = {"santa-fe": 3.9, "resistencia": 4.75}.get(ctx.pilot.id, 3.0)
    days = ts_ns.astype(np.float64) / DAY_NS
    phase = (ctx.key % 1000) / 1000.0 * 2.0 * np.pi
    season = (crc32(f"{ctx.pilot.id}/{ctx.seed}/season".encode()) % 1000) / 1000.0 * 2.0 * np.pi
    level = (
        base
        + 1.2 * np.sin(2.0 * np.pi * days / 120.0 + season)
        + 0.25 * np.sin(2.0 * np.pi * days / 40.0 + phase)
        + _LEVEL_M_PER_MM * _after_rain(ctx, ts_ns, rise_h=12.0, fall_h=72.0)
        + 0.004 * normal(ctx.key, ts_ns, 1)
    )
    hour = local_hour(ctx.pilot, ts_ns)
    water = 25.0 + 1.2 * _diurnal(hour, 8.0, 17.0) + 0.1 * normal(ctx.key, ts_ns, 2)
    return {"level": level, "water_temp": water}


def rain_gauge(ctx: Context, ts_ns: I64) -> dict[str, F64]:
    """Rain per reporting interval (tips of 0.2 mm); cumulative tips are added by the fleet."""
    intensity = _storm(ctx, ts_ns) * (0.8 + 0.4 * uniform(ctx.key, ts_ns, 1))
    rain = np.floor(intensity * ctx.device.interval_s / 3600.0 / 0.2) * 0.2
    return {"rain": rain}


def _air_temperature(hour: F64) -> F64:
    """The pilot's air temperature without a sensor's noise: lowest near 06:00, highest 15:00."""
    return 24.0 + 6.5 * _diurnal(hour, 6.0, 15.0)


def _humidity(temperature: F64) -> F64:
    """Relative humidity moving opposite to temperature."""
    return 62.0 - 3.2 * (temperature - 24.0)


def weather(ctx: Context, ts_ns: I64) -> dict[str, F64]:
    """Temperature peaking near 15:00 local, humidity moving opposite, wind in the afternoon."""
    hour = local_hour(ctx.pilot, ts_ns)
    temperature = _air_temperature(hour) + 0.3 * normal(ctx.key, ts_ns, 1)
    humidity = np.clip(_humidity(temperature) + 2.0 * normal(ctx.key, ts_ns, 2), 15, 100)
    pressure = (
        1012.0 + 1.5 * np.cos(2.0 * np.pi * (hour - 10.0) / 12.0) + 0.2 * normal(ctx.key, ts_ns, 3)
    )
    wind = np.abs(3.0 + 2.0 * _daily(hour, 16.0) + 1.0 * normal(ctx.key, ts_ns, 4))
    direction = (
        110.0 + 40.0 * np.sin(2.0 * np.pi * hour / 24.0) + 15.0 * normal(ctx.key, ts_ns, 5)
    ) % 360.0
    return {
        "temperature": temperature,
        "humidity": humidity,
        "pressure": pressure,
        "wind_speed": wind,
        "wind_dir": direction,
    }


def water_quality(ctx: Context, ts_ns: I64) -> dict[str, F64]:
    """Lagoon chemistry: dissolved oxygen and pH lowest at dawn, highest mid-afternoon.

    Turbidity goes up for a day or two after rain.
    """
    hour = local_hour(ctx.pilot, ts_ns)
    day_cycle = _diurnal(hour, 6.0, 15.0)
    return {
        "water_temp": 27.0 + 1.5 * _diurnal(hour, 7.0, 16.0) + 0.1 * normal(ctx.key, ts_ns, 1),
        "ph": 7.6 + 0.45 * day_cycle + 0.03 * normal(ctx.key, ts_ns, 2),
        "dissolved_oxygen": np.clip(7.0 + 3.0 * day_cycle + 0.2 * normal(ctx.key, ts_ns, 3), 2, 14),
        "conductivity": 420.0 + 15.0 * normal(ctx.key, ts_ns, 4),
        "turbidity": np.clip(
            25.0
            + _TURBIDITY_PER_MM * _after_rain(ctx, ts_ns, rise_h=3.0, fall_h=20.0)
            + 3.0 * normal(ctx.key, ts_ns, 5),
            5,
            150,
        ),
    }


def air_quality(ctx: Context, ts_ns: I64) -> dict[str, F64]:
    """Traffic peaks 08-10 h and 19-21 h local on a background, with multiplicative noise.

    Low-cost optical PM sensors over-read in humid air: above 75 % relative humidity (the
    small hours here) particles swell and PM2.5 and PM10 read up to ~20 % high (2.5 % per
    point of humidity over 75 %; humidity peaks near 83 %, around dawn).
    """
    hour = local_hour(ctx.pilot, ts_ns)
    traffic = _bump(hour, 9.0, 1.0) + _bump(hour, 20.0, 1.0)
    noise = np.exp(0.15 * normal(ctx.key, ts_ns, 1))
    humid = 1.0 + 0.025 * np.clip(_humidity(_air_temperature(hour)) - 75.0, 0.0, None)
    pm25 = (8.0 + 22.0 * traffic) * noise * humid
    return {
        "pm25": pm25,
        "pm10": pm25 * 1.8 + 4.0 * humid,
        "no2": (12.0 + 35.0 * traffic) * np.exp(0.1 * normal(ctx.key, ts_ns, 2)),
        "co": (0.4 + 1.4 * traffic) * np.exp(0.1 * normal(ctx.key, ts_ns, 3)),
    }


def battery(ctx: Context, ts_ns: I64) -> F64:
    """Li-ion volts: charged by the sun from 06:30 to 19:30, drained overnight, fading slowly.

    The fade is 0 to 4 mV a day, per device, over a 180-day service life after which the cell
    is renewed.
    """
    hour = local_hour(ctx.pilot, ts_ns)
    life = 180 * DAY_NS
    age_days = ((ts_ns + (ctx.key % 180) * DAY_NS) % life).astype(np.float64) / DAY_NS
    fade = 0.004 * ((ctx.key >> 8) % 1000) / 1000.0 * age_days
    # the panel charges from 06:30 to 19:30 (peak at midday); the night slowly drains
    day = (hour >= _SUNRISE_H) & (hour < _SUNSET_H)
    x = (hour - _SUNRISE_H) / (_SUNSET_H - _SUNRISE_H)
    y = ((hour - _SUNSET_H) % 24.0) / (24.0 - (_SUNSET_H - _SUNRISE_H))
    cycle = np.where(day, 3.74 + 0.06 * x + 0.3 * np.sin(np.pi * x), 3.80 - 0.06 * y)
    charge = cycle - fade + 0.01 * normal(ctx.key, ts_ns, 9)
    return np.clip(charge, 3.3, 4.2)


def radio(ctx: Context, ts_ns: I64) -> tuple[F64, F64, NDArray[np.int64]]:
    """RSSI (dBm), SNR (dB) and spreading factor of each uplink.

    A per-device link budget (-118 to -70 dBm, from its distance to the gateway) with a few
    dB of fading; the spreading factor follows the budget as adaptive data rate would.
    """
    base = -118.0 + 48.0 * ((ctx.key >> 4) % 1000) / 1000.0
    rssi = np.round(base + 3.0 * normal(ctx.key, ts_ns, 11))
    snr: F64 = np.round(
        np.clip((rssi + 112.0) / 3.0 + 1.5 * normal(ctx.key, ts_ns, 12), -20.0, 12.0), 1
    ).astype(np.float64)
    # adaptive data rate: a weaker link gets a slower, more robust spreading factor
    sf = np.clip(7 + (-85.0 - base) // 7.0, 7, 12).astype(np.int64)
    return rssi, snr, np.broadcast_to(sf, len(ts_ns)).copy()


#: Device kind → signal model. A new kind in the registry needs a line here.
SIGNALS: dict[str, Callable[[Context, I64], dict[str, F64]]] = {
    "river_level": river_level,
    "rain_gauge": rain_gauge,
    "weather": weather,
    "water_quality": water_quality,
    "air_quality": air_quality,
}

"""What each report says: sensor values as a device sends them, its counter, battery and radio.

The signal models (`simulators.signals`, as a scenario's script changes them:
`DeviceRun.signals`) give clean values. Here they are held within the registry's range and
rounded as a real device of the sensor's kind sends them, and the value faults
(`simulators.faults`) are applied: stuck, drifting, spiking and out-of-range values, a rain
gauge's tip count and the frame counter starting again from 0 after a reboot.

Like the schedule (`simulators.schedule`) the values are computed for, everything is a pure
function of (seed, device, report index). This module decides nothing about delivery (which
reports go out, when, how often) and encodes nothing (`simulators.formats`). The signal models
stay apart from it: they are the physical truth, and know no device faults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from zlib import crc32

import numpy as np
from numpy.typing import NDArray

from core.registry import Sensor
from core.timeutil import DAY_NS, utc_offset_ns
from simulators import faults as fl
from simulators.faults import Faults
from simulators.formats import Uplink
from simulators.schedule import DeviceRun
from simulators.signals import Context, battery, radio, uniform

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]
#: Per sensor, the reports carrying a spike and those carrying an out-of-range value.
Events = dict[str, tuple[Bools, Bools]]

#: Decimal places a real device of this kind would send.
DECIMALS = {"level": 3, "rain": 1, "rain_tips": 0, "ph": 2, "conductivity": 0, "wind_dir": 0}
_DEFAULT_DECIMALS = 2
_TIP_MM = 0.2

#: A typical swing of each sensor: drift moves half of it a day, a spike jumps six of it.
SCALE = {
    "level": 0.5,
    "water_temp": 2.0,
    "rain": 2.0,
    "temperature": 5.0,
    "humidity": 15.0,
    "pressure": 4.0,
    "wind_speed": 2.0,
    "wind_dir": 40.0,
    "ph": 0.4,
    "dissolved_oxygen": 2.0,
    "conductivity": 40.0,
    "turbidity": 8.0,
    "pm25": 10.0,
    "pm10": 15.0,
    "no2": 12.0,
    "co": 0.5,
}
#: Counters are not measurements: they get no stuck values, drift or spikes.
COUNTERS = frozenset({"rain_tips"})
#: Sent as they are, without any value fault: the battery has its own decay model, and a rain
#: gauge reads 0 most of the time (stuck or spiking below 0 would not show; above, it would
#: invent rain, which a tipping bucket does not do).
UNFAULTED = frozenset({"battery_v", "rain"})


def rounded(sensor: str, value: F64) -> F64:
    """Values with the decimal places a real device of the sensor's kind sends."""
    out: F64 = np.round(value, DECIMALS.get(sensor, _DEFAULT_DECIMALS))
    return out


@dataclass(frozen=True, slots=True)
class Reports:
    """What reports say besides their time, as Python lists: one entry per report."""

    seq: list[int]
    names: list[str]
    columns: list[list[float]]
    volts: list[float]
    rssi: list[float]
    snr: list[float]
    sf: list[int]

    @classmethod
    def of(cls, ctx: Context, t: I64, seq: I64, names: list[str], columns: list[F64]) -> Reports:
        """Battery and radio of each report at `t`, with its counter and rounded values."""
        rssi, snr, sf = radio(ctx, t)
        return cls(
            seq.tolist(),
            names,
            [c.tolist() for c in columns],
            np.round(battery(ctx, t), 3).tolist(),
            rssi.tolist(),
            snr.tolist(),
            sf.tolist(),
        )

    def uplink(self, j: int, ts_ns: int) -> Uplink:
        """Report `j`, stating the time `ts_ns`."""
        return Uplink(
            ts_ns=ts_ns,
            seq=self.seq[j],
            values={n: c[j] for n, c in zip(self.names, self.columns, strict=True)},
            battery_v=self.volts[j],
            rssi=self.rssi[j],
            snr=self.snr[j],
            sf=self.sf[j],
        )


def sensor_key(run: DeviceRun, sensor: str) -> int:
    """The hash key of one sensor of the run's device, for its value faults."""
    return crc32(f"{run.device.id}/{run.ctx.seed}/{sensor}".encode())


def events(run: DeviceRun, faults: Faults, ks: I64) -> Events:
    """Per sensor, which of the reports `ks` carry a spike and an out-of-range value."""
    out: Events = {}
    for sensor in run.device.sensors:
        skey = sensor_key(run, sensor)
        never = np.zeros(len(ks), dtype=bool)
        spikes = (
            never
            if sensor in COUNTERS or sensor in UNFAULTED
            else fl.chance(skey, fl.S_SPIKE, ks, faults.spike)
        )
        wrong = (
            never if sensor in UNFAULTED else fl.chance(skey, fl.S_RANGE, ks, faults.out_of_range)
        )
        out[sensor] = (spikes, wrong)
    return out


def frame_counters(run: DeviceRun, faults: Faults, ks: I64) -> I64:
    """Frame counters: the report index, or reports since the latest reboot."""
    reset = fl.last_reset(run.key, faults.counter_reset, ks)
    return np.where(reset >= 0, ks - reset, ks % (1 << 32))


def fault_free(
    sensors: Mapping[str, Sensor], names: tuple[str, ...], clean: dict[str, F64]
) -> tuple[list[str], list[F64]]:
    """The sensors `names` that have a signal, with their values in range and rounded."""
    kept = [s for s in names if s in clean]
    columns = []
    for sensor in kept:
        spec = sensors[sensor]
        columns.append(rounded(sensor, np.clip(clean[sensor], spec.min, spec.max)))
    return kept, columns


def values(
    run: DeviceRun,
    faults: Faults,
    sensors: Mapping[str, Sensor],
    *,
    ks: I64,
    faulty: Events,
    needed: I64,
) -> dict[str, F64]:
    """Rounded sensor values of the `needed` reports of a plan over `ks`, value faults applied."""
    f = faults
    device = run.device
    span = (int(ks[0]), int(ks[-1]) + 1)
    # stuck and drift episodes per sensor; a stuck sensor holds its value at the start
    episodes = {}
    for sensor in device.sensors:
        if sensor not in COUNTERS and sensor not in UNFAULTED:
            skey = sensor_key(run, sensor)
            episodes[sensor] = (
                fl.episodes(skey, fl.S_STUCK, span, f.stuck, "stuck"),
                fl.episodes(skey, fl.S_DRIFT, span, f.drift, "drift"),
            )
    starts = [stuck[0] for stuck, _ in episodes.values()]
    every = np.unique(np.concatenate([needed, *starts])) if starts else needed
    clean = run.signals(run.at(every))
    if "rain_tips" in device.sensors and "rain" in clean:
        clean["rain_tips"] = _tips(run, f, every)
    at_needed = np.searchsorted(every, needed)
    in_plan = needed - span[0]
    out: dict[str, F64] = {}
    for sensor in device.sensors:
        if sensor not in clean:
            continue
        spec = sensors[sensor]
        value = clean[sensor][at_needed].copy()
        spikes, out_of_range = faulty[sensor]
        if sensor in episodes:
            skey = sensor_key(run, sensor)
            stuck, drift = episodes[sensor]
            value = _drift(run, skey, sensor=sensor, drift=drift, ks=ks, needed=needed, value=value)
            if len(stuck[0]):
                on = fl.covered(*stuck, ks)[in_plan]
                began = fl.latest_start(stuck[0], needed)
                held = clean[sensor][np.searchsorted(every, np.maximum(began, every[0]))]
                value = np.where(on, held, value)
            spiked = spikes[in_plan]
            if spiked.any():
                up = uniform(skey, needed, fl.S_SPIKE_SIGN) < 0.5
                jump = np.where(up, 6.0, -6.0) * SCALE.get(sensor, 1.0)
                value = np.where(spiked, value + jump, value)
            # drift and spikes stay within the range ingest accepts: held at its edge
            value = np.clip(value, spec.min, spec.max)
        value = rounded(sensor, value)
        bad = out_of_range[in_plan]
        out[sensor] = np.where(bad, spec.max + 0.5 * (spec.max - spec.min), value)
    return out


def _drift(
    run: DeviceRun,
    skey: int,
    *,
    sensor: str,
    drift: tuple[I64, I64],
    ks: I64,
    needed: I64,
    value: F64,
) -> F64:
    """Values moved by half a typical swing a day since their drift episode began."""
    if len(drift[0]) == 0:
        return value
    on = fl.covered(*drift, ks)[needed - ks[0]]
    began = fl.latest_start(drift[0], needed)
    sign = np.where(uniform(skey, began, fl.S_DRIFT_SIGN) < 0.5, -1.0, 1.0)
    days = (needed - began) * run.step_ns / DAY_NS
    return value + np.where(on, sign * 0.5 * SCALE.get(sensor, 1.0) * days, 0.0)


def _tips(run: DeviceRun, faults: Faults, ks: I64) -> F64:
    """A tipping-bucket counter: tips since local midnight or the latest reboot."""
    t = run.at(ks)
    offset = utc_offset_ns(run.ctx.pilot.tz, int(t[0]))
    midnight = (t + offset) // DAY_NS * DAY_NS - offset
    day_first = -((run.phase_ns - midnight) // run.step_ns)
    reset = fl.last_reset(run.key, faults.counter_reset, ks)
    base = np.maximum(day_first, reset)
    lo, hi = int(base.min()), int(ks.max()) + 1
    span = np.arange(lo, hi, dtype=np.int64)
    rain = run.signals(run.at(span))["rain"]
    tips = np.concatenate(([0.0], np.cumsum(np.rint(rain / _TIP_MM))))
    out: F64 = tips[ks - lo + 1] - tips[base - lo]
    return out

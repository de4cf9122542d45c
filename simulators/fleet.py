"""The registry's devices as a fleet that produces timed messages, faults included.

Each device reports every `interval_s` at a fixed phase of its own (devices do not all speak on
the same second): its `k`-th report is due at `phase + k * interval`. A report carries a frame
counter, battery voltage and its kind's sensors, in the device's payload format (see
`simulators.formats`). Faults (`simulators.faults`) decide per report whether it is lost,
held back by a gateway, sent twice, cut in half, and what happens to its values.

`messages(lo, hi)` returns what the fleet publishes in `[lo, hi)`, in publication order: the
reports due then, the second copies of duplicated reports, and the backlogs gateways deliver
then. Everything is a pure function of (seed, device, time): any batching of a run, and any
restart, publishes the same bytes at the same instants.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from zlib import crc32

import numpy as np
from numpy.typing import NDArray

from core.registry import Device, Registry
from core.timeutil import NS_PER_S, utc_offset_ns
from simulators import faults as fl
from simulators.faults import Faults
from simulators.formats import LORAWAN, Uplink, choose, encode, topic
from simulators.signals import SIGNALS, Context, battery, radio, uniform
from simulators.truth import GroundTruth

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

#: Decimal places a real device of this kind would send.
DECIMALS = {"level": 3, "rain": 1, "rain_tips": 0, "ph": 2, "conductivity": 0, "wind_dir": 0}
_DEFAULT_DECIMALS = 2
_TIP_MM = 0.2
_DAY_NS = 86_400 * NS_PER_S

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
#: Formats whose messages carry a frame counter (SenML packs have none).
COUNTED_FORMATS = frozenset({"plain", "chirpstack", "tts"})

DUPLICATE_DELAY_S = (2, 30)
BACKLOG_DELAY_S = (3600, 6 * 3600)
#: Messages of one backlog follow each other this far apart when the gateway delivers them.
BACKLOG_SPACING_NS = NS_PER_S


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication: when it is published, where, and the bytes."""

    ts_ns: int
    topic: str
    payload: bytes


def topic_of(device: Device) -> str:
    """The plain JSON device contract topic, `pilots/<pilot>/<device>/up`."""
    return f"pilots/{device.pilot}/{device.id}/up"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class _Reports:
    """What reports say besides their time, as Python lists: one entry per report."""

    seq: list[int]
    names: list[str]
    columns: list[list[float]]
    volts: list[float]
    rssi: list[float]
    snr: list[float]
    sf: list[int]

    @classmethod
    def of(cls, ctx: Context, t: I64, seq: I64, names: list[str], columns: list[F64]) -> _Reports:
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


@dataclass(frozen=True, slots=True)
class _Plan:
    """One device's batch, planned before any value is computed.

    Its report indices `ks` (with look-back for late publications), which are due in the
    batch, lost, held by a gateway (and when released); the messages as (report index,
    publication instant, copy kind, cut in half); and per sensor the reports carrying a spike
    and an out-of-range value.
    """

    ks: I64
    due: NDArray[np.bool_]
    dropped: NDArray[np.bool_]
    held: NDArray[np.bool_]
    released_ns: I64
    k_msg: I64
    pub_ns: I64
    copy: NDArray[np.int8]
    malformed: NDArray[np.bool_]
    events: dict[str, tuple[NDArray[np.bool_], NDArray[np.bool_]]]


@dataclass(frozen=True, slots=True)
class _DeviceRun:
    device: Device
    ctx: Context
    key: int
    fmt: str
    topic: str
    skew_ns: int
    step_ns: int
    phase_ns: int

    def at(self, ks: I64) -> I64:
        return self.phase_ns + ks * self.step_ns


class Fleet:
    """Devices of the chosen pilots (all by default), their noise seed, faults and formats.

    The defaults (no faults, plain JSON only) make the fleet of the tests that need clean
    data; `pilots simulate` and the demo use realistic faults and a mix of formats.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        pilots: Sequence[str] = (),
        seed: int = 0,
        faults: Faults | None = None,
        formats: Mapping[str, float] | None = None,
        truth: GroundTruth | None = None,
        devices: Collection[str] | None = None,
    ) -> None:
        unknown = set(pilots) - set(registry.pilots)
        if unknown:
            raise ValueError(f"unknown pilots {sorted(unknown)}")
        chosen = set(pilots) or set(registry.pilots)
        self.registry = registry
        self.seed = seed
        self.faults = faults or Faults()
        self.formats = dict(formats or {"plain": 1.0})
        self.truth = truth
        self.devices = tuple(
            d
            for d in registry.device_list
            if d.pilot in chosen and (devices is None or d.id in devices)
        )
        self._runs = {d.id: self._device_run(d) for d in self.devices}
        self._phase = np.asarray([self._runs[d.id].phase_ns for d in self.devices], np.int64)
        self._step = np.asarray([self._runs[d.id].step_ns for d in self.devices], np.int64)
        self._keys = np.asarray([self._runs[d.id].key for d in self.devices], np.int64)
        # Without faults or ground truth, devices of one kind, pilot, interval, sensors and
        # format are generated together, one array operation per batch rather than per device
        # (a counter such as rain tips keeps the per-device path: it needs each device's day).
        self._batches: dict[tuple[object, ...], NDArray[np.intp]] = {}
        if not any(self.faults.as_dict().values()) and truth is None:
            groups: dict[tuple[object, ...], list[int]] = {}
            for i, d in enumerate(self.devices):
                if not COUNTERS & set(d.sensors):
                    key = (d.kind, d.pilot, d.interval_s, d.sensors, self._runs[d.id].fmt)
                    groups.setdefault(key, []).append(i)
            self._batches = {k: np.asarray(v, dtype=np.intp) for k, v in groups.items()}

    def _device_run(self, device: Device) -> _DeviceRun:
        key = crc32(f"{device.id}/{self.seed}".encode())
        fmt = choose(device, self.seed, self.formats)
        # a LoRaWAN uplink is timed by the network server, whose clock is right
        skew_s = 0.0 if fmt in LORAWAN else fl.clock_skew_s(key, self.faults.clock_skew)
        if self.truth is not None:
            self.truth.device(device, fmt, skew_s)
        return _DeviceRun(
            device=device,
            ctx=Context(device, self.registry.pilots[device.pilot], self.seed),
            key=key,
            fmt=fmt,
            topic=topic(fmt, device),
            skew_ns=int(skew_s * NS_PER_S),
            step_ns=device.interval_s * NS_PER_S,
            phase_ns=self.phase_ns(device),
        )

    def format_of(self, device: Device) -> str:
        """The payload format the device publishes in."""
        return self._runs[device.id].fmt

    def phase_ns(self, device: Device) -> int:
        """The device's reporting phase within its interval."""
        return (crc32(f"{device.id}/{self.seed}/phase".encode()) % device.interval_s) * NS_PER_S

    def report_times(self, device: Device, start_ns: int, end_ns: int) -> I64:
        """Instants in `[start_ns, end_ns)` at which the device's reports are due."""
        step = device.interval_s * NS_PER_S
        phase = self.phase_ns(device)
        first = _ceil_div(start_ns - phase, step)
        last = _ceil_div(end_ns - phase, step)
        return phase + np.arange(first, last, dtype=np.int64) * step

    def instant_of(self, device: Device, k: int) -> int:
        """When the device's `k`-th report is due."""
        run = self._runs[device.id]
        return run.phase_ns + k * run.step_ns

    def messages(self, start_ns: int, end_ns: int) -> list[Message]:
        """Every message the fleet publishes in `[start_ns, end_ns)`, in publication order."""
        if self.truth is not None:
            self.truth.span(start_ns, end_ns)
        candidates: Sequence[Device] = self.devices
        out: list[Message] = []
        if self.faults.duplicate <= 0 and self.faults.backlog <= 0 and self.truth is None:
            # nothing published late: only devices with a report due now have anything to say
            k_first = -((self._phase - start_ns) // self._step)
            due = -((self._phase - end_ns) // self._step) > k_first
            batched = np.zeros(len(self.devices), dtype=bool)
            for group, members in self._batches.items():
                chosen = members[due[members]]
                batched[members] = True
                if len(chosen):
                    out.extend(self._batch_messages(group, chosen, start_ns, end_ns))
            candidates = [self.devices[i] for i in np.flatnonzero(due & ~batched).tolist()]
        for device in candidates:
            out.extend(self.device_messages(device, start_ns, end_ns))
        # one order whichever way the messages were made (batched or device by device)
        out.sort(key=lambda m: (m.ts_ns, m.topic, m.payload))
        return out

    def _batch_messages(
        self, group: tuple[object, ...], members: NDArray[np.intp], start_ns: int, end_ns: int
    ) -> list[Message]:
        """The messages of fault-free devices of one kind, pilot, interval, sensors and format.

        Computed together, with the same formulas the per-device path applies to each.
        """
        phase, step = self._phase[members], self._step[members]
        k_first = -((phase - start_ns) // step)
        counts = -((phase - end_ns) // step) - k_first
        rows = np.repeat(np.arange(len(members)), counts)
        starts = np.cumsum(counts) - counts
        ks = k_first[rows] + (np.arange(len(rows)) - starts[rows])
        t = phase[rows] + ks * step[rows]
        model = self.devices[int(members[0])]
        run = self._runs[model.id]
        ctx = Context(model, run.ctx.pilot, self.seed, keys=self._keys[members][rows])
        clean = SIGNALS[model.kind](ctx, t)
        names = [s for s in model.sensors if s in clean]
        columns = []
        for sensor in names:
            spec = self.registry.sensors[sensor]
            value = np.clip(clean[sensor], spec.min, spec.max)
            columns.append(np.round(value, DECIMALS.get(sensor, _DEFAULT_DECIMALS)))
        reports = _Reports.of(ctx, t, ks % (1 << 32), names, columns)
        fmt = str(group[-1])
        devices = [self.devices[int(i)] for i in members.tolist()]
        topics = [self._runs[d.id].topic for d in devices]
        return [
            Message(ts, topics[row], encode(fmt, devices[row], reports.uplink(j, ts)))
            for j, (row, ts) in enumerate(zip(rows.tolist(), t.tolist(), strict=True))
        ]

    # -- one device ------------------------------------------------------------------------

    def device_messages(self, device: Device, start_ns: int, end_ns: int) -> list[Message]:
        """What one device publishes in `[start_ns, end_ns)`, in publication order."""
        run = self._runs[device.id]
        plan = self._plan(run, start_ns, end_ns)
        if plan is None:
            return []
        if self.truth is not None:
            self._record(run, plan)
        if len(plan.k_msg) == 0:
            return []
        return self._encode(run, plan)

    def _plan(self, run: _DeviceRun, start_ns: int, end_ns: int) -> _Plan | None:
        """Which reports are due, lost, held back or repeated, and what is published when."""
        f = self.faults
        step = run.step_ns
        k_first = _ceil_div(start_ns - run.phase_ns, step)
        k_last = _ceil_div(end_ns - run.phase_ns, step)
        reach_ns = 0
        if f.duplicate > 0:
            reach_ns = DUPLICATE_DELAY_S[1] * NS_PER_S
        if f.backlog > 0 and run.fmt not in LORAWAN:
            reach_ns = max(
                reach_ns,
                BACKLOG_DELAY_S[1] * NS_PER_S + 2 * fl.MAX_LEN["backlog"] * step,
            )
        k_lo = min(k_first, _ceil_div(start_ns - reach_ns - run.phase_ns, step))
        ks = np.arange(k_lo, k_last, dtype=np.int64)
        if len(ks) == 0:
            return None
        due = ks >= k_first
        dropped = fl.covered(
            *fl.episodes(run.key, fl.S_DROPOUT, (k_lo, k_last), f.dropout, "dropout"), ks
        )
        held, released_ns = self._backlog(run, ks)
        held &= ~dropped
        normal = ~dropped & ~held

        # (report index, publication instant, copy: 0 first, 1 duplicate, 2 from a backlog)
        picks = [ks[due & normal]]
        pubs = [run.at(picks[0])]
        copies = [np.zeros(len(picks[0]), dtype=np.int8)]
        if f.duplicate > 0:
            twice = normal & fl.chance(run.key, fl.S_DUPLICATE, ks, f.duplicate)
            lo_s, hi_s = DUPLICATE_DELAY_S
            delay = lo_s + np.floor(uniform(run.key, ks, fl.S_DUP_DELAY) * (hi_s - lo_s + 1))
            pub = run.at(ks) + delay.astype(np.int64) * NS_PER_S
            sel = twice & (pub >= start_ns) & (pub < end_ns)
            picks.append(ks[sel])
            pubs.append(pub[sel])
            copies.append(np.ones(int(sel.sum()), dtype=np.int8))
        if f.backlog > 0:
            sel = held & (released_ns >= start_ns) & (released_ns < end_ns)
            picks.append(ks[sel])
            pubs.append(released_ns[sel])
            copies.append(np.full(int(sel.sum()), 2, dtype=np.int8))
        k_msg = np.concatenate(picks)
        events = {}
        for sensor in run.device.sensors:
            skey = self._sensor_key(run.device, sensor)
            never = np.zeros(len(ks), dtype=bool)
            spikes = (
                never
                if sensor in COUNTERS or sensor in UNFAULTED
                else fl.chance(skey, fl.S_SPIKE, ks, f.spike)
            )
            wrong = (
                never if sensor in UNFAULTED else fl.chance(skey, fl.S_RANGE, ks, f.out_of_range)
            )
            events[sensor] = (spikes, wrong)
        return _Plan(
            ks=ks,
            due=due,
            dropped=dropped,
            held=held,
            released_ns=released_ns,
            k_msg=k_msg,
            pub_ns=np.concatenate(pubs),
            copy=np.concatenate(copies),
            malformed=fl.chance(run.key, fl.S_MALFORMED, k_msg, f.malformed),
            events=events,
        )

    def _sensor_key(self, device: Device, sensor: str) -> int:
        return crc32(f"{device.id}/{self.seed}/{sensor}".encode())

    def _encode(self, run: _DeviceRun, plan: _Plan) -> list[Message]:
        """The planned messages as payloads on the device's topic, in publication order."""
        needed = np.unique(plan.k_msg)
        values = self._values(run, plan, needed)
        seq_of = self._counters(run, needed)
        at = np.searchsorted(needed, plan.k_msg)
        t_need = run.at(needed)
        names = list(values)
        reports = _Reports.of(run.ctx, t_need, seq_of, names, [values[n] for n in names])
        stated = (t_need + (0 if run.fmt in LORAWAN else run.skew_ns)).tolist()
        out: list[Message] = []
        for j, pub, bad in zip(
            at.tolist(), plan.pub_ns.tolist(), plan.malformed.tolist(), strict=True
        ):
            # A second copy is the same message delivered again (an MQTT redelivery, a webhook
            # or integration retry): the same bytes. A network server itself does not forward
            # a frame again: it drops a repeated frame counter.
            payload = encode(run.fmt, run.device, reports.uplink(j, stated[j]))
            if bad:
                payload = payload[: len(payload) // 2]
            out.append(Message(pub, run.topic, payload))
        out.sort(key=lambda m: m.ts_ns)
        return out

    def _backlog(self, run: _DeviceRun, ks: I64) -> tuple[NDArray[np.bool_], I64]:
        """Which reports a gateway outage holds back, and when each is delivered.

        The backlog of an outage goes out 1 to 6 h after the outage ends, oldest first, a
        second apart.
        """
        rate = self.faults.backlog
        none = np.zeros(len(ks), dtype=bool), np.zeros(len(ks), dtype=np.int64)
        # A LoRaWAN network server refuses a frame whose counter is below the last one it
        # took, so a gateway's late backlog never reaches ingest from one: device-timed only.
        if rate <= 0 or run.fmt in LORAWAN:
            return none
        k_lo, k_hi = int(ks[0]), int(ks[-1]) + 1
        ahead = fl.MAX_LEN["backlog"]
        while True:
            span = np.arange(k_lo, k_hi + ahead, dtype=np.int64)
            cover = fl.covered(
                *fl.episodes(run.key, fl.S_BACKLOG, (k_lo, k_hi + ahead), rate, "backlog"), span
            )
            if not cover[-1]:
                break
            ahead *= 2
        free = span[~cover]
        # the first report after each held one that goes through: the outage's end
        end_k = free[np.minimum(np.searchsorted(free, ks), len(free) - 1)]
        lo_s, hi_s = BACKLOG_DELAY_S
        delay_s = lo_s + np.floor(uniform(run.key, end_k, fl.S_BACKLOG_DELAY) * (hi_s - lo_s))
        released = (
            run.at(end_k) + delay_s.astype(np.int64) * NS_PER_S - (end_k - ks) * BACKLOG_SPACING_NS
        )
        return cover[: len(ks)], released

    def _counters(self, run: _DeviceRun, ks: I64) -> I64:
        """Frame counters: the report index, or reports since the latest reboot."""
        reset = fl.last_reset(run.key, self.faults.counter_reset, ks)
        return np.where(reset >= 0, ks - reset, ks % (1 << 32))

    def _values(self, run: _DeviceRun, plan: _Plan, needed: I64) -> dict[str, F64]:
        """Rounded sensor values of the `needed` reports, value faults applied."""
        f = self.faults
        device = run.device
        span = (int(plan.ks[0]), int(plan.ks[-1]) + 1)
        # stuck and drift episodes per sensor; a stuck sensor holds its value at the start
        episodes = {}
        for sensor in device.sensors:
            if sensor not in COUNTERS and sensor not in UNFAULTED:
                skey = self._sensor_key(device, sensor)
                episodes[sensor] = (
                    fl.episodes(skey, fl.S_STUCK, span, f.stuck, "stuck"),
                    fl.episodes(skey, fl.S_DRIFT, span, f.drift, "drift"),
                )
        starts = [stuck[0] for stuck, _ in episodes.values()]
        every = np.unique(np.concatenate([needed, *starts])) if starts else needed
        clean = SIGNALS[device.kind](run.ctx, run.at(every))
        if "rain_tips" in device.sensors and "rain" in clean:
            clean["rain_tips"] = self._tips(run, every)
        at_needed = np.searchsorted(every, needed)
        in_plan = needed - span[0]
        values: dict[str, F64] = {}
        for sensor in device.sensors:
            if sensor not in clean:
                continue
            spec = self.registry.sensors[sensor]
            value = clean[sensor][at_needed].copy()
            spikes, out_of_range = plan.events[sensor]
            if sensor in episodes:
                skey = self._sensor_key(device, sensor)
                stuck, drift = episodes[sensor]
                value = self._drift(
                    run, skey, sensor=sensor, drift=drift, ks=plan.ks, needed=needed, value=value
                )
                if len(stuck[0]):
                    on = fl.covered(*stuck, plan.ks)[in_plan]
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
            value = np.round(value, DECIMALS.get(sensor, _DEFAULT_DECIMALS))
            bad = out_of_range[in_plan]
            values[sensor] = np.where(bad, spec.max + 0.5 * (spec.max - spec.min), value)
        return values

    @staticmethod
    def _drift(
        run: _DeviceRun,
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
        days = (needed - began) * run.step_ns / _DAY_NS
        return value + np.where(on, sign * 0.5 * SCALE.get(sensor, 1.0) * days, 0.0)

    def _tips(self, run: _DeviceRun, ks: I64) -> F64:
        """A tipping-bucket counter: tips since local midnight or the latest reboot."""
        t = run.at(ks)
        offset = utc_offset_ns(run.ctx.pilot.tz, int(t[0]))
        midnight = (t + offset) // _DAY_NS * _DAY_NS - offset
        day_first = -((run.phase_ns - midnight) // run.step_ns)
        reset = fl.last_reset(run.key, self.faults.counter_reset, ks)
        base = np.maximum(day_first, reset)
        lo, hi = int(base.min()), int(ks.max()) + 1
        span = np.arange(lo, hi, dtype=np.int64)
        rain = SIGNALS[run.device.kind](run.ctx, run.at(span))["rain"]
        tips = np.concatenate(([0.0], np.cumsum(np.rint(rain / _TIP_MM))))
        out: F64 = tips[ks - lo + 1] - tips[base - lo]
        return out

    # -- ground truth --------------------------------------------------------------------------

    def _record(self, run: _DeviceRun, plan: _Plan) -> None:
        """Add what this batch of one device did to the ground truth."""
        truth = self.truth
        assert truth is not None
        d = run.device
        f = self.faults
        ks, due = plan.ks, plan.due
        truth.count(d, "due", int(due.sum()))
        truth.count(d, "dropped", int((due & plan.dropped).sum()))
        truth.runs("dropout", d, ks[due & plan.dropped])
        late = due & plan.held
        truth.runs("backlog", d, ks[late], delivered_ns=plan.released_ns[late])
        at_due = ks[due]
        # a reboot shows in a frame counter, or in a counter sensor going back to 0
        if f.counter_reset > 0 and (run.fmt in COUNTED_FORMATS or COUNTERS & set(d.sensors)):
            resets = at_due[fl.chance(run.key, fl.S_RESET, at_due, f.counter_reset)]
            truth.count(d, "counter_resets", len(resets))
            truth.event("counter_reset", d, run.at(resets))

        k_msg, copy, malformed = plan.k_msg, plan.copy, plan.malformed
        # The second copy of a report due before the run began arrives without its first:
        # for ingest it is the first.
        assert truth.start_ns is not None
        repeat = (copy == 1) & (run.at(k_msg) >= truth.start_ns)
        first = ~repeat
        truth.count(d, "sent", int(first.sum()))
        truth.count(d, "late", int((copy == 2).sum()))
        truth.count(d, "duplicates", int(repeat.sum()))
        truth.count(d, "malformed", int(malformed.sum()))
        truth.event("duplicate", d, run.at(k_msg[repeat]))
        truth.event("malformed", d, run.at(k_msg[malformed]))
        truth.quarantine["malformed_json"] += int(malformed.sum())
        # a repeated LoRaWAN frame is recognised (frame counter) and dropped before its values
        # are read; a device-timed copy is read again, and refused again for what was wrong
        read = ~malformed & (first | (run.fmt not in LORAWAN))
        for sensor, (spikes, out_of_range) in plan.events.items():
            bad = out_of_range[k_msg - ks[0]]
            truth.count(d, "due", len(at_due), sensor=sensor)
            truth.count(d, "sent", int(first.sum()), sensor=sensor)
            truth.count(d, "expected_stored", int((first & ~malformed & ~bad).sum()), sensor=sensor)
            truth.count(d, "out_of_range", int((first & ~malformed & bad).sum()), sensor=sensor)
            truth.quarantine["out_of_range"] += int((read & bad).sum())
            truth.event("out_of_range", d, run.at(at_due[out_of_range[due]]), sensor=sensor)
            if sensor in COUNTERS or sensor in UNFAULTED or len(at_due) == 0:
                continue
            hit = at_due[spikes[due]]
            truth.count(d, "spikes", len(hit), sensor=sensor)
            truth.event("spike", d, run.at(hit), sensor=sensor)
            skey = self._sensor_key(d, sensor)
            span = (int(at_due[0]), int(at_due[-1]) + 1)
            for fault, stream, rate, counter in (
                ("stuck", fl.S_STUCK, f.stuck, "stuck"),
                ("drift", fl.S_DRIFT, f.drift, "drifting"),
            ):
                on = fl.covered(*fl.episodes(skey, stream, span, rate, fault), at_due)
                truth.count(d, counter, int(on.sum()), sensor=sensor)
                truth.runs(fault, d, at_due[on], sensor=sensor)

"""The registry's devices as a fleet that produces timed messages, faults included.

Each device reports every `interval_s` at a fixed phase of its own; what becomes of each report
(lost, held back by a gateway, sent twice, cut in half) is planned by `simulators.schedule`,
what it says (values and their faults, counter, battery, radio) comes from `simulators.values`,
and its message is written in the device's payload format by `simulators.formats`. A fleet
with a `GroundTruth` (`simulators.truth`) has each batch recorded there; a fleet playing a
scenario (`simulators.script`, such as `simulators.storm`) gives its scripted devices their
scripts, and its truth what the scenario's pilots published.

`messages(lo, hi)` returns what the fleet publishes in `[lo, hi)`, in publication order: the
reports due then, the second copies of duplicated reports, and the backlogs gateways deliver
then. Everything is a pure function of (seed, device, time): any batching of a run, and any
restart, publishes the same bytes at the same instants. This module only puts those pieces
together: a schedule, value or format rule belongs in its own module, not here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from zlib import crc32

import numpy as np
from numpy.typing import NDArray

from core.registry import Device, Registry
from core.timeutil import NS_PER_S
from ingest.decoders import PAYLOAD_FORMATS
from simulators import faults as fl
from simulators import schedule, values
from simulators.faults import Faults
from simulators.formats import ENCODERS, Uplink, choose
from simulators.schedule import DeviceRun, Plan
from simulators.script import Scenario, Script
from simulators.signals import SIGNALS, Context
from simulators.truth import GroundTruth, ScenarioTruth
from simulators.values import COUNTERS, Events, Reports

I64 = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication: when it is published, where, and the bytes."""

    ts_ns: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Sent:
    """One report as a device publishes it, before encoding.

    `copy` is 0 for its first publication, 1 for a duplicate, 2 for a gateway's backlog;
    `malformed` says that the message is cut in half on its way.
    """

    pub_ns: int
    uplink: Uplink
    copy: int
    malformed: bool


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
        scenario: Scenario | None = None,
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
        self.scenario = scenario
        if truth is not None and scenario is not None:
            truth.scenario = ScenarioTruth(registry, scenario)
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
                if not COUNTERS & set(d.sensors) and self._runs[d.id].script is None:
                    key = (d.kind, d.pilot, d.interval_s, d.sensors, self._runs[d.id].fmt)
                    groups.setdefault(key, []).append(i)
            self._batches = {k: np.asarray(v, dtype=np.intp) for k, v in groups.items()}

    def _device_run(self, device: Device) -> DeviceRun:
        key = crc32(f"{device.id}/{self.seed}".encode())
        script = None if self.scenario is None else self.scenario.scripts.get(device.id)
        fmt = choose(device, self.seed, self.formats)
        if script is not None and script.holds and PAYLOAD_FORMATS[fmt].lorawan:
            # a network server drops old frames: a held window needs a device-timed format
            timed = {f: w for f, w in self.formats.items() if not PAYLOAD_FORMATS[f].lorawan}
            fmt = choose(device, self.seed, timed if sum(timed.values()) > 0 else {"plain": 1.0})
        lorawan = PAYLOAD_FORMATS[fmt].lorawan
        encoder = ENCODERS[fmt]
        # a LoRaWAN uplink is timed by the network server, whose clock is right; a scripted
        # device has no random faults
        skew_s = 0.0 if lorawan else fl.clock_skew_s(key, self.faults_of(script).clock_skew)
        if self.truth is not None:
            self.truth.device(device, fmt, skew_s)
        return DeviceRun(
            device=device,
            ctx=Context(device, self.registry.pilots[device.pilot], self.seed),
            key=key,
            fmt=fmt,
            lorawan=lorawan,
            encoder=encoder,
            topic=encoder.topic(device),
            skew_ns=int(skew_s * NS_PER_S),
            step_ns=device.interval_s * NS_PER_S,
            phase_ns=self.phase_ns(device),
            script=script,
        )

    def faults_of(self, script: Script | None) -> Faults:
        """The fault rates of a device: the fleet's, none for a scenario's scripted device."""
        return self.faults if script is None else Faults()

    def format_of(self, device: Device) -> str:
        """The payload format the device publishes in."""
        return self._runs[device.id].fmt

    def phase_ns(self, device: Device) -> int:
        """The device's reporting phase within its interval."""
        return schedule.phase_ns(device, self.seed)

    def report_times(self, device: Device, start_ns: int, end_ns: int) -> I64:
        """Instants in `[start_ns, end_ns)` at which the device's reports are due."""
        step = device.interval_s * NS_PER_S
        phase = self.phase_ns(device)
        first = schedule.ceil_div(start_ns - phase, step)
        last = schedule.ceil_div(end_ns - phase, step)
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
        if (
            self.faults.duplicate <= 0
            and self.faults.backlog <= 0
            and self.truth is None
            and self.scenario is None
        ):
            # nothing published late: only devices with a report due now have anything to say
            k_first = -((self._phase - start_ns) // self._step)
            due = -((self._phase - end_ns) // self._step) > k_first
            batched = np.zeros(len(self.devices), dtype=bool)
            for members in self._batches.values():
                chosen = members[due[members]]
                batched[members] = True
                if len(chosen):
                    out.extend(self._batch_messages(chosen, start_ns, end_ns))
            candidates = [self.devices[i] for i in np.flatnonzero(due & ~batched).tolist()]
        for device in candidates:
            out.extend(self.device_messages(device, start_ns, end_ns))
        # one order whichever way the messages were made (batched or device by device)
        out.sort(key=lambda m: (m.ts_ns, m.topic, m.payload))
        return out

    def _batch_messages(
        self, members: NDArray[np.intp], start_ns: int, end_ns: int
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
        names, columns = values.fault_free(self.registry.sensors, model.sensors, clean)
        reports = Reports.of(ctx, t, ks % (1 << 32), names, columns)
        encode = run.encoder.encode  # the batch shares its format (see `__init__`)
        devices = [self.devices[int(i)] for i in members.tolist()]
        topics = [self._runs[d.id].topic for d in devices]
        return [
            Message(ts, topics[row], encode(devices[row], reports.uplink(j, ts)))
            for j, (row, ts) in enumerate(zip(rows.tolist(), t.tolist(), strict=True))
        ]

    # -- one device ------------------------------------------------------------------------

    def device_messages(self, device: Device, start_ns: int, end_ns: int) -> list[Message]:
        """What one device publishes in `[start_ns, end_ns)`, in publication order."""
        return self.encode(device, self.device_reports(device, start_ns, end_ns))

    def encode(self, device: Device, reports: Iterable[Sent]) -> list[Message]:
        """The device's reports as the messages it publishes, in its format and topic."""
        run = self._runs[device.id]
        out: list[Message] = []
        for sent in reports:
            # A second copy is the same message delivered again (an MQTT redelivery, a webhook
            # or integration retry): the same bytes. A network server itself does not forward
            # a frame again: it drops a repeated frame counter.
            payload = run.encoder.encode(device, sent.uplink)
            if sent.malformed:
                payload = payload[: len(payload) // 2]
            out.append(Message(sent.pub_ns, run.topic, payload))
        return out

    def device_reports(self, device: Device, start_ns: int, end_ns: int) -> list[Sent]:
        """What one device publishes in `[start_ns, end_ns)`, before encoding, in order.

        The same reports as `device_messages`, for a caller that writes them its own way (the
        history's packs, `simulators.history`); the ground truth records them all the same.
        """
        run = self._runs[device.id]
        faults = self.faults_of(run.script)
        plan = schedule.plan(run, faults, start_ns, end_ns)
        if plan is None:
            return []
        faulty = values.events(run, faults, plan.ks)
        if self.truth is not None:
            self.truth.record(run, plan, faulty, faults)
        if len(plan.k_msg) == 0:
            return []
        return self._reports(run, faults, plan, faulty)

    def _reports(self, run: DeviceRun, faults: Faults, plan: Plan, faulty: Events) -> list[Sent]:
        """The planned messages as uplinks, in publication order."""
        needed = np.unique(plan.k_msg)
        found = values.values(
            run, faults, self.registry.sensors, ks=plan.ks, faulty=faulty, needed=needed
        )
        seq_of = values.frame_counters(run, faults, needed)
        at = np.searchsorted(needed, plan.k_msg)
        t_need = run.at(needed)
        names = list(found)
        reports = Reports.of(run.ctx, t_need, seq_of, names, [found[n] for n in names])
        stated_ns = t_need + (0 if run.lorawan else run.skew_ns)
        stated = stated_ns.tolist()
        if self.truth is not None and self.truth.scenario is not None:
            self.truth.scenario.published(
                run.device,
                stated_ns[at],
                plan.pub_ns,
                ~plan.malformed,
                {n: v[at] for n, v in found.items()},
            )
        out = [
            Sent(pub, reports.uplink(j, stated[j]), copy, bad)
            for j, pub, copy, bad in zip(
                at.tolist(),
                plan.pub_ns.tolist(),
                plan.copy.tolist(),
                plan.malformed.tolist(),
                strict=True,
            )
        ]
        out.sort(key=lambda s: s.pub_ns)
        return out

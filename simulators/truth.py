"""Ground truth: what a simulated run sent and which faults it injected, written to a file.

Tests and operators compare it with what the system made of the run: readings stored should
equal `expected_stored` (sent minus dropped minus what ingest must refuse), the quarantine
should hold `expected_quarantine` by reason, and the reports' gaps should be the dropouts.

The file is JSON:

    {"format": 1, "seed": 0, "start": "...", "end": "...", "faults": {rate by name},
     "devices": {"<device>": {"pilot", "kind", "format", "interval_s", "clock_skew_s",
                              "messages": {"due", "dropped", "sent", "late", "duplicates",
                                           "malformed", "counter_resets"},
                              "sensors": {"<sensor>": {"due", "sent", "expected_stored",
                                                       "out_of_range", "spikes", "stuck",
                                                       "drifting"}}}},
     "episodes": [{"fault", "device", "sensor"?, "start", "end", "reports", "delivered"?}],
     "events": [{"fault", "device", "sensor"?, "at"}],
     "expected_quarantine": {"<reason>": n}, "totals": {...}}

Times are RFC 3339 UTC. An episode's `start` and `end` are the first and last report instants
it covers (device clock without skew); `reports` is how many it covers. Counts are by the
instant a report was due (`due`, `dropped`, `counter_resets`, and the value faults `spikes`,
`stuck`, `drifting`, with their episodes and events, whether or not the report then arrived)
or by when its message was published (`sent`, `late`, `duplicates`, `malformed`,
`expected_stored`, `out_of_range`, `expected_quarantine`), so a run cut into batches records
the same as one run. A second copy of a report due before the run began counts as sent, not
as a duplicate: ingest never saw the first. Episodes and events are sorted by time.
The file describes what was published: a run stopped by a signal finishes the batch in hand.

`GroundTruth.record` is told each batch's plan (`simulators.schedule`) and value faults
(`simulators.values`) and recomputes nothing else: it must never decide a fault itself, or the
truth would describe another run than the one published.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from core.registry import Device
from simulators import faults as fl
from simulators.faults import Faults
from simulators.schedule import DeviceRun, Plan
from simulators.values import COUNTERS, UNFAULTED, Events, sensor_key

I64 = NDArray[np.int64]


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Run:
    fault: str
    device: Device
    sensor: str | None
    first: int  # report index
    last: int  # report index, inclusive
    delivered_ns: int | None = None


@dataclass
class GroundTruth:
    """Accumulates a run's truth; `Fleet.messages` feeds it batch by batch, in time order."""

    seed: int
    faults: dict[str, float]
    start_ns: int | None = None
    end_ns: int | None = None
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sensors: dict[tuple[str, str], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    quarantine: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    _runs: list[_Run] = field(default_factory=list)
    _open: dict[tuple[str, str, str | None], _Run] = field(default_factory=dict)

    def span(self, lo_ns: int, hi_ns: int) -> None:
        """Widen the run's time range to include `[lo_ns, hi_ns)`."""
        self.start_ns = lo_ns if self.start_ns is None else min(self.start_ns, lo_ns)
        self.end_ns = hi_ns if self.end_ns is None else max(self.end_ns, hi_ns)

    def device(self, device: Device, fmt: str, skew_s: float) -> None:
        """Describe a device once."""
        if device.id not in self.devices:
            self.devices[device.id] = {
                "pilot": device.pilot,
                "kind": device.kind,
                "format": fmt,
                "interval_s": device.interval_s,
                "clock_skew_s": skew_s,
            }

    def count(self, device: Device, what: str, n: int, sensor: str | None = None) -> None:
        """Add `n` to a device's (or one of its sensors') counter."""
        if n:
            target = self.messages[device.id] if sensor is None else self.sensors[device.id, sensor]
            target[what] += n

    def runs(
        self,
        fault: str,
        device: Device,
        ks: I64,
        *,
        sensor: str | None = None,
        delivered_ns: I64 | None = None,
    ) -> None:
        """Record report indices covered by an episode fault.

        A run that continues the one the previous batch left open is merged into it.
        """
        if len(ks) == 0:
            return
        breaks = np.flatnonzero(np.diff(ks) != 1) + 1
        firsts = np.concatenate(([0], breaks))
        lasts = np.concatenate((breaks - 1, [len(ks) - 1]))
        key = (fault, device.id, sensor)
        for a, b in zip(firsts.tolist(), lasts.tolist(), strict=True):
            first, last = int(ks[a]), int(ks[b])
            when = None if delivered_ns is None else int(delivered_ns[b])
            run = self._open.get(key)
            if run is not None and run.last + 1 == first:
                run.last = last
                run.delivered_ns = when if when is not None else run.delivered_ns
                continue
            run = _Run(fault, device, sensor, first, last, when)
            self._runs.append(run)
            self._open[key] = run

    def event(self, fault: str, device: Device, at_ns: I64, sensor: str | None = None) -> None:
        """Single-instant faults."""
        for at in at_ns.tolist():
            entry: dict[str, Any] = {"fault": fault, "device": device.id, "at": _iso(at)}
            if sensor is not None:
                entry["sensor"] = sensor
            self.events.append(entry)

    def record(self, run: DeviceRun, plan: Plan, faulty: Events, faults: Faults) -> None:
        """Add what one batch of one device did: its plan, with its value faults `faulty`."""
        d = run.device
        f = faults
        ks, due = plan.ks, plan.due
        self.count(d, "due", int(due.sum()))
        self.count(d, "dropped", int((due & plan.dropped).sum()))
        self.runs("dropout", d, ks[due & plan.dropped])
        late = due & plan.held
        self.runs("backlog", d, ks[late], delivered_ns=plan.released_ns[late])
        at_due = ks[due]
        # a reboot shows in a frame counter, or in a counter sensor going back to 0
        if f.counter_reset > 0 and (run.encoder.counted or COUNTERS & set(d.sensors)):
            resets = at_due[fl.chance(run.key, fl.S_RESET, at_due, f.counter_reset)]
            self.count(d, "counter_resets", len(resets))
            self.event("counter_reset", d, run.at(resets))

        k_msg, copy, malformed = plan.k_msg, plan.copy, plan.malformed
        # The second copy of a report due before the run began arrives without its first:
        # for ingest it is the first.
        assert self.start_ns is not None
        repeat = (copy == 1) & (run.at(k_msg) >= self.start_ns)
        first = ~repeat
        self.count(d, "sent", int(first.sum()))
        self.count(d, "late", int((copy == 2).sum()))
        self.count(d, "duplicates", int(repeat.sum()))
        self.count(d, "malformed", int(malformed.sum()))
        self.event("duplicate", d, run.at(k_msg[repeat]))
        self.event("malformed", d, run.at(k_msg[malformed]))
        self.quarantine["malformed_json"] += int(malformed.sum())
        # a repeated LoRaWAN frame is recognised (frame counter) and dropped before its values
        # are read; a device-timed copy is read again, and refused again for what was wrong
        read = ~malformed & (first | (not run.lorawan))
        for sensor, (spikes, out_of_range) in faulty.items():
            bad = out_of_range[k_msg - ks[0]]
            self.count(d, "due", len(at_due), sensor=sensor)
            self.count(d, "sent", int(first.sum()), sensor=sensor)
            self.count(d, "expected_stored", int((first & ~malformed & ~bad).sum()), sensor=sensor)
            self.count(d, "out_of_range", int((first & ~malformed & bad).sum()), sensor=sensor)
            self.quarantine["out_of_range"] += int((read & bad).sum())
            self.event("out_of_range", d, run.at(at_due[out_of_range[due]]), sensor=sensor)
            if sensor in COUNTERS or sensor in UNFAULTED or len(at_due) == 0:
                continue
            hit = at_due[spikes[due]]
            self.count(d, "spikes", len(hit), sensor=sensor)
            self.event("spike", d, run.at(hit), sensor=sensor)
            skey = sensor_key(run, sensor)
            span = (int(at_due[0]), int(at_due[-1]) + 1)
            for fault, stream, rate, counter in (
                ("stuck", fl.S_STUCK, f.stuck, "stuck"),
                ("drift", fl.S_DRIFT, f.drift, "drifting"),
            ):
                on = fl.covered(*fl.episodes(skey, stream, span, rate, fault), at_due)
                self.count(d, counter, int(on.sum()), sensor=sensor)
                self.runs(fault, d, at_due[on], sensor=sensor)

    def as_dict(self, instant_of: Any) -> dict[str, Any]:
        """The truth as the file holds it; `instant_of(device, k)` gives a report's time (ns)."""
        devices: dict[str, Any] = {}
        for device_id, about in self.devices.items():
            sensors = {s: dict(c) for (d, s), c in sorted(self.sensors.items()) if d == device_id}
            devices[device_id] = {
                **about,
                "messages": dict(self.messages.get(device_id, Counter())),
                "sensors": sensors,
            }
        episodes = []
        for run in sorted(self._runs, key=lambda r: (instant_of(r.device, r.first), r.device.id)):
            entry: dict[str, Any] = {"fault": run.fault, "device": run.device.id}
            if run.sensor is not None:
                entry["sensor"] = run.sensor
            entry["start"] = _iso(instant_of(run.device, run.first))
            entry["end"] = _iso(instant_of(run.device, run.last))
            entry["reports"] = run.last - run.first + 1
            if run.delivered_ns is not None:
                entry["delivered"] = _iso(run.delivered_ns)
            episodes.append(entry)
        totals: Counter[str] = Counter()
        for c in self.messages.values():
            totals.update({f"messages_{k}": v for k, v in c.items()})
        for c in self.sensors.values():
            totals.update({f"readings_{k}": v for k, v in c.items()})
        return {
            "format": 1,
            "seed": self.seed,
            "start": None if self.start_ns is None else _iso(self.start_ns),
            "end": None if self.end_ns is None else _iso(self.end_ns),
            "faults": self.faults,
            "totals": dict(sorted(totals.items())),
            "expected_quarantine": dict(sorted(self.quarantine.items())),
            "devices": devices,
            "episodes": episodes,
            "events": sorted(
                self.events, key=lambda e: (e["at"], e["device"], e["fault"], e.get("sensor", ""))
            ),
        }

    def write(self, path: Path, instant_of: Any) -> None:
        """Write the file (see the module docstring)."""
        path.write_bytes(orjson.dumps(self.as_dict(instant_of), option=orjson.OPT_INDENT_2))

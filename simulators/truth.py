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
     "expected_quarantine": {"<reason>": n}, "totals": {...},
     "scenario"?: {...}}

Times are RFC 3339 UTC. An episode's `start` and `end` are the first and last report instants
it covers (device clock without skew); `reports` is how many it covers. Counts are by the
instant a report was due (`due`, `dropped`, `counter_resets`, and the value faults `spikes`,
`stuck`, `drifting`, with their episodes and events, whether or not the report then arrived)
or by when its message was published (`sent`, `late`, `duplicates`, `malformed`,
`expected_stored`, `out_of_range`, `expected_quarantine`), so a run cut into batches records
the same as one run. A second copy of a report due before the run began counts as sent, not
as a duplicate: ingest never saw the first. Episodes and events are sorted by time.
The file describes what was published: a run stopped by a signal finishes the batch in hand.

A run playing a scenario (`simulators.script`) also counts the reports its scripts silenced
(`silenced`, with `silence` episodes; a scripted hold is a `backlog` episode) and has a
`scenario` section (`ScenarioTruth`, below): what must alarm, read off the published messages
(docs/SIMULATORS.md, "Storm scenario").

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

from core.registry import Device, Registry
from core.timeutil import NS_PER_S
from simulators import faults as fl
from simulators.faults import Faults
from simulators.schedule import DeviceRun, Plan
from simulators.script import Scenario
from simulators.values import COUNTERS, UNFAULTED, Events, sensor_key

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]


def iso(ts_ns: int) -> str:
    """An instant as the file writes it: RFC 3339 in UTC, with a Z."""
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
    scenario: ScenarioTruth | None = None
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
            entry: dict[str, Any] = {"fault": fault, "device": device.id, "at": iso(at)}
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
        self.count(d, "silenced", int((due & plan.silent).sum()))
        self.runs("silence", d, ks[due & plan.silent])
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
            entry["start"] = iso(instant_of(run.device, run.first))
            entry["end"] = iso(instant_of(run.device, run.last))
            entry["reports"] = run.last - run.first + 1
            if run.delivered_ns is not None:
                entry["delivered"] = iso(run.delivered_ns)
            episodes.append(entry)
        totals: Counter[str] = Counter()
        for c in self.messages.values():
            totals.update({f"messages_{k}": v for k, v in c.items()})
        for c in self.sensors.values():
            totals.update({f"readings_{k}": v for k, v in c.items()})
        out = {
            "format": 1,
            "seed": self.seed,
            "start": None if self.start_ns is None else iso(self.start_ns),
            "end": None if self.end_ns is None else iso(self.end_ns),
            "faults": self.faults,
            "totals": dict(sorted(totals.items())),
            "expected_quarantine": dict(sorted(self.quarantine.items())),
            "devices": devices,
            "episodes": episodes,
            "events": sorted(
                self.events, key=lambda e: (e["at"], e["device"], e["fault"], e.get("sensor", ""))
            ),
        }
        if self.scenario is not None:
            out["scenario"] = self.scenario.as_dict()
        return out

    def write(self, path: Path, instant_of: Any) -> None:
        """Write the file (see the module docstring)."""
        path.write_bytes(orjson.dumps(self.as_dict(instant_of), option=orjson.OPT_INDENT_2))


# -- scenarios: what must alarm --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelEpisode:
    """Readings of one series at or above a level, from the first to the first back below.

    `start_ns` is the first reading at or above the level and `end_ns` the first later reading
    below `clear_below` (the level itself unless a hysteresis is asked for); `None` when the
    series ends above (`open`). `peak` is the highest reading of the episode and `readings` how
    many of its readings are at or above the level. `start_published_ns` and
    `end_published_ns` are when those two readings were first published; the episode is `late`
    when every one of its readings, the closing one included, was first published after
    `end_ns` (a consumer learns of it only once it is over).
    """

    start_ns: int
    end_ns: int | None
    peak: float
    peak_ns: int
    readings: int
    start_published_ns: int
    end_published_ns: int | None
    late: bool

    @property
    def open(self) -> bool:
        """The series ends inside the episode."""
        return self.end_ns is None


def level_episodes(
    ts_ns: I64, value: F64, published_ns: I64, level: float, *, clear_below: float | None = None
) -> list[LevelEpisode]:
    """Episodes at or above `level` in one series (see `LevelEpisode`).

    `ts_ns` are the readings' device times, `published_ns` when each was published; a reading
    repeated at one device time counts once, at its first publication. The same rule as the
    report's (`core.thresholds.episodes`), without hysteresis unless `clear_below` is given.
    """
    clear = level if clear_below is None else clear_below
    order = np.lexsort((published_ns, ts_ns))
    ts, val, pub = ts_ns[order], value[order], published_ns[order]
    first = np.ones(len(ts), dtype=bool)
    first[1:] = ts[1:] != ts[:-1]
    ts, val, pub = ts[first].tolist(), val[first].tolist(), pub[first].tolist()
    out: list[LevelEpisode] = []
    i = 0
    while i < len(ts):
        if val[i] < level:
            i += 1
            continue
        j = i
        while j < len(ts) and val[j] >= clear:
            j += 1
        inside = range(i, j)
        top = max(inside, key=lambda k: (val[k], -k))
        end = ts[j] if j < len(ts) else None
        last = j if j < len(ts) else j - 1
        out.append(
            LevelEpisode(
                start_ns=ts[i],
                end_ns=end,
                peak=val[top],
                peak_ns=ts[top],
                readings=sum(val[k] >= level for k in inside),
                start_published_ns=pub[i],
                end_published_ns=pub[j] if end is not None else None,
                late=end is not None and min(pub[i : last + 1]) > end,
            )
        )
        i = j + 1
    return out


@dataclass
class ScenarioTruth:
    """What a scenario's pilots published that an alert system must act on.

    `Fleet` feeds it every message it encodes (`published`): the device times and first
    publication of each device's messages, and the readings of every sensor with levels in its
    pilot (those ingest would accept: not cut in half, within the registry's range). `as_dict`
    is the file's `scenario` section: episodes past each level, the silences, the held windows
    and the hovers, all read off what was published (documented in docs/SIMULATORS.md, "Storm
    scenario").
    """

    registry: Registry
    scenario: Scenario
    _times: dict[str, list[tuple[I64, I64]]] = field(default_factory=lambda: defaultdict(list))
    _readings: dict[tuple[str, str], list[tuple[I64, F64, I64]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def published(
        self,
        device: Device,
        stated_ns: I64,
        published_ns: I64,
        read: Bools,
        values: dict[str, F64],
    ) -> None:
        """Messages of one device: the time each states, when published, which ingest reads."""
        if device.pilot not in self.scenario.pilots or not read.any():
            return
        stated, pub = stated_ns[read], published_ns[read]
        self._times[device.id].append((stated, pub))
        for sensor in {t.sensor for t in self.registry.pilots[device.pilot].thresholds}:
            if sensor in values:
                spec = self.registry.sensors[sensor]
                v = values[sensor][read]
                ok = (v >= spec.min) & (v <= spec.max)
                self._readings[device.id, sensor].append((stated[ok], v[ok], pub[ok]))

    def _series(self, device: str, sensor: str) -> tuple[I64, F64, I64]:
        parts = self._readings.get((device, sensor), [])
        if not parts:
            return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def _device_times(self, device: str) -> tuple[I64, I64]:
        parts = self._times.get(device, [])
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def episodes(self) -> list[dict[str, Any]]:
        """Every episode at or above a level, in every series with levels of the pilots."""
        out: list[dict[str, Any]] = []
        for device_id, sensor in sorted(self._readings):
            device = self.registry.devices[device_id]
            ts, value, pub = self._series(device_id, sensor)
            for threshold in self.registry.pilots[device.pilot].thresholds:
                if threshold.sensor != sensor:
                    continue
                for e in level_episodes(ts, value, pub, threshold.value):
                    out.append(
                        {
                            "pilot": device.pilot,
                            "device": device_id,
                            "sensor": sensor,
                            "level_name": threshold.name,
                            "level": threshold.value,
                            "start": iso(e.start_ns),
                            "end": None if e.end_ns is None else iso(e.end_ns),
                            "open": e.open,
                            "peak": e.peak,
                            "peak_at": iso(e.peak_ns),
                            "readings": e.readings,
                            "start_published": iso(e.start_published_ns),
                            "end_published": None
                            if e.end_published_ns is None
                            else iso(e.end_published_ns),
                            "late": e.late,
                        }
                    )
        out.sort(key=lambda e: (e["start"], e["device"], e["sensor"], e["level"]))
        return out

    def silences(self) -> list[dict[str, Any]]:
        """Each scripted silence: the reports either side of it, as published."""
        out = []
        for device_id, script in sorted(self.scenario.scripts.items()):
            device = self.registry.devices[device_id]
            stated, pub = self._device_times(device_id)
            for lo, hi in script.silences:
                before, after = stated[stated < lo], stated[stated >= hi]
                last = int(before.max()) if len(before) else None
                first = int(after.min()) if len(after) else None
                silent_s = None if last is None or first is None else (first - last) / NS_PER_S
                inside = ((stated >= lo) & (stated < hi)) | ((pub >= lo) & (pub < hi))
                out.append(
                    {
                        "pilot": device.pilot,
                        "device": device_id,
                        "interval_s": device.interval_s,
                        "from": iso(lo),
                        "until": iso(hi),
                        "last_before": None if last is None else iso(last),
                        "first_after": None if first is None else iso(first),
                        "silent_s": silent_s,
                        "missed_reports": None
                        if silent_s is None
                        else round(silent_s / device.interval_s) - 1,
                        "messages_in_window": int(inside.sum()),
                    }
                )
        return out

    def backlogs(self) -> list[dict[str, Any]]:
        """Each scripted hold: the reports it held and when they were published."""
        out = []
        for device_id, script in sorted(self.scenario.scripts.items()):
            device = self.registry.devices[device_id]
            stated, pub = self._device_times(device_id)
            for hold in script.holds:
                inside = (stated >= hold.start_ns) & (stated < hold.end_ns)
                held_t, held_pub = stated[inside], pub[inside]
                found = len(held_t) > 0
                out.append(
                    {
                        "pilot": device.pilot,
                        "device": device_id,
                        "interval_s": device.interval_s,
                        "from": iso(hold.start_ns),
                        "until": iso(hold.end_ns),
                        "delivery": iso(hold.delivered_ns),
                        "reports": len(np.unique(held_t)),
                        "first_report": iso(int(held_t.min())) if found else None,
                        "last_report": iso(int(held_t.max())) if found else None,
                        "delivered_first": iso(int(held_pub.min())) if found else None,
                        "delivered_last": iso(int(held_pub.max())) if found else None,
                        "published_in_window": int((held_pub < hold.end_ns).sum()),
                    }
                )
        return out

    def hovers(self) -> list[dict[str, Any]]:
        """Each hover window: its published readings either side of the level."""
        out = []
        for hover in self.scenario.hovers:
            ts, value, _ = self._series(hover.device, hover.sensor)
            ts, first = np.unique(ts, return_index=True)
            value = value[first]
            inside = value[(ts >= hover.start_ns) & (ts < hover.end_ns)]
            out.append(
                {
                    "device": hover.device,
                    "sensor": hover.sensor,
                    "level_name": hover.level_name,
                    "level": hover.level,
                    "from": iso(hover.start_ns),
                    "until": iso(hover.end_ns),
                    "readings": len(inside),
                    "at_or_above": int((inside >= hover.level).sum()),
                    "below": int((inside < hover.level).sum()),
                    "lowest": float(inside.min()) if len(inside) else None,
                    "highest": float(inside.max()) if len(inside) else None,
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        """The ground truth file's `scenario` section."""
        return {
            "name": self.scenario.name,
            "start": iso(self.scenario.start_ns),
            "end": iso(self.scenario.end_ns),
            "pilots": {p: dict(about) for p, about in self.scenario.about.items()},
            "threshold_episodes": self.episodes(),
            "silences": self.silences(),
            "backlogs": self.backlogs(),
            "hovers": self.hovers(),
        }

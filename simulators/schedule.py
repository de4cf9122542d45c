"""When each device reports, and what becomes of each report before it is published.

A device's `k`-th report is due at `phase + k * interval`, at a phase of its own (devices do not
all speak on the same second). The delivery faults (`simulators.faults`) decide per report
whether it is lost, held back by a gateway and delivered hours later, sent twice, or cut in
half; a scenario's script (`simulators.script`) may silence a device for a while or hold a
window of its reports for one burst. `plan` turns a window of time into the messages a device
publishes in it, as (report index, publication instant, kind of copy).

Everything here is a pure function of (seed, device, report index): any batching of a run plans
the same messages. This module decides when and how often; it computes no value (that is
`simulators.values`) and encodes nothing (`simulators.formats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from zlib import crc32

import numpy as np
from numpy.typing import NDArray

from core.registry import Device
from core.timeutil import NS_PER_S
from simulators import faults as fl
from simulators.faults import Faults
from simulators.formats import Encoder
from simulators.script import Script
from simulators.signals import SIGNALS, Context, uniform

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]

DUPLICATE_DELAY_S = (2, 30)
BACKLOG_DELAY_S = (3600, 6 * 3600)
#: Messages of one backlog follow each other this far apart when the gateway delivers them.
BACKLOG_SPACING_NS = NS_PER_S


@dataclass(frozen=True, slots=True)
class DeviceRun:
    """One device in a run: its noise context and key, format, topic, clock and schedule.

    `lorawan` says that a network server forwards its uplinks: the server times them (the
    device's clock does not matter) and drops a frame whose counter it has taken already.
    `script` is what a scenario makes the device do (`simulators.script`), if anything.
    """

    device: Device
    ctx: Context
    key: int
    fmt: str
    lorawan: bool
    encoder: Encoder
    topic: str
    skew_ns: int
    step_ns: int
    phase_ns: int
    script: Script | None = None

    def at(self, ks: I64) -> I64:
        """When the reports `ks` are due."""
        return self.phase_ns + ks * self.step_ns

    def signals(self, ts_ns: I64) -> dict[str, F64]:
        """The device's clean signals at `ts_ns` (its kind's model, as its script changes it)."""
        clean = SIGNALS[self.device.kind](self.ctx, ts_ns)
        return clean if self.script is None else self.script.signals(self.ctx, ts_ns, clean)


@dataclass(frozen=True, slots=True)
class Plan:
    """One device's batch, planned before any value is computed.

    Its report indices `ks` (with look-back for late publications), which are due in the
    batch, lost, silenced by a script, held by a gateway (and when released); and the messages
    as (report index, publication instant, copy kind, cut in half).
    """

    ks: I64
    due: Bools
    dropped: Bools
    silent: Bools
    held: Bools
    released_ns: I64
    k_msg: I64
    pub_ns: I64
    copy: NDArray[np.int8]
    malformed: Bools


def phase_ns(device: Device, seed: int) -> int:
    """The device's reporting phase within its interval."""
    return (crc32(f"{device.id}/{seed}/phase".encode()) % device.interval_s) * NS_PER_S


def ceil_div(a: int, b: int) -> int:
    """`a / b` rounded up, in integers."""
    return -(-a // b)


def plan(run: DeviceRun, faults: Faults, start_ns: int, end_ns: int) -> Plan | None:
    """Which reports are due, lost, held back or repeated, and what is published when."""
    f = faults
    step = run.step_ns
    k_first = ceil_div(start_ns - run.phase_ns, step)
    k_last = ceil_div(end_ns - run.phase_ns, step)
    reach_ns = 0
    if f.duplicate > 0:
        reach_ns = DUPLICATE_DELAY_S[1] * NS_PER_S
    if f.backlog > 0 and not run.lorawan:
        reach_ns = max(
            reach_ns,
            BACKLOG_DELAY_S[1] * NS_PER_S + 2 * fl.MAX_LEN["backlog"] * step,
        )
    if run.script is not None:
        reach_ns = max(reach_ns, run.script.reach_ns(step))
    k_lo = min(k_first, ceil_div(start_ns - reach_ns - run.phase_ns, step))
    ks = np.arange(k_lo, k_last, dtype=np.int64)
    if len(ks) == 0:
        return None
    due = ks >= k_first
    dropped = fl.covered(
        *fl.episodes(run.key, fl.S_DROPOUT, (k_lo, k_last), f.dropout, "dropout"), ks
    )
    held, released_ns = _backlog(run, f.backlog, ks)
    held &= ~dropped
    silent = np.zeros(len(ks), dtype=bool)
    if run.script is not None:
        silent = run.script.silenced(run.at(ks)) & ~dropped
        scripted, when = run.script.held(run.at(ks), step)
        scripted &= ~dropped & ~silent
        held |= scripted
        released_ns = np.where(scripted, when, released_ns)
    normal = ~dropped & ~held & ~silent

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
    if f.backlog > 0 or run.script is not None:
        sel = held & (released_ns >= start_ns) & (released_ns < end_ns)
        picks.append(ks[sel])
        pubs.append(released_ns[sel])
        copies.append(np.full(int(sel.sum()), 2, dtype=np.int8))
    k_msg = np.concatenate(picks)
    return Plan(
        ks=ks,
        due=due,
        dropped=dropped,
        silent=silent,
        held=held,
        released_ns=released_ns,
        k_msg=k_msg,
        pub_ns=np.concatenate(pubs),
        copy=np.concatenate(copies),
        malformed=fl.chance(run.key, fl.S_MALFORMED, k_msg, f.malformed),
    )


def _backlog(run: DeviceRun, rate: float, ks: I64) -> tuple[Bools, I64]:
    """Which reports a gateway outage holds back, and when each is delivered.

    The backlog of an outage goes out 1 to 6 h after the outage ends, oldest first, a
    second apart.
    """
    none = np.zeros(len(ks), dtype=bool), np.zeros(len(ks), dtype=np.int64)
    # A LoRaWAN network server refuses a frame whose counter is below the last one it
    # took, so a gateway's late backlog never reaches ingest from one: device-timed only.
    if rate <= 0 or run.lorawan:
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

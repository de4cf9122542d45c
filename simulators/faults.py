"""The faults real fleets show, each with a rate, injected as pure functions of time.

Every decision is a hash of the device's key, a fault's stream and the report's index `k` (the
device's `k`-th reporting instant since the epoch), never a random generator's state: a run cut
into any batches, or restarted, injects exactly the same faults, and a batch can be generated
without replaying the history before it.

Episode faults (dropouts, stuck values, drift, late backlogs) start at an index with a small
probability and last a geometric number of reports (mean `mean_len`, at most five times that).
For a covered fraction `r`, episodes start with probability `-ln(1 - r) / mean_len`: the share
of reports inside some episode is then `r` (overlaps included), up to the cap on lengths.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from simulators.signals import uniform

I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]

#: Mean length, in reports, of each episode fault.
MEAN_LEN = {"dropout": 4, "stuck": 24, "drift": 144, "backlog": 12}
#: How far episodes may reach, in reports: five times their mean (longer ones are cut there;
#: a geometric length exceeds five means less than 1 % of the time).
MAX_LEN = {name: 5 * mean for name, mean in MEAN_LEN.items()}

# Hash streams, one per decision; a new decision takes a new number, never an old one.
S_DROPOUT, S_STUCK, S_DRIFT, S_BACKLOG = 100, 110, 120, 130
S_SPIKE, S_SPIKE_SIGN, S_RANGE, S_DUPLICATE, S_DUP_DELAY = 140, 141, 150, 160, 161
S_RESET, S_MALFORMED, S_SKEW, S_SKEW_SIZE, S_BACKLOG_DELAY, S_DRIFT_SIGN = (
    170,
    180,
    190,
    191,
    200,
    210,
)


@dataclass(frozen=True, slots=True)
class Faults:
    """How often each fault happens. Rates are fractions (0.05 = 5 %)."""

    dropout: float = 0.0
    stuck: float = 0.0
    drift: float = 0.0
    spike: float = 0.0
    clock_skew: float = 0.0
    duplicate: float = 0.0
    counter_reset: float = 0.0
    backlog: float = 0.0
    out_of_range: float = 0.0
    malformed: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            rate = getattr(self, f.name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"fault rate {f.name}={rate} is not in [0, 1)")

    @classmethod
    def realistic(cls) -> Faults:
        """Rates in the ranges docs/DOMAIN.md gives for real fleets (the demo's default)."""
        return cls(
            dropout=0.05,
            stuck=0.01,
            drift=0.02,
            spike=0.002,
            clock_skew=0.1,
            duplicate=0.01,
            counter_reset=0.001,
            backlog=0.01,
            out_of_range=0.001,
            malformed=0.002,
        )

    def with_specs(self, specs: list[str]) -> Faults:
        """These rates with `name=rate` overrides (`dropout=0.1`, `malformed=0`)."""
        changes: dict[str, float] = {}
        known = {f.name for f in fields(self)}
        for spec in specs:
            name, sep, value = spec.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                names = ", ".join(sorted(known))
                raise ValueError(f"fault {spec!r}: expected NAME=RATE, NAME one of {names}")
            try:
                changes[name] = float(value)
            except ValueError:
                raise ValueError(f"fault {spec!r}: {value!r} is not a number") from None
        return replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        """The rates by name."""
        return asdict(self)


#: What each fault does, for `pilots simulate --help` and the ground truth file.
FAULT_HELP = {
    "dropout": "share of reports lost, in bursts (mean 4 reports): the device or its radio fails",
    "stuck": "share of a sensor's readings frozen at one value (episodes of ~24 reports)",
    "drift": "share of a sensor's readings drifting away from the truth (episodes of ~1 day at "
    "10 min), half a typical swing per day, until recalibrated",
    "spike": "share of readings replaced by a jump of six typical swings (kept within range)",
    "clock_skew": "share of devices whose clock is 5 s to 5 min off (device-timed formats)",
    "duplicate": "share of messages delivered twice, 2-30 s apart (MQTT redeliveries, webhook "
    "and integration retries)",
    "counter_reset": "share of messages after which the device reboots: its frame counter and "
    "rain tip counter start again at 0",
    "backlog": "share of reports held by a gateway outage (~12 reports), delivered 1-6 h after "
    "it ends (plain JSON and SenML devices: a LoRaWAN network server drops old frames)",
    "out_of_range": "share of readings outside the sensor's valid range (ingest quarantines them)",
    "malformed": "share of messages cut in half on the way (ingest quarantines them as "
    "malformed_json)",
}


def _start_probability(rate: float, mean_len: int) -> float:
    return -math.log1p(-rate) / mean_len


_BLOCK = 4096


@lru_cache(maxsize=8192)
def _block_episodes(key: int, stream: int, block: int, rate: float, name: str) -> tuple[I64, I64]:
    """Episodes of one device (or sensor) starting in one block of report indices.

    Kept, because consecutive batches of a run look at the same blocks again.
    """
    mean_len, max_len = MEAN_LEN[name], MAX_LEN[name]
    ks = np.arange(block * _BLOCK, (block + 1) * _BLOCK, dtype=np.int64)
    starts = ks[uniform(key, ks, stream) < _start_probability(rate, mean_len)]
    u = uniform(key, starts, stream + 1)
    # geometric on 1, 2, ... with mean `mean_len`
    q = 1.0 - 1.0 / mean_len
    lengths = 1 + np.floor(np.log1p(-u) / math.log(q)) if q > 0 else np.ones(len(starts))
    return starts, np.minimum(lengths, max_len).astype(np.int64)


def episodes(
    key: int, stream: int, span: tuple[int, int], rate: float, name: str
) -> tuple[I64, I64]:
    """Episodes `(start, length)` of fault `name` covering some index in `span` (`[lo, hi)`)."""
    k_lo, k_hi = span
    if rate <= 0.0 or k_hi <= k_lo:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    first = (k_lo - MAX_LEN[name] + 1) // _BLOCK
    last = (k_hi - 1) // _BLOCK
    parts = [_block_episodes(key, stream, b, rate, name) for b in range(first, last + 1)]
    starts = np.concatenate([p[0] for p in parts])
    lengths = np.concatenate([p[1] for p in parts])
    keep = (starts < k_hi) & (starts + lengths > k_lo)
    return starts[keep], lengths[keep]


def covered(starts: I64, lengths: I64, ks: I64) -> Bools:
    """Whether each index of the sorted, gap-free `ks` lies inside one of the episodes."""
    if len(ks) == 0 or len(starts) == 0:
        return np.zeros(len(ks), dtype=bool)
    lo = int(ks[0])
    diff = np.zeros(len(ks) + 1, dtype=np.int64)
    np.add.at(diff, np.clip(starts - lo, 0, len(ks)), 1)
    np.add.at(diff, np.clip(starts + lengths - lo, 0, len(ks)), -1)
    return np.cumsum(diff[:-1]) > 0


def latest_start(starts: I64, ks: I64) -> I64:
    """For each index, the latest episode start at or before it (-1 for none)."""
    if len(starts) == 0:
        return np.full(len(ks), -1, dtype=np.int64)
    s = np.sort(starts)
    at = np.searchsorted(s, ks, side="right") - 1
    return np.where(at >= 0, s[np.maximum(at, 0)], -1)


def chance(key: int, stream: int, ks: I64, rate: float) -> Bools:
    """Independent per-index events with probability `rate`."""
    if rate <= 0.0:
        return np.zeros(len(ks), dtype=bool)
    return uniform(key, ks, stream) < rate


def last_reset(key: int, rate: float, ks: I64) -> I64:
    """The index of each report's latest frame-counter reset, -1 for none in 2**20 reports.

    A reset is the report at which the device came back from a reboot, with counter 0.
    """
    out = np.full(len(ks), -1, dtype=np.int64)
    if rate <= 0.0 or len(ks) == 0:
        return out
    lo, hi = int(ks.min()), int(ks.max()) + 1
    span = np.arange(lo, hi, dtype=np.int64)
    resets = span[chance(key, S_RESET, span, rate)]
    # the latest reset before the batch, searched backwards in growing blocks
    block = 256
    before = -1
    end = lo
    while before < 0 and end > lo - (1 << 20):
        back = np.arange(end - block, end, dtype=np.int64)
        found = back[chance(key, S_RESET, back, rate)]
        if len(found):
            before = int(found[-1])
        end -= block
        block *= 2
    starts = np.concatenate(([before], resets)) if before >= 0 else resets
    return latest_start(starts, ks)


def clock_skew_s(key: int, rate: float) -> float:
    """The device's constant clock error in seconds (0 for a correct clock)."""
    one = np.asarray([0], dtype=np.int64)
    if rate <= 0.0 or uniform(key, one, S_SKEW)[0] >= rate:
        return 0.0
    u = float(uniform(key, one, S_SKEW_SIZE)[0])
    size = 5.0 + 295.0 * abs(2.0 * u - 1.0)
    return float(round(size if u >= 0.5 else -size))

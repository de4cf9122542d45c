"""Scripted scenarios: what chosen devices do at chosen times, instead of what chance decides.

A scenario (`simulators.storm` is one) gives some devices a `Script`: how their clean signals
change (a river driven over its flood levels, a storm's rain), windows of time in which they
send nothing at all (`silences`), and windows whose reports a gateway holds and delivers in one
burst after the window ends (`holds`). The schedule (`simulators.schedule`) applies the
silences and holds, the values (`simulators.values`) the signal; a scripted device has no
random faults, so that what the scenario promises is exactly what is published.

Like the rest of the simulators, a script is a pure function of time: any batching of a run
plays the same scenario. Times are device times without clock skew (a scripted device's clock
is right), int64 nanoseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.registry import Registry
from simulators.signals import Context

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]

#: Changes a device's clean signals (sensor → values at the instants given) in place or anew.
Shape = Callable[[Context, I64, dict[str, F64]], dict[str, F64]]

#: Messages of one held window follow each other this far apart when they are delivered.
HOLD_SPACING_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Hold:
    """Reports due in `[start_ns, end_ns)` are held and delivered from `delivered_ns` on.

    The burst goes out oldest first, `HOLD_SPACING_NS` apart.
    """

    start_ns: int
    end_ns: int
    delivered_ns: int

    def __post_init__(self) -> None:
        if not self.start_ns < self.end_ns <= self.delivered_ns:
            raise ValueError("a hold is delivered after its window, which is not empty")


@dataclass(frozen=True, slots=True)
class Script:
    """What one device does in a scenario (see the module docstring)."""

    shape: Shape | None = None
    silences: tuple[tuple[int, int], ...] = ()
    holds: tuple[Hold, ...] = ()

    def signals(self, ctx: Context, ts_ns: I64, clean: dict[str, F64]) -> dict[str, F64]:
        """The device's clean signals at `ts_ns`, as the scenario changes them."""
        return clean if self.shape is None else self.shape(ctx, ts_ns, clean)

    def silenced(self, ts_ns: I64) -> Bools:
        """Which reports, due at `ts_ns`, are never sent."""
        out = np.zeros(len(ts_ns), dtype=bool)
        for lo, hi in self.silences:
            out |= (ts_ns >= lo) & (ts_ns < hi)
        return out

    def held(self, ts_ns: I64, step_ns: int) -> tuple[Bools, I64]:
        """Which reports, due at `ts_ns` every `step_ns`, are held; and when each goes out."""
        held = np.zeros(len(ts_ns), dtype=bool)
        released = np.zeros(len(ts_ns), dtype=np.int64)
        for hold in self.holds:
            inside = (ts_ns >= hold.start_ns) & (ts_ns < hold.end_ns)
            order = (ts_ns - hold.start_ns) // step_ns
            held |= inside
            released = np.where(inside, hold.delivered_ns + order * HOLD_SPACING_NS, released)
        return held, released

    def reach_ns(self, step_ns: int) -> int:
        """How far before a batch a report may be due that the batch publishes (a burst)."""
        reach = 0
        for hold in self.holds:
            last = hold.delivered_ns + (hold.end_ns - hold.start_ns) // step_ns * HOLD_SPACING_NS
            reach = max(reach, last - hold.start_ns + step_ns)
        return reach


@dataclass(frozen=True)
class Scenario:
    """A named scenario over `[start_ns, end_ns)`: its pilots, its scripts by device id.

    `about` describes it per pilot for the ground truth file (its devices' roles, its windows);
    `hovers` are the windows in which a sensor is meant to wander around a level, which the
    truth describes from what was published (see `simulators.truth.ScenarioTruth`).
    """

    name: str
    start_ns: int
    end_ns: int
    pilots: tuple[str, ...]
    scripts: Mapping[str, Script]
    about: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hovers: tuple[Hover, ...] = ()


@dataclass(frozen=True, slots=True)
class Hover:
    """A window in which a device's sensor is meant to wander around a level (both sides)."""

    device: str
    sensor: str
    level_name: str
    level: float
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class ScenarioKind:
    """A scenario `pilots simulate --scenario` can play.

    `span_ns` is how long it lasts, `default_pilots` where it plays unless told otherwise,
    `build` makes it for (registry, pilots, start instant), `summary` says what it plays.
    """

    name: str
    span_ns: int
    default_pilots: tuple[str, ...]
    build: Callable[[Registry, Sequence[str], int], Scenario]
    summary: str

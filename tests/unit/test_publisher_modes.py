"""The publisher's clock: real time catches up at once, fast-forward never publishes the future,
a stopped load run still publishes what it generated (so the ground truth holds)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from core.timeutil import NS_PER_S
from simulators.faults import Faults
from simulators.fleet import Fleet, Message
from simulators.load import load_registry
from simulators.publisher import run_clock, run_load
from simulators.truth import GroundTruth

from .helpers import shipped_registry

HOUR_NS = 3600 * NS_PER_S


class Recorder:
    """Stands in for the MQTT publisher: keeps what it was given and when."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[Message]]] = []

    def publish(self, messages: list[Message]) -> int:
        self.batches.append((time.time_ns(), messages))
        return len(messages)

    @property
    def messages(self) -> list[Message]:
        return [m for _, batch in self.batches for m in batch]


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


def test_real_time_from_the_past_catches_up_at_once_and_never_runs_ahead() -> None:
    fleet = Fleet(shipped_registry(), pilots=["santa-fe"], seed=1)
    recorder = Recorder()
    start = time.time_ns() - 2 * HOUR_NS  # where a two-hour backfill ended
    run_clock(recorder, fleet, _stop_after(1.5), start_ns=start)  # type: ignore[arg-type]
    first_at, first = recorder.batches[0]
    # the whole two hours go out in the first tick, not over the next two hours
    assert first_at - start < 2 * HOUR_NS + 5 * NS_PER_S
    assert len(first) >= len(fleet.messages(start, start + 2 * HOUR_NS - 60 * NS_PER_S))
    for at, batch in recorder.batches:
        assert all(m.ts_ns <= at for m in batch)


def test_fast_forward_runs_faster_than_the_clock_but_never_into_the_future() -> None:
    fleet = Fleet(shipped_registry(), pilots=["santa-fe"], seed=1)
    recorder = Recorder()
    start = time.time_ns() - HOUR_NS
    run_clock(recorder, fleet, _stop_after(2.0), start_ns=start, speed=7200.0)  # type: ignore[arg-type]
    published = recorder.messages
    assert published, "an hour at 7200x takes half a second"
    assert max(m.ts_ns for m in published) > start + 50 * 60 * NS_PER_S
    for at, batch in recorder.batches:
        assert all(m.ts_ns <= at for m in batch)
    assert [m.ts_ns for m in published] == sorted(m.ts_ns for m in published)


def test_a_stopped_load_run_publishes_every_batch_it_recorded(tmp_path: Path) -> None:
    registry, copies = load_registry(shipped_registry(), 100, 100, tmp_path / "load.toml")
    truth = GroundTruth(seed=2, faults=Faults().as_dict())
    fleet = Fleet(registry, seed=2, truth=truth, devices=set(copies))
    recorder = Recorder()
    result = run_load(
        recorder,  # type: ignore[arg-type]  # a recorder, not a connection, stands in
        fleet,
        _stop_after(1.2),
        target_per_s=100.0,
        duration_s=30.0,
    )
    assert result.seconds < 25  # the stop ended the 30-second run early
    sent = sum(c.get("sent", 0) for c in truth.messages.values())
    assert result.sent > 0
    assert result.sent == len(recorder.messages) == sent

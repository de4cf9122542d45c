"""The publisher's clock: real time catches up at once, fast-forward never publishes the future,
a stopped load run still publishes what it generated (so the ground truth holds); history packs
store what the fleet's messages store, one uplink a report, in few messages within ingest's
limits."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from core.settings import Settings
from core.timeutil import DAY_NS, NS_PER_S
from ingest.decoders import Router
from ingest.process import process
from ingest.validate import Validator
from simulators.faults import Faults
from simulators.fleet import Fleet, Message
from simulators.formats import DEFAULT_MIX
from simulators.history import Limits, history
from simulators.load import load_registry
from simulators.publisher import publish_history, run_clock, run_load
from simulators.storm import storm
from simulators.truth import GroundTruth

from .helpers import accepted, shipped_registry

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


# -- history packs ---------------------------------------------------------------------------

#: A fixed "now" for the history tests (2026-11-20 12:00 UTC), whole seconds.
NOW_NS = 1_795_176_000 * NS_PER_S


def _realistic_fleet() -> Fleet:
    registry = shipped_registry()
    began = NOW_NS - 14 * HOUR_NS  # the demo's storm, live at the end of the history
    return Fleet(
        registry,
        seed=3,
        faults=Faults.realistic(),
        formats=DEFAULT_MIX,
        scenario=storm(registry, ["santa-fe"], began),
    )


def _stored(
    messages: list[Message],
) -> tuple[dict[tuple[str, str, int], float], set[tuple[int, int]], Counter[str]]:
    """What ingest makes of the messages: readings, uplinks (device, time) and refusals."""
    settings = Settings(_env_file=None)
    router = Router(settings.ingest_routes)
    validator = Validator(shipped_registry(), max_future_s=600, max_age_days=3650)
    readings: dict[tuple[str, str, int], float] = {}
    uplinks: set[tuple[int, int]] = set()
    refused: Counter[str] = Counter()
    for m in messages:
        checked = process(
            router,
            validator,
            m.topic,
            m.payload,
            NOW_NS,
            max_payload_bytes=settings.ingest_max_payload_bytes,
        )
        readings.update(accepted(checked))
        uplinks.update(zip(checked.up_device, checked.up_ts_ns, strict=True))
        refused.update(str(r.reason) for r in checked.rejections)
    return readings, uplinks, refused


def test_history_packs_store_what_the_messages_store_with_an_uplink_per_report() -> None:
    start = NOW_NS - 30 * HOUR_NS
    one_by_one = _realistic_fleet().messages(start, NOW_NS)
    packs = history(_realistic_fleet(), start, NOW_NS)
    assert len(packs) < len(one_by_one) / 10
    readings, uplinks, refused = _stored(packs)
    want, want_uplinks, want_refused = _stored(one_by_one)
    assert readings == want
    # one uplink per report (a pack's frames carry counters); the faults still show
    assert uplinks == want_uplinks
    assert refused == want_refused
    assert refused["out_of_range"] > 0 and refused["malformed_json"] > 0
    # in publication order, none after the history's end
    assert all(m.ts_ns < NOW_NS for m in packs)
    assert [m.ts_ns for m in packs] == sorted(m.ts_ns for m in packs)


def test_history_keeps_to_ingest_limits() -> None:
    limits = Limits(max_payload_bytes=4_000, max_future_s=0, max_age_days=1)
    packs = history(_realistic_fleet(), NOW_NS - 3 * DAY_NS, NOW_NS, limits=limits)
    assert max(len(m.payload) for m in packs) <= 4_000
    readings, _, refused = _stored(packs)
    assert set(refused) <= {"out_of_range", "malformed_json"}, refused  # nothing too old or ahead
    times = [t for _, _, t in readings]
    assert min(times) > NOW_NS - DAY_NS and max(times) <= NOW_NS


def test_publish_history_sends_every_pack_in_order_and_stops_when_told() -> None:
    start = NOW_NS - 3 * DAY_NS
    recorder = Recorder()
    sent = publish_history(recorder, _realistic_fleet(), start, NOW_NS)  # type: ignore[arg-type]
    assert recorder.messages == history(_realistic_fleet(), start, NOW_NS)
    # three days of the three pilots' 21 devices: a few hundred messages, not ten thousand
    assert sent == len(recorder.messages) < 400
    stopped = threading.Event()
    stopped.set()
    assert publish_history(Recorder(), _realistic_fleet(), start, NOW_NS, stop=stopped) == 0  # type: ignore[arg-type]

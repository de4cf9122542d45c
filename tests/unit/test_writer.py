"""The writer against a scripted store (the real ones are in tests/integration): what it
decodes, retries, splits and quarantines, and that it never drops a message."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.errors import (
    StoreError,
    StoreRejectedError,
    StoreTooLargeError,
    StoreUnavailableError,
)
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.uplinks import Uplinks
from ingest import writer as writer_module
from ingest.metrics import Health, IngestMetrics, MetricEvents
from ingest.spool import Spool
from ingest.writer import SpoolWriter
from ingest.writer_process import Tally
from tests.helpers import wait_for

TOPIC = "pilots/santa-fe/sf-rlv-01/up"


class ScriptedStore:
    """Accepts writes into `stored`, except as scripted; the rollups live in an embedded store."""

    def __init__(self, rollups: EmbeddedStore) -> None:
        self.rollups = rollups
        self.stored: list[float] = []
        self.uplinks = 0
        self.calls: list[int] = []
        self.failures: list[StoreError] = []
        self.refuse_value: float | None = None
        self.max_lines: int | None = None

    def write(
        self, readings: Readings, uplinks: Uplinks | None = None, repeats: Uplinks | None = None
    ) -> None:
        lines = len(readings) + (len(uplinks) if uplinks is not None else 0)
        self.calls.append(lines)
        if self.failures:
            raise self.failures.pop(0)
        if self.max_lines is not None and lines > self.max_lines:
            raise StoreTooLargeError("413", status=413)
        if self.refuse_value is not None and self.refuse_value in readings.value.tolist():
            raise StoreRejectedError("field type conflict", status=400)
        self.stored.extend(readings.value.tolist())
        self.uplinks += len(uplinks) if uplinks is not None else 0
        self.rollups.write(readings, uplinks)

    def __getattr__(self, name: str) -> Any:
        # scan, scan_rollups, write_rollups and the watermarks, for the rollup maintainer.
        return getattr(self.rollups, name)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "BACKOFF_MIN_S", 0.01)


class Running:
    def __init__(self, tmp_path: Path, registry: Registry) -> None:
        self.spool = Spool(tmp_path / "ingest.sqlite")
        self.store = ScriptedStore(EmbeddedStore(tmp_path / "store.sqlite", registry))
        self.metrics = IngestMetrics()
        self.health = Health(unhealthy_after_s=0.05)
        self.abort = threading.Event()
        self.draining = threading.Event()
        settings = Settings(data_dir=tmp_path, _env_file=None)
        self.writer = SpoolWriter(
            self.spool,
            self.store,
            settings=settings,
            registry=registry,
            events=MetricEvents(self.metrics, self.health),
            abort=self.abort,
        )
        self.thread = threading.Thread(target=self.writer.run, args=(self.draining.is_set,))

    def send(self, values: list[float]) -> None:
        now_ms = time.time_ns() // 1_000_000
        self.spool.append(
            [
                (time.time_ns(), TOPIC, orjson.dumps({"ts": now_ms - i, "readings": {"level": v}}))
                for i, v in enumerate(values)
            ]
        )

    def wait_empty(self) -> None:
        wait_for(lambda: self.spool.depth().messages == 0, 10, "an empty spool")

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.value(name, **labels)


@pytest.fixture
def run(tmp_path: Path, registry: Registry) -> Iterator[Running]:
    running = Running(tmp_path, registry)
    yield running
    running.draining.set()
    running.abort.set()
    if running.thread.is_alive():
        running.thread.join(5)


def test_spooled_messages_are_decoded_written_and_removed(run: Running) -> None:
    run.send([1.0, 2.0, 3.0])
    run.spool.append([(time.time_ns(), TOPIC, b"{broken")])
    run.thread.start()
    run.wait_empty()
    assert sorted(run.store.stored) == [1.0, 2.0, 3.0]
    assert run.store.uplinks == 3
    assert run.store.quarantine_summary().kept == {"malformed_json": 1}
    assert run.metric("pilots_ingest_readings_written_total") == 3
    assert run.metric("pilots_ingest_refused_total", reason="malformed_json") == 1


def test_an_unavailable_store_is_retried_and_nothing_is_lost(run: Running) -> None:
    run.store.failures = [StoreUnavailableError("connection refused")] * 3
    run.send([1.0, 2.0])
    run.thread.start()
    run.wait_empty()
    assert sorted(run.store.stored) == [1.0, 2.0]
    assert run.metric("pilots_ingest_write_errors_total", **{"class": "unavailable"}) == 3


def test_retry_after_is_honoured(run: Running) -> None:
    run.store.failures = [StoreUnavailableError("429", status=429, retry_after_s=0.6)]
    run.send([1.0])
    began = time.monotonic()
    run.thread.start()
    run.wait_empty()
    assert time.monotonic() - began >= 0.6
    assert run.metric("pilots_ingest_write_errors_total", **{"class": "throttled"}) == 1


def test_a_too_large_batch_is_split_until_it_fits(run: Running) -> None:
    run.store.max_lines = 4
    run.send([float(i) for i in range(10)])
    run.thread.start()
    run.wait_empty()
    assert sorted(run.store.stored) == [float(i) for i in range(10)]
    assert run.store.calls[0] == 20 and all(n <= 20 for n in run.store.calls)


def test_refused_lines_are_isolated_and_quarantined_the_rest_written(run: Running) -> None:
    run.store.refuse_value = 6.0
    run.send([float(i) for i in range(16)])
    run.thread.start()
    run.wait_empty()
    assert sorted(run.store.stored) == [float(i) for i in range(16) if i != 6]
    (entry,) = run.store.quarantine_entries()
    assert entry.reason == "store_rejected" and entry.sensor == "level"
    assert b"value=6.0" in entry.head


def test_other_refusals_keep_the_data_and_report_the_store_down(run: Running) -> None:
    run.store.failures = [StoreError("401 unauthorized", status=401)] * 50

    def store_problems() -> list[str]:
        problems = run.health.check()[1]["problems"]
        assert isinstance(problems, list)
        return [p for p in problems if p.startswith("store")]

    run.send([2.5])
    run.thread.start()
    wait_for(store_problems, 5, "the store reported unhealthy")
    assert run.spool.depth().messages == 1, "kept while the store refuses"
    run.store.failures.clear()
    run.wait_empty()
    assert store_problems() == []


def test_an_aborted_writer_leaves_the_messages_in_the_spool(run: Running) -> None:
    run.store.failures = [StoreUnavailableError("down")] * 10_000
    run.send([1.0, 2.0, 3.0])
    run.thread.start()
    wait_for(lambda: run.store.calls, 5, "a first attempt")
    run.abort.set()
    run.thread.join(5)
    assert not run.thread.is_alive()
    assert run.spool.depth().messages == 3


def test_what_the_receiver_spooled_as_it_stopped_is_written_before_the_writer_ends(
    run: Running,
) -> None:
    # The receiver commits its last messages and stops (or is killed) while the writer, idle,
    # has just found the spool empty: those messages, acknowledged already, must be written
    # now, not left for a next start that may never come.
    said_stop = False

    def receiver_stops() -> bool:
        nonlocal said_stop
        if not said_stop:
            said_stop = True
            run.send([7.0, 8.0, 9.0])
        return True

    assert run.writer.run(receiver_stops) is True
    assert run.spool.depth().messages == 0
    assert sorted(run.store.stored) == [7.0, 8.0, 9.0]


def test_a_tally_replays_into_metrics() -> None:
    tally = Tally()
    tally.accepted(5)
    tally.refused("unknown_device")
    tally.refused("unknown_device")
    tally.write_error("throttled")
    tally.latency(0.5)
    tally.store(False)
    metrics = IngestMetrics()
    health = Health(unhealthy_after_s=60)
    tally.replay_into(MetricEvents(metrics, health))
    assert metrics.value("pilots_ingest_readings_accepted_total") == 5
    assert metrics.value("pilots_ingest_refused_total", reason="unknown_device") == 2
    assert metrics.value("pilots_ingest_write_errors_total", **{"class": "throttled"}) == 1
    assert metrics.value("pilots_ingest_batch_latency_seconds_count") == 1
    assert metrics.value("pilots_ingest_store_up") == 0

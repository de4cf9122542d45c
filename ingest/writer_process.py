"""The writer's child process: `pilots ingest` runs `SpoolWriter` there by default.

With `PILOTS_INGEST_WRITER=process` (the default) decoding and writing use the second core while
the receiver keeps the broker's pace. The child reports what it did to its parent as `Tally`
objects over a pipe, which the parent replays into its metrics and serves at /metrics. This
module is the harness only: the entry point, the pipe and the watch on the parent; the writing
itself is `ingest.writer`, and it must not write anything on its own.

The writer looks at the registry file (`PILOTS_REGISTRY`, or the shipped one) every
`PILOTS_ALERT_RELOAD_EVERY_S`; a SIGHUP to this process has it look at the next turn.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from core.reload import watch_registry
from core.settings import Settings
from core.store import open_store
from ingest.spool import Spool
from ingest.writer import Events, SpoolWriter, start_store

log = logging.getLogger(__name__)

#: Signals that stop ingest: the receiver's to handle; its writer process ignores them.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
#: Signals the receiver holds while it spawns the writer: those the writer handles its own way
#: (the stop signals ignored, SIGHUP a look at the registry) must not act before it does.
HELD_AT_SPAWN = STOP_SIGNALS | {signal.SIGHUP}

LOCK_FILE = "ingest.writer.lock"


@dataclass
class Tally:
    """Events counted in the writer process between two reports to its parent."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    store_up: bool | None = None

    def accepted(self, readings: int) -> None:
        """Count accepted readings."""
        self.counts["accepted", ""] += readings

    def refused(self, reason: str) -> None:
        """Count a refusal."""
        self.counts["refused", reason] += 1

    def unkept(self, why: str, refusals: int) -> None:
        """Count refusals not kept in the quarantine."""
        self.counts["unkept", why] += refusals

    def duplicates(self, frames: int) -> None:
        """Count dropped retransmissions."""
        self.counts["duplicates", ""] += frames

    def written(self, readings: int) -> None:
        """Count written readings."""
        self.counts["written", ""] += readings

    def write_error(self, kind: str) -> None:
        """Count a failed write."""
        self.counts["write_error", kind] += 1

    def latency(self, seconds: float) -> None:
        """Keep a batch latency."""
        self.latencies.append(seconds)

    def store(self, up: bool) -> None:
        """Keep the store's latest state."""
        self.store_up = up

    def replay_into(self, events: Events) -> None:
        """Apply the counted events to `events` (in the parent)."""
        amounts: dict[str, Callable[[int], None]] = {
            "accepted": events.accepted,
            "duplicates": events.duplicates,
            "written": events.written,
        }
        for (kind, label), n in self.counts.items():
            if kind in amounts:
                amounts[kind](n)
            elif kind == "unkept":
                events.unkept(label, n)
            else:
                each = events.refused if kind == "refused" else events.write_error
                for _ in range(n):
                    each(label)
        for seconds in self.latencies:
            events.latency(seconds)
        if self.store_up is not None:
            events.store(self.store_up)


class _PipeEvents(Tally):
    """A tally that is sent to the parent after every batch and every failed write."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def flush(self) -> None:
        """Send what was counted since the last flush."""
        if self.counts or self.latencies or self.store_up is not None:
            # the receiver may be gone (killed): nobody is left to count for
            with contextlib.suppress(OSError):
                self.conn.send(Tally(self.counts, self.latencies, self.store_up))
            self.counts = Counter()
            self.latencies = []
            self.store_up = None

    def write_error(self, kind: str) -> None:
        super().write_error(kind)
        self.flush()

    def latency(self, seconds: float) -> None:
        super().latency(seconds)
        self.flush()


class _Parent:
    """The writer process's view of its parent (the receiver) and of the stop it asks for.

    A parent gone (killed) spools nothing more: the writer then drains the spool as on a stop,
    for at most `PILOTS_INGEST_STOP_TIMEOUT_S`, so that what the killed worker acknowledged is
    in the store even if it never comes back; the rest waits in the spool for the next start.
    """

    def __init__(self, parent: int, draining: Any, abort: Any, stop_timeout_s: float) -> None:
        self._pid = parent
        self._draining = draining
        self._abort = abort
        self._stop_timeout_s = stop_timeout_s
        self._gone_at: float | None = None

    def gone(self) -> bool:
        """Whether the parent is gone (noticed once, logged once)."""
        if self._gone_at is None and os.getppid() != self._pid:
            self._gone_at = time.monotonic()
            log.warning(
                "ingest's receiver is gone: writing what its spool holds for up to %.0f s "
                "(PILOTS_INGEST_STOP_TIMEOUT_S), as on a stop",
                self._stop_timeout_s,
            )
        return self._gone_at is not None

    def draining(self) -> bool:
        """Nothing more will be spooled: write what is there and finish."""
        return bool(self._draining.is_set()) or self.gone()

    def is_set(self) -> bool:
        """Stop now: the parent said so, or it is gone and its stop timeout has passed."""
        if self._abort.is_set():
            return True
        return self.gone() and time.monotonic() - (self._gone_at or 0.0) > self._stop_timeout_s

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for `is_set`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_set():
                return True
            self._abort.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.is_set()


def writer_process(
    settings: Settings, conn: Connection, draining: Any, abort: Any, parent: int
) -> None:
    """Entry point of the writer process (multiprocessing, spawn): runs until told to stop.

    `parent` is the receiver's pid, given rather than read here: a receiver killed before this
    process got going would otherwise never be noticed gone.
    """
    # A stop is the receiver's to order (`draining`, then `abort`) or its death's: a SIGTERM or
    # Ctrl-C sent to the whole process group (systemd's default, a terminal) must not kill the
    # writer before it has drained the spool.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    # SIGHUP: look at the registry file now (only a flag is set here; the writer acts on it
    # between two batches).
    watch = watch_registry(settings.registry, every_s=settings.alert_reload_every_s)
    signal.signal(signal.SIGHUP, lambda *_: watch.request())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_AT_SPAWN)  # blocked by the receiver at spawn
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    stop = _Parent(parent, draining, abort, settings.ingest_stop_timeout_s)
    lock_path = Path(settings.data_dir) / LOCK_FILE
    with lock_path.open("w") as lock:
        # One writer per spool: a writer orphaned by a killed ingest writes what the spool
        # holds (for at most the stop timeout) and exits before the new one starts.
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry = watch.load()
        store = open_store(settings, registry)
        events = _PipeEvents(conn)
        spool = Spool(Path(settings.data_dir) / "ingest.sqlite")
        writer: SpoolWriter | None = None
        try:

            def nothing_to_write() -> bool:
                return stop.draining() and spool.depth().messages == 0

            if start_store(store, events, stop, nothing_to_write):
                writer = SpoolWriter(
                    spool,
                    store,
                    settings=settings,
                    registry=registry,
                    events=events,
                    abort=stop,
                    watch=watch,
                )
                writer.run(draining=stop.draining)
            events.flush()
        finally:
            if writer is not None:
                writer.close()
            spool.close()
            store.close()
            conn.close()

"""The writer: spooled messages decoded, validated and written to the store, oldest first.

It takes a batch of raw messages from the spool, decodes and validates them (refusals go to the
quarantine, LoRaWAN retransmissions are dropped), writes the valid readings and uplinks to the
store, and then, in one spool transaction, removes the messages and records their quarantine
entries and retransmission keys. A message thus leaves the spool only once all it carries is in
the store or the quarantine; after a crash it is processed again, which the store's idempotent
points make harmless.

Store failures are classified as Telegraf's InfluxDB output classifies them. Connection errors,
timeouts, 5xx and 429 keep the data and retry with exponential backoff and jitter (honouring
`Retry-After`); 413 splits the batch in halves; 400/422 (a field type conflict, a bad line)
splits it until the offending lines stand alone and quarantines those; anything else
(credentials, a missing database) keeps the data and retries, loudly.

By default the writer runs in a child process of `pilots ingest` (`PILOTS_INGEST_WRITER=process`,
`ingest.writer_process`), otherwise in a thread of ingest itself; either way it reports to an
`Events`.

Given a registry watch (`core.reload.Watched`), the writer looks at the registry file every
`PILOTS_ALERT_RELOAD_EVERY_S` between two batches, and takes a valid new registry there: the
batch in flight is finished (written, quarantined, removed from the spool) with the registry it
was decoded with, then the validator, the store, the rollup maintainer and the quarantine keeper
change to the new one together, before the next batch is decoded. A message is thus decoded,
written and rolled up with one registry; what waits in the spool is decoded with the new one.
The retransmission keys seen (keyed by device id) are kept across the change. A bad file is
refused by the watch and the running registry stays.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import (
    PilotsError,
    StoreError,
    StoreRejectedError,
    StoreTooLargeError,
    StoreUnavailableError,
)
from core.readings import Readings
from core.registry import Registry
from core.reload import Watched, registry_change
from core.settings import Settings
from core.store import Lifecycle, Store, open_store
from core.timeutil import NS_PER_S
from core.uplinks import Uplinks
from ingest.decoders import Router
from ingest.dedupe import FrameCache
from ingest.process import process_batch
from ingest.quarantine import Keeper
from ingest.reasons import Reason, Rejection
from ingest.rollups import RollupMaintainer
from ingest.spool import FrameKey, Refused, Spool, Spooled
from ingest.validate import Validator

log = logging.getLogger(__name__)

#: The topic of quarantine entries for lines the store refused (they came from no one message).
STORE_TOPIC = "(store)"
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
IDLE_WAIT_S = 0.05
ROLLUP_NOTES = "rollups.sqlite"


class Events(Protocol):
    """What the writer reports (to metrics, or to the parent process)."""

    def accepted(self, readings: int) -> None:
        """Readings passed validation and were written."""

    def refused(self, reason: str) -> None:
        """A message or reading was quarantined."""

    def unkept(self, why: str, refusals: int) -> None:
        """Refusals were counted but not kept (or pruned) in the quarantine."""

    def duplicates(self, frames: int) -> None:
        """Retransmitted frames were dropped."""

    def written(self, readings: int) -> None:
        """The store accepted a write."""

    def write_error(self, kind: str) -> None:
        """A store write failed (unavailable, throttled, too_large, rejected, other)."""

    def latency(self, seconds: float) -> None:
        """A batch was finished this long after its oldest message arrived."""

    def store(self, up: bool) -> None:
        """The store answered, or did not."""


def _failure_class(exc: StoreError) -> str:
    """The metrics label of a failed write."""
    if isinstance(exc, StoreRejectedError):
        return "rejected"
    if isinstance(exc, StoreTooLargeError):
        return "too_large"
    if isinstance(exc, StoreUnavailableError):
        return "throttled" if exc.retry_after_s is not None else "unavailable"
    return "other"


@dataclass
class _Prepared:
    """A decoded batch on its way to the store."""

    ids: list[int]
    oldest_ns: int
    readings: Readings
    uplinks: Uplinks
    repeats: Uplinks
    refused: list[Refused]
    keys: list[tuple[FrameKey, int]]
    duplicates: int
    future: Future[None] | None = None
    #: The refusals' quarantine entries were written with the batch.
    kept: bool = False


class SpoolWriter:
    """Processes the spool into the store (see the module docstring)."""

    def __init__(
        self,
        spool: Spool,
        store: Store,
        *,
        settings: Settings,
        registry: Registry,
        events: Events,
        abort: threading.Event | Any,
        watch: Watched[Registry] | None = None,
        store_for: Callable[[Registry], Store] | None = None,
    ) -> None:
        """`watch`, when given, is the registry's (see the module docstring).

        `store_for` opens a store for a new registry (default: `open_store` with `settings`).
        The store given here is the caller's to close; one the writer opened for a new
        registry is closed by the writer (`close()`).
        """
        self.spool = spool
        self.store = store
        self.settings = settings
        self.registry = registry
        self.events = events
        self.abort = abort
        self.watch = watch
        self._store_for = store_for or (lambda r: open_store(settings, r))
        #: A valid new registry not taken yet (its store would not start), and when to retry.
        self._incoming: Registry | None = None
        self._retry_at = 0.0
        #: The store opened by the writer for a new registry, closed by it.
        self._owned: Store | None = None
        self.router = Router(settings.ingest_routes)
        self.rollups = RollupMaintainer(Path(settings.data_dir) / ROLLUP_NOTES, registry)
        self._rolled_up = time.monotonic()
        window_ns = settings.ingest_dedupe_window_s * NS_PER_S
        self.validator = self._validator(
            registry, FrameCache(window_ns, spool.frame_keys(time.time_ns() - window_ns))
        )
        self._store_refused: list[Refused] = []
        self.keeper = Keeper(
            store,
            settings,
            settings.mqtt_client_name(),
            registry,
            spool=spool,
            on_unkept=events.unkept,
        )

    def _validator(self, registry: Registry, frames: FrameCache | None) -> Validator:
        return Validator(
            registry,
            max_future_s=self.settings.ingest_max_future_s,
            max_age_days=self.settings.ingest_max_age_days,
            frames=frames,
        )

    def close(self) -> None:
        """Close what the writer opened itself: the store of a registry it took while running."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None
        self.rollups.close()

    def run(self, draining: Callable[[], bool]) -> bool:
        """Process until the spool is empty and `draining()` says to stop, or until aborted.

        Batches are pipelined: while the store takes one batch, the next is decoded (the
        store's work and ours then overlap on two cores). Returns True when it stopped with
        the spool empty.
        """
        inflight: _Prepared | None = None
        after_id = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-store") as pool:
            while not self.abort.is_set():
                if self._registry_due():
                    # Between two batches: the one in flight is finished with its registry.
                    if inflight is not None:
                        if not self._complete(inflight):
                            return False
                        inflight = None
                    self._take_registry()
                # Asked before the spool is read: what the receiver spooled up to the moment
                # it stopped (or died) is then in this take, or in the next one.
                last_turn = draining()
                batch = self.spool.take(
                    self.settings.ingest_write_batch_messages,
                    after_id=after_id,
                    max_bytes=self.settings.ingest_write_batch_bytes,
                )
                if not batch:
                    if inflight is not None:
                        if not self._complete(inflight):
                            return False
                        inflight = None
                        continue
                    self.roll_up(idle=True)
                    self._prune()
                    if last_turn:
                        return True
                    self.abort.wait(IDLE_WAIT_S)
                    continue
                self.roll_up(idle=False)
                self._prune()
                after_id = batch[-1].id
                prepared = self._prepare(batch)
                if inflight is not None and not self._complete(inflight):
                    return False
                prepared.future = pool.submit(self._store_batch, prepared)
                inflight = prepared
        return False

    def _registry_due(self) -> bool:
        """Whether a new registry waits to be taken (looking at the file when it is time)."""
        if self.watch is None:
            return False
        fresh = self.watch.check()
        if fresh is not None:
            if fresh == self.registry:
                self._incoming = None
                log.info("registry %s read again: unchanged", fresh.source)
            else:
                self._incoming = fresh
                self._retry_at = 0.0
        return self._incoming is not None and time.monotonic() >= self._retry_at

    def _take_registry(self) -> None:
        """Change to the new registry: store, validator, rollups and keeper together.

        Called between two batches, with none in flight. If the new registry's store cannot be
        opened, the running registry stays and the change is tried again after the look
        interval.
        """
        new = self._incoming
        assert new is not None
        store: Store | None = None
        try:
            store = self._store_for(new)
            store.start()
            rollups = RollupMaintainer(Path(self.settings.data_dir) / ROLLUP_NOTES, new)
        except PilotsError as exc:
            if store is not None:
                store.close()
            wait = self.settings.alert_reload_every_s
            self._retry_at = time.monotonic() + wait
            log.warning("new registry not taken yet, retrying in %.1f s: %s", wait, exc)
            return
        old = self.registry
        self.validator = self._validator(new, self.validator.frames)
        self.rollups.close()
        self.rollups = rollups
        self.keeper.store = store
        self.keeper.registry = new
        if self._owned is not None:
            self._owned.close()
        self.store = self._owned = store
        self.registry = new
        self._incoming = None
        log.info("registry reloaded: %s", registry_change(old, new))

    def roll_up(self, *, idle: bool) -> None:
        """Bring the rollups up to date with what was written: when idle, or every so often.

        Under sustained load the rollups lag by at most `PILOTS_INGEST_ROLLUP_EVERY_S`; a failure
        leaves the notes for the next turn (the readings themselves are already stored).
        """
        due = time.monotonic() - self._rolled_up >= self.settings.ingest_rollup_every_s
        if not (idle or due) or not self.rollups.pending():
            return
        try:
            self.rollups.run(self.store)
        except StoreError as exc:
            log.warning("rollups not updated, will retry: %s", exc)
        except Exception:  # a rollup fault must not stop the writing of readings
            log.exception("rollups not updated, will retry")
        self._rolled_up = time.monotonic()

    def _prune(self) -> None:
        """Prune the quarantine by age when due (a failure waits for the next turn)."""
        try:
            self.keeper.prune_if_due()
        except PilotsError as exc:  # the store's, or the spool's old quarantine's
            log.warning("quarantine not pruned (or old entries not moved), will retry: %s", exc)

    def process_batch(self, batch: list[Spooled]) -> bool:
        """Decode, validate, write and finish one batch; False if aborted before the end."""
        return self._complete(self._prepare(batch))

    def _prepare(self, batch: list[Spooled]) -> _Prepared:
        """Decode and validate a batch into readings, uplinks, refusals and keys."""
        done = process_batch(
            self.router,
            self.validator,
            batch,
            max_payload_bytes=self.settings.ingest_max_payload_bytes,
        )
        return _Prepared(
            ids=[m.id for m in batch],
            oldest_ns=batch[0].received_ns,
            readings=done.readings,
            uplinks=done.uplinks,
            repeats=done.repeats,
            refused=[
                Refused(message.received_ns, message.topic, message.payload, r)
                for message, rejections in zip(batch, done.rejections, strict=True)
                for r in rejections
            ],
            keys=done.keys,
            duplicates=done.duplicates,
        )

    def _store_batch(self, prepared: _Prepared) -> None:
        """Write a batch, then its refusals' quarantine entries (on the store's thread).

        A quarantine that cannot be written here is written again in `_complete`, which
        retries it; only the readings' failure is the batch's.
        """
        self.store.write(prepared.readings, prepared.uplinks, prepared.repeats)
        try:
            self.keeper.keep(prepared.refused)
            prepared.kept = True
        except StoreError as exc:
            log.warning("quarantine entries not written with their batch, retrying: %s", exc)

    def _complete(self, prepared: _Prepared) -> bool:
        """Make sure the batch is in the store, then finish it in the spool."""
        self._store_refused = []
        failed: StoreError | None = None
        if prepared.future is not None:
            try:
                prepared.future.result()
            except StoreError as exc:
                failed = exc
            else:
                self.events.store(True)
                self.events.written(len(prepared.readings))
        if (prepared.future is None or failed is not None) and not self._deliver(
            prepared.readings, prepared.uplinks, failed, repeats=prepared.repeats
        ):
            return False
        refused = prepared.refused + self._store_refused
        if len(prepared.readings):
            self.rollups.note(prepared.readings)
        if not self._quarantine(self._store_refused if prepared.kept else refused):
            return False
        if not self.spool.finish(prepared.ids, prepared.keys):
            log.warning("another writer processed these messages; skipping them")
            return True
        self.events.accepted(len(prepared.readings))
        self.events.duplicates(prepared.duplicates)
        for r in refused:
            self.events.refused(r.rejection.reason.value)
        self.events.latency(max(0.0, (time.time_ns() - prepared.oldest_ns) / 1e9))
        return True

    def _quarantine(self, refused: list[Refused]) -> bool:
        """Keep the refusals' entries in the store, retrying while it is away; False if aborted.

        Entries the store itself refuses are counted as dropped by the keeper, so a quarantine
        that cannot be written never holds up the spool; a retry goes on where the last try
        stopped.
        """
        delay = BACKOFF_MIN_S
        while True:
            try:
                self.keeper.keep(refused)
                return True
            except StoreError as exc:
                self.events.store(False)
                log.warning("quarantine not written, retrying in %.1f s: %s", delay, exc)
            if self.abort.wait(delay * random.uniform(0.5, 1.0)):  # noqa: S311
                return False
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _deliver(
        self,
        readings: Readings,
        uplinks: Uplinks,
        failed: StoreError | None = None,
        *,
        repeats: Uplinks | None = None,
    ) -> bool:
        """Write until accepted (or refused lines are set aside); False if aborted.

        `failed` is the failure of an attempt already made (the pipelined one), handled first.
        """
        if len(readings) == 0 and len(uplinks) == 0 and (repeats is None or len(repeats) == 0):
            return True
        delay = BACKOFF_MIN_S
        while True:
            exc = failed
            failed = None
            if exc is None:
                try:
                    self.store.write(readings, uplinks, repeats)
                except StoreError as error:
                    exc = error
            if exc is None:
                self.events.store(True)
                self.events.written(len(readings))
                return True
            kind = _failure_class(exc)
            self.events.write_error(kind)
            if kind in ("rejected", "too_large"):
                self.events.store(True)
                if repeats is not None and len(repeats):
                    self._write_repeats(repeats)
                return self._isolate(readings, uplinks, exc)
            self.events.store(False)
            retry_after = exc.retry_after_s if isinstance(exc, StoreUnavailableError) else None
            wait = retry_after if retry_after is not None else delay * random.uniform(0.5, 1.0)  # noqa: S311
            if kind == "other":
                log.error("store refused the write, retrying in %.1f s: %s", wait, exc)
            else:
                log.warning("store unavailable, retrying in %.1f s: %s", wait, exc)
            if self.abort.wait(wait):
                return False
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _write_repeats(self, repeats: Uplinks) -> None:
        """Write the repeats of a batch the store refused, on their own, once.

        They only count retransmissions already dropped; if the store refuses them too, that is
        logged and the batch goes on.
        """
        try:
            self.store.write(Readings.empty(), None, repeats)
        except StoreError as exc:
            log.warning("%d repeated transmissions not recorded: %s", len(repeats), exc)

    def _isolate(self, readings: Readings, uplinks: Uplinks, exc: StoreError) -> bool:
        """Halve a refused (or too large) batch and write the halves, recursively.

        A line refused on its own is set aside for the quarantine, so one bad line never holds
        back the others.
        """
        if len(readings) + len(uplinks) > 1:
            # Each half is smaller than the whole, down to a single line (1 + 1 splits in two).
            cut_r = len(readings) - len(readings) // 2
            cut_u = len(uplinks) // 2
            first = self._deliver(readings.take(slice(0, cut_r)), uplinks.take(slice(0, cut_u)))
            return first and self._deliver(
                readings.take(slice(cut_r, None)), uplinks.take(slice(cut_u, None))
            )
        detail = str(exc)[:500]
        text, sensor = self._describe(readings, uplinks)
        self._store_refused.append(
            Refused(
                time.time_ns(),
                STORE_TOPIC,
                text.encode(),
                Rejection(Reason.STORE_REJECTED, detail, sensor),
            )
        )
        log.error("store refused a line, quarantined: %s", detail)
        return True

    def _describe(self, readings: Readings, uplinks: Uplinks) -> tuple[str, str | None]:
        """The refused line in words, and its sensor when it is a reading."""
        if len(readings):
            device = self.registry.device_list[int(readings.device[0])].id
            sensor = self.registry.sensor_list[int(readings.sensor[0])].id
            value = float(readings.value[0])
            text = (
                f"reading device={device} sensor={sensor} ts_ns={int(readings.ts_ns[0])} "
                f"value={value!r}"
            )
            return text, sensor
        device = self.registry.device_list[int(uplinks.device[0])].id
        text = f"uplink device={device} ts_ns={int(uplinks.ts_ns[0])} fcnt={int(uplinks.fcnt[0])}"
        return text, None


def start_store(
    store: Lifecycle, events: Events, abort: Any, give_up: Callable[[], bool] = lambda: False
) -> bool:
    """Start the store, retrying with backoff until it answers; False if aborted first.

    `give_up` ends the wait early (when stopping with nothing left to write).
    """
    delay = BACKOFF_MIN_S
    while not abort.is_set() and not give_up():
        try:
            store.start()
            events.store(True)
            return True
        except StoreError as exc:
            events.store(False)
            events.write_error("unavailable" if isinstance(exc, StoreUnavailableError) else "other")
            log.warning("store not ready, retrying in %.1f s: %s", delay, exc)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not give_up():
            if abort.wait(min(0.2, deadline - time.monotonic())):
                return False
        delay = min(delay * 2, BACKOFF_MAX_S)
    return False

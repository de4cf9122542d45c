"""Ingest's side of the fleet's one quarantine: refusals made into bounded entries in the store.

The writer hands each batch's refusals to a `Keeper` before it removes the batch's messages
from the spool, so a refused message leaves the spool only once its entries are in the store
(or counted as dropped). The keeper bounds what one worker keeps: at most
`PILOTS_QUARANTINE_MAX_PER_DEVICE` entries per source (the registry device the topic names),
`PILOTS_QUARANTINE_MAX_ENTRIES` entries and `PILOTS_QUARANTINE_MAX_BYTES` bytes in all; a
message past a cap is not kept but counted, and entries older than
`PILOTS_QUARANTINE_MAX_AGE_DAYS` are pruned and counted. Each worker bounds and prunes only its
own entries (the `worker` key), so workers never race over one count.

Counts of refusals not kept are written as one running total per (source, reason) and minute
of each worker process: a flood adds at most one point a minute per source and reason, and a
total written again replaces itself. Sources are registry device ids, `unregistered` or `-`,
so no login can grow the store's series by inventing device names.

The quarantine lives outside the spool: refusals never count against the spool's limit and can
never stop the acknowledgement of good messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.errors import StoreRejectedError, StoreTooLargeError
from core.quarantine import (
    DROPPED_AGE,
    DROPPED_CAP,
    KEY_SPACING_NS,
    NO_SOURCE,
    UNREGISTERED,
    QuarantineEntry,
    Refusal,
    Usage,
    entries_for_message,
    entries_for_refusals,
    worker_name,
)
from core.registry import Registry
from core.settings import Settings
from core.store import QuarantineStore
from core.timeutil import DAY_NS, MINUTE_NS
from ingest.spool import LegacyRefusal, Refused, Spool

log = logging.getLogger(__name__)

#: How often a worker prunes its entries by age, re-reads what it holds, and looks for
#: refusals an older release kept in the spool database (seconds).
PRUNE_EVERY_S = 60.0
#: Why refusals were not kept: the store refused their entries.
DROPPED_STORE = "store_refused"
#: Most entry bytes sent to the store in one request (a proxy or a cloud store may refuse
#: larger bodies with 413).
WRITE_CHUNK_BYTES = 2 << 20
#: Old refusals moved from the spool database per step of the migration, and steps per turn.
MIGRATE_ROWS = 200
MIGRATE_STEPS = 10
#: The "caps reached" warning is logged at most this often (seconds).
WARN_EVERY_S = 60.0

DroppedKey = tuple[str, str, str]  # (why, source, reason)


def source_of(topic: str, registry: Registry) -> str:
    """The registry id of the device a topic names; `unregistered`, or `-` when it names none.

    `pilots/<pilot>/<device>/...` by id, `application/<app>/device/<eui>/...` by EUI,
    `v3/<app>@<tenant>/devices/<id>/...` by network-server id (`lns_id`, else id).
    """
    levels = topic.split("/")
    if len(levels) >= 3 and levels[0] == "pilots":
        found = registry.devices.get(levels[2])
        return found.id if found is not None else UNREGISTERED
    if len(levels) >= 4 and levels[0] == "application" and levels[2] == "device":
        by_eui = registry.by_dev_eui.get(levels[3].lower())
        return by_eui.id if by_eui is not None else UNREGISTERED
    if len(levels) >= 4 and levels[0] == "v3" and levels[2] == "devices":
        by_name = registry.by_lns_id.get(levels[3])
        return by_name.id if by_name is not None else UNREGISTERED
    return NO_SOURCE


def _runs(items: Sequence[Refused]) -> list[tuple[int, int]]:
    """(start, end) of each run of refusals from one message (they are adjacent)."""
    runs = []
    start = 0
    while start < len(items):
        first, end = items[start], start + 1
        while (
            end < len(items)
            and items[end].received_ns == first.received_ns
            and items[end].topic == first.topic
            and items[end].payload == first.payload
        ):
            end += 1
        runs.append((start, end))
        start = end
    return runs


def _refusals(items: Sequence[Refused] | Sequence[LegacyRefusal]) -> list[Refusal]:
    return [
        Refusal(r.rejection.reason.value, r.rejection.detail, r.rejection.sensor) for r in items
    ]


def _chunks(entries: Sequence[QuarantineEntry]) -> list[list[QuarantineEntry]]:
    """Entries in runs of at most `WRITE_CHUNK_BYTES` (an entry alone may be larger)."""
    out: list[list[QuarantineEntry]] = [[]]
    size = 0
    for e in entries:
        if out[-1] and size + e.cost_bytes > WRITE_CHUNK_BYTES:
            out.append([])
            size = 0
        out[-1].append(e)
        size += e.cost_bytes
    return [c for c in out if c]


class Keeper:
    """One worker's writer of quarantine entries, with its caps (see the module docstring)."""

    def __init__(
        self,
        store: QuarantineStore,
        settings: Settings,
        worker: str,
        registry: Registry,
        *,
        spool: Spool | None = None,
        on_unkept: Callable[[str, int], None] = lambda why, refusals: None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker = worker_name(worker)
        self.registry = registry
        self.spool = spool
        self.on_unkept = on_unkept
        self._usage: dict[str, Usage] | None = None
        self._pruned_at = float("-inf")
        self._warned_at = float("-inf")
        # Running totals of this process's refusals not kept, in the current minute; the
        # process's own offset in the minute keeps its points apart from an earlier process's.
        self._offset_ns = time.time_ns() % 1_000_000_000 + 1
        self._minute_ns = 0
        self._minute: dict[DroppedKey, int] = {}
        self._pending: _Pending | None = None
        self._migrated_ns = 0
        # The writer's store thread keeps batches while its main thread prunes.
        self._lock = threading.RLock()

    def message_entries(self, refused: Sequence[Refused]) -> list[list[QuarantineEntry]]:
        """The entries of these refusals, one list per message."""
        return [
            entries_for_message(
                worker=self.worker,
                source=source_of(refused[a].topic, self.registry),
                topic=refused[a].topic,
                payload=refused[a].payload,
                received_ns=refused[a].received_ns,
                refusals=_refusals(refused[a:b]),
                keep_bytes=self.settings.quarantine_keep_bytes,
            )
            for a, b in _runs(refused)
        ]

    def _current_usage(self) -> dict[str, Usage]:
        if self._usage is None:
            self._usage = self.store.quarantine_usage(self.worker)
        return self._usage

    def admit(
        self, messages: Sequence[Sequence[QuarantineEntry]]
    ) -> tuple[list[QuarantineEntry], dict[DroppedKey, int], dict[str, Usage]]:
        """Entries within the caps (whole messages), refusals past them, and the usage after."""
        s = self.settings
        usage = dict(self._current_usage())
        entries = sum(u.entries for u in usage.values())
        size = sum(u.bytes for u in usage.values())
        kept: list[QuarantineEntry] = []
        dropped: dict[DroppedKey, int] = {}
        for message in messages:
            if not message:
                continue
            source = message[0].source
            cost = sum(e.cost_bytes for e in message)
            mine = usage.get(source, Usage(0, 0))
            if (
                mine.entries + len(message) > s.quarantine_max_per_device
                or entries + len(message) > s.quarantine_max_entries
                or size + cost > s.quarantine_max_bytes
            ):
                for e in message:
                    key = (DROPPED_CAP, source, e.reason)
                    dropped[key] = dropped.get(key, 0) + e.refusals
                continue
            kept.extend(message)
            usage[source] = Usage(mine.entries + len(message), mine.bytes + cost)
            entries += len(message)
            size += cost
        return kept, dropped, usage

    def _resume(self, key: object, messages: Sequence[Sequence[QuarantineEntry]]) -> _Pending:
        """The batch's admission: decided once, kept while a write of it is retried."""
        if self._pending is None or self._pending.key != key:
            kept, dropped, usage = self.admit(messages)
            self._pending = _Pending(key, _chunks(kept), dropped, usage)
        return self._pending

    def _finish(self, batch: _Pending) -> None:
        """Write what is left of the batch, count what is not kept, commit the usage.

        Chunks the store refuses (400, 413) are counted as `store_refused`; anything else it
        raises leaves the batch pending, so a retry goes on where this one stopped and counts
        nothing twice.
        """
        while batch.written < len(batch.chunks):
            chunk = batch.chunks[batch.written]
            try:
                self.store.add_quarantine(chunk)
            except (StoreRejectedError, StoreTooLargeError) as exc:
                log.error("store refused %d quarantine entries: %s", len(chunk), exc)
                for e in chunk:
                    key = (DROPPED_STORE, e.source, e.reason)
                    batch.dropped[key] = batch.dropped.get(key, 0) + e.refusals
                    held = batch.usage[e.source]
                    batch.usage[e.source] = Usage(held.entries - 1, held.bytes - e.cost_bytes)
            batch.written += 1
        if not batch.counted:
            self._count(batch.dropped)
            batch.counted = True
        self._usage = batch.usage
        self._pending = None

    def keep(self, refused: Sequence[Refused]) -> None:
        """Write the entries of these refusals, or count them as dropped past a cap.

        Raises `StoreError` when the store is away: call it again with the same refusals, and
        it goes on where it stopped (nothing is written or counted twice).
        """
        if not refused:
            return
        key = tuple((r.received_ns, r.topic, r.rejection.reason) for r in refused)
        with self._lock:
            self._finish(self._resume(key, self.message_entries(refused)))

    def _count(self, dropped: dict[DroppedKey, int]) -> None:
        """Add to this minute's running totals of refusals not kept, and write those totals."""
        if not dropped:
            return
        now = time.time_ns()
        minute = now // MINUTE_NS * MINUTE_NS
        if minute != self._minute_ns:
            self._minute_ns, self._minute = minute, {}
        totals = dict(self._minute)
        for key, n in dropped.items():
            totals[key] = totals.get(key, 0) + n
        try:
            self.store.record_dropped(
                self.worker, minute + self._offset_ns, {k: totals[k] for k in dropped}
            )
        except (StoreRejectedError, StoreTooLargeError) as exc:
            log.error("store refused the count of %d refusals: %s", sum(dropped.values()), exc)
            return
        self._minute = totals
        by_why: dict[str, int] = {}
        for (why, _, _), n in dropped.items():
            by_why[why] = by_why.get(why, 0) + n
        for why, n in by_why.items():
            self.on_unkept(why, n)
        if time.monotonic() - self._warned_at >= WARN_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning(
                "quarantine: %d refusals counted, not kept (%s; PILOTS_QUARANTINE_MAX_* caps, "
                "or the store refused them); `pilots quarantine list` shows them",
                sum(dropped.values()),
                ", ".join(sorted(by_why)),
            )

    def prune_if_due(self) -> None:
        """Prune, re-read the usage and migrate old refusals, every `PRUNE_EVERY_S`.

        Prunes this worker's entries by age, re-reads what it holds, and moves a part of the
        refusals an older release kept in the spool's database into the store. The writer
        calls it between batches; a failure is the next turn's.
        """
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        with self._lock:
            now_ns = time.time_ns()
            before_ns = now_ns - int(self.settings.quarantine_max_age_days * DAY_NS)
            pruned = self.store.prune_quarantine(self.worker, before_ns, now_ns)
            if pruned:
                log.info(
                    "quarantine: %d refusals older than the age limit pruned",
                    sum(pruned.values()),
                )
                self.on_unkept(DROPPED_AGE, sum(pruned.values()))
            if self._pending is None:  # a pending batch's admission counted on the old usage
                self._usage = self.store.quarantine_usage(self.worker)
            if self.spool is not None:
                for _ in range(MIGRATE_STEPS):
                    if not self._migrate_step(self.spool):
                        break
            self._pruned_at = time.monotonic()

    def migrate(self, spool: Spool) -> int:
        """Move every refusal an older ingest kept in its spool database into the store."""
        moved = 0
        with self._lock:
            while step := self._migrate_step(spool):
                moved += step
        return moved

    def _migrate_step(self, spool: Spool) -> int:
        """Move up to `MIGRATE_ROWS` old refusals; how many (0: none left)."""
        batch = spool.legacy_quarantine(MIGRATE_ROWS, self.settings.quarantine_keep_bytes)
        if not batch:
            return 0
        messages = []
        start = 0
        while start < len(batch):
            first, end = batch[start], start + 1
            while end < len(batch) and (
                batch[end].received_ns,
                batch[end].topic,
                batch[end].sha256,
            ) == (first.received_ns, first.topic, first.sha256):
                end += 1
            # Older releases did not space receive times: space them now, so that the keys
            # of two old messages never meet.
            received_ns = max(first.received_ns, self._migrated_ns + KEY_SPACING_NS)
            self._migrated_ns = received_ns
            messages.append(
                entries_for_refusals(
                    worker=self.worker,
                    source=source_of(first.topic, self.registry),
                    topic=first.topic,
                    received_ns=received_ns,
                    length=first.length,
                    sha256=first.sha256,
                    head=first.head,
                    refusals=_refusals(batch[start:end]),
                )
            )
            start = end
        self._finish(self._resume(("legacy", batch[0].id, batch[-1].id), messages))
        spool.drop_legacy_quarantine([r.id for r in batch])
        log.info("moved %d quarantine entries from the spool database into the store", len(batch))
        return len(batch)


@dataclass
class _Pending:
    """A batch of entries being written: its admission, and how far the writing got."""

    key: object
    chunks: list[list[QuarantineEntry]]
    dropped: dict[DroppedKey, int]
    usage: dict[str, Usage]
    written: int = 0
    counted: bool = False

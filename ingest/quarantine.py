"""Ingest's side of the fleet's one quarantine: refusals made into bounded entries in the store.

The writer hands each batch's refusals to a `Keeper` before it removes the batch's messages
from the spool, so a refused message leaves the spool only once its entries are in the store
(or counted as dropped). The keeper bounds what one worker keeps: at most
`PILOTS_QUARANTINE_MAX_PER_DEVICE` entries per source (the device or network-server id in the
topic), `PILOTS_QUARANTINE_MAX_ENTRIES` entries and `PILOTS_QUARANTINE_MAX_BYTES` bytes in all;
a message past a cap is not kept but counted, and entries older than
`PILOTS_QUARANTINE_MAX_AGE_DAYS` are pruned and counted. Each worker bounds and prunes only its
own entries (the `worker` key), so workers never race over one count.

The quarantine lives outside the spool: refusals never count against the spool's limit and can
never stop the acknowledgement of good messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from core.errors import StoreError
from core.quarantine import (
    DROPPED_AGE,
    DROPPED_CAP,
    NO_SOURCE,
    QuarantineEntry,
    Refusal,
    Usage,
    entries_for_message,
    tag_safe,
)
from core.settings import Settings
from core.store import QuarantineStore
from ingest.spool import Refused, Spool

log = logging.getLogger("pilots.ingest.quarantine")

#: How often a worker prunes its entries by age and re-reads what it holds (seconds).
PRUNE_EVERY_S = 60.0
#: Why refusals were not kept: the store refused their entries.
DROPPED_STORE = "store_refused"
NS_PER_DAY = 86_400 * 1_000_000_000


def source_of(topic: str) -> str:
    """The device (or network-server device) id a topic names, `-` when it names none.

    `pilots/<pilot>/<device>/...`, `application/<app>/device/<eui>/...`,
    `v3/<app>@<tenant>/devices/<id>/...`; anything else has no source.
    """
    levels = topic.split("/")
    if len(levels) >= 3 and levels[0] == "pilots":
        return tag_safe(levels[2])
    for i, level in enumerate(levels[:-1]):
        if level in ("device", "devices") and i > 0:
            return tag_safe(levels[i + 1])
    return NO_SOURCE


def message_entries(
    refused: Sequence[Refused], *, worker: str, keep_bytes: int
) -> list[list[QuarantineEntry]]:
    """The entries of these refusals, one list per message (refusals of a message are adjacent)."""
    out: list[list[QuarantineEntry]] = []
    start = 0
    while start < len(refused):
        first = refused[start]
        end = start + 1
        while (
            end < len(refused)
            and refused[end].received_ns == first.received_ns
            and refused[end].topic == first.topic
            and refused[end].payload == first.payload
        ):
            end += 1
        out.append(
            entries_for_message(
                worker=worker,
                source=source_of(first.topic),
                topic=first.topic,
                payload=first.payload,
                received_ns=first.received_ns,
                refusals=[
                    Refusal(r.rejection.reason.value, r.rejection.detail, r.rejection.sensor)
                    for r in refused[start:end]
                ],
                keep_bytes=keep_bytes,
            )
        )
        start = end
    return out


class Keeper:
    """One worker's writer of quarantine entries, with its caps (see the module docstring)."""

    def __init__(
        self,
        store: QuarantineStore,
        settings: Settings,
        worker: str,
        on_unkept: Callable[[str, int], None] = lambda why, refusals: None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.worker = tag_safe(worker)
        self.on_unkept = on_unkept
        self._usage: dict[str, Usage] | None = None
        self._pruned_at = float("-inf")

    def _current_usage(self) -> dict[str, Usage]:
        if self._usage is None:
            self._usage = self.store.quarantine_usage(self.worker)
        return self._usage

    def admit(
        self, messages: Sequence[Sequence[QuarantineEntry]]
    ) -> tuple[list[QuarantineEntry], dict[tuple[str, str, str], int], dict[str, Usage]]:
        """Entries within the caps (whole messages), refusals past them, and the usage after."""
        s = self.settings
        usage = dict(self._current_usage())
        entries = sum(u.entries for u in usage.values())
        size = sum(u.bytes for u in usage.values())
        kept: list[QuarantineEntry] = []
        dropped: dict[tuple[str, str, str], int] = {}
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

    def keep(self, refused: Sequence[Refused]) -> None:
        """Write the entries of these refusals, or count them as dropped past a cap.

        Raises `StoreError` with nothing counted twice: call it again with the same refusals.
        """
        self.prune_if_due()
        if not refused:
            return
        messages = message_entries(
            refused, worker=self.worker, keep_bytes=self.settings.quarantine_keep_bytes
        )
        kept, dropped, usage = self.admit(messages)
        self.store.add_quarantine(kept)
        if dropped:
            log.warning(
                "quarantine caps reached (PILOTS_QUARANTINE_MAX_*): %d refusals counted, not kept",
                sum(dropped.values()),
            )
            self.store.record_dropped(self.worker, time.time_ns(), dropped)
        self._usage = usage
        self._report(dropped)

    def _report(self, dropped: dict[tuple[str, str, str], int]) -> None:
        by_why: dict[str, int] = {}
        for (why, _, _), n in dropped.items():
            by_why[why] = by_why.get(why, 0) + n
        for why, n in by_why.items():
            self.on_unkept(why, n)

    def count_lost(self, refused: Sequence[Refused], exc: StoreError) -> None:
        """Count refusals whose entries the store itself refused (logged; never raises)."""
        dropped: dict[tuple[str, str, str], int] = {}
        for r in refused:
            key = (DROPPED_STORE, source_of(r.topic), r.rejection.reason.value)
            dropped[key] = dropped.get(key, 0) + 1
        log.error("store refused %d quarantine entries, counted only: %s", len(refused), exc)
        self._report(dropped)
        try:
            self.store.record_dropped(self.worker, time.time_ns(), dropped)
        except StoreError as again:
            log.error("and refused their count: %s", again)

    def prune_if_due(self) -> None:
        """Prune this worker's entries by age, and re-read its usage, every `PRUNE_EVERY_S`."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        now_ns = time.time_ns()
        before_ns = now_ns - int(self.settings.quarantine_max_age_days * NS_PER_DAY)
        pruned = self.store.prune_quarantine(self.worker, before_ns, now_ns)
        if pruned:
            log.info(
                "quarantine: %d refusals older than the age limit pruned", sum(pruned.values())
            )
            self._report({(DROPPED_AGE, *key): n for key, n in pruned.items()})
        self._usage = self.store.quarantine_usage(self.worker)
        self._pruned_at = time.monotonic()

    def migrate(self, spool: Spool) -> int:
        """Move refusals an older ingest kept in its spool database into the store."""
        moved = 0
        while batch := spool.legacy_quarantine(500):
            ids = [i for i, _ in batch]
            messages = message_entries(
                [r for _, r in batch],
                worker=self.worker,
                keep_bytes=self.settings.quarantine_keep_bytes,
            )
            kept, dropped, usage = self.admit(messages)
            self.store.add_quarantine(kept)
            self.store.record_dropped(self.worker, time.time_ns(), dropped)
            self._usage = usage
            self._report(dropped)
            spool.drop_legacy_quarantine(ids)
            moved += len(ids)
        if moved:
            log.info("moved %d quarantine entries from the spool database into the store", moved)
        return moved

"""Replaying the quarantine: refused messages processed again, typically after a registry fix.

Each quarantined message (its entries share worker, topic, receive time and digest) is decoded
and validated again with the current registry and settings, as of its original receive time.
What passes now is written to the store; what is still refused is written back as entries of
the message, and its other old entries (whatever their reason) are removed, so the quarantine
ends up holding exactly what the current registry refuses. Nothing is removed before the store
has accepted the message's readings. Entries the store itself refused (topic `(store)`) carry no
message to decode, and entries whose payload was kept only in part cannot be decoded again:
both are left alone and counted.

The quarantine is read oldest first, a page of entries at a time, each page starting after the
last message of the one before: still-refused entries are rewritten behind that point, so a
replay reaches every entry once, however large the quarantine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.quarantine import KEY_SPACING_NS, QuarantineEntry, Refusal, entries_for_message
from core.registry import Registry
from core.settings import Settings
from core.store import Store
from ingest.decoders import Router
from ingest.process import columns, process
from ingest.quarantine import source_of
from ingest.validate import Checked, Validator
from ingest.writer import STORE_TOPIC

#: Entries one page of a replay reads (their payloads are held in memory at once).
PAGE_ENTRIES = 2_000

MessageKey = tuple[str, str, int, str]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did."""

    messages: int
    readings_stored: int
    still_refused: int
    skipped: int
    truncated: int = 0


@dataclass
class _Replay:
    """One replay's tools and counts."""

    settings: Settings
    registry: Registry
    store: Store
    dry_run: bool
    messages: int = 0
    stored: int = 0
    still: int = 0
    skipped: int = 0
    truncated: int = 0

    def __post_init__(self) -> None:
        self.seen: set[tuple[str, str, str, int]] = set()  # entries counted
        self.done: set[MessageKey] = set()  # messages replayed
        self.router = Router(self.settings.ingest_routes)
        self.validator = Validator(
            self.registry,
            max_future_s=self.settings.ingest_max_future_s,
            max_age_days=self.settings.ingest_max_age_days,
        )

    def result(self) -> ReplayResult:
        """What it did."""
        return ReplayResult(self.messages, self.stored, self.still, self.skipped, self.truncated)

    def page(self, entries: list[QuarantineEntry]) -> None:
        """Replay the messages of one page of entries (those not replayed already)."""
        fresh = [e for e in entries if e.key not in self.seen]
        self.seen.update(e.key for e in fresh)
        self.skipped += sum(1 for e in fresh if e.topic == STORE_TOPIC)
        self.truncated += sum(1 for e in fresh if e.topic != STORE_TOPIC and not e.complete)
        messages: dict[MessageKey, QuarantineEntry] = {}
        for entry in fresh:
            if entry.topic != STORE_TOPIC and entry.complete and entry.message_key not in self.done:
                messages.setdefault(entry.message_key, entry)
        self.done.update(messages)
        new_entries: list[QuarantineEntry] = []
        old_entries: list[QuarantineEntry] = []
        done: list[tuple[Checked, int]] = []
        for first in messages.values():
            checked = process(
                self.router,
                self.validator,
                first.topic,
                first.head,
                first.received_ns,
                max_payload_bytes=self.settings.ingest_max_payload_bytes,
            )
            done.append((checked, first.received_ns))
            new_entries.extend(
                entries_for_message(
                    worker=first.worker,
                    source=source_of(first.topic, self.registry),
                    topic=first.topic,
                    payload=first.head,
                    received_ns=first.received_ns,
                    refusals=[
                        Refusal(r.reason.value, r.detail, r.sensor) for r in checked.rejections
                    ],
                    keep_bytes=max(self.settings.quarantine_keep_bytes, len(first.head)),
                )
            )
            siblings = self._message(first)
            old_entries.extend(siblings)
            self.seen.update(e.key for e in siblings)
            self.stored += len(checked.value)
        self.messages += len(messages)
        self.still += sum(e.refusals for e in new_entries)
        if self.dry_run or not messages:
            return
        self.store.write(*columns(done))
        self.store.add_quarantine(new_entries)
        rewritten = {(e.worker, e.source, e.reason, e.ts_ns) for e in new_entries}
        self.store.delete_quarantine(
            [e for e in old_entries if (e.worker, e.source, e.reason, e.ts_ns) not in rewritten]
        )

    def _message(self, first: QuarantineEntry) -> list[QuarantineEntry]:
        """Every entry of the message `first` belongs to, whatever its reason."""
        return [
            e
            for e in self.store.quarantine_entries(
                worker=first.worker,
                since_ns=first.received_ns,
                until_ns=first.received_ns + KEY_SPACING_NS,
                limit=None,
            )
            if e.message_key == first.message_key
        ]


def replay(
    settings: Settings,
    registry: Registry,
    store: Store,
    *,
    reason: str | None = None,
    ids: Sequence[int] | None = None,
    dry_run: bool = False,
    page: int = PAGE_ENTRIES,
) -> ReplayResult:
    """Process quarantined messages again (those of one reason, or these entry ids)."""
    run = _Replay(settings, registry, store, dry_run)
    if ids is not None:
        run.page(store.quarantine_entries(reason=reason, ids=ids, oldest_first=True, limit=None))
        return run.result()
    since: int | None = None
    again = 0  # entries at `since` already read, which the next page reads again first
    while batch := store.quarantine_entries(
        reason=reason, since_ns=since, oldest_first=True, limit=page + again
    ):
        run.page(batch)
        if len(batch) < page + again:
            break
        # The next page starts at this one's last instant, where several workers' entries may
        # stand, not all in this page: it asks for as many more as it will read again.
        since = batch[-1].ts_ns
        again = sum(1 for e in batch if e.ts_ns == since)
    return run.result()

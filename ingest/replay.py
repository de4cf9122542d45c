"""Replaying the quarantine: refused messages processed again, typically after a registry fix.

Each quarantined message (its entries share worker, topic, receive time and digest) is decoded
and validated again with the current registry and settings, as of its original receive time.
What passes now is written to the store; what is still refused is written back as entries with
the same keys, and the message's other old entries are removed, so the quarantine ends up
holding exactly what the current registry refuses. Nothing is removed before the store has
accepted the message's readings. Entries the store itself refused (topic `(store)`) carry no
message to decode, and entries whose payload was kept only in part cannot be decoded again:
both are left alone and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.quarantine import QuarantineEntry, Refusal, entries_for_message
from core.registry import Registry
from core.settings import Settings
from core.store import Store
from ingest.decoders import Router
from ingest.process import columns, process
from ingest.validate import Checked, Validator
from ingest.writer import STORE_TOPIC

#: Most entries one replay reads (their payloads are held in memory); run it again for more.
REPLAY_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did."""

    messages: int
    readings_stored: int
    still_refused: int
    skipped: int
    truncated: int = 0


def replay(
    settings: Settings,
    registry: Registry,
    store: Store,
    *,
    reason: str | None = None,
    ids: Sequence[int] | None = None,
    dry_run: bool = False,
    limit: int = REPLAY_MAX_ENTRIES,
) -> ReplayResult:
    """Process quarantined messages again (those of one reason, or these entry ids)."""
    entries = store.quarantine_entries(reason=reason, ids=ids, limit=limit)
    skipped = sum(1 for e in entries if e.topic == STORE_TOPIC)
    truncated = sum(1 for e in entries if e.topic != STORE_TOPIC and not e.complete)
    messages: dict[tuple[str, str, int, str], list[QuarantineEntry]] = {}
    for entry in sorted(entries, key=lambda e: e.ts_ns):
        if entry.topic != STORE_TOPIC and entry.complete:
            messages.setdefault(entry.message_key, []).append(entry)
    router = Router(settings.ingest_routes)
    validator = Validator(
        registry,
        max_future_s=settings.ingest_max_future_s,
        max_age_days=settings.ingest_max_age_days,
    )
    stored = 0
    new_entries: list[QuarantineEntry] = []
    done: list[tuple[Checked, int]] = []
    for group in messages.values():
        first = group[0]
        checked = process(
            router,
            validator,
            first.topic,
            first.head,
            first.received_ns,
            max_payload_bytes=settings.ingest_max_payload_bytes,
        )
        done.append((checked, first.received_ns))
        new_entries.extend(
            entries_for_message(
                worker=first.worker,
                source=first.source,
                topic=first.topic,
                payload=first.head,
                received_ns=first.received_ns,
                refusals=[Refusal(r.reason.value, r.detail, r.sensor) for r in checked.rejections],
                keep_bytes=max(settings.quarantine_keep_bytes, len(first.head)),
            )
        )
        stored += len(checked.value)
    if not dry_run and messages:
        store.write(*columns(done))
        store.add_quarantine(new_entries)
        rewritten = {(e.worker, e.source, e.reason, e.ts_ns) for e in new_entries}
        store.delete_quarantine(
            [
                e
                for group in messages.values()
                for e in group
                if (e.worker, e.source, e.reason, e.ts_ns) not in rewritten
            ]
        )
    still = sum(e.refusals for e in new_entries)
    return ReplayResult(len(messages), stored, still, skipped, truncated)

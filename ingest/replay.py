"""Replaying the quarantine: refused messages processed again, typically after a registry fix.

Each quarantined message (all its entries share topic, payload and receive time) is decoded and
validated again with the current registry and settings, as of its original receive time. What
passes now is written to the store; what is still refused replaces the old entries, so the
quarantine ends up holding exactly what the current registry refuses. Nothing is removed before
the store has accepted the message's readings. Entries the store itself refused (topic
`(store)`) carry no message to decode and are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.registry import Registry
from core.settings import Settings
from core.store import Store
from ingest.decoders import Router
from ingest.process import columns, process
from ingest.quarantine import Entry, Quarantine
from ingest.spool import Refused
from ingest.validate import Checked, Validator
from ingest.writer import STORE_TOPIC


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay did."""

    messages: int
    readings_stored: int
    still_refused: int
    skipped: int


def replay(
    settings: Settings,
    registry: Registry,
    store: Store,
    quarantine: Quarantine,
    *,
    reason: str | None = None,
    ids: Sequence[int] | None = None,
    dry_run: bool = False,
) -> ReplayResult:
    """Process quarantined messages again (those of one reason, or these entry ids)."""
    entries = quarantine.entries(limit=None, reason=reason, ids=ids, oldest_first=True)
    skipped = sum(1 for e in entries if e.topic == STORE_TOPIC)
    messages: dict[tuple[int, str, bytes], list[Entry]] = {}
    for entry in entries:
        if entry.topic != STORE_TOPIC:
            messages.setdefault((entry.received_ns, entry.topic, entry.payload), []).append(entry)
    router = Router(settings.ingest_routes)
    validator = Validator(
        registry,
        max_future_s=settings.ingest_max_future_s,
        max_age_days=settings.ingest_max_age_days,
    )
    stored = 0
    refused: list[Refused] = []
    done: list[tuple[Checked, int]] = []
    for received_ns, topic, payload in messages:
        checked = process(
            router,
            validator,
            topic,
            payload,
            received_ns,
            max_payload_bytes=settings.ingest_max_payload_bytes,
        )
        done.append((checked, received_ns))
        refused.extend(Refused(received_ns, topic, payload, r) for r in checked.rejections)
        stored += len(checked.value)
    if not dry_run and messages:
        store.write(*columns(done))
        quarantine.add(refused)
        quarantine.delete([e.id for group in messages.values() for e in group])
    return ReplayResult(len(messages), stored, len(refused), skipped)

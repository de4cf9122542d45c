"""What ingest refused and why, read from the store: the fleet's one quarantine (admin only)."""

from __future__ import annotations

from datetime import UTC

from api.schemas import DroppedOut, QuarantineEntryOut, QuarantineOut
from core.quarantine import QuarantineEntry
from core.store import QuarantineStore
from core.timeutil import ns_to_datetime


def entry_out(e: QuarantineEntry) -> QuarantineEntryOut:
    """One entry as the API shows it."""
    return QuarantineEntryOut(
        id=e.id,
        received=ns_to_datetime(e.received_ns, UTC),
        worker=e.worker,
        source=e.source,
        topic=e.topic,
        reason=e.reason,
        detail=e.detail,
        sensor=e.sensor,
        refusals=e.refusals,
        length=e.length,
        sha256=e.sha256,
        truncated=not e.complete,
        payload=e.head.decode("utf-8", errors="replace"),
    )


def listing(
    store: QuarantineStore, *, reason: str | None, source: str | None, limit: int
) -> QuarantineOut:
    """Refusals kept per reason, those no longer kept, and the newest entries."""
    summary = store.quarantine_summary()
    entries = store.quarantine_entries(reason=reason, source=source, limit=limit)
    return QuarantineOut(
        counts=summary.kept,
        dropped=[
            DroppedOut(why=why, reason=r, refusals=n)
            for (why, r), n in sorted(summary.dropped.items())
        ],
        entries=[entry_out(e) for e in entries],
    )

"""What ingest refused and why, read from ingest's own database (admin only)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from api.schemas import QuarantineEntryOut, QuarantineOut
from core.timeutil import ns_to_datetime
from ingest.quarantine import Quarantine
from ingest.spool import DATABASE


def listing(data_dir: Path, *, reason: str | None, limit: int) -> QuarantineOut:
    """Counts by reason and the newest entries; empty when ingest has no database here."""
    if not (data_dir / DATABASE).exists():
        return QuarantineOut(counts={}, entries=[])
    quarantine = Quarantine.in_data_dir(data_dir)
    try:
        counts = quarantine.counts()
        entries = quarantine.entries(limit=limit, reason=reason)
    finally:
        quarantine.close()
    return QuarantineOut(
        counts=counts,
        entries=[
            QuarantineEntryOut(
                id=e.id,
                received=ns_to_datetime(e.received_ns, UTC),
                topic=e.topic,
                reason=e.reason,
                detail=e.detail,
                sensor=e.sensor,
                payload=e.payload.decode("utf-8", errors="replace"),
            )
            for e in entries
        ],
    )

"""The quarantine's value types: what ingest refused, as the store keeps it for the whole fleet.

Every ingest worker writes its refusals to the store of record (InfluxDB, or the embedded store),
so the API, `pilots quarantine list` and `replay` read one quarantine whatever the number of
workers. An entry is bounded: it keeps the payload's length, its SHA-256 and only its first
`PILOTS_QUARANTINE_KEEP_BYTES` bytes (a payload no longer than that is kept whole and can be
replayed). Entries past a cap, or older than the age limit, are removed but counted
(`Dropped`), so nothing disappears without a number.

An entry is keyed by (worker, source, reason, `ts_ns`) where `ts_ns` is the message's receive
time plus the entry's place in the message: processing a message again (after a crash, or a
replay) rewrites the same keys, so entries are idempotent like readings. This module holds value
types and pure helpers only; it reads and writes nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

#: Refusals of one message kept as entries of their own; the rest are folded into one entry per
#: reason (its `refusals` says how many it stands for).
ENTRIES_PER_MESSAGE = 8

#: A message yields at most `ENTRIES_PER_MESSAGE` + one per reason (a few dozen) entries. The
#: receiver spaces the receive times of one worker at least this many nanoseconds apart, so the
#: keys of two messages never meet.
KEY_SPACING_NS = 64

#: `source` and `worker` become tag values and query literals: kept to this alphabet.
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")

#: The source of refusals that came from no device-named topic (the store's own refusals).
NO_SOURCE = "-"
#: The source of refusals whose topic names no registry device (sources are tag values: only
#: registry ids and these two, so a login inventing device names cannot grow the series).
UNREGISTERED = "unregistered"

#: Why entries were removed without being replayed.
DROPPED_CAP = "cap"
DROPPED_AGE = "age"


def worker_name(client_id: str) -> str:
    """A worker's name in the quarantine: its client id, other characters made `_`."""
    return re.sub(r"[^A-Za-z0-9_.:@-]", "_", client_id)[:64] or NO_SOURCE


def tag_safe(name: str) -> str:
    """`name` if it is a safe source or worker name, `NO_SOURCE` otherwise."""
    return name if _NAME.match(name) else NO_SOURCE


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One refused message, frame or reading, as the store keeps it."""

    ts_ns: int
    worker: str
    source: str
    reason: str
    received_ns: int
    topic: str
    detail: str
    sensor: str | None
    length: int
    sha256: str
    head: bytes
    refusals: int = 1

    @property
    def id(self) -> int:
        """The entry's id in listings and `replay --entry`: its key time."""
        return self.ts_ns

    @property
    def complete(self) -> bool:
        """The whole payload is kept (it can be replayed)."""
        return len(self.head) == self.length

    @property
    def cost_bytes(self) -> int:
        """What the entry costs against `PILOTS_QUARANTINE_MAX_BYTES`."""
        return len(self.head) + len(self.detail) + len(self.topic) + 128

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The entry's key in the store: (worker, source, reason, time)."""
        return (self.worker, self.source, self.reason, self.ts_ns)

    @property
    def message_key(self) -> tuple[str, str, int, str]:
        """Entries of one message share this key (worker, topic, receive time, digest)."""
        return (self.worker, self.topic, self.received_ns, self.sha256)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal ready to become entries: the message's facts and why it was refused."""

    reason: str
    detail: str
    sensor: str | None = None


def clean(text: str, limit: int) -> str:
    """Text as the store can take it: at most `limit` characters, lone surrogates escaped."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def entries_for_message(
    *,
    worker: str,
    source: str,
    topic: str,
    payload: bytes,
    received_ns: int,
    refusals: list[Refusal],
    keep_bytes: int,
) -> list[QuarantineEntry]:
    """The entries of one message's refusals: bounded in number and in bytes."""
    if not refusals:
        return []
    return entries_for_refusals(
        worker=worker,
        source=source,
        topic=topic,
        received_ns=received_ns,
        length=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        head=payload[:keep_bytes],
        refusals=refusals,
    )


def entries_for_refusals(
    *,
    worker: str,
    source: str,
    topic: str,
    received_ns: int,
    length: int,
    sha256: str,
    head: bytes,
    refusals: list[Refusal],
) -> list[QuarantineEntry]:
    """The entries of one message's refusals, from the payload's length, digest and head."""
    worker = tag_safe(worker)
    source = tag_safe(source)
    topic = clean(topic, 512)
    kept = refusals[:ENTRIES_PER_MESSAGE]
    folded: dict[str, list[Refusal]] = {}
    for r in refusals[ENTRIES_PER_MESSAGE:]:
        folded.setdefault(r.reason, []).append(r)
    rows = [(r.reason, r.detail, r.sensor, 1) for r in kept] + [
        (reason, f"{len(rest)} more of this message: {rest[0].detail[:500]}", None, len(rest))
        for reason, rest in folded.items()
    ]
    return [
        QuarantineEntry(
            ts_ns=received_ns + i,
            worker=worker,
            source=source,
            reason=reason,
            received_ns=received_ns,
            topic=topic,
            detail=clean(detail, 1000),
            sensor=None if sensor is None else clean(sensor, 64),
            length=length,
            sha256=sha256,
            head=head,
            refusals=count,
        )
        for i, (reason, detail, sensor, count) in enumerate(rows[:KEY_SPACING_NS])
    ]


@dataclass(frozen=True, slots=True)
class QuarantineSummary:
    """Refusals kept per reason, and those removed (by cap or age) per (why, reason)."""

    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one worker's entries of one source hold."""

    entries: int
    bytes: int

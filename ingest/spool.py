"""The spool: ingest's durable buffer between the broker and everything after it.

The receiver commits each batch of MQTT messages here, raw (topic, payload, receive time), in
one SQLite transaction, before acknowledging them to the broker. The writer then takes the
oldest messages, decodes and validates them, writes what is valid to the store, and in one
transaction removes them from the spool and records their quarantine entries and
retransmission keys. So a message is durable before it is acknowledged, and it leaves the spool
only once every reading it carries is in the store or in the quarantine (which the store keeps
too, `ingest.quarantine`).

Spooling raw messages keeps the path to the acknowledgement short (no decoding before the
commit: a bad payload can never hold up an acknowledgement), and lets decoding and the store
writes run in another process, on another core.

SQLite runs in WAL mode with `synchronous=FULL`: a committed batch survives a crash of the
process and of the machine. One file, `PILOTS_DATA_DIR/ingest.sqlite`, holds the spool and the
retransmission keys.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.durable import open_durable
from core.errors import PilotsError
from ingest.reasons import Reason, Rejection

DATABASE = "ingest.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ns INTEGER NOT NULL,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS frame_keys (
    device  TEXT    NOT NULL,
    fcnt    INTEGER NOT NULL,
    digest  INTEGER NOT NULL,
    seen_ns INTEGER NOT NULL,
    PRIMARY KEY (device, fcnt, digest)
) WITHOUT ROWID;
"""

FrameKey = tuple[str, int, int]


def _reason(code: str) -> Reason:
    try:
        return Reason(code)
    except ValueError:
        return Reason.INTERNAL_ERROR


class SpoolError(PilotsError):
    """The spool database could not be written or read (disk full, permissions)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A rejection together with the message it came from, ready to be quarantined."""

    received_ns: int
    topic: str
    payload: bytes
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class LegacyRefusal:
    """A refusal an older ingest kept in the spool database, its payload as length and head."""

    id: int
    received_ns: int
    topic: str
    head: bytes
    length: int
    sha256: str
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class Spooled:
    """One message as the spool holds it."""

    id: int
    received_ns: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Depth:
    """How much the spool holds."""

    messages: int
    bytes: int
    oldest_ns: int | None


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the ingest database with the schema in place."""
    try:
        return open_durable(path, SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise SpoolError(f"cannot open the ingest database {path}: {exc}") from exc


class Spool:
    """One connection to the spool (see the module docstring); safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._lock = threading.Lock()
        self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])

    def _fail(self, what: str, exc: sqlite3.Error) -> SpoolError:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        return SpoolError(f"cannot {what} the spool {self.path}: {exc}")

    def append(self, messages: Sequence[tuple[int, str, bytes]]) -> None:
        """Keep (received_ns, topic, payload) messages durably, in one transaction."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO messages (received_ns, topic, payload) VALUES (?, ?, ?)",
                    messages,
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("add to", exc) from exc

    def take(self, limit: int, *, after_id: int = 0, max_bytes: int | None = None) -> list[Spooled]:
        """The oldest messages after `after_id`, which stay in the spool until `finish`.

        At most `limit` of them and, beyond the first, at most `max_bytes` of payload.
        """
        with self._lock:
            try:
                cursor = self._db.execute(
                    "SELECT id, received_ns, topic, payload FROM messages WHERE id > ? "
                    "ORDER BY id LIMIT ?",
                    (after_id, limit),
                )
                out: list[Spooled] = []
                size = 0
                for row in cursor:
                    size += len(row[3])
                    if out and max_bytes is not None and size > max_bytes:
                        break
                    out.append(Spooled(*row))
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return out

    def finish(self, ids: Sequence[int], frame_keys: Iterable[tuple[FrameKey, int]] = ()) -> bool:
        """Remove processed messages, keeping their retransmission keys.

        All in one transaction, and only if every message is still there: False (and nothing
        changed) when another writer got to them first.
        """
        marks = ",".join("?" * len(ids))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                # Only `?` placeholders are formatted in; the ids are bound parameters.
                removed = self._db.execute(
                    f"DELETE FROM messages WHERE id IN ({marks})",  # noqa: S608
                    list(ids),
                ).rowcount
                if removed != len(ids):
                    self._db.execute("ROLLBACK")
                    return False
                self._db.executemany(
                    "INSERT OR REPLACE INTO frame_keys VALUES (?, ?, ?, ?)",
                    [(*key, seen_ns) for key, seen_ns in frame_keys],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("finish messages in", exc) from exc
        return True

    def used_bytes(self) -> int:
        """Bytes the database file uses (free pages left by removed messages not counted)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages - free) * self._page_size

    def depth(self) -> Depth:
        """Messages held, their payload bytes, and when the oldest was received."""
        with self._lock:
            count, size, oldest = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(received_ns) FROM messages"
            ).fetchone()
        return Depth(int(count), int(size), oldest)

    def frame_keys(self, since_ns: int) -> dict[FrameKey, int]:
        """Retransmission keys first seen at or after `since_ns` (older ones are dropped)."""
        with self._lock:
            self._db.execute("DELETE FROM frame_keys WHERE seen_ns < ?", (since_ns,))
            rows = self._db.execute(
                "SELECT device, fcnt, digest, seen_ns FROM frame_keys"
            ).fetchall()
        return {(device, fcnt, digest): seen for device, fcnt, digest, seen in rows}

    def legacy_quarantine(self, limit: int, keep_bytes: int) -> list[LegacyRefusal]:
        """Refusals an older ingest kept in this database (`ingest.quarantine.Keeper.migrate`).

        Each payload is read only in part (its first `keep_bytes`) and hashed in pieces, so
        that old junk of any size costs little memory.
        """
        with self._lock:
            try:
                if not self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'"
                ).fetchone():
                    return []
                rows = self._db.execute(
                    "SELECT id, received_ns, topic, substr(payload, 1, ?), length(payload), "
                    "reason, detail, sensor FROM quarantine ORDER BY id LIMIT ?",
                    (max(keep_bytes, 1), limit),
                ).fetchall()
                if not rows:
                    self._db.execute("DROP TABLE quarantine")
                out = []
                for i, ns, topic, head, length, reason, detail, sensor in rows:
                    digest = hashlib.sha256()
                    with self._db.blobopen("quarantine", "payload", i, readonly=True) as blob:
                        while chunk := blob.read(1 << 20):
                            digest.update(chunk)
                    out.append(
                        LegacyRefusal(
                            i,
                            ns,
                            topic,
                            bytes(head)[:keep_bytes],
                            length,
                            digest.hexdigest(),
                            Rejection(_reason(reason), detail, sensor),
                        )
                    )
            except sqlite3.Error as exc:
                raise self._fail("read the old quarantine of", exc) from exc
        return out

    def drop_legacy_quarantine(self, ids: Sequence[int]) -> None:
        """Remove old refusals once they are in the store."""
        marks = ",".join("?" * len(ids))
        with self._lock:
            try:
                self._db.execute(f"DELETE FROM quarantine WHERE id IN ({marks})", list(ids))  # noqa: S608
            except sqlite3.Error as exc:
                raise self._fail("clear the old quarantine of", exc) from exc

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

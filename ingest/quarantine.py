"""The quarantine: every refused message or reading, kept with its raw payload and reason.

Entries live in SQLite next to the other local state, so they survive restarts and can be
listed and counted by reason. An entry is committed before the message it came from is
acknowledged to the broker: nothing is dropped without a trace.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import PilotsError
from ingest.reasons import Rejection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    received_ns INTEGER NOT NULL,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    reason      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    sensor      TEXT
);
CREATE INDEX IF NOT EXISTS quarantine_reason ON quarantine (reason);
"""


class QuarantineError(PilotsError):
    """The quarantine database could not be written or read."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One refused message or reading."""

    id: int
    received_ns: int
    topic: str
    payload: bytes
    reason: str
    detail: str
    sensor: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """A rejection together with the message it came from, ready to be kept."""

    received_ns: int
    topic: str
    payload: bytes
    rejection: Rejection


class Quarantine:
    """The quarantine database; one instance may be shared between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise QuarantineError(f"cannot open quarantine {path}: {exc}") from exc

    def add(self, refused: Iterable[Refused]) -> int:
        """Keep the entries in one committed transaction; returns how many."""
        rows = [
            (
                r.received_ns,
                r.topic,
                r.payload,
                r.rejection.reason.value,
                r.rejection.detail,
                r.rejection.sensor,
            )
            for r in refused
        ]
        if not rows:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO quarantine (received_ns, topic, payload, reason, detail, sensor) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise QuarantineError(f"cannot write quarantine {self.path}: {exc}") from exc
        return len(rows)

    def counts(self) -> dict[str, int]:
        """Entries per reason."""
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason"
            ).fetchall()
        return {reason: n for reason, n in rows}

    def entries(self, *, limit: int = 100, reason: str | None = None) -> list[Entry]:
        """The newest entries first, optionally of one reason."""
        sql = "SELECT id, received_ns, topic, payload, reason, detail, sensor FROM quarantine"
        params: list[object] = []
        if reason is not None:
            sql += " WHERE reason = ?"
            params.append(reason)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [Entry(*row) for row in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

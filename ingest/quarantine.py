"""The quarantine: every refused message or reading, kept with its raw payload and reason.

Entries are written by ingest in the same transaction as the spool batch of their message (see
`ingest.spool`), so they exist before the message is acknowledged: nothing is dropped without
a trace. This module reads them (list, count by reason) and supports replay, which removes
entries once their messages have been processed again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.spool import DATABASE, INSERT_QUARANTINE, Refused, SpoolError, connect, quarantine_rows


class QuarantineError(SpoolError):
    """The quarantine could not be read or written."""


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


class Quarantine:
    """The quarantine table of an ingest database; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Quarantine:
        """The quarantine of the ingest whose `PILOTS_DATA_DIR` this is."""
        return cls(data_dir / DATABASE)

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise QuarantineError(f"quarantine {self.path}: {exc}") from exc

    def add(self, refused: Iterable[Refused]) -> int:
        """Keep entries in one committed transaction; returns how many."""
        rows = quarantine_rows(refused)
        if rows:
            with self._lock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany(INSERT_QUARANTINE, rows)
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise QuarantineError(f"cannot write quarantine {self.path}: {exc}") from exc
        return len(rows)

    def counts(self) -> dict[str, int]:
        """Entries per reason."""
        rows = self._run("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason")
        return {str(reason): int(str(n)) for reason, n in rows}

    def entries(
        self,
        *,
        limit: int | None = 100,
        reason: str | None = None,
        ids: Sequence[int] | None = None,
        oldest_first: bool = False,
    ) -> list[Entry]:
        """Entries, newest first unless asked otherwise, optionally of one reason or these ids."""
        sql = "SELECT id, received_ns, topic, payload, reason, detail, sensor FROM quarantine"
        clauses: list[str] = []
        params: list[object] = []
        if reason is not None:
            clauses.append("reason = ?")
            params.append(reason)
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id" + ("" if oldest_first else " DESC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [Entry(*row) for row in self._run(sql, params)]  # type: ignore[arg-type]

    def delete(self, ids: Sequence[int]) -> None:
        """Remove entries (after their messages were replayed)."""
        if ids:
            marks = ",".join("?" * len(ids))
            self._run(f"DELETE FROM quarantine WHERE id IN ({marks})", list(ids))  # noqa: S608

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

"""The quarantine part of the embedded store (`core.store.QuarantineStore` over SQLite).

Tables `quarantine` (one row an entry, keyed like the InfluxDB points) and `quarantine_dropped`
(refusals removed or never kept, per worker, time, why, source and reason); docs/SCHEMA.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from core.errors import StoreError
from core.quarantine import DROPPED_AGE, QuarantineEntry, QuarantineSummary, Usage

SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    worker      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    ts_ns       INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    topic       TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    sensor      TEXT,
    length      INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,
    head        BLOB    NOT NULL,
    refusals    INTEGER NOT NULL,
    cost        INTEGER NOT NULL,
    PRIMARY KEY (worker, source, reason, ts_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quarantine_time ON quarantine (ts_ns);
CREATE TABLE IF NOT EXISTS quarantine_dropped (
    worker TEXT    NOT NULL,
    ts_ns  INTEGER NOT NULL,
    why    TEXT    NOT NULL,
    source TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (worker, ts_ns, why, source, reason)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "ts_ns, worker, source, reason, received_ns, topic, detail, sensor, length, sha256, head, "
    "refusals"
)


def _entry(row: tuple[object, ...]) -> QuarantineEntry:
    return QuarantineEntry(*row)  # type: ignore[arg-type]


class EmbeddedQuarantine:
    """The quarantine methods of `EmbeddedStore` (a mixin: it needs `_connection`)."""

    def _connection(self) -> sqlite3.Connection:  # provided by the store
        raise NotImplementedError

    def _transaction(self, *statements: tuple[str, list[tuple[object, ...]]]) -> None:
        raise NotImplementedError  # provided by the store

    def _quarantine_run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store quarantine query failed: {exc}") from exc

    def _quarantine_write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        self._transaction((sql, list(rows)))

    def add_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Insert or replace the entries, in one transaction."""
        rows = [
            (
                e.worker,
                e.source,
                e.reason,
                e.ts_ns,
                e.received_ns,
                e.topic,
                e.detail,
                e.sensor,
                e.length,
                e.sha256,
                e.head,
                e.refusals,
                e.cost_bytes,
            )
            for e in entries
        ]
        if rows:
            self._quarantine_write(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def record_dropped(
        self, worker: str, ts_ns: int, dropped: dict[tuple[str, str, str], int]
    ) -> None:
        """Add the counts (a second record at the same time replaces the first)."""
        rows = [(worker, ts_ns, w, s, r, n) for (w, s, r), n in dropped.items() if n > 0]
        if rows:
            self._quarantine_write(
                "INSERT OR REPLACE INTO quarantine_dropped VALUES (?, ?, ?, ?, ?, ?)", rows
            )

    def quarantine_entries(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        ids: Sequence[int] | None = None,
        worker: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        oldest_first: bool = False,
        limit: int | None = 100,
    ) -> list[QuarantineEntry]:
        """Entries, newest first."""
        clauses: list[str] = []
        params: list[object] = []
        if reason is not None:
            clauses.append("reason = ?")
            params.append(reason)
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        if ids is not None:
            clauses.append(f"ts_ns IN ({','.join('?' * len(ids))})")
            params.extend(int(i) for i in ids)
        for clause, value in (
            ("worker = ?", worker),
            ("ts_ns >= ?", since_ns),
            ("ts_ns < ?", until_ns),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM quarantine"  # noqa: S608 (only ? placeholders)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        order = "ASC" if oldest_first else "DESC"
        sql += f" ORDER BY ts_ns {order}, worker, source, reason"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_entry(row) for row in self._quarantine_run(sql, params)]

    def quarantine_summary(self) -> QuarantineSummary:
        """Refusals kept per reason and removed per (why, reason)."""
        kept = self._quarantine_run(
            "SELECT reason, SUM(refusals) FROM quarantine GROUP BY reason ORDER BY reason"
        )
        dropped = self._quarantine_run(
            "SELECT why, reason, SUM(n) FROM quarantine_dropped GROUP BY why, reason"
        )
        return QuarantineSummary(
            kept={str(r): int(str(n)) for r, n in kept},
            dropped={(str(w), str(r)): int(str(n)) for w, r, n in dropped},
        )

    def quarantine_usage(self, worker: str) -> dict[str, Usage]:
        """Entries and bytes of one worker, per source."""
        rows = self._quarantine_run(
            "SELECT source, COUNT(*), SUM(cost) FROM quarantine WHERE worker = ? GROUP BY source",
            (worker,),
        )
        return {str(s): Usage(int(str(n)), int(str(b))) for s, n, b in rows}

    def delete_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Remove exactly these entries."""
        rows = [(e.worker, e.source, e.reason, e.ts_ns) for e in entries]
        if rows:
            self._quarantine_write(
                "DELETE FROM quarantine WHERE worker = ? AND source = ? AND reason = ? "
                "AND ts_ns = ?",
                rows,
            )

    def prune_quarantine(
        self, worker: str, before_ns: int, now_ns: int
    ) -> dict[tuple[str, str], int]:
        """Count (as of `now_ns`) and remove one worker's entries older than `before_ns`.

        One transaction: the count and the removal happen together or not at all.
        """
        rows = self._quarantine_run(
            "SELECT source, reason, SUM(refusals) FROM quarantine WHERE worker = ? AND ts_ns < ? "
            "GROUP BY source, reason",
            (worker, before_ns),
        )
        counts = {(str(s), str(r)): int(str(n)) for s, r, n in rows}
        if counts:
            self._transaction(
                (
                    "INSERT OR REPLACE INTO quarantine_dropped VALUES (?, ?, ?, ?, ?, ?)",
                    [(worker, now_ns, DROPPED_AGE, s, r, n) for (s, r), n in counts.items()],
                ),
                ("DELETE FROM quarantine WHERE worker = ? AND ts_ns < ?", [(worker, before_ns)]),
            )
        return counts

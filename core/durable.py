"""A local SQLite file kept durable: what ingest's spool and the alert outbox are built on.

Write-ahead log and `synchronous=FULL`: a committed transaction survives a crash of the
process or the machine. This module must not know any schema but the one it is given.
"""

from __future__ import annotations

import fcntl
import sqlite3
from pathlib import Path
from typing import IO


def open_durable(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to `path` (created with its folder if missing) with `schema` in place.

    Autocommit (transactions are explicit), shareable between threads (callers serialise), and
    waiting up to 30 s for another process's lock. Raises `OSError` or `sqlite3.Error`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


def exclusive(path: Path) -> IO[str] | None:
    """An exclusive lock on `path` (created if missing), held while the file stays open.

    None when another process holds it. The lock goes with its process, however that ends.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle

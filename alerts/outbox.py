"""The outbox: alarm notifications kept durably until each channel has confirmed them.

`Outbox.add` commits one row per (idempotency key, channel) before it returns (SQLite, WAL,
`synchronous=FULL`, like ingest's spool): once added, a notification survives a crash of the
process and of the machine. The same key added again is ignored, so the evaluator may hand an
event over twice. The `Dispatcher` runs one thread per channel: it takes the rows that are due,
sends each, and marks it delivered only after the channel confirmed it (HTTP 2xx, PUBACK, the
SMTP server's 250). A crash between sending and marking sends the row again after the restart,
with the same key: delivery is at least once, and receivers deduplicate by the key.

A failed send is retried with exponential backoff and full jitter (a delay drawn between 0 and
`min(cap, base * 2**n)`): the row waits by its own attempts, and the channel pauses by its
consecutive failures, so a receiver that is down gets one attempt per pause, not one per row.
A `Retry-After` the receiver sent (HTTP 429 and 503) is waited out. A row is retried for as
long as the outbox keeps it; a permanent refusal (HTTP 4xx other than 408 and 429, an SMTP 5xx
for the message) is recorded with its reason and counted, never retried.

The outbox is bounded. At most `max_pending` rows wait; adding more drops the oldest waiting
rows (`dropped_full`), and rows waiting longer than `max_age_s` are dropped too
(`dropped_age`): each drop is counted per channel and reason and logged, never silent. Rows
that are done (delivered, refused, dropped) stay as long as `max_age_s` (so a key added again
is still recognised), and at most `max_pending` of them.

Rows of one alarm go out on each channel in the order they were added: a `cleared` is never
delivered before its `fired` (the MQTT channel's retained state depends on it), while other
alarms' rows go on when one is being retried.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

from alerts.message import Notification
from core.durable import exclusive, open_durable
from core.errors import PilotsError
from core.settings import Settings
from core.timeutil import NS_PER_S

log = logging.getLogger(__name__)

DATABASE = "alerts.sqlite"
LOCK_SUFFIX = ".dispatcher.lock"

State = Literal["pending", "delivered", "refused", "dropped"]
DROPPED_FULL = "dropped_full"
DROPPED_AGE = "dropped_age"
#: The longest `Retry-After` waited out; a longer one is read as this.
RETRY_AFTER_MAX_S = 3600.0
#: How often the dispatcher drops rows past the age limit.
EXPIRE_EVERY_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    key      TEXT    NOT NULL,                  -- the idempotency key, `<alarm id>:<event>`
    channel  TEXT    NOT NULL,                  -- webhook, mqtt, email
    alarm    TEXT    NOT NULL,                  -- one alarm's rows go out in order
    body     BLOB    NOT NULL,                  -- the notification, JSON
    state    TEXT    NOT NULL DEFAULT 'pending', -- pending, delivered, refused, dropped
    reason   TEXT,                              -- why refused or dropped; last error if pending
    attempts INTEGER NOT NULL DEFAULT 0,
    added_ns INTEGER NOT NULL,
    due_ns   INTEGER NOT NULL,                  -- not sent before (backoff)
    done_ns  INTEGER,                           -- when it stopped being pending
    since_ns INTEGER NOT NULL DEFAULT 0,        -- when its wait began (clock moved back: due)
    rank     INTEGER NOT NULL DEFAULT 1,        -- over the bound, lower ranks are dropped first
    UNIQUE (key, channel)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (channel, state, due_ns);
CREATE INDEX IF NOT EXISTS outbox_alarm ON outbox (channel, alarm, state, id);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
"""
#: Columns added after the first version: an older file gets them when opened.
ADDED_COLUMNS = {
    "since_ns": "INTEGER NOT NULL DEFAULT 0",
    "rank": "INTEGER NOT NULL DEFAULT 1",
}
RANK_INDEX = "CREATE INDEX IF NOT EXISTS outbox_rank ON outbox (state, rank, id)"

# A waiting row is not due while an older waiting row of its alarm, same channel, exists.
DUE = """
SELECT o.id, o.attempts, o.body FROM outbox AS o
WHERE o.channel = ? AND o.state = 'pending' AND (o.due_ns <= ? OR o.since_ns > ?) AND NOT EXISTS (
    SELECT 1 FROM outbox AS p
    WHERE p.channel = o.channel AND p.alarm = o.alarm AND p.state = 'pending' AND p.id < o.id
)
ORDER BY o.due_ns, o.id LIMIT ?
"""
NEXT_DUE = """
SELECT MIN(CASE WHEN o.since_ns > ? THEN ? ELSE o.due_ns END) FROM outbox AS o
WHERE o.channel = ? AND o.state = 'pending' AND NOT EXISTS (
    SELECT 1 FROM outbox AS p
    WHERE p.channel = o.channel AND p.alarm = o.alarm AND p.state = 'pending' AND p.id < o.id
)
"""


class OutboxError(PilotsError):
    """The outbox database could not be written or read, or another dispatcher holds it."""


class DeliveryError(PilotsError):
    """A channel could not deliver now (down, timeout, 5xx, 429): retry later.

    `retry_after_s` is what the receiver asked for (HTTP `Retry-After`), when it did.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RefusedError(PilotsError):
    """The receiver refused the notification itself (HTTP 400, SMTP 550): retrying won't help."""


class Channel(Protocol):
    """Where notifications go; `send` returns once the receiver confirmed, or raises.

    It raises `DeliveryError` for a failure worth retrying and `RefusedError` for a permanent
    refusal of this notification.
    """

    name: str

    def send(self, notification: Notification) -> None:
        """Deliver one notification, returning only once the receiver has confirmed it."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True, slots=True)
class Pending:
    """One waiting row, as the dispatcher takes it."""

    id: int
    channel: str
    attempts: int
    notification: Notification


@dataclass(frozen=True, slots=True)
class Row:
    """One row as it stands (for operators and tests)."""

    channel: str
    state: State
    attempts: int
    reason: str | None


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the outbox database with the schema in place."""
    try:
        db = open_durable(path, SCHEMA)
        have = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        for column, declaration in ADDED_COLUMNS.items():
            if column not in have:
                try:
                    db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {declaration}")
                except sqlite3.OperationalError as exc:  # another process added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise
        db.execute(RANK_INDEX)
        return db
    except (OSError, sqlite3.Error) as exc:
        raise OutboxError(f"cannot open the alert outbox {path}: {exc}") from exc


class Outbox:
    """The durable, bounded queue of notifications (see the module docstring); thread-safe.

    Counters (since this object was made, per channel): `delivered`, `retried` (failed
    attempts that will be retried), `refused`, and `dropped` per (channel, reason);
    `pending()` counts what waits.
    """

    def __init__(
        self,
        path: Path,
        channels: Sequence[str],
        *,
        max_pending: int = 10_000,
        max_age_s: float = 259_200.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not channels:
            raise ValueError("an outbox needs at least one channel")
        if max_pending < 1 or max_age_s <= 0:
            raise ValueError("max_pending and max_age_s must be positive")
        self.path = path
        self.channels = tuple(dict.fromkeys(channels))
        self.max_pending = max_pending
        self.max_age_ns = int(max_age_s * NS_PER_S)
        self.clock = clock
        self.delivered: Counter[str] = Counter()
        self.retried: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()
        self._db = connect(path)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, channels: Sequence[str]) -> Outbox:
        """The outbox in `PILOTS_DATA_DIR`, bounded by the `PILOTS_ALERT_OUTBOX_*` settings."""
        return cls(
            Path(settings.data_dir) / DATABASE,
            channels,
            max_pending=settings.alert_outbox_max,
            max_age_s=settings.alert_outbox_max_age_s,
        )

    def _fail(self, what: str, exc: sqlite3.Error) -> OutboxError:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        return OutboxError(f"cannot {what} the alert outbox {self.path}: {exc}")

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each `add` that kept something; returns the undo."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def add(self, notifications: Iterable[Notification]) -> int:
        """Keep the notifications durably, one row per channel; returns the rows added.

        Keys already in the outbox (waiting or done) are skipped. All in one transaction,
        committed before this returns; then the bound is applied (oldest dropped, counted).
        """
        now = self.clock()
        rows = [
            (n.key, channel, n.alarm_id, n.to_json(), now, now, now, rank(n))
            for n in notifications
            for channel in self.channels
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO outbox "
                    "(key, channel, alarm, body, added_ns, due_ns, since_ns, rank) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                added = self._db.total_changes - before
                dropped = self._drop_beyond_bound(now)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("add to", exc) from exc
        self._count_dropped(dropped, DROPPED_FULL)
        if added:
            for callback in list(self._listeners):
                callback()
        return added

    def _drop_beyond_bound(self, now: int) -> list[str]:
        (waiting,) = self._db.execute(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'"
        ).fetchone()
        excess = int(waiting) - self.max_pending
        if excess <= 0:
            return []
        victims = self._db.execute(
            # whole alarms go, the least first: an alarm ranks as its highest row, waiting or
            # sent, so the clear of a live evacuation alarm is never dropped for being late
            "SELECT o.id, o.channel FROM outbox AS o JOIN ("
            "  SELECT alarm, MAX(rank) AS top, MIN(id) AS first FROM outbox"
            "  WHERE state IN ('pending', 'delivered') GROUP BY alarm"
            ") AS a ON a.alarm = o.alarm "
            "WHERE o.state = 'pending' ORDER BY a.top, a.first, o.id LIMIT ?",
            (excess,),
        ).fetchall()
        self._db.executemany(
            "UPDATE outbox SET state = 'dropped', reason = ?, done_ns = ? WHERE id = ?",
            [(DROPPED_FULL, now, row_id) for row_id, _ in victims],
        )
        return [channel for _, channel in victims]

    def _count_dropped(self, channels: list[str], reason: str) -> None:
        if not channels:
            return
        by_channel = Counter(channels)
        for channel, count in by_channel.items():
            self.dropped[channel, reason] += count
        log.warning(
            "alert outbox: dropped %d undelivered notification row(s) (%s): %s",
            len(channels),
            reason,
            ", ".join(f"{c} {n}" for c, n in sorted(by_channel.items())),
        )

    def expire(self) -> int:
        """Drop waiting rows older than the age limit (counted); forget old finished rows."""
        now = self.clock()
        cutoff = now - self.max_age_ns
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                stale = self._db.execute(
                    "SELECT id, channel FROM outbox WHERE state = 'pending' AND added_ns < ?",
                    (cutoff,),
                ).fetchall()
                self._db.executemany(
                    "UPDATE outbox SET state = 'dropped', reason = ?, done_ns = ? WHERE id = ?",
                    [(DROPPED_AGE, now, row_id) for row_id, _ in stale],
                )
                self._db.execute(
                    "DELETE FROM outbox WHERE state != 'pending' AND done_ns < ?", (cutoff,)
                )
                (done,) = self._db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE state != 'pending'"
                ).fetchone()
                if done > self.max_pending:
                    self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
                        "WHERE state != 'pending' ORDER BY done_ns, id LIMIT ?)",
                        (done - self.max_pending,),
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("expire rows of", exc) from exc
        self._count_dropped([channel for _, channel in stale], DROPPED_AGE)
        return len(stale)

    def due(self, channel: str, limit: int = 100) -> list[Pending]:
        """Waiting rows of a channel whose time has come, soonest due first.

        A row waits behind an older waiting row of the same alarm (events go out in order).
        """
        with self._lock:
            try:
                now = self.clock()
                rows = self._db.execute(DUE, (channel, now, now, limit)).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        out = []
        for row_id, attempts, body in rows:
            try:
                notification = Notification.from_json(body)
            except (TypeError, ValueError) as exc:  # written by another version, or damaged
                self._unreadable(row_id, channel, f"unreadable row: {exc}")
                continue
            out.append(Pending(row_id, channel, attempts, notification))
        return out

    def _unreadable(self, row_id: int, channel: str, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET state = 'refused', reason = ?, done_ns = ? WHERE id = ?",
                (reason, self.clock(), row_id),
            )
        self.refused[channel] += 1
        log.error("alert outbox row %d (%s) %s; not sent", row_id, channel, reason)

    def next_due_ns(self, channel: str) -> int | None:
        """When the channel's next row becomes due (None: nothing waits)."""
        with self._lock:
            now = self.clock()
            (due,) = self._db.execute(NEXT_DUE, (now, now, channel)).fetchone()
        return None if due is None else int(due)

    def _finish(self, row: Pending, state: State, reason: str | None) -> bool:
        with self._lock:
            try:
                changed = self._db.execute(
                    "UPDATE outbox SET state = ?, reason = ?, attempts = attempts + 1, "
                    "done_ns = ? WHERE id = ? AND state = 'pending'",
                    (state, reason, self.clock(), row.id),
                ).rowcount
            except sqlite3.Error as exc:
                raise self._fail("update", exc) from exc
        return bool(changed)

    def mark_delivered(self, row: Pending) -> None:
        """The channel confirmed the row: it is done (committed, FULL sync)."""
        if self._finish(row, "delivered", None):
            self.delivered[row.channel] += 1

    def refuse(self, row: Pending, reason: str) -> None:
        """The receiver refused the row for good: record why, never send it again."""
        if self._finish(row, "refused", reason):
            self.refused[row.channel] += 1
            log.error(
                "alert %s refused by %s, not retried: %s", row.notification.key, row.channel, reason
            )

    def retry_later(self, row: Pending, delay_s: float, error: str) -> None:
        """A failed attempt: count it and make the row due again after `delay_s`."""
        now = self.clock()
        due = now + int(delay_s * NS_PER_S)
        with self._lock:
            try:
                changed = self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, due_ns = ?, since_ns = ?, "
                    "reason = ? WHERE id = ? AND state = 'pending'",
                    (due, now, error, row.id),
                ).rowcount
            except sqlite3.Error as exc:
                raise self._fail("update", exc) from exc
        if changed:
            self.retried[row.channel] += 1

    def pending(self) -> dict[str, int]:
        """Rows waiting, per channel (every channel of the outbox named, zero included)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY channel"
            ).fetchall()
        counts = dict.fromkeys(self.channels, 0)
        counts.update({channel: int(n) for channel, n in rows})
        return counts

    def rows(self, key: str) -> dict[str, Row]:
        """Where one notification stands on each channel."""
        with self._lock:
            found = self._db.execute(
                "SELECT channel, state, attempts, reason FROM outbox WHERE key = ?", (key,)
            ).fetchall()
        return {row[0]: Row(*row) for row in found}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def rank(n: Notification) -> int:
    """How much a notification is kept over the bound: late or `info` 0, `warning` 1, else 2.

    Over the bound an alarm's rows are ranked together, by the highest of them.

    A device's backlog can hold many late episodes, and a sensor many stuck spells: over the
    bound they go before an alarm that is live and serious does.
    """
    if n.late or n.severity == "info":
        return 0
    return 1 if n.severity == "warning" else 2


def backoff_s(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter: a delay drawn uniformly from [0, min(cap, base * 2**(failures - 1))]."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(failures - 1, 0), 62))
    return rng.uniform(0.0, ceiling)


class Dispatcher:
    """Sends what the outbox holds: one thread per channel, until `stop`.

    One dispatcher per outbox file at a time (a lock file beside it says so; a killed
    dispatcher's lock goes with its process). `stop` lets each channel finish the send in
    hand (bounded by the channel's timeout) and leaves the rest waiting in the outbox.
    """

    def __init__(
        self,
        outbox: Outbox,
        channels: Sequence[Channel],
        *,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        batch: int = 100,
        idle_s: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        names = [c.name for c in channels]
        unknown = sorted(set(names) - set(outbox.channels))
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"channels {names} do not match the outbox's {outbox.channels}")
        self.outbox = outbox
        self.channels = tuple(channels)
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.batch = batch
        self.idle_s = idle_s
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not secrets)
        self._stopping = threading.Event()
        self._wake = {c.name: threading.Event() for c in channels}
        self._threads: list[threading.Thread] = []
        self._unlisten: Callable[[], None] | None = None
        self._lock_file: IO[str] | None = None
        self._last_expire = 0.0

    @classmethod
    def from_settings(
        cls, settings: Settings, outbox: Outbox, channels: Sequence[Channel]
    ) -> Dispatcher:
        """A dispatcher with the `PILOTS_ALERT_RETRY_*` backoff."""
        return cls(
            outbox,
            channels,
            retry_base_s=settings.alert_retry_base_s,
            retry_max_s=settings.alert_retry_max_s,
        )

    def start(self) -> Dispatcher:
        """Take the outbox's dispatcher lock and start a thread per channel."""
        lock = exclusive(self.outbox.path.with_name(self.outbox.path.name + LOCK_SUFFIX))
        if lock is None:
            raise OutboxError(f"another alert dispatcher is running on {self.outbox.path}")
        self._lock_file = lock
        self._unlisten = self.outbox.listen(self._wake_all)
        for channel in self.channels:
            thread = threading.Thread(
                target=self._run, args=(channel,), name=f"alerts-{channel.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _wake_all(self) -> None:
        for event in self._wake.values():
            event.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the sends in hand; what was not confirmed stays in the outbox."""
        self._stopping.set()
        self._wake_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for channel in self.channels:
            try:
                channel.close()
            except Exception:  # a channel's close must not keep the others open
                log.exception("closing the %s alert channel failed", channel.name)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _pause(self, channel: str, seconds: float) -> None:
        wake = self._wake[channel]
        wake.wait(max(seconds, 0.0))
        wake.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        if now - self._last_expire >= EXPIRE_EVERY_S:
            self._last_expire = now
            self.outbox.expire()

    def _run(self, channel: Channel) -> None:
        failures = 0  # consecutive, on this channel
        while not self._stopping.is_set():
            try:
                failures = self._round(channel, failures)
            except Exception:  # the outbox unwritable (disk full): nothing is lost, wait
                failures += 1
                log.exception(
                    "alert outbox %s failed on %s; trying again", self.outbox.path, channel.name
                )
                self._stopping.wait(
                    backoff_s(failures, self.retry_base_s, self.retry_max_s, self._rng)
                )

    def _round(self, channel: Channel, failures: int) -> int:
        """Send what is due (until a failure); returns the consecutive failures after it."""
        self._expire()
        rows = self.outbox.due(channel.name, self.batch)
        if not rows:
            self._pause(channel.name, self._idle_wait(channel.name))
            return failures
        for row in rows:
            if self._stopping.is_set():
                break
            pause = self._deliver(channel, row, failures)
            if pause is not None:
                self._stopping.wait(pause)
                return failures + 1
            failures = 0
        return failures

    def _idle_wait(self, channel: str) -> float:
        due = self.outbox.next_due_ns(channel)
        if due is None:
            return self.idle_s
        return min(max((due - self.outbox.clock()) / NS_PER_S, 0.0), self.idle_s)

    def _deliver(self, channel: Channel, row: Pending, failures: int) -> float | None:
        """Send one row; None when it is done (delivered or refused), else the channel's pause."""
        try:
            channel.send(row.notification)
        except RefusedError as exc:
            self.outbox.refuse(row, str(exc))
            return None
        except DeliveryError as exc:
            return self._retry(row, str(exc), failures, exc.retry_after_s)
        except Exception as exc:  # a fault in a channel is retried, not a dead thread
            log.exception("alert channel %s failed unexpectedly", channel.name)
            return self._retry(row, f"{type(exc).__name__}: {exc}", failures, None)
        self.outbox.mark_delivered(row)
        return None

    def _retry(self, row: Pending, error: str, failures: int, retry_after_s: float | None) -> float:
        wait = min(retry_after_s, RETRY_AFTER_MAX_S) if retry_after_s is not None else 0.0
        row_delay = backoff_s(row.attempts + 1, self.retry_base_s, self.retry_max_s, self._rng)
        pause = backoff_s(failures + 1, self.retry_base_s, self.retry_max_s, self._rng)
        self.outbox.retry_later(row, max(row_delay, wait), error)
        log.warning(
            "alert %s via %s failed (attempt %d), retrying: %s",
            row.notification.key,
            row.channel,
            row.attempts + 1,
            error,
        )
        return max(pause, wait)

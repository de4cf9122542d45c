"""The alarms: one row per alarm, its lifecycle and acknowledgement, and the evaluator's state.

Kept in `PILOTS_DATA_DIR/alerts.sqlite` beside the outbox (`alerts.outbox`), durable like it
(`core.durable`). The alert service (`alerts.service`) records each batch's events here in one
transaction with the evaluator's saved state and the digests of the messages the batch held;
the API reads the alarms, acknowledges them and follows their changes (`changes`).

Recording is idempotent: alarm ids are deterministic (`core.alerts.alarm_id`), a `fired` for an
alarm already known changes nothing (a cleared alarm is never reopened), a `cleared` changes
only an active alarm. The same batch recorded twice (a crash between the commit and the MQTT
acknowledgement hands it over again) leaves the table as once.

An alarm is **active** from `fired` to `cleared`; **acknowledged** is independent of that (an
operator may acknowledge an active alarm or a cleared one; once acknowledged it stays so).
Every change takes the next number of a sequence (`seq`): `changes(after)` is the feed of the
dashboard's live stream, and a client that reconnects resumes from the last number it saw.

Bounds: cleared alarms older than `history_days` are deleted, and beyond `history_max` cleared
alarms the oldest go; the message digests are kept for `EVALUATED_KEEP_S`; a query returns at
most `MAX_LIMIT` alarms.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from core.alerts import AlertEvent
from core.durable import open_durable
from core.errors import PilotsError
from core.settings import Settings
from core.timeutil import DAY_NS, NS_PER_S

DATABASE = "alerts.sqlite"
#: The most alarms one query returns.
MAX_LIMIT = 1000
#: How long the digests of evaluated messages are kept (a redelivery comes within a session).
EVALUATED_KEEP_S = 3600
#: The longest acknowledgement note kept, in characters.
MAX_NOTE = 500

AlarmState = Literal["active", "cleared"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id          TEXT    PRIMARY KEY,
    rule        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    pilot       TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    sensor      TEXT,
    severity    TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    level       REAL    NOT NULL,
    direction   TEXT    NOT NULL,
    start_ns    INTEGER NOT NULL,
    end_ns      INTEGER,
    fired_ns    INTEGER NOT NULL,
    cleared_ns  INTEGER,
    value       REAL    NOT NULL,
    peak        REAL    NOT NULL,
    latest      REAL    NOT NULL,
    late        INTEGER NOT NULL,
    active      INTEGER NOT NULL,
    acked_ns    INTEGER,
    acked_by    TEXT,
    ack_note    TEXT,
    seq         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alarms_start ON alarms (start_ns);
CREATE INDEX IF NOT EXISTS alarms_seq ON alarms (seq);
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (active, start_ns);
CREATE INDEX IF NOT EXISTS alarms_ended ON alarms (active, end_ns);
CREATE TABLE IF NOT EXISTS alarm_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO alarm_seq (id, value) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS evaluator (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    state    BLOB    NOT NULL,
    saved_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluated (
    digest  BLOB    PRIMARY KEY,
    seen_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluated_seen ON evaluated (seen_ns);
"""

#: Every column, in `Alarm`'s order; the SQL below is built from these constants only.
_COLUMNS = (
    "id, rule, kind, pilot, device, sensor, severity, label, level, direction, start_ns, "
    "end_ns, fired_ns, cleared_ns, value, peak, latest, late, active, acked_ns, acked_by, "
    "ack_note, seq"
)
_SELECT = "SELECT " + _COLUMNS + " FROM alarms"  # noqa: S608 -- constants
_INSERT = "INSERT INTO alarms (" + _COLUMNS + ") VALUES "  # noqa: S608 -- constants


class AlarmStoreError(PilotsError):
    """The alarm store could not be opened, read or written."""


class UnknownAlarmError(PilotsError):
    """No alarm has that id."""


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm as stored (times int64 ns since the epoch, UTC; see the module docstring).

    `value` is the metric at the start, `latest` the last one an event reported, `peak` the
    most extreme while it lasted (as of its last event). `fired_ns` is the device time of the
    reading that fired it (for a silence, the clock's), `cleared_ns` that of the one that
    cleared it; `end_ns` is when the value was back on the safe side.
    """

    id: str
    rule: str
    kind: str
    pilot: str
    device: str
    sensor: str | None
    severity: str
    label: str
    level: float
    direction: str
    start_ns: int
    end_ns: int | None
    fired_ns: int
    cleared_ns: int | None
    value: float
    peak: float
    latest: float
    late: bool
    active: bool
    acked_ns: int | None
    acked_by: str | None
    ack_note: str | None
    seq: int

    @property
    def state(self) -> AlarmState:
        """`active` or `cleared`."""
        return "active" if self.active else "cleared"

    def as_dict(self) -> dict[str, Any]:
        """The fields, plus `state`, as JSON-ready values."""
        return asdict(self) | {"state": self.state}


def _alarm(row: tuple[Any, ...]) -> Alarm:
    values = list(row)
    values[17] = bool(values[17])
    values[18] = bool(values[18])
    return Alarm(*values)


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    """Filters of `AlarmStore.query`; None leaves a filter out.

    The period `[since_ns, until_ns)` selects alarms that overlap it (started before its end,
    and still active or ended at or after its start).
    """

    pilot: str | None = None
    device: str | None = None
    rule: str | None = None
    severity: str | None = None
    state: AlarmState | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 100


class AlarmStore:
    """The alarms and the evaluator's state (see the module docstring); thread-safe."""

    def __init__(self, path: Path, *, history_days: int = 365, history_max: int = 100_000) -> None:
        if history_days < 1 or history_max < 1:
            raise ValueError("history_days and history_max must be at least 1")
        self.path = path
        self.history_ns = history_days * DAY_NS
        self.history_max = history_max
        try:
            self._db = open_durable(path, SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AlarmStoreError(f"cannot open the alarm store {path}: {exc}") from exc
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AlarmStore:
        """The store in `PILOTS_DATA_DIR`, keeping `PILOTS_ALERT_HISTORY_DAYS` of history."""
        return cls(
            Path(settings.data_dir) / DATABASE,
            history_days=settings.alert_history_days,
            history_max=settings.alert_history_max,
        )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _fail(self, what: str, exc: sqlite3.Error) -> AlarmStoreError:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        return AlarmStoreError(f"cannot {what} the alarm store {self.path}: {exc}")

    # --- the evaluator's side -------------------------------------------------------------

    def record(
        self,
        events: Sequence[AlertEvent],
        *,
        state: bytes | None = None,
        evaluated: Iterable[bytes] = (),
        now_ns: int | None = None,
    ) -> int:
        """Record events, the evaluator's state and message digests in one transaction.

        Returns how many alarms changed. Old cleared alarms and digests are pruned with it.
        """
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                changed = sum(self._apply(event) for event in events)
                if state is not None:
                    self._db.execute(
                        "INSERT INTO evaluator (id, state, saved_ns) VALUES (1, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                        "saved_ns = excluded.saved_ns",
                        (state, now),
                    )
                self._db.executemany(
                    "INSERT OR IGNORE INTO evaluated (digest, seen_ns) VALUES (?, ?)",
                    ((digest, now) for digest in evaluated),
                )
                self._db.execute(
                    "DELETE FROM evaluated WHERE seen_ns < ?", (now - EVALUATED_KEEP_S * NS_PER_S,)
                )
                self._db.execute(
                    "DELETE FROM alarms WHERE active = 0 AND end_ns < ?", (now - self.history_ns,)
                )
                if changed:
                    self._prune_beyond_max()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("write to", exc) from exc
        return changed

    def _prune_beyond_max(self) -> None:
        (cleared,) = self._db.execute("SELECT COUNT(*) FROM alarms WHERE active = 0").fetchone()
        excess = int(cleared) - self.history_max
        if excess > 0:
            self._db.execute(
                "DELETE FROM alarms WHERE id IN (SELECT id FROM alarms WHERE active = 0 "
                "ORDER BY end_ns LIMIT ?)",
                (excess,),
            )

    def _next_seq(self) -> int:
        self._db.execute("UPDATE alarm_seq SET value = value + 1 WHERE id = 1")
        (value,) = self._db.execute("SELECT value FROM alarm_seq WHERE id = 1").fetchone()
        return int(value)

    def _insert(self, e: AlertEvent, *, active: bool) -> None:
        """A new alarm row from its first event: open (`fired`) or already closed (`cleared`)."""
        if active:
            end_ns, fired_ns, cleared_ns = None, e.at_ns, None
        else:
            end_ns, fired_ns, cleared_ns = e.end_ns, e.start_ns, e.at_ns
        self._db.execute(
            _INSERT
            + "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
            (
                e.alarm_id,
                e.rule,
                e.kind,
                e.pilot,
                e.device,
                e.sensor,
                e.severity,
                e.label,
                e.level,
                e.direction,
                e.start_ns,
                end_ns,
                fired_ns,
                cleared_ns,
                e.value,
                e.peak,
                e.latest,
                int(e.late),
                int(active),
                self._next_seq(),
            ),
        )

    def _apply(self, e: AlertEvent) -> int:
        if e.type == "fired":
            exists = self._db.execute("SELECT 1 FROM alarms WHERE id = ?", (e.alarm_id,))
            if exists.fetchone() is not None:
                return 0
            self._insert(e, active=True)
            return 1
        row = self._db.execute("SELECT active FROM alarms WHERE id = ?", (e.alarm_id,)).fetchone()
        if row is not None and not row[0]:
            return 0
        if row is None:  # its `fired` was recorded by no one (an older store): keep the alarm
            self._insert(e, active=False)
            return 1
        self._db.execute(
            "UPDATE alarms SET active = 0, end_ns = ?, cleared_ns = ?, peak = ?, latest = ?, "
            "seq = ? WHERE id = ?",
            (e.end_ns, e.at_ns, e.peak, e.latest, self._next_seq(), e.alarm_id),
        )
        return 1

    def saved_state(self) -> bytes | None:
        """The evaluator's state as last recorded, or None."""
        with self._lock:
            try:
                row = self._db.execute("SELECT state FROM evaluator WHERE id = 1").fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return None if row is None else bytes(row[0])

    def evaluated(self, digests: Sequence[bytes]) -> set[bytes]:
        """Which of `digests` were recorded as evaluated (within `EVALUATED_KEEP_S`)."""
        found: set[bytes] = set()
        with self._lock:
            try:
                for start in range(0, len(digests), 500):
                    part = digests[start : start + 500]
                    marks = ", ".join("?" * len(part))
                    rows = self._db.execute(
                        f"SELECT digest FROM evaluated WHERE digest IN ({marks})",  # noqa: S608
                        part,
                    )
                    found.update(bytes(r[0]) for r in rows)
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return found

    # --- the operators' side --------------------------------------------------------------

    def get(self, alarm_id: str) -> Alarm:
        """The alarm `alarm_id` (`UnknownAlarmError` if none)."""
        with self._lock:
            try:
                row = self._db.execute(_SELECT + " WHERE id = ?", (alarm_id,)).fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        if row is None:
            raise UnknownAlarmError(f"no alarm {alarm_id!r}")
        return _alarm(row)

    def ack(self, alarm_id: str, by: str, note: str = "", now_ns: int | None = None) -> Alarm:
        """Acknowledge an alarm; one already acknowledged keeps its first acknowledgement."""
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT acked_ns FROM alarms WHERE id = ?", (alarm_id,)
                ).fetchone()
                if row is not None and row[0] is None:
                    self._db.execute(
                        "UPDATE alarms SET acked_ns = ?, acked_by = ?, ack_note = ?, seq = ? "
                        "WHERE id = ?",
                        (now, by[:MAX_NOTE], note[:MAX_NOTE], self._next_seq(), alarm_id),
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("write to", exc) from exc
        return self.get(alarm_id)

    def query(self, q: AlarmQuery) -> list[Alarm]:
        """Alarms matching `q`, newest start first, at most `min(q.limit, MAX_LIMIT)`."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("pilot", q.pilot),
            ("device", q.device),
            ("rule", q.rule),
            ("severity", q.severity),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if q.state is not None:
            where.append("active = ?")
            args.append(1 if q.state == "active" else 0)
        if q.until_ns is not None:
            where.append("start_ns < ?")
            args.append(q.until_ns)
        if q.since_ns is not None:
            where.append("(end_ns IS NULL OR end_ns >= ?)")
            args.append(q.since_ns)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_ns DESC, id LIMIT ?"
        args.append(max(0, min(q.limit, MAX_LIMIT)))
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return [_alarm(r) for r in rows]

    def active(self) -> list[Alarm]:
        """Every active alarm (bounded by rules x devices, and components: not by a limit)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    _SELECT + " WHERE active = 1 ORDER BY start_ns, id"
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return [_alarm(r) for r in rows]

    def changes(self, after_seq: int, limit: int = 100) -> list[Alarm]:
        """Alarms changed after `after_seq`, in the order of their last change."""
        with self._lock:
            try:
                rows = self._db.execute(
                    _SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, max(0, min(limit, MAX_LIMIT))),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return [_alarm(r) for r in rows]

    def last_seq(self) -> int:
        """The number of the last change (0: none yet)."""
        with self._lock:
            try:
                (value,) = self._db.execute("SELECT value FROM alarm_seq WHERE id = 1").fetchone()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc
        return int(value)

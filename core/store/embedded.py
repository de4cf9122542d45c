"""The embedded store: SQLite in WAL mode, for the zero-setup demo and offline use.

Same contract as the InfluxDB adapter: points keyed by (pilot, device, sensor, time), a second
write of a key replaces the first. SQLite is chosen over an analytical engine because several
processes (ingest, api) may open the same file, which SQLite's WAL mode allows and DuckDB's
single-writer file lock does not. It is not the store of record for a deployment.
Rollups live in table `rollups` keyed by (resolution, pilot, device, sensor, start_ns), the
watermarks in table `watermarks`, the quarantine in `quarantine` and `quarantine_dropped`
(`core.store.embedded_quarantine`; docs/SCHEMA.md).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import StoreError
from core.readings import Readings
from core.registry import Registry
from core.rollups import SKETCH_COLUMN, VALUE_COLUMNS, Rollups, resolution_ns
from core.settings import Settings
from core.sketch import Sketches
from core.store import check_watermark_name, check_watermark_value, embedded_path
from core.store.embedded_quarantine import SCHEMA as QUARANTINE_SCHEMA
from core.store.embedded_quarantine import EmbeddedQuarantine
from core.uplinks import Uplinks

#: Transmissions (`uplinks`) and the repeats ingest dropped (`repeats`): the same columns.
_UPLINK_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    pilot       TEXT    NOT NULL,
    device      TEXT    NOT NULL,
    ts_ns       INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    fcnt        INTEGER NOT NULL,
    rssi        REAL,
    snr         REAL,
    sf          INTEGER NOT NULL,
    gateway     TEXT    NOT NULL,
    PRIMARY KEY (pilot, device, ts_ns)
) WITHOUT ROWID;"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    pilot  TEXT    NOT NULL,
    device TEXT    NOT NULL,
    sensor TEXT    NOT NULL,
    ts_ns  INTEGER NOT NULL,
    value  REAL    NOT NULL,
    PRIMARY KEY (pilot, device, sensor, ts_ns)
) WITHOUT ROWID;
{uplinks}
CREATE TABLE IF NOT EXISTS rollups (
    resolution TEXT    NOT NULL,
    pilot      TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    sensor     TEXT    NOT NULL,
    start_ns   INTEGER NOT NULL,
{rollup_values}
    PRIMARY KEY (resolution, pilot, device, sensor, start_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
    name     TEXT    NOT NULL PRIMARY KEY,
    value_ns INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: A rollup row's stored values (`core.rollups.VALUE_COLUMNS`), then its sketch, as SQL names.
_ROLLUP_VALUES = [f'"{c.name}"' for c in VALUE_COLUMNS] + [f'"{SKETCH_COLUMN}"']
_ROLLUP_TYPES = ["INTEGER" if c.dtype.kind == "i" else "REAL" for c in VALUE_COLUMNS] + ["TEXT"]
#: Every column of table `rollups`, in the order of its definition.
_ROLLUP_TABLE = ["resolution", "pilot", "device", "sensor", "start_ns", *_ROLLUP_VALUES]

_SCHEMA = _SCHEMA.replace(
    "{uplinks}", "".join(_UPLINK_TABLE.format(name=n) for n in ("uplinks", "repeats"))
).replace(
    "{rollup_values}",
    "\n".join(
        f"    {name:<10} {sql_type:<7} NOT NULL,"
        for name, sql_type in zip(_ROLLUP_VALUES, _ROLLUP_TYPES, strict=True)
    ),
)


def _where(
    pilot: str,
    start_ns: int,
    end_ns: int,
    devices: Sequence[str] | None,
    sensors: Sequence[str] | None = None,
) -> tuple[str, list[object]]:
    """The WHERE clause of a scan (or count) of readings or uplinks, and its parameters.

    Only `?` placeholders are formatted in; every value is a bound parameter.
    """
    where = "WHERE pilot = ? AND ts_ns >= ? AND ts_ns < ?"
    params: list[object] = [pilot, start_ns, end_ns]
    if sensors is not None:
        where += f" AND sensor IN ({','.join('?' * len(sensors))})"
        params.extend(sensors)
    if devices is not None:
        where += f" AND device IN ({','.join('?' * len(devices))})"
        params.extend(devices)
    return where, params


class EmbeddedStore(EmbeddedQuarantine):
    """`core.store.Store` over one SQLite file; safe to share between threads."""

    def __init__(self, path: Path, registry: Registry) -> None:
        self.path = path
        self.registry = registry
        self._local = threading.local()
        self._device_ids = [d.id for d in registry.device_list]
        self._pilot_of = [d.pilot for d in registry.device_list]
        self._sensor_ids = [s.id for s in registry.sensor_list]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connection() as db:
                db.executescript(_SCHEMA + QUARANTINE_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open embedded store {path}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings, registry: Registry) -> EmbeddedStore:
        """The store in `PILOTS_DATA_DIR` (the file is opened, and created if missing)."""
        return cls(embedded_path(settings), registry)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def start(self) -> None:
        """Nothing to connect: the file was opened and its schema created on construction."""
        self.ping()

    def write(
        self, readings: Readings, uplinks: Uplinks | None = None, repeats: Uplinks | None = None
    ) -> None:
        """Insert or replace every reading, uplink and repeat in one transaction."""
        rows = self._reading_rows(readings)
        up_rows = self._uplink_rows(uplinks) if uplinks is not None else []
        rep_rows = self._uplink_rows(repeats) if repeats is not None else []
        if not rows and not up_rows and not rep_rows:
            return
        self._transaction(
            ("INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?, ?)", rows),
            ("INSERT OR REPLACE INTO uplinks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", up_rows),
            ("INSERT OR REPLACE INTO repeats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rep_rows),
        )

    def _transaction(self, *statements: tuple[str, list[tuple[object, ...]]]) -> None:
        try:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store write failed: {exc}") from exc

    def write_rollups(self, resolution: str, rollups: Rollups) -> None:
        """Insert or replace every rollup row in one transaction."""
        resolution_ns(resolution)
        if len(rollups) == 0:
            return
        rollups.check_finite()
        codes = rollups.device.tolist()
        rows = list(
            zip(
                [resolution] * len(rollups),
                [self._pilot_of[d] for d in codes],
                [self._device_ids[d] for d in codes],
                [self._sensor_ids[s] for s in rollups.sensor.tolist()],
                rollups.start_ns.tolist(),
                *(getattr(rollups, c.name).tolist() for c in VALUE_COLUMNS),
                rollups.sketch.encode(),
                strict=True,
            )
        )
        # Only column names of `core.rollups` and `?` placeholders are formatted in.
        sql = (
            f"INSERT OR REPLACE INTO rollups ({', '.join(_ROLLUP_TABLE)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(_ROLLUP_TABLE))})"
        )
        self._transaction((sql, rows))

    def scan_rollups(
        self,
        pilot: str,
        sensors: Sequence[str],
        resolution: str,
        start_ns: int,
        end_ns: int,
        *,
        devices: Sequence[str] | None = None,
    ) -> Rollups:
        """Rollups of the pilot's sensors (and devices) with `start_ns <= start < end_ns`."""
        resolution_ns(resolution)
        if not sensors or (devices is not None and not devices):
            return Rollups.empty()
        # Only column names and `?` placeholders are formatted in; values are bound parameters.
        sql = (
            f"SELECT device, sensor, start_ns, {', '.join(_ROLLUP_VALUES)} FROM rollups "  # noqa: S608
            f"WHERE resolution = ? AND pilot = ? AND sensor IN ({','.join('?' * len(sensors))}) "
            "AND start_ns >= ? AND start_ns < ?"
        )
        params: list[object] = [resolution, pilot, *sensors, start_ns, end_ns]
        if devices is not None:
            sql += f" AND device IN ({','.join('?' * len(devices))})"
            params.extend(devices)
        try:
            rows = self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store query failed: {exc}") from exc
        known_devices = self.registry.devices
        known_sensors = self.registry.sensors
        rows = [r for r in rows if r[0] in known_devices and r[1] in known_sensors]
        if not rows:
            return Rollups.empty()
        columns = list(zip(*rows, strict=True))
        values = {
            c.name: np.asarray(column, dtype=c.dtype)
            for c, column in zip(VALUE_COLUMNS, columns[3:-1], strict=True)
        }
        rollups = Rollups(
            start_ns=np.asarray(columns[2], dtype=np.int64),
            device=np.asarray([known_devices[d].code for d in columns[0]], dtype=np.int32),
            sensor=np.asarray([known_sensors[s].code for s in columns[1]], dtype=np.int16),
            **values,
            sketch=Sketches.decode(list(columns[-1])),
        )
        return rollups.take(rollups.sort_order())

    def get_watermark(self, name: str) -> int | None:
        """The watermark's value, None if it was never set."""
        check_watermark_name(name)
        try:
            row = (
                self._connection()
                .execute("SELECT value_ns FROM watermarks WHERE name = ?", (name,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store query failed: {exc}") from exc
        return None if row is None else int(row[0])

    def set_watermark(self, name: str, value_ns: int) -> None:
        """Insert or replace the watermark."""
        row = (check_watermark_name(name), check_watermark_value(value_ns))
        self._transaction(("INSERT OR REPLACE INTO watermarks VALUES (?, ?)", [row]))

    def _reading_rows(self, readings: Readings) -> list[tuple[object, ...]]:
        devices = self._device_ids
        pilots = self._pilot_of
        sensors = self._sensor_ids
        device_codes = readings.device.tolist()
        return list(
            zip(
                [pilots[d] for d in device_codes],
                [devices[d] for d in device_codes],
                [sensors[s] for s in readings.sensor.tolist()],
                readings.ts_ns.tolist(),
                readings.value.tolist(),
                strict=True,
            )
        )

    def _uplink_rows(self, uplinks: Uplinks) -> list[tuple[object, ...]]:
        device_codes = uplinks.device.tolist()
        return list(
            zip(
                [self._pilot_of[d] for d in device_codes],
                [self._device_ids[d] for d in device_codes],
                uplinks.ts_ns.tolist(),
                uplinks.received_ns.tolist(),
                uplinks.fcnt.tolist(),
                [None if math.isnan(v) else v for v in uplinks.rssi.tolist()],
                [None if math.isnan(v) else v for v in uplinks.snr.tolist()],
                uplinks.sf.tolist(),
                uplinks.gateway.tolist(),
                strict=True,
            )
        )

    def scan(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> Readings:
        """Readings of the pilot's sensors (and devices) with `start_ns <= ts < end_ns`."""
        if not sensors or (devices is not None and not devices):
            return Readings.empty()
        where, params = _where(pilot, start_ns, end_ns, devices, sensors)
        sql = f"SELECT device, sensor, ts_ns, value FROM readings {where}"  # noqa: S608
        return self._query(sql, params)

    def count(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> int:
        """Readings `scan` would return, counted in SQLite."""
        if not sensors or (devices is not None and not devices):
            return 0
        where, params = _where(pilot, start_ns, end_ns, devices, sensors)
        return self._count(f"SELECT COUNT(*) FROM readings {where}", params)  # noqa: S608

    def count_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> int:
        """Uplinks `scan_uplinks` would return, counted in SQLite."""
        if devices is not None and not devices:
            return 0
        where, params = _where(pilot, start_ns, end_ns, devices)
        return self._count(f"SELECT COUNT(*) FROM uplinks {where}", params)  # noqa: S608

    def _count(self, sql: str, params: list[object]) -> int:
        try:
            row = self._connection().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store query failed: {exc}") from exc
        return int(row[0])

    def count_repeats(self, pilot: str, start_ns: int, end_ns: int) -> dict[str, int]:
        """Repeated transmissions received in the range, per device id."""
        sql = (
            "SELECT device, count(*) FROM repeats WHERE pilot = ? AND ts_ns >= ? AND ts_ns < ? "
            "GROUP BY device"
        )
        try:
            rows = self._connection().execute(sql, (pilot, start_ns, end_ns)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store query failed: {exc}") from exc
        return {device: int(n) for device, n in rows if device in self.registry.devices}

    def scan_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> Uplinks:
        """Uplinks of the pilot's devices (or the named ones) with `start_ns <= ts < end_ns`."""
        if devices is not None and not devices:
            return Uplinks.empty()
        where, params = _where(pilot, start_ns, end_ns, devices)
        columns = "device, ts_ns, received_ns, fcnt, rssi, snr, sf, substr(gateway, 1, 64)"
        sql = f"SELECT {columns} FROM uplinks {where}"  # noqa: S608
        try:
            rows = self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store query failed: {exc}") from exc
        known = self.registry.devices
        rows = [r for r in rows if r[0] in known]
        if not rows:
            return Uplinks.empty()
        device, ts, received, fcnt, rssi, snr, sf, gateway = zip(*rows, strict=True)
        return Uplinks.from_columns(
            ts_ns=ts,
            device=[known[d].code for d in device],
            received_ns=received,
            fcnt=fcnt,
            rssi=[math.nan if v is None else v for v in rssi],
            snr=[math.nan if v is None else v for v in snr],
            sf=sf,
            gateway=gateway,
        )

    def latest(self, pilot: str) -> Readings:
        """The newest reading of each (device, sensor) of the pilot."""
        # SQLite returns the row holding MAX(ts_ns) for the bare columns of an aggregate query.
        sql = (
            "SELECT device, sensor, MAX(ts_ns), value FROM readings "
            "WHERE pilot = ? GROUP BY device, sensor"
        )
        return self._query(sql, [pilot])

    def _query(self, sql: str, params: list[object]) -> Readings:
        try:
            rows = self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store query failed: {exc}") from exc
        # Rows whose device or sensor left the registry are not readable through it.
        known_devices = self.registry.devices
        known_sensors = self.registry.sensors
        rows = [r for r in rows if r[0] in known_devices and r[1] in known_sensors]
        if not rows:
            return Readings.empty()
        device, sensor, ts, value = zip(*rows, strict=True)
        return Readings.from_arrays(
            np.asarray(ts, dtype=np.int64),
            [known_devices[d].code for d in device],
            [known_sensors[s].code for s in sensor],
            np.asarray(value, dtype=np.float64),
        )

    def ping(self) -> None:
        """Check that the database file answers."""
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store unavailable: {exc}") from exc

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

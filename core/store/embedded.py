"""The embedded store: SQLite in WAL mode, for the zero-setup demo and offline use.

Same contract as the InfluxDB adapter: points keyed by (pilot, device, sensor, time), a second
write of a key replaces the first. SQLite is chosen over an analytical engine because several
processes (ingest, api) may open the same file, which SQLite's WAL mode allows and DuckDB's
single-writer file lock does not. It is not the store of record for a deployment.
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
from core.uplinks import Uplinks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    pilot  TEXT    NOT NULL,
    device TEXT    NOT NULL,
    sensor TEXT    NOT NULL,
    ts_ns  INTEGER NOT NULL,
    value  REAL    NOT NULL,
    PRIMARY KEY (pilot, device, sensor, ts_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uplinks (
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
) WITHOUT ROWID;
"""


class EmbeddedStore:
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
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open embedded store {path}: {exc}") from exc

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

    def write(self, readings: Readings, uplinks: Uplinks | None = None) -> None:
        """Insert or replace every reading and uplink in one transaction."""
        rows = self._reading_rows(readings)
        up_rows = self._uplink_rows(uplinks) if uplinks is not None else []
        if not rows and not up_rows:
            return
        try:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?, ?)", rows)
                db.executemany(
                    "INSERT OR REPLACE INTO uplinks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", up_rows
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store write failed: {exc}") from exc

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
        # Only `?` placeholders are formatted in; every value is a bound parameter.
        marks = ",".join("?" * len(sensors))
        sql = (
            "SELECT device, sensor, ts_ns, value FROM readings WHERE pilot = ? "  # noqa: S608
            f"AND sensor IN ({marks}) AND ts_ns >= ? AND ts_ns < ?"
        )
        params: list[object] = [pilot, *sensors, start_ns, end_ns]
        if devices is not None:
            sql += f" AND device IN ({','.join('?' * len(devices))})"
            params.extend(devices)
        return self._query(sql, params)

    def scan_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> Uplinks:
        """Uplinks of the pilot's devices (or the named ones) with `start_ns <= ts < end_ns`."""
        if devices is not None and not devices:
            return Uplinks.empty()
        sql = (
            "SELECT device, ts_ns, received_ns, fcnt, rssi, snr, sf, gateway FROM uplinks "
            "WHERE pilot = ? AND ts_ns >= ? AND ts_ns < ?"
        )
        params: list[object] = [pilot, start_ns, end_ns]
        if devices is not None:
            sql += f" AND device IN ({','.join('?' * len(devices))})"
            params.extend(devices)
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

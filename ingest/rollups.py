"""Keeping the stored rollups current as readings arrive, late ones included.

What it is for: ingest's writer notes which (device, sensor, minute) cells each accepted write
touched (`RollupMaintainer.note`), and every so often recomputes those minutes from the raw
readings and re-merges their hours and days (`RollupMaintainer.run`). The notes wait in a small
SQLite queue of the writer's own, next to its spool. The rollups themselves and their merge
maths are `core.rollups`; this module must not format queries or know a store's schema: it
talks to stores only through the `core.store` protocols.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from core.errors import StoreError
from core.readings import Readings
from core.registry import Registry
from core.rollups import (
    I64,
    Rollups,
    coarsen,
    compute_rollups,
    day_origin_ns,
    resolution_ns,
    run_starts,
    window_starts,
)
from core.sketch import DEFAULT_ALPHA
from core.store import ReadingReader, RollupStore, Watermarks
from core.timeutil import DAY_NS, HOUR_NS

log = logging.getLogger(__name__)


class MaintainedStore(ReadingReader, RollupStore, Watermarks, Protocol):
    """What the maintainer needs of a store: raw readings to read, rollups and a watermark."""


_NOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS touched (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device    TEXT    NOT NULL,
    sensor    TEXT    NOT NULL,
    minute_ns INTEGER NOT NULL,
    noted_ns  INTEGER NOT NULL,
    UNIQUE (device, sensor, minute_ns)
);
"""

WATERMARK = "rollups"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one `RollupMaintainer.run` did."""

    notes: int
    minutes: int
    hours: int
    days: int
    watermark_ns: int | None


@dataclass(frozen=True, slots=True)
class _Cells:
    """Distinct (device, sensor, window start) cells of one resolution."""

    device: NDArray[np.int32]
    sensor: NDArray[np.int16]
    start_ns: I64

    @classmethod
    def of(cls, device: NDArray[np.int32], sensor: NDArray[np.int16], start: I64) -> _Cells:
        order = np.lexsort((start, device, sensor))
        d, s, t = device[order], sensor[order], start[order]
        keep = run_starts(s, d, t)
        return cls(d[keep], s[keep], t[keep])

    def __len__(self) -> int:
        return len(self.start_ns)

    def member(self, rollups: Rollups) -> NDArray[np.bool_]:
        """Which rollup rows are one of these cells (by one sort: no packed keys to overflow)."""
        n_cells = len(self)
        device = np.concatenate([self.device, rollups.device]).astype(np.int64)
        sensor = np.concatenate([self.sensor, rollups.sensor]).astype(np.int64)
        start = np.concatenate([self.start_ns, rollups.start_ns])
        is_row = np.arange(len(start)) >= n_cells
        # Equal keys sort cells first; a row is a member when the last cell before it matches.
        order = np.lexsort((is_row, start, sensor, device))
        d, s, t, row = device[order], sensor[order], start[order], is_row[order]
        positions = np.arange(len(order))
        last_cell = np.maximum.accumulate(np.where(row, -1, positions))
        seen = np.maximum(last_cell, 0)
        hit = (last_cell >= 0) & (d[seen] == d) & (s[seen] == s) & (t[seen] == t)
        found = np.zeros(len(rollups), dtype=np.bool_)
        found[order[row] - n_cells] = hit[row]
        return found


#: Fetches rollups of one level for (pilot, sensor, start, end, devices).
_Fetch = Callable[[str, str, int, int, list[str]], Rollups]


class RollupMaintainer:
    """Keeps the `1m`, `1h` and `1d` rollups in a store current, late readings included.

    `note(readings)` records, after the store accepted a write, which (device, sensor, minute)
    cells it touched, in a small SQLite table at `path`. `run(store)` recomputes each noted
    minute from the raw readings (one `store.scan` per pilot, sensor and run of nearby
    minutes), re-merges the hours and days that contain them from the stored finer rollups,
    writes all three levels, deletes the notes it processed and advances the store's
    `rollups` watermark to the time of the newest processed note. A crash before the notes
    are deleted only means the same cells are recomputed again (rewrites are idempotent).

    Notes keep device and sensor names, never registry codes, so a registry edit between
    `note` and `run` cannot point a note at another device. One `run` at a time per store.
    Days are built for pilots whose zone has a fixed offset (`day_origin_ns`); `day_origins`
    overrides that for every pilot (a pilot left out, or mapped to None, gets no days).
    `registry` must be the one the noted readings were coded with and the store reads with.
    """

    def __init__(
        self,
        path: Path,
        registry: Registry,
        *,
        day_origins: Mapping[str, int | None] | None = None,
        alpha: float = DEFAULT_ALPHA,
        batch_notes: int = 100_000,
    ) -> None:
        self.path = path
        self.registry = registry
        self.alpha = alpha
        self.batch_notes = batch_notes
        self._day_origins = dict(day_origins) if day_origins is not None else None
        self._local = threading.local()
        self._device_ids = np.asarray([d.id for d in registry.device_list], dtype=object)
        self._sensor_ids = np.asarray([s.id for s in registry.sensor_list], dtype=object)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_NOTES_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open rollup notes {path}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection to the notes."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def day_origin(self, pilot: str) -> int | None:
        """Origin of the pilot's `1d` windows, None when its days are not kept."""
        if self._day_origins is not None:
            return self._day_origins.get(pilot)
        try:
            return day_origin_ns(self.registry.pilots[pilot].tz)
        except ValueError:
            return None

    # -- notes ----------------------------------------------------------------------------------

    def note(self, readings: Readings) -> int:
        """Record the (device, sensor, minute) cells the readings touch; returns how many.

        Call it once the store accepted the readings. Noting a cell that is already pending
        renews it, so a run that is busy with the old note does not clear the new one.
        """
        if len(readings) == 0:
            return 0
        cells = _Cells.of(readings.device, readings.sensor, window_starts(readings.ts_ns, "1m"))
        now = time.time_ns()
        rows = zip(
            self._device_ids[cells.device].tolist(),
            self._sensor_ids[cells.sensor].tolist(),
            cells.start_ns.tolist(),
            [now] * len(cells),
            strict=True,
        )
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO touched (device, sensor, minute_ns, noted_ns) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record rollup notes in {self.path}: {exc}") from exc
        return len(cells)

    def pending(self) -> int:
        """How many noted cells wait for a run."""
        row = self._db().execute("SELECT COUNT(*) FROM touched").fetchone()
        return int(row[0])

    # -- runs -----------------------------------------------------------------------------------

    def run(self, store: MaintainedStore) -> RunSummary:
        """Recompute every noted cell (see the class docstring); returns what was done."""
        db = self._db()
        (up_to,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM touched").fetchone()
        done = 0
        totals = [0, 0, 0]
        newest: int | None = None
        after = 0
        while True:
            rows = db.execute(
                "SELECT id, device, sensor, minute_ns, noted_ns FROM touched "
                "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after, up_to, self.batch_notes),
            ).fetchall()
            if not rows:
                break
            ids, devices, sensors, minutes, noted = zip(*rows, strict=True)
            written = self._process(store, list(devices), list(sensors), list(minutes))
            totals = [a + b for a, b in zip(totals, written, strict=True)]
            after = int(ids[-1])
            db.execute("DELETE FROM touched WHERE id <= ?", (after,))
            done += len(rows)
            newest = max(newest or 0, *noted)
        watermark = store.get_watermark(WATERMARK)
        if newest is not None and (watermark is None or newest > watermark):
            store.set_watermark(WATERMARK, newest)
            watermark = newest
        summary = RunSummary(done, totals[0], totals[1], totals[2], watermark)
        if done:
            log.info("rollups: %s", summary)
        return summary

    def _process(
        self, store: MaintainedStore, devices: list[str], sensors: list[str], minutes: list[int]
    ) -> tuple[int, int, int]:
        known_d, known_s = self.registry.devices, self.registry.sensors
        keep = [d in known_d and s in known_s for d, s in zip(devices, sensors, strict=True)]
        device = np.asarray(
            [known_d[d].code for d, k in zip(devices, keep, strict=True) if k], dtype=np.int32
        )
        sensor = np.asarray(
            [known_s[s].code for s, k in zip(sensors, keep, strict=True) if k], dtype=np.int16
        )
        minute = np.asarray(minutes, dtype=np.int64)[np.asarray(keep, dtype=np.bool_)]

        def readings_1m(pilot: str, s: str, start: int, end: int, devs: list[str]) -> Rollups:
            readings = store.scan(pilot, [s], start, end, devices=devs)
            return compute_rollups(readings, "1m", alpha=self.alpha)

        def hours(pilot: str, s: str, start: int, end: int, devs: list[str]) -> Rollups:
            found = store.scan_rollups(pilot, [s], "1m", start, end, devices=devs)
            return coarsen(found, "1m", "1h")

        def days(pilot: str, s: str, start: int, end: int, devs: list[str]) -> Rollups:
            origin = self.day_origin(pilot)
            assert origin is not None
            source = "1h" if origin % HOUR_NS == 0 else "1m"
            found = store.scan_rollups(pilot, [s], source, start, end, devices=devs)
            return coarsen(found, source, "1d", origin_ns=origin)

        minute_cells = _Cells.of(device, sensor, minute)
        n_minutes = self._refresh(store, "1m", minute_cells, readings_1m)
        hour_cells = _Cells.of(device, sensor, window_starts(minute, "1h"))
        n_hours = self._refresh(store, "1h", hour_cells, hours)
        origin = self._device_day_origins()[device]
        has_days = origin != _NO_ORIGIN
        origin = np.where(has_days, origin, 0)
        day_start = minute - (minute - origin) % DAY_NS
        day_cells = _Cells.of(device[has_days], sensor[has_days], day_start[has_days])
        n_days = self._refresh(store, "1d", day_cells, days)
        return n_minutes, n_hours, n_days

    def _device_day_origins(self) -> I64:
        by_pilot = {p: self.day_origin(p) for p in self.registry.pilots}
        return np.asarray(
            [
                _NO_ORIGIN if by_pilot[d.pilot] is None else by_pilot[d.pilot]
                for d in self.registry.device_list
            ],
            dtype=np.int64,
        )

    def _refresh(
        self, store: MaintainedStore, resolution: str, cells: _Cells, fetch: _Fetch
    ) -> int:
        """Recompute `cells` of one level span by span, then write them in one go."""
        width = resolution_ns(resolution)
        found: list[Rollups] = []
        for pilot, sensor, start, end, devices in self._spans(cells, width):
            rollups = fetch(pilot, sensor, start, end, devices)
            found.append(rollups.take(cells.member(rollups)))
        fresh = Rollups.concat(found)
        if len(fresh):
            store.write_rollups(resolution, fresh)
        return len(fresh)

    def _spans(self, cells: _Cells, width: int) -> Iterator[tuple[str, str, int, int, list[str]]]:
        """(pilot, sensor, start, end, devices) covering the cells, one query's worth each.

        A span breaks at a gap of more than `_SPAN_GAP` windows and at every `_SPAN_WINDOWS`
        windows, so a late minute three days back does not drag the days between into a scan.
        """
        if len(cells) == 0:
            return
        pilot = self.registry.device_pilot[cells.device].astype(np.int64)
        order = np.lexsort((cells.start_ns, cells.sensor, pilot))
        p, s, t, d = pilot[order], cells.sensor[order], cells.start_ns[order], cells.device[order]
        block = t // (width * _SPAN_WINDOWS)
        new = np.zeros(len(t), dtype=np.bool_)
        new[0] = True
        new[1:] = (
            (p[1:] != p[:-1])
            | (s[1:] != s[:-1])
            | (t[1:] - t[:-1] > width * _SPAN_GAP)
            | (block[1:] != block[:-1])
        )
        bounds = np.append(np.flatnonzero(new), len(t)).tolist()
        pilots = self.registry.pilot_list
        for a, b in itertools.pairwise(bounds):
            devices = self._device_ids[np.unique(d[a:b])].tolist()
            yield (
                pilots[int(p[a])].id,
                str(self._sensor_ids[s[a]]),
                int(t[a:b].min()),
                int(t[a:b].max()) + width,
                devices,
            )


_NO_ORIGIN = np.iinfo(np.int64).min
#: A span of cells breaks at gaps above this many windows and every this many windows.
_SPAN_GAP = 60
_SPAN_WINDOWS = 1440

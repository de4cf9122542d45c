"""The API's hot data: each pilot's hourly rollups and recent raw readings, in memory.

Long-range series and comparisons are answered from the rollups, and recent fine-grained
series (10-minute windows of the last day, exact quantiles, flags) and reports from the raw
readings, instead of rescanning the store. A background thread keeps both current: every
few seconds it reads the current hour again (new data lands there), every minute the last
hours (late data and recomputed rollups land there), and every few minutes it reloads the
whole span, which brings in late data older than that. So an answer from the cache lags the
store by at most the refresh period in the current hour, a minute in the last hours, and the
reload period before that.

It must not compute statistics itself: the core does, from what it holds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from core.errors import StoreError
from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups
from core.store import Store
from core.timeutil import DAY_NS, HOUR_NS, NS_PER_S

log = logging.getLogger(__name__)

RESOLUTION = "1h"


@dataclass
class _Held:
    rollups: Rollups  # hourly rollups starting at or after `from_ns`, by sensor then start
    from_ns: int
    raw: Readings  # readings at or after `raw_from_ns`, in time order
    raw_from_ns: int  # with `raw_held` False, none are held (past `max_raw_readings`)
    loaded_ns: int
    reloaded_ns: int
    deep_ns: int  # when the last hours (`overlap_s`) were last read again
    raw_held: bool = True


class HotCache:
    """Hourly rollups per pilot for the last `days`, refreshed in the background."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        days: int = 35,
        raw_hours: float = 60.0,
        refresh_s: float = 5.0,
        overlap_s: float = 6 * 3600.0,
        recent_s: float = 900.0,
        deep_s: float = 60.0,
        reload_s: float = 600.0,
        max_raw_readings: int | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.span_ns = days * DAY_NS
        self.raw_span_ns = int(raw_hours * 3600 * NS_PER_S)
        self.refresh_s = refresh_s
        self.overlap_ns = int(overlap_s * NS_PER_S)
        self.recent_ns = int(recent_s * NS_PER_S)
        self.deep_every_ns = int(deep_s * NS_PER_S)
        self.reload_ns = int(reload_s * NS_PER_S)
        #: Recent readings held per pilot at most: the store counts them before they are read,
        #: and a pilot with more (a device reporting far faster than registered) is answered
        #: from the store, request by request, under the requests' own limit.
        self.max_raw_readings = max_raw_readings
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {p: threading.Lock() for p in registry.pilots}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.version = 0  # bumped whenever held data changes (answers derived from it go stale)
        self._versions: dict[str, int] = dict.fromkeys(registry.pilots, 0)

    def start(self) -> None:
        """Begin refreshing in the background (pilots load on first use); again after `stop`."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        # A thread still finishing after `stop` sees its own event set and exits on its own.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._refresh_loop, args=(self._stop,), name="api-cache", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(5)

    def version_of(self, pilot: str) -> int:
        """Bumped whenever the pilot's held data changes."""
        with self._lock:
            return self._versions[pilot]

    def covers(self, start_ns: int, now_ns: int) -> bool:
        """Whether a range starting at `start_ns` lies within the rollups the cache holds."""
        return start_ns >= now_ns - self.span_ns

    def covers_raw(self, start_ns: int, now_ns: int, pilot: str | None = None) -> bool:
        """Whether a range starting at `start_ns` lies within the raw readings it holds.

        With `pilot`, also whether that pilot's recent readings are held at all.
        """
        if start_ns < now_ns - self.raw_span_ns:  # held from the hour at or before that
            return False
        return pilot is None or self._get(pilot).raw_held

    def readings(
        self,
        pilot: str,
        sensors: list[int],
        start_ns: int,
        end_ns: int,
        devices: list[int] | None = None,
    ) -> Readings:
        """The pilot's readings of those sensor (and device) codes in `[start_ns, end_ns)`."""
        part, keep = self._selected(pilot, sensors, start_ns, end_ns, devices)
        return part.take(keep)

    def count(
        self,
        pilot: str,
        sensors: list[int],
        start_ns: int,
        end_ns: int,
        devices: list[int] | None = None,
    ) -> int:
        """How many readings `readings` would return, counted without copying them."""
        return int(np.count_nonzero(self._selected(pilot, sensors, start_ns, end_ns, devices)[1]))

    def _selected(
        self,
        pilot: str,
        sensors: list[int],
        start_ns: int,
        end_ns: int,
        devices: list[int] | None,
    ) -> tuple[Readings, np.ndarray]:
        """The held readings of the range (a view, no copy), and which of them are asked for."""
        raw = self._get(pilot).raw
        lo, hi = np.searchsorted(raw.ts_ns, [start_ns, end_ns], side="left")
        part = raw.take(slice(int(lo), int(hi)))
        keep = np.isin(part.sensor, sensors)
        if devices is not None:
            keep &= np.isin(part.device, devices)
        return part, keep

    def rollups(self, pilot: str, sensors: list[int], start_ns: int, end_ns: int) -> Rollups:
        """The pilot's hourly rollups of those sensor codes with `start_ns <= start < end_ns`.

        Slices of what is held (rows are kept by sensor, then start), so no copy is made.
        """
        held = self._get(pilot).rollups
        parts = []
        for code in sensors:
            lo, hi = np.searchsorted(held.sensor, [code, code + 1], side="left")
            starts = held.start_ns[lo:hi]
            first, last = np.searchsorted(starts, [start_ns, end_ns], side="left")
            parts.append(held.slice(int(lo + first), int(lo + last)))
        return Rollups.concat(parts)

    def _get(self, pilot: str) -> _Held:
        with self._lock:
            held = self._held.get(pilot)
        if held is not None:
            return held
        with self._loading[pilot]:  # one load per pilot, however many requests wait for it
            with self._lock:
                held = self._held.get(pilot)
            if held is None:
                held = self._load(pilot)
        return held

    def _floors(self, now: int) -> tuple[int, int]:
        rollups_from = (now - self.span_ns) // HOUR_NS * HOUR_NS
        raw_from = (now - self.raw_span_ns) // HOUR_NS * HOUR_NS
        return rollups_from, raw_from

    def _too_many_raw(self, pilot: str, start_ns: int, end_ns: int, held: int = 0) -> bool:
        """Whether reading the range would hold more than `max_raw_readings` for the pilot."""
        if self.max_raw_readings is None:
            return False
        sensors = list(self.registry.pilots[pilot].sensors)
        found = held + self.store.count(pilot, sensors, start_ns, end_ns)
        if found > self.max_raw_readings:
            log.warning(
                "cache: %s has %d recent readings, more than the %d held per pilot "
                "(PILOTS_API_MAX_SCAN_READINGS; a device reports more often than registered?): "
                "its raw readings are read from the store per request",
                pilot,
                found,
                self.max_raw_readings,
            )
            return True
        return False

    def _scan_raw(self, pilot: str, start_ns: int, end_ns: int) -> Readings:
        sensors = list(self.registry.pilots[pilot].sensors)
        raw = self.store.scan(pilot, sensors, start_ns, end_ns)
        return raw.take(np.argsort(raw.ts_ns, kind="stable"))

    def _load(self, pilot: str, previous: _Held | None = None) -> _Held:
        now = time.time_ns()
        rollups_from, raw_from = self._floors(now)
        sensors = list(self.registry.pilots[pilot].sensors)
        rollups = _by_sensor(
            self.store.scan_rollups(pilot, sensors, RESOLUTION, rollups_from, now + HOUR_NS)
        )
        raw_held = not self._too_many_raw(pilot, raw_from, now + HOUR_NS)
        raw = self._scan_raw(pilot, raw_from, now + HOUR_NS) if raw_held else Readings.empty()
        held = _Held(rollups, rollups_from, raw, raw_from, now, now, now, raw_held)
        changed = previous is None or not (
            _same_rollups(previous.rollups.take(previous.rollups.start_ns >= rollups_from), rollups)
            and _same_readings(previous.raw.take(previous.raw.ts_ns >= raw_from), raw)
        )
        with self._lock:
            self._held[pilot] = held
            if changed:
                self.version += 1
                self._versions[pilot] += 1
        log.info(
            "cache: %s loaded, %d hourly rollups, %d recent readings", pilot, len(rollups), len(raw)
        )
        return held

    def _refresh(self, pilot: str, held: _Held, *, deep: bool = False) -> None:
        now = time.time_ns()
        if now - held.reloaded_ns >= self.reload_ns:
            self._load(pilot, held)
            return
        # New data lands at the end: most refreshes read the last `recent_s` again; every
        # `deep_s` one reads the last `overlap_s` (late data, recomputed rollups).
        deep = deep or now - held.deep_ns >= self.deep_every_ns
        overlap = self.overlap_ns if deep else self.recent_ns
        since = (held.loaded_ns - overlap) // HOUR_NS * HOUR_NS
        rollups_from, raw_from = self._floors(now)
        sensors = list(self.registry.pilots[pilot].sensors)
        fresh = self.store.scan_rollups(pilot, sensors, RESOLUTION, since, now + HOUR_NS)
        old = held.rollups
        keep_old = old.start_ns < since  # everything from `since` on is replaced
        old_raw = held.raw
        keep_raw = (old_raw.ts_ns >= raw_from) & (old_raw.ts_ns < since)
        raw_held = held.raw_held and not self._too_many_raw(
            pilot, max(since, raw_from), now + HOUR_NS, held=int(keep_raw.sum())
        )
        if raw_held:
            fresh_raw = self._scan_raw(pilot, max(since, raw_from), now + HOUR_NS)
        else:  # none held: requests read the store under their own limit
            fresh_raw = Readings.empty()
            keep_raw = np.zeros(len(old_raw), dtype=bool)
        changed = raw_held != held.raw_held or not (
            _same_rollups(old.take(~keep_old), fresh)
            and _same_readings(old_raw.take(old_raw.ts_ns >= since), fresh_raw)
            and bool(keep_raw[old_raw.ts_ns < since].all())
        )
        if changed or (len(old) and int(old.start_ns.min()) < rollups_from):
            rollups = _by_sensor(
                Rollups.concat([old.take(keep_old & (old.start_ns >= rollups_from)), fresh])
            )
            raw = Readings.concat([old_raw.take(keep_raw), fresh_raw])
        else:
            # Nothing new: keep the arrays held (rebuilding them would hold the interpreter
            # for tens of milliseconds per pilot, a pause every request behind it waits out).
            rollups, raw = old, old_raw
        with self._lock:
            self._held[pilot] = _Held(
                rollups,
                rollups_from,
                raw,
                raw_from,
                now,
                held.reloaded_ns,
                now if deep else held.deep_ns,
                raw_held,
            )
            if changed:
                self.version += 1
                self._versions[pilot] += 1

    def refresh_now(self) -> None:
        """A refresh of every loaded pilot that reads the last `overlap_s` again."""
        with self._lock:
            held = dict(self._held)
        for pilot, entry in held.items():
            self._refresh(pilot, entry, deep=True)

    def _refresh_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.refresh_s):
            with self._lock:
                held = dict(self._held)
            for pilot, entry in held.items():
                try:
                    self._refresh(pilot, entry)
                except StoreError as exc:
                    log.warning("cache: cannot refresh %s: %s", pilot, exc)
                except Exception:  # the thread must outlive any one failure
                    log.exception("cache: cannot refresh %s", pilot)


def _by_sensor(rollups: Rollups) -> Rollups:
    """The rows ordered by sensor, then window start (then device)."""
    return rollups.take(np.lexsort((rollups.device, rollups.start_ns, rollups.sensor)))


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Whether two tables hold the same rows in any order; columns time, device, sensor first."""
    if len(a[0]) != len(b[0]):
        return False
    order_a = np.lexsort((a[2], a[1], a[0]))
    order_b = np.lexsort((b[2], b[1], b[0]))
    return all(
        np.array_equal(x[order_a], y[order_b], equal_nan=x.dtype.kind == "f")
        for x, y in zip(a, b, strict=True)
    )


def _same_readings(a: Readings, b: Readings) -> bool:
    """Whether two batches hold the same readings (so answers from them are unchanged)."""
    return _same([a.ts_ns, a.device, a.sensor, a.value], [b.ts_ns, b.device, b.sensor, b.value])


def _same_rollups(a: Rollups, b: Rollups) -> bool:
    """Whether two batches of rollup rows summarise the same readings."""
    return _same(
        [a.start_ns, a.device, a.sensor, a.count, a.sum, a.last_ts],
        [b.start_ns, b.device, b.sensor, b.count, b.sum, b.last_ts],
    )


def rows_of(registry: Registry, rollups: Rollups, devices: list[int]) -> np.ndarray:
    """Output row of each rollup row for the given device codes (-1 for other devices)."""
    rows = np.full(len(registry.device_list), -1, dtype=np.int64)
    rows[devices] = np.arange(len(devices))
    return rows[rollups.device]

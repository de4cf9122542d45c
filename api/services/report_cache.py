"""Reports kept for reuse: a report is rebuilt when its period's data may have changed.

The hot cache's version of a pilot changes whenever the recent data it holds does; data older
than the cache holds (a late backlog, a quarantine replay) is caught by rebuilding every report
at least every `max_age_s`. Building one takes one of the process's `ScanSlots`; a report
kept from before takes none. A report also lists the period's alarms: it is rebuilt when one
of them changes (each change gives an alarm a new `seq`). Building is `api.services.report`'s;
this module must not compute any figure of a report, only decide when to build one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from api.cache import HotCache
from api.schemas import AlarmOut
from api.services import cost
from api.services.alerts import AlarmService
from api.services.report import Report, build_report
from api.services.slots import ScanSlots
from api.services.sources import FLAG_CONTEXT_INTERVALS, CachedScanner, too_many
from core.registry import Pilot, Registry
from core.store import Store
from core.timeutil import NS_PER_S

#: Reports kept at most (each holds its charts too).
KEPT = 32

#: A kept report's key: pilot, period, the hot cache's version of the pilot, and the (id, seq)
#: of each of the period's alarms (None without an alarm store).
_Key = tuple[str, int, int, int, tuple[tuple[str, int], ...] | None, bool]


class ReportCache:
    """Built reports by (pilot, period), valid while the hot cache's data is unchanged."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        cache: HotCache | None,
        *,
        slots: ScanSlots,
        max_age_s: float = 600.0,
        max_scan_readings: int = 250_000,
        alarms: AlarmService | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.cache = cache
        self.slots = slots
        self.max_age_s = max_age_s
        self.max_scan_readings = max_scan_readings
        self.alarms = alarms
        self.readings = CachedScanner(registry, store, cache)
        self._kept: OrderedDict[_Key, tuple[float, Report]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[_Key, threading.Lock] = {}

    def scan_cost(self, pilot: Pilot, start_ns: int, end_ns: int) -> int:
        """Readings and uplinks a report of the period reads, estimated from the registry."""
        longest = max((d.interval_s for d in pilot.devices), default=0)
        margin = FLAG_CONTEXT_INTERVALS * longest * NS_PER_S
        span = end_ns - start_ns
        return cost.readings(pilot.devices, None, span + 2 * margin) + cost.uplinks(
            pilot.devices, span
        )

    def get(self, pilot: Pilot, start_ns: int, end_ns: int, *, public: bool = False) -> Report:
        """The report, built now or reused; `public`: for a reader without a token.

        A public report's alarms are as they stood at the period's end and say nothing of the
        operators (`public_alarms`); it is kept apart from the full one.
        `QueryError` when it would read too much; `BusyError` when it must be built and no slot
        frees up in time.
        """
        cost.check(self.scan_cost(pilot, start_ns, end_ns), self.max_scan_readings, "this report")
        alarms = None if self.alarms is None else self.alarms.period(pilot, start_ns, end_ns)
        if public and alarms is not None:
            alarms = public_alarms(alarms, end_ns)
        if self.cache is None:  # nothing says when the data changed: build every time
            return self._build(pilot, start_ns, end_ns, alarms)
        version = self.cache.version_of(pilot.id)
        changes = None if alarms is None else tuple((a.id, a.seq) for a in alarms)
        key = (pilot.id, start_ns, end_ns, version, changes, public)
        with self._lock:
            found = self._fresh(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
            building = self._building.setdefault(key, threading.Lock())
        # Concurrent requests for one report build it once; the others wait for it as long as
        # they would wait for a slot.
        if not building.acquire(timeout=self.slots.wait_s):
            raise self.slots.busy()
        try:
            with self._lock:
                found = self._fresh(key)
            if found is None:
                found = self._build(pilot, start_ns, end_ns, alarms)
                with self._lock:
                    self._kept[key] = (time.monotonic(), found)
                    while len(self._kept) > KEPT:
                        self._kept.popitem(last=False)
        finally:  # also when refused or busy: the next request tries afresh
            with self._lock:
                self._building.pop(key, None)
            building.release()
        return found

    def _fresh(self, key: _Key) -> Report | None:
        kept = self._kept.get(key)
        if kept is None or time.monotonic() - kept[0] > self.max_age_s:
            return None
        return kept[1]

    def _build(
        self, pilot: Pilot, start_ns: int, end_ns: int, alarms: list[AlarmOut] | None
    ) -> Report:
        with self.slots.held():
            return self._build_held(pilot, start_ns, end_ns, alarms)

    def _build_held(
        self, pilot: Pilot, start_ns: int, end_ns: int, alarms: list[AlarmOut] | None
    ) -> Report:
        # The registry's estimate passed; the store's own count is the truth (a device that
        # reports more often than registered must not make a report read without bound).
        longest = max((d.interval_s for d in pilot.devices), default=0)
        margin = FLAG_CONTEXT_INTERVALS * longest * NS_PER_S
        found = self.readings.count(
            pilot.id, list(pilot.sensors), start_ns - margin, end_ns + margin
        ) + self.store.count_uplinks(pilot.id, start_ns, end_ns)
        if found > self.max_scan_readings:
            raise too_many(found, self.max_scan_readings, "this report")
        return build_report(
            self.registry,
            self.store,
            pilot,
            start_ns,
            end_ns,
            readings_from=self.readings,
            alarms=alarms,
        )


def public_alarms(alarms: list[AlarmOut], end_ns: int) -> list[AlarmOut]:
    """The alarms as anyone may see them, up to `end_ns`.

    Nothing of who acknowledged them nor what they wrote, and nothing after `end_ns`: an alarm
    that ended later is shown active, its peak and latest value unknown.
    """
    shown = []
    for alarm in alarms:
        changes: dict[str, object] = {
            "acked": None,
            "acked_ns": None,
            "acked_by": None,
            "ack_note": None,
        }
        if alarm.end_ns is None or alarm.end_ns >= end_ns:
            changes |= {
                "end": None,
                "end_ns": None,
                "cleared_ns": None,
                "state": "active",
                "active": True,
                "peak": None,
                "latest": None,
            }
        shown.append(alarm.model_copy(update=changes))
    return shown

"""Where the services read readings: the store, or the hot cache in front of it (`Scanner`).

`CachedScanner` answers from the cache's recent readings when it holds the range, and can
refuse a scan past a count of readings (`QueryError`). `scan_flagged` reads a range with the
readings around it that the flags need. This module must not shape answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from api.services.errors import QueryError
from api.services.values import now_ns
from core import flags as flagging
from core.readings import Readings
from core.registry import Pilot, Registry
from core.store import Store
from core.timeutil import NS_PER_S

if TYPE_CHECKING:
    from api.cache import HotCache

#: Device intervals either side of a range whose readings the flags look at, so that a reading
#: is judged the same whatever range it is asked in: the stuck check's minimum run is this long
#: and the spike check's window of 7 readings fits well within it.
FLAG_CONTEXT_INTERVALS = 12


class Scanner(Protocol):
    """Where readings come from: the store, or the hot cache in front of it."""

    def scan(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> Readings:
        """Readings of the pilot's sensors (and devices) with `start_ns <= time < end_ns`."""
        ...


def too_many(found: int, limit: int, what: str) -> QueryError:
    """The refusal of a request that would read more than the store holds room for."""
    return QueryError(
        f"{what} would read {found} stored readings, over the limit of {limit} per request "
        "(PILOTS_API_MAX_SCAN_READINGS; a device may report more often than the registry says); "
        "ask for a shorter range, fewer sensors or fewer devices"
    )


class CachedScanner:
    """`Store.scan`, answered from the hot cache's recent readings when it holds the range.

    With `max_readings`, a scan first counts what it would read (in the store, or in the
    cache's arrays) and refuses with `QueryError` past it: the registry's estimate assumes
    devices keep their registered intervals, this count does not.
    """

    def __init__(
        self,
        registry: Registry,
        store: Store,
        cache: HotCache | None,
        *,
        max_readings: int | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.cache = cache
        self.max_readings = max_readings

    def _cached(self, pilot: str, start_ns: int) -> bool:
        return self.cache is not None and self.cache.covers_raw(start_ns, now_ns(), pilot)

    def count(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> int:
        """How many readings `scan` would return, counted where it would read them."""
        if self.cache is None or not self._cached(pilot, start_ns):
            return self.store.count(pilot, sensors, start_ns, end_ns, devices=devices)
        return self.cache.count(pilot, *self._codes(sensors, devices, start_ns, end_ns))

    def scan(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> Readings:
        """Readings of the pilot's sensors (and devices) with `start_ns <= time < end_ns`."""
        if self.max_readings is not None:
            found = self.count(pilot, sensors, start_ns, end_ns, devices)
            if found > self.max_readings:
                raise too_many(found, self.max_readings, "this request")
        if self.cache is None or not self._cached(pilot, start_ns):
            return self.store.scan(pilot, sensors, start_ns, end_ns, devices=devices)
        return self.cache.readings(pilot, *self._codes(sensors, devices, start_ns, end_ns))

    def _codes(
        self, sensors: Sequence[str], devices: Sequence[str] | None, start_ns: int, end_ns: int
    ) -> tuple[list[int], int, int, list[int] | None]:
        """The cache's arguments: sensor codes, the range, device codes (None: all)."""
        codes = self.registry.sensor_codes(list(sensors)).tolist()
        chosen = None if devices is None else self.registry.device_codes(list(devices)).tolist()
        return codes, start_ns, end_ns, chosen


def scan_flagged(
    source: Scanner,
    registry: Registry,
    pilot: Pilot,
    sensors: list[str],
    *,
    start_ns: int,
    end_ns: int,
    devices: list[str] | None = None,
) -> tuple[Readings, flagging.Flags]:
    """The readings of `[start_ns, end_ns)` and their flags, judged in context.

    Stuck runs and spikes are found among the readings around the range too, so that the
    first readings of a range are compared with those just before it.
    """
    chosen = [d for d in pilot.devices if devices is None or d.id in devices]
    longest = max((d.interval_s for d in chosen), default=0)
    margin = FLAG_CONTEXT_INTERVALS * longest * NS_PER_S
    wide = source.scan(pilot.id, sensors, start_ns - margin, end_ns + margin, devices=devices)
    flags = flagging.combined(wide, registry, stuck_min_intervals=FLAG_CONTEXT_INTERVALS)
    inside = (wide.ts_ns >= start_ns) & (wide.ts_ns < end_ns)
    return wide.take(inside), flags.take(inside)

"""Local calendar days of readings, over whole arrays: where each reading's day begins and ends.

A `mean_over_guideline` rule with `window = "day"` averages a device's readings since the
local midnight of each reading's day, in the time zone of the device's pilot, as the report's
exceedance days do (`core.thresholds.exceedance_days`, `core.windows.calendar_edges`): a day
starts at `datetime(y, m, d, tzinfo=zone)` (a midnight skipped by a daylight-saving change:
the instant zoneinfo maps it to, the first valid one) and ends where the next one starts, so a
day of a clock change lasts its real 23 or 25 hours.

No loop over readings: per zone (a registry has a few), the readings' local dates are guessed
with one UTC offset (the zone's at the newest reading), the midnights of those dates and of
their neighbours are asked of zoneinfo (one call per distinct date, cached), and each reading
finds its day among them by `searchsorted`. A zone's offset changes by less than a day, so a
reading's true date is within one of its guess; with two dates either side, both the midnight
before a reading and the one after it are among those asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from core.alerts.kernels import I64, Index
from core.timeutil import NS_PER_S, datetime_to_ns, utc_offset_ns

DAY_NS = 86_400 * NS_PER_S
_EPOCH = date(1970, 1, 1).toordinal()
#: Dates asked around each guessed one (two either side: see the module docstring).
_AROUND = np.arange(-2, 3, dtype=np.int64)


@lru_cache(maxsize=16_384)
def local_midnight_ns(zone: str, day: int) -> int:
    """The instant local midnight starts `day` (days since 1970-01-01) in `zone`."""
    moment = date.fromordinal(_EPOCH + day)
    return datetime_to_ns(datetime(moment.year, moment.month, moment.day, tzinfo=ZoneInfo(zone)))


def midnights_around(ts_ns: I64, zone: str) -> tuple[I64, bool]:
    """The local midnights of `zone` around instants, and whether their dates are consecutive.

    Sorted; for each instant they include the one that starts its day and the next one (see
    the module docstring). When their dates are consecutive, every instant between the first
    and the last finds its day among them too.
    """
    offset = utc_offset_ns(ZoneInfo(zone), int(ts_ns.max()))
    guess = np.unique((ts_ns + offset) // DAY_NS)
    days = np.unique((guess[:, None] + _AROUND[None, :]).ravel())
    out: I64 = np.unique(np.asarray([local_midnight_ns(zone, d) for d in days.tolist()]))
    return out, int(days[-1] - days[0]) + 1 == len(days)


def day_bounds(ts_ns: I64, zone: str) -> tuple[I64, I64]:
    """Per instant, the local midnight that starts its day in `zone`, and the next one."""
    if not len(ts_ns):
        return ts_ns.copy(), ts_ns.copy()
    return _place(midnights_around(ts_ns, zone)[0], ts_ns)


def _place(midnights: I64, ts_ns: I64) -> tuple[I64, I64]:
    at = np.searchsorted(midnights, ts_ns, side="right") - 1
    return midnights[at], midnights[at + 1]


class LocalDays:
    """The local days of devices' readings, each device in its pilot's zone.

    Per zone, the midnights last asked are kept when they are those of consecutive dates: a
    batch whose readings lie between the first and the last of them (a stream: the same day,
    batch after batch) is placed among them without asking zoneinfo again. They are a
    function of the zone alone, so what is kept changes no result.
    """

    def __init__(self, zones: Sequence[str], zone_of_device: Sequence[int]) -> None:
        self.zones = tuple(zones)
        self.zone_of = np.asarray(zone_of_device, dtype=np.int64)
        self._kept: list[I64 | None] = [None] * len(self.zones)

    def bounds(self, ts_ns: I64, device: Index) -> tuple[I64, I64]:
        """Per reading (its time, its device's code): its local day's start and end."""
        if not len(ts_ns):
            return ts_ns.copy(), ts_ns.copy()
        zone = self.zone_of[device]
        if len(self.zones) == 1 or int(zone.min()) == int(zone.max()):
            return self._zone_bounds(int(zone[0]), ts_ns)
        start = np.empty(len(ts_ns), dtype=np.int64)
        end = np.empty(len(ts_ns), dtype=np.int64)
        for z in np.unique(zone).tolist():  # a few zones, never one step per reading
            at = np.flatnonzero(zone == z)
            start[at], end[at] = self._zone_bounds(z, ts_ns[at])
        return start, end

    def _zone_bounds(self, z: int, ts_ns: I64) -> tuple[I64, I64]:
        kept = self._kept[z]
        if kept is not None and kept[0] <= int(ts_ns.min()) and int(ts_ns.max()) < kept[-1]:
            return _place(kept, ts_ns)
        midnights, consecutive = midnights_around(ts_ns, self.zones[z])
        if consecutive:
            self._kept[z] = midnights
        return _place(midnights, ts_ns)

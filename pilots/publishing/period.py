"""What one run publishes, checked before anything is read, and the services it reads through.

`check_period` validates the options once, at the edge: a known pilot, an ordered period no
longer than the API's longest range (`PILOTS_API_MAX_RANGE_DAYS`), an SPDX licence; the rest
of the package trusts the `Period` it returns. `open_services` builds the API's services over
one store as `api.state` does, without the hot cache (one pass). `check_estimate` refuses,
from the registry alone, a period whose export or report would read more than
`PILOTS_API_EXPORT_MAX_ROWS`. A refusal is a `RefusedError`; this module must not read a
reading, write a file, or decide an exit code (the command's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import PilotsError

if TYPE_CHECKING:
    from api.services.alerts import AlarmService
    from api.services.report_cache import ReportCache
    from api.services.series import SeriesService
    from api.services.slots import ScanSlots
    from core.registry import Pilot, Registry
    from core.settings import Settings
    from core.store import Store

#: The licence of a package when neither `--licence` nor the registry's pilot names one.
DEFAULT_LICENCE = "CC-BY-4.0"


class RefusedError(PilotsError):
    """The options or the period are not published: said before anything is written."""


@dataclass(frozen=True)
class Period:
    """What is published: a pilot's `[start_ns, end_ns)`, its licence and contributors."""

    pilot: Pilot
    start_ns: int
    end_ns: int
    licence: str
    contributors: tuple[str, ...]

    def at(self, ts_ns: int) -> str:
        """An instant as RFC 3339 with the pilot's offset."""
        from core.timeutil import ns_to_datetime

        return ns_to_datetime(ts_ns, self.pilot.tz).isoformat()


@dataclass(frozen=True)
class Services:
    """The API's services, built over one store for this run (no hot cache: one pass)."""

    settings: Settings
    registry: Registry
    store: Store
    slots: ScanSlots
    series: SeriesService
    reports: ReportCache
    alarms: AlarmService | None

    def close(self) -> None:
        """The store closed, then the alarms' database if one was opened."""
        self.store.close()
        if self.alarms is not None:
            self.alarms.close()


def check_period(
    registry: Registry,
    settings: Settings,
    *,
    pilot_id: str,
    span: tuple[str, str],
    licence: str | None,
    contributors: Sequence[str],
) -> Period:
    """The options checked: a known pilot, an ordered period within the API's longest range."""
    from core.registry import LICENCE_PATTERN
    from core.timeutil import DAY_NS, parse_local_instant_ns

    pilot = registry.pilots.get(pilot_id)
    if pilot is None:
        raise RefusedError(f"unknown pilot {pilot_id!r}; known: {', '.join(registry.pilots)}")
    try:
        start_ns, end_ns = (parse_local_instant_ns(text, pilot.tz) for text in span)
    except ValueError as exc:
        raise RefusedError(str(exc)) from exc
    if start_ns >= end_ns:
        raise RefusedError("--start must be before --end")
    days = settings.api_max_range_days
    if end_ns - start_ns > days * DAY_NS:
        raise RefusedError(
            f"the period is longer than {days} days, the API's longest range "
            "(PILOTS_API_MAX_RANGE_DAYS); publish it in parts"
        )
    chosen = licence or pilot.licence or DEFAULT_LICENCE
    if not re.match(LICENCE_PATTERN, chosen):
        raise RefusedError(
            f"--licence {chosen!r} is not an SPDX licence id such as {DEFAULT_LICENCE}"
        )
    return Period(pilot, start_ns, end_ns, chosen, tuple(contributors))


def open_services(settings: Settings, registry: Registry) -> Services:
    """The store (not started), the series and report services as `api.state` builds them."""
    from alerts.store import DATABASE
    from api.services.alerts import AlarmService
    from api.services.report_cache import ReportCache
    from api.services.series import Limits, SeriesService
    from api.services.slots import ScanSlots
    from core.store import open_store
    from core.timeutil import HOUR_NS

    store = open_store(settings, registry)
    slots = ScanSlots(1, settings.api_scan_wait_s)  # one step at a time
    limits = Limits(
        max_points=settings.api_max_points,
        raw_max_ns=int(settings.api_raw_max_hours * HOUR_NS),
        max_scan_readings=settings.api_max_scan_readings,
    )
    series = SeriesService(registry, store, None, limits, slots=slots)
    alarms = None
    if (Path(settings.data_dir) / DATABASE).exists():  # never create one as a side effect
        alarms = AlarmService(settings, registry)
        alarms.open()
    # A published period's report may read as much as its export: a year, not one request.
    reports = ReportCache(
        registry,
        store,
        None,
        slots=slots,
        max_scan_readings=settings.api_export_max_rows,
        alarms=alarms,
    )
    return Services(settings, registry, store, slots, series, reports, alarms)


def too_many(what: str, limit: int) -> str:
    """Why a period over the export limit is not published, and what to do instead."""
    return (
        f"{what}, over the export limit of {limit} rows (PILOTS_API_EXPORT_MAX_ROWS); "
        "publish a shorter period"
    )


def check_estimate(services: Services, period: Period) -> None:
    """Refuse, from the registry alone, a period whose export or report reads too much."""
    from api.services import cost

    pilot, limit = period.pilot, services.settings.api_export_max_rows
    estimate = max(
        cost.readings(pilot.devices, None, period.end_ns - period.start_ns),
        services.reports.scan_cost(pilot, period.start_ns, period.end_ns),
    )
    if estimate > limit:
        raise RefusedError(too_many(f"the period would read about {estimate} readings", limit))

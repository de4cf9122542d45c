"""Windowed statistics of sensors: from raw readings for short ranges, from rollups for long ones.

Short ranges (up to `PILOTS_API_RAW_MAX_HOURS`), anything that excludes flagged readings, and
windows that are not whole hours are computed from raw readings with the exact kernel. Longer
ranges come from hourly rollups (the hot cache when it holds the range, the store otherwise):
count, sum, mean, min, max, std, first and last are the same either way; quantiles from
rollups come from the sketch, within 1 % (docs/STATISTICS.md). The range is widened to whole
windows, so that both sources count the same readings. Fixed windows are aligned to the
pilot's local clock, not to the request's start: in a zone whose offset is whole hours,
windows of whole hours (`1h`, `6h`, `1d`) are unions of hourly rollups whatever instant the
range starts at. Building an answer takes one of the process's `ScanSlots`; an answer kept
from before takes none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from api.cache import HotCache
from api.schemas import (
    CompareJson,
    CompareLineJson,
    SensorSeriesJson,
    SeriesJson,
    SeriesLineJson,
    WindowJson,
)
from api.services import cost
from api.services.errors import QueryError
from api.services.slots import ScanSlots
from api.services.sources import FLAG_CONTEXT_INTERVALS, CachedScanner, scan_flagged
from api.services.values import at, devices_with, now_ns, numbers
from core.aggregate import window_stats
from core.registry import Device, Pilot, Registry
from core.rollups import Rollups, day_origin_ns, to_table
from core.stats import Table
from core.store import Store
from core.timeutil import DAY_NS, HOUR_NS, NS_PER_S, format_duration
from core.windows import Calendar, Fixed, WindowSpec, count_windows, edges

#: Statistics a series can ask for; pNN are exact quantiles (sketch estimates from rollups).
QUANTILE_STATS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
SERIES_STATS = ("count", "sum", "mean", "min", "max", "std", "first", "last", *QUANTILE_STATS)


@dataclass(frozen=True)
class SeriesQuery:
    """A validated series request."""

    pilot: Pilot
    sensors: Sequence[str]
    devices: Sequence[str] | None
    window: WindowSpec
    window_label: str
    start_ns: int
    end_ns: int
    statistics: Sequence[str]
    pooled: bool
    exclude_flagged: bool


@dataclass(frozen=True)
class Limits:
    """How big an answer may be, when rollups take over from raw readings, answers kept."""

    max_points: int
    raw_max_ns: int
    answers_kept: int = 0
    answers_max_bytes: int = 32 << 20
    max_scan_readings: int = 250_000


def _hour_aligned(window_edges: np.ndarray) -> bool:
    """Whether every window edge falls on a whole hour (so hourly rollups tile the windows)."""
    return bool(np.all(window_edges % HOUR_NS == 0))


def _columns(
    table: Table, statistics: Sequence[str], row: int, starts: list[str]
) -> list[WindowJson]:
    """The windows of one line, as `WindowOut`-shaped dicts.

    Built directly: an answer can hold tens of thousands of windows, and a model per window
    would dominate its time.
    """
    keys = ["start", "count"]
    columns: list[list[Any]] = [starts, table.count[row].tolist()]
    for name in statistics:
        if name == "count":
            continue
        keys.append(name)
        if name in QUANTILE_STATS:
            columns.append(numbers(table.quantiles[QUANTILE_STATS[name]][row]))
        else:
            columns.append(numbers(getattr(table, name)[row]))
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


class SeriesService:
    """Answers series and comparisons from the store, the hot cache and the core."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        cache: HotCache | None,
        limits: Limits,
        *,
        slots: ScanSlots,
    ) -> None:
        self.registry = registry
        self.store = store
        self.cache = cache
        self.limits = limits
        self.slots = slots
        self.readings = CachedScanner(registry, store, cache, max_readings=limits.max_scan_readings)
        self._answers: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._answers_bytes = 0
        self._answers_lock = threading.Lock()

    def _plan(self, query: SeriesQuery) -> tuple[np.ndarray, bool]:
        """The window edges (the range widened to whole windows) and whether from rollups."""
        window_edges = edges(query.window, query.start_ns, query.end_ns)
        start, end = int(window_edges[0]), int(window_edges[-1])
        use_rollups = (
            not query.exclude_flagged
            and end - start > self.limits.raw_max_ns
            and _hour_aligned(window_edges)
        )
        return window_edges, use_rollups

    def _held(self, query: SeriesQuery) -> bool:
        """Whether the answer comes wholly from the hot cache (so its version dates it)."""
        if self.cache is None:
            return False
        window_edges, use_rollups = self._plan(query)
        start, now = int(window_edges[0]), now_ns()
        if use_rollups:
            return self.cache.covers(start, now)
        longest = max((d.interval_s for d in query.pilot.devices), default=0)
        margin = FLAG_CONTEXT_INTERVALS * longest * NS_PER_S if query.exclude_flagged else 0
        return self.cache.covers_raw(start - margin, now, query.pilot.id)

    def series_json(self, query: SeriesQuery) -> bytes:
        """`series` serialised; kept, when it comes from the hot cache, until that changes."""
        self.check(query)
        if self.cache is None or self.limits.answers_kept == 0 or not self._held(query):
            return orjson.dumps(self.series(query))
        key = (
            query.pilot.id,
            tuple(query.sensors),
            None if query.devices is None else tuple(query.devices),
            query.window,
            query.start_ns,
            query.end_ns,
            tuple(query.statistics),
            query.pooled,
            query.exclude_flagged,
            self.cache.version_of(query.pilot.id),
        )
        with self._answers_lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
                return found
        body = orjson.dumps(self.series(query))
        if len(body) > self.limits.answers_max_bytes:
            return body
        with self._answers_lock:
            if key not in self._answers:
                self._answers[key] = body
                self._answers_bytes += len(body)
            while (
                len(self._answers) > self.limits.answers_kept
                or self._answers_bytes > self.limits.answers_max_bytes
            ):
                self._answers_bytes -= len(self._answers.popitem(last=False)[1])
        return body

    def answers_kept(self) -> tuple[int, int]:
        """How many answers are kept, and their size in bytes."""
        with self._answers_lock:
            return len(self._answers), self._answers_bytes

    def _check_size(self, query: SeriesQuery, lines: int) -> None:
        windows = count_windows(query.window, query.start_ns, query.end_ns)
        points = windows * lines * len(query.sensors)
        if points > self.limits.max_points:
            raise QueryError(
                f"{windows} windows x {lines} lines x {len(query.sensors)} sensors = {points} "
                f"points exceeds the limit of {self.limits.max_points} per response "
                "(PILOTS_API_MAX_POINTS); use a longer window, a shorter range, fewer devices "
                "or pooled=true"
            )

    def _lines(self, query: SeriesQuery) -> int:
        widest = max((len(self._devices(query, s)) for s in query.sensors), default=0)
        return 1 if query.pooled else max(widest, 1)

    def check(self, query: SeriesQuery) -> None:
        """Refuse a query over a limit before anything is built or read (`QueryError`).

        Points first: they bound the windows, so the plan's edges are then cheap to build.
        """
        self._check_size(query, self._lines(query))
        self.check_scan(self.scan_cost(query), "this series")

    def check_scan(self, estimate: int, what: str) -> None:
        """Refuse `estimate` readings read if over `PILOTS_API_MAX_SCAN_READINGS`."""
        cost.check(estimate, self.limits.max_scan_readings, what)

    def scan_cost(self, query: SeriesQuery) -> int:
        """Readings (or weighted rollup rows) the query reads, estimated from the registry."""
        window_edges, use_rollups = self._plan(query)
        span = int(window_edges[-1]) - int(window_edges[0]) if len(window_edges) else 0
        devices = [d for d in query.pilot.devices if query.devices is None or d.id in query.devices]
        if use_rollups:
            resolution = DAY_NS if self._daily(query.pilot, window_edges) else HOUR_NS
            return cost.rollup_rows(devices, query.sensors, span, resolution)
        if query.exclude_flagged:
            longest = max((d.interval_s for d in devices), default=0)
            span += 2 * FLAG_CONTEXT_INTERVALS * longest * NS_PER_S
        return cost.readings(devices, query.sensors, span)

    def _devices(self, query: SeriesQuery, sensor: str) -> list[Device]:
        devices = devices_with(query.pilot, sensor)
        if query.devices is not None:
            devices = [d for d in devices if d.id in query.devices]
        return devices

    def series(self, query: SeriesQuery) -> SeriesJson:
        """The windows of each sensor asked for, shaped as `SeriesOut`, ready for JSON.

        Checked first (`QueryError`), then built in one of the process's slots (`BusyError`).
        """
        self.check(query)
        with self.slots.held():
            return self._series(query)

    def _series(self, query: SeriesQuery) -> SeriesJson:
        window_edges, use_rollups = self._plan(query)
        start, end = int(window_edges[0]), int(window_edges[-1])
        quantiles = [QUANTILE_STATS[s] for s in query.statistics if s in QUANTILE_STATS]
        if use_rollups:
            tables = self._from_rollups(query, window_edges, quantiles)
        else:
            tables = self._from_readings(query, window_edges, quantiles)
        starts = [at(query.pilot, t).isoformat() for t in window_edges[:-1].tolist()]
        stats = query.statistics
        sensors: list[SensorSeriesJson] = []
        for sensor, (devices, table) in zip(query.sensors, tables, strict=True):
            lines: list[SeriesLineJson] = (
                [{"device": None, "windows": _columns(table, stats, 0, starts)}]
                if query.pooled
                else [
                    {"device": d.id, "windows": _columns(table, stats, row, starts)}
                    for row, d in enumerate(devices)
                ]
            )
            unit = self.registry.sensors[sensor].unit
            sensors.append({"sensor": sensor, "unit": unit, "lines": lines})
        return {
            "pilot": query.pilot.id,
            "timezone": query.pilot.timezone,
            "start": at(query.pilot, start).isoformat(),
            "end": at(query.pilot, end).isoformat(),
            "window": query.window_label,
            "statistics": list(query.statistics),
            "pooled": query.pooled,
            "exclude_flagged": query.exclude_flagged,
            "source": "rollups" if use_rollups else "readings",
            "sensors": sensors,
        }

    def _from_readings(
        self, query: SeriesQuery, window_edges: np.ndarray, quantiles: list[float]
    ) -> list[tuple[list[Device], Table]]:
        start, end = int(window_edges[0]), int(window_edges[-1])
        exclude = None
        if query.exclude_flagged:
            chosen = list(query.devices) if query.devices is not None else None
            readings, flags = scan_flagged(
                self.readings,
                self.registry,
                query.pilot,
                list(query.sensors),
                start_ns=start,
                end_ns=end,
                devices=chosen,
            )
            exclude = flags.mask
        else:
            readings = self.readings.scan(
                query.pilot.id, list(query.sensors), start, end, devices=query.devices
            )
        out = []
        for sensor in query.sensors:
            devices = self._devices(query, sensor)
            table = window_stats(
                readings,
                sensor=self.registry.sensors[sensor].code,
                devices=self.registry.device_codes([d.id for d in devices]),
                edges_ns=window_edges,
                pooled=query.pooled,
                exclude=exclude,
                quantiles=quantiles,
                statistics=[s for s in query.statistics if s not in QUANTILE_STATS],
                unique=True,
            )
            out.append((devices, table))
        return out

    def _from_rollups(
        self, query: SeriesQuery, window_edges: np.ndarray, quantiles: list[float]
    ) -> list[tuple[list[Device], Table]]:
        resolution, rollups = self._rollups(query.pilot, list(query.sensors), window_edges)
        out = []
        for sensor in query.sensors:
            devices = self._devices(query, sensor)
            code = self.registry.sensors[sensor].code
            rows = np.full(len(self.registry.device_list), -1, dtype=np.int64)
            rows[[d.code for d in devices]] = 0 if query.pooled else np.arange(len(devices))
            mine = (rollups.sensor == code) & (rows[rollups.device] >= 0)
            chosen = rollups.take(mine)
            table = to_table(
                chosen,
                resolution,
                group=rows[chosen.device],
                n_groups=1 if query.pooled else len(devices),
                edges_ns=window_edges,
                quantiles=quantiles,
            )
            out.append((devices, table))
        return out

    def _daily(self, pilot: Pilot, window_edges: np.ndarray) -> bool:
        """Whether the store's daily rollups tile the windows (read 24 times fewer rows)."""
        if self.cache is not None and self.cache.covers(int(window_edges[0]), now_ns()):
            return False  # the cache holds hourly rollups, already in memory
        try:
            origin = day_origin_ns(pilot.tz)
        except ValueError:  # a zone with daylight saving: its days come from hours
            return False
        return bool(np.all((window_edges - origin) % DAY_NS == 0))

    def _rollups(
        self, pilot: Pilot, sensors: list[str], window_edges: np.ndarray
    ) -> tuple[str, Rollups]:
        start, end = int(window_edges[0]), int(window_edges[-1])
        if self.cache is not None and self.cache.covers(start, now_ns()):
            codes = self.registry.sensor_codes(sensors).tolist()
            return "1h", self.cache.rollups(pilot.id, codes, start, end)
        resolution = "1d" if self._daily(pilot, window_edges) else "1h"
        return resolution, self.store.scan_rollups(pilot.id, sensors, resolution, start, end)

    def compare(
        self,
        sensor: str,
        *,
        pilots: Sequence[Pilot],
        window: WindowSpec,
        window_label: str,
        start_ns: int,
        end_ns: int,
    ) -> CompareJson:
        """One sensor, every pilot that measures it, devices pooled; shaped as `CompareOut`."""
        queries = []
        for pilot in pilots:
            query = SeriesQuery(
                pilot=pilot,
                sensors=[sensor],
                devices=None,
                window=window if isinstance(window, Fixed) else Calendar(window.unit, pilot.tz),
                window_label=window_label,
                start_ns=start_ns,
                end_ns=end_ns,
                statistics=["count", "mean", "min", "max", "p50", "p95"],
                pooled=True,
                exclude_flagged=False,
            )
            self._check_size(query, 1)
            queries.append(query)
        self.check_scan(sum(self.scan_cost(q) for q in queries), "this comparison")
        lines: list[CompareLineJson] = []
        bounds: tuple[str, str] | None = None
        with self.slots.held():  # one slot for the whole comparison
            for query in queries:
                answer = self._series(query)
                bounds = bounds or (answer["start"], answer["end"])  # widened to whole windows
                lines.append(
                    {
                        "pilot": query.pilot.id,
                        "windows": answer["sensors"][0]["lines"][0]["windows"],
                    }
                )
        first = pilots[0]
        start, end = bounds or (at(first, start_ns).isoformat(), at(first, end_ns).isoformat())
        return {
            "sensor": sensor,
            "unit": self.registry.sensors[sensor].unit,
            "start": start,
            "end": end,
            "window": window_label,
            "pilots": lines,
        }


def label(spec: WindowSpec) -> str:
    """How a window spec is written back in answers (`10m`, `day`, ...)."""
    if isinstance(spec, Fixed):
        return format_duration(spec.every_ns // NS_PER_S)
    return spec.unit

"""The app's state, typed: what `api.app.create_app` builds once and every request reads.

`AppState` is the app's `app.state` (a Starlette `State`, so that code written for any app,
such as the token check in `api.auth`, keeps reading it the usual way). Routes never read it:
they name what they need with the `Annotated` aliases of `api.deps`. This module must not
start anything or read the store: the app's lifespan starts and stops what runs (the hot
cache's refresh; the alarm store, which `alarms` holds once the lifespan has opened it).
"""

from __future__ import annotations

from starlette.datastructures import State

from api.auth import TokenStore
from api.cache import HotCache
from api.metrics import ApiMetrics
from api.services.alerts import AlarmService, StreamBounds
from api.services.report_cache import ReportCache
from api.services.series import Limits, SeriesService
from api.services.slots import ScanSlots
from api.services.sources import FLAG_CONTEXT_INTERVALS
from core.registry import Registry
from core.settings import Settings
from core.store import Store
from core.timeutil import HOUR_NS


class AppState(State):
    """Settings, registry and store, and the services built on them for one process.

    `cache` is None when the app keeps no hot data. `alarms` holds the alarm store while the
    app runs (`AlarmService.store`, None before the lifespan opens it); `streams` bounds the
    alarm streams. The attributes are held in the `State`'s mapping; they are declared here so
    that readers see their types.
    """

    settings: Settings
    registry: Registry
    store: Store
    cache: HotCache | None
    tokens: TokenStore
    slots: ScanSlots
    series: SeriesService
    reports: ReportCache
    metrics: ApiMetrics
    alarms: AlarmService
    streams: StreamBounds

    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        store: Store,
        cache: HotCache | None,
        tokens: TokenStore,
        slots: ScanSlots,
        series: SeriesService,
        reports: ReportCache,
        metrics: ApiMetrics,
        alarms: AlarmService,
        streams: StreamBounds,
    ) -> None:
        super().__init__(
            {
                "settings": settings,
                "registry": registry,
                "store": store,
                "cache": cache,
                "tokens": tokens,
                "slots": slots,
                "series": series,
                "reports": reports,
                "metrics": metrics,
                "alarms": alarms,
                "streams": streams,
            }
        )


def max_interval_h(registry: Registry) -> float:
    """The longest reporting interval of any device, in hours."""
    return max((d.interval_s for d in registry.device_list), default=0) / 3600


def build_state(
    settings: Settings, registry: Registry, store: Store, *, cache: bool = True
) -> AppState:
    """Everything one API process serves from, over the given store (not started)."""
    # Raw readings for the longest range served from them, plus the flags' context around it.
    raw_hours = settings.api_raw_max_hours + FLAG_CONTEXT_INTERVALS * max_interval_h(registry)
    hot = (
        HotCache(
            store,
            registry,
            days=settings.api_cache_days,
            raw_hours=raw_hours,
            max_raw_readings=settings.api_max_scan_readings,
        )
        if cache
        else None
    )
    # One bound per process on requests that read or build (each is bounded on its own by
    # PILOTS_API_MAX_SCAN_READINGS); the thread pool's 40 threads would otherwise multiply it.
    slots = ScanSlots(settings.api_max_concurrent_scans, settings.api_scan_wait_s)
    series = SeriesService(
        registry,
        store,
        hot,
        Limits(
            max_points=settings.api_max_points,
            raw_max_ns=int(settings.api_raw_max_hours * HOUR_NS),
            answers_kept=settings.api_answers_kept,
            answers_max_bytes=settings.api_answers_max_bytes,
            max_scan_readings=settings.api_max_scan_readings,
        ),
        slots=slots,
    )
    alarms = AlarmService(settings, registry)
    reports = ReportCache(
        registry,
        store,
        hot,
        slots=slots,
        max_scan_readings=settings.api_max_scan_readings,
        alarms=alarms,
    )
    return AppState(
        settings=settings,
        registry=registry,
        store=store,
        cache=hot,
        tokens=TokenStore.in_data_dir(settings.data_dir),
        slots=slots,
        series=series,
        reports=reports,
        metrics=ApiMetrics(),
        alarms=alarms,
        streams=StreamBounds(settings.api_max_streams, settings.api_max_streams_per_token),
    )

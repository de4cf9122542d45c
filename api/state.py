"""The app's state, typed: what `api.app.create_app` builds and every request reads.

`AppState` is the app's `app.state` (a Starlette `State`, so that code written for any app,
such as the token check in `api.auth`, keeps reading it the usual way). Routes never read it:
they name what they need with the `Annotated` aliases of `api.deps`. This module must not
start anything or read the store: the app's lifespan starts and stops what runs (the hot
cache's refresh; the alarm store, which `alarms` holds once the lifespan has opened it).

A new registry (`api.app`'s reload) brings a new store object and new services, built by
`build_state(..., keep=running)` and put in place by `AppState.replace`, all at once. A request
`pinned` to the state (the app's outermost middleware does it) reads the values that were in
place when it began, however long it runs: it never mixes one registry's pilot with another's
services, and the values it holds stay usable until it ends (`AppState.users`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import State

from api.auth import TokenStore
from api.cache import HotCache
from api.limiter import PublicLimiter
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

    The values are replaced together (`replace`): a request `pinned` to the state reads the
    values in place when it began; other readers (the lifespan, a test) read those in place now.
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
    public: PublicLimiter

    _pin: ContextVar[dict[str, Any] | None]
    _lock: threading.Lock
    _users: dict[int, int]  # id of a values mapping -> requests pinned to it

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
        public: PublicLimiter,
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
                "public": public,
            }
        )
        # Set past `State.__setattr__`, which would put them among the values.
        object.__setattr__(
            self, "_pin", ContextVar[dict[str, Any] | None]("api_state", default=None)
        )
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_users", {})

    def _values(self) -> dict[str, Any]:
        """The values this reader sees: those its request is pinned to, else those in place."""
        # Through `__dict__`: a missing attribute here must not come back to `__getattr__`.
        pin: ContextVar[dict[str, Any] | None] | None = self.__dict__.get("_pin")
        pinned = None if pin is None else pin.get()
        values: dict[str, Any] = self.__dict__.get("_state", {}) if pinned is None else pinned
        return values

    def __getattr__(self, key: Any) -> Any:
        try:
            return self._values()[key]
        except KeyError:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute '{key}'"
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Read the values in place now until the block ends (one request), whatever replaces them.

        The values are counted as used (`users`) meanwhile. The pin holds in the threads and tasks
        started inside the block (they copy its context), such as FastAPI's sync dependencies.
        """
        with self._lock:
            values = self._state
            self._users[id(values)] = self._users.get(id(values), 0) + 1
        token = self._pin.set(values)
        try:
            yield
        finally:
            self._pin.reset(token)
            with self._lock:
                left = self._users[id(values)] - 1
                if left:
                    self._users[id(values)] = left
                else:
                    del self._users[id(values)]

    def replace(self, new: AppState) -> dict[str, Any]:
        """Put `new`'s values in place of these, all at once; returns the values replaced.

        A value `new` lacks (one set on this state by hand) is kept. Requests pinned before go
        on with the values returned; `users(those values)` says how many are left.
        """
        with self._lock:
            old = self._state
            object.__setattr__(self, "_state", {**old, **new._state})
        return old

    def users(self, values: Mapping[str, Any]) -> int:
        """How many requests are still pinned to these values (from `replace`)."""
        with self._lock:
            return self._users.get(id(values), 0)


def max_interval_h(registry: Registry) -> float:
    """The longest reporting interval of any device, in hours."""
    return max((d.interval_s for d in registry.device_list), default=0) / 3600


def build_state(
    settings: Settings,
    registry: Registry,
    store: Store,
    *,
    cache: bool = True,
    keep: AppState | None = None,
) -> AppState:
    """Everything one API process serves from, over the given store (not started).

    With `keep` (the running state, when a new registry is taken), what does not depend on
    the registry is kept from it rather than built: the token store, the metrics, the scan
    slots (one bound per process across the change), the alarm streams' bounds (open streams
    go on) and the alarm service with its open alarm store, whose registry the caller changes
    once the new state is in place. Everything else is new, so nothing kept (series answers,
    reports, the hot cache's data) was made with the old registry.
    """
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
    slots = (
        keep.slots
        if keep is not None
        else ScanSlots(
            settings.api_max_concurrent_scans,
            settings.api_scan_wait_s,
            public_limit=settings.api_public_max_scans,
        )
    )
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
    alarms = keep.alarms if keep is not None else AlarmService(settings, registry)
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
        tokens=keep.tokens if keep is not None else TokenStore.in_data_dir(settings.data_dir),
        slots=slots,
        series=series,
        reports=reports,
        metrics=keep.metrics if keep is not None else ApiMetrics(),
        alarms=alarms,
        streams=(
            keep.streams
            if keep is not None
            else StreamBounds(settings.api_max_streams, settings.api_max_streams_per_token)
        ),
        # kept across registry changes: a client's count goes on
        public=keep.public
        if keep is not None
        else PublicLimiter(settings.api_public_rate, settings.api_public_rate_total),
    )

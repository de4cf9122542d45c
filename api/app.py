"""The FastAPI application factory."""

from __future__ import annotations

import logging
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from api import docs, problems
from api.auth import TokenStore
from api.cache import HotCache
from api.metrics import ApiMetrics
from api.metrics import install as install_metrics
from api.routes import router
from api.services.common import FLAG_CONTEXT_INTERVALS
from api.services.reports import ReportCache
from api.services.series import Limits, SeriesService
from api.services.slots import ScanSlots
from core.errors import StoreUnavailableError
from core.registry import Registry, load_registry
from core.settings import Settings, load_settings
from core.store import Store, describe_store, open_store

log = logging.getLogger("pilots.api")

DESCRIPTION = """
Results of the UTN IoT pilots in Santa Fe, San Nicolás and Resistencia: pilots, devices,
windowed statistics of every sensor in each pilot's local time, reports, comparisons and
exports. Send `Authorization: Bearer <token>` (create one with `pilots tokens create`);
`/health` and `/ready` are open (status only; details at `/health/details`, admin scope).
Errors are `application/problem+json`.
"""


def app_from_environment() -> FastAPI:
    """The app as `pilots api` serves it: settings from the environment, its own store.

    A factory (for uvicorn's `factory=True`), so that each worker process builds its own app,
    store connection and hot cache.
    """
    settings = load_settings()
    registry = load_registry(settings.registry)
    store = open_store(settings, registry)
    try:
        store.start()
    except StoreUnavailableError as exc:
        # Serve anyway: /health reports the store as unavailable until it answers.
        log.warning("store unreachable at start-up: %s", exc)
    log.info("store: %s", describe_store(settings))
    app = create_app(settings, registry, store)
    app.router.on_shutdown.append(store.close)
    return app


def max_interval_h(registry: Registry) -> float:
    """The longest reporting interval of any device, in hours."""
    return max((d.interval_s for d in registry.device_list), default=0) / 3600


def create_app(
    settings: Settings, registry: Registry, store: Store, *, cache: bool = True
) -> FastAPI:
    """An app serving the given store; the caller owns (and closes) the store.

    With `cache`, hourly rollups of the last `PILOTS_API_CACHE_DAYS` are kept in memory and
    refreshed in the background while the app runs.
    """
    # FastAPI's own pages load Swagger UI and ReDoc from a CDN, unpinned, on the dashboard's
    # origin (where the token is kept): ours serve pinned copies from a package (api.docs).
    app = FastAPI(
        title="Pilot Telemetry",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
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
    app.state.settings = settings
    app.state.registry = registry
    app.state.store = store
    app.state.cache = hot
    app.state.tokens = TokenStore.in_data_dir(settings.data_dir)
    # One bound per process on requests that read or build (each is bounded on its own by
    # PILOTS_API_MAX_SCAN_READINGS); the thread pool's 40 threads would otherwise multiply it.
    slots = ScanSlots(settings.api_max_concurrent_scans, settings.api_scan_wait_s)
    app.state.slots = slots
    app.state.series = SeriesService(
        registry,
        store,
        hot,
        Limits(
            max_points=settings.api_max_points,
            raw_max_ns=int(settings.api_raw_max_hours * 3600 * 1_000_000_000),
            answers_kept=settings.api_answers_kept,
            answers_max_bytes=settings.api_answers_max_bytes,
            max_scan_readings=settings.api_max_scan_readings,
        ),
        slots=slots,
    )
    app.state.reports = ReportCache(
        registry, store, hot, slots=slots, max_scan_readings=settings.api_max_scan_readings
    )
    app.state.metrics = ApiMetrics()
    problems.install(app)
    docs.install(app)
    install_metrics(app, app.state.metrics)
    app.include_router(router)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        page = resources.files("api").joinpath("static/dashboard.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    if hot is not None:
        app.router.on_startup.append(hot.start)
        app.router.on_shutdown.append(hot.stop)
    return app

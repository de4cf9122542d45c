"""The FastAPI application factory.

`create_app` builds the app's typed state (`api.state`), its routes, error rendering, docs
pages and metrics; the app's lifespan starts the hot cache's refresh and opens the alarm store,
and at the end ends the alarm streams, stops the refresh and closes the alarm store (and the
store when the app owns it). This module must not hold routes or queries.

A server such as uvicorn waits for open responses to finish before it runs the lifespan's end,
and an alarm stream never finishes by itself: so while the app runs in the main thread, SIGTERM
and SIGINT first end the streams (`_end_streams_on_signals`), then reach the server's handler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from alerts.store import AlarmStoreError
from api import docs, problems
from api.metrics import install as install_metrics
from api.routes import alerts as alert_routes
from api.routes import router
from api.services.alerts import StreamBounds
from api.state import build_state
from core.errors import StoreUnavailableError
from core.registry import Registry, load_registry
from core.settings import Settings, load_settings
from core.store import Store, describe_store, open_store

log = logging.getLogger(__name__)

DESCRIPTION = """
Results of the UTN IoT pilots in Santa Fe, San Nicolás and Resistencia: pilots, devices,
windowed statistics of every sensor in each pilot's local time, reports, comparisons and
exports. Send `Authorization: Bearer <token>` (create one with `pilots tokens create`);
`/health` and `/ready` are open (status only; details at `/health/details`, admin scope).
Live alarms at `/alerts` (and `/alerts/stream`, server-sent events); acknowledging one needs
the operator scope. Errors are `application/problem+json`.
"""


def app_from_environment() -> FastAPI:
    """The app as `pilots api` serves it: settings from the environment, its own store.

    A factory (for uvicorn's `factory=True`), so that each worker process builds its own app,
    store connection and hot cache. The app owns the store and closes it when it stops.
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
    return create_app(settings, registry, store, close_store=True)


def create_app(
    settings: Settings,
    registry: Registry,
    store: Store,
    *,
    cache: bool = True,
    close_store: bool = False,
) -> FastAPI:
    """An app serving the given store; the caller owns (and closes) the store.

    With `cache`, hourly rollups of the last `PILOTS_API_CACHE_DAYS` are kept in memory and
    refreshed in the background while the app runs. With `close_store`, the app owns the
    store instead and closes it when it stops.
    """
    # Built now, not in the lifespan: an app also answers without one (a test client that is
    # not entered), and everything here is cheap until the lifespan starts the refresh.
    state = build_state(settings, registry, store, cache=cache)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.cache is not None:
            state.cache.start()
        state.alarms.open()
        restore_signals = _end_streams_on_signals(state.streams)
        try:
            yield
        finally:
            restore_signals()
            state.streams.close()
            if state.cache is not None:
                state.cache.stop()
            state.alarms.close()
            if close_store:
                state.store.close()

    # FastAPI's own pages load Swagger UI and ReDoc from a CDN, unpinned, on the dashboard's
    # origin (where the token is kept): ours serve pinned copies from a package (api.docs).
    app = FastAPI(
        title="Pilot Telemetry",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state = state
    problems.install(app)
    docs.install(app)
    install_metrics(app, state.metrics)
    app.include_router(router)
    app.include_router(alert_routes.router)
    app.add_exception_handler(AlarmStoreError, _alarm_store_error)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        page = resources.files("api").joinpath("static/dashboard.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    return app


async def _alarm_store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("alarm store error on %s %s: %s", request.method, request.url.path, exc)
    return problems.problem_response(503, alert_routes.UNAVAILABLE)


def _end_streams_on_signals(streams: StreamBounds) -> Callable[[], None]:
    """Make SIGTERM and SIGINT end the alarm streams, then do what they did; returns the undo.

    Only in the main thread (where signal handlers live), and only over a handler that is a
    function (a server's, or Python's KeyboardInterrupt): a signal left to its default action
    or ignored stays so. The undo puts back the previous handler unless another replaced ours.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    replaced: dict[int, tuple[_Handler, _Handler]] = {}  # signal -> (ours, previous)
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous):
            replaced[sig] = (_chained(streams, previous), previous)
            signal.signal(sig, replaced[sig][0])

    def restore() -> None:
        for sig, (ours, previous) in replaced.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)

    return restore


_Handler = Callable[[int, FrameType | None], Any]


def _chained(streams: StreamBounds, previous: _Handler) -> _Handler:
    def handler(signum: int, frame: FrameType | None) -> None:
        streams.close()
        previous(signum, frame)

    return handler

"""The FastAPI application factory.

`create_app` builds the app's typed state (`api.state`), its routes, error rendering, docs
pages and metrics; the app's lifespan starts the hot cache's refresh and opens the alarm store,
and at the end ends the alarm streams, stops the refresh and closes the alarm store (and the
store when the app owns it). It also serves the dashboard page and, open at `/static/`, the
files of `api/static/` (the page's chart script and the vendored uPlot and Leaflet);
`PILOTS_API_MAP_TILES` gives the page's map a tile layer (`map_tiles`, `dashboard_page`).
This module must not hold routes or queries.

A server such as uvicorn waits for open responses to finish before it runs the lifespan's end,
and an alarm stream never finishes by itself: so while the app runs in the main thread, SIGTERM
and SIGINT first end the streams (`_end_streams_on_signals`), then reach the server's handler.
`StreamBounds.close()` wakes every stream on its event loop, and cancels one whose send waits
for a client that does not read (`api.routes.alerts.AlarmStream`): no stream outlives it by
more than 0.5 s. Bytes already handed to the server stay its own: a connection whose client
reads none of them is closed by the server's graceful-shutdown timeout (`pilots api` sets it).

While the app runs, `RegistryReload` looks at the registry file every
`PILOTS_ALERT_RELOAD_EVERY_S` (the look interval of the rules and the registry everywhere), and
at once on SIGHUP when the app runs in the main thread (`_look_on_sighup`: the handler only asks
the watch for a look). A bad file is refused by the watch (`core.reload.Watched`, logged with
its reason) and the running registry stays. A valid new one, in an app that owns its store, is
taken between two requests: a store object for it (`open_store`: readings carry device and
sensor codes, positions in the registry), new services over it (`build_state`, keeping the
token store, metrics, scan slots, alarm service and stream bounds), all put in place at once
(`AppState.replace`). Every request reads the state it began with (`_PinState`), so requests
already running finish with the objects they hold; the replaced hot cache stops at once and the
replaced store is closed when its last request ends (at most `RETIRE_AFTER_S` later). Nothing
made with the old registry is served afterwards: the kept series answers and reports belong to
the replaced services. An app given its store by its caller (`create_app` without
`close_store`, as `pilots demo` does) cannot rebuild that store: it logs that a restart is
needed and keeps its registry.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from alerts.store import AlarmStoreError
from api import dashboard, docs, problems
from api.access import MarkAnonymous
from api.cache import HotCache
from api.metrics import install as install_metrics
from api.routes import alerts as alert_routes
from api.routes import router
from api.services.alerts import StreamBounds
from api.state import AppState, build_state
from core.errors import PilotsError, StoreUnavailableError
from core.registry import Registry
from core.reload import Watched, registry_change, watch_registry
from core.settings import Settings, load_settings
from core.store import Store, describe_store, open_store

log = logging.getLogger(__name__)

#: Seconds between two turns of the reload thread: a requested look (SIGHUP) waits at most this.
TICK_S = 0.25
#: Seconds a replaced store stays open for the requests that began before the change, at most.
RETIRE_AFTER_S = 60.0

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
    # The file's stamp is taken before it is read: an edit made while the store starts is
    # found at the first look.
    watch = watch_registry(settings.registry, every_s=settings.alert_reload_every_s)
    registry = watch.load()
    store = open_store(settings, registry)
    try:
        store.start()
    except StoreUnavailableError as exc:
        # Serve anyway: /health reports the store as unavailable until it answers.
        log.warning("store unreachable at start-up: %s", exc)
    log.info("store: %s", describe_store(settings))
    return create_app(settings, registry, store, close_store=True, watch=watch)


def create_app(
    settings: Settings,
    registry: Registry,
    store: Store,
    *,
    cache: bool = True,
    close_store: bool = False,
    watch: Watched[Registry] | None = None,
) -> FastAPI:
    """An app serving the given store; the caller owns (and closes) the store.

    With `cache`, hourly rollups of the last `PILOTS_API_CACHE_DAYS` are kept in memory and
    refreshed in the background while the app runs. With `close_store`, the app owns the
    store instead and closes it when it stops; it then also takes an edited registry file
    while it runs, with a store object of its own for it (see the module docstring).
    `watch` is the registry file's watch when the caller loaded `registry` with it; by
    default one is made now, over `PILOTS_REGISTRY`.
    """
    # Built now, not in the lifespan: an app also answers without one (a test client that is
    # not entered), and everything here is cheap until the lifespan starts the refresh.
    state = build_state(settings, registry, store, cache=cache)
    if watch is None:
        watch = watch_registry(
            settings.registry, every_s=settings.alert_reload_every_s, value=registry
        )
    reload = RegistryReload(state, watch, cache=cache, owns_store=close_store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if state.cache is not None:
            state.cache.start()
        state.alarms.open()
        restore_signals = _end_streams_on_signals(state.streams)
        restore_hup = _look_on_sighup(watch)
        reload.start()
        try:
            yield
        finally:
            restore_hup()
            restore_signals()
            reload.stop()  # no change from here on; what it replaced is closed
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

    dashboard.install(app, settings)

    app.add_middleware(MarkAnonymous)
    # Other sites' pages may read what needs no token (published pilots, SensorThings) from a
    # browser; a request with a token (a preflighted header) is not allowed across origins.
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"])
    # Added last, so outermost: the metrics' middleware and everything inside read one state.
    app.add_middleware(_PinState, state=state)
    return app


class _PinState:
    """Each request reads the state in place when it began, to its end (`AppState.pinned`)."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with self.state.pinned():
            await self.app(scope, receive, send)


class RegistryReload:
    """Takes a changed registry file into a running app (see the module docstring).

    A thread of its own looks (`Watched.check`) every `TICK_S`; the watch itself reads the
    file only when it changed or a look was requested. If the new registry's store refuses to
    start for another reason than being unreachable (which the app serves through, as at
    start-up), the running registry stays and the change is tried again after the watch's
    interval.
    """

    def __init__(
        self, state: AppState, watch: Watched[Registry], *, cache: bool, owns_store: bool
    ) -> None:
        self.state = state
        self.watch = watch
        self.cache = cache
        self.owns_store = owns_store
        #: New registries taken since the app started.
        self.reloaded = 0
        self._incoming: Registry | None = None
        self._retry_at = 0.0
        self._retiring: list[tuple[dict[str, Any], float]] = []  # (replaced values, deadline)
        self._lock = threading.Lock()  # a change, or the stop
        self._stopped = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Look in the background until `stop`."""
        self._stop.clear()
        with self._lock:
            self._stopped = False
        self._thread = threading.Thread(target=self._run, name="api-registry", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop looking; no change is made after this returns, and replaced stores are closed."""
        self._stop.set()
        with self._lock:
            self._stopped = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._retire(everything=True)

    def _run(self) -> None:
        tick = min(TICK_S, self.watch.every_s) if self.watch.every_s > 0 else TICK_S
        while not self._stop.wait(tick):
            try:
                self.turn()
            except Exception:  # the thread must outlive any one failure
                log.exception("registry reload failed; the running registry stays")

    def turn(self) -> None:
        """One look: take a new registry if one is due, and close what is no longer used."""
        fresh = self.watch.check()  # a refusal is logged there, and the running one kept
        if fresh is not None:
            self._retry_at = 0.0
            if fresh == self.state.registry:
                self._incoming = None
                log.info("registry %s read again: unchanged", fresh.source)
            else:
                self._incoming = fresh
        if self._incoming is not None and time.monotonic() >= self._retry_at:
            self._take(self._incoming)
        self._retire()

    def _take(self, new: Registry) -> None:
        if not self.owns_store:
            self._incoming = None
            log.warning(
                "registry %s changed, but this API serves a store its caller opened for the "
                "registry it started with: restart the program that runs it to take the change; "
                "serving the running registry",
                new.source,
            )
            return
        running = self.state
        settings: Settings = running.settings
        store: Store | None = None
        try:
            store = open_store(settings, new)
            try:
                store.start()
            except StoreUnavailableError as exc:  # as at start-up: /health says so until it answers
                log.warning("store unreachable while taking the new registry: %s", exc)
            fresh = build_state(settings, new, store, cache=self.cache, keep=running)
        except Exception as exc:
            if store is not None:
                store.close()
            if not isinstance(exc, PilotsError):  # a bug: trying again would not help
                self._incoming = None
                log.exception("new registry %s not taken; serving the running one", new.source)
                return
            wait = self.watch.every_s
            self._retry_at = time.monotonic() + wait
            log.warning("new registry not taken yet, retrying in %.1f s: %s", wait, exc)
            return
        with self._lock:
            if self._stopped:
                store.close()
                return
            if fresh.cache is not None:
                fresh.cache.start()
            old = running.replace(fresh)
            # The alarm service is kept (its store stays open for the streams): its registry
            # (pilots' zones) changes with the rest.
            running.alarms.registry = new
            self._retiring.append((old, time.monotonic() + RETIRE_AFTER_S))
        self._incoming = None
        self.reloaded += 1
        replaced_cache: HotCache | None = old["cache"]
        if replaced_cache is not None:
            replaced_cache.stop()
        log.info("registry reloaded: %s", registry_change(old["registry"], new))

    def _retire(self, *, everything: bool = False) -> None:
        """Close the replaced stores that no request uses any more (or all of them)."""
        with self._lock:
            retiring, self._retiring = self._retiring, []
            for values, deadline in retiring:
                users = self.state.users(values)
                if users and not everything and time.monotonic() < deadline:
                    self._retiring.append((values, deadline))
                    continue
                if users:
                    log.warning("closing the previous registry's store under %d requests", users)
                try:
                    values["store"].close()
                except Exception:  # a store that fails to close must not keep the others open
                    log.exception("closing the previous registry's store failed")


async def _alarm_store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("alarm store error on %s %s: %s", request.method, request.url.path, exc)
    return problems.problem_response(503, alert_routes.UNAVAILABLE)


def _end_streams_on_signals(streams: StreamBounds) -> Callable[[], None]:
    """Make SIGTERM and SIGINT end the alarm streams, then do what they did; returns the undo.

    Ending them (`StreamBounds.close`) only sets a flag and schedules a wake-up on each stream's
    loop (`call_soon_threadsafe`), which a signal handler may do.

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


def _look_on_sighup(watch: Watched[Registry]) -> Callable[[], None]:
    """Make SIGHUP ask `watch` for a look at the registry file; returns the undo.

    Only in the main thread (`pilots api`, or each of its worker processes). A handler already
    there (a function) is called after ours; the undo puts back what was there unless another
    handler replaced ours since.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGHUP)

    def handler(signum: int, frame: FrameType | None) -> None:
        watch.request()  # only a flag: the reload thread acts on it
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGHUP, handler)

    def restore() -> None:
        if signal.getsignal(signal.SIGHUP) is handler:
            signal.signal(signal.SIGHUP, signal.SIG_DFL if previous is None else previous)

    return restore


def _chained(streams: StreamBounds, previous: _Handler) -> _Handler:
    def handler(signum: int, frame: FrameType | None) -> None:
        streams.close()
        previous(signum, frame)

    return handler

"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from api import problems
from api.routes import router
from core.registry import Registry
from core.settings import Settings
from core.store import Store

DESCRIPTION = """
Results of the UTN IoT pilots in Santa Fe, San Nicolás and Resistencia: pilots, devices and
windowed statistics of every sensor, in each pilot's local time. Errors are
`application/problem+json`.
"""


def create_app(settings: Settings, registry: Registry, store: Store) -> FastAPI:
    """An app serving the given store; the caller owns (and closes) the store."""
    app = FastAPI(title="Pilot Telemetry", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.registry = registry
    app.state.store = store
    problems.install(app)
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app

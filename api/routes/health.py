"""`GET /health`, `/ready` (open), `/health/details` (admin), `/metrics` (read scope).

The open endpoints say `ok` or `unavailable` and nothing else: the store's address and its
errors are for operators, behind a token.
"""

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import AdminAccess, ReadAccess
from api.deps import SettingsDep, StoreDep
from api.problems import responses
from api.schemas import HealthDetailsOut, HealthOut
from core.errors import StoreError
from core.settings import Settings
from core.store import describe_store

router = APIRouter(tags=["health"])

OPEN: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthOut, "description": "the store does not answer"}
}


def _store_error(store: StoreDep) -> str | None:
    try:
        store.ping()
    except StoreError as exc:
        return str(exc)
    return None


def _where(settings: Settings) -> str:
    """The store in use, with any user and password in its URL left out."""
    if not settings.influx_url:
        return describe_store(settings)
    parts = urlsplit(settings.influx_url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return f"influx {url} database={settings.influx_database}"


@router.get("/health", response_model=HealthOut, responses=OPEN)
def health(store: StoreDep) -> HealthOut | JSONResponse:
    """`ok` when the store answers; 503 `unavailable` when it does not (details: admin)."""
    if _store_error(store) is not None:
        return JSONResponse(HealthOut(status="unavailable").model_dump(), status_code=503)
    return HealthOut(status="ok")


@router.get("/ready", response_model=HealthOut, responses=OPEN)
def ready(store: StoreDep) -> HealthOut | JSONResponse:
    """Ready to serve: the store answers (load balancers route to ready instances only)."""
    return health(store)


@router.get(
    "/health/details",
    response_model=HealthDetailsOut,
    responses={**responses(401, 403), 503: {"model": HealthDetailsOut}},
)
def health_details(
    _: AdminAccess, store: StoreDep, settings: SettingsDep
) -> HealthDetailsOut | JSONResponse:
    """The store in use (without credentials) and, when it does not answer, its reason."""
    error = _store_error(store)
    if error is not None:
        body = HealthDetailsOut(status="unavailable", store=_where(settings), detail=error)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthDetailsOut(status="ok", store=_where(settings))


@router.get("/metrics", response_class=Response, responses=responses(401))
def metrics(_: ReadAccess, request: Request) -> Response:
    """Prometheus metrics of the API process that answers (requests and their latencies).

    With `PILOTS_API_WORKERS` above 1 each process counts its own: scrape each, or run one.
    """
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )

"""`GET /health`, `/ready` (open), `/health/details` (admin), `/metrics` (read scope).

The open endpoints say `ok` or `unavailable` and nothing else: the store's address and its
errors are for operators, behind a token.
"""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import AdminAccess, ReadAccess
from api.deps import MetricsDep, SettingsDep, StoreDep
from api.problems import responses
from api.schemas import HealthDetailsOut, HealthOut
from core.errors import StoreError
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
        body = HealthDetailsOut(status="unavailable", store=describe_store(settings), detail=error)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthDetailsOut(status="ok", store=describe_store(settings))


@router.get("/metrics", response_class=Response, responses=responses(401))
def metrics(_: ReadAccess, api_metrics: MetricsDep) -> Response:
    """Prometheus metrics of the API process that answers (requests and their latencies).

    With `PILOTS_API_WORKERS` above 1 each process counts its own: scrape each, or run one.
    """
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)

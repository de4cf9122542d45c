"""`GET /health` and `GET /ready` (open), `GET /metrics` (Prometheus, read scope)."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import ReadAccess
from api.deps import SettingsDep, StoreDep
from api.problems import responses
from api.schemas import HealthOut
from core.errors import StoreError
from core.store import describe_store

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(store: StoreDep, settings: SettingsDep) -> HealthOut | JSONResponse:
    """`ok` when the store answers; 503 with the reason when it does not."""
    where = describe_store(settings)
    try:
        store.ping()
    except StoreError as exc:
        body = HealthOut(status="unavailable", store=where, detail=str(exc))
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(status="ok", store=where)


@router.get("/ready", response_model=HealthOut, responses={503: {"model": HealthOut}})
def ready(store: StoreDep, settings: SettingsDep) -> HealthOut | JSONResponse:
    """Ready to serve: the store answers (load balancers route to ready instances only)."""
    return health(store, settings)


@router.get("/metrics", response_class=Response, responses=responses(401))
def metrics(_: ReadAccess, request: Request) -> Response:
    """Prometheus metrics of the API process that answers (requests and their latencies).

    With `PILOTS_API_WORKERS` above 1 each process counts its own: scrape each, or run one.
    """
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )

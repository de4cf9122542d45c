"""`GET /health`: is the API up and can it reach its store."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import SettingsDep, StoreDep
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

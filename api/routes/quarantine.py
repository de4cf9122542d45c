"""`GET /quarantine` (admin): what ingest refused, and why."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import AdminAccess
from api.deps import SettingsDep
from api.problems import responses
from api.schemas import QuarantineOut
from api.services import quarantine as quarantining

router = APIRouter(tags=["quarantine"])


@router.get("/quarantine", responses=responses(401, 403, 422))
def quarantine(
    _: AdminAccess,
    settings: SettingsDep,
    reason: Annotated[str | None, Query(description="only this reason", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="newest entries to list")] = 100,
) -> QuarantineOut:
    """What ingest refused and why (needs the admin scope)."""
    return quarantining.listing(settings.data_dir, reason=reason, limit=limit)

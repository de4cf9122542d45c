"""`GET /quarantine` (admin): what ingest refused, and why."""

import logging
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import AdminAccess
from api.deps import StoreDep
from api.problems import Problem, responses
from api.schemas import QuarantineOut
from api.services import quarantine as quarantining
from core.errors import StoreError

log = logging.getLogger(__name__)

router = APIRouter(tags=["quarantine"])


@router.get("/quarantine", responses=responses(401, 403, 422, 503))
def quarantine(
    _: AdminAccess,
    store: StoreDep,
    reason: Annotated[str | None, Query(description="only this reason", max_length=64)] = None,
    source: Annotated[
        str | None, Query(description="only this registry device, or `unregistered`", max_length=64)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="newest entries to list")] = 100,
) -> QuarantineOut:
    """What every ingest worker refused and why (needs the admin scope)."""
    try:
        return quarantining.listing(store, reason=reason, source=source, limit=limit)
    except StoreError as exc:
        log.warning("quarantine not readable: %s", exc)
        raise Problem(503, "the store is unavailable; try again later") from exc

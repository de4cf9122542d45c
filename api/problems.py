"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error the API returns, including FastAPI's own validation errors, has the same shape:
`type`, `title`, `status`, `detail`, and for validation errors the list of `errors`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.services.errors import BusyError, QueryError
from core.errors import StoreError

log = logging.getLogger(__name__)

#: What a client is told when the store fails: the store's own words go to the log only, since
#: they can carry its address, its query language or parts of the request.
STORE_UNAVAILABLE = "the store is unavailable; try again later (the API's log has the reason)"

PROBLEM_JSON = "application/problem+json"


#: The JSON Schema of a problem details body, for the OpenAPI document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what went wrong, and the limit or fix"},
        "errors": {
            "type": "array",
            "description": "422 only: each malformed parameter",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}

_MEANING = {
    400: "a query limit would be exceeded; the detail names the limit and its setting",
    401: "no bearer token, or an unknown or revoked one",
    403: "the token's scope does not allow this",
    404: "unknown pilot, sensor or device",
    422: "malformed or contradictory parameters; `errors` lists them",
    503: "the store is unavailable",
}


#: The 503 of routes that read or build (`api.services.slots`).
BUSY_503 = (
    "the store is unavailable, or the API is already working on as many expensive requests "
    "as it allows (PILOTS_API_MAX_CONCURRENT_SCANS; `Retry-After` says when to try again)"
)


def responses(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route can answer (`meanings`: `_404="..."`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description = meanings.get(f"_{status}", _MEANING[status])
        out[status] = {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
    return out


class Problem(HTTPException):
    """An HTTP error with a human-readable detail, rendered as problem details."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(status_code=status, detail=detail)
        self.extra = extra


def problem_response(status: int, detail: str, **extra: Any) -> JSONResponse:
    """A problem details response."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    """Render every error of the app as problem details."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        extra = exc.extra if isinstance(exc, Problem) else {}
        response = problem_response(exc.status_code, str(exc.detail), **extra)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'][1:]) or 'request'}: {e['msg']}" for e in errors)
        return problem_response(422, detail, errors=errors)

    async def store_error(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store error on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(503, STORE_UNAVAILABLE)

    async def query_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(400, str(exc))

    async def busy_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BusyError)
        response = problem_response(503, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(QueryError, query_error)
    app.add_exception_handler(BusyError, busy_error)

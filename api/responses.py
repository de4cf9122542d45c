"""JSON answers serialised with orjson straight from plain data.

Large answers (a series holds up to `PILOTS_API_MAX_POINTS` windows, a report is reused by
many readers) are built as plain dicts and lists shaped as their schema in `api.schemas`, or
serialised once and kept, rather than validated into models on every request: the schema still
documents them, and the API's tests check every answer against it.
"""

from __future__ import annotations

import orjson
from fastapi import Response


def json_response(body: object) -> Response:
    """A 200 `application/json` response of plain data."""
    return Response(orjson.dumps(body), media_type="application/json")

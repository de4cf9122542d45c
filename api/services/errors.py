"""The service layer's refusals: a request over a limit, and one that finds no slot free.

Both are `PilotsError`s, like every error the project raises on purpose; `api.problems`
answers them as 400 and as 503 with `Retry-After`. This module must not know about HTTP.
"""

from __future__ import annotations

from core.errors import PilotsError


class QueryError(PilotsError):
    """The request is valid but over a limit; the message says which and how to fit it."""


class BusyError(PilotsError):
    """As many expensive requests as allowed are in progress; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

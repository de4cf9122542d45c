"""The SensorThings API's refusals, each with the HTTP status the standard asks for.

`StaError` is a `PilotsError` (one `except` for callers); the router answers it as problem
details with its `status`: 400 for a request the service cannot read (bad syntax, a limit
exceeded), 404 for an entity that is not there (or that the reader may not see), 501 for a
part of the standard this service does not implement. This module must not know about HTTP
frameworks.
"""

from __future__ import annotations

from core.errors import PilotsError


class StaError(PilotsError):
    """A SensorThings request refused with `status`; the message says why and how to fix it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bad(message: str) -> StaError:
    """A 400: the request cannot be read or goes past a limit."""
    return StaError(400, message)


def unsupported(message: str) -> StaError:
    """A 501: valid SensorThings, not implemented by this read-only service."""
    return StaError(501, message)


def not_found(message: str) -> StaError:
    """A 404: no such entity, or none this reader may see."""
    return StaError(404, message)

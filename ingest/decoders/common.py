"""Pieces every decoder needs: JSON parsing, timestamps, frame counters, the frame error.

Kept here so that each format module holds only what is particular to its format.
"""

from __future__ import annotations

import orjson

from core.timeutil import parse_instant_ns
from ingest.decoders import Decoded
from ingest.reasons import Reason, Rejection

MAX_FCNT = 2**32 - 1


class FrameError(Exception):
    """One frame (or the whole message) cannot be read; carries the rejection."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


class Invalid:
    """The type of `INVALID`: what `load_json` returns for bytes that are not JSON."""


#: Not JSON (distinct from the JSON document `null`, which parses to None).
INVALID = Invalid()


def load_json(payload: bytes, out: Decoded) -> object:
    """The parsed document, or `INVALID` with a `malformed_json` rejection added to `out`."""
    try:
        document: object = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        out.rejections.append(Rejection(Reason.MALFORMED_JSON, f"not JSON: {exc}"))
        return INVALID
    return document


def kind_of(value: object) -> str:
    """A short name of a JSON value's type, for error details."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def rfc3339_ns(value: object, what: str) -> int:
    """Nanoseconds of an RFC 3339 string with offset, or a `malformed_structure` error."""
    if not isinstance(value, str):
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{what}` must be an RFC 3339 string")
    try:
        return parse_instant_ns(value)
    except ValueError as exc:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{what}`: {exc}") from exc


def frame_counter(value: object, what: str) -> int | None:
    """A LoRaWAN-style frame counter (0 to 2^32-1), None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FCNT:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{what}` must be an integer in 0..2^32-1")
    return value


def optional_number(value: object) -> float | None:
    """A finite-or-not number as float, None for anything else (radio metadata is optional)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)

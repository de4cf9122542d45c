"""The plain JSON device contract (the project's own format, documented in the README).

Topic `pilots/<pilot>/<device>/up`; payload one object or an array of objects:
`{"ts": <epoch ms | RFC 3339 with offset>, "seq": <frame counter, optional>,
  "readings": {"<sensor>": <number>, ...}, "battery_v": <number, optional>,
  "device": <must equal the topic's device, optional>}`.
"""

from __future__ import annotations

import orjson

from core.timeutil import parse_instant_ns
from ingest.decoders import Decoded, Frame
from ingest.reasons import Reason, Rejection

_KEYS = frozenset({"ts", "seq", "readings", "battery_v", "device"})
_MAX_SEQ = 2**32 - 1


class _FrameError(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def decode(topic: str, payload: bytes) -> Decoded:
    """Frames of a plain JSON message; bad frames become rejections, good ones are kept."""
    out = Decoded()
    levels = topic.split("/")
    if len(levels) != 4 or levels[0] != "pilots" or levels[3] != "up" or not all(levels):
        out.rejections.append(
            Rejection(Reason.BAD_TOPIC, f"topic {topic!r} is not pilots/<pilot>/<device>/up")
        )
        return out
    pilot, device = levels[1], levels[2]
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        out.rejections.append(Rejection(Reason.MALFORMED_JSON, f"not JSON: {exc}"))
        return out
    items = document if isinstance(document, list) else [document]
    if not items:
        out.rejections.append(Rejection(Reason.MALFORMED_STRUCTURE, "empty array"))
    for index, item in enumerate(items):
        try:
            out.frames.append(_frame(item, pilot, device))
        except _FrameError as exc:
            where = f"item {index}: " if isinstance(document, list) else ""
            out.rejections.append(Rejection(exc.rejection.reason, where + exc.rejection.detail))
    return out


def _frame(item: object, pilot: str, device: str) -> Frame:
    if not isinstance(item, dict):
        raise _FrameError(Reason.MALFORMED_STRUCTURE, f"expected an object, got {_kind(item)}")
    unknown = set(item) - _KEYS
    if unknown:
        raise _FrameError(Reason.MALFORMED_STRUCTURE, f"unknown keys {sorted(unknown)}")
    readings = item.get("readings", {})
    if not isinstance(readings, dict):
        raise _FrameError(Reason.MALFORMED_STRUCTURE, "`readings` must be an object")
    values: dict[str, object] = dict(readings)
    if "battery_v" in item:
        values["battery_v"] = item["battery_v"]
    if not values:
        raise _FrameError(Reason.MALFORMED_STRUCTURE, "no readings")
    claimed = item.get("device")
    if claimed is not None and not isinstance(claimed, str):
        raise _FrameError(Reason.MALFORMED_STRUCTURE, "`device` must be a string")
    return Frame(
        device=device,
        pilot=pilot,
        ts_ns=_timestamp(item.get("ts")),
        values=values,
        seq=_seq(item.get("seq")),
        claimed_device=claimed,
    )


def _timestamp(ts: object) -> int:
    if ts is None:
        raise _FrameError(Reason.MALFORMED_STRUCTURE, "missing `ts`")
    if isinstance(ts, bool):
        raise _FrameError(Reason.MALFORMED_STRUCTURE, "`ts` must be epoch ms or RFC 3339")
    if isinstance(ts, int):
        if not 0 <= ts < 2**53:
            raise _FrameError(Reason.MALFORMED_STRUCTURE, f"`ts` {ts} out of range")
        return ts * 1_000_000
    if isinstance(ts, float):
        if not 0 <= ts < 2**53:
            raise _FrameError(Reason.MALFORMED_STRUCTURE, f"`ts` {ts} out of range")
        # Split off the whole milliseconds: ts * 1e6 as a float is ~256 ns coarse near 2024.
        whole_ms = int(ts)
        return whole_ms * 1_000_000 + round((ts - whole_ms) * 1_000_000)
    if isinstance(ts, str):
        try:
            return parse_instant_ns(ts)
        except ValueError as exc:
            raise _FrameError(Reason.MALFORMED_STRUCTURE, str(exc)) from exc
    raise _FrameError(
        Reason.MALFORMED_STRUCTURE, f"`ts` must be epoch ms or RFC 3339, not {_kind(ts)}"
    )


def _seq(seq: object) -> int | None:
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _MAX_SEQ:
        raise _FrameError(Reason.MALFORMED_STRUCTURE, "`seq` must be an integer in 0..2^32-1")
    return seq


def _kind(value: object) -> str:
    return type(value).__name__

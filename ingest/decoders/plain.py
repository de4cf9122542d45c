"""The plain JSON device contract (the project's own format, documented in the README).

Topic `pilots/<pilot>/<device>/up`; payload one object or an array of objects:
`{"ts": <epoch ms | RFC 3339 with offset>, "seq": <frame counter, optional>,
  "readings": {"<sensor>": <number>, ...}, "battery_v": <number, optional>,
  "device": <must equal the topic's device, optional>}`.

`battery_v` is a reading like the others: given both at the top and in `readings`, the one in
`readings` is kept and the other refused as `duplicate_record`, never silently overwritten.
"""

from __future__ import annotations

from dataclasses import replace

from core.timeutil import NS_PER_MS
from ingest.decoders.base import (
    INVALID,
    Decoded,
    Frame,
    FrameError,
    frame_counter,
    kind_of,
    load_json,
    rfc3339_ns,
)
from ingest.reasons import Reason, Rejection

_KEYS = frozenset({"ts", "seq", "readings", "battery_v", "device"})


def decode(topic: str, payload: bytes) -> Decoded:
    """Frames of a plain JSON message; bad frames become rejections, good ones are kept."""
    out = Decoded()
    levels = topic.split("/")
    if len(levels) != 4 or levels[0] != "pilots" or not all(levels):
        out.rejections.append(
            Rejection(Reason.BAD_TOPIC, f"topic {topic!r} is not pilots/<pilot>/<device>/up")
        )
        return out
    pilot, device = levels[1], levels[2]
    document = load_json(payload, out, unique_names=True)
    if document is INVALID:
        return out
    items = document if isinstance(document, list) else [document]
    if not items:
        out.rejections.append(Rejection(Reason.MALFORMED_STRUCTURE, "empty array"))
    for index, item in enumerate(items):
        where = f"item {index}: " if isinstance(document, list) else ""
        try:
            out.frames.append(_frame(item, pilot, device, where, out))
        except FrameError as exc:
            rejection = exc.rejection
            out.rejections.append(
                replace(rejection, detail=where + rejection.detail, records=_count(item))
            )
    return out


def _count(item: object) -> int:
    """How many readings a refused item carried (1 when it is not an object of readings)."""
    if not isinstance(item, dict) or not isinstance(item.get("readings", {}), dict):
        return 1
    return len(item.get("readings", {})) + ("battery_v" in item)


def _frame(item: object, pilot: str, device: str, where: str, out: Decoded) -> Frame:
    if not isinstance(item, dict):
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"expected an object, got {kind_of(item)}")
    unknown = item.keys() - _KEYS
    if unknown:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"unknown keys {sorted(unknown)}")
    readings = item.get("readings", {})
    if not isinstance(readings, dict):
        raise FrameError(Reason.MALFORMED_STRUCTURE, "`readings` must be an object")
    values: dict[str, object] = dict(readings)
    repeated = "battery_v" in item and "battery_v" in values
    if "battery_v" in item and not repeated:
        values["battery_v"] = item["battery_v"]
    if not values:
        raise FrameError(Reason.MALFORMED_STRUCTURE, "no readings")
    claimed = item.get("device")
    if claimed is not None and not isinstance(claimed, str):
        raise FrameError(Reason.MALFORMED_STRUCTURE, "`device` must be a string")
    frame = Frame(
        device=device,
        pilot=pilot,
        ts_ns=_timestamp(item.get("ts")),
        values=values,
        seq=frame_counter(item.get("seq"), "seq"),
        claimed_device=claimed,
    )
    if repeated:
        detail = (
            f"{where}`battery_v` = {str(item['battery_v'])[:64]} is also in `readings` "
            f"(= {str(values['battery_v'])[:64]}, which is kept)"
        )
        out.rejections.append(Rejection(Reason.DUPLICATE_RECORD, detail, "battery_v"))
    return frame


def _timestamp(ts: object) -> int:
    if ts is None:
        raise FrameError(Reason.MALFORMED_STRUCTURE, "missing `ts`")
    if isinstance(ts, bool):
        raise FrameError(Reason.MALFORMED_STRUCTURE, "`ts` must be epoch ms or RFC 3339")
    if isinstance(ts, int):
        if not 0 <= ts < 2**53:
            raise FrameError(Reason.MALFORMED_STRUCTURE, f"`ts` {ts} out of range")
        return ts * NS_PER_MS
    if isinstance(ts, float):
        if not 0 <= ts < 2**53:
            raise FrameError(Reason.MALFORMED_STRUCTURE, f"`ts` {ts} out of range")
        # Split off the whole milliseconds: ts * 1e6 as a float is ~256 ns coarse near 2024.
        whole_ms = int(ts)
        return whole_ms * NS_PER_MS + round((ts - whole_ms) * NS_PER_MS)
    if isinstance(ts, str):
        return rfc3339_ns(ts, "ts")
    raise FrameError(
        Reason.MALFORMED_STRUCTURE, f"`ts` must be epoch ms or RFC 3339, not {kind_of(ts)}"
    )

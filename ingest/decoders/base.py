"""What every decoder builds on: the frame it yields, its result, and the readers formats share.

`Frame` and `Decoded` are what a decoder returns; `FrameError` is how a format module refuses one
frame (or the whole message) from deep inside its parsing; the rest reads what several formats
hold alike (JSON, RFC 3339 times, frame counters, optional numbers), so that each format module
holds only what is particular to its format.

This module imports nothing from the `ingest.decoders` package itself: the format modules import
it, and the package imports them at its top to register them (no import cycle to break).
It knows no format and no registry: it must not grow format-specific or validation code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from core.errors import PilotsError
from core.timeutil import parse_instant_ns
from ingest.reasons import Reason, Rejection


@dataclass(slots=True)
class Frame:
    """One device's readings at one instant, as the payload stated them (not yet validated).

    The device is named by `device` (a registry id, or the device's id at a LoRaWAN network
    server) and/or `dev_eui`; `claimed_device` is a device id the payload names besides the
    topic, which validation requires to match. `ts_ns` is None when the payload carries no time
    of its own; validation then uses the receive time plus `relative_ns`. `values` maps sensor
    ids to whatever the payload held; `units`, when the format states them, maps sensor ids to
    units.
    `time_is_reception` says that `ts_ns` is when the network received the frame rather than
    when the device measured: a retransmission of the frame then carries another time, and is
    recognised by its frame counter instead. `from_network_server` says that a LoRaWAN network
    server forwarded the frame: its device is then the registry device with its `dev_eui`, and
    `device` (the network server's name for it) can only confirm that, never stand in for it.
    A frame holds at most one value per sensor; a format that can state a sensor twice at one
    instant (SenML) makes a second frame for the same instant, and validation refuses the repeat.
    """

    device: str | None
    pilot: str | None
    ts_ns: int | None
    values: dict[str, object]
    relative_ns: int = 0
    seq: int | None = None
    dev_eui: str | None = None
    claimed_device: str | None = None
    units: dict[str, str] | None = None
    rssi: float | None = None
    snr: float | None = None
    sf: int | None = None
    gateway: str | None = None
    time_is_reception: bool = False
    from_network_server: bool = False


@dataclass(slots=True)
class Decoded:
    """What a decoder made of one message."""

    frames: list[Frame] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class Decoder(Protocol):
    """Decode one message; never raises for bad input."""

    def __call__(self, topic: str, payload: bytes) -> Decoded:
        """Frames and rejections of one message."""


@dataclass(slots=True)
class Packs:
    """Messages of a batch that are each one device's plain readings, as flat columns.

    A format whose messages often carry many readings of one device (a SenML pack) fills this
    for the messages whose shape is simple enough to be checked column-wise
    (`ingest.columnwise`); every other message goes through `Decoder` and `Frame`s. Nothing
    here is checked against the registry yet; the columns hold what the payload stated.

    Per message: its index in the batch, topic device and pilot, the device its names claim
    (None when they name none), its base time and value (added to each reading's), when it
    was received, how many readings it holds and how many sensors it names. Per sensor a
    message names (a "slot", a message's slots in a row): the sensor id and the unit the
    payload states for it (registry spelling; None when stated nowhere). Per reading: its
    slot, value and time as the payload wrote them (numbers; time in seconds, relative to the
    receive time below 2**28 s as RFC 8428 §4.5.3 has it).
    """

    message: list[int] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    pilot: list[str] = field(default_factory=list)
    claimed: list[str | None] = field(default_factory=list)
    base_time: list[float] = field(default_factory=list)
    base_value: list[float] = field(default_factory=list)
    received_ns: list[int] = field(default_factory=list)
    readings: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    slot_sensor: list[str] = field(default_factory=list)
    slot_unit: list[str | None] = field(default_factory=list)
    slot: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)


class PackReader(Protocol):
    """Append one message to `packs` if its shape is simple; False (nothing appended) if not.

    False is never a refusal: the message then goes through the format's `Decoder`, which says
    what is wrong with it, if anything. True promises that the decoder would have read the
    message into exactly these readings, and refused nothing.
    """

    def __call__(
        self, topic: str, payload: bytes, packs: Packs, index: int, received_ns: int
    ) -> bool:
        """Whether the message was appended."""


MAX_FCNT = 2**32 - 1


class FrameError(PilotsError):
    """One frame (or the whole message) cannot be read; carries the rejection."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


class Invalid:
    """The type of `INVALID`: what `load_json` returns for bytes that are not JSON."""


#: Not JSON (distinct from the JSON document `null`, which parses to None).
INVALID = Invalid()


#: A JSON string, escapes included: what is left outside them holds a `:` per object member.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def load_json(payload: bytes, out: Decoded, *, unique_names: bool = False) -> object:
    """The parsed document, or `INVALID` with a `malformed_json` rejection added to `out`.

    With `unique_names`, an object that repeats a name is refused too: a parser keeps one of the
    values and drops the other without a word (RFC 8259 §4 calls such documents unpredictable;
    I-JSON, RFC 7493 §2.3, forbids them), so `{"level": 3.2, "level": 3.4}` would lose a reading
    silently. Formats whose JSON devices write themselves ask for it; a network server's JSON is
    marshalled from maps, which cannot repeat a name, and is not checked (the check costs time).
    """
    try:
        document: object = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        out.rejections.append(Rejection(Reason.MALFORMED_JSON, f"not JSON: {exc}"))
        return INVALID
    if unique_names and _repeats_a_name(payload, document):
        out.rejections.append(
            Rejection(
                Reason.MALFORMED_JSON,
                f"an object repeats the name {_repeated_name(payload)!r}: JSON names must be "
                "unique (RFC 8259 §4, RFC 7493 §2.3), or one of the values is lost",
            )
        )
        return INVALID
    return document


def _repeats_a_name(payload: bytes, document: object) -> bool:
    r"""Whether the payload has more object members than its parsed document kept.

    Every `:` of a JSON text separates a member or sits inside a string. The parsed document
    gives its members and the `:` its strings hold; a member lost to a repeated name leaves the
    payload with more. Most device payloads have no `:` in their strings, so the members alone
    are counted first. A string may also write `:` as an escape (`:`), so a payload with
    escapes is counted again with its strings cut out.
    """
    members = 0
    stack: list[object] = [document]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            members += len(node)
            stack.extend([v for v in node.values() if type(v) is dict or type(v) is list])
        elif type(node) is list:
            stack.extend([v for v in node if type(v) is dict or type(v) is list])
    in_payload = payload.count(b":")
    if in_payload == members:
        return False
    if b"\\u" in payload:
        return _STRING.sub(b"", payload).count(b":") != members
    return in_payload != members + _colons_in_strings(document)


def _colons_in_strings(document: object) -> int:
    """How many `:` the names and string values of a parsed document hold."""
    colons = 0
    stack: list[object] = [document]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for name, value in node.items():
                colons += name.count(":")
                stack.append(value)
        elif type(node) is list:
            stack.extend(node)
        elif type(node) is str:
            colons += node.count(":")
    return colons


def _repeated_name(payload: bytes) -> str:
    """The first name an object of the payload repeats (for the refusal's detail)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        names = [name for name, _ in items]
        repeated.extend(n for i, n in enumerate(names) if n in names[:i])
        return dict(items)

    try:
        json.loads(payload, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # orjson read it; the standard library may nest less
        return "?"
    return repeated[0][:64] if repeated else "?"


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

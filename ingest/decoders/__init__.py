"""Payload decoders: one module per format, one registration line each in `FORMATS`.

A decoder turns one MQTT message (topic and raw bytes) into `Frame`s, each one device's values
at one instant, and `Rejection`s for whatever it could not read. It knows the format only: the
registry checks (known device, sensor, range, time) belong to `ingest.validate`. A decoder never
raises on bad input; it reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ingest.reasons import Rejection


@dataclass(frozen=True, slots=True)
class Frame:
    """One device's readings at one instant, as the payload stated them (not yet validated).

    `device` is the id the message is addressed to (from the topic); `claimed_device` is a device
    id the payload itself names, if any, which validation requires to match. `values` maps sensor
    ids to whatever the payload held, numbers or not.
    """

    device: str
    pilot: str | None
    ts_ns: int
    values: dict[str, object]
    seq: int | None = None
    claimed_device: str | None = None


@dataclass(slots=True)
class Decoded:
    """What a decoder made of one message."""

    frames: list[Frame] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class Decoder(Protocol):
    """Decode one message; never raises for bad input."""

    def __call__(self, topic: str, payload: bytes) -> Decoded:
        """Frames and rejections of one message."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching with `+` and `#` (a shared-subscription prefix removed)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    want = topic_filter.split("/")
    got = topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(got) or (level not in ("+", got[i])):
            return False
    return len(want) == len(got)


from ingest.decoders import plain  # noqa: E402  (the registry below needs the modules)

#: Format name → decoder. Adding a format: a module here, its test, and one line below.
FORMATS: dict[str, Decoder] = {
    "plain": plain.decode,
}

#: Topic filter → format name, tried in order.
ROUTES: tuple[tuple[str, str], ...] = (("pilots/+/+/up", "plain"),)


def decoder_for(topic: str) -> Decoder | None:
    """The decoder of the first route whose filter matches the topic."""
    for topic_filter, name in ROUTES:
        if topic_matches(topic_filter, topic):
            return FORMATS[name]
    return None

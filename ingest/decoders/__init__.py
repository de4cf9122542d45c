"""Payload decoders: one module per format, one registration line each in `FORMATS`.

A decoder turns one MQTT message (topic and raw bytes) into `Frame`s, each one device's values
at one instant with what the transmission says about itself, and `Rejection`s for whatever it
could not read. It knows the format only: the registry checks (known device, sensor, unit,
range, time) belong to `ingest.validate`. A decoder never raises on bad input; it reports it.

Which decoder reads a message is chosen by its topic (`PILOTS_INGEST_ROUTES`, a map from MQTT
topic filter to format name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import ConfigError
from ingest.reasons import Rejection


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


from ingest.decoders import chirpstack, plain, senml, tts  # noqa: E402  (registered below)

#: Format name → decoder. Adding a format: a module here, its test, and one line below.
FORMATS: dict[str, Decoder] = {
    "plain": plain.decode,
    "senml": senml.decode,
    "chirpstack": chirpstack.decode,
    "tts": tts.decode,
}


class Router:
    """Picks the decoder of a topic from the configured topic filter → format map."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        unknown = {f for f in routes.values() if f not in FORMATS}
        if unknown:
            raise ConfigError(
                f"PILOTS_INGEST_ROUTES: unknown formats {sorted(unknown)}; "
                f"known: {', '.join(FORMATS)}"
            )
        if not routes:
            raise ConfigError("PILOTS_INGEST_ROUTES: no topic is routed to a format")
        self.routes = tuple((topic_filter, FORMATS[name]) for topic_filter, name in routes.items())
        self._cache: dict[str, Decoder | None] = {}

    @property
    def topic_filters(self) -> tuple[str, ...]:
        """The filters to subscribe to."""
        return tuple(topic_filter for topic_filter, _ in self.routes)

    def decoder_for(self, topic: str) -> Decoder | None:
        """The decoder of the first route whose filter matches the topic."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((d for f, d in self.routes if topic_matches(f, topic)), None)
        if len(self._cache) < 100_000:  # topics are bounded by the fleet; the cache is too
            self._cache[topic] = found
        return found

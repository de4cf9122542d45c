"""Payload formats: one decoder module each, described once in `PAYLOAD_FORMATS`.

A decoder turns one MQTT message (topic and raw bytes) into `Frame`s, each one device's values
at one instant with what the transmission says about itself, and `Rejection`s for whatever it
could not read. It knows the format only: the registry checks (known device, sensor, unit,
range, time) belong to `ingest.validate`. A decoder never raises on bad input; it reports it.

Which decoder reads a message is chosen by its topic (`PILOTS_INGEST_ROUTES`, a map from MQTT
topic filter to format name; `Router`).

Each format is described once, by a `PayloadFormat` registered in `PAYLOAD_FORMATS`: its name,
the topic filter it arrives on by default, whether a LoRaWAN network server publishes it, and
its decoder. Everything else that asks about formats reads that table: ingest's routing
(`FORMATS`), the broker logins (`pilots.provision`: which routes a network server or the
simulator may publish on) and the simulated fleets (`simulators.formats`, whose `ENCODERS`
table gives each registered format, by the same name, the encoder that writes its messages).
The encoders are attached there rather than here so that ingest never imports the simulators:
this package stays what the ingest workers load, and nothing here may import `simulators`.

Adding a format:

1. a decoder module here, `ingest/decoders/<name>.py`, with `decode(topic, payload) -> Decoded`
   built on `ingest.decoders.base` (and `ingest.decoders.lorawan` for a network server's);
2. its tests, `tests/unit/test_<name>.py`;
3. one registration line in `PAYLOAD_FORMATS` below, at its end (the simulators draw their
   format mix in table order);
4. its route in `core.settings`' default `ingest_routes` and in `pilots.env.example` (core
   imports nothing from ingest; unit tests check that both hold the registered routes). A
   format devices publish themselves is routed as `pilots/+/+/<name>`, the shape provisioning
   gives device logins;
5. its simulator encoder: one entry in `simulators.formats.ENCODERS` (a unit test checks that
   every registered format has one and that no encoder is left without a format), and a share
   in its `DEFAULT_MIX` if the simulated fleets should use it;
6. its entries in the fuzzing tables of `tests/unit/test_decoder_fuzz.py`.

docs/ARCHITECTURE.md shows the same steps with the files each touches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.errors import ConfigError
from ingest.decoders import chirpstack, plain, senml, tts
from ingest.decoders.base import Decoded, Decoder, Frame, PackReader, Packs

__all__ = [
    "FORMATS",
    "LORAWAN_FORMATS",
    "PAYLOAD_FORMATS",
    "Decoded",
    "Decoder",
    "Frame",
    "PackReader",
    "Packs",
    "PayloadFormat",
    "Router",
    "default_routes",
    "topic_matches",
]


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    """One payload format ingest reads: what the rest of the system may ask about it.

    `name` is what `PILOTS_INGEST_ROUTES` routes topics to (and what the simulators' encoders
    are keyed by); `route` the MQTT topic filter its messages arrive on by default; `lorawan`
    says that a LoRaWAN network server publishes it: its uplinks are timed by the network and
    matched to devices by EUI, and a network-server login may publish on its routes; `decode`
    reads one message. `read_pack`, for a format whose messages carry many readings of one
    device, reads the simple ones straight into columns for `ingest.columnwise` (the others,
    and every message of a format without one, go through `decode`).
    """

    name: str
    route: str
    decode: Decoder
    lorawan: bool = False
    read_pack: PackReader | None = None


def _by_name(*formats: PayloadFormat) -> Mapping[str, PayloadFormat]:
    """The formats by name, in registration order; a name or route given twice is a bug."""
    for what, keys in (("name", [f.name for f in formats]), ("route", [f.route for f in formats])):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"payload formats: {what} registered twice: {twice}")
    return MappingProxyType({f.name: f for f in formats})


#: Every format ingest reads, one line each. The order is the simulators' too (their format mix
#: is drawn in it): append a new format, never insert one.
PAYLOAD_FORMATS = _by_name(
    PayloadFormat("plain", "pilots/+/+/up", plain.decode),
    PayloadFormat("senml", "pilots/+/+/senml", senml.decode, read_pack=senml.read_pack),
    PayloadFormat("chirpstack", "application/+/device/+/event/up", chirpstack.decode, lorawan=True),
    PayloadFormat("tts", "v3/+/devices/+/up", tts.decode, lorawan=True),
)

#: Format name → decoder (the names `PILOTS_INGEST_ROUTES` may use).
FORMATS: Mapping[str, Decoder] = MappingProxyType(
    {name: f.decode for name, f in PAYLOAD_FORMATS.items()}
)
#: The formats a LoRaWAN network server publishes in.
LORAWAN_FORMATS = frozenset(name for name, f in PAYLOAD_FORMATS.items() if f.lorawan)


def default_routes() -> dict[str, str]:
    """Topic filter → format name, every registered format on its own default route."""
    return {f.route: name for name, f in PAYLOAD_FORMATS.items()}


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
        self.routes = tuple(
            (topic_filter, PAYLOAD_FORMATS[name]) for topic_filter, name in routes.items()
        )
        self._cache: dict[str, PayloadFormat | None] = {}

    @property
    def topic_filters(self) -> tuple[str, ...]:
        """The filters to subscribe to."""
        return tuple(topic_filter for topic_filter, _ in self.routes)

    def format_for(self, topic: str) -> PayloadFormat | None:
        """The format of the first route whose filter matches the topic."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((p for f, p in self.routes if topic_matches(f, topic)), None)
        if len(self._cache) < 100_000:  # topics are bounded by the fleet; the cache is too
            self._cache[topic] = found
        return found

    def decoder_for(self, topic: str) -> Decoder | None:
        """The decoder of the first route whose filter matches the topic."""
        found = self.format_for(topic)
        return None if found is None else found.decode

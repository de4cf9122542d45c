"""Encoders for the payload formats ingest reads: the simulator's side of each format.

The formats are described once, in `ingest.decoders.PAYLOAD_FORMATS`: name, default route,
whether a LoRaWAN network server publishes it, decoder. This module attaches to each of them,
by the same name, what the simulated fleet needs to send it: the topic a device publishes on
and the payload of one report (`ENCODERS`, one entry per format; a unit test keeps the two
tables in step). It must not describe a format a second time: the names, the order the mix is
drawn in and which formats are LoRaWAN come from the ingest table.

A device publishes in one format for a whole run, chosen from a weighted mix by a hash of its
id and the seed. The LoRaWAN network-server formats (ChirpStack v4, The Things Stack v3) need a
device with a `dev_eui` in the registry; a device without one falls back to plain JSON.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from zlib import crc32

import orjson

from core.registry import Device
from core.timeutil import NS_PER_MS, NS_PER_S
from ingest.decoders import LORAWAN_FORMATS, PAYLOAD_FORMATS

#: Every format, in the order ingest registers them (the mix is drawn in this order).
FORMATS = tuple(PAYLOAD_FORMATS)
#: Formats a LoRaWAN network server publishes: timed by the network, for devices with an EUI.
LORAWAN = LORAWAN_FORMATS
DEFAULT_MIX = {"plain": 0.55, "senml": 0.15, "chirpstack": 0.2, "tts": 0.1}

#: Where the network servers put the fleet: one application per pilot, one tenant. ChirpStack
#: names tenants, applications and deduplicated events by UUID; these are fixed (uuid5) ones.
TENANT = "utn"
_NAMESPACE = uuid.UUID("6f1c2a8e-3b9d-4c57-9a0e-2d4b8f71c3a5")


def _uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


F_PORT = 2
FREQUENCIES_HZ = (916_800_000, 917_000_000, 917_200_000, 917_400_000)


@dataclass(frozen=True, slots=True)
class Uplink:
    """What one transmission says, before encoding."""

    ts_ns: int  # device time (plain, SenML) or the network's receive time (LoRaWAN)
    seq: int
    values: Mapping[str, float]
    battery_v: float
    rssi: float
    snr: float
    sf: int


@dataclass(frozen=True, slots=True)
class Encoder:
    """How a simulated device sends one format.

    `topic` is the topic a device publishes on (one of the format's routes, filled in);
    `encode` the payload of one report; `counted` says that its messages carry a frame counter,
    so that a device's reboot shows in them (SenML packs have none).
    """

    topic: Callable[[Device], str]
    encode: Callable[[Device, Uplink], bytes]
    counted: bool


def parse_mix(text: str) -> dict[str, float]:
    """`plain=60,senml=10,chirpstack=20,tts=10` as normalised weights."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or name not in FORMATS:
            raise ValueError(
                f"format mix {part!r}: expected FORMAT=WEIGHT, FORMAT one of {', '.join(FORMATS)}"
            )
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"format mix {part!r}: {weight!r} is not a number") from None
        if mix[name] < 0:
            raise ValueError(f"format mix {part!r}: weights are not negative")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("format mix: at least one weight must be positive")
    return {name: w / total for name, w in mix.items()}


def choose(device: Device, seed: int, mix: Mapping[str, float]) -> str:
    """The device's format for this run."""
    u = crc32(f"{device.id}/{seed}/format".encode()) / 2**32
    total = sum(mix.values()) or 1.0
    chosen = "plain"
    edge = 0.0
    for name in FORMATS:
        edge += mix.get(name, 0.0) / total
        if u < edge:
            chosen = name
            break
    if chosen in LORAWAN and not device.dev_eui:
        return "plain"
    return chosen


def topic(fmt: str, device: Device) -> str:
    """The topic a device of this format publishes on."""
    return ENCODERS[fmt].topic(device)


# -- plain JSON and SenML: the device's own message ---------------------------------------------


def _plain_topic(device: Device) -> str:
    return f"pilots/{device.pilot}/{device.id}/up"


def _plain(device: Device, up: Uplink) -> bytes:
    return orjson.dumps(
        {
            "ts": up.ts_ns // NS_PER_MS,
            "seq": up.seq,
            "readings": dict(up.values),
            "battery_v": up.battery_v,
        }
    )


def _senml_topic(device: Device) -> str:
    return f"pilots/{device.pilot}/{device.id}/senml"


def _senml(device: Device, up: Uplink) -> bytes:
    records: list[dict[str, object]] = [
        {"n": name, "v": value} for name, value in up.values.items()
    ]
    records.append({"n": "battery_v", "v": up.battery_v})
    # the base name and time ride on the first record, as RFC 8428's examples do
    records[0] = {"bn": f"{device.id}/", "bt": up.ts_ns // NS_PER_S, **records[0]}
    return orjson.dumps(records)


# -- LoRaWAN network servers: the uplink as the network server forwards it ----------------------


@dataclass(frozen=True, slots=True)
class _Received:
    """What a network server adds to an uplink: decoded values, receive time, radio."""

    decoded: dict[str, float]
    when: str
    frequency: int
    gateway: str

    @classmethod
    def of(cls, device: Device, up: Uplink) -> _Received:
        return cls(
            decoded={**up.values, "battery_v": up.battery_v},
            when=_rfc3339(up.ts_ns),
            frequency=FREQUENCIES_HZ[up.seq % len(FREQUENCIES_HZ)],
            gateway=f"{device.pilot}-gw-{crc32(device.site.encode()) % 3 + 1}",
        )


def _rfc3339(ts_ns: int) -> str:
    moment = datetime.fromtimestamp(ts_ns // NS_PER_S, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_ns % NS_PER_S:09d}Z"


def _frm_payload(up: Uplink) -> str:
    """The radio payload the codec decoded: values as big-endian int32 of hundredths."""
    raw = b"".join(struct.pack(">i", round(v * 100) & 0x7FFFFFFF) for v in up.values.values())
    return base64.b64encode(raw).decode()


def _chirpstack_topic(device: Device) -> str:
    return f"application/{_uuid(device.pilot)}/device/{device.dev_eui}/event/up"


def _chirpstack(device: Device, up: Uplink) -> bytes:
    rx = _Received.of(device, up)
    event: dict[str, object] = {
        "deduplicationId": _uuid(f"{device.id}/{up.ts_ns}/{up.seq}"),
        "time": rx.when,
        "deviceInfo": {
            "tenantId": _uuid(TENANT),
            "tenantName": TENANT,
            "applicationId": _uuid(device.pilot),
            "applicationName": device.pilot,
            "deviceName": device.lns_id or device.id,
            "devEui": device.dev_eui,
        },
        "fPort": F_PORT,
        "data": _frm_payload(up),
        "object": rx.decoded,
        "rxInfo": [{"gatewayId": rx.gateway, "rssi": int(up.rssi), "snr": up.snr}],
        "txInfo": {
            "frequency": rx.frequency,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": up.sf}},
        },
    }
    if up.seq:  # proto3 JSON leaves zero out
        event["fCnt"] = up.seq
    return orjson.dumps(event)


def _tts_topic(device: Device) -> str:
    return f"v3/{device.pilot}@{TENANT}/devices/{device.lns_id or device.id}/up"


def _tts(device: Device, up: Uplink) -> bytes:
    rx = _Received.of(device, up)
    message: dict[str, object] = {
        "f_port": F_PORT,
        "frm_payload": _frm_payload(up),
        "decoded_payload": rx.decoded,
        "rx_metadata": [
            {"gateway_ids": {"gateway_id": rx.gateway}, "rssi": int(up.rssi), "snr": up.snr}
        ],
        "settings": {
            "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": up.sf}},
            "frequency": str(rx.frequency),
        },
        "received_at": rx.when,
    }
    if up.seq:  # The Things Stack omits zero fields
        message["f_cnt"] = up.seq
    return orjson.dumps(
        {
            "end_device_ids": {
                "device_id": device.lns_id or device.id,
                "application_ids": {"application_id": device.pilot},
                "dev_eui": (device.dev_eui or "").upper(),
            },
            "received_at": rx.when,
            "uplink_message": message,
        }
    )


#: The encoder of each format in `ingest.decoders.PAYLOAD_FORMATS`, by the same name: one entry
#: per format, no more, no fewer.
ENCODERS: Mapping[str, Encoder] = MappingProxyType(
    {
        "plain": Encoder(_plain_topic, _plain, counted=True),
        "senml": Encoder(_senml_topic, _senml, counted=False),
        "chirpstack": Encoder(_chirpstack_topic, _chirpstack, counted=True),
        "tts": Encoder(_tts_topic, _tts, counted=True),
    }
)

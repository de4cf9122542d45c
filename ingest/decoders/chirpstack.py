"""ChirpStack v4 uplink events (MQTT integration, JSON marshaler).

Topic `application/<application id>/device/<dev eui>/event/up`. Fields used: `time` (the
network server's time of the uplink), `fCnt`, `object` (the codec's decoded values: set a codec
in the device profile, or the uplink is refused), `deviceInfo{devEui, deviceName}`,
`rxInfo[]{gatewayId, rssi, snr}`, `txInfo.modulation.lora.spreadingFactor`. The device is the
registry device with that EUI (the topic's, which `deviceInfo.devEui` must repeat); a
`deviceName` that names another registry device is refused.
"""

from __future__ import annotations

from typing import Any

from ingest.decoders.base import INVALID, Decoded, FrameError, kind_of, load_json, rfc3339_ns
from ingest.decoders.lorawan import count_values, decoded_values, dig, refuse, uplink_frame
from ingest.reasons import Reason, Rejection


def _gateway(rx: dict[str, Any]) -> object:
    return rx.get("gatewayId")


def decode(topic: str, payload: bytes) -> Decoded:
    """The frame of one ChirpStack uplink event."""
    out = Decoded()
    levels = topic.split("/")
    if len(levels) != 6 or levels[0] != "application" or levels[2] != "device":
        out.rejections.append(
            Rejection(Reason.BAD_TOPIC, f"topic {topic!r} is not a ChirpStack uplink event topic")
        )
        return out
    event = load_json(payload, out)
    if event is INVALID:
        return out
    decoded = event.get("object") if isinstance(event, dict) else None
    try:
        if not isinstance(event, dict):
            raise FrameError(Reason.MALFORMED_STRUCTURE, f"event is {kind_of(event)}")
        eui = dig(event, "deviceInfo", "devEui") or levels[3]
        if not isinstance(eui, str):
            raise FrameError(Reason.MALFORMED_STRUCTURE, "deviceInfo.devEui must be a string")
        if eui.lower() != levels[3].lower():
            raise FrameError(
                Reason.DEVICE_MISMATCH, f"deviceInfo.devEui {eui!r} is not the topic's {levels[3]}"
            )
        name = dig(event, "deviceInfo", "deviceName")
        time = event.get("time")
        out.frames.append(
            uplink_frame(
                values=decoded_values(
                    decoded, "object", "set a codec in the ChirpStack device profile"
                ),
                device=name if isinstance(name, str) else None,
                dev_eui=eui,
                ts_ns=None if time is None else rfc3339_ns(time, "time"),
                fcnt=event.get("fCnt"),
                fcnt_key="fCnt",
                receptions=event.get("rxInfo"),
                gateway_of=_gateway,
                sf=dig(event, "txInfo", "modulation", "lora", "spreadingFactor"),
            )
        )
    except FrameError as exc:
        refuse(out, exc, count_values(decoded))
    return out

"""The Things Stack v3 uplink messages (MQTT server or integration, JSON format).

Topic `v3/<application id>@<tenant id>/devices/<device id>/up`. Fields used:
`end_device_ids{device_id, dev_eui}`, `uplink_message{f_cnt, decoded_payload, rx_metadata[]{
gateway_ids{gateway_id, eui}, rssi, snr}, settings.data_rate.lora.spreading_factor,
received_at}` and the top-level `received_at`. Zero and empty fields are omitted, so a missing
`f_cnt` is 0. The device is the registry device with that EUI, or whose network-server id is
`device_id`. The Things Stack's own MQTT server delivers at QoS 0 only: what it drops before
our broker cannot be recovered here.
"""

from __future__ import annotations

from typing import Any

from ingest.decoders import Decoded
from ingest.decoders.common import INVALID, FrameError, kind_of, load_json, rfc3339_ns
from ingest.decoders.lorawan import decoded_values, dig, uplink_frame
from ingest.reasons import Reason, Rejection


def _gateway(rx: dict[str, Any]) -> object:
    ids = rx.get("gateway_ids")
    if not isinstance(ids, dict):
        return None
    return ids.get("gateway_id") or ids.get("eui")


def decode(topic: str, payload: bytes) -> Decoded:
    """The frame of one The Things Stack uplink message."""
    out = Decoded()
    levels = topic.split("/")
    if len(levels) != 5 or levels[0] != "v3" or levels[2] != "devices":
        out.rejections.append(
            Rejection(Reason.BAD_TOPIC, f"topic {topic!r} is not a The Things Stack uplink topic")
        )
        return out
    message = load_json(payload, out)
    if message is INVALID:
        return out
    try:
        if not isinstance(message, dict):
            raise FrameError(Reason.MALFORMED_STRUCTURE, f"message is {kind_of(message)}")
        uplink = message.get("uplink_message")
        if not isinstance(uplink, dict):
            raise FrameError(Reason.MALFORMED_STRUCTURE, "no `uplink_message` object")
        device_id = dig(message, "end_device_ids", "device_id") or levels[3]
        if device_id != levels[3]:
            raise FrameError(
                Reason.DEVICE_MISMATCH,
                f"end_device_ids.device_id {device_id!r} is not the topic's {levels[3]!r}",
            )
        received = uplink.get("received_at", message.get("received_at"))
        out.frames.append(
            uplink_frame(
                values=decoded_values(
                    uplink.get("decoded_payload"),
                    "decoded_payload",
                    "set an uplink payload formatter in The Things Stack",
                ),
                device=levels[3],
                dev_eui=dig(message, "end_device_ids", "dev_eui"),
                ts_ns=None if received is None else rfc3339_ns(received, "received_at"),
                fcnt=uplink.get("f_cnt"),
                fcnt_key="f_cnt",
                receptions=uplink.get("rx_metadata"),
                gateway_of=_gateway,
                sf=dig(uplink, "settings", "data_rate", "lora", "spreading_factor"),
            )
        )
    except FrameError as exc:
        out.rejections.append(exc.rejection)
    return out

"""The Things Stack v3 uplink messages (MQTT server or integration, JSON format).

Topic `v3/<application id>@<tenant id>/devices/<device id>/up`. Fields used:
`end_device_ids{device_id, dev_eui}`, `uplink_message{f_cnt, decoded_payload, rx_metadata[]{
gateway_ids{gateway_id, eui}, rssi, snr}, settings.data_rate.lora.spreading_factor,
received_at}` and the top-level `received_at` and `simulated`. Zero and empty fields are
omitted, so a missing `f_cnt` is 0 and a missing `simulated` is false. The device is the
registry device with that `dev_eui`; an uplink without one (an ABP device registered without a
DevEUI) is refused, since a device id at the network server is not proof of which device sent
it. An uplink marked `simulated` (made in the console or with `ttn-lw-cli simulate`, never
received by a gateway) is refused: it is not a measurement. The Things Stack's own MQTT server
delivers at QoS 0 only: what it drops before our broker cannot be recovered here.
"""

from __future__ import annotations

from typing import Any

from ingest.decoders.base import INVALID, Decoded, FrameError, kind_of, load_json, rfc3339_ns
from ingest.decoders.lorawan import count_values, decoded_values, dig, refuse, uplink_frame
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
    uplink = message.get("uplink_message") if isinstance(message, dict) else None
    decoded = uplink.get("decoded_payload") if isinstance(uplink, dict) else None
    try:
        if not isinstance(message, dict):
            raise FrameError(Reason.MALFORMED_STRUCTURE, f"message is {kind_of(message)}")
        _refuse_simulated(message.get("simulated"))
        if not isinstance(uplink, dict):
            raise FrameError(Reason.MALFORMED_STRUCTURE, "no `uplink_message` object")
        device_id = dig(message, "end_device_ids", "device_id") or levels[3]
        if device_id != levels[3]:
            raise FrameError(
                Reason.DEVICE_MISMATCH,
                f"end_device_ids.device_id {device_id!r} is not the topic's {levels[3]!r}",
            )
        dev_eui = _dev_eui(dig(message, "end_device_ids", "dev_eui"), levels[3])
        received = uplink.get("received_at", message.get("received_at"))
        out.frames.append(
            uplink_frame(
                values=decoded_values(
                    decoded,
                    "decoded_payload",
                    "set an uplink payload formatter in The Things Stack",
                ),
                device=levels[3],
                dev_eui=dev_eui,
                ts_ns=None if received is None else rfc3339_ns(received, "received_at"),
                fcnt=uplink.get("f_cnt"),
                fcnt_key="f_cnt",
                receptions=uplink.get("rx_metadata"),
                gateway_of=_gateway,
                sf=dig(uplink, "settings", "data_rate", "lora", "spreading_factor"),
            )
        )
    except FrameError as exc:
        refuse(out, exc, count_values(decoded))
    return out


def _refuse_simulated(simulated: object) -> None:
    """Refuse an uplink The Things Stack marks as simulated (`ApplicationUp.simulated`)."""
    if simulated is None or simulated is False:
        return
    if simulated is True:
        raise FrameError(
            Reason.SIMULATED,
            "a simulated uplink (made in The Things Stack's console or API, not received by a "
            "gateway) is not a measurement",
        )
    raise FrameError(Reason.MALFORMED_STRUCTURE, "`simulated` must be a boolean")


def _dev_eui(dev_eui: object, device_id: str) -> str:
    """The uplink's DevEUI; without one the uplink cannot be matched to a device."""
    if dev_eui is None or dev_eui == "":
        raise FrameError(
            Reason.MISSING_DEV_EUI,
            f"no end_device_ids.dev_eui for {device_id!r}: uplinks are matched to registry "
            "devices by EUI only; give the device a DevEUI in The Things Stack and its "
            "`dev_eui` in the registry",
        )
    if not isinstance(dev_eui, str):
        raise FrameError(Reason.MALFORMED_STRUCTURE, "end_device_ids.dev_eui must be a string")
    return dev_eui

"""What the LoRaWAN network-server formats (ChirpStack, The Things Stack) have in common.

Both deliver one uplink per message, with values decoded by a payload codec, a frame counter,
the receiving gateways' radio metadata, and the network server's receive time. Zero and empty
fields are omitted from both (proto3 JSON and The Things Stack's own rule), so a missing frame
counter means 0. Their uplinks are matched to registry devices by EUI only (see
`ingest.validate`): a network server's name for a device is not proof of which device it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ingest.decoders.base import Decoded, Frame, FrameError, frame_counter, kind_of, optional_number
from ingest.reasons import Reason


def decoded_values(decoded: object, what: str, hint: str) -> dict[str, object]:
    """The codec's output as sensor → value, or a refusal saying how to get one."""
    if decoded is None:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"no `{what}`: {hint}")
    if not isinstance(decoded, dict):
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{what}` is {kind_of(decoded)}, not object")
    if not decoded:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{what}` is empty")
    return dict(decoded)


def count_values(decoded: object) -> int:
    """How many readings a codec's output holds (1 when it is no object: the uplink is one)."""
    return len(decoded) if isinstance(decoded, dict) and decoded else 1


def refuse(out: Decoded, error: FrameError, records: int) -> None:
    """Add the refusal of the whole uplink, which covers every value it carried."""
    out.rejections.append(replace(error.rejection, records=records))


#: A gateway id worth keeping: ChirpStack's are 16 hex digits, The Things Stack's at most 36
#: characters. Any other (too long, odd characters) is not kept: the uplink is, without it.
GATEWAY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def best_reception(
    receptions: Iterable[dict[str, Any]], gateway_of: Any
) -> tuple[float | None, float | None, str | None]:
    """RSSI, SNR and gateway of the strongest reception (highest RSSI)."""
    best: tuple[float | None, float | None, str | None] = (None, None, None)
    for rx in receptions:
        if not isinstance(rx, dict):
            continue
        rssi = optional_number(rx.get("rssi"))
        if best[0] is None or (rssi is not None and rssi > best[0]):
            gateway = gateway_of(rx)
            best = (
                rssi,
                optional_number(rx.get("snr")),
                gateway if isinstance(gateway, str) and GATEWAY_ID.match(gateway) else None,
            )
    return best


def uplink_frame(
    *,
    values: dict[str, object],
    device: str | None,
    dev_eui: str | None,
    ts_ns: int | None,
    fcnt: object,
    fcnt_key: str,
    receptions: object,
    gateway_of: Any,
    sf: object,
) -> Frame:
    """A frame with the radio metadata of one uplink."""
    rssi, snr, gateway = best_reception(
        receptions if isinstance(receptions, list) else [], gateway_of
    )
    spreading = optional_number(sf)
    return Frame(
        device=device,
        pilot=None,
        ts_ns=ts_ns,
        values=values,
        seq=frame_counter(0 if fcnt is None else fcnt, fcnt_key),
        dev_eui=dev_eui.lower() if isinstance(dev_eui, str) else None,
        rssi=rssi,
        snr=snr,
        sf=int(spreading) if spreading is not None and 5 <= spreading <= 12 else None,
        gateway=gateway,
        time_is_reception=True,
        from_network_server=True,
    )


def dig(document: object, *path: str) -> Any:
    """`document[path[0]][path[1]]...`, None where a level is missing or not an object."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document

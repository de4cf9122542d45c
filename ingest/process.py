"""One message from bytes to checked columns, shared by the live service and the replay."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.readings import Readings
from core.uplinks import Uplinks
from ingest.decoders import Router
from ingest.reasons import Reason, Rejection
from ingest.validate import Checked, Validator

log = logging.getLogger(__name__)


def process(
    router: Router,
    validator: Validator,
    topic: str,
    payload: bytes,
    received_ns: int,
    *,
    max_payload_bytes: int,
) -> Checked:
    """Decode and validate one message; never raises (a bug costs one message, not ingest)."""
    checked = Checked()
    try:
        if len(payload) > max_payload_bytes:
            detail = (
                f"{len(payload)} bytes, limit {max_payload_bytes} (PILOTS_INGEST_MAX_PAYLOAD_BYTES)"
            )
            checked.rejections.append(Rejection(Reason.OVERSIZED, detail))
            return checked
        decoder = router.decoder_for(topic)
        if decoder is None:
            checked.rejections.append(
                Rejection(Reason.BAD_TOPIC, f"no format is routed for {topic!r}")
            )
            return checked
        decoded = decoder(topic, payload)
        checked.rejections.extend(decoded.rejections)
        return validator.check(decoded.frames, received_ns, checked)
    except Exception as exc:
        log.exception("cannot process a message on %s", topic)
        return Checked(rejections=[Rejection(Reason.INTERNAL_ERROR, repr(exc)[:500])])


def columns(messages: Sequence[tuple[Checked, int]]) -> tuple[Readings, Uplinks, Uplinks]:
    """`Readings`, `Uplinks` and repeats for the accepted data of (checked, received_ns) pairs.

    A repeat is timed by the repeated frame's own time (for a LoRaWAN retransmission, when the
    network server received it again), plus its place among the message's repeats in
    nanoseconds, so that two repeats in one message stay two points.
    """
    checks = [c for c, _ in messages]
    readings = Readings.from_arrays(
        [t for c in checks for t in c.ts_ns],
        [d for c in checks for d in c.device],
        [s for c in checks for s in c.sensor],
        [v for c in checks for v in c.value],
    )
    uplinks = Uplinks.from_columns(
        ts_ns=[t for c in checks for t in c.up_ts_ns],
        device=[d for c in checks for d in c.up_device],
        received_ns=[r for c, r in messages for _ in c.up_ts_ns],
        fcnt=[f for c in checks for f in c.up_fcnt],
        rssi=[r for c in checks for r in c.up_rssi],
        snr=[s for c in checks for s in c.up_snr],
        sf=[s for c in checks for s in c.up_sf],
        gateway=[g for c in checks for g in c.up_gateway],
    )
    repeats = Uplinks.from_columns(
        ts_ns=[t + i for c in checks for i, t in enumerate(c.rep_ts_ns)],
        device=[d for c in checks for d in c.rep_device],
        received_ns=[r for c, r in messages for _ in c.rep_device],
        fcnt=[f for c in checks for f in c.rep_fcnt],
        rssi=[r for c in checks for r in c.rep_rssi],
        snr=[s for c in checks for s in c.rep_snr],
        sf=[s for c in checks for s in c.rep_sf],
        gateway=[g for c in checks for g in c.rep_gateway],
    )
    return readings, uplinks, repeats

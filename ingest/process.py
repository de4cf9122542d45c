"""Messages from bytes to checked columns, shared by the live service and the replay.

`process` takes one message through its decoder and the validator; `process_batch` takes a
writer's batch, checking the simple packs of formats that read them column-wise
(`ingest.columnwise`) all at once and every other message with `process`, and gives the same
columns, messages in the same order, as `process` message by message would.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.readings import Readings
from core.uplinks import NO_FCNT, NO_SF, Uplinks
from ingest.columnwise import PacksChecked, check_packs, unchecked
from ingest.decoders import Packs, Router
from ingest.reasons import Reason, Rejection
from ingest.spool import FrameKey
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


class Message(Protocol):
    """What `process_batch` reads of a message (a spooled one, or one just received)."""

    @property
    def topic(self) -> str:
        """The MQTT topic it came on."""

    @property
    def payload(self) -> bytes:
        """Its bytes as received."""

    @property
    def received_ns(self) -> int:
        """When ingest received it."""


@dataclass(slots=True)
class Batch:
    """A batch's accepted columns, and per message what it refused and how much it gave."""

    readings: Readings
    uplinks: Uplinks
    repeats: Uplinks
    #: Per message, in batch order: its refusals.
    rejections: list[list[Rejection]]
    #: Per message, in batch order: how many readings it gave.
    accepted: list[int]
    keys: list[tuple[FrameKey, int]]
    duplicates: int


def process_batch(
    router: Router, validator: Validator, messages: Sequence[Message], *, max_payload_bytes: int
) -> Batch:
    """Decode and validate a batch: simple packs column-wise, the rest one by one.

    The result is what `columns` makes of `process` applied to each message in turn: the same
    readings, uplinks, repeats and refusals, readings in message order (a later message's
    reading of a point overwrites an earlier one's, as the store takes them in order; within
    one message, which never gives a point twice, a simple pack's come in record order).
    """
    packs = Packs()
    for index, message in enumerate(messages):
        payload = message.payload
        if len(payload) > max_payload_bytes:
            continue
        found = router.format_for(message.topic)
        if found is not None and found.read_pack is not None:
            try:
                found.read_pack(message.topic, payload, packs, index, message.received_ns)
            except Exception:  # a bug costs the column-wise path, never the message
                log.exception("cannot read a pack on %s column-wise", message.topic)
                packs = Packs()
                break
    try:
        fast = check_packs(validator, packs)
    except Exception:  # as above: every message goes through `process`
        log.exception("cannot check %d packs column-wise", len(packs.message))
        fast = unchecked(packs)
    fast_set = set(packs.message) - set(fast.fallback)
    rejections: list[list[Rejection]] = [[] for _ in messages]
    accepted = [0] * len(messages)
    slow: list[tuple[Checked, int]] = []
    slow_index: list[int] = []
    for index, message in enumerate(messages):
        if index in fast_set:
            continue
        checked = process(
            router,
            validator,
            message.topic,
            message.payload,
            message.received_ns,
            max_payload_bytes=max_payload_bytes,
        )
        slow.append((checked, message.received_ns))
        slow_index.append(index)
        rejections[index] = checked.rejections
        accepted[index] = len(checked.value)
    for index, n in zip(*np.unique(fast.message, return_counts=True), strict=True):
        accepted[int(index)] = int(n)
    readings, uplinks, repeats = columns(slow)
    if len(fast.message):
        readings, uplinks = _merge(fast, readings, uplinks, slow, slow_index)
    return Batch(
        readings=readings,
        uplinks=uplinks,
        repeats=repeats,
        rejections=rejections,
        accepted=accepted,
        keys=[key for checked, _ in slow for key in checked.frame_keys],
        duplicates=sum(c.duplicates for c, _ in slow),
    )


def _merge(
    fast: PacksChecked,
    readings: Readings,
    uplinks: Uplinks,
    slow: list[tuple[Checked, int]],
    slow_index: list[int],
) -> tuple[Readings, Uplinks]:
    """The column-wise rows and the others together, in message order."""
    per_message = np.repeat(slow_index, [len(c.value) for c, _ in slow]).astype(np.intp)
    order = np.argsort(np.concatenate((fast.message, per_message)), kind="stable")
    joined = Readings.concat(
        [Readings.from_arrays(fast.ts_ns, fast.device, fast.sensor, fast.value), readings]
    )
    up_message = np.repeat(slow_index, [len(c.up_ts_ns) for c, _ in slow]).astype(np.intp)
    up_order = np.argsort(np.concatenate((fast.up_message, up_message)), kind="stable")
    n = len(fast.up_message)
    ups = Uplinks.concat(
        [
            Uplinks.from_columns(
                ts_ns=fast.up_ts_ns,
                device=fast.up_device,
                received_ns=fast.up_received_ns,
                fcnt=np.full(n, NO_FCNT),
                rssi=np.full(n, np.nan),
                snr=np.full(n, np.nan),
                sf=np.full(n, NO_SF),
                gateway=[""] * n,
            ),
            uplinks,
        ]
    )
    return joined.take(order), ups.take(up_order)

"""A fleet's past as few, large messages: days of history published in seconds.

`Fleet.messages` publishes every report on its own, in its device's format: right for real
time, slow for days of the past (the demo's in-process broker passes a few hundred messages a
second). `history` writes the same reports, a device's reports of one span (six hours by default)
at a time, as one plain JSON array of frames on the device's `pilots/<pilot>/<device>/up` topic:
each frame the report's stated time, its frame counter, its readings and battery. Ingest stores
the same readings, and one uplink per frame, so completeness, gaps and packet delivery ratio
read as they would from one message per report. The counter is what makes a frame an uplink of
its own: ingest counts the frames of a message that have none (and a SenML pack) as one uplink,
so completeness would fall to one report per pack. A device whose format has no counter (SenML)
so gets one in its history only.

The faults are the fleet's (the same plan as `Fleet.messages`): lost and silenced reports are
absent, value faults (stuck, drift, spikes, out of range) are in the values, a skewed clock in
the stated times, a gateway's backlog in the pack of the span it is delivered in, and a message
cut in half is published on its own, as the device would send it, for ingest to quarantine. A
duplicate is left out: a device-timed repeat only overwrites itself. Not kept: LoRaWAN radio
metadata (RSSI, SNR, spreading factor, gateway), which plain frames do not carry.

Every message respects ingest's limits (`Limits`, from the settings): a pack larger than
`PILOTS_INGEST_MAX_PAYLOAD_BYTES` is split, and frames ingest would refuse as too old
(`PILOTS_INGEST_MAX_AGE_DAYS`) or too far in the future (`PILOTS_INGEST_MAX_FUTURE_S`) are left
out. This module only regroups what the fleet publishes; it plans and computes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from core.registry import Device
from core.settings import Settings
from core.timeutil import DAY_NS, HOUR_NS, NS_PER_MS, NS_PER_S
from simulators.fleet import Fleet, Message, Sent

#: What one device's pack covers (its reports' publication times). Six hours keep a pack small
#: (about 12 KB for a device reporting every 5 minutes) and the messages few: the demo's
#: in-process broker, not ingest, sets the pace.
PACK_SPAN_NS = 6 * HOUR_NS
#: Room kept inside the age limit for the time publishing and ingesting take.
AGE_MARGIN_NS = HOUR_NS
_FIELDS = Settings.model_fields


@dataclass(frozen=True, slots=True)
class Limits:
    """What ingest accepts: payload size, and how old or how far ahead a stated time may be.

    The defaults are the settings' defaults.
    """

    max_payload_bytes: int = _FIELDS["ingest_max_payload_bytes"].default
    max_future_s: int = _FIELDS["ingest_max_future_s"].default
    max_age_days: int = _FIELDS["ingest_max_age_days"].default

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings give ingest."""
        return cls(
            max_payload_bytes=settings.ingest_max_payload_bytes,
            max_future_s=settings.ingest_max_future_s,
            max_age_days=settings.ingest_max_age_days,
        )

    def earliest_ns(self, now_ns: int) -> int:
        """The oldest stated time ingest takes from a message received about `now_ns`."""
        return now_ns - self.max_age_days * DAY_NS + AGE_MARGIN_NS


def history(
    fleet: Fleet,
    start_ns: int,
    end_ns: int,
    *,
    limits: Limits | None = None,
    span_ns: int = PACK_SPAN_NS,
    now_ns: int | None = None,
) -> list[Message]:
    """What the fleet publishes in `[start_ns, end_ns)`, as packs, in publication order.

    A pack is published at its last report's publication time; `now_ns` (default `end_ns`)
    is when ingest will receive the packs, for the age and future limits.
    """
    limits = limits or Limits()
    received = end_ns if now_ns is None else now_ns
    window = (limits.earliest_ns(received), received + limits.max_future_s * NS_PER_S)
    out: list[Message] = []
    for device in fleet.devices:
        out.extend(
            _device_history(
                fleet, device, (start_ns, end_ns), span_ns=span_ns, limits=limits, window=window
            )
        )
    out.sort(key=lambda m: (m.ts_ns, m.topic))
    return out


def _device_history(
    fleet: Fleet,
    device: Device,
    span: tuple[int, int],
    *,
    span_ns: int,
    limits: Limits,
    window: tuple[int, int],
) -> list[Message]:
    """One device's reports published in `span`, as packs and the malformed messages."""
    topic = f"pilots/{device.pilot}/{device.id}/up"
    out: list[Message] = []
    spans: dict[int, tuple[int, list[dict[str, object]]]] = {}
    for sent in fleet.device_reports(device, *span):
        if sent.malformed:  # as the device sends it: ingest quarantines it
            out.extend(fleet.encode(device, [sent]))
            continue
        stated = sent.uplink.ts_ns
        if sent.copy == 1 or not window[0] <= stated <= window[1]:
            continue
        bucket = sent.pub_ns // span_ns
        _, frames = spans.get(bucket, (0, []))
        frames.append(_frame(sent))
        spans[bucket] = (sent.pub_ns, frames)
    for last_pub, frames in spans.values():
        out.extend(Message(last_pub, topic, p) for p in _packs(frames, limits.max_payload_bytes))
    return out


def _frame(sent: Sent) -> dict[str, object]:
    """One report as a plain JSON frame (as `simulators.formats`' plain encoder writes it)."""
    up = sent.uplink
    return {
        "ts": up.ts_ns // NS_PER_MS,
        "seq": up.seq,
        "readings": dict(up.values),
        "battery_v": up.battery_v,
    }


def _packs(frames: list[dict[str, object]], max_bytes: int) -> Iterable[bytes]:
    """The frames as JSON arrays, split in halves until each fits in `max_bytes`."""
    payload = orjson.dumps(frames)
    if len(payload) <= max_bytes or len(frames) == 1:
        # a single frame too large is published anyway: ingest refuses it as it would live
        yield payload
        return
    half = len(frames) // 2
    yield from _packs(frames[:half], max_bytes)
    yield from _packs(frames[half:], max_bytes)

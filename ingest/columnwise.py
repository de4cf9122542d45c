"""Simple packs checked column-wise: the registry's checks as numpy operations over a batch.

`ingest.validate.Validator` checks one frame and one reading at a time, which costs a few
microseconds a reading in Python; a batch of 50-reading SenML packs is mostly that. The packs a
format's `PackReader` found simple (`ingest.decoders.base.Packs`) are checked here instead, all
of a batch's readings at once: device and sensors once per message (a few per message), then
value ranges, finiteness, time limits and repeated readings as array operations.

The rule is the same as record by record, and so are the outcomes: a message passes here only
if every one of its readings passes; a message with anything to refuse is handed back
(`PacksChecked.fallback`) and goes through its decoder and the validator, which say what is
refused and why in the same words as always. So column-wise checking changes the cost of a good
pack, never what is stored or quarantined (tests/unit/test_columnwise.py compares both ways on
generated packs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.timeutil import NS_PER_S
from ingest.decoders import Frame
from ingest.decoders.base import Packs
from ingest.decoders.senml import RELATIVE_LIMIT_S
from ingest.validate import Validator

#: Seconds (either side of the epoch, year 2096) beyond which a time goes record by record:
#: its nanoseconds, and their distance from the receive time, stay well inside int64.
_TIME_LIMIT_S = 4.0e9
#: The time limits as compared here: a longer limit (an operator's "no limit") is the same as
#: this one, since no time within `_TIME_LIMIT_S` is further than it from a receive time.
_LIMIT_NS = 2**62


@dataclass(slots=True)
class PacksChecked:
    """The accepted readings and uplinks of the packs that passed, and those handed back.

    Reading and uplink rows carry the batch index of their message (`message`,
    `up_message`), in batch order, so they can be merged with the messages checked record by
    record. Each accepted pack is one uplink (a pack has no frame counter), stamped with its
    latest reading's time, as `Validator.check` stamps a pack's frames.
    """

    message: NDArray[np.intp]
    ts_ns: NDArray[np.int64]
    device: NDArray[np.int32]
    sensor: NDArray[np.int16]
    value: NDArray[np.float64]
    up_message: NDArray[np.intp]
    up_ts_ns: NDArray[np.int64]
    up_device: NDArray[np.int32]
    up_received_ns: NDArray[np.int64]
    fallback: list[int]


def unchecked(packs: Packs) -> PacksChecked:
    """Nothing accepted column-wise: every message of `packs` handed back."""
    none = np.zeros(0, dtype=np.intp)
    return PacksChecked(
        message=none,
        ts_ns=none.astype(np.int64),
        device=none.astype(np.int32),
        sensor=none.astype(np.int16),
        value=none.astype(np.float64),
        up_message=none,
        up_ts_ns=none.astype(np.int64),
        up_device=none.astype(np.int32),
        up_received_ns=none.astype(np.int64),
        fallback=list(packs.message),
    )


def check_packs(validator: Validator, packs: Packs) -> PacksChecked:
    """Check every reading of `packs` against the validator's registry and limits."""
    count = len(packs.message)
    device, good, slot_code, slot_low, slot_high = _registry_checks(validator, packs)
    counts = np.asarray(packs.readings, dtype=np.intp)
    message = np.repeat(np.arange(count), counts)
    slot = np.asarray(packs.slot, dtype=np.intp)
    received = np.repeat(np.asarray(packs.received_ns, dtype=np.int64), counts)
    with np.errstate(all="ignore"):  # an overflow to infinity is refused below, not warned of
        value = np.asarray(packs.value, dtype=np.float64) + np.repeat(packs.base_value, counts)
        when = np.asarray(packs.time, dtype=np.float64) + np.repeat(packs.base_time, counts)
        ok = (
            np.isfinite(value)
            & np.isfinite(when)
            & (np.abs(when) < _TIME_LIMIT_S)
            & (value >= slot_low[slot])
            & (value <= slot_high[slot])
        )
    when = np.where(ok, when, 0.0)
    whole = np.floor(when)
    ns = whole.astype(np.int64) * NS_PER_S + np.round((when - whole) * NS_PER_S).astype(np.int64)
    ts = np.where(when < RELATIVE_LIMIT_S, received + ns, ns)
    ahead = ts - received
    ok &= ahead <= min(validator.max_future_ns, _LIMIT_NS)
    ok &= ahead >= -min(validator.max_age_ns, _LIMIT_NS)
    good[message[~ok]] = False
    sensor = slot_code[slot]
    good[_repeated(message, ts, sensor)] = False
    keep = good[message]
    kept = np.flatnonzero(good)
    starts = np.cumsum(counts) - counts
    latest = np.maximum.reduceat(ts, starts)[kept] if len(kept) else ts[:0]
    index = np.asarray(packs.message, dtype=np.intp)
    return PacksChecked(
        message=index[message[keep]],
        ts_ns=ts[keep],
        device=device[message[keep]],
        sensor=sensor[keep],
        value=value[keep],
        up_message=index[kept],
        up_ts_ns=latest,
        up_device=device[kept],
        up_received_ns=np.asarray(packs.received_ns, dtype=np.int64)[kept],
        fallback=index[~good].tolist(),
    )


def _registry_checks(
    validator: Validator, packs: Packs
) -> tuple[
    NDArray[np.int32],
    NDArray[np.bool_],
    NDArray[np.int16],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    """The registry's answers: devices once per message, sensors once per slot.

    Per message its device code (-1: refused) and whether it passed so far; per slot its
    sensor's code and range.
    """
    count = len(packs.message)
    device = np.full(count, -1, dtype=np.int32)
    slot_code = np.full(len(packs.slot_sensor), -1, dtype=np.int16)
    slot_low = np.zeros(len(packs.slot_sensor))
    slot_high = np.zeros(len(packs.slot_sensor))
    good = np.ones(count, dtype=bool)
    known: dict[tuple[str, str, str | None], int] = {}
    first_slot = 0
    for m in range(count):
        key = (packs.device[m], packs.pilot[m], packs.claimed[m])
        code = known.get(key)
        if code is None:
            frame = Frame(device=key[0], pilot=key[1], ts_ns=None, values={}, claimed_device=key[2])
            found = validator._resolve(frame, [])  # the same resolution, once
            code = known[key] = -1 if found is None else found.code
        device[m] = code
        slots = range(first_slot, first_slot + packs.slots[m])
        first_slot = slots.stop
        if code < 0:
            good[m] = False
            continue
        specs = validator._specs[code]
        for s in slots:
            spec = specs.get(packs.slot_sensor[s])
            unit = packs.slot_unit[s]
            if spec is None or (unit is not None and unit != spec[3]):
                good[m] = False
                break
            slot_code[s], slot_low[s], slot_high[s] = spec[0], spec[1], spec[2]
    return device, good, slot_code, slot_low, slot_high


def _repeated(
    message: NDArray[np.intp], ts: NDArray[np.int64], sensor: NDArray[np.int16]
) -> NDArray[np.intp]:
    """The messages that give one sensor twice at one instant (`duplicate_record` by record)."""
    order = np.lexsort((sensor, ts, message))
    m, t, s = message[order], ts[order], sensor[order]
    same = (m[1:] == m[:-1]) & (t[1:] == t[:-1]) & (s[1:] == s[:-1])
    return np.unique(m[1:][same])

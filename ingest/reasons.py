"""Why a message or reading was refused: one code per cause, shared by decoders and validation.

The codes are stable names: they appear in the quarantine, in logs and in metrics, so a new
cause gets a new code and an existing code never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """A cause of refusal."""

    MALFORMED_JSON = "malformed_json"
    MALFORMED_STRUCTURE = "malformed_structure"
    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_MISMATCH = "device_mismatch"
    WRONG_PILOT = "wrong_pilot"
    UNKNOWN_SENSOR = "unknown_sensor"
    UNIT_MISMATCH = "unit_mismatch"
    UNSUPPORTED_VALUE = "unsupported_value"
    DUPLICATE_RECORD = "duplicate_record"
    SIMULATED = "simulated"
    MISSING_DEV_EUI = "missing_dev_eui"
    NON_NUMERIC = "non_numeric"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    STORE_REJECTED = "store_rejected"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused message, frame or reading; `sensor` is set when only that reading was.

    `records` is how many of the message's readings the refusal covers (SenML records, plain
    JSON readings, fields of a LoRaWAN codec's output): 1 for one reading, the frame's or the
    message's count when a whole frame or message is refused, 1 as well when the message could
    not be read far enough to count them (not JSON, oversized, a bad topic). Stored readings
    plus the `records` of the refusals are the readings a message sent: nothing is dropped
    without a count.
    """

    reason: Reason
    detail: str
    sensor: str | None = None
    records: int = 1

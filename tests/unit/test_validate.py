"""Validation against the registry, and decode + validate together on hostile input."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ingest.decoders.base
import ingest.decoders.chirpstack
import ingest.decoders.lorawan
import ingest.decoders.plain
import ingest.decoders.senml
import ingest.decoders.tts
import ingest.process
import ingest.validate
from core.settings import Settings
from core.uplinks import NO_FCNT, NO_SF
from ingest.decoders import FORMATS, Frame, Router
from ingest.decoders.plain import decode
from ingest.process import columns, process
from ingest.reasons import Reason, Rejection
from ingest.validate import Checked, Validator

from .helpers import registry_with_lns_id, shipped_registry

TS_MS = 1_704_110_400_000  # 2024-01-01T12:00:00Z
NOW_NS = TS_MS * 1_000_000  # when the broker handed us the message
MAX_FUTURE_S = 600
MAX_AGE_DAYS = 3650
MAX_PAYLOAD_BYTES = 4096
TOPIC = "pilots/santa-fe/sf-rlv-01/up"
SENML_TOPIC = "pilots/santa-fe/sf-rlv-01/senml"
SF_RLV_01_EUI = "a840410001010101"  # core/registry.toml
SF_RLV_02_EUI = "a840410001010201"
CS_TOPIC = f"application/app-1/device/{SF_RLV_01_EUI}/event/up"
TTS_TOPIC = "v3/pilots@utn/devices/sf-rlv-01/up"


def _validator() -> Validator:
    return Validator(shipped_registry(), max_future_s=MAX_FUTURE_S, max_age_days=MAX_AGE_DAYS)


def _pipeline(topic: str, document: object) -> Checked:
    """Decode then validate, as ingest does; decoder rejections come first."""
    payload = document if isinstance(document, bytes) else orjson.dumps(document)
    decoded = decode(topic, payload)
    return _validator().check(decoded.frames, NOW_NS, Checked(rejections=list(decoded.rejections)))


def _process(topic: str, document: object, validator: Validator | None = None) -> Checked:
    """The whole of ingest's per-message work: route, decode, validate."""
    payload = document if isinstance(document, bytes) else orjson.dumps(document)
    return process(
        Router(Settings().ingest_routes),
        validator or _validator(),
        topic,
        payload,
        NOW_NS,
        max_payload_bytes=MAX_PAYLOAD_BYTES,
    )


def _accepted(checked: Checked) -> dict[tuple[str, str, int], float]:
    """Accepted readings by (device id, sensor id, ts_ns)."""
    reg = shipped_registry()
    columns_ = (checked.ts_ns, checked.device, checked.sensor, checked.value)
    assert len({len(c) for c in columns_}) == 1, "reading columns of unequal length"
    return {
        (reg.device_list[d].id, reg.sensor_list[s].id, t): v
        for t, d, s, v in zip(*columns_, strict=True)
    }


def _uplinks(checked: Checked) -> list[tuple[str, int, int, float, float, int, str]]:
    """Accepted uplinks as (device id, ts_ns, fcnt, rssi, snr, sf, gateway)."""
    reg = shipped_registry()
    return [
        (reg.device_list[d].id, t, f, r, s, sf, g)
        for t, d, f, r, s, sf, g in zip(
            checked.up_ts_ns,
            checked.up_device,
            checked.up_fcnt,
            checked.up_rssi,
            checked.up_snr,
            checked.up_sf,
            checked.up_gateway,
            strict=True,
        )
    ]


def _frame(values: dict[str, object], **fields: object) -> Frame:
    base: dict[str, object] = {"device": "sf-rlv-01", "pilot": "santa-fe", "ts_ns": NOW_NS}
    return Frame(values=values, **(base | fields))  # type: ignore[arg-type]


def _no_radio(row: tuple[str, int, int, float, float, int, str]) -> bool:
    _, _, _, rssi, snr, sf, gateway = row
    return math.isnan(rssi) and math.isnan(snr) and sf == NO_SF and gateway == ""


# --- good messages -------------------------------------------------------------------------------


def test_a_good_message_becomes_readings_and_one_uplink_with_seq_as_its_frame_counter() -> None:
    checked = _pipeline(
        TOPIC,
        {
            "ts": TS_MS,
            "seq": 77,
            "device": "sf-rlv-01",
            "readings": {"level": 3.612, "water_temp": 24.5},
            "battery_v": 3.91,
        },
    )
    assert checked.rejections == []
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.612,
        ("sf-rlv-01", "water_temp", NOW_NS): 24.5,
        ("sf-rlv-01", "battery_v", NOW_NS): 3.91,
    }
    [uplink] = _uplinks(checked)
    assert uplink[:3] == ("sf-rlv-01", NOW_NS, 77)
    assert _no_radio(uplink)  # plain JSON carries no radio metadata
    assert checked.readings == 3


def test_without_seq_the_uplink_has_no_frame_counter() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "readings": {"level": 4}})
    assert checked.rejections == []
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 4.0}  # integers are numbers
    assert [u[:3] for u in _uplinks(checked)] == [("sf-rlv-01", NOW_NS, NO_FCNT)]


def test_an_array_payload_with_rfc3339_times() -> None:
    checked = _pipeline(
        "pilots/resistencia/rs-wq-01/up",
        [
            {"ts": "2024-01-01T08:50:00-03:00", "seq": 1, "readings": {"ph": 7.4}},
            {"ts": "2024-01-01T12:00:00Z", "seq": 2, "readings": {"ph": 7.5}},
        ],
    )
    assert checked.rejections == []
    ten_min_ns = 600 * 1_000_000_000
    assert _accepted(checked) == {
        ("rs-wq-01", "ph", NOW_NS - ten_min_ns): 7.4,
        ("rs-wq-01", "ph", NOW_NS): 7.5,
    }
    assert [u[:3] for u in _uplinks(checked)] == [
        ("rs-wq-01", NOW_NS - ten_min_ns, 1),
        ("rs-wq-01", NOW_NS, 2),
    ]


def test_a_partly_good_message_keeps_its_good_readings() -> None:
    checked = _pipeline(
        TOPIC,
        {
            "ts": TS_MS,
            "seq": 3,
            "battery_v": 3.8,
            "readings": {"level": 3.5, "pm25": 12.0, "water_temp": "warm", "salinity": 1.0},
        },
    )
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.5,
        ("sf-rlv-01", "battery_v", NOW_NS): 3.8,
    }
    assert [u[:3] for u in _uplinks(checked)] == [("sf-rlv-01", NOW_NS, 3)]
    assert sorted((r.reason, r.sensor) for r in checked.rejections) == sorted(
        [
            (Reason.UNKNOWN_SENSOR, "pm25"),
            (Reason.NON_NUMERIC, "water_temp"),
            (Reason.UNKNOWN_SENSOR, "salinity"),
        ]
    )


def test_fcnt_is_no_longer_a_sensor() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "seq": 5, "readings": {"fcnt": 5, "level": 2.0}})
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 2.0}
    assert [(r.reason, r.sensor) for r in checked.rejections] == [(Reason.UNKNOWN_SENSOR, "fcnt")]


def test_one_bad_frame_does_not_refuse_the_others() -> None:
    checked = _pipeline(
        TOPIC,
        [
            {"ts": TS_MS, "readings": {"level": 3.0}},
            {"ts": TS_MS + 3_600_000, "readings": {"level": 3.1}},
            {"ts": TS_MS - 600_000, "device": "sf-rlv-02", "readings": {"level": 3.2}},
        ],
    )
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.0}
    assert [u[:2] for u in _uplinks(checked)] == [("sf-rlv-01", NOW_NS)]
    assert [r.reason for r in checked.rejections] == [
        Reason.FUTURE_TIMESTAMP,
        Reason.DEVICE_MISMATCH,
    ]


def test_a_frame_with_every_reading_refused_still_records_its_uplink() -> None:
    # The device did transmit: packet delivery ratio counts the frame even if no value was kept.
    checked = _pipeline(TOPIC, {"ts": TS_MS, "seq": 9, "readings": {"level": 99.0}})
    assert _accepted(checked) == {}
    assert [u[:3] for u in _uplinks(checked)] == [("sf-rlv-01", NOW_NS, 9)]
    assert [(r.reason, r.sensor) for r in checked.rejections] == [(Reason.OUT_OF_RANGE, "level")]


def test_check_appends_to_what_it_is_given() -> None:
    validator = _validator()
    out = validator.check([_frame({"level": 1.0})], NOW_NS)
    validator.check([_frame({"level": 2.0}, ts_ns=NOW_NS - 1)], NOW_NS, out)
    assert _accepted(out) == {
        ("sf-rlv-01", "level", NOW_NS): 1.0,
        ("sf-rlv-01", "level", NOW_NS - 1): 2.0,
    }
    assert len(out.up_ts_ns) == 2


# --- each refusal ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One message that must be refused with exactly one reason (`kept` readings stored)."""

    reason: Reason
    topic: str
    message: object
    validator: Callable[[], Validator] = _validator
    kept: int = 0


class _BrokenValidator(Validator):
    """Stands for a bug: process() must turn it into a refusal of this message only."""

    def check(self, frames: list[Frame], received_ns: int, out: Checked | None = None) -> Checked:
        raise RuntimeError("a bug in validation")


def _broken() -> Validator:
    return _BrokenValidator(shipped_registry(), max_future_s=1, max_age_days=1)


def _without_eui() -> Validator:
    """The shipped fleet, but sf-rlv-02 has no EUI and is `setubal-gauge` at the network server."""
    registry = registry_with_lns_id("santa-fe", "sf-rlv-02", "setubal-gauge")
    return Validator(registry, max_future_s=MAX_FUTURE_S, max_age_days=MAX_AGE_DAYS)


_CS_EVENT = {
    "time": "2024-01-01T12:00:00Z",
    "deviceInfo": {"deviceName": "river gauge", "devEui": SF_RLV_01_EUI},
    "fCnt": 1,
    "object": {"level": 3.0},
}
_TTS_UPLINK = {
    "end_device_ids": {"device_id": "sf-rlv-01", "dev_eui": SF_RLV_01_EUI.upper()},
    "uplink_message": {"f_cnt": 1, "decoded_payload": {"level": 3.0}},
}

_LEVEL = {"ts": TS_MS, "readings": {"level": 1}}

#: One message per refusal cause, and each way a format can end in it.
REFUSALS: list[Case] = [
    Case(Reason.MALFORMED_JSON, TOPIC, b'{"ts": 1704110400000, "readings": {"level": 3.2}'),
    Case(Reason.MALFORMED_JSON, CS_TOPIC, b'{"object": {"level": 3.0}'),
    Case(Reason.MALFORMED_STRUCTURE, TOPIC, {"ts": TS_MS, "readings": {"level": 1}, "extra": 1}),
    Case(Reason.MALFORMED_STRUCTURE, SENML_TOPIC, {"n": "level", "v": 1.0}),
    Case(Reason.MALFORMED_STRUCTURE, CS_TOPIC, {**_CS_EVENT, "object": None}),
    Case(Reason.MALFORMED_STRUCTURE, TTS_TOPIC, {"end_device_ids": {"device_id": "sf-rlv-01"}}),
    Case(Reason.OVERSIZED, TOPIC, b" " * (MAX_PAYLOAD_BYTES + 1)),
    Case(Reason.BAD_TOPIC, "pilots/santa-fe/sf-rlv-01", _LEVEL),
    Case(Reason.BAD_TOPIC, "pilots/santa-fe/sf-rlv-01/down", _LEVEL),
    Case(Reason.BAD_TOPIC, "pilots//sf-rlv-01/up", _LEVEL),
    Case(
        Reason.UNKNOWN_DEVICE,
        "pilots/santa-fe/sf-rlv-99/up",
        _LEVEL,
    ),
    Case(
        Reason.UNKNOWN_DEVICE,
        "application/app-1/device/0101010101010101/event/up",
        {**_CS_EVENT, "deviceInfo": {"devEui": "0101010101010101"}},
    ),
    Case(
        Reason.DEVICE_MISMATCH,
        TOPIC,
        {**_LEVEL, "device": "sf-rlv-02"},
    ),
    Case(Reason.DEVICE_MISMATCH, SENML_TOPIC, [{"bn": "sf-rlv-02/", "n": "level", "v": 1.0}]),
    Case(
        Reason.DEVICE_MISMATCH,
        CS_TOPIC,
        {**_CS_EVENT, "deviceInfo": {"devEui": SF_RLV_02_EUI}},
    ),
    Case(
        Reason.DEVICE_MISMATCH,
        "v3/pilots@utn/devices/sf-rlv-02/up",
        {**_TTS_UPLINK, "end_device_ids": {"device_id": "sf-rlv-01"}},
    ),
    Case(  # the EUI is sf-rlv-01's, the network server's device id is sf-rlv-02
        Reason.DEVICE_MISMATCH,
        "v3/pilots@utn/devices/sf-rlv-02/up",
        {**_TTS_UPLINK, "end_device_ids": {"dev_eui": SF_RLV_01_EUI}},
    ),
    Case(
        Reason.WRONG_PILOT,
        "pilots/resistencia/sf-rlv-01/up",
        _LEVEL,
    ),
    Case(Reason.UNKNOWN_SENSOR, TOPIC, {"ts": TS_MS, "readings": {"pm25": 12.0}}),
    Case(Reason.UNIT_MISMATCH, SENML_TOPIC, [{"n": "level", "u": "Cel", "v": 3.0}]),
    Case(  # a device the registry knows only by its network-server id has no way in
        Reason.UNKNOWN_DEVICE,
        "v3/pilots@utn/devices/setubal-gauge/up",
        {**_TTS_UPLINK, "end_device_ids": {"device_id": "setubal-gauge", "dev_eui": "0" * 16}},
        _without_eui,
    ),
    Case(Reason.UNSUPPORTED_VALUE, SENML_TOPIC, [{"n": "level", "vs": "high"}]),
    Case(
        Reason.DUPLICATE_RECORD,
        TOPIC,
        {"ts": TS_MS, "readings": {"battery_v": 3.9}, "battery_v": 3.8},
        kept=1,
    ),
    Case(Reason.DUPLICATE_RECORD, TOPIC, [_LEVEL, {**_LEVEL, "readings": {"level": 2}}], kept=1),
    Case(
        Reason.DUPLICATE_RECORD,
        SENML_TOPIC,
        [{"n": "level", "v": 1.0}, {"n": "level", "u": "m", "v": 1.5}],
        kept=1,
    ),
    Case(Reason.SIMULATED, TTS_TOPIC, {**_TTS_UPLINK, "simulated": True}),
    Case(
        Reason.MISSING_DEV_EUI,
        TTS_TOPIC,
        {**_TTS_UPLINK, "end_device_ids": {"device_id": "sf-rlv-01"}},
    ),
    Case(Reason.NON_NUMERIC, TOPIC, {"ts": TS_MS, "readings": {"level": "3.2"}}),
    Case(Reason.NON_NUMERIC, CS_TOPIC, {**_CS_EVENT, "object": {"level": "3.2"}}),
    # JSON cannot carry NaN or infinity, but a SenML base value plus a value can overflow.
    Case(Reason.NON_FINITE, SENML_TOPIC, [{"bv": 1e308, "n": "level", "v": 1e308}]),
    Case(Reason.OUT_OF_RANGE, TOPIC, {"ts": TS_MS, "readings": {"level": 15.5}}),
    Case(Reason.FUTURE_TIMESTAMP, TOPIC, {"ts": TS_MS + 601_000, "readings": {"level": 1}}),
    Case(Reason.FUTURE_TIMESTAMP, SENML_TOPIC, [{"n": "level", "t": 601, "v": 1.0}]),
    Case(
        Reason.TOO_OLD,
        TOPIC,
        {"ts": TS_MS - MAX_AGE_DAYS * 86_400_000 - 1, "readings": {"level": 1}},
    ),
    Case(Reason.TOO_OLD, CS_TOPIC, {**_CS_EVENT, "time": "2010-01-01T00:00:00Z"}),
    Case(Reason.INTERNAL_ERROR, TOPIC, _LEVEL, _broken),
]

#: The modules that turn a message into readings or refusals (the store's refusals are elsewhere).
MODULES = (
    ingest.decoders.base,
    ingest.decoders.plain,
    ingest.decoders.senml,
    ingest.decoders.lorawan,
    ingest.decoders.chirpstack,
    ingest.decoders.tts,
    ingest.validate,
    ingest.process,
)


def _refusals_in_source() -> set[Reason]:
    names: set[str] = set()
    for module in MODULES:
        names.update(re.findall(r"Reason\.([A-Z_]+)", inspect.getsource(module)))
    return {Reason[name] for name in names}


def test_every_refusal_cause_in_the_code_has_a_case_here() -> None:
    assert _refusals_in_source() == {case.reason for case in REFUSALS}


def test_device_mismatch_is_exercised_for_every_format() -> None:
    router = Router(Settings().ingest_routes)
    decoders = {router.decoder_for(c.topic) for c in REFUSALS if c.reason is Reason.DEVICE_MISMATCH}
    assert decoders == set(FORMATS.values())


@pytest.mark.parametrize(
    "case", REFUSALS, ids=[f"{c.reason}-{c.topic.split('/')[0]}" for c in REFUSALS]
)
def test_each_refusal(case: Case) -> None:
    checked = _process(case.topic, case.message, case.validator())
    assert checked.readings == case.kept
    assert [r.reason for r in checked.rejections] == [case.reason]
    [rejection] = checked.rejections
    assert rejection.detail
    if rejection.sensor is None:  # the whole message or frame: no uplink either
        assert checked.up_ts_ns == []


@pytest.mark.parametrize("value", ["3.2", True, False, None, [1.0], {"v": 1.0}, ""])
def test_non_numeric_values_including_booleans(value: object) -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "readings": {"level": value, "water_temp": 20.0}})
    assert _accepted(checked) == {("sf-rlv-01", "water_temp", NOW_NS): 20.0}
    assert [(r.reason, r.sensor) for r in checked.rejections] == [(Reason.NON_NUMERIC, "level")]


def test_a_boolean_battery_is_not_a_number() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "battery_v": True, "readings": {"level": 3.0}})
    assert [(r.reason, r.sensor) for r in checked.rejections] == [(Reason.NON_NUMERIC, "battery_v")]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_values(value: float) -> None:
    checked = _validator().check([_frame({"level": value, "water_temp": 21.0})], NOW_NS)
    assert _accepted(checked) == {("sf-rlv-01", "water_temp", NOW_NS): 21.0}
    assert [(r.reason, r.sensor) for r in checked.rejections] == [(Reason.NON_FINITE, "level")]


@pytest.mark.parametrize(
    ("sensor", "value", "inside"),
    [
        ("level", 15.0, True),
        ("level", -1.0, True),
        ("level", 15.000001, False),
        ("level", -1.01, False),
        ("battery_v", 5.01, False),
        ("battery_v", 0.0, True),
        ("water_temp", -0.1, False),
    ],
)
def test_valid_ranges_are_inclusive(sensor: str, value: float, inside: bool) -> None:
    checked = _validator().check([_frame({sensor: value})], NOW_NS)
    if inside:
        assert checked.rejections == []
        assert _accepted(checked) == {("sf-rlv-01", sensor, NOW_NS): value}
    else:
        assert checked.readings == 0
        [rejection] = checked.rejections
        assert (rejection.reason, rejection.sensor) == (Reason.OUT_OF_RANGE, sensor)
        assert repr(value) in rejection.detail


def test_units_are_compared_with_the_registry_only_when_the_format_states_them() -> None:
    frame = _frame({"level": 2.0, "water_temp": 20.0, "battery_v": 3.9})
    frame.units = {"level": "m", "water_temp": "°F"}  # battery_v: no unit stated
    checked = _validator().check([frame], NOW_NS)
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 2.0,
        ("sf-rlv-01", "battery_v", NOW_NS): 3.9,
    }
    [rejection] = checked.rejections
    assert (rejection.reason, rejection.sensor) == (Reason.UNIT_MISMATCH, "water_temp")
    assert "°F" in rejection.detail
    assert "°C" in rejection.detail


def test_the_largest_seq_is_the_frame_counter_as_sent() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "seq": 2**32 - 1, "readings": {"level": 3.0}})
    assert checked.up_fcnt == [2**32 - 1]
    _, uplinks, _ = columns([(checked, NOW_NS)])
    assert uplinks.fcnt.tolist() == [2**32 - 1]


@pytest.mark.parametrize(
    ("offset_ns", "reason"),
    [
        (MAX_FUTURE_S * 10**9, None),
        (MAX_FUTURE_S * 10**9 + 1, Reason.FUTURE_TIMESTAMP),
        (-MAX_AGE_DAYS * 86_400 * 10**9, None),
        (-MAX_AGE_DAYS * 86_400 * 10**9 - 1, Reason.TOO_OLD),
    ],
)
def test_time_limits(offset_ns: int, reason: Reason | None) -> None:
    checked = _validator().check([_frame({"level": 2.0}, ts_ns=NOW_NS + offset_ns)], NOW_NS)
    if reason is None:
        assert checked.rejections == []
        assert checked.readings == 1
        assert checked.up_ts_ns == [NOW_NS + offset_ns]
    else:
        assert checked.readings == 0
        assert checked.up_ts_ns == []
        assert [r.reason for r in checked.rejections] == [reason]


def test_a_frame_without_its_own_time_takes_the_receive_time_plus_its_offset() -> None:
    frames = [
        _frame({"level": 1.0}, ts_ns=None),
        _frame({"level": 2.0}, ts_ns=None, relative_ns=-30 * 10**9),
    ]
    checked = _validator().check(frames, NOW_NS)
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 1.0,
        ("sf-rlv-01", "level", NOW_NS - 30 * 10**9): 2.0,
    }


def test_a_frame_refusal_names_no_sensor_and_refuses_every_reading() -> None:
    frame = _frame({"level": 2.0, "water_temp": 20.0}, pilot="san-nicolas", seq=5)
    checked = _validator().check([frame], NOW_NS)
    assert checked.readings == 0
    assert checked.up_ts_ns == []  # no uplink either: the frame is not this pilot's
    detail = checked.rejections[0].detail
    assert checked.rejections == [Rejection(Reason.WRONG_PILOT, detail, None, records=2)]
    assert "santa-fe" in checked.rejections[0].detail


def test_accepted_columns_become_batches_with_the_store_dtypes() -> None:
    first = _pipeline(TOPIC, {"ts": TS_MS, "seq": 1, "readings": {"level": 3}})
    second = _pipeline(TOPIC, {"ts": TS_MS + 1, "readings": {"level": 4, "water_temp": 20}})
    readings, uplinks, _ = columns([(first, NOW_NS), (second, NOW_NS + 5)])
    assert (
        readings.ts_ns.dtype,
        readings.device.dtype,
        readings.sensor.dtype,
        readings.value.dtype,
    ) == (np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.int16), np.dtype(np.float64))
    assert readings.value.tolist() == [3.0, 4.0, 20.0]
    assert uplinks.fcnt.tolist() == [1, NO_FCNT]
    assert uplinks.received_ns.tolist() == [NOW_NS, NOW_NS + 5]  # each message's own
    assert uplinks.ts_ns.tolist() == [NOW_NS, NOW_NS + 1_000_000]
    assert uplinks.latency_ns.tolist() == [0, 5 - 1_000_000]
    assert np.isnan(uplinks.rssi).all()
    assert uplinks.sf.tolist() == [NO_SF, NO_SF]


# --- fuzz: decode + validate never raise and account for everything ---------------------------

REG_DEVICES = ["sf-rlv-01", "sf-wx-01", "sn-aq-02", "rs-wq-03"]
REG_SENSORS = ["level", "water_temp", "temperature", "pm25", "ph", "battery_v", "fcnt", "nope"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def weighted(*choices: tuple[int, st.SearchStrategy[object]]) -> st.SearchStrategy[object]:
    """Draw from one of the strategies, each as often as its weight says."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


plausible_ts = st.one_of(
    st.integers(TS_MS - 5 * 86_400_000, TS_MS + 86_400_000),
    st.integers(0, 2**53 - 1),
    st.floats(TS_MS - 86_400_000, TS_MS + 86_400_000),
    st.sampled_from(["2024-01-01T09:00:00-03:00", "2024-01-01T12:00:00Z", "2024-01-01"]),
)
plausible_readings = st.dictionaries(
    st.sampled_from(REG_SENSORS), st.floats(-5, 30) | st.integers(-5, 30), min_size=1, max_size=5
)
# Mostly near-valid frames (so that validation is reached), sometimes anything at all.
frame_like = weighted(
    (
        4,
        st.fixed_dictionaries(
            {
                "ts": weighted((4, plausible_ts), (1, json_values)),
                "readings": weighted(
                    (4, plausible_readings),
                    (1, st.dictionaries(st.text(max_size=70), json_values, max_size=4)),
                    (1, json_values),
                ),
            },
            optional={
                "seq": weighted((3, st.integers(-2, 2**32 + 1)), (1, json_values)),
                "battery_v": weighted((3, st.floats(0, 6)), (1, json_values)),
                "device": weighted((3, st.sampled_from(REG_DEVICES)), (1, json_values)),
                "extra": json_values,
            },
        ),
    ),
    (1, st.dictionaries(st.sampled_from(["ts", "readings", "seq", "device"]), json_values)),
)
documents = weighted((4, frame_like), (2, st.lists(frame_like, max_size=4)), (1, json_values))
registered_topics = st.sampled_from(
    [f"pilots/{d.pilot}/{d.id}/up" for d in shipped_registry().device_list]
)
other_topics = st.builds(
    "pilots/{}/{}/up".format,
    st.sampled_from(["santa-fe", "san-nicolas", "resistencia", "x"]),
    st.sampled_from([*REG_DEVICES, "zz-99"]),
)
topics = weighted((6, registered_topics), (2, other_topics), (1, st.text(max_size=40)))


def _assert_everything_accounted_for(topic: str, payload: bytes) -> None:
    decoded = decode(topic, payload)
    for rejection in decoded.rejections:
        assert isinstance(rejection.reason, Reason)
        assert rejection.detail
    if any(r.reason in (Reason.BAD_TOPIC, Reason.MALFORMED_JSON) for r in decoded.rejections):
        assert decoded.frames == []
        assert len(decoded.rejections) == 1
    else:  # the message was read: each item became either a frame or a rejection
        document = orjson.loads(payload)
        items = document if isinstance(document, list) else [document]
        whole = [r for r in decoded.rejections if r.sensor is None]
        assert len(decoded.frames) + len(whole) == max(len(items), 1)

    validator = _validator()
    accepted = 0
    refused = 0
    for frame in decoded.frames:
        checked = validator.check([frame], NOW_NS)
        for rejection in checked.rejections:
            assert isinstance(rejection.reason, Reason)
            assert rejection.detail
        frame_refused = [r for r in checked.rejections if r.sensor is None]
        if frame_refused:  # refused whole: one reason, nothing kept, no uplink
            assert len(checked.rejections) == 1
            assert checked.readings == 0
            assert checked.up_ts_ns == []
        else:  # each reading on its own: kept or refused with its sensor named
            assert checked.readings + len(checked.rejections) == len(frame.values)
            assert all(math.isfinite(v) for v in checked.value)
            assert checked.up_fcnt == [NO_FCNT if frame.seq is None else frame.seq]
        accepted += checked.readings
        refused += len(checked.rejections)
    # Together, a second reading of a sensor at an instant an earlier item gave it is refused.
    together = validator.check(decoded.frames, NOW_NS)
    repeats = sum(r.reason is Reason.DUPLICATE_RECORD for r in together.rejections)
    assert (together.readings + repeats, len(together.rejections) - repeats) == (accepted, refused)


def _is_json_null(payload: bytes) -> bool:
    try:
        return orjson.loads(payload) is None
    except orjson.JSONDecodeError:
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topics, documents)
def test_fuzz_json_documents(topic: str, document: object) -> None:
    _assert_everything_accounted_for(topic, orjson.dumps(document))


@settings(max_examples=200, deadline=None)
@given(topics, st.binary(max_size=200))
def test_fuzz_random_bytes(topic: str, payload: bytes) -> None:
    assume(not _is_json_null(payload))
    _assert_everything_accounted_for(topic, payload)

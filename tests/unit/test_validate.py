"""Validation against the registry, and decode + validate together on hostile input."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.decoders.plain
import ingest.validate
from ingest.decoders import Frame
from ingest.decoders.plain import decode
from ingest.reasons import Reason, Rejection
from ingest.validate import Checked, Validator

from .helpers import shipped_registry

TS_MS = 1_704_110_400_000  # 2024-01-01T12:00:00Z
NOW_NS = TS_MS * 1_000_000  # when the broker handed us the message
MAX_FUTURE_S = 600
MAX_AGE_DAYS = 3650
TOPIC = "pilots/santa-fe/sf-rlv-01/up"


def _validator() -> Validator:
    return Validator(shipped_registry(), max_future_s=MAX_FUTURE_S, max_age_days=MAX_AGE_DAYS)


def _pipeline(topic: str, document: object) -> Checked:
    """Decode then validate, as ingest does; decoder rejections come first."""
    payload = document if isinstance(document, bytes) else orjson.dumps(document)
    decoded = decode(topic, payload)
    checked = _validator().check(decoded.frames, NOW_NS)
    return Checked(checked.readings, decoded.rejections + checked.rejections)


def _accepted(checked: Checked) -> dict[tuple[str, str, int], float]:
    """Accepted readings by (device id, sensor id, ts_ns)."""
    reg = shipped_registry()
    r = checked.readings
    return {
        (reg.device_list[d].id, reg.sensor_list[s].id, t): v
        for t, d, s, v in zip(
            r.ts_ns.tolist(), r.device.tolist(), r.sensor.tolist(), r.value.tolist(), strict=True
        )
    }


def _frame(values: dict[str, object], **fields: object) -> Frame:
    base: dict[str, object] = {"device": "sf-rlv-01", "pilot": "santa-fe", "ts_ns": NOW_NS}
    return Frame(values=values, **(base | fields))  # type: ignore[arg-type]


# --- good messages -------------------------------------------------------------------------------


def test_a_good_message_becomes_readings_with_seq_as_fcnt_and_battery_kept() -> None:
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
        ("sf-rlv-01", "fcnt", NOW_NS): 77.0,
    }


def test_integers_are_numbers() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "readings": {"level": 4}})
    assert checked.rejections == []
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 4.0}


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
        ("rs-wq-01", "fcnt", NOW_NS - ten_min_ns): 1.0,
        ("rs-wq-01", "ph", NOW_NS): 7.5,
        ("rs-wq-01", "fcnt", NOW_NS): 2.0,
    }


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
        ("sf-rlv-01", "fcnt", NOW_NS): 3.0,
    }
    assert sorted((r.reason, r.sensor) for r in checked.rejections) == sorted(
        [
            (Reason.UNKNOWN_SENSOR, "pm25"),
            (Reason.NON_NUMERIC, "water_temp"),
            (Reason.UNKNOWN_SENSOR, "salinity"),
        ]
    )


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
    assert [r.reason for r in checked.rejections] == [
        Reason.FUTURE_TIMESTAMP,
        Reason.DEVICE_MISMATCH,
    ]


# --- each refusal ------------------------------------------------------------------------------

#: One message per refusal cause that decoding and validation can produce.
REFUSALS: dict[Reason, tuple[str, object]] = {
    Reason.MALFORMED_JSON: (TOPIC, b'{"ts": 1704110400000, "readings": {"level": 3.2}'),
    Reason.MALFORMED_STRUCTURE: (TOPIC, {"ts": TS_MS, "readings": {"level": 1}, "extra": 1}),
    Reason.BAD_TOPIC: ("pilots/santa-fe/sf-rlv-01", {"ts": TS_MS, "readings": {"level": 1}}),
    Reason.UNKNOWN_DEVICE: (
        "pilots/santa-fe/sf-rlv-99/up",
        {"ts": TS_MS, "readings": {"level": 1}},
    ),
    Reason.DEVICE_MISMATCH: (TOPIC, {"ts": TS_MS, "device": "sf-rlv-02", "readings": {"level": 1}}),
    Reason.WRONG_PILOT: (
        "pilots/resistencia/sf-rlv-01/up",
        {"ts": TS_MS, "readings": {"level": 1}},
    ),
    Reason.UNKNOWN_SENSOR: (TOPIC, {"ts": TS_MS, "readings": {"pm25": 12.0}}),
    Reason.NON_NUMERIC: (TOPIC, {"ts": TS_MS, "readings": {"level": "3.2"}}),
    # JSON cannot carry NaN or infinity (the decoder refuses them as malformed JSON), so a
    # non-finite value can only come from another decoder: give the validator a frame directly.
    Reason.NON_FINITE: ("frame", _frame({"level": math.inf})),
    Reason.OUT_OF_RANGE: (TOPIC, {"ts": TS_MS, "readings": {"level": 15.5}}),
    Reason.FUTURE_TIMESTAMP: (TOPIC, {"ts": TS_MS + 601_000, "readings": {"level": 1}}),
    Reason.TOO_OLD: (
        TOPIC,
        {"ts": TS_MS - MAX_AGE_DAYS * 86_400_000 - 1, "readings": {"level": 1}},
    ),
}


def _refusals_in_source() -> set[Reason]:
    names: set[str] = set()
    for module in (ingest.decoders.plain, ingest.validate):
        names.update(re.findall(r"Reason\.([A-Z_]+)", inspect.getsource(module)))
    return {Reason[name] for name in names}


def test_every_refusal_cause_in_the_code_has_a_case_here() -> None:
    assert _refusals_in_source() == set(REFUSALS)


@pytest.mark.parametrize("reason", list(REFUSALS))
def test_each_refusal(reason: Reason) -> None:
    topic, message = REFUSALS[reason]
    if isinstance(message, Frame):
        checked = _validator().check([message], NOW_NS)
    else:
        checked = _pipeline(topic, message)
    assert len(checked.readings) == 0
    assert [r.reason for r in checked.rejections] == [reason]
    assert checked.rejections[0].detail


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
        assert len(checked.readings) == 0
        [rejection] = checked.rejections
        assert (rejection.reason, rejection.sensor) == (Reason.OUT_OF_RANGE, sensor)
        assert repr(value) in rejection.detail


def test_seq_too_large_for_the_frame_counter_never_reaches_it() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "seq": 2**32 - 1, "readings": {"level": 3.0}})
    assert _accepted(checked)[("sf-rlv-01", "fcnt", NOW_NS)] == 2**32 - 1


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
        assert len(checked.readings) == 1
    else:
        assert len(checked.readings) == 0
        assert [r.reason for r in checked.rejections] == [reason]


def test_a_frame_refusal_names_no_sensor_and_refuses_every_reading() -> None:
    frame = _frame({"level": 2.0, "water_temp": 20.0}, pilot="san-nicolas", seq=5)
    checked = _validator().check([frame], NOW_NS)
    assert len(checked.readings) == 0
    assert checked.rejections == [Rejection(Reason.WRONG_PILOT, checked.rejections[0].detail, None)]
    assert "santa-fe" in checked.rejections[0].detail


def test_accepted_readings_have_the_batch_dtypes() -> None:
    checked = _pipeline(TOPIC, {"ts": TS_MS, "readings": {"level": 3}})
    r = checked.readings
    assert (r.ts_ns.dtype, r.device.dtype, r.sensor.dtype, r.value.dtype) == (
        np.int64,
        np.int32,
        np.int16,
        np.float64,
    )


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
        assert len(decoded.frames) + len(decoded.rejections) == max(len(items), 1)

    validator = _validator()
    accepted = 0
    refused = 0
    for frame in decoded.frames:
        checked = validator.check([frame], NOW_NS)
        for rejection in checked.rejections:
            assert isinstance(rejection.reason, Reason)
            assert rejection.detail
        sensors = set(frame.values) | ({"fcnt"} if frame.seq is not None else set())
        frame_refused = [r for r in checked.rejections if r.sensor is None]
        if frame_refused:  # refused whole: one reason, nothing kept
            assert len(checked.rejections) == 1
            assert len(checked.readings) == 0
        else:  # each reading on its own: kept or refused with its sensor named
            assert len(checked.readings) + len(checked.rejections) == len(sensors)
            assert np.isfinite(checked.readings.value).all()
        accepted += len(checked.readings)
        refused += len(checked.rejections)
    together = validator.check(decoded.frames, NOW_NS)
    assert (len(together.readings), len(together.rejections)) == (accepted, refused)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topics, documents)
def test_fuzz_json_documents(topic: str, document: object) -> None:
    _assert_everything_accounted_for(topic, orjson.dumps(document))


@settings(max_examples=200, deadline=None)
@given(topics, st.binary(max_size=200))
def test_fuzz_random_bytes(topic: str, payload: bytes) -> None:
    _assert_everything_accounted_for(topic, payload)

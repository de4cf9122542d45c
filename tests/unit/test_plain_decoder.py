"""The plain JSON device contract: what a device may send and how each mistake is reported."""

from __future__ import annotations

import orjson
import pytest

from core.settings import Settings
from ingest.decoders import FORMATS, Router, senml
from ingest.decoders.plain import decode
from ingest.process import process
from ingest.reasons import Reason
from ingest.validate import Validator

from .helpers import accepted, process_message, shipped_registry

TOPIC = "pilots/santa-fe/sf-rlv-01/up"
TS_MS = 1_704_110_400_000  # 2024-01-01T12:00:00Z


def _json(document: object) -> bytes:
    return orjson.dumps(document)


def _only_rejection(topic: str, payload: bytes) -> tuple[Reason, str]:
    out = decode(topic, payload)
    assert out.frames == []
    assert len(out.rejections) == 1
    rejection = out.rejections[0]
    return rejection.reason, rejection.detail


def test_a_good_message() -> None:
    out = decode(
        TOPIC, _json({"ts": TS_MS, "seq": 7, "readings": {"level": 3.61}, "battery_v": 3.92})
    )
    assert out.rejections == []
    [frame] = out.frames
    assert frame.device == "sf-rlv-01"
    assert frame.pilot == "santa-fe"
    assert frame.ts_ns == TS_MS * 1_000_000
    assert frame.seq == 7
    assert frame.values == {"level": 3.61, "battery_v": 3.92}  # battery_v is kept as a reading
    assert frame.claimed_device is None


def test_the_route_table_sends_device_topics_here() -> None:
    router = Router(Settings().ingest_routes)
    assert FORMATS["plain"] is decode
    assert router.decoder_for(TOPIC) is decode
    assert router.decoder_for("pilots/santa-fe/sf-rlv-01/senml") is senml.decode
    assert router.decoder_for("pilots/santa-fe/sf-rlv-01/down") is None


def test_a_device_topic_that_is_not_routed_is_a_bad_topic() -> None:
    # The decoder reads any pilots/<pilot>/<device>/<x> it is routed; the routes decide which.
    validator = Validator(shipped_registry(), max_future_s=600, max_age_days=3650)
    checked = process(
        Router(Settings().ingest_routes),
        validator,
        "pilots/santa-fe/sf-rlv-01/down",
        _json({"ts": TS_MS, "readings": {"level": 1}}),
        TS_MS * 1_000_000,
        max_payload_bytes=4096,
    )
    assert checked.value == []
    assert checked.up_ts_ns == []
    [rejection] = checked.rejections
    assert rejection.reason is Reason.BAD_TOPIC
    assert "pilots/santa-fe/sf-rlv-01/down" in rejection.detail


def test_rfc3339_timestamps_with_and_without_offset_letter() -> None:
    utc = decode(TOPIC, _json({"ts": "2024-01-01T12:00:00Z", "readings": {"level": 1}}))
    local = decode(TOPIC, _json({"ts": "2024-01-01T09:00:00-03:00", "readings": {"level": 1}}))
    assert utc.frames[0].ts_ns == local.frames[0].ts_ns == TS_MS * 1_000_000


def test_fractional_epoch_milliseconds() -> None:
    out = decode(TOPIC, _json({"ts": TS_MS + 0.5, "readings": {"level": 1}}))
    assert out.frames[0].ts_ns == TS_MS * 1_000_000 + 500_000


def test_an_array_carries_several_frames_and_bad_items_are_reported_by_index() -> None:
    payload = _json(
        [
            {"ts": TS_MS, "readings": {"level": 1.0}},
            {"readings": {"level": 2.0}},  # no ts
            {"ts": TS_MS + 600_000, "seq": 8, "readings": {"level": 3.0}},
            "level=4",
        ]
    )
    out = decode(TOPIC, payload)
    assert [f.values["level"] for f in out.frames] == [1.0, 3.0]
    assert [f.seq for f in out.frames] == [None, 8]
    assert [r.reason for r in out.rejections] == [Reason.MALFORMED_STRUCTURE] * 2
    assert out.rejections[0].detail.startswith("item 1: ")
    assert out.rejections[1].detail.startswith("item 3: ")


def test_an_array_item_refused_whole_counts_the_readings_it_carried() -> None:
    payload = _json([{"readings": {"level": 2.0, "water_temp": 20.0}, "battery_v": 3.9}])
    [rejection] = decode(TOPIC, payload).rejections
    assert rejection.reason is Reason.MALFORMED_STRUCTURE  # no ts
    assert rejection.records == 3


def test_battery_v_both_on_top_and_in_readings_keeps_the_reading_and_refuses_the_other() -> None:
    document = {"ts": TS_MS, "readings": {"level": 3.5, "battery_v": 3.9}, "battery_v": 3.7}
    checked = process_message(document, TOPIC, TS_MS * 1_000_000)
    assert accepted(checked) == {
        ("sf-rlv-01", "level", TS_MS * 1_000_000): 3.5,
        ("sf-rlv-01", "battery_v", TS_MS * 1_000_000): 3.9,
    }
    [rejection] = checked.rejections
    assert (rejection.reason, rejection.sensor) == (Reason.DUPLICATE_RECORD, "battery_v")
    assert "3.7" in rejection.detail


def test_two_items_with_a_reading_at_the_same_time_keep_the_first_and_refuse_the_second() -> None:
    document = [
        {"ts": TS_MS, "readings": {"level": 3.5, "water_temp": 20.0}},
        {"ts": TS_MS, "readings": {"level": 3.75}},  # the same point: stored, it would overwrite
        {"ts": TS_MS + 600_000, "readings": {"level": 3.75}},
    ]
    checked = process_message(document, TOPIC, TS_MS * 1_000_000 + 600_000_000)
    assert accepted(checked) == {
        ("sf-rlv-01", "level", TS_MS * 1_000_000): 3.5,
        ("sf-rlv-01", "water_temp", TS_MS * 1_000_000): 20.0,
        ("sf-rlv-01", "level", (TS_MS + 600_000) * 1_000_000): 3.75,
    }
    [rejection] = checked.rejections
    assert (rejection.reason, rejection.sensor) == (Reason.DUPLICATE_RECORD, "level")
    assert "3.75" in rejection.detail
    assert "3.5" in rejection.detail


def test_device_named_in_the_payload_is_passed_on_for_validation() -> None:
    out = decode(TOPIC, _json({"ts": TS_MS, "device": "sf-rlv-02", "readings": {"level": 1}}))
    assert out.frames[0].claimed_device == "sf-rlv-02"
    assert out.frames[0].device == "sf-rlv-01"


def test_values_are_passed_on_as_sent_for_validation() -> None:
    out = decode(TOPIC, _json({"ts": TS_MS, "readings": {"level": "high", "x": None}}))
    assert out.frames[0].values == {"level": "high", "x": None}


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"level=3.2",
        b"\xff\xfe",
        b'{"ts": NaN, "readings": {}}',
        b"[1,]",
        b'{"readings": {"level": Infinity}, "ts": 1}',
    ],
)
def test_malformed_json(payload: bytes) -> None:
    reason, detail = _only_rejection(TOPIC, payload)
    assert reason is Reason.MALFORMED_JSON
    assert detail


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (b'{"ts": 1704110400000, "readings": {"level": 3.2, "level": 3.4}}', "level"),
        (b'{"ts": 1704110400000, "ts": "2024-01-01T12:00:00Z", "readings": {"level": 3.2}}', "ts"),
        (b'[{"ts": "12:00", "readings": {"a:b": 1, "level": 3.2, "a:b": 2}}]', "a:b"),
        (b'{"ts": 1704110400000, "readings": {"level": 3.2, "lev\\u0065l": 3.4}}', "level"),
    ],
)
def test_a_repeated_name_refuses_the_message_instead_of_losing_a_value(
    payload: bytes, name: str
) -> None:
    reason, detail = _only_rejection(TOPIC, payload)
    assert reason is Reason.MALFORMED_JSON
    assert f"repeats the name {name!r}" in detail


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": "2024-01-01T09:00:00-03:00", "readings": {"level": 3.2}, "device": "sf-rlv-01"}',
        b'{"ts": 1704110400000, "readings": {"level": 3.2, "a:b": 1, "c::": 2}}',
        b'{"ts": 1704110400000, "readings": {"level": 3.2}, "device": "sf\\u003arlv"}',
    ],
)
def test_colons_inside_strings_are_not_taken_for_repeated_names(payload: bytes) -> None:
    out = decode(TOPIC, payload)
    assert [r.reason for r in out.rejections] == []
    assert len(out.frames) == 1


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"ts": TS_MS, "readings": {"level": 1}, "lvl": 2}, "unknown keys ['lvl']"),
        ({"readings": {"level": 1}}, "missing `ts`"),
        ({"ts": None, "readings": {"level": 1}}, "missing `ts`"),
        ({"ts": TS_MS, "readings": [1, 2]}, "`readings` must be an object"),
        ({"ts": TS_MS, "readings": 3.2}, "`readings` must be an object"),
        ({"ts": TS_MS}, "no readings"),
        ({"ts": TS_MS, "readings": {}}, "no readings"),
        ({"ts": TS_MS, "seq": -1, "readings": {"level": 1}}, "`seq`"),
        ({"ts": TS_MS, "seq": 2**32, "readings": {"level": 1}}, "`seq`"),
        ({"ts": TS_MS, "seq": 1.5, "readings": {"level": 1}}, "`seq`"),
        ({"ts": TS_MS, "seq": "7", "readings": {"level": 1}}, "`seq`"),
        ({"ts": TS_MS, "seq": True, "readings": {"level": 1}}, "`seq`"),
        ({"ts": True, "readings": {"level": 1}}, "`ts`"),
        ({"ts": -1, "readings": {"level": 1}}, "out of range"),
        ({"ts": 2**53, "readings": {"level": 1}}, "out of range"),
        ({"ts": -0.5, "readings": {"level": 1}}, "out of range"),
        ({"ts": [TS_MS], "readings": {"level": 1}}, "not array"),
        ({"ts": "2024-01-01T12:00:00", "readings": {"level": 1}}, "no UTC offset"),
        ({"ts": "noon", "readings": {"level": 1}}, "RFC 3339"),
        ({"ts": TS_MS, "device": 5, "readings": {"level": 1}}, "`device` must be a string"),
        ("just a string", "expected an object, got string"),
        (42, "expected an object, got int"),
        (None, "expected an object, got null"),
        ([], "empty array"),
    ],
)
def test_malformed_structure(document: object, words: str) -> None:
    reason, detail = _only_rejection(TOPIC, _json(document))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert words in detail


@pytest.mark.parametrize(
    "topic",
    [
        "pilots/santa-fe/sf-rlv-01",
        "pilot/santa-fe/sf-rlv-01/up",
        "pilots//sf-rlv-01/up",
        "pilots/santa-fe//up",
        "pilots/santa-fe/sf-rlv-01/up/extra",
        "",
    ],
)
def test_bad_topic(topic: str) -> None:
    reason, detail = _only_rejection(topic, _json({"ts": TS_MS, "readings": {"level": 1}}))
    assert reason is Reason.BAD_TOPIC
    assert repr(topic) in detail


def test_bad_topic_is_reported_before_looking_at_the_payload() -> None:
    reason, _ = _only_rejection("nowhere", b"not json")
    assert reason is Reason.BAD_TOPIC

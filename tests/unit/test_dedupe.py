"""Retransmissions: a LoRaWAN frame seen again with a later receive time is dropped, once."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from core.settings import Settings
from ingest.decoders import Router
from ingest.dedupe import FrameCache
from ingest.process import columns, process
from ingest.validate import Checked, Validator, frame_digest

from .helpers import shipped_registry

S = 1_000_000_000
WINDOW_NS = 3600 * S
NOW_NS = 1_704_110_400 * S  # 2024-01-01T12:00:00Z
SF_RLV_01_EUI = "a840410001010101"  # core/registry.toml
SF_RLV_02_EUI = "a840410001010201"


def _cs_topic(eui: str) -> str:
    return f"application/app-1/device/{eui}/event/up"


def _cs_event(
    *,
    eui: str = SF_RLV_01_EUI,
    fcnt: int = 7,
    time: str = "2024-01-01T12:00:00Z",
    level: float = 3.5,
) -> dict[str, Any]:
    """A ChirpStack v4 uplink event of a river gauge (the documented shape, trimmed)."""
    return {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": time,
        "deviceInfo": {"deviceName": "gauge", "devEui": eui, "tenantId": "t", "applicationId": "a"},
        "fPort": 1,
        "data": "qg==",
        "object": {"level": level, "battery_v": 3.9},
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -36, "snr": 10.5}],
        "txInfo": {"frequency": 916800000, "modulation": {"lora": {"spreadingFactor": 9}}},
        "fCnt": fcnt,
    }


def _validator(frames: FrameCache | None) -> Validator:
    return Validator(shipped_registry(), max_future_s=600, max_age_days=3650, frames=frames)


def _send(validator: Validator, topic: str, document: object, received_ns: int) -> Checked:
    return process(
        Router(Settings().ingest_routes),
        validator,
        topic,
        orjson.dumps(document),
        received_ns,
        max_payload_bytes=Settings().ingest_max_payload_bytes,
    )


def _kept(checked: Checked) -> tuple[int, int]:
    """(readings, uplinks) accepted from one message."""
    assert checked.rejections == []
    return len(checked.value), len(checked.up_ts_ns)


# --- the cache on its own ------------------------------------------------------------------------


def test_a_key_is_a_repeat_within_the_window_of_its_first_sighting() -> None:
    cache = FrameCache(WINDOW_NS)
    key = ("sf-rlv-01", 7, 1234)
    assert cache.seen_before(key, NOW_NS) is False
    assert cache.seen_before(key, NOW_NS + 1) is True
    assert cache.seen_before(key, NOW_NS + WINDOW_NS) is True  # the window is inclusive
    # a repeat does not extend the window: one past it the key is new again, from then on
    assert cache.seen_before(key, NOW_NS + WINDOW_NS + 1) is False
    assert cache.seen_before(key, NOW_NS + 2 * WINDOW_NS + 1) is True
    assert cache.seen_before(key, NOW_NS + 2 * WINDOW_NS + 2) is False


def test_keys_differ_by_device_counter_and_digest() -> None:
    cache = FrameCache(WINDOW_NS)
    assert cache.seen_before(("sf-rlv-01", 7, 1), NOW_NS) is False
    assert cache.seen_before(("sf-rlv-02", 7, 1), NOW_NS) is False
    assert cache.seen_before(("sf-rlv-01", 8, 1), NOW_NS) is False
    assert cache.seen_before(("sf-rlv-01", 7, 2), NOW_NS) is False
    assert len(cache) == 4


def test_keys_known_from_before_a_restart_are_recognised() -> None:
    cache = FrameCache(WINDOW_NS, {("sf-rlv-01", 7, 1): NOW_NS - 60 * S})
    assert cache.seen_before(("sf-rlv-01", 7, 1), NOW_NS) is True
    old = FrameCache(WINDOW_NS, {("sf-rlv-01", 7, 1): NOW_NS - WINDOW_NS - 1})
    assert old.seen_before(("sf-rlv-01", 7, 1), NOW_NS) is False


def test_the_cache_forgets_keys_older_than_the_window() -> None:
    cache = FrameCache(WINDOW_NS)
    for fcnt in range(5_000):
        cache.seen_before(("sf-rlv-01", fcnt, 0), NOW_NS)
    later = NOW_NS + WINDOW_NS + 1
    for fcnt in range(5_000):
        cache.seen_before(("sf-rlv-02", fcnt, 0), later)
    assert len(cache) == 5_000  # pruned once 10 000 keys went in: only the recent ones remain


def test_the_digest_depends_on_the_values_not_their_order() -> None:
    assert frame_digest({"level": 3.5, "battery_v": 3.9}) == frame_digest(
        {"battery_v": 3.9, "level": 3.5}
    )
    assert frame_digest({"level": 3.5}) != frame_digest({"level": 3.25})


# --- with validation -----------------------------------------------------------------------------


def test_a_chirpstack_retransmission_is_dropped_and_counted() -> None:
    validator = _validator(FrameCache(WINDOW_NS))
    first = _send(validator, _cs_topic(SF_RLV_01_EUI), _cs_event(), NOW_NS)
    assert _kept(first) == (2, 1)
    assert first.duplicates == 0
    assert [key for key, _ in first.frame_keys] == [
        ("sf-rlv-01", 7, frame_digest({"level": 3.5, "battery_v": 3.9}))
    ]
    assert [seen for _, seen in first.frame_keys] == [NOW_NS]

    # the same frame again, with the later time of its second reception
    retransmission = _cs_event(time="2024-01-01T12:00:08Z")
    second = _send(validator, _cs_topic(SF_RLV_01_EUI), retransmission, NOW_NS + 8 * S)
    assert second.duplicates == 1
    assert (second.value, second.up_ts_ns, second.rejections) == ([], [], [])
    assert second.frame_keys == []
    # and recorded as a repeat of that device at its own (later) time, for the reports to count
    _, _, repeats = columns([(first, NOW_NS), (second, NOW_NS + 9 * S)])
    assert repeats.device.tolist() == [shipped_registry().devices["sf-rlv-01"].code]
    assert repeats.ts_ns.tolist() == [NOW_NS + 8 * S]
    assert repeats.received_ns.tolist() == [NOW_NS + 9 * S]
    assert (repeats.fcnt.tolist(), repeats.rssi.tolist(), repeats.sf.tolist()) == (
        [7],
        [-36.0],
        [9],
    )


def test_a_retransmission_after_the_window_is_taken_as_new() -> None:
    validator = _validator(FrameCache(WINDOW_NS))
    _send(validator, _cs_topic(SF_RLV_01_EUI), _cs_event(), NOW_NS)
    late_ns = NOW_NS + WINDOW_NS + S
    late = _send(
        validator, _cs_topic(SF_RLV_01_EUI), _cs_event(time="2024-01-01T13:00:01Z"), late_ns
    )
    assert late.duplicates == 0
    assert _kept(late) == (2, 1)


def test_the_same_counter_with_other_values_is_a_reset_counter_not_a_repeat() -> None:
    validator = _validator(FrameCache(WINDOW_NS))
    _send(validator, _cs_topic(SF_RLV_01_EUI), _cs_event(fcnt=0, level=3.5), NOW_NS)
    # the device rebooted: its counter starts again at 0, with a new reading
    after_reboot = _cs_event(fcnt=0, level=3.25, time="2024-01-01T12:10:00Z")
    checked = _send(validator, _cs_topic(SF_RLV_01_EUI), after_reboot, NOW_NS + 600 * S)
    assert checked.duplicates == 0
    assert _kept(checked) == (2, 1)
    assert checked.up_fcnt == [0]


def test_the_same_counter_and_values_from_another_device_is_not_a_repeat() -> None:
    validator = _validator(FrameCache(WINDOW_NS))
    _send(validator, _cs_topic(SF_RLV_01_EUI), _cs_event(), NOW_NS)
    other = _send(validator, _cs_topic(SF_RLV_02_EUI), _cs_event(eui=SF_RLV_02_EUI), NOW_NS + S)
    assert other.duplicates == 0
    assert _kept(other) == (2, 1)


def test_a_tts_webhook_retry_is_dropped() -> None:
    message: dict[str, Any] = {
        "end_device_ids": {"device_id": "sf-rlv-01", "dev_eui": SF_RLV_01_EUI.upper()},
        "received_at": "2024-01-01T12:00:00.2Z",
        "uplink_message": {
            "f_cnt": 12,
            "decoded_payload": {"level": 3.5},
            "received_at": "2024-01-01T12:00:00.1Z",
        },
    }
    retry = copy.deepcopy(message)
    retry["uplink_message"]["received_at"] = "2024-01-01T12:00:30.1Z"
    validator = _validator(FrameCache(WINDOW_NS))
    topic = "v3/pilots@utn/devices/sf-rlv-01/up"
    assert _kept(_send(validator, topic, message, NOW_NS + S)) == (1, 1)
    assert _send(validator, topic, retry, NOW_NS + 31 * S).duplicates == 1


def test_without_a_cache_a_retransmission_is_a_second_point() -> None:
    validator = _validator(None)
    _send(validator, _cs_topic(SF_RLV_01_EUI), _cs_event(), NOW_NS)
    second = _send(
        validator, _cs_topic(SF_RLV_01_EUI), _cs_event(time="2024-01-01T12:00:08Z"), NOW_NS + 8 * S
    )
    assert second.duplicates == 0
    assert second.up_ts_ns == [NOW_NS + 8 * S]


def test_plain_frames_with_their_own_time_are_never_deduplicated() -> None:
    # Delivered twice, a plain reading lands on the same point and overwrites itself.
    validator = _validator(FrameCache(WINDOW_NS))
    topic = "pilots/santa-fe/sf-rlv-01/up"
    frame = {"ts": 1_704_110_400_000, "seq": 7, "readings": {"level": 3.5}, "battery_v": 3.9}
    first = _send(validator, topic, frame, NOW_NS)
    again = _send(validator, topic, frame, NOW_NS + S)
    later = _send(validator, topic, {**frame, "ts": 1_704_111_000_000}, NOW_NS + 600 * S)
    for checked in (first, again, later):
        assert checked.duplicates == 0
        assert _kept(checked) == (2, 1)
        assert checked.frame_keys == []
    assert first.up_ts_ns == again.up_ts_ns == [NOW_NS]
    assert later.up_ts_ns == [NOW_NS + 600 * S]

"""ChirpStack v4 uplink events: the device, its values and its radio metadata, and refusals."""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
import pytest

from core.registry import Registry
from core.settings import Settings
from core.uplinks import NO_SF
from ingest.decoders import FORMATS, Router
from ingest.decoders.chirpstack import decode
from ingest.reasons import Reason
from ingest.validate import Checked

from .helpers import (
    accepted,
    only_refusal,
    only_uplink,
    process_message,
    registry_with_lns_id,
)

SF_RLV_01_EUI = "a840410001010101"  # core/registry.toml
SF_RLV_02_EUI = "a840410001010201"
APPLICATION = "17c82e96-be03-4f38-aef3-f83d48582d97"
TOPIC = f"application/{APPLICATION}/device/{SF_RLV_01_EUI}/event/up"
#: 2022-07-18T09:34:15.775023242Z: 19191 days + 34455 s, and the nanoseconds as written.
TIME_NS = (19_191 * 86_400 + 34_455) * 1_000_000_000 + 775_023_242
RECEIVED_NS = TIME_NS + 250_000_000  # the event reached our broker a quarter second later

#: The uplink event of ChirpStack's documentation (v4, JSON marshaler), sent by a registered
#: river gauge whose device profile has a codec (so `object` is set) and with a frame counter.
EVENT: dict[str, Any] = {
    "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    "time": "2022-07-18T09:34:15.775023242+00:00",
    "deviceInfo": {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "ChirpStack",
        "applicationId": APPLICATION,
        "applicationName": "Test application",
        "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
        "deviceProfileName": "Test device-profile",
        "deviceName": "Test device",
        "devEui": SF_RLV_01_EUI,
        "tags": {"key": "value"},
    },
    "devAddr": "00189440",
    "dr": 1,
    "fPort": 1,
    "data": "qg==",
    "object": {"level": 3.61, "water_temp": 24.5, "battery_v": 3.9},
    "rxInfo": [
        {
            "gatewayId": "0016c001f153a14c",
            "uplinkId": 4217106255,
            "rssi": -36,
            "snr": 10.5,
            "context": "E3OWOQ==",
            "metadata": {"region_name": "eu868", "region_common_name": "EU868"},
        }
    ],
    "txInfo": {
        "frequency": 867100000,
        "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 11, "codeRate": "CR_4_5"}},
    },
    "fCnt": 7,
}


def _event(**changes: object) -> dict[str, Any]:
    """The documented event with top-level fields replaced (None removes the field)."""
    event = copy.deepcopy(EVENT)
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def _device_info(**changes: object) -> dict[str, Any]:
    info: dict[str, Any] = copy.deepcopy(EVENT["deviceInfo"])
    for key, value in changes.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    return info


def _topic(eui: str) -> str:
    return f"application/{APPLICATION}/device/{eui}/event/up"


def _process(event: object, topic: str = TOPIC, registry: Registry | None = None) -> Checked:
    return process_message(event, topic, RECEIVED_NS, registry)


_accepted = accepted
_uplink = only_uplink
_only_refusal = only_refusal


def _registry_with_lns_ids() -> Registry:
    return registry_with_lns_id("santa-fe", "sf-rlv-02", "setubal-gauge")


def test_the_route_table_sends_uplink_events_here() -> None:
    assert FORMATS["chirpstack"] is decode
    assert Router(Settings().ingest_routes).decoder_for(TOPIC) is decode


# --- the documented event ------------------------------------------------------------------------


def test_the_documented_event_decodes_to_one_frame() -> None:
    out = decode(TOPIC, orjson.dumps(EVENT))
    assert out.rejections == []
    [frame] = out.frames
    assert frame.values == {"level": 3.61, "water_temp": 24.5, "battery_v": 3.9}
    assert (frame.device, frame.dev_eui, frame.pilot) == ("Test device", SF_RLV_01_EUI, None)
    assert frame.ts_ns == TIME_NS
    assert frame.seq == 7
    assert (frame.rssi, frame.snr, frame.sf, frame.gateway) == (-36.0, 10.5, 11, "0016c001f153a14c")
    assert frame.time_is_reception  # the network's time: a retransmission carries another


def test_the_documented_event_becomes_readings_and_an_uplink_of_the_gauge() -> None:
    checked = _process(EVENT)
    assert checked.rejections == []
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", TIME_NS): 3.61,
        ("sf-rlv-01", "water_temp", TIME_NS): 24.5,
        ("sf-rlv-01", "battery_v", TIME_NS): 3.9,
    }
    assert _uplink(checked) == ("sf-rlv-01", TIME_NS, 7, -36.0, 10.5, 11, "0016c001f153a14c")


# --- which device --------------------------------------------------------------------------------


def test_the_eui_is_matched_whatever_its_case() -> None:
    checked = _process(
        _event(deviceInfo=_device_info(devEui=SF_RLV_01_EUI.upper())), _topic(SF_RLV_01_EUI.upper())
    )
    assert checked.rejections == []
    assert _uplink(checked)[0] == "sf-rlv-01"


def test_without_devEui_in_the_payload_the_topic_eui_is_used() -> None:
    checked = _process(_event(deviceInfo=_device_info(devEui=None)))
    assert checked.rejections == []
    assert _uplink(checked)[0] == "sf-rlv-01"


@pytest.mark.parametrize("name", ["setubal-gauge", "sf-rlv-02"])
def test_a_registry_device_without_eui_cannot_be_reached_by_its_name(name: str) -> None:
    registry = _registry_with_lns_ids()
    eui = "0101010101010101"  # ChirpStack's example EUI, in no registry
    event = _event(deviceInfo=_device_info(devEui=eui, deviceName=name), object={"level": 2.5})
    reason, detail = _only_refusal(_process(event, _topic(eui), registry))
    assert reason is Reason.UNKNOWN_DEVICE
    assert "sf-rlv-02" in detail
    assert "no `dev_eui` in the registry" in detail


def test_an_unknown_eui_and_name_is_an_unknown_device() -> None:
    eui = "0101010101010101"
    reason, detail = _only_refusal(
        _process(_event(deviceInfo=_device_info(devEui=eui)), _topic(eui))
    )
    assert reason is Reason.UNKNOWN_DEVICE
    assert eui in detail


def test_a_registered_name_with_an_eui_that_is_not_its_own_is_refused() -> None:
    eui = "0101010101010101"
    event = _event(deviceInfo=_device_info(devEui=eui, deviceName="sf-rlv-01"))
    reason, _ = _only_refusal(_process(event, _topic(eui)))
    assert reason in (Reason.DEVICE_MISMATCH, Reason.UNKNOWN_DEVICE)


def test_payload_eui_other_than_the_topics_is_a_device_mismatch() -> None:
    event = _event(deviceInfo=_device_info(devEui=SF_RLV_02_EUI))
    reason, detail = _only_refusal(_process(event))
    assert reason is Reason.DEVICE_MISMATCH
    assert SF_RLV_02_EUI in detail
    assert SF_RLV_01_EUI in detail


def test_the_eui_of_one_device_and_the_name_of_another_is_a_device_mismatch() -> None:
    reason, detail = _only_refusal(
        _process(_event(deviceInfo=_device_info(deviceName="sf-rlv-02")))
    )
    assert reason is Reason.DEVICE_MISMATCH
    assert "sf-rlv-01" in detail
    assert "sf-rlv-02" in detail


@pytest.mark.parametrize(
    "topic",
    [
        f"application/{APPLICATION}/devices/{SF_RLV_01_EUI}/event/up",
        f"application/{APPLICATION}/device/{SF_RLV_01_EUI}/event",
        f"app/{APPLICATION}/device/{SF_RLV_01_EUI}/event/up",
        f"application/{APPLICATION}/device/{SF_RLV_01_EUI}/event/up/x",
    ],
)
def test_bad_topic(topic: str) -> None:
    out = decode(topic, orjson.dumps(EVENT))
    assert out.frames == []
    [rejection] = out.rejections
    assert rejection.reason is Reason.BAD_TOPIC
    assert repr(topic) in rejection.detail


# --- radio metadata ------------------------------------------------------------------------------


def test_the_strongest_reception_gives_rssi_snr_and_gateway() -> None:
    receptions = [
        {"gatewayId": "gw-no-rssi", "snr": 12.0},
        {"gatewayId": "gw-far", "rssi": -118, "snr": -12.5},
        {"gatewayId": "gw-near", "rssi": -41, "snr": 9.25},
        {"gatewayId": "gw-mid", "rssi": -80, "snr": 2.0},
    ]
    checked = _process(_event(rxInfo=receptions))
    assert _uplink(checked)[3:] == (-41.0, 9.25, 11, "gw-near")


@pytest.mark.parametrize("gateway", ["g" * 200_000, "gw\nnorth", "gw north", ""])
def test_a_gateway_id_no_gateway_has_is_not_kept_but_the_uplink_is(gateway: str) -> None:
    """A network server's login sends a 200,000-character gateway id: kept, it would make
    every array of uplinks that holds it 800 kB a row, in ingest and in the API."""
    checked = _process(_event(rxInfo=[{"gatewayId": gateway, "rssi": -50, "snr": 5.0}]))
    assert checked.rejections == []
    assert _uplink(checked)[3:] == (-50.0, 5.0, 11, "")
    assert len(checked.value) > 0, "the readings are stored"


@pytest.mark.parametrize("receptions", [None, [], "gw", [{"gatewayId": 5}]])
def test_without_receptions_radio_quality_is_absent(receptions: object) -> None:
    checked = _process(_event(rxInfo=receptions))
    assert checked.rejections == []
    _, _, fcnt, rssi, snr, sf, gateway = _uplink(checked)
    assert (fcnt, sf, gateway) == (7, 11, "")
    assert math.isnan(rssi)
    assert math.isnan(snr)


@pytest.mark.parametrize(
    ("tx_info", "sf"),
    [
        ({"modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7}}}, 7),
        ({"modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 12}}}, 12),
        ({"frequency": 867100000, "modulation": {"fsk": {"datarate": 50000}}}, NO_SF),
        (None, NO_SF),
    ],
)
def test_spreading_factor(tx_info: object, sf: int) -> None:
    checked = _process(_event(txInfo=tx_info))
    assert _uplink(checked)[5] == sf


# --- frame counter and time ----------------------------------------------------------------------


def test_a_missing_fCnt_is_0() -> None:  # proto3 JSON leaves out zero values
    checked = _process(_event(fCnt=None))
    assert checked.rejections == []
    assert _uplink(checked)[2] == 0


@pytest.mark.parametrize("fcnt", [-1, 2**32, 1.5, "7", True])
def test_a_bad_fCnt_is_malformed(fcnt: object) -> None:
    reason, detail = _only_refusal(_process(_event(fCnt=fcnt)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "`fCnt`" in detail


def test_the_largest_fCnt() -> None:
    assert _uplink(_process(_event(fCnt=2**32 - 1)))[2] == 2**32 - 1


@pytest.mark.parametrize(
    ("time", "expected_ns"),
    [
        ("2022-07-18T09:34:15.775023242+00:00", TIME_NS),
        ("2022-07-18T06:34:15.775023242-03:00", TIME_NS),
        ("2022-07-18T09:34:15Z", TIME_NS - 775_023_242),
        (None, RECEIVED_NS),  # no time of its own: when we received it
    ],
)
def test_time_is_the_events_time_to_the_nanosecond(time: str | None, expected_ns: int) -> None:
    checked = _process(_event(time=time))
    assert checked.rejections == []
    assert set(checked.ts_ns) == {expected_ns}
    assert checked.up_ts_ns == [expected_ns]


@pytest.mark.parametrize("time", ["2022-07-18T09:34:15", "yesterday", 1658136855, ""])
def test_a_bad_time_is_malformed(time: object) -> None:
    reason, detail = _only_refusal(_process(_event(time=time)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "`time`" in detail


# --- decoded values ------------------------------------------------------------------------------


def test_without_a_codec_there_is_no_object_and_the_refusal_says_how_to_fix_it() -> None:
    reason, detail = _only_refusal(_process(_event(object=None)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "no `object`" in detail
    assert "set a codec in the ChirpStack device profile" in detail


@pytest.mark.parametrize(
    ("decoded", "words"), [([3.61], "is array"), ({}, "is empty"), ("x", "string")]
)
def test_an_object_that_holds_no_values_is_malformed(decoded: object, words: str) -> None:
    reason, detail = _only_refusal(_process(_event(object=decoded)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert words in detail


def test_non_numeric_decoded_values_are_refused_for_their_sensor_only() -> None:
    checked = _process(
        _event(object={"level": "3.61", "water_temp": 24.5, "battery_v": None, "nested": {"a": 1}})
    )
    assert _accepted(checked) == {("sf-rlv-01", "water_temp", TIME_NS): 24.5}
    assert sorted((r.reason, r.sensor) for r in checked.rejections) == [
        (Reason.NON_NUMERIC, "battery_v"),
        (Reason.NON_NUMERIC, "level"),
        (Reason.UNKNOWN_SENSOR, "nested"),
    ]
    assert _uplink(checked)[:3] == ("sf-rlv-01", TIME_NS, 7)


@pytest.mark.parametrize("payload", [b"", b"{", b'{"object": {"level": 3.6}', b"\xff"])
def test_malformed_json(payload: bytes) -> None:
    reason, _ = _only_refusal(_process(payload))
    assert reason is Reason.MALFORMED_JSON


@pytest.mark.parametrize(
    ("document", "words"), [([EVENT], "event is array"), ("up", "event is string")]
)
def test_an_event_must_be_an_object(document: object, words: str) -> None:
    reason, detail = _only_refusal(_process(document))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert words in detail

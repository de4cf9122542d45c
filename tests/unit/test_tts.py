"""The Things Stack v3 uplink messages: the device, its values and radio metadata, and refusals."""

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
from ingest.decoders.tts import decode
from ingest.reasons import Reason
from ingest.validate import Checked

from .helpers import (
    accepted,
    only_refusal,
    only_uplink,
    process_message,
    registry_with_lns_id,
)

RS_WQ_01_EUI = "A840410003040101"  # core/registry.toml (lower case there; TTS writes upper case)
RS_WQ_02_EUI = "A840410003040201"
TOPIC = "v3/app1@ttn/devices/dev1/up"
#: 2020-02-12T15:15:45Z: 18304 days + 54945 s since the epoch.
SECOND_NS = (18_304 * 86_400 + 54_945) * 1_000_000_000
UPLINK_RECEIVED_NS = SECOND_NS + 639_000_000  # uplink_message.received_at, 15:15:45.639Z
MESSAGE_RECEIVED_NS = SECOND_NS + 787_000_000  # received_at of the message, 15:15:45.787Z
RECEIVED_NS = SECOND_NS + 900_000_000  # when it reached our broker

#: The uplink message of The Things Stack's documentation ("Data formats"), from a registered
#: water-quality sonde whose payload formatter decodes its readings.
MESSAGE: dict[str, Any] = {
    "end_device_ids": {
        "device_id": "dev1",
        "application_ids": {"application_id": "app1"},
        "dev_eui": RS_WQ_01_EUI,
        "join_eui": "800000000000000C",
        "dev_addr": "00BCB929",
    },
    "correlation_ids": ["as:up:01E0ZGQZ1SGV1TC1YC0G1FYCBZ", "gs:conn:01E0ZGQ3QNHT7H4PRCC6A3Q7PB"],
    "received_at": "2020-02-12T15:15:45.787Z",
    "uplink_message": {
        "session_key_id": "AXBSH1Pk6Z0G166jA3p41A==",
        "f_port": 1,
        "f_cnt": 4,
        "frm_payload": "aGV5",
        "decoded_payload": {"ph": 7.4, "water_temp": 26.5, "dissolved_oxygen": 6.25},
        "rx_metadata": [
            {
                "gateway_ids": {"gateway_id": "gtw1", "eui": "9C5C8E00001A05C4"},
                "time": "2020-02-12T15:15:45.787Z",
                "timestamp": 2463457000,
                "rssi": -35,
                "channel_rssi": -35,
                "snr": 5.2,
                "location": {
                    "latitude": -27.458,
                    "longitude": -58.975,
                    "source": "SOURCE_REGISTRY",
                },
                "uplink_token": "ChIKEAoEZ3R3MRIInFyOAAAaBcQQ6NeTmQkaCwiR4I3yBRDQubZQIOjH6CY=",
                "channel_index": 2,
            }
        ],
        "settings": {
            "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
            "coding_rate": "4/6",
            "frequency": "868500000",
            "timestamp": 2463457000,
            "time": "2020-02-12T15:15:45.787Z",
        },
        "received_at": "2020-02-12T15:15:45.639Z",
        "consumed_airtime": "0.056576s",
    },
}


def _message(**uplink_changes: object) -> dict[str, Any]:
    """The documented message with `uplink_message` fields replaced (None removes the field)."""
    message = copy.deepcopy(MESSAGE)
    for key, value in uplink_changes.items():
        if value is None:
            message["uplink_message"].pop(key, None)
        else:
            message["uplink_message"][key] = value
    return message


def _with_ids(**changes: object) -> dict[str, Any]:
    """The documented message with `end_device_ids` fields replaced (None removes the field)."""
    message = copy.deepcopy(MESSAGE)
    for key, value in changes.items():
        if value is None:
            message["end_device_ids"].pop(key, None)
        else:
            message["end_device_ids"][key] = value
    return message


def _topic(device_id: str) -> str:
    return f"v3/app1@ttn/devices/{device_id}/up"


def _process(message: object, topic: str = TOPIC, registry: Registry | None = None) -> Checked:
    return process_message(message, topic, RECEIVED_NS, registry)


_accepted = accepted
_uplink = only_uplink
_only_refusal = only_refusal


def _registry_with_lns_ids() -> Registry:
    return registry_with_lns_id("resistencia", "rs-wq-02", "laguna-francia")


def test_the_route_table_sends_uplink_topics_here() -> None:
    assert FORMATS["tts"] is decode
    assert Router(Settings().ingest_routes).decoder_for(TOPIC) is decode


# --- the documented message ----------------------------------------------------------------------


def test_the_documented_message_decodes_to_one_frame() -> None:
    out = decode(TOPIC, orjson.dumps(MESSAGE))
    assert out.rejections == []
    [frame] = out.frames
    assert frame.values == {"ph": 7.4, "water_temp": 26.5, "dissolved_oxygen": 6.25}
    assert (frame.device, frame.dev_eui, frame.pilot) == ("dev1", RS_WQ_01_EUI.lower(), None)
    assert frame.ts_ns == UPLINK_RECEIVED_NS
    assert frame.seq == 4
    assert (frame.rssi, frame.snr, frame.sf, frame.gateway) == (-35.0, 5.2, 7, "gtw1")
    assert frame.time_is_reception


def test_the_documented_message_becomes_readings_and_an_uplink_of_the_sonde() -> None:
    checked = _process(MESSAGE)
    assert checked.rejections == []
    assert _accepted(checked) == {
        ("rs-wq-01", "ph", UPLINK_RECEIVED_NS): 7.4,
        ("rs-wq-01", "water_temp", UPLINK_RECEIVED_NS): 26.5,
        ("rs-wq-01", "dissolved_oxygen", UPLINK_RECEIVED_NS): 6.25,
    }
    assert _uplink(checked) == ("rs-wq-01", UPLINK_RECEIVED_NS, 4, -35.0, 5.2, 7, "gtw1")


# --- which device --------------------------------------------------------------------------------


def test_the_device_id_may_be_the_registry_id() -> None:
    checked = _process(_with_ids(device_id="rs-wq-01"), _topic("rs-wq-01"))
    assert checked.rejections == []
    assert _uplink(checked)[0] == "rs-wq-01"


def test_without_dev_eui_the_uplink_is_refused_even_if_the_device_id_is_registered() -> None:
    checked = _process(_with_ids(device_id="rs-wq-03", dev_eui=None), _topic("rs-wq-03"))
    reason, detail = _only_refusal(checked)
    assert reason is Reason.MISSING_DEV_EUI
    assert "'rs-wq-03'" in detail
    assert "EUI only" in detail
    assert checked.rejections[0].records == 3  # the three decoded values, none stored


def test_without_end_device_ids_there_is_no_eui_and_the_uplink_is_refused() -> None:
    message = copy.deepcopy(MESSAGE)
    del message["end_device_ids"]
    reason, _ = _only_refusal(_process(message, _topic("rs-wq-03")))
    assert reason is Reason.MISSING_DEV_EUI


def test_a_registry_device_without_eui_cannot_be_reached_by_its_network_server_id() -> None:
    registry = _registry_with_lns_ids()
    message = _with_ids(device_id="laguna-francia", dev_eui="0004A30B001C0530")
    reason, detail = _only_refusal(_process(message, _topic("laguna-francia"), registry))
    assert reason is Reason.UNKNOWN_DEVICE
    assert "rs-wq-02" in detail
    assert "no `dev_eui` in the registry" in detail
    assert "cannot be reached through a network server" in detail


def test_an_unknown_eui_and_device_id_is_an_unknown_device() -> None:
    reason, detail = _only_refusal(_process(_with_ids(dev_eui="0004A30B001C0530")))
    assert reason is Reason.UNKNOWN_DEVICE
    assert "dev1" in detail
    assert "0004a30b001c0530" in detail


def test_a_registered_device_id_with_an_eui_that_is_not_its_own_is_refused() -> None:
    message = _with_ids(device_id="rs-wq-01", dev_eui="0004A30B001C0530")
    reason, _ = _only_refusal(_process(message, _topic("rs-wq-01")))
    assert reason in (Reason.DEVICE_MISMATCH, Reason.UNKNOWN_DEVICE)


def test_payload_device_id_other_than_the_topics_is_a_device_mismatch() -> None:
    reason, detail = _only_refusal(_process(MESSAGE, _topic("dev2")))
    assert reason is Reason.DEVICE_MISMATCH
    assert "'dev1'" in detail
    assert "'dev2'" in detail


def test_the_eui_of_one_device_and_the_id_of_another_is_a_device_mismatch() -> None:
    message = _with_ids(device_id="rs-wq-02", dev_eui=RS_WQ_01_EUI)
    reason, detail = _only_refusal(_process(message, _topic("rs-wq-02")))
    assert reason is Reason.DEVICE_MISMATCH
    assert "rs-wq-01" in detail
    assert "rs-wq-02" in detail


def test_another_devices_eui_under_an_unknown_id_is_that_device() -> None:
    checked = _process(_with_ids(dev_eui=RS_WQ_02_EUI))
    assert checked.rejections == []
    assert _uplink(checked)[0] == "rs-wq-02"


@pytest.mark.parametrize(
    "topic",
    [
        "v3/app1@ttn/device/dev1/up",
        "v3/app1@ttn/devices/dev1",
        "v2/app1@ttn/devices/dev1/up",
        "v3/app1@ttn/devices/dev1/up/x",
    ],
)
def test_bad_topic(topic: str) -> None:
    out = decode(topic, orjson.dumps(MESSAGE))
    assert out.frames == []
    [rejection] = out.rejections
    assert rejection.reason is Reason.BAD_TOPIC
    assert repr(topic) in rejection.detail


# --- simulated uplinks --------------------------------------------------------------------------


def test_a_simulated_uplink_is_refused_as_simulated_and_nothing_is_stored() -> None:
    checked = _process({**MESSAGE, "simulated": True})
    reason, detail = _only_refusal(checked)
    assert reason is Reason.SIMULATED
    assert "not received by a gateway" in detail
    assert checked.rejections[0].records == 3


def test_a_simulated_uplink_is_refused_before_its_device_is_looked_up() -> None:
    # made in the console for a device that is not even registered: still `simulated`
    reason, _ = _only_refusal(_process({**_with_ids(dev_eui=None), "simulated": True}))
    assert reason is Reason.SIMULATED


def test_simulated_false_is_a_real_uplink() -> None:  # The Things Stack omits it; false is fine
    checked = _process({**MESSAGE, "simulated": False})
    assert checked.rejections == []
    assert len(_accepted(checked)) == 3


@pytest.mark.parametrize("flag", ["true", 1])
def test_a_simulated_flag_that_is_not_a_boolean_is_malformed(flag: object) -> None:
    reason, detail = _only_refusal(_process({**MESSAGE, "simulated": flag}))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "`simulated`" in detail


# --- radio metadata ------------------------------------------------------------------------------


def test_the_strongest_reception_gives_rssi_snr_and_gateway() -> None:
    receptions = [
        {"gateway_ids": {"gateway_id": "gtw-far"}, "rssi": -117, "snr": -11.75},
        {"gateway_ids": {"gateway_id": "gtw-near"}, "rssi": -52, "channel_rssi": -52, "snr": 9.5},
        {"gateway_ids": {"gateway_id": "gtw-quiet"}, "snr": 12.0},
        {"gateway_ids": {"gateway_id": "gtw-mid"}, "rssi": -90, "snr": 1.0},
    ]
    assert _uplink(_process(_message(rx_metadata=receptions)))[3:] == (-52.0, 9.5, 7, "gtw-near")


def test_a_gateway_known_only_by_its_eui_is_named_by_it() -> None:
    receptions = [{"gateway_ids": {"eui": "9C5C8E00001A05C4"}, "rssi": -35, "snr": 5.2}]
    assert _uplink(_process(_message(rx_metadata=receptions)))[6] == "9C5C8E00001A05C4"


def test_without_rx_metadata_radio_quality_is_absent() -> None:
    checked = _process(_message(rx_metadata=None))
    _, _, fcnt, rssi, snr, sf, gateway = _uplink(checked)
    assert (fcnt, sf, gateway) == (4, 7, "")
    assert math.isnan(rssi)
    assert math.isnan(snr)


@pytest.mark.parametrize(
    ("settings", "sf"),
    [
        ({"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 10}}}, 10),
        ({"data_rate": {"fsk": {"bit_rate": 50000}}, "frequency": "868800000"}, NO_SF),
        (None, NO_SF),
    ],
)
def test_spreading_factor(settings: object, sf: int) -> None:
    assert _uplink(_process(_message(settings=settings)))[5] == sf


# --- frame counter and time ----------------------------------------------------------------------


def test_a_missing_f_cnt_is_0() -> None:  # The Things Stack leaves out zero fields
    checked = _process(_message(f_cnt=None))
    assert checked.rejections == []
    assert _uplink(checked)[2] == 0


@pytest.mark.parametrize("fcnt", [-1, 2**32, "4", 4.5])
def test_a_bad_f_cnt_is_malformed(fcnt: object) -> None:
    reason, detail = _only_refusal(_process(_message(f_cnt=fcnt)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "`f_cnt`" in detail


def test_time_is_the_uplinks_received_at_to_the_nanosecond() -> None:
    message = _message(received_at="2020-02-12T15:15:45.639123456Z")
    assert _process(message).up_ts_ns == [UPLINK_RECEIVED_NS + 123_456]


def test_without_the_uplinks_received_at_the_messages_is_used() -> None:
    assert _process(_message(received_at=None)).up_ts_ns == [MESSAGE_RECEIVED_NS]


def test_without_any_received_at_the_time_we_received_it_is_used() -> None:
    message = _message(received_at=None)
    del message["received_at"]
    checked = _process(message)
    assert set(checked.ts_ns) == {RECEIVED_NS}
    assert checked.up_ts_ns == [RECEIVED_NS]


@pytest.mark.parametrize("received_at", ["2020-02-12T15:15:45.639", "later", 1581520545])
def test_a_bad_received_at_is_malformed(received_at: object) -> None:
    reason, detail = _only_refusal(_process(_message(received_at=received_at)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "`received_at`" in detail


# --- decoded values ------------------------------------------------------------------------------


def test_without_a_payload_formatter_the_refusal_says_how_to_fix_it() -> None:
    reason, detail = _only_refusal(_process(_message(decoded_payload=None)))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert "no `decoded_payload`" in detail
    assert "set an uplink payload formatter in The Things Stack" in detail


def test_the_documented_formatter_output_holds_no_registered_sensor() -> None:
    # The documentation's formatter returns the raw bytes: every field is an unknown sensor.
    checked = _process(_message(decoded_payload={"bytes": "aGV5"}))
    assert checked.value == []
    assert [(r.reason, r.sensor) for r in checked.rejections] == [(Reason.UNKNOWN_SENSOR, "bytes")]


def test_non_numeric_decoded_values_are_refused_for_their_sensor_only() -> None:
    decoded = {"ph": "7.4", "water_temp": 26.5, "dissolved_oxygen": True, "turbidity": [5]}
    checked = _process(_message(decoded_payload=decoded))
    assert _accepted(checked) == {("rs-wq-01", "water_temp", UPLINK_RECEIVED_NS): 26.5}
    assert sorted((r.reason, r.sensor) for r in checked.rejections) == [
        (Reason.NON_NUMERIC, "dissolved_oxygen"),
        (Reason.NON_NUMERIC, "ph"),
        (Reason.NON_NUMERIC, "turbidity"),
    ]


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"end_device_ids": MESSAGE["end_device_ids"]}, "no `uplink_message` object"),
        ({**MESSAGE, "uplink_message": [1]}, "no `uplink_message` object"),
        ([MESSAGE], "message is array"),
    ],
)
def test_a_message_that_is_not_an_uplink_is_malformed(document: object, words: str) -> None:
    reason, detail = _only_refusal(_process(document))
    assert reason is Reason.MALFORMED_STRUCTURE
    assert words in detail


@pytest.mark.parametrize("payload", [b"", b"{", b'{"uplink_message": {}', b"\xff"])
def test_malformed_json(payload: bytes) -> None:
    reason, _ = _only_refusal(_process(payload))
    assert reason is Reason.MALFORMED_JSON

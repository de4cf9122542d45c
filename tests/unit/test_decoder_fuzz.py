"""Every format, fed hostile input through the whole per-message path, never loses a message.

For each decoder in `FORMATS`: random bytes, random JSON documents, valid examples cut short,
oversized packs, and documents built from the vendor's shape with random value types. Each goes
through `ingest.process.process` (route, decode, validate) and must come out as accepted
readings or uplinks, or at least one rejection with a reason; never an exception, never nothing,
and what is accepted must be storable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.registry import Device
from core.settings import Settings
from core.store.lineprotocol import LineEncoder
from ingest.decoders import FORMATS, Router
from ingest.dedupe import FrameCache
from ingest.process import columns, process
from ingest.reasons import Reason
from ingest.validate import Checked, Validator

from .helpers import shipped_registry

NOW_S = 1_704_110_400  # 2024-01-01T12:00:00Z
NOW_NS = NOW_S * 1_000_000_000
SETTINGS = Settings()
ROUTER = Router(SETTINGS.ingest_routes)
MAX_PAYLOAD_BYTES = SETTINGS.ingest_max_payload_bytes
REGISTRY = shipped_registry()
DEVICES = REGISTRY.device_list
SENSORS = [*REGISTRY.sensors, "fcnt", "voltage", "nope", ""]
UNITS = ["m", "Cel", "°C", "%RH", "%", "hPa", "V", "A", "K", "ug/m3", "µg/m³", "/", ""]

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
FUZZ_MORE = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)

# --- topics and valid examples, per format -------------------------------------------------------


def _plain_topic(d: Device) -> str:
    return f"pilots/{d.pilot}/{d.id}/up"


def _senml_topic(d: Device) -> str:
    return f"pilots/{d.pilot}/{d.id}/senml"


def _chirpstack_topic(d: Device) -> str:
    return f"application/17c82e96-be03-4f38-aef3-f83d48582d97/device/{d.dev_eui}/event/up"


def _tts_topic(d: Device) -> str:
    return f"v3/app1@ttn/devices/{d.id}/up"


TOPIC_OF: dict[str, Callable[[Device], str]] = {
    "plain": _plain_topic,
    "senml": _senml_topic,
    "chirpstack": _chirpstack_topic,
    "tts": _tts_topic,
}

#: Topics that are routed to the format but name nobody registered.
STRANGER_TOPICS: dict[str, list[str]] = {
    "plain": ["pilots/santa-fe/zz-99/up", "pilots//sf-rlv-01/up", "pilots/x/sf-rlv-01/up"],
    "senml": ["pilots/santa-fe/zz-99/senml", "pilots/resistencia/sf-rlv-01/senml"],
    "chirpstack": [
        "application/1/device/0101010101010101/event/up",
        "application/1/device//event/up",
        "application/1/device/A840410001010101/event/up",
    ],
    "tts": ["v3/app1@ttn/devices/dev1/up", "v3/app1@ttn/devices//up"],
}


def _example(fmt: str, d: Device) -> object:
    """A valid message of the format from device `d` (the vendors' documented shapes)."""
    sensor = d.sensors[0]
    value = (REGISTRY.sensors[sensor].min + REGISTRY.sensors[sensor].max) / 2
    if fmt == "plain":
        return {"ts": NOW_S * 1000, "seq": 7, "readings": {sensor: value}, "battery_v": 3.9}
    if fmt == "senml":
        return [
            {"bn": f"urn:dev:mac:{d.dev_eui}:", "bt": NOW_S, "bver": 5, "n": sensor, "v": value},
            {"n": "battery_v", "u": "V", "t": -600, "v": 3.9},
        ]
    if fmt == "chirpstack":
        return {
            "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
            "time": "2024-01-01T11:59:59.775023242+00:00",
            "deviceInfo": {
                "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
                "deviceName": "Test device",
                "devEui": d.dev_eui,
                "tags": {"key": "value"},
            },
            "devAddr": "00189440",
            "dr": 1,
            "fPort": 1,
            "data": "qg==",
            "object": {sensor: value, "battery_v": 3.9},
            "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -36, "snr": 10.5}],
            "txInfo": {
                "frequency": 867100000,
                "modulation": {
                    "lora": {"bandwidth": 125000, "spreadingFactor": 11, "codeRate": "CR_4_5"}
                },
            },
            "fCnt": 7,
        }
    assert fmt == "tts"
    return {
        "end_device_ids": {
            "device_id": d.id,
            "application_ids": {"application_id": "app1"},
            "dev_eui": (d.dev_eui or "").upper(),
        },
        "received_at": "2024-01-01T11:59:59.787Z",
        "uplink_message": {
            "f_port": 1,
            "f_cnt": 4,
            "frm_payload": "aGV5",
            "decoded_payload": {sensor: value, "battery_v": 3.9},
            "rx_metadata": [
                {
                    "gateway_ids": {"gateway_id": "gtw1", "eui": "9C5C8E00001A05C4"},
                    "rssi": -35,
                    "channel_rssi": -35,
                    "snr": 5.2,
                }
            ],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                "frequency": "868500000",
            },
            "received_at": "2024-01-01T11:59:59.639Z",
        },
    }


# --- the invariant -------------------------------------------------------------------------------


def _run(fmt: str, topic: str, payload: bytes) -> Checked:
    """One message through ingest's per-message path; asserts that nothing is lost or unsafe."""
    decoder = ROUTER.decoder_for(topic)
    assert decoder is FORMATS[fmt], topic  # the fuzz stays on this format's routes
    validator = Validator(
        REGISTRY,
        max_future_s=SETTINGS.ingest_max_future_s,
        max_age_days=SETTINGS.ingest_max_age_days,
        frames=FrameCache(SETTINGS.ingest_dedupe_window_s * 1_000_000_000),
    )
    checked = process(
        ROUTER, validator, topic, payload, NOW_NS, max_payload_bytes=MAX_PAYLOAD_BYTES
    )

    # never silently nothing (a fresh cache: nothing here can be a retransmission)
    assert len(checked.value) + len(checked.up_ts_ns) + len(checked.rejections) > 0
    assert checked.duplicates == 0
    for rejection in checked.rejections:
        assert isinstance(rejection.reason, Reason)
        assert rejection.reason is not Reason.INTERNAL_ERROR, rejection.detail
        assert isinstance(rejection.detail, str)
        assert rejection.detail

    # what is accepted is clean and storable
    n = len(checked.value)
    assert (len(checked.ts_ns), len(checked.device), len(checked.sensor)) == (n, n, n)
    for code, value in zip(checked.sensor, checked.value, strict=True):
        sensor = REGISTRY.sensor_list[code]
        assert math.isfinite(value)
        assert sensor.min <= value <= sensor.max
    ups = len(checked.up_ts_ns)
    uplink_columns = (
        checked.up_device,
        checked.up_fcnt,
        checked.up_rssi,
        checked.up_snr,
        checked.up_sf,
        checked.up_gateway,
    )
    assert all(len(c) == ups for c in uplink_columns)
    readings, uplinks, _ = columns([(checked, NOW_NS)])
    encoder = LineEncoder(REGISTRY)
    assert encoder.encode(readings).count(b"\n") == max(n - 1, 0)
    assert encoder.encode_uplinks(uplinks).count(b"\n") == max(ups - 1, 0)
    return checked


# --- strategies ----------------------------------------------------------------------------------

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
devices = st.sampled_from(DEVICES)
numbers = (
    st.floats(-20, 1200)
    | st.integers(-5, 100)
    | st.floats(allow_nan=False)
    | st.sampled_from([0, -0.0, 1e308, -1e308, 2**53, 2**64 - 1])
)
good_instants = st.sampled_from(
    [
        "2024-01-01T11:59:59.775023242+00:00",
        "2024-01-01T08:59:59-03:00",
        "2024-01-01T12:00:00Z",
    ]
)
instants = st.one_of(
    st.sampled_from(
        [
            "2024-01-01T11:59:59.775023242+00:00",
            "2024-01-01T08:59:59-03:00",
            "2024-01-01T12:00:00Z",
            "2024-01-01T12:20:00Z",
            "2010-01-01T00:00:00Z",
            "2024-01-01T12:00:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "",
        ]
    ),
    st.text(max_size=30),
    st.integers(-(2**40), 2**64 - 1),
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of the strategies, each as often as its weight says."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def _readings(d: Device) -> st.SearchStrategy[dict[str, Any]]:
    """Decoded values: mostly the device's own sensors within their range, sometimes anything."""
    own = st.sampled_from(d.sensors)
    in_range = st.sampled_from(d.sensors).flatmap(
        lambda s: st.floats(REGISTRY.sensors[s].min, REGISTRY.sensors[s].max)
    )
    return st.dictionaries(
        weighted((4, own), (1, st.sampled_from(SENSORS))),
        weighted((4, in_range), (1, numbers), (1, json_scalars)),
        min_size=0,
        max_size=5,
    )


def _overrides(d: Device) -> dict[str, st.SearchStrategy[Any]]:
    """Plausible values for the fields that matter, most of them naming device `d`."""
    readings = _readings(d)
    times = weighted((4, good_instants), (1, instants))
    counters = weighted((4, st.integers(0, 2**32 - 1)), (1, st.integers(-2, 2**32 + 1)))
    euis = [d.dev_eui or "", (d.dev_eui or "").upper(), "0101010101010101", "", "x"]
    return {
        "devEui": weighted((4, st.just(d.dev_eui)), (1, st.sampled_from(euis))),
        "dev_eui": weighted((4, st.just((d.dev_eui or "").upper())), (1, st.sampled_from(euis))),
        "device_id": weighted((4, st.just(d.id)), (1, st.sampled_from(["dev1", "", "sf-rlv-01"]))),
        "deviceName": st.sampled_from(["Test device", d.id, "sf-rlv-01", ""]),
        "device": st.sampled_from([d.id, "sf-rlv-02", d.dev_eui or ""]),
        "time": times,
        "received_at": times,
        "ts": weighted((3, st.integers(NOW_S * 1000 - 10**9, NOW_S * 1000 + 10**6)), (1, instants)),
        "fCnt": counters,
        "f_cnt": counters,
        "seq": counters,
        "object": readings,
        "decoded_payload": readings,
        "readings": readings,
        "rssi": numbers,
        "snr": numbers,
        "spreadingFactor": st.integers(-1, 13) | numbers,
        "spreading_factor": st.integers(-1, 13) | numbers,
        "gatewayId": st.text(max_size=20),
        "gateway_id": st.text(max_size=20),
        "bn": st.sampled_from(
            [f"urn:dev:mac:{d.dev_eui}:", f"{d.id}/", "sf-rlv-02/", "", "urn:dev:ow:x:", ":"]
        ),
        "n": weighted((4, st.sampled_from(d.sensors)), (1, st.sampled_from(SENSORS))),
        "bt": st.sampled_from([NOW_S, NOW_S - 0.5, 0, 100, 2**28, 2**28 - 1, -(2**31), 1e300]),
        "t": st.floats(-(2**29), 2**29) | st.integers(-3600, 600),
        "v": numbers,
        "bv": numbers,
        "u": st.sampled_from(UNITS),
        "bu": st.sampled_from(UNITS),
        "bver": st.integers(-1, 12),
    }


def mutated(
    document: object, overrides: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any]:
    """Documents of the example's shape: fields dropped, retyped, or given plausible values."""
    if isinstance(document, dict):
        fields = {
            key: weighted(
                (8, overrides[key] if key in overrides else mutated(value, overrides)),
                (1, json_values),
            )
            for key, value in document.items()
        }
        kept = st.fixed_dictionaries(fields)
        some = st.fixed_dictionaries({}, optional=fields)
        extra = st.dictionaries(
            st.sampled_from(["ut", "ex_", "vs", "s", "extra", "bs"]), json_values, max_size=2
        )
        return weighted(
            (4, kept), (1, some), (1, st.tuples(kept, extra).map(lambda p: p[1] | p[0]))
        )
    if isinstance(document, list):
        items = [mutated(item, overrides) for item in document] or [json_values]
        return weighted(
            (4, st.tuples(*items).map(list)),
            (2, st.lists(st.one_of(items), max_size=8)),
            (1, json_values),
        )
    return weighted((3, st.just(document)), (1, json_values))


def plausible(fmt: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """(topic, payload) of a device's message of the format, mutated."""

    def build(d: Device) -> st.SearchStrategy[tuple[str, bytes]]:
        topic = weighted((6, st.just(TOPIC_OF[fmt](d))), (1, st.sampled_from(STRANGER_TOPICS[fmt])))
        return st.tuples(topic, mutated(_example(fmt, d), _overrides(d)).map(orjson.dumps))

    return devices.flatmap(build)


def topics(fmt: str) -> st.SearchStrategy[str]:
    return weighted((4, devices.map(TOPIC_OF[fmt])), (1, st.sampled_from(STRANGER_TOPICS[fmt])))


# --- the examples themselves are good ------------------------------------------------------------


def test_every_format_is_fuzzed() -> None:
    assert set(TOPIC_OF) == set(STRANGER_TOPICS) == set(FORMATS)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_examples_are_accepted_for_every_device(fmt: str) -> None:
    for d in DEVICES:
        checked = _run(fmt, TOPIC_OF[fmt](d), orjson.dumps(_example(fmt, d)))
        assert checked.rejections == [], (d.id, checked.rejections)
        assert len(checked.value) == 2, d.id
        assert {REGISTRY.device_list[c].id for c in checked.up_device} == {d.id}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_json_null_message_is_refused(fmt: str) -> None:
    _run(fmt, TOPIC_OF[fmt](DEVICES[0]), b"null")


# --- fuzz, per format ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
@FUZZ
@given(data=st.data())
def test_fuzz_random_bytes(fmt: str, data: st.DataObject) -> None:
    topic = data.draw(topics(fmt))
    payload = data.draw(st.binary(max_size=300))
    _run(fmt, topic, payload)


@pytest.mark.parametrize("fmt", list(FORMATS))
@FUZZ
@given(data=st.data())
def test_fuzz_random_json_documents(fmt: str, data: st.DataObject) -> None:
    topic = data.draw(topics(fmt))
    document = data.draw(json_values.filter(lambda v: v is not None))
    _run(fmt, topic, orjson.dumps(document))


@pytest.mark.parametrize("fmt", list(FORMATS))
@FUZZ
@given(data=st.data())
def test_fuzz_truncated_examples(fmt: str, data: st.DataObject) -> None:
    d = data.draw(devices)
    whole = orjson.dumps(_example(fmt, d), option=orjson.OPT_INDENT_2)
    cut = data.draw(st.integers(0, len(whole) - 1))
    checked = _run(fmt, TOPIC_OF[fmt](d), whole[:cut])
    assert [r.reason for r in checked.rejections] == [Reason.MALFORMED_JSON]


@pytest.mark.parametrize("fmt", list(FORMATS))
@FUZZ_MORE
@given(data=st.data())
def test_fuzz_plausible_documents(fmt: str, data: st.DataObject) -> None:
    topic, payload = data.draw(plausible(fmt))
    _run(fmt, topic, payload)


# --- oversized -----------------------------------------------------------------------------------


def _big(fmt: str, d: Device, n: int, value: object) -> object:
    """A message of the format carrying `n` records, values, or receptions."""
    example: Any = _example(fmt, d)
    many = {f"{d.sensors[0]}_{i}": value for i in range(n)} | {d.sensors[0]: value}
    receptions = [{"gatewayId": f"gw{i}", "rssi": -120 + i % 90, "snr": 1.5} for i in range(n)]
    if fmt == "plain":
        return [
            {"ts": NOW_S * 1000 - i * 1000, "readings": {d.sensors[0]: value}} for i in range(n)
        ]
    if fmt == "senml":
        head = {"bn": f"{d.id}/", "bt": NOW_S, "n": d.sensors[0], "v": value}
        return [head, *({"n": d.sensors[0], "t": -i, "v": value} for i in range(1, n))]
    if fmt == "chirpstack":
        return example | {"object": many, "rxInfo": receptions}
    example["uplink_message"]["decoded_payload"] = many
    example["uplink_message"]["rx_metadata"] = [
        {"gateway_ids": {"gateway_id": r["gatewayId"]}, "rssi": r["rssi"], "snr": r["snr"]}
        for r in receptions
    ]
    return example


@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(max_examples=3, deadline=None, database=None)
@given(
    d=devices,
    n=st.integers(1000, 5000),
    value=st.sampled_from([3.5, 1, "3.5", None, True, 1e308, [1]]),
)
def test_fuzz_oversized_packs(fmt: str, d: Device, n: int, value: object) -> None:
    payload = orjson.dumps(_big(fmt, d, n, value))
    checked = _run(fmt, TOPIC_OF[fmt](d), payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        assert [r.reason for r in checked.rejections] == [Reason.OVERSIZED]


def test_a_5000_record_senml_pack_is_5000_readings() -> None:
    d = REGISTRY.devices["sf-rlv-01"]
    payload = orjson.dumps(_big("senml", d, 5000, 3.5))
    assert len(payload) < MAX_PAYLOAD_BYTES
    checked = _run("senml", TOPIC_OF["senml"](d), payload)
    assert checked.rejections == []
    assert len(checked.value) == 5000
    assert sorted(checked.ts_ns) == [NOW_NS - i * 1_000_000_000 for i in range(4999, -1, -1)]
    assert checked.up_ts_ns == [NOW_NS], "one pack, one uplink, at its latest time"


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_payload_over_the_limit_is_refused_unread(fmt: str) -> None:
    d = REGISTRY.devices["sn-aq-01"]
    payload = orjson.dumps(_big(fmt, d, 20_000, 12.5))
    assert len(payload) > MAX_PAYLOAD_BYTES
    checked = _run(fmt, TOPIC_OF[fmt](d), payload)
    [rejection] = checked.rejections
    assert rejection.reason is Reason.OVERSIZED
    assert str(MAX_PAYLOAD_BYTES) in rejection.detail

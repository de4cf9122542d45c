"""SenML JSON packs (RFC 8428): name, time, unit and value resolution, and what is refused."""

from __future__ import annotations

import math
import tomllib

import orjson
import pytest

from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.settings import Settings
from core.uplinks import NO_FCNT
from ingest.decoders import FORMATS, Router
from ingest.decoders.senml import decode
from ingest.process import process
from ingest.reasons import Reason
from ingest.validate import Checked, Validator

from .helpers import shipped_registry

NOW_S = 1_704_110_400  # 2024-01-01T12:00:00Z, when ingest received the pack
NOW_NS = NOW_S * 1_000_000_000
S = 1_000_000_000  # nanoseconds per second
TOPIC = "pilots/santa-fe/sf-rlv-01/senml"
WX_TOPIC = "pilots/santa-fe/sf-wx-01/senml"
TOPIC_RG = "pilots/santa-fe/sf-rg-01/senml"
SF_RLV_01_EUI = "a840410001010101"  # core/registry.toml

#: RFC 8428 §5.1.2 "Multiple Data Points", as printed.
RFC_MULTIPLE_DATA_POINTS = b"""[
  {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320067464e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""

#: The same shape from a registered river gauge: its EUI as the name prefix, a water temperature
#: in the SenML unit code, and the level every ten minutes over the last half hour.
GAUGE_PACK = [
    {
        "bn": f"urn:dev:mac:{SF_RLV_01_EUI}:",
        "bt": NOW_S,
        "bu": "m",
        "bver": 5,
        "n": "water_temp",
        "u": "Cel",
        "v": 24.5,
    },
    {"n": "level", "t": -1800, "v": 3.5},
    {"n": "level", "t": -1200, "v": 3.5625},
    {"n": "level", "t": -600, "v": 3.625},
    {"n": "level", "v": 3.75},
]


def _registry_with_fill_ratio() -> Registry:
    """The shipped fleet, with sf-rlv-01 also reporting `fill`, a ratio (0 to 1)."""
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    raw["sensors"]["fill"] = {"name": "Fill", "unit": "ratio", "min": 0.0, "max": 1.0}
    device = next(d for d in raw["pilots"]["santa-fe"]["devices"] if d["id"] == "sf-rlv-01")
    device["sensors"] = [*raw["kinds"][device["kind"]]["sensors"], "fill"]
    return build_registry(raw, DEFAULT_REGISTRY_PATH)


def _validator(registry: Registry | None = None) -> Validator:
    return Validator(registry or shipped_registry(), max_future_s=600, max_age_days=3650)


def _process(
    topic: str, pack: object, received_ns: int = NOW_NS, registry: Registry | None = None
) -> Checked:
    payload = pack if isinstance(pack, bytes) else orjson.dumps(pack)
    return process(
        Router(Settings().ingest_routes),
        _validator(registry),
        topic,
        payload,
        received_ns,
        max_payload_bytes=Settings().ingest_max_payload_bytes,
    )


def _accepted(
    checked: Checked, registry: Registry | None = None
) -> dict[tuple[str, str, int], float]:
    """Accepted readings by (device id, sensor id, ts_ns)."""
    reg = registry or shipped_registry()
    return {
        (reg.device_list[d].id, reg.sensor_list[s].id, t): v
        for t, d, s, v in zip(
            checked.ts_ns, checked.device, checked.sensor, checked.value, strict=True
        )
    }


def _reasons(checked: Checked) -> list[tuple[Reason, str | None]]:
    return [(r.reason, r.sensor) for r in checked.rejections]


def test_the_route_table_sends_senml_topics_here() -> None:
    assert FORMATS["senml"] is decode
    assert Router(Settings().ingest_routes).decoder_for(TOPIC) is decode


# --- resolution (RFC 8428 §4.6) ------------------------------------------------------------------


def test_the_rfc_multiple_data_points_example_resolves_to_one_frame_per_instant() -> None:
    out = decode(TOPIC, RFC_MULTIPLE_DATA_POINTS)
    assert out.rejections == []
    bt = 1_320_067_464  # 2011-10-31T13:24:24Z
    dev = "10e2073a01080063"
    got = [(f.ts_ns, f.values, f.units, f.claimed_device) for f in out.frames]
    assert got == [
        # voltage and the last current share the base time; the name prefix is the device
        (bt * S, {"voltage": 120.1, "current": 1.7}, {"voltage": "V", "current": "A"}, dev),
        ((bt - 5) * S, {"current": 1.2}, {"current": "A"}, dev),
        ((bt - 4) * S, {"current": 1.3}, {"current": "A"}, dev),
        ((bt - 3) * S, {"current": 1.4}, {"current": "A"}, dev),
        ((bt - 2) * S, {"current": 1.5}, {"current": "A"}, dev),
        ((bt - 1) * S, {"current": 1.6}, {"current": "A"}, dev),
    ]
    assert all(f.device == "sf-rlv-01" and f.pilot == "santa-fe" for f in out.frames)
    assert all(f.relative_ns == 0 and f.seq is None for f in out.frames)


def test_a_registered_gauge_pack_becomes_readings_and_one_uplink() -> None:
    checked = _process(TOPIC, GAUGE_PACK)
    assert checked.rejections == []
    assert _accepted(checked) == {
        ("sf-rlv-01", "water_temp", NOW_NS): 24.5,  # Cel is the registry's °C
        ("sf-rlv-01", "level", NOW_NS - 1800 * S): 3.5,
        ("sf-rlv-01", "level", NOW_NS - 1200 * S): 3.5625,
        ("sf-rlv-01", "level", NOW_NS - 600 * S): 3.625,
        ("sf-rlv-01", "level", NOW_NS): 3.75,  # bu "m" applies
    }
    # One pack is one transmission: one uplink, at the pack's latest time.
    assert checked.up_ts_ns == [NOW_NS]
    assert checked.up_fcnt == [NO_FCNT]  # SenML has no frame counter
    assert all(math.isnan(r) for r in checked.up_rssi)
    assert checked.up_gateway == [""]


def test_base_value_is_added_and_applies_to_later_records() -> None:
    out = decode(
        TOPIC,
        orjson.dumps(
            [
                {"bn": "sf-rlv-01/", "bt": NOW_S, "bv": 3.5, "n": "level", "v": 0.25},
                {"n": "level", "t": -600, "v": 0.125},
                {"bv": 0, "n": "water_temp", "v": 21.0},
            ]
        ),
    )
    assert [(f.ts_ns, f.values) for f in out.frames] == [
        (NOW_NS, {"level": 3.75, "water_temp": 21.0}),
        (NOW_NS - 600 * S, {"level": 3.625}),
    ]


def test_base_name_is_a_prefix_that_later_records_share_until_changed() -> None:
    out = decode(
        TOPIC,
        orjson.dumps(
            [
                {"bn": f"urn:dev:mac:{SF_RLV_01_EUI}:", "bt": NOW_S, "n": "level", "v": 3.0},
                {"bn": "sf-rlv-01/", "n": "water_temp", "v": 20.0},
                {"n": "battery_v", "v": 3.9},
            ]
        ),
    )
    assert out.rejections == []
    assert [(f.claimed_device, f.values) for f in out.frames] == [
        (SF_RLV_01_EUI, {"level": 3.0}),
        ("sf-rlv-01", {"water_temp": 20.0, "battery_v": 3.9}),
    ]


def test_record_unit_overrides_the_base_unit() -> None:
    out = decode(
        WX_TOPIC,
        orjson.dumps(
            [
                {"bu": "Cel", "n": "temperature", "v": 27.25},
                {"n": "humidity", "u": "%RH", "v": 80},
                {"n": "pressure", "u": "hPa", "v": 1013.25},
            ]
        ),
    )
    [frame] = out.frames
    assert frame.units == {"temperature": "°C", "humidity": "%", "pressure": "hPa"}


def test_records_at_different_times_are_separate_frames_and_the_same_time_merges() -> None:
    pack = [
        {"bn": "sf-rlv-01/", "bt": NOW_S, "n": "level", "v": 3.0},
        {"n": "water_temp", "t": -600, "v": 20.0},
        {"n": "water_temp", "v": 21.0},
        {"n": "level", "t": -600, "v": 2.75},
        {"n": "level", "t": 0.5, "v": 3.25},
    ]
    out = decode(TOPIC, orjson.dumps(pack))
    assert [(f.ts_ns, f.values) for f in out.frames] == [
        (NOW_NS, {"level": 3.0, "water_temp": 21.0}),
        (NOW_NS - 600 * S, {"water_temp": 20.0, "level": 2.75}),
        (NOW_NS + S // 2, {"level": 3.25}),
    ]


# --- relative times (RFC 8428 §4.5.3) ------------------------------------------------------------


def test_times_below_2_to_the_28_are_relative_to_when_the_pack_is_received() -> None:
    pack = [
        {"bn": "sf-rlv-01/", "n": "level", "v": 3.0},  # no time: "now"
        {"n": "level", "t": -300, "v": 2.75},
        {"bt": 100, "n": "water_temp", "t": -50, "v": 20.0},  # bt + t = 50 s ahead
    ]
    out = decode(TOPIC, orjson.dumps(pack))
    assert [(f.ts_ns, f.relative_ns) for f in out.frames] == [
        (None, 0),
        (None, -300 * S),
        (None, 50 * S),
    ]
    checked = _process(TOPIC, pack)
    assert checked.rejections == []
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.0,
        ("sf-rlv-01", "level", NOW_NS - 300 * S): 2.75,
        ("sf-rlv-01", "water_temp", NOW_NS + 50 * S): 20.0,
    }


def test_the_same_relative_pack_received_later_is_a_later_reading() -> None:
    pack = [{"n": "level", "t": -60, "v": 3.0}]
    first = _process(TOPIC, pack)
    later = _process(TOPIC, pack, received_ns=NOW_NS + 3600 * S)
    assert first.ts_ns == [NOW_NS - 60 * S]
    assert later.ts_ns == [NOW_NS + 3540 * S]


def test_the_relative_limit_is_2_to_the_28_seconds() -> None:
    out = decode(
        TOPIC,
        orjson.dumps(
            [{"n": "level", "t": 2**28 - 1, "v": 1.0}, {"n": "level", "t": 2**28, "v": 2.0}]
        ),
    )
    assert [(f.ts_ns, f.relative_ns) for f in out.frames] == [
        (None, (2**28 - 1) * S),
        (2**28 * S, 0),  # 1978-07-04T21:24:16Z, absolute
    ]


def test_a_relative_time_too_far_ahead_is_refused() -> None:
    checked = _process(TOPIC, [{"n": "level", "t": 601, "v": 1.0}, {"n": "level", "v": 2.0}])
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 2.0}
    assert _reasons(checked) == [(Reason.FUTURE_TIMESTAMP, None)]


# --- values SenML has that a numeric store has not -----------------------------------------------


def test_string_boolean_data_and_sum_only_records_are_refused_and_the_rest_kept() -> None:
    pack = [
        {"bn": "sf-rlv-01/", "n": "level", "v": 3.5},
        {"n": "status", "vs": "ok"},
        {"n": "door_open", "vb": True},
        {"n": "image", "vd": "aGk"},
        {"n": "rain", "s": 12.5},
        {"n": "water_temp", "v": 24.0},
    ]
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.5,
        ("sf-rlv-01", "water_temp", NOW_NS): 24.0,
    }
    assert _reasons(checked) == [
        (Reason.UNSUPPORTED_VALUE, "status"),
        (Reason.UNSUPPORTED_VALUE, "door_open"),
        (Reason.UNSUPPORTED_VALUE, "image"),
        (Reason.UNSUPPORTED_VALUE, "rain"),
    ]
    details = [r.detail for r in checked.rejections]
    named = zip(
        details, ["status", "door_open", "image", "rain"], ["vs", "vb", "vd", "s"], strict=True
    )
    for detail, name, kind in named:
        assert detail.startswith(f"sf-rlv-01/{name}: {kind} values are not stored"), detail


def test_a_value_that_is_not_a_number_is_non_numeric_for_that_sensor() -> None:
    checked = _process(TOPIC, [{"n": "level", "v": "3.5"}, {"n": "water_temp", "v": 20}])
    assert _accepted(checked) == {("sf-rlv-01", "water_temp", NOW_NS): 20.0}
    assert _reasons(checked) == [(Reason.NON_NUMERIC, "level")]


# --- versions (RFC 8428 §4.4) --------------------------------------------------------------------


@pytest.mark.parametrize("version", [5, 10])
def test_known_versions_are_read(version: int) -> None:
    checked = _process(TOPIC, [{"bver": version, "n": "level", "v": 3.0}])
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.0}


def test_a_newer_version_refuses_the_whole_pack() -> None:
    pack = [
        {"bn": "sf-rlv-01/", "n": "level", "v": 3.5},
        {"n": "status", "vs": "ok"},
        {"bver": 11, "n": "water_temp", "v": 20.0},
        {"n": "battery_v", "v": 3.9},
    ]
    out = decode(TOPIC, orjson.dumps(pack))
    assert out.frames == []
    [rejection] = out.rejections
    assert rejection.reason is Reason.MALFORMED_STRUCTURE
    assert "11" in rejection.detail
    checked = _process(TOPIC, pack)
    assert checked.value == []
    assert checked.up_ts_ns == []
    assert _reasons(checked) == [(Reason.MALFORMED_STRUCTURE, None)]


def test_an_unknown_must_understand_field_refuses_the_pack() -> None:
    checked = _process(TOPIC, [{"n": "level", "v": 3.0, "ex_": 1}])
    assert checked.value == []
    assert _reasons(checked) == [(Reason.MALFORMED_STRUCTURE, None)]


def test_unknown_fields_without_underscore_are_ignored() -> None:
    checked = _process(TOPIC, [{"n": "level", "v": 3.0, "ut": 600, "extra": "x"}])
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.0}
    assert checked.rejections == []


# --- units ---------------------------------------------------------------------------------------


def test_senml_unit_codes_are_the_registrys_units() -> None:
    pack = [
        {"bn": "sf-wx-01/", "n": "temperature", "u": "Cel", "v": 27.25},
        {"n": "humidity", "u": "%RH", "v": 80},
        {"n": "pressure", "u": "hPa", "v": 1013.25},
        {"n": "battery_v", "u": "V", "v": 3.875},
    ]
    checked = _process(WX_TOPIC, pack)
    assert checked.rejections == []
    assert _accepted(checked) == {
        ("sf-wx-01", "temperature", NOW_NS): 27.25,
        ("sf-wx-01", "humidity", NOW_NS): 80.0,
        ("sf-wx-01", "pressure", NOW_NS): 1013.25,
        ("sf-wx-01", "battery_v", NOW_NS): 3.875,
    }


def test_a_wrong_unit_refuses_that_reading_only() -> None:
    pack = [
        {"bn": "sf-wx-01/", "n": "temperature", "u": "K", "v": 300.4},
        {"n": "humidity", "u": "%RH", "v": 80},
    ]
    checked = _process(WX_TOPIC, pack)
    assert _accepted(checked) == {("sf-wx-01", "humidity", NOW_NS): 80.0}
    [rejection] = checked.rejections
    assert (rejection.reason, rejection.sensor) == (Reason.UNIT_MISMATCH, "temperature")
    assert "'K'" in rejection.detail
    assert "°C" in rejection.detail


def test_a_base_unit_that_does_not_fit_a_later_sensor_refuses_that_sensor() -> None:
    pack = [
        {"bn": "sf-wx-01/", "bu": "Cel", "n": "temperature", "v": 27},
        {"n": "humidity", "v": 80},
    ]
    checked = _process(WX_TOPIC, pack)
    assert _accepted(checked) == {("sf-wx-01", "temperature", NOW_NS): 27.0}
    assert _reasons(checked) == [(Reason.UNIT_MISMATCH, "humidity")]


def test_the_unit_slash_is_a_ratio_not_a_count() -> None:  # RFC 8428 §12.1
    # rain_tips counts tips (`count` in the registry): a ratio is not a count.
    checked = _process(TOPIC_RG, [{"n": "rain_tips", "u": "/", "v": 12}])
    assert checked.value == []
    [rejection] = checked.rejections
    assert (rejection.reason, rejection.sensor) == (Reason.UNIT_MISMATCH, "rain_tips")
    assert "'ratio'" in rejection.detail
    # A sensor whose registry unit is `ratio` takes it.
    registry = _registry_with_fill_ratio()
    checked = _process(TOPIC, [{"n": "fill", "u": "/", "v": 0.25}], registry=registry)
    assert checked.rejections == []
    assert _accepted(checked, registry) == {("sf-rlv-01", "fill", NOW_NS): 0.25}


# --- records that share a name and a time --------------------------------------------------------


def test_a_position_packed_next_to_a_measurement_does_not_overwrite_it() -> None:
    # RFC 8428 §5.1.3 packs a position under the measurement's name and time, told apart by unit.
    pack = [
        {"bn": "sf-rlv-01/level", "bt": NOW_S, "u": "m", "v": 3.25},
        {"u": "lat", "v": -31.6495},
        {"u": "lon", "v": -60.6942},
        {"t": 600, "u": "lon", "v": -60.6942},
        {"t": 600, "u": "lat", "v": -31.6495},
        {"t": 600, "u": "m", "v": 3.5},
    ]
    checked = _process(TOPIC, pack, received_ns=NOW_NS + 600 * S)
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.25,
        ("sf-rlv-01", "level", NOW_NS + 600 * S): 3.5,
    }
    assert _reasons(checked) == [(Reason.UNIT_MISMATCH, "level")] * 4
    assert sorted(r.detail.split("'")[1] for r in checked.rejections) == [
        "lat",
        "lat",
        "lon",
        "lon",
    ]


def test_a_second_value_for_a_sensor_at_the_same_time_is_a_duplicate_record() -> None:
    pack = [
        {"bn": "sf-rlv-01/", "bt": NOW_S, "n": "level", "u": "m", "v": 3.25},
        {"n": "level", "u": "m", "v": 3.5},
        {"n": "water_temp", "v": 21.0},
    ]
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.25,  # the first one
        ("sf-rlv-01", "water_temp", NOW_NS): 21.0,
    }
    [rejection] = checked.rejections
    assert (rejection.reason, rejection.sensor) == (Reason.DUPLICATE_RECORD, "level")
    assert "3.5" in rejection.detail
    assert "3.25" in rejection.detail


def test_an_identical_repeat_is_a_duplicate_record_too() -> None:
    pack = [{"n": "level", "v": 3.25}, {"n": "level", "v": 3.25}]
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.25}
    [rejection] = checked.rejections
    assert rejection.reason is Reason.DUPLICATE_RECORD
    assert "repeats" in rejection.detail


@pytest.mark.parametrize(
    "pack",
    [
        [
            {"n": "level", "v": 3.25},
            {"n": "level", "u": "m", "v": 3.5},
        ],  # no unit is the registry's
        [{"n": "level", "u": "m", "v": 3.25}, {"n": "level", "v": 3.5}],
        # two spellings of the same device
        [
            {"n": "sf-rlv-01/level", "v": 3.25},
            {"n": f"urn:dev:mac:{SF_RLV_01_EUI}:level", "v": 3.5},
        ],
        [{"n": "level", "v": 3.25}, {"n": "level", "t": 0.0, "v": 3.5}],  # the same relative time
    ],
)
def test_the_same_reading_stated_two_ways_is_a_duplicate_record(pack: list[object]) -> None:
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.25}
    assert _reasons(checked) == [(Reason.DUPLICATE_RECORD, "level")]


def test_a_wrong_unit_first_does_not_keep_out_the_right_one() -> None:
    pack = [{"n": "level", "u": "lat", "v": -31.6495}, {"n": "level", "u": "m", "v": 3.25}]
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.25}
    assert _reasons(checked) == [(Reason.UNIT_MISMATCH, "level")]


def test_a_refused_first_value_does_not_make_the_second_a_duplicate() -> None:
    pack = [{"n": "level", "v": 99.0}, {"n": "level", "v": 3.25}]  # 99 m is out of range
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.25}
    assert _reasons(checked) == [(Reason.OUT_OF_RANGE, "level")]


# --- whose pack is it ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_name",
    [
        f"urn:dev:mac:{SF_RLV_01_EUI}:",
        f"urn:dev:mac:{SF_RLV_01_EUI.upper()}:",
        f"{SF_RLV_01_EUI}/",
        "sf-rlv-01/",
        "sf-rlv-01:",
        "",
    ],
)
def test_a_name_prefix_of_the_topics_device_is_accepted(base_name: str) -> None:
    checked = _process(TOPIC, [{"bn": base_name, "n": "level", "v": 3.0}])
    assert checked.rejections == []
    assert _accepted(checked) == {("sf-rlv-01", "level", NOW_NS): 3.0}


@pytest.mark.parametrize(
    "base_name",
    [
        "sf-rlv-02/",
        "urn:dev:mac:a840410001010201:",  # sf-rlv-02's EUI
        "urn:dev:ow:10e2073a01080063:",  # the RFC's example device
        "2001:db8::2/",  # RFC 8428 §5.1.6: a name prefix that is an address
    ],
)
def test_a_name_prefix_naming_another_device_is_refused(base_name: str) -> None:
    checked = _process(TOPIC, [{"bn": base_name, "n": "level", "v": 3.0}])
    assert checked.value == []
    assert checked.up_ts_ns == []
    assert _reasons(checked) == [(Reason.DEVICE_MISMATCH, None)]


def test_only_the_records_naming_another_device_are_refused() -> None:
    pack = [
        {"n": "level", "v": 3.0},
        {"bn": "sf-rlv-02/", "n": "level", "v": 4.0},
        {"bn": "", "n": "water_temp", "v": 20.0},
    ]
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {
        ("sf-rlv-01", "level", NOW_NS): 3.0,
        ("sf-rlv-01", "water_temp", NOW_NS): 20.0,
    }
    assert _reasons(checked) == [(Reason.DEVICE_MISMATCH, None)]
    assert "sf-rlv-02" in checked.rejections[0].detail


def test_the_rfc_example_on_a_registered_topic_is_refused_as_another_device() -> None:
    checked = _process(TOPIC, RFC_MULTIPLE_DATA_POINTS)
    assert checked.value == []
    assert _reasons(checked) == [(Reason.DEVICE_MISMATCH, None)] * 6


# --- malformed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"n": "level", "v": 3.0}, "got object"),
        ([], "got array"),
        ("level=3", "got string"),
        (3.0, "got float"),
    ],
)
def test_a_pack_must_be_a_non_empty_array(document: object, words: str) -> None:
    checked = _process(TOPIC, document)
    assert checked.value == []
    [rejection] = checked.rejections
    assert rejection.reason is Reason.MALFORMED_STRUCTURE
    assert "non-empty array" in rejection.detail
    assert words in rejection.detail


@pytest.mark.parametrize("payload", [b"", b"[", b"[{]", b'[{"n": "level", "v": NaN}]', b"\xff"])
def test_malformed_json(payload: bytes) -> None:
    checked = _process(TOPIC, payload)
    assert _reasons(checked) == [(Reason.MALFORMED_JSON, None)]


@pytest.mark.parametrize(
    ("record", "words"),
    [
        ("level", "record is string"),
        (3, "record is int"),
        (None, "record is null"),
        ([{"n": "level", "v": 1.0}], "record is array"),
        ({"n": 5, "v": 1.0}, "`n` must be a string"),
        ({"n": "level", "t": "now", "v": 1.0}, "`t` must be a number"),
        ({"n": "level", "t": True, "v": 1.0}, "`t` must be a number"),
        ({"bt": "2024-01-01T12:00:00Z", "n": "level", "v": 1.0}, "`bt` must be a number"),
        ({"bn": 5, "n": "level", "v": 1.0}, "`bn` must be a string"),
        ({"bu": ["m"], "n": "level", "v": 1.0}, "`bu` must be a string"),
        ({"bv": True, "n": "level", "v": 1.0}, "`bv` must be a number"),
        ({"bs": "0", "n": "level", "v": 1.0}, "`bs` must be a number"),
        ({"bver": "10", "n": "level", "v": 1.0}, "`bver` must be an integer"),
        ({"bver": 10.0, "n": "level", "v": 1.0}, "`bver` must be an integer"),
        ({"n": "level"}, "level: no value"),
        ({"n": "sf-rlv-01/", "v": 1.0}, "names no sensor"),
        ({"v": 1.0}, "names no sensor"),
        pytest.param({"n": "level", "u": 5, "v": 1.0}, "`u` must be a string"),
    ],
)
def test_a_malformed_record_is_refused_and_the_rest_of_the_pack_kept(
    record: object, words: str
) -> None:
    pack = [{"n": "water_temp", "v": 20.0}, record, {"n": "battery_v", "v": 3.9}]
    checked = _process(TOPIC, pack)
    assert _accepted(checked) == {
        ("sf-rlv-01", "water_temp", NOW_NS): 20.0,
        ("sf-rlv-01", "battery_v", NOW_NS): 3.9,
    }
    [rejection] = checked.rejections
    assert rejection.reason is Reason.MALFORMED_STRUCTURE
    assert rejection.detail.startswith("record 1: ")
    assert words in rejection.detail


def test_a_record_that_repeats_a_field_refuses_the_pack_instead_of_losing_a_value() -> None:
    payload = (
        b'[{"bn": "urn:dev:mac:' + SF_RLV_01_EUI.encode() + b':", "n": "level", "v": 3.2},'
        b' {"n": "level", "t": -600, "v": 3.1, "v": 3.4}]'
    )
    checked = _process(TOPIC, payload)
    assert checked.value == []
    [rejection] = checked.rejections
    assert rejection.reason is Reason.MALFORMED_JSON
    assert "repeats the name 'v'" in rejection.detail


@pytest.mark.parametrize(
    "topic",
    ["pilots/santa-fe/senml", "pilots//sf-rlv-01/senml", "pilots/santa-fe/sf-rlv-01/senml/x", ""],
)
def test_bad_topic(topic: str) -> None:
    out = decode(topic, orjson.dumps([{"n": "level", "v": 1.0}]))
    assert out.frames == []
    [rejection] = out.rejections
    assert rejection.reason is Reason.BAD_TOPIC
    assert repr(topic) in rejection.detail

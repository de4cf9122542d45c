"""Readings to InfluxDB line protocol with the shipped registry's tags."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.readings import Readings
from core.store.lineprotocol import LineEncoder
from core.uplinks import NO_FCNT, NO_SF, Uplinks

from .helpers import shipped_registry


def _encode(rows: list[tuple[int, str, str, float]]) -> str:
    reg = shipped_registry()
    ts, dev, sen, val = zip(*rows, strict=True)
    readings = Readings.from_arrays(
        ts, reg.device_codes(list(dev)), reg.sensor_codes(list(sen)), val
    )
    return LineEncoder(reg).encode(readings).decode()


def test_exact_lines_for_a_small_batch() -> None:
    text = _encode(
        [
            (1_700_000_000_000_000_000, "sf-rlv-01", "level", 5.31),
            (1_700_000_000_000_000_000, "sf-rlv-01", "battery_v", 3.9),
            (1_700_000_600_000_000_000, "rs-wq-02", "dissolved_oxygen", 7.0),
            (1_700_000_600_000_000_000, "sn-aq-03", "pm25", 42.0),
            (1_700_000_600_000_000_000, "sf-wx-01", "temperature", -2.5),
        ]
    )
    sf_rlv = "readings,device=sf-rlv-01,kind=river_level,pilot=santa-fe"
    assert text.split("\n") == [
        f"{sf_rlv} level=5.31 1700000000000000000",
        f"{sf_rlv} battery_v=3.9 1700000000000000000",
        "readings,device=rs-wq-02,kind=water_quality,pilot=resistencia dissolved_oxygen=7.0"
        " 1700000600000000000",
        "readings,device=sn-aq-03,kind=air_quality,pilot=san-nicolas pm25=42.0 1700000600000000000",
        "readings,device=sf-wx-01,kind=weather,pilot=santa-fe temperature=-2.5 1700000600000000000",
    ]
    assert not text.endswith("\n")


def test_empty_batch_is_empty_bytes() -> None:
    assert LineEncoder(shipped_registry()).encode(Readings.empty()) == b""


def test_timestamps_before_the_epoch_keep_their_sign() -> None:
    line = _encode([(-1_000, "sf-rg-01", "rain", 0.2)])
    assert line.endswith(" rain=0.2 -1000")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        _encode([(1, "sf-rlv-01", "level", 1.0), (2, "sf-rlv-01", "level", bad)])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.sampled_from(["sf-rlv-01", "sn-aq-05", "rs-wx-01"]),
            st.sampled_from(["level", "pm25", "temperature", "battery_v"]),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_values_and_times_round_trip(rows: list[tuple[int, str, str, float]]) -> None:
    lines = _encode(rows).split("\n")
    assert len(lines) == len(rows)
    for line, (ts, device, sensor, value) in zip(lines, rows, strict=True):
        series, field, stamp = line.split(" ")
        assert f",device={device}," in series
        key, text = field.split("=")
        assert key == sensor
        assert float(text) == value
        assert math.copysign(1.0, float(text)) == math.copysign(1.0, value)
        assert not text.endswith("i")  # a float field, never an integer one
        assert int(stamp) == ts


# --- uplinks -------------------------------------------------------------------------------------

#: (device, ts_ns, received_ns, fcnt, rssi, snr, sf, gateway); absent: -1, NaN, NaN, 0, "".
UplinkRow = tuple[str, int, int, int, float, float, int, str]


def _encode_uplinks(rows: list[UplinkRow]) -> str:
    reg = shipped_registry()
    dev, ts, received, fcnt, rssi, snr, sf, gateway = zip(*rows, strict=True)
    uplinks = Uplinks.from_columns(
        ts_ns=ts,
        device=reg.device_codes(list(dev)),
        received_ns=received,
        fcnt=fcnt,
        rssi=rssi,
        snr=snr,
        sf=sf,
        gateway=gateway,
    )
    return LineEncoder(reg).encode_uplinks(uplinks).decode()


#: ChirpStack's documented uplink time 2022-07-18T09:34:15.775023242Z: 19191 days + 34455 s.
T0 = 1_658_136_855_775_023_242


def test_exact_uplink_lines() -> None:
    text = _encode_uplinks(
        [
            ("sf-rlv-01", T0, T0 + 250_000_000, 7, -36.0, 10.5, 11, "0016c001f153a14c"),
            ("rs-wq-01", T0, T0 + 1, 4, -35.0, 5.2, 7, "gtw1"),
        ]
    )
    assert text.split("\n") == [
        "uplinks,device=sf-rlv-01,kind=river_level,pilot=santa-fe received_ns=1658136856025023242i,"
        'fcnt=7i,rssi=-36.0,snr=10.5,sf=11i,gateway="0016c001f153a14c" 1658136855775023242',
        "uplinks,device=rs-wq-01,kind=water_quality,pilot=resistencia"
        ' received_ns=1658136855775023243i,fcnt=4i,rssi=-35.0,snr=5.2,sf=7i,gateway="gtw1"'
        " 1658136855775023242",
    ]
    assert not text.endswith("\n")


def test_absent_uplink_values_are_left_out() -> None:
    nan = math.nan
    text = _encode_uplinks(
        [
            # plain JSON: a frame counter, no radio metadata
            ("sf-rg-01", 1_000, 2_000, 3, nan, nan, NO_SF, ""),
            # SenML: nothing but the receive time
            ("sf-rg-01", 1_001, 2_000, NO_FCNT, nan, nan, NO_SF, ""),
            # a counter of 0 is a counter (LoRaWAN omits f_cnt when it is 0)
            ("sf-rg-01", 1_002, 2_000, 0, -120.0, nan, NO_SF, ""),
            ("sf-rg-01", 1_003, 2_000, 2**32 - 1, nan, -7.25, 12, ""),
        ]
    )
    prefix = "uplinks,device=sf-rg-01,kind=rain_gauge,pilot=santa-fe"
    assert text.split("\n") == [
        f"{prefix} received_ns=2000i,fcnt=3i 1000",
        f"{prefix} received_ns=2000i 1001",
        f"{prefix} received_ns=2000i,fcnt=0i,rssi=-120.0 1002",
        f"{prefix} received_ns=2000i,fcnt=4294967295i,snr=-7.25,sf=12i 1003",
    ]


def test_a_gateway_id_with_quote_and_backslash_is_escaped() -> None:
    gateway = 'gw "north" \\ roof\\'  # gw "north" \ roof\
    line = _encode_uplinks([("sn-aq-01", 5, 6, NO_FCNT, math.nan, math.nan, NO_SF, gateway)])
    assert line == (
        "uplinks,device=sn-aq-01,kind=air_quality,pilot=san-nicolas received_ns=6i,"
        'gateway="gw \\"north\\" \\\\ roof\\\\" 5'
    )


def test_empty_uplink_batch_is_empty_bytes() -> None:
    assert LineEncoder(shipped_registry()).encode_uplinks(Uplinks.empty()) == b""

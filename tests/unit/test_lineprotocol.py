"""Readings to InfluxDB line protocol with the shipped registry's tags."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.readings import Readings
from core.store.lineprotocol import LineEncoder

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
            (1_700_000_600_000_000_000, "sn-aq-03", "fcnt", 42.0),
            (1_700_000_600_000_000_000, "sf-wx-01", "temperature", -2.5),
        ]
    )
    sf_rlv = "readings,device=sf-rlv-01,kind=river_level,pilot=santa-fe"
    assert text.split("\n") == [
        f"{sf_rlv} level=5.31 1700000000000000000",
        f"{sf_rlv} battery_v=3.9 1700000000000000000",
        "readings,device=rs-wq-02,kind=water_quality,pilot=resistencia dissolved_oxygen=7.0"
        " 1700000600000000000",
        "readings,device=sn-aq-03,kind=air_quality,pilot=san-nicolas fcnt=42.0 1700000600000000000",
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

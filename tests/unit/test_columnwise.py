"""Packs checked column-wise give exactly what record-by-record checking gives.

`ingest.process.process_batch` reads simple SenML packs straight into columns and checks them
with numpy (`ingest.columnwise`); every other message goes through its decoder and the
validator. Generated batches of packs, good and bad in every way a device can make them, must
come out the same both ways: the same readings in the same order, the same uplinks, the same
refusals with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.readings import Readings
from core.uplinks import Uplinks
from ingest.columnwise import check_packs
from ingest.decoders import Packs, Router, default_routes
from ingest.decoders.senml import read_pack
from ingest.process import columns, process, process_batch
from ingest.validate import Validator

from .helpers import shipped_registry

NOW_S = 1_704_110_400
NOW_NS = NOW_S * 1_000_000_000
MAX_PAYLOAD = 1 << 20
REGISTRY = shipped_registry()
ROUTER = Router(default_routes())
TOPICS = [
    "pilots/santa-fe/sf-wx-01/senml",
    "pilots/santa-fe/sf-wx-02/senml",
    "pilots/santa-fe/sf-rlv-01/senml",
    "pilots/resistencia/sf-wx-01/senml",  # wrong pilot
    "pilots/santa-fe/nobody/senml",  # unknown device
    "pilots/santa-fe/sf-wx-01/up",  # another format
    "pilots/santa-fe/senml",  # not a pack topic
]


@dataclass
class Message:
    topic: str
    payload: bytes
    received_ns: int


def validator() -> Validator:
    return Validator(REGISTRY, max_future_s=300, max_age_days=30)


# -- packs a device could send ------------------------------------------------------------------

good_names = st.sampled_from(["temperature", "humidity", "battery_v"])
names = st.sampled_from(
    [
        "pressure",  # 850-1100 hPa: the good numbers are out of its range
        "level",  # not a weather station's
        "rain_tips",
        "nonsense",
        "sf-wx-01/temperature",
        "sf-wx-02/humidity",
        "urn:dev:ow:a840410001030101:pressure",  # sf-wx-01's EUI
        "a:b:",
        "",
    ]
)
#: In every sensor's range of a weather station (humidity 0-100, pressure 850-1100 aside).
good_numbers = st.one_of(
    st.floats(min_value=0, max_value=5, allow_nan=False), st.integers(min_value=0, max_value=5)
)
numbers = st.one_of(
    st.floats(min_value=-20, max_value=1200, allow_nan=False),
    st.integers(min_value=-20, max_value=1200),
    st.sampled_from([2**53 + 1, 2**63, -(2**63), 1e300, -0.0, 5e-324, 900.0, 1100]),
)
raw_numbers = st.sampled_from(["1e400", "-1e400", "1E2", "12345678901234567890"])
good_times = st.one_of(
    st.integers(min_value=-86_400, max_value=0),
    st.floats(min_value=-86_400, max_value=0, allow_nan=False),
)
times = st.one_of(
    st.floats(min_value=-7200, max_value=600, allow_nan=False),
    st.floats(min_value=NOW_S - 40 * 86_400, max_value=NOW_S + 900, allow_nan=False),
    st.sampled_from([NOW_S + 0.5e-9, 1e20, -1e20, 2**28, 2**28 - 0.25, NOW_S + 0.123456789]),
)
units = st.sampled_from([None, "Cel", "%RH", "hPa", "V", "m", "%"])
odd_members = st.sampled_from(
    [
        ("vs", "text"),
        ("vb", True),
        ("s", 1.0),
        ("ut", 60),
        ("x_", 1),
        ("foo", 1),
        ("v", None),
        ("v", "3.5"),
        ("v", False),
        ("t", "now"),
        ("n", 7),
        ("u", 3),
        ("u", None),
        ("bv", 1.5),
        ("bt", NOW_S),
        ("bn", "sf-wx-01/"),
        ("bu", None),
        ("bver", 11),
        ("bs", 2.0),
    ]
)


def sometimes(draw: st.DrawFn, one_in: int) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


UNITS = {"temperature": "Cel", "humidity": "%RH", "pressure": "hPa", "battery_v": "V"}


def js(value: object) -> str:
    return orjson.dumps(value).decode()


@st.composite
def bases(draw: st.DrawFn, spoil: int) -> list[tuple[str, str]]:
    """The base fields of a pack's first record."""
    members: list[tuple[str, str]] = []
    if not sometimes(draw, 4):
        bn = ["sf-wx-01/", "urn:dev:ow:a840410001030101:", ""]
        if sometimes(draw, spoil):
            bn += ["urn:dev:ow:x:", "a:", "sf-wx-02/"]
        members.append(("bn", js(draw(st.sampled_from(bn)))))
    if not sometimes(draw, 4):
        members.append(("bt", js(draw(st.sampled_from([NOW_S, NOW_S - 3600.25, 0, 1e9, -5])))))
    if sometimes(draw, 3 * spoil):
        members.append(("bu", js(draw(units.filter(lambda u: u is not None)))))
    if sometimes(draw, 6):
        members.append(("bv", js(draw(st.sampled_from([0.5, 2, -1.0])))))
    if sometimes(draw, 6):
        members.append(("bver", js(draw(st.sampled_from([5, 10, 11])))))
    return members


@st.composite
def records(draw: st.DrawFn, first: bool, spoil: int) -> list[tuple[str, str]]:
    """One record as (name, JSON text of its value) pairs, names possibly repeated.

    Each field is drawn from what a good device sends, or one time in `spoil` from anything.
    """
    members = draw(bases(spoil)) if first else []
    name = ""
    if not sometimes(draw, spoil * 2):
        name = draw(names if sometimes(draw, spoil) else good_names)
        members.append(("n", js(name)))
    if not sometimes(draw, spoil * 4):
        if sometimes(draw, spoil * 4):
            members.append(("v", draw(raw_numbers)))
        else:
            members.append(("v", js(draw(numbers if sometimes(draw, spoil) else good_numbers))))
    if not sometimes(draw, 20):  # without a time, at the base time
        members.append(("t", js(draw(times if sometimes(draw, spoil) else good_times))))
    if sometimes(draw, 5):
        unit = draw(units) if sometimes(draw, spoil) else UNITS.get(name.split("/")[-1])
        if unit is not None:
            members.append(("u", js(unit)))
    if sometimes(draw, spoil * 3):
        key, value = draw(odd_members)
        members.append((key, js(value)))
    if sometimes(draw, spoil * 6) and members:
        members.append(members[0])  # a name repeated in one object
    return members


@st.composite
def packs(draw: st.DrawFn) -> bytes:
    """A pack's bytes: mostly well formed, sometimes not JSON or not an array of objects."""
    if sometimes(draw, 40):
        return draw(st.sampled_from([b"", b"[]", b"{}", b"[1,2]", b"[{}", b"null", b'"x"']))
    spoil = draw(st.sampled_from([1000, 50, 10, 2]))
    count = draw(st.integers(1, 12))
    body = [draw(records(True, spoil))] + [draw(records(False, spoil)) for _ in range(count - 1)]
    text = ",".join("{" + ",".join(f'"{k}":{v}' for k, v in r) + "}" for r in body)
    return f"[{text}]".encode()


@st.composite
def batches(draw: st.DrawFn) -> list[Message]:
    size = draw(st.integers(1, 6))
    return [
        Message(
            draw(st.sampled_from(TOPICS)) if sometimes(draw, 6) else TOPICS[0],
            draw(packs()),
            NOW_NS + draw(st.integers(0, 3)) * 1_000_000_000,
        )
        for _ in range(size)
    ]


def one_by_one(batch: list[Message]) -> tuple[Readings, Uplinks, list[list[object]]]:
    v = validator()
    checks = [
        (
            process(ROUTER, v, m.topic, m.payload, m.received_ns, max_payload_bytes=MAX_PAYLOAD),
            m.received_ns,
        )
        for m in batch
    ]
    readings, uplinks, _ = columns(checks)
    return readings, uplinks, [[*map(_words, c.rejections)] for c, _ in checks]


def _words(r: object) -> object:
    return (r.reason, r.detail, r.sensor, r.records)  # type: ignore[attr-defined]


def in_record_order(readings: Readings, counts: list[int]) -> Readings:
    """Each message's readings by instant and sensor, messages kept in order.

    Within a message the order is free (a message never gives a point twice: the second is
    refused), so the column-wise path keeps record order where the frames group by instant.
    Across messages it is not: a later message's reading of a point overwrites an earlier one.
    """
    message = np.repeat(np.arange(len(counts)), counts)
    return readings.take(np.lexsort((readings.sensor, readings.ts_ns, message)))


def assert_same_readings(a: Readings, b: Readings, counts: list[int]) -> None:
    a, b = in_record_order(a, counts), in_record_order(b, counts)
    for column in ("ts_ns", "device", "sensor", "value"):
        left, right = getattr(a, column), getattr(b, column)
        assert left.dtype == right.dtype, column
        assert np.array_equal(left, right), column
    assert np.array_equal(np.signbit(a.value), np.signbit(b.value))  # -0.0 stays -0.0


def assert_same_uplinks(a: Uplinks, b: Uplinks) -> None:
    for column in ("ts_ns", "device", "received_ns", "fcnt", "sf", "gateway"):
        assert np.array_equal(getattr(a, column), getattr(b, column)), column
    for column in ("rssi", "snr"):
        assert np.array_equal(getattr(a, column), getattr(b, column), equal_nan=True), column


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_a_batch_checked_column_wise_is_what_record_by_record_checking_gives(
    batch: list[Message],
) -> None:
    readings, uplinks, refusals = one_by_one(batch)
    done = process_batch(ROUTER, validator(), batch, max_payload_bytes=MAX_PAYLOAD)
    assert done.accepted == _per_message(batch)
    assert_same_readings(done.readings, readings, done.accepted)
    assert_same_uplinks(done.uplinks, uplinks)
    assert [[*map(_words, r)] for r in done.rejections] == refusals


def _per_message(batch: list[Message]) -> list[int]:
    v = validator()
    return [
        len(
            process(
                ROUTER, v, m.topic, m.payload, m.received_ns, max_payload_bytes=MAX_PAYLOAD
            ).value
        )
        for m in batch
    ]


def pack(device: str, start_s: float, values: list[float]) -> bytes:
    """A pack as devices send them: base name and time on the first record."""
    records: list[dict[str, object]] = [
        {"bn": f"{device}/", "bt": start_s, "n": "humidity", "v": values[0]}
    ]
    records += [{"n": "humidity", "t": k, "v": v} for k, v in enumerate(values[1:], start=1)]
    return orjson.dumps(records)


def test_a_good_pack_is_checked_column_wise_and_a_bad_one_record_by_record() -> None:
    good = pack("sf-wx-01", NOW_S - 60, [50.0, 51.0, 52.0])
    bad = pack("sf-wx-01", NOW_S - 60, [50.0, 151.0, 52.0])  # 151 % is out of range
    packs_ = Packs()
    assert read_pack(TOPICS[0], good, packs_, 0, NOW_NS)
    assert read_pack(TOPICS[0], bad, packs_, 1, NOW_NS)
    checked = check_packs(validator(), packs_)
    assert checked.fallback == [1]
    assert checked.message.tolist() == [0, 0, 0]
    assert checked.value.tolist() == [50.0, 51.0, 52.0]

    done = process_batch(
        ROUTER,
        validator(),
        [Message(TOPICS[0], good, NOW_NS), Message(TOPICS[0], bad, NOW_NS)],
        max_payload_bytes=MAX_PAYLOAD,
    )
    assert done.accepted == [3, 2]
    assert [r.reason.value for r in done.rejections[1]] == ["out_of_range"]
    assert done.readings.value.tolist() == [50.0, 51.0, 52.0, 50.0, 52.0]


def test_a_later_message_still_overwrites_an_earlier_one_across_both_ways() -> None:
    """Order is kept: the store takes the last of two readings of one point."""
    first = orjson.dumps({"ts": (NOW_S - 60) * 1000, "readings": {"humidity": 40.0}})
    second = pack("sf-wx-01", NOW_S - 60, [41.0])
    third = orjson.dumps({"ts": (NOW_S - 60) * 1000, "readings": {"humidity": 42.0}})
    batch = [
        Message("pilots/santa-fe/sf-wx-01/up", first, NOW_NS),
        Message(TOPICS[0], second, NOW_NS),
        Message("pilots/santa-fe/sf-wx-01/up", third, NOW_NS),
    ]
    done = process_batch(ROUTER, validator(), batch, max_payload_bytes=MAX_PAYLOAD)
    assert done.readings.value.tolist() == [40.0, 41.0, 42.0]
    assert done.uplinks.received_ns.tolist() == [NOW_NS] * 3

"""No silent loss: every reading a message sends is stored or refused with a reason.

For each format, generated messages go through the real per-message path (`ingest.process`:
route, decode, validate) and the readings sent must equal the readings stored plus the readings
the refusals cover (`Rejection.records`). What is stored must also be distinct points: two
stored readings of one sensor of one device at one instant would be one point in the store, the
second overwriting the first without a trace.

A reading sent is: a SenML record (any element of the pack), a key of a plain JSON item's
`readings` or its top-level `battery_v` (an item that is no object of readings counts as one),
a field of a LoRaWAN codec's output (an uplink whose codec output is no non-empty object counts
as one). The packs include what used to vanish: records that share a name and a time but differ
in unit (RFC 8428 §5.1.3), repeats, bad values, unknown names and other devices' names.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.settings import Settings
from ingest.decoders import Router
from ingest.process import process
from ingest.reasons import Reason
from ingest.validate import Checked, Validator

from .helpers import shipped_registry

NOW_S = 1_704_110_400  # 2024-01-01T12:00:00Z, when ingest received each message
NOW_NS = NOW_S * 1_000_000_000
NOW_MS = NOW_S * 1_000
REGISTRY = shipped_registry()
ROUTER = Router(Settings(_env_file=None).ingest_routes)
VALIDATOR = Validator(REGISTRY, max_future_s=600, max_age_days=3650)
SF_RLV_01_EUI = "a840410001010101"  # core/registry.toml
SF_RLV_02_EUI = "a840410001010201"
UNKNOWN_EUI = "0101010101010101"

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Small pools, so that names, times and units collide often.
SENSORS = ["level", "water_temp", "battery_v", "rain", "nope"]
VALUES = st.one_of(
    st.sampled_from([3.25, 3.5, 21.0, 3.9, 0.0]),  # valid for most of the pool
    st.sampled_from([99.0, -5.0, 1e308]),  # out of range, or non-finite once `bv` is added
    st.sampled_from(["3.5", True, None, [1.0]]),  # not numbers
)


def _run(topic: str, document: object) -> Checked:
    return process(
        ROUTER, VALIDATOR, topic, orjson.dumps(document), NOW_NS, max_payload_bytes=1 << 20
    )


def _assert_accounted(checked: Checked, sent: int) -> None:
    """Stored + refused readings are the readings sent; stored readings are distinct points."""
    refused = sum(r.records for r in checked.rejections)
    assert checked.readings + refused == sent, checked.rejections
    points = list(zip(checked.device, checked.sensor, checked.ts_ns, strict=True))
    assert len(set(points)) == len(points), "two stored readings would be one point"
    for rejection in checked.rejections:
        assert isinstance(rejection.reason, Reason)
        assert rejection.detail
        assert rejection.records >= 0


# --- SenML -------------------------------------------------------------------------------------

senml_names = st.sampled_from(
    [
        *SENSORS,
        "sf-rlv-01/level",
        f"urn:dev:mac:{SF_RLV_01_EUI}:level",
        "sf-rlv-02/level",  # another device
        "",  # the base name alone
    ]
)
senml_units = st.sampled_from(["m", "Cel", "°C", "V", "lat", "lon", "/", "%RH", "mm"])
senml_times = st.sampled_from([0, 0.0, -600, 0.5, 601, NOW_S, NOW_S - 600])
senml_record = st.fixed_dictionaries(
    {},
    optional={
        "bn": st.sampled_from(["", "sf-rlv-01/", "sf-rlv-01/level", "sf-rlv-02/"]),
        "bt": st.sampled_from([0, NOW_S]),
        "bu": senml_units,
        "bv": st.sampled_from([0, 0.25]),
        "n": senml_names,
        "u": senml_units,
        "v": VALUES,
        "t": senml_times,
        "vs": st.just("high"),
        "s": st.just(1.5),
    },
)
senml_records = st.one_of(
    senml_record,
    senml_record,
    senml_record,
    st.sampled_from(["level", 3, None, {"n": 5, "v": 1.0}, {"bver": 11, "v": 1.0}, {"x_": 1}]),
)


@PROPERTY
@given(st.lists(senml_records, min_size=1, max_size=12))
def test_senml_every_record_is_stored_or_refused(pack: list[object]) -> None:
    _assert_accounted(_run("pilots/santa-fe/sf-rlv-01/senml", pack), len(pack))


@PROPERTY
@given(
    st.lists(
        st.tuples(senml_units, st.sampled_from([3.25, 3.5, 4.75]), st.sampled_from([0, 1])),
        min_size=1,
        max_size=8,
    )
)
def test_senml_records_sharing_a_name_and_time_keep_the_one_in_the_registrys_unit(
    records: list[tuple[str, float, int]],
) -> None:
    """Packs shaped as RFC 8428 §5.1.3: one name, a few times, a unit per record."""
    pack = [{"bn": "sf-rlv-01/level", "bt": NOW_S, "u": u, "v": v, "t": t} for u, v, t in records]
    checked = _run("pilots/santa-fe/sf-rlv-01/senml", pack)
    _assert_accounted(checked, len(pack))
    # For each time, the first record in metres (the registry's unit) is the one stored.
    expected: dict[int, float] = {}
    for unit, value, offset in records:
        if unit == "m":
            expected.setdefault((NOW_S + offset) * 1_000_000_000, value)
    assert dict(zip(checked.ts_ns, checked.value, strict=True)) == expected


# --- plain JSON --------------------------------------------------------------------------------

plain_item = st.fixed_dictionaries(
    {
        "ts": st.sampled_from([NOW_MS, NOW_MS - 600_000, NOW_MS + 3_600_000, "noon"]),
        "readings": st.dictionaries(st.sampled_from(SENSORS), VALUES, max_size=4),
    },
    optional={
        "battery_v": VALUES,
        "seq": st.sampled_from([1, 2, -1]),
        "device": st.sampled_from(["sf-rlv-01", "sf-rlv-02"]),
        "extra": st.just(1),
    },
)
plain_items = st.one_of(plain_item, plain_item, st.sampled_from(["level=3", 5, {"readings": 3}]))


def _plain_sent(item: object) -> int:
    if not isinstance(item, dict) or not isinstance(item.get("readings", {}), dict):
        return 1
    return len(item.get("readings", {})) + ("battery_v" in item)


@PROPERTY
@given(st.one_of(plain_item, st.lists(plain_items, min_size=1, max_size=5)))
def test_plain_every_reading_is_stored_or_refused(document: object) -> None:
    items = document if isinstance(document, list) else [document]
    sent = sum(_plain_sent(item) for item in items)
    _assert_accounted(_run("pilots/santa-fe/sf-rlv-01/up", document), sent)


# --- LoRaWAN -------------------------------------------------------------------------------------

codec_output: st.SearchStrategy[object] = st.one_of(
    st.dictionaries(st.sampled_from(SENSORS), VALUES, min_size=1, max_size=5),
    st.sampled_from([None, {}, [3.5], "level"]),
)
network_times = st.sampled_from(
    [None, "2024-01-01T11:59:00Z", "2024-01-01T13:00:00Z", "noon", "2010-01-01T00:00:00Z"]
)
euis = st.sampled_from([SF_RLV_01_EUI, SF_RLV_02_EUI, UNKNOWN_EUI])
names = st.sampled_from([None, "sf-rlv-01", "sf-rlv-02", "river gauge"])


def _lorawan_sent(decoded: object) -> int:
    return len(decoded) if isinstance(decoded, dict) and decoded else 1


def _assert_matched_by_eui(checked: Checked, eui: str | None) -> None:
    """What is stored belongs to the registry device with the uplink's EUI, and no other."""
    for code in set(checked.device) | set(checked.up_device):
        assert REGISTRY.device_list[code].dev_eui == (eui or "").lower()


@PROPERTY
@given(
    topic_eui=euis,
    payload_eui=st.one_of(st.none(), euis),
    name=names,
    decoded=codec_output,
    time=network_times,
    fcnt=st.sampled_from([None, 7, -1]),
)
def test_chirpstack_every_field_is_stored_or_refused(
    topic_eui: str,
    payload_eui: str | None,
    name: str | None,
    decoded: object,
    time: str | None,
    fcnt: int | None,
) -> None:
    event: dict[str, Any] = {"deviceInfo": {"devEui": payload_eui, "deviceName": name}}
    for key, value in (("object", decoded), ("time", time), ("fCnt", fcnt)):
        if value is not None:
            event[key] = value
    checked = _run(f"application/app-1/device/{topic_eui}/event/up", event)
    _assert_accounted(checked, _lorawan_sent(decoded))
    _assert_matched_by_eui(checked, topic_eui)


@PROPERTY
@given(
    dev_eui=st.one_of(st.none(), euis.map(str.upper)),
    device_id=st.sampled_from(["sf-rlv-01", "sf-rlv-02", "gauge-1"]),
    simulated=st.sampled_from([None, False, True]),
    decoded=codec_output,
    time=network_times,
    fcnt=st.sampled_from([None, 7, -1]),
)
def test_tts_every_field_is_stored_or_refused(
    dev_eui: str | None,
    device_id: str,
    simulated: bool | None,
    decoded: object,
    time: str | None,
    fcnt: int | None,
) -> None:
    uplink: dict[str, Any] = {}
    for key, value in (("decoded_payload", decoded), ("received_at", time), ("f_cnt", fcnt)):
        if value is not None:
            uplink[key] = value
    ids: dict[str, Any] = {"device_id": device_id}
    if dev_eui is not None:
        ids["dev_eui"] = dev_eui
    message: dict[str, Any] = {"end_device_ids": ids, "uplink_message": uplink}
    if simulated is not None:
        message["simulated"] = simulated
    checked = _run(f"v3/santa-fe@utn/devices/{device_id}/up", message)
    _assert_accounted(checked, _lorawan_sent(decoded))
    _assert_matched_by_eui(checked, dev_eui)
    if simulated or dev_eui is None:  # never a measurement, whatever else it holds
        assert checked.readings == 0
        assert checked.up_ts_ns == []

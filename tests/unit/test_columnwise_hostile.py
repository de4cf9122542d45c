"""Hostile and careless inputs to the column-wise batch path (`ingest.process.process_batch`).

The promise of the change: what a writer's batch stores and quarantines is exactly what
`process`, message by message, gives; a bad message costs itself, never the batch; and the
cost of a message stays bounded. Each test here is an input where that does not hold.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from core.settings import Settings
from core.store.embedded import EmbeddedStore
from ingest.decoders import Router, default_routes
from ingest.metrics import Health, IngestMetrics, MetricEvents
from ingest.process import columns, process, process_batch
from ingest.spool import Spool
from ingest.validate import Validator
from ingest.writer import SpoolWriter

from .helpers import shipped_registry

NOW_S = 1_704_110_400
NOW_NS = NOW_S * 1_000_000_000
MAX_PAYLOAD = 262_144  # PILOTS_INGEST_MAX_PAYLOAD_BYTES' default
REGISTRY = shipped_registry()
ROUTER = Router(default_routes())
SENML = "pilots/santa-fe/sf-wx-01/senml"
PLAIN = "pilots/santa-fe/sf-wx-01/up"


@dataclass
class Message:
    topic: str
    payload: bytes
    received_ns: int = NOW_NS


def good_pack() -> bytes:
    return orjson.dumps(
        [
            {"bn": "sf-wx-01/", "bt": NOW_S - 60, "n": "humidity", "v": 50.0},
            {"n": "temperature", "v": 21.5},
        ]
    )


def plain_reading() -> bytes:
    return orjson.dumps({"ts": (NOW_S - 60) * 1000, "readings": {"humidity": 40.0}})


# -- a careless operator: a generous time limit ---------------------------------------------------
#
# PILOTS_INGEST_MAX_FUTURE_S and PILOTS_INGEST_MAX_AGE_DAYS have no upper bound in Settings, and
# an operator who wants "no limit" writes a big number. The validator keeps them as Python ints
# (nanoseconds), which record-by-record checking compares without trouble; check_packs adds them
# to an int64 numpy array, which raises OverflowError beyond 2**63 ns (292 years). The except
# around check_packs then calls check_packs again on empty packs, which raises the same error
# (the addition does not depend on the packs), so process_batch raises for EVERY batch, even one
# of plain JSON messages only: the writer's run() dies on its first batch and nothing is stored.

HUGE_LIMITS = [
    pytest.param((10**10, 3650), id="max_future_10e10_s"),
    pytest.param((600, 1_000_000), id="max_age_1e6_days"),
]


def validator(limits: tuple[int, int]) -> Validator:
    """A validator with (PILOTS_INGEST_MAX_FUTURE_S, PILOTS_INGEST_MAX_AGE_DAYS)."""
    return Validator(REGISTRY, max_future_s=limits[0], max_age_days=limits[1])


@pytest.mark.parametrize("limits", HUGE_LIMITS)
def test_a_generous_time_limit_does_not_stop_a_batch_of_good_packs(limits: tuple[int, int]) -> None:
    batch = [Message(SENML, good_pack()), Message(PLAIN, plain_reading())]
    one_by_one = [
        process(
            ROUTER,
            validator(limits),
            m.topic,
            m.payload,
            m.received_ns,
            max_payload_bytes=MAX_PAYLOAD,
        )
        for m in batch
    ]
    assert [len(c.value) for c in one_by_one] == [2, 1]  # record by record: all stored

    done = process_batch(ROUTER, validator(limits), batch, max_payload_bytes=MAX_PAYLOAD)

    assert done.accepted == [2, 1]
    assert sorted(done.readings.value.tolist()) == [21.5, 40.0, 50.0]
    assert done.rejections == [[], []]


def test_a_generous_time_limit_does_not_stop_a_batch_without_any_senml() -> None:
    """Plain JSON only: nothing column-wise to check, yet the batch still fails today."""
    limits = (10**10, 3650)
    batch = [Message(PLAIN, plain_reading())]
    readings, _, _ = columns(
        [
            (
                process(
                    ROUTER,
                    validator(limits),
                    m.topic,
                    m.payload,
                    m.received_ns,
                    max_payload_bytes=MAX_PAYLOAD,
                ),
                m.received_ns,
            )
            for m in batch
        ]
    )
    done = process_batch(ROUTER, validator(limits), batch, max_payload_bytes=MAX_PAYLOAD)
    assert done.readings.value.tolist() == readings.value.tolist() == [40.0]


def test_the_writer_stores_a_spooled_reading_with_max_future_s_set_to_no_limit(
    tmp_path: Path,
) -> None:
    """What the operator sees: the writer process dies on its first batch, the spool fills."""
    settings = Settings(data_dir=tmp_path, ingest_max_future_s=10**10, _env_file=None)
    spool = Spool(tmp_path / "ingest.sqlite")
    store = EmbeddedStore(tmp_path / "store.sqlite", REGISTRY)
    writer = SpoolWriter(
        spool,
        store,
        settings=settings,
        registry=REGISTRY,
        events=MetricEvents(IngestMetrics(), Health(unhealthy_after_s=60)),
        abort=threading.Event(),
    )
    try:
        now_ns = time.time_ns()
        payload = orjson.dumps({"ts": now_ns // 1_000_000 - 1000, "readings": {"humidity": 40.0}})
        spool.append([(now_ns, PLAIN, payload)])
        assert writer.process_batch(spool.take(100))
        assert spool.depth().messages == 0
        stored = store.scan("santa-fe", ["humidity"], now_ns - 10**12, now_ns + 10**12)
        assert stored.value.tolist() == [40.0]
    finally:
        writer.close()
        spool.close()
        store.close()


# -- a hostile device: one sensor given again and again at one instant ---------------------------
#
# read_pack takes such a pack (one name, numeric values: "simple"), check_packs finds the repeats
# and hands it back, and senml.decode + Validator.check refuse each repeat as duplicate_record.
# Both were quadratic in the number of repeats (decode walked one more frame "layer" per record,
# Validator.check rebuilt the instant's readings from every earlier frame): 8,000 repeats took
# about ten seconds, a 256 KB pack of them minutes, and the writer's whole batch waited behind
# it. The same holds for one sensor spelt many ways (`sf-wx-01/temperature`,
# `sf-wx-01:/temperature`, ...), which read_pack declines. Both now count instead of walking;
# the packs below, as large as a message may be, are refused record by record in well under a
# second (the suite's timeout is what a quadratic cost would meet).


def _repeated_name() -> bytes:
    first = {"bn": "sf-wx-01/temperature", "bt": NOW_S - 60, "v": 20.0}
    one = len(orjson.dumps({"v": 20.0})) + 1
    return orjson.dumps([first] + [{"v": 20.0}] * ((MAX_PAYLOAD - 100) // one))


def _one_sensor_many_spellings() -> bytes:
    """`sf-wx-01` followed by any run of `/` and `:` names the same device (and sensor)."""
    spellings = [format(k, "012b").translate({48: "/", 49: ":"}) for k in range(4096)]
    records: list[dict[str, object]] = [
        {"n": f"sf-wx-01{s}temperature", "v": 20.0} for s in spellings
    ]
    records[0]["bt"] = NOW_S - 60
    return orjson.dumps(records)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_repeated_name(), id="one_name_repeated"),
        pytest.param(_one_sensor_many_spellings(), id="one_sensor_many_spellings"),
    ],
)
def test_a_pack_repeating_one_reading_keeps_the_first_and_refuses_every_repeat(
    payload: bytes,
) -> None:
    records = len(orjson.loads(payload))
    assert records >= 4000 and len(payload) <= MAX_PAYLOAD
    done = process_batch(
        ROUTER,
        Validator(REGISTRY, max_future_s=300, max_age_days=30),
        [Message(SENML, payload)],
        max_payload_bytes=MAX_PAYLOAD,
    )
    assert done.accepted == [1]
    assert done.readings.value.tolist() == [20.0]
    assert len(done.rejections[0]) == records - 1
    assert {r.reason.value for r in done.rejections[0]} == {"duplicate_record"}

"""The fleet's quarantine as ingest keeps it: bounded entries, caps per device and in total,
pruning by age, and a number for every refusal that is no longer kept."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.errors import StoreRejectedError, StoreTooLargeError, StoreUnavailableError
from core.quarantine import (
    ENTRIES_PER_MESSAGE,
    KEY_SPACING_NS,
    QuarantineEntry,
    Refusal,
    entries_for_message,
)
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from ingest import quarantine as quarantine_module
from ingest.quarantine import Keeper, source_of
from ingest.reasons import Reason, Rejection
from ingest.spool import Refused, Spool

T0 = 1_764_300_000 * 1_000_000_000
FLOODER = "pilots/santa-fe/sf-rlv-01/up"


def settings(tmp_path: Path, **limits: Any) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **limits)


def refusals(topic: str, payload: bytes, n: int, at_ns: int) -> list[Refused]:
    return [
        Refused(at_ns, topic, payload, Rejection(Reason.OUT_OF_RANGE, f"#{i}")) for i in range(n)
    ]


def test_the_source_is_the_registry_device_the_topic_names(registry: Registry) -> None:
    lorawan = next(d for d in registry.device_list if d.dev_eui)
    assert source_of("pilots/santa-fe/sf-rlv-01/up", registry) == "sf-rlv-01"
    eui = (lorawan.dev_eui or "").upper()
    assert source_of(f"application/7f/device/{eui}/event/up", registry) == lorawan.id
    name = lorawan.lns_id or lorawan.id
    assert source_of(f"v3/app@ttn/devices/{name}/up", registry) == lorawan.id
    # Names a login invents never become sources of their own (they would be new series).
    assert source_of("pilots/santa-fe/sf-rlv-99/up", registry) == "unregistered"
    assert source_of("application/7f/device/00000000deadbeef/event/up", registry) == (
        "unregistered"
    )
    assert source_of("somewhere/else", registry) == "-"


def test_an_oversized_payload_is_kept_as_its_first_bytes_length_and_digest() -> None:
    payload = b"x" * 3_000_000
    (entry,) = entries_for_message(
        worker="w",
        source="d",
        topic="pilots/p/d/up",
        payload=payload,
        received_ns=T0,
        refusals=[Refusal("oversized", "too big")],
        keep_bytes=1024,
    )
    assert (entry.length, len(entry.head), entry.complete) == (3_000_000, 1024, False)
    assert entry.sha256 == hashlib.sha256(payload).hexdigest()


def test_many_refusals_of_one_message_fold_into_a_few_entries_with_their_numbers() -> None:
    refused = [Refusal("out_of_range", f"#{i}", "level") for i in range(500)]
    refused += [Refusal("unknown_sensor", f"u{i}", "x") for i in range(40)]
    entries = entries_for_message(
        worker="w",
        source="d",
        topic="t",
        payload=b"{}",
        received_ns=T0,
        refusals=refused,
        keep_bytes=1024,
    )
    assert len(entries) == ENTRIES_PER_MESSAGE + 2 <= KEY_SPACING_NS
    assert sum(e.refusals for e in entries) == 540, "every refusal is counted"
    assert sorted({e.ts_ns for e in entries}) == [T0 + i for i in range(len(entries))]


def test_a_flooding_device_fills_its_own_cap_and_the_others_are_still_kept(
    tmp_path: Path, registry: Registry
) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    unkept: list[tuple[str, int]] = []
    keeper = Keeper(
        store,
        settings(tmp_path, quarantine_max_per_device=10),
        "w1",
        registry,
        on_unkept=lambda why, n: unkept.append((why, n)),
    )
    flood = [
        r
        for i in range(50)
        for r in refusals("pilots/santa-fe/sf-rlv-01/up", b"junk%d" % i, 1, T0 + i * 100)
    ]
    keeper.keep(flood)
    keeper.keep(refusals("pilots/santa-fe/sf-rlv-02/up", b"{}", 2, T0 + 10_000))
    summary = store.quarantine_summary()
    assert summary.kept == {"out_of_range": 12}
    assert summary.dropped == {("cap", "out_of_range"): 40}
    assert unkept == [("cap", 40)], "the metric hears of every refusal not kept"
    assert len(store.quarantine_entries(source="sf-rlv-02")) == 2


def test_the_total_caps_in_entries_and_bytes_hold(tmp_path: Path, registry: Registry) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    keeper = Keeper(
        store,
        settings(tmp_path, quarantine_max_bytes=1 << 16, quarantine_keep_bytes=16_384),
        "w1",
        registry,
    )
    for i in range(10):
        topic = f"pilots/santa-fe/dev-{i}/up"
        keeper.keep(refusals(topic, b"y" * 20_000, 1, T0 + i * 100))
    kept = store.quarantine_entries(limit=None)
    assert sum(e.cost_bytes for e in kept) <= 1 << 16
    assert len(kept) == 3
    assert store.quarantine_summary().dropped == {("cap", "out_of_range"): 7}


def test_old_entries_are_pruned_and_counted(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    keeper = Keeper(store, settings(tmp_path, quarantine_max_age_days=1), "w1", registry)
    keeper.keep(refusals("pilots/santa-fe/sf-rlv-01/up", b"{}", 3, T0))  # long ago
    other = Keeper(store, settings(tmp_path, quarantine_max_age_days=1), "w2", registry)
    other.keep(refusals("pilots/santa-fe/sf-rlv-01/up", b"{}", 1, T0))
    monkeypatch.setattr(quarantine_module, "PRUNE_EVERY_S", 0.0)
    keeper.prune_if_due()
    summary = store.quarantine_summary()
    assert summary.kept == {"out_of_range": 1}, "w2's entry is w2's to prune"
    assert summary.dropped == {("age", "out_of_range"): 3}


def test_invented_device_names_share_one_source_and_counts_one_point_a_minute(
    tmp_path: Path, registry: Registry
) -> None:
    """A network-server login sending uplinks for a thousand made-up EUIs, past every cap."""
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    keeper = Keeper(store, settings(tmp_path, quarantine_max_entries=10), "w1", registry)
    for batch in range(20):
        keeper.keep(
            [
                r
                for i in range(50)
                for r in refusals(
                    f"application/app/device/{batch * 50 + i:016x}/event/up",
                    b"{}",
                    1,
                    T0 + (batch * 50 + i) * KEY_SPACING_NS,
                )
            ]
        )
    assert {e.source for e in store.quarantine_entries(limit=None)} == {"unregistered"}
    assert store.quarantine_summary().dropped == {("cap", "out_of_range"): 990}
    points = store._connection().execute("SELECT COUNT(*) FROM quarantine_dropped").fetchone()
    assert points[0] <= 2, "one running total per source, reason and minute (two if it turned)"


class RefusingLargeBodies(EmbeddedStore):
    """A store behind a proxy that refuses request bodies over 100 kB with 413."""

    def add_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        if sum(e.cost_bytes for e in entries) > 100_000:
            raise StoreTooLargeError("413 Request Entity Too Large", status=413)
        super().add_quarantine(entries)


def test_entries_go_in_bounded_requests_and_one_still_too_large_is_counted(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quarantine_module, "WRITE_CHUNK_BYTES", 50_000)
    store = RefusingLargeBodies(tmp_path / "store.sqlite", registry)
    keeper = Keeper(store, settings(tmp_path, quarantine_keep_bytes=30_000), "w1", registry)
    topic = "pilots/santa-fe/sf-rlv-01/up"
    keeper.keep(
        [r for i in range(20) for r in refusals(topic, b"x" * 10_000, 1, T0 + i * 100)]
        + refusals(topic, b"y" * 120_000, 1, T0 + 5_000)  # head 30 kB, alone: still fits
    )
    assert store.quarantine_summary().kept == {"out_of_range": 21}
    monkeypatch.setattr(quarantine_module, "WRITE_CHUNK_BYTES", 200_000)
    keeper.keep(refusals(topic, b"z" * 30_000, 4, T0 + 9_000))  # one message, 4 x 30 kB
    summary = store.quarantine_summary()
    assert summary.kept == {"out_of_range": 21}
    assert summary.dropped == {("store_refused", "out_of_range"): 4}


def test_an_old_spool_quarantine_moves_into_the_store_a_piece_at_a_time(
    tmp_path: Path, registry: Registry
) -> None:
    """An older release kept refusals, whole payloads of megabytes among them, in the spool's
    database; the writer moves them into the store, heads and digests only, and drops them."""
    path = tmp_path / "ingest.sqlite"
    spool = Spool(path)
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE quarantine (id INTEGER PRIMARY KEY, received_ns INTEGER NOT NULL, "
        "topic TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL, "
        "detail TEXT NOT NULL, sensor TEXT)"
    )
    big = bytes(range(256)) * (8 << 12)  # 8 MiB
    rows = [
        (T0, "pilots/santa-fe/sf-rlv-01/up", big, "oversized", "8388608 bytes", None),
        (T0 + 100, "pilots/santa-fe/sf-rlv-02/up", b'{"ts": 1', "malformed_json", "eof", None),
        (T0 + 100, "pilots/santa-fe/sf-rlv-02/up", b'{"ts": 1', "no_such_reason", "x", "ph"),
    ]
    old.executemany(
        "INSERT INTO quarantine (received_ns, topic, payload, reason, detail, sensor) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    old.commit()
    old.close()
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    keeper = Keeper(store, settings(tmp_path), "w1", registry, spool=spool)
    assert keeper.migrate(spool) == 3
    (second, first, oversized) = store.quarantine_entries(limit=None)
    assert (oversized.length, len(oversized.head), oversized.sha256) == (
        len(big),
        16_384,
        hashlib.sha256(big).hexdigest(),
    )
    assert (first.reason, second.reason, second.ts_ns - first.ts_ns) == (
        "malformed_json",
        "internal_error",  # a code this release does not know
        1,
    )
    assert spool.legacy_quarantine(10, 100) == [], "the old table is gone"
    spool.close()


def test_replay_reaches_every_entry_however_many_stay_refused(
    tmp_path: Path, registry: Registry
) -> None:
    """Twelve refused messages, every other one junk for good; pages of four entries."""
    from ingest.replay import replay

    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    config = settings(tmp_path)
    now_ms = time.time_ns() // 1_000_000
    refused = []
    for i in range(12):
        received = time.time_ns() + i * KEY_SPACING_NS
        if i % 2:
            refused += refusals("pilots/santa-fe/sf-rlv-01/up", b"{junk", 1, received)
        else:
            good = orjson.dumps({"ts": now_ms - 60_000 + i, "readings": {"level": 3.5}})
            refused.append(
                Refused(
                    received,
                    "pilots/santa-fe/sf-rlv-01/up",
                    good,
                    Rejection(Reason.UNKNOWN_DEVICE, "before the registry knew it"),
                )
            )
    Keeper(store, config, "w1", registry).keep(refused)
    result = replay(config, registry, store, page=4)
    assert (result.messages, result.readings_stored, result.still_refused) == (12, 6, 6)
    assert store.quarantine_summary().kept == {"malformed_json": 6}
    assert len(store.scan("santa-fe", ["level"], 0, (now_ms + 1) * 1_000_000)) == 6


class Flaky(EmbeddedStore):
    """A store whose writes fail on cue: away (timeouts) or refusing a request (400)."""

    away_on_count = 0
    refuse_add = 0  # refuse this add_quarantine request (1 = the first)
    adds = 0

    def record_dropped(
        self, worker: str, ts_ns: int, dropped: dict[tuple[str, str, str], int]
    ) -> None:
        if self.away_on_count:
            self.away_on_count -= 1
            raise StoreUnavailableError("timed out")
        super().record_dropped(worker, ts_ns, dropped)

    def add_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        self.adds += 1
        if self.adds == self.refuse_add:
            raise StoreRejectedError("400 partial write")
        super().add_quarantine(entries)


def test_a_retry_after_the_store_went_away_counts_nothing_twice(
    tmp_path: Path, registry: Registry
) -> None:
    store = Flaky(tmp_path / "store.sqlite", registry)
    keeper = Keeper(store, settings(tmp_path, quarantine_max_per_device=3), "w1", registry)
    refused = [
        r for i in range(5) for r in refusals(FLOODER, b"j%d" % i, 1, T0 + i * KEY_SPACING_NS)
    ]
    store.away_on_count = 1
    with pytest.raises(StoreUnavailableError):
        keeper.keep(refused)
    keeper.keep(refused)  # the writer tries again with the same refusals
    summary = store.quarantine_summary()
    assert (summary.kept, summary.dropped) == ({"out_of_range": 3}, {("cap", "out_of_range"): 2})


def test_a_refused_request_counts_only_its_own_entries(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quarantine_module, "WRITE_CHUNK_BYTES", 300)
    store = Flaky(tmp_path / "store.sqlite", registry)
    store.refuse_add = 2
    keeper = Keeper(store, settings(tmp_path), "w1", registry)
    keeper.keep(
        [r for i in range(4) for r in refusals(FLOODER, b"x" * 100, 1, T0 + i * KEY_SPACING_NS)]
    )
    summary = store.quarantine_summary()
    assert store.adds == 4, "an entry a request, at this chunk size"
    assert summary.kept == {"out_of_range": 3}
    assert summary.dropped == {("store_refused", "out_of_range"): 1}, "the refused request's one"


@pytest.mark.parametrize("apart_ns", [0, 1])
def test_replay_pages_reach_every_workers_message_at_one_instant(
    tmp_path: Path, registry: Registry, apart_ns: int
) -> None:
    """Three workers each refused a message within the same 64 ns; pages of two entries."""
    from ingest.replay import replay

    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    received = time.time_ns() - 1_000_000_000
    for i, worker in enumerate(["w1", "w2", "w3"]):
        store.add_quarantine(
            entries_for_message(
                worker=worker,
                source="unregistered",
                topic="pilots/santa-fe/sf-nope/up",
                payload=b'{"ts": 1, "readings": {"level": 1}}',
                received_ns=received + i * apart_ns,
                refusals=[Refusal("unknown_device", "not registered")],
                keep_bytes=1000,
            )
        )
    result = replay(settings(tmp_path), registry, store, page=2)
    assert (result.messages, result.still_refused) == (3, 3)
    assert store.quarantine_summary().kept == {"unknown_device": 3}

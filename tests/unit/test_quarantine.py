"""The fleet's quarantine as ingest keeps it: bounded entries, caps per device and in total,
pruning by age, and a number for every refusal that is no longer kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.quarantine import ENTRIES_PER_MESSAGE, KEY_SPACING_NS, Refusal, entries_for_message
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from ingest import quarantine as quarantine_module
from ingest.quarantine import Keeper, source_of
from ingest.reasons import Reason, Rejection
from ingest.spool import Refused

T0 = 1_764_300_000 * 1_000_000_000


def settings(tmp_path: Path, **limits: object) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **limits)  # type: ignore[call-arg]


def refusals(topic: str, payload: bytes, n: int, at_ns: int) -> list[Refused]:
    return [
        Refused(at_ns, topic, payload, Rejection(Reason.OUT_OF_RANGE, f"#{i}")) for i in range(n)
    ]


@pytest.mark.parametrize(
    ("topic", "source"),
    [
        ("pilots/santa-fe/sf-rlv-01/up", "sf-rlv-01"),
        ("application/7f/device/70b3d57ed0000001/event/up", "70b3d57ed0000001"),
        ("v3/app@ttn/devices/eui-70b3/up", "eui-70b3"),
        ("pilots/santa-fe/a b/up", "-"),
        ("somewhere/else", "-"),
    ],
)
def test_the_source_is_the_device_the_topic_names(topic: str, source: str) -> None:
    assert source_of(topic) == source


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
        worker="w1",
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
        worker="w1",
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
    keeper = Keeper(store, settings(tmp_path, quarantine_max_age_days=1), worker="w1")
    keeper.keep(refusals("pilots/santa-fe/sf-rlv-01/up", b"{}", 3, T0))  # long ago
    other = Keeper(store, settings(tmp_path, quarantine_max_age_days=1), worker="w2")
    other.keep(refusals("pilots/santa-fe/sf-rlv-01/up", b"{}", 1, T0))
    monkeypatch.setattr(quarantine_module, "PRUNE_EVERY_S", 0.0)
    keeper.keep([])
    summary = store.quarantine_summary()
    assert summary.kept == {"out_of_range": 1}, "w2's entry is w2's to prune"
    assert summary.dropped == {("age", "out_of_range"): 3}

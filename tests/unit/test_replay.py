"""`pilots quarantine replay`: refused messages stored once the registry knows their device."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from core.quarantine import KEY_SPACING_NS
from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from ingest.decoders import Router
from ingest.process import process
from ingest.quarantine import Keeper
from ingest.replay import replay
from ingest.spool import Refused
from ingest.validate import Validator

NEW_DEVICE = """
[[pilots.santa-fe.devices]]
id = "sf-rlv-03"
kind = "river_level"
site = "Puerto de Santa Fe, dique 2"
"""


def ingest(
    settings: Settings, registry: Registry, store: EmbeddedStore, messages: list[tuple[str, bytes]]
) -> int:
    """What ingest does with these messages: quarantine the refusals (readings discarded)."""
    router = Router(settings.ingest_routes)
    validator = Validator(registry, max_future_s=600, max_age_days=3650)
    refused: list[Refused] = []
    for i, (topic, payload) in enumerate(messages):
        received_ns = time.time_ns() + i * KEY_SPACING_NS
        checked = process(router, validator, topic, payload, received_ns, max_payload_bytes=10_000)
        refused.extend(Refused(received_ns, topic, payload, r) for r in checked.rejections)
    Keeper(store, settings, "pilots-ingest-1", registry).keep(refused)
    return len(refused)


def test_replay_stores_what_the_fixed_registry_accepts(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", _env_file=None)
    before = load_registry()
    now_ms = time.time_ns() // 1_000_000
    good = orjson.dumps({"ts": now_ms - 60_000, "readings": {"level": 4.25, "water_temp": 23.5}})
    half = orjson.dumps({"ts": now_ms - 30_000, "readings": {"level": 4.5, "pm25": 9.0}})
    other = orjson.dumps({"ts": now_ms, "readings": {"level": 1.0}})
    fixed_path = tmp_path / "registry.toml"
    fixed_path.write_text(DEFAULT_REGISTRY_PATH.read_text() + NEW_DEVICE)
    fixed = load_registry(fixed_path)
    store = EmbeddedStore(tmp_path / "store.sqlite", fixed)
    refused = ingest(
        settings,
        before,
        store,
        [
            ("pilots/santa-fe/sf-rlv-03/up", good),
            ("pilots/santa-fe/sf-rlv-03/up", half),
            ("pilots/santa-fe/sf-zz-01/up", other),
        ],
    )
    assert refused == 3
    assert store.quarantine_summary().kept == {"unknown_device": 3}

    result = replay(settings, fixed, store, reason="unknown_device")

    assert (result.messages, result.readings_stored, result.still_refused) == (3, 3, 2)
    got = store.scan("santa-fe", ["level", "water_temp"], 0, (now_ms + 1) * 1_000_000)
    assert sorted(got.value.tolist()) == [4.25, 4.5, 23.5]
    assert len(store.scan_uplinks("santa-fe", 0, (now_ms + 1) * 1_000_000)) == 2
    # Still refused: pm25 on a river gauge, and the device that is still unknown.
    assert store.quarantine_summary().kept == {"unknown_device": 1, "unknown_sensor": 1}
    (still,) = store.quarantine_entries(reason="unknown_sensor")
    assert (still.source, still.sensor, still.worker) == ("sf-rlv-03", "pm25", "pilots-ingest-1")


def test_a_dry_run_changes_nothing(tmp_path: Path, registry: Registry) -> None:
    settings = Settings(data_dir=tmp_path / "var", _env_file=None)
    now_ms = time.time_ns() // 1_000_000
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    ingest(settings, registry, store, [("pilots/santa-fe/sf-rlv-01/up", b"{oops")])
    result = replay(settings, registry, store, dry_run=True)
    assert (result.messages, result.still_refused) == (1, 1)
    assert store.quarantine_summary().kept == {"malformed_json": 1}
    assert len(store.scan_uplinks("santa-fe", 0, now_ms * 1_000_000)) == 0


def test_replaying_one_reason_replaces_the_messages_other_entries_too(tmp_path: Path) -> None:
    """A gauge also sends pm25, unknown to it, and a level out of range: two refusals. Once
    the registry gives it pm25, replaying `unknown_sensor` stores pm25 and leaves exactly one
    entry, the level's, though its place in the message changed."""
    settings = Settings(data_dir=tmp_path / "var", _env_file=None)
    before_path, after_path = tmp_path / "before.toml", tmp_path / "after.toml"
    before_path.write_text(DEFAULT_REGISTRY_PATH.read_text() + NEW_DEVICE)
    after_path.write_text(
        DEFAULT_REGISTRY_PATH.read_text()
        + NEW_DEVICE
        + 'sensors = ["level", "water_temp", "pm25"]\n'
    )
    before, after = load_registry(before_path), load_registry(after_path)
    store = EmbeddedStore(tmp_path / "store.sqlite", after)
    now_ms = time.time_ns() // 1_000_000
    pack = orjson.dumps({"ts": now_ms - 1000, "readings": {"pm25": 12.0, "level": 99.0}})
    assert ingest(settings, before, store, [("pilots/santa-fe/sf-rlv-03/up", pack)]) == 2
    assert store.quarantine_summary().kept == {"out_of_range": 1, "unknown_sensor": 1}

    result = replay(settings, after, store, reason="unknown_sensor")

    assert (result.messages, result.readings_stored, result.still_refused) == (1, 1, 1)
    assert store.quarantine_summary().kept == {"out_of_range": 1}, "no stale second entry"
    got = store.scan("santa-fe", ["pm25"], 0, (now_ms + 1) * 1_000_000)
    assert got.value.tolist() == [12.0]

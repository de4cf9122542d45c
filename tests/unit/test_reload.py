"""`core.reload`: files looked at again, a bad version refused and the running value kept."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError, StoreError
from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry
from core.reload import Watched, registry_change, registry_path, watch_registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from ingest.spool import Spool
from ingest.writer import SpoolWriter
from ingest.writer_process import Tally
from tests.helpers import plain, wait_for

NEW_DEVICE = """
[[pilots.santa-fe.devices]]
id = "sf-new-01"
kind = "river_level"
site = "Added while running"

"""
#: A device's pilot by its id's prefix (for topics: the new device is in no shipped registry).
PILOT_OF = {"sf": "santa-fe", "sn": "san-nicolas", "rs": "resistencia"}


class Counted:
    """A loader of an integer from a file, counting its calls; a non-integer is a ConfigError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        try:
            text = self.path.read_text()
        except FileNotFoundError as exc:
            raise ConfigError(f"{self.path} not found") from exc
        try:
            return int(text)
        except ValueError as exc:
            raise ConfigError(f"not a number: {text!r}") from exc


@pytest.fixture
def number(tmp_path: Path) -> tuple[Path, Counted, Watched[int]]:
    path = tmp_path / "number.txt"
    path.write_text("1")
    load = Counted(path)
    watched = Watched([path], load, name="number", settle_s=0)
    assert watched.load() == 1
    return path, load, watched


def test_a_changed_file_is_loaded_again(number: tuple[Path, Counted, Watched[int]]) -> None:
    path, load, watched = number
    path.write_text("22")
    assert watched.check() == 22
    assert watched.value == 22
    assert watched.reloaded == 1
    assert load.calls == 2


def test_an_unchanged_file_is_not_read(number: tuple[Path, Counted, Watched[int]]) -> None:
    _, load, watched = number
    assert watched.check() is None
    assert watched.check() is None
    assert load.calls == 1
    assert watched.value == 1
    assert watched.changed() == []


def test_a_file_replaced_by_rename_is_a_change(
    number: tuple[Path, Counted, Watched[int]], tmp_path: Path
) -> None:
    # An atomic replace (write elsewhere, rename over) with the same size and time: the inode.
    path, _, watched = number
    before = path.stat()
    other = tmp_path / "number.txt.new"
    other.write_text("3")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    other.replace(path)
    assert watched.changed() == [path]
    assert watched.check() == 3


def test_a_bad_file_is_refused_the_old_value_kept_and_not_read_again(
    number: tuple[Path, Counted, Watched[int]], caplog: pytest.LogCaptureFixture
) -> None:
    path, load, watched = number
    path.write_text("not a number")
    with caplog.at_level(logging.ERROR, logger="core.reload"):
        assert watched.check() is None
    assert watched.value == 1
    assert watched.refused == 1
    assert watched.last_error == "not a number: 'not a number'"
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"number {path} refused, keeping the running one: not a number: 'not a number'"
    )
    # the same bad version is not read again
    assert watched.check() is None
    assert load.calls == 2
    assert watched.refused == 1


def test_a_fixed_file_is_taken(number: tuple[Path, Counted, Watched[int]]) -> None:
    path, _, watched = number
    path.write_text("oops")
    assert watched.check() is None
    path.write_text("44444")  # another size: the same time tick cannot hide it
    assert watched.check() == 44444
    assert watched.value == 44444
    assert watched.last_error is None
    assert (watched.refused, watched.reloaded) == (1, 1)


def test_a_deleted_file_is_refused_and_taken_when_it_is_back(
    number: tuple[Path, Counted, Watched[int]],
) -> None:
    path, _, watched = number
    path.unlink()
    assert watched.check() is None
    assert watched.value == 1
    assert watched.refused == 1
    assert watched.last_error is not None
    assert "not found" in watched.last_error
    path.write_text("55")
    assert watched.check() == 55


def test_a_request_loads_whatever_the_files_and_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "number.txt"
    path.write_text("1")
    load = Counted(path)
    watched = Watched([path], load, every_s=3600, settle_s=0, value=1)
    path.write_text("66")
    assert watched.check() is None  # not yet time to look
    assert load.calls == 0
    watched.request()
    assert watched.check() == 66
    watched.request()
    assert watched.check() == 66  # requested: read even though unchanged
    assert load.calls == 2


def test_any_of_several_files_changing_is_a_change(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1")
    b.write_text("2")
    watched = Watched([a, b], lambda: int(a.read_text()) + int(b.read_text()), settle_s=0)
    assert watched.load() == 3
    b.write_text("20")
    assert watched.changed() == [b]
    assert watched.check() == 21


def test_a_loader_bug_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text("1")

    def broken() -> int:
        raise KeyError("bug")

    watched = Watched([path], broken, settle_s=0, value=7)
    path.write_text("12")
    assert watched.check() is None
    assert watched.value == 7
    assert watched.refused == 1
    assert watched.last_error == "KeyError: 'bug'"


def test_no_files_or_a_negative_interval_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Watched([], lambda: 1)
    with pytest.raises(ValueError, match="every_s"):
        Watched([DEFAULT_REGISTRY_PATH], lambda: 1, every_s=-1)
    with pytest.raises(ValueError, match="settle_s"):
        Watched([DEFAULT_REGISTRY_PATH], lambda: 1, settle_s=-1)


def test_a_file_just_written_is_left_to_settle(tmp_path: Path) -> None:
    # An editor writing in place may not be done: the file is read once it is settle_s old.
    path = tmp_path / "number.txt"
    path.write_text("1")
    load = Counted(path)
    watched = Watched([path], load, settle_s=3600, value=1)
    path.write_text("77")
    watched.request()
    assert watched.check() is None
    assert load.calls == 0
    assert watched.changed() == [path]  # still a change, for a later look
    an_hour_ago = path.stat().st_mtime_ns - 3601 * 1_000_000_000
    os.utime(path, ns=(an_hour_ago, an_hour_ago))
    assert watched.check() == 77


# -- the registry -----------------------------------------------------------------------------


def with_new_device(text: str) -> str:
    """The registry with a device added at the end of santa-fe (the codes after it move)."""
    head, tail = text.split("[pilots.san-nicolas]", 1)
    return head + NEW_DEVICE + "[pilots.san-nicolas]" + tail


def test_the_registry_watch_takes_a_new_device_and_refuses_a_broken_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry.toml"
    shutil.copy(DEFAULT_REGISTRY_PATH, path)
    watched = watch_registry(path, settle_s=0)
    first = watched.load()
    assert "sf-new-01" not in first.devices
    path.write_text(with_new_device(path.read_text()))
    second = watched.check()
    assert second is not None
    assert second.devices["sf-new-01"].pilot == "santa-fe"
    path.write_text(path.read_text().replace('kind = "river_level"', 'kind = "no_such_kind"', 1))
    with caplog.at_level(logging.ERROR, logger="core.reload"):
        assert watched.check() is None
    assert watched.value is second
    assert watched.last_error is not None
    assert "unknown kind 'no_such_kind'" in watched.last_error
    assert f"registry {path} refused, keeping the running one: invalid registry" in caplog.text


def test_the_shipped_registry_is_watched_when_none_is_set() -> None:
    assert registry_path(None) == DEFAULT_REGISTRY_PATH
    assert watch_registry(None).paths == (DEFAULT_REGISTRY_PATH,)


def test_a_registry_change_is_described(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    text = with_new_device(DEFAULT_REGISTRY_PATH.read_text())
    text = text.replace("alert = 5.30", "alert = 5.40")
    text = text.replace('id = "sn-wx-02"', 'id = "sn-wx-09"')
    path.write_text(text)
    new = load_registry(path)
    assert registry_change(registry, new) == (
        f"{len(registry.device_list) + 1} devices (+2, -1); added sf-new-01, sn-wx-09; "
        "removed sn-wx-02; thresholds of santa-fe"
    )
    assert registry_change(registry, registry) == f"{len(registry.device_list)} devices (+0, -0)"


# -- the ingest writer takes a new registry between two batches ------------------------------


class SwappingWriter:
    """A `SpoolWriter` with a registry watch, running in a thread over an embedded store."""

    def __init__(self, tmp_path: Path, path: Path) -> None:
        self.settings = Settings(data_dir=tmp_path, alert_reload_every_s=0.05, _env_file=None)
        self.store_path = tmp_path / "store.sqlite"
        self.spool = Spool(tmp_path / "ingest.sqlite")
        self.watch = watch_registry(path, settle_s=0)
        registry = self.watch.load()
        self.opened: list[Registry] = []
        self.fail_opens = 0
        self.abort = threading.Event()
        self.draining = threading.Event()
        self.writer = SpoolWriter(
            self.spool,
            EmbeddedStore(self.store_path, registry),
            settings=self.settings,
            registry=registry,
            events=Tally(),
            abort=self.abort,
            watch=self.watch,
            store_for=self.store_for,
        )
        self.thread = threading.Thread(target=self.run)

    def store_for(self, registry: Registry) -> EmbeddedStore:
        self.opened.append(registry)
        if self.fail_opens:
            self.fail_opens -= 1
            raise StoreError("the store is away")
        return EmbeddedStore(self.store_path, registry)

    def run(self) -> None:
        try:
            self.writer.run(self.draining.is_set)
        finally:
            self.writer.close()

    def send(self, *messages: tuple[str, str, float]) -> None:
        """(device, sensor, value) readings of plain JSON messages, one a message."""
        now_ms = time.time_ns() // 1_000_000
        self.spool.append(
            [
                (
                    time.time_ns(),
                    f"pilots/{PILOT_OF[device[:2]]}/{device}/up",
                    plain(now_ms - i, {sensor: v}),
                )
                for i, (device, sensor, v) in enumerate(messages)
            ]
        )
        wait_for(lambda: self.spool.depth().messages == 0, 10, "an empty spool")

    def stored(self, registry: Registry) -> dict[str, list[float]]:
        reader = EmbeddedStore(self.store_path, registry)
        try:
            found: dict[str, list[float]] = {}
            for pilot in registry.pilot_list:
                r = reader.scan(pilot.id, pilot.sensors, 0, time.time_ns() + 10**12)
                for d, v in zip(r.device.tolist(), r.value.tolist(), strict=True):
                    found.setdefault(registry.device_list[d].id, []).append(v)
            return {d: sorted(v) for d, v in found.items()}
        finally:
            reader.close()

    def refused(self) -> dict[str, int]:
        reader = EmbeddedStore(self.store_path, load_registry())
        try:
            return reader.quarantine_summary().kept
        finally:
            reader.close()


@pytest.fixture
def swapping(tmp_path: Path) -> Iterator[SwappingWriter]:
    path = tmp_path / "registry.toml"
    shutil.copy(DEFAULT_REGISTRY_PATH, path)
    running = SwappingWriter(tmp_path, path)
    running.thread.start()
    yield running
    running.draining.set()
    running.thread.join(10)
    running.abort.set()
    running.spool.close()


def test_the_writer_takes_a_new_registry_between_batches(swapping: SwappingWriter) -> None:
    path = swapping.watch.paths[0]
    frames = swapping.writer.validator.frames
    swapping.send(("sf-new-01", "level", 1.5), ("sn-aq-01", "pm25", 10.0))
    assert swapping.refused() == {"unknown_device": 1}
    path.write_text(with_new_device(path.read_text()))
    wait_for(lambda: "sf-new-01" in swapping.writer.registry.devices, 10, "the new registry taken")
    new = swapping.writer.registry
    # the devices after the new one have new codes: readings still land on the right device
    assert new.devices["sn-aq-01"].code == load_registry().devices["sn-aq-01"].code + 1
    swapping.send(("sf-new-01", "level", 2.5), ("sn-aq-01", "pm25", 20.0))
    assert swapping.stored(new) == {"sf-new-01": [2.5], "sn-aq-01": [10.0, 20.0]}
    assert swapping.refused() == {"unknown_device": 1}
    # the retransmission keys seen are kept; the validator, keeper and store use the new one
    assert swapping.writer.validator.frames is frames
    assert swapping.writer.validator.registry is new
    assert swapping.writer.keeper.registry is new
    assert swapping.writer.store is swapping.writer.keeper.store
    # a broken file is refused: the running registry stays and readings go on being stored
    path.write_text("pilots = [")
    wait_for(lambda: swapping.watch.refused == 1, 10, "the broken registry refused")
    assert swapping.watch.last_error is not None
    assert "cannot read registry" in swapping.watch.last_error
    swapping.send(("sf-new-01", "level", 3.5))
    assert swapping.writer.registry is new
    assert swapping.stored(new)["sf-new-01"] == [2.5, 3.5]


def test_a_new_registry_waits_for_its_store(swapping: SwappingWriter) -> None:
    path = swapping.watch.paths[0]
    swapping.fail_opens = 2
    path.write_text(with_new_device(path.read_text()))
    wait_for(lambda: "sf-new-01" in swapping.writer.registry.devices, 10, "the new registry taken")
    assert len(swapping.opened) == 3
    swapping.send(("sf-new-01", "level", 4.5))
    assert swapping.stored(swapping.writer.registry) == {"sf-new-01": [4.5]}

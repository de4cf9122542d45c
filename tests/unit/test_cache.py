"""The API's hot cache against the embedded store it sits in front of.

The cache reads the wall clock, so every reading is placed relative to the time the test
starts, on a 10-minute grid; readings added later sit off the grid so they never overwrite one.
An answer from the cache must equal the store's answer for the same question, once the
background refresh has had its chance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.cache import HotCache
from api.services.sources import CachedScanner
from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups
from core.store.embedded import EmbeddedStore
from ingest.rollups import RollupMaintainer
from tests.helpers import wait_for

S = 1_000_000_000
MIN = 60 * S
H = 3600 * S
DAY = 24 * H
PILOT = "santa-fe"
#: Long enough for a refresh every 0.05 s to happen many times over; short enough to keep fast.
WAIT_S = 3.0
REFRESH_S = 0.05

Row = tuple[int, str, str, float]


@dataclass
class World:
    """A store holding readings and their rollups, and the instant they were built around."""

    store: EmbeddedStore
    registry: Registry
    maintainer: RollupMaintainer
    base_ns: int  # the latest 10-minute mark; every fixture reading sits on that grid

    def write(self, rows: list[Row]) -> None:
        """Write readings as ingest would, then roll them up."""
        readings = Readings.from_arrays(
            [r[0] for r in rows],
            self.registry.device_codes([r[1] for r in rows]),
            self.registry.sensor_codes([r[2] for r in rows]),
            [r[3] for r in rows],
        )
        self.store.write(readings)
        self.maintainer.note(readings)
        self.maintainer.run(self.store)

    def sensors(self) -> list[str]:
        return list(self.registry.pilots[PILOT].sensors)

    def sensor_codes(self) -> list[int]:
        return [int(c) for c in self.registry.sensor_codes(self.sensors())]

    def cache(self, **options: Any) -> HotCache:
        return HotCache(self.store, self.registry, **options)


@pytest.fixture
def world(tmp_path: Path, registry: Registry) -> Iterator[World]:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    base = time.time_ns() // (10 * MIN) * (10 * MIN)
    w = World(store, registry, RollupMaintainer(tmp_path / "rollups.sqlite", registry), base)
    rows: list[Row] = []
    for k in range(37):  # the last six hours, every 10 minutes
        t = base - k * 10 * MIN
        rows.append((t, "sf-rlv-01", "level", round(3.5 + 0.01 * k, 3)))
        rows.append((t, "sf-rlv-01", "battery_v", round(4.0 - 0.001 * k, 4)))
        rows.append((t, "sf-rlv-02", "level", round(3.6 + 0.02 * k, 3)))
        rows.append((t, "sf-rg-01", "rain", float(k % 3)))
        rows.append((t, "sn-aq-01", "pm25", 10.0 + k))  # another pilot's
    for k in range(6):  # three days ago: outside the raw span, inside the rollups'
        t = base - 3 * DAY - k * 10 * MIN
        rows.append((t, "sf-rlv-01", "level", 2.0 + 0.1 * k))
        rows.append((t, "sf-rlv-02", "level", 2.5 + 0.1 * k))
    w.write(rows)
    yield w
    store.close()


def as_rows(readings: Readings) -> list[tuple[Any, ...]]:
    """Readings as sorted (ts, device, sensor, value) tuples, whatever order they came in."""
    return sorted(
        zip(
            readings.ts_ns.tolist(),
            readings.device.tolist(),
            readings.sensor.tolist(),
            readings.value.tolist(),
            strict=True,
        )
    )


def same_rollups(a: Rollups, b: Rollups) -> bool:
    """The same rollup rows, in any order."""
    return a.take(a.sort_order()).equals(b.take(b.sort_order()))


def recent_range(world: World) -> tuple[int, int]:
    return world.base_ns - DAY, world.base_ns + H


def held(world: World, cache: HotCache) -> list[tuple[Any, ...]]:
    """Every reading of the pilot the cache answers with from the last day (and the next hour)."""
    return as_rows(cache.readings(PILOT, world.sensor_codes(), *recent_range(world)))


def stored(world: World) -> list[tuple[Any, ...]]:
    """What the store holds of the same."""
    return as_rows(world.store.scan(PILOT, world.sensors(), *recent_range(world)))


def key(world: World, row: Row) -> tuple[int, int, int, float]:
    ts, device, sensor, value = row
    return (ts, world.registry.devices[device].code, world.registry.sensors[sensor].code, value)


@contextmanager
def running(cache: HotCache) -> Iterator[HotCache]:
    """The cache with its refresh thread running, stopped on the way out."""
    cache.start()
    try:
        yield cache
    finally:
        cache.stop()


# -- recent readings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_min", "to_min", "sensors", "devices", "expect_some"),
    [
        (-360, 1, None, None, True),  # every sensor of the pilot, the whole six hours
        (-120, -30, ["level"], None, True),  # both ends on a reading: half-open
        (-300, 0, ["level", "battery_v"], ["sf-rlv-02"], True),
        (-300, 1, ["rain", "battery_v"], ["sf-rg-01", "sf-rlv-01"], True),
        (-300, 1, ["rain"], ["sf-rlv-01"], False),  # a device without that sensor
        (-300, 1, ["pm25"], None, False),  # another pilot's sensor
        (-300, 1, ["level"], [], False),
        (-49, -41, ["level"], None, False),  # between two readings
    ],
)
def test_recent_readings_from_cache_equal_the_store(
    world: World,
    from_min: int,
    to_min: int,
    sensors: list[str] | None,
    devices: list[str] | None,
    expect_some: bool,
) -> None:
    cache = world.cache()
    chosen = sensors if sensors is not None else world.sensors()
    start, end = world.base_ns + from_min * MIN, world.base_ns + to_min * MIN

    from_store = world.store.scan(PILOT, chosen, start, end, devices=devices)
    from_cache = cache.readings(
        PILOT,
        world.registry.sensor_codes(chosen).tolist(),
        start,
        end,
        None if devices is None else world.registry.device_codes(devices).tolist(),
    )
    scanned = CachedScanner(world.registry, world.store, cache).scan(
        PILOT, chosen, start, end, devices=devices
    )

    assert cache.covers_raw(start, time.time_ns())
    assert as_rows(from_cache) == as_rows(from_store)
    assert as_rows(scanned) == as_rows(from_store)
    assert bool(len(from_store)) == expect_some
    assert np.all(np.diff(from_cache.ts_ns) >= 0), "the cache answers in time order"


def test_range_older_than_raw_span_is_answered_by_the_store(world: World) -> None:
    cache = world.cache()  # holds 60 h of raw readings
    start, end = world.base_ns - 3 * DAY - 2 * H, world.base_ns - 2 * DAY
    sensors = ["level"]

    from_store = world.store.scan(PILOT, sensors, start, end)
    scanned = CachedScanner(world.registry, world.store, cache).scan(PILOT, sensors, start, end)
    without_cache = CachedScanner(world.registry, world.store, None).scan(
        PILOT, sensors, start, end
    )

    assert not cache.covers_raw(start, time.time_ns())
    assert len(from_store) == 12
    assert as_rows(scanned) == as_rows(from_store) == as_rows(without_cache)
    # The cache itself does not hold them: answering from it would have lost them.
    codes = world.registry.sensor_codes(sensors).tolist()
    assert len(cache.readings(PILOT, codes, start, end)) == 0


def test_raw_span_holds_recent_readings_only(world: World) -> None:
    # Half an hour floors to the hour before it: 30 to 90 minutes back.
    cache = world.cache(raw_hours=0.5)
    recent: Row = (time.time_ns() - 10 * MIN + 7 * S, "sf-rlv-01", "level", 9.1)
    old: Row = (time.time_ns() - 2 * H + 7 * S, "sf-rlv-01", "level", 9.2)
    world.write([recent, old])

    rows = held(world, cache)

    assert key(world, recent) in rows
    assert key(world, old) not in rows
    assert key(world, old) in stored(world)


def test_a_pilot_with_more_recent_readings_than_the_bound_is_not_held(world: World) -> None:
    """The fixture's pilot has 148 recent readings; a device then reports every second."""
    with running(world.cache(refresh_s=REFRESH_S, deep_s=0.1, max_raw_readings=500)) as cache:
        now = time.time_ns()
        assert cache.covers_raw(now - H, now, PILOT), "148 readings are held"
        chatty: list[Row] = [
            (world.base_ns + i * S + 3, "sf-rlv-01", "level", 1.0) for i in range(1, 600)
        ]
        world.store.write(
            Readings.from_arrays(
                [r[0] for r in chatty],
                world.registry.device_codes([r[1] for r in chatty]),
                world.registry.sensor_codes([r[2] for r in chatty]),
                [r[3] for r in chatty],
            )
        )
        wait_for(
            lambda: not cache.covers_raw(now - H, now, PILOT),
            WAIT_S,
            "the pilot's recent readings let go",
            0.01,
        )
        assert len(cache.readings(PILOT, world.sensor_codes(), *recent_range(world))) == 0
        assert cache.covers_raw(now - H, now, "resistencia"), "other pilots are still held"


# -- refresh --------------------------------------------------------------------------------


def test_new_and_late_readings_appear_after_a_refresh(world: World) -> None:
    # Late data hours back is read again every `deep_s`; new data at every refresh.
    with running(world.cache(refresh_s=REFRESH_S, deep_s=0.3)) as cache:
        assert held(world, cache) == stored(world)
        loaded = cache.version

        new: Row = (time.time_ns() + 7 * S, "sf-rlv-01", "level", 7.7)
        world.write([new])
        wait_for(lambda: key(world, new) in held(world, cache), WAIT_S, "the new reading", 0.01)
        assert cache.version > loaded
        after_new = cache.version

        late: Row = (world.base_ns - 3 * H + 7 * S, "sf-rlv-02", "level", 6.6)  # in the overlap
        world.write([late])
        wait_for(lambda: key(world, late) in held(world, cache), WAIT_S, "the late reading", 0.01)
        assert cache.version > after_new
        after_late = cache.version

        corrected: Row = (world.base_ns - H, "sf-rlv-01", "level", 1.25)  # a rewritten point
        world.write([corrected])
        wait_for(lambda: key(world, corrected) in held(world, cache), WAIT_S, "the rewrite", 0.01)
        assert cache.version > after_late
        assert held(world, cache) == stored(world), "a rewritten point replaces the old one"


def test_refresh_without_new_data_keeps_the_version(world: World) -> None:
    with running(world.cache(refresh_s=REFRESH_S)) as cache:
        held(world, cache)
        # The refresh loop runs: a reading written now shows up...
        new: Row = (time.time_ns() + 7 * S, "sf-rg-01", "rain", 1.0)
        world.write([new])
        wait_for(lambda: key(world, new) in held(world, cache), WAIT_S, "a refresh", 0.01)
        settled = cache.version

        time.sleep(10 * REFRESH_S)  # ...and then many refreshes find nothing new

        assert cache.version == settled
        assert held(world, cache) == stored(world)


def test_late_reading_older_than_the_overlap_appears_after_a_reload(world: World) -> None:
    with running(world.cache(refresh_s=REFRESH_S, overlap_s=0.0, reload_s=0.3)) as cache:
        held(world, cache)
        late: Row = (world.base_ns - 4 * H + 7 * S, "sf-rlv-01", "battery_v", 3.3)
        world.write([late])

        wait_for(lambda: key(world, late) in held(world, cache), WAIT_S, "a reload", 0.01)
        assert held(world, cache) == stored(world)


def test_reload_without_new_data_keeps_the_version(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.cache")
    with running(world.cache(refresh_s=REFRESH_S, reload_s=0.1)) as cache:
        held(world, cache)
        loaded = cache.version

        def loads() -> int:
            return sum("loaded" in r.getMessage() for r in caplog.records)

        wait_for(lambda: loads() >= 2, WAIT_S, "a full reload", 0.01)

        assert held(world, cache) == stored(world)
        assert cache.version == loaded


# -- hourly rollups -------------------------------------------------------------------------


def test_hourly_rollups_equal_the_store_and_take_recomputed_hours(world: World) -> None:
    start, end = world.base_ns - 4 * DAY, world.base_ns + 2 * H
    hour = (world.base_ns - 2 * H) // H * H
    device, sensor = world.registry.devices["sf-rlv-01"].code, world.registry.sensors["level"].code

    codes = world.registry.sensor_codes(world.sensors()).tolist()

    def from_store() -> Rollups:
        return world.store.scan_rollups(PILOT, world.sensors(), "1h", start, end)

    with running(world.cache(refresh_s=REFRESH_S, deep_s=0.3)) as cache:

        def count() -> int:
            r = cache.rollups(PILOT, codes, start, end)
            chosen = (r.device == device) & (r.sensor == sensor) & (r.start_ns == hour)
            return int(r.count[chosen].sum())

        assert len(from_store()) > 0
        assert same_rollups(cache.rollups(PILOT, codes, start, end), from_store())
        before = count()
        assert before == 6

        world.write([(hour + 7 * S, "sf-rlv-01", "level", 8.8)])

        wait_for(lambda: count() == before + 1, WAIT_S, "the recomputed hour", 0.01)
        r = cache.rollups(PILOT, codes, start, end)
        keys = set(zip(r.start_ns.tolist(), r.device.tolist(), r.sensor.tolist(), strict=True))
        assert len(keys) == len(r), "a merged hour must replace its old row, not join it"
        assert same_rollups(r, from_store())


# -- lifecycle ------------------------------------------------------------------------------


def test_start_after_stop_refreshes_again(world: World) -> None:
    cache = world.cache(refresh_s=REFRESH_S)
    with running(cache):
        held(world, cache)
    while_stopped: Row = (time.time_ns() + 7 * S, "sf-rlv-01", "level", 5.5)
    world.write([while_stopped])
    time.sleep(4 * REFRESH_S)
    assert key(world, while_stopped) not in held(world, cache), "stopped means not refreshing"

    with running(cache):  # as when the app's lifespan runs a second time
        wait_for(lambda: key(world, while_stopped) in held(world, cache), WAIT_S, "a refresh", 0.01)
        assert held(world, cache) == stored(world)


@pytest.mark.parametrize("refresh_s", [REFRESH_S, 3600.0])
def test_stop_returns_promptly(world: World, refresh_s: float) -> None:
    cache = world.cache(refresh_s=refresh_s)
    cache.start()
    held(world, cache)
    time.sleep(2 * REFRESH_S)

    began = time.monotonic()
    cache.stop()

    assert time.monotonic() - began < 0.5

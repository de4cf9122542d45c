"""The rollup maintainer keeps stored rollups equal to the kernel on raw readings, late data too.

Runs against both adapters: the embedded store and a real influxd.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups, to_table
from core.stats import aggregate
from core.store import Store
from core.windows import fixed_edges
from ingest.rollups import RollupMaintainer

pytestmark = pytest.mark.integration

S = 1_000_000_000
MIN = 60 * S
HOUR = 3600 * S
DAY = 86_400 * S
#: 2025-11-28 00:00 at UTC-3: the pilots' local midnight, which 1d rollups start on.
MIDNIGHT = 1_764_298_800 * S
ORIGIN = 3 * HOUR
WHOLE = (MIDNIGHT - DAY, MIDNIGHT + DAY)  # the two local days the data touches
SERIES = [
    ("santa-fe", "sf-rlv-01", "level"),
    ("santa-fe", "sf-rlv-01", "water_temp"),
    ("santa-fe", "sf-rlv-02", "level"),
    ("resistencia", "rs-wq-01", "ph"),
]


@pytest.fixture
def maintainer(registry: Registry, tmp_path: Path) -> Iterator[RollupMaintainer]:
    m = RollupMaintainer(tmp_path / "var" / "rollups.sqlite", registry)
    yield m
    m.close()


def readings_across_midnight(registry: Registry, seed: int) -> Readings:
    """About one reading per 40 s per series, from 21:00 to 03:00 local, unsorted."""
    rng = np.random.default_rng(seed)
    parts = []
    for _, device, sensor in SERIES:
        n = 540
        ts = MIDNIGHT - 3 * HOUR + np.sort(rng.choice(6 * 3600, n, replace=False)) * S
        ts = ts + rng.integers(0, S, n)
        parts.append(
            Readings.from_arrays(
                ts,
                np.full(n, registry.devices[device].code),
                np.full(n, registry.sensors[sensor].code),
                np.round(rng.normal(7.0, 2.0, n), 4),
            )
        )
    joined = Readings.concat(parts)
    return joined.take(rng.permutation(len(joined)))


def series_rows(registry: Registry, device: np.ndarray, sensor: np.ndarray) -> np.ndarray:
    """Row of each (device, sensor) in SERIES order."""
    codes = [
        registry.devices[d].code * len(registry.sensor_list) + registry.sensors[s].code
        for _, d, s in SERIES
    ]
    key = device.astype(np.int64) * len(registry.sensor_list) + sensor
    lookup = {c: i for i, c in enumerate(codes)}
    return np.asarray([lookup[k] for k in key.tolist()], dtype=np.int64)


def stored(store: Store, resolution: str) -> Rollups:
    parts = []
    for pilot in ("santa-fe", "resistencia"):
        sensors = sorted({s for p, _, s in SERIES if p == pilot})
        parts.append(store.scan_rollups(pilot, sensors, resolution, *WHOLE))
    return Rollups.concat(parts)


def assert_rollups_equal_the_kernel(store: Store, registry: Registry) -> None:
    """Every stored rollup level gives the kernel's statistics of the stored raw readings."""
    raw = Readings.concat(
        [
            store.scan(pilot, sorted({s for p, _, s in SERIES if p == pilot}), *WHOLE)
            for pilot in ("santa-fe", "resistencia")
        ]
    )
    series = raw.device.astype(np.int64) * len(registry.sensor_list) + raw.sensor
    for resolution, every, origin in (("1m", MIN, 0), ("1h", HOUR, 0), ("1d", DAY, ORIGIN)):
        edges = fixed_edges(*WHOLE, every, origin)
        want = aggregate(
            raw.ts_ns,
            series,
            raw.value,
            group=series_rows(registry, raw.device, raw.sensor),
            n_groups=len(SERIES),
            edges_ns=edges,
        )
        rollups = stored(store, resolution)
        assert len(rollups) == int((want.count > 0).sum()), resolution  # no stale extra rows
        got = to_table(
            rollups,
            resolution,
            group=series_rows(registry, rollups.device, rollups.sensor),
            n_groups=len(SERIES),
            edges_ns=edges,
        )
        assert np.array_equal(got.count, want.count), resolution
        for name in ("min", "max", "first", "last"):
            assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True)
        for name in ("sum", "mean", "std"):
            np.testing.assert_allclose(
                getattr(got, name), getattr(want, name), rtol=1e-9, atol=1e-12, err_msg=name
            )


def all_levels(store: Store) -> dict[str, Rollups]:
    return {r: stored(store, r) for r in ("1m", "1h", "1d")}


def test_rollups_follow_writes_including_late_readings(
    store: Store, registry: Registry, maintainer: RollupMaintainer
) -> None:
    readings = readings_across_midnight(registry, seed=11)
    store.write(readings)
    assert maintainer.note(readings) > 0
    first = maintainer.run(store)
    assert maintainer.pending() == 0
    assert (first.hours, first.days) == (6 * len(SERIES), 2 * len(SERIES))
    assert_rollups_equal_the_kernel(store, registry)
    watermark = store.get_watermark("rollups")
    assert watermark is not None and first.watermark_ns == watermark

    # Late readings for one old minute (22:10 local, the day before), one replacing a point.
    device, sensor = registry.devices["sf-rlv-01"].code, registry.sensors["level"].code
    minute = MIDNIGHT - 2 * HOUR + 10 * MIN
    old = store.scan("santa-fe", ["level"], minute, minute + MIN, devices=["sf-rlv-01"])
    hour_before = store.scan_rollups(
        "santa-fe", ["level"], "1h", minute - 10 * MIN, minute, devices=["sf-rlv-01"]
    )
    day_before = store.scan_rollups(
        "santa-fe", ["level"], "1d", MIDNIGHT - DAY, MIDNIGHT, devices=["sf-rlv-01"]
    )
    late = Readings.from_arrays(
        [minute + 1, minute + 59 * S, int(old.ts_ns[0])],
        [device] * 3,
        [sensor] * 3,
        [100.0, -100.0, 55.5],
    )
    store.write(late)
    maintainer.note(late)
    second = maintainer.run(store)
    assert (second.notes, second.minutes, second.hours, second.days) == (1, 1, 1, 1)
    assert second.watermark_ns is not None and second.watermark_ns > watermark
    assert store.get_watermark("rollups") == second.watermark_ns
    assert_rollups_equal_the_kernel(store, registry)
    hour = store.scan_rollups(
        "santa-fe", ["level"], "1h", minute - 10 * MIN, minute, devices=["sf-rlv-01"]
    )
    assert hour.count.tolist() == [hour_before.count[0] + 2]
    assert (hour.max.tolist(), hour.min.tolist()) == ([100.0], [-100.0])
    day = store.scan_rollups(
        "santa-fe", ["level"], "1d", MIDNIGHT - DAY, MIDNIGHT, devices=["sf-rlv-01"]
    )
    assert day.count.tolist() == [day_before.count[0] + 2]
    assert (day.max.tolist(), day.min.tolist()) == ([100.0], [-100.0])

    # Nothing noted since: a third run changes nothing.
    before = all_levels(store)
    third = maintainer.run(store)
    assert (third.notes, third.minutes, third.hours, third.days) == (0, 0, 0, 0)
    assert third.watermark_ns == second.watermark_ns
    after = all_levels(store)
    assert all(after[r].equals(before[r]) for r in before)


def test_noting_the_same_readings_again_recomputes_to_the_same_rollups(
    store: Store, registry: Registry, maintainer: RollupMaintainer
) -> None:
    readings = readings_across_midnight(registry, seed=3)
    store.write(readings)
    maintainer.note(readings)
    maintainer.note(readings.take(np.arange(100)))  # a replayed part: notes are renewed
    maintainer.run(store)
    before = all_levels(store)
    store.write(readings)  # a full replay: idempotent in the store and in the rollups
    maintainer.note(readings)
    maintainer.run(store)
    after = all_levels(store)
    for level in before:
        assert np.array_equal(after[level].count, before[level].count)
        np.testing.assert_allclose(after[level].sum, before[level].sum, rtol=1e-12)
        assert after[level].sketch.equals(before[level].sketch)
    assert_rollups_equal_the_kernel(store, registry)


def test_pilots_without_fixed_days_get_minutes_and_hours_only(
    store: Store, registry: Registry, tmp_path: Path
) -> None:
    maintainer = RollupMaintainer(
        tmp_path / "r.sqlite", registry, day_origins={"santa-fe": None, "resistencia": ORIGIN}
    )
    readings = readings_across_midnight(registry, seed=5)
    store.write(readings)
    maintainer.note(readings)
    summary = maintainer.run(store)
    assert summary.days == 2  # resistencia's two days; santa-fe's are left to 1h rollups
    assert len(store.scan_rollups("santa-fe", ["level"], "1d", *WHOLE)) == 0
    assert len(store.scan_rollups("santa-fe", ["level"], "1h", *WHOLE)) == 12
    maintainer.close()

"""One contract, two adapters: the embedded store and a real influxd pass the same tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from core.quarantine import QuarantineEntry
from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups, compute_rollups
from core.sketch import Sketches
from core.store import Store
from core.uplinks import NO_FCNT, NO_SF, Uplinks

pytestmark = pytest.mark.integration

T0 = 1_764_300_000 * 1_000_000_000  # 2025-11-28T03:20:00Z, an arbitrary instant
S = 1_000_000_000


def batch(registry: Registry, rows: list[tuple[int, str, str, float]]) -> Readings:
    return Readings.from_arrays(
        [r[0] for r in rows],
        [registry.devices[r[1]].code for r in rows],
        [registry.sensors[r[2]].code for r in rows],
        [r[3] for r in rows],
    )


def as_rows(registry: Registry, readings: Readings) -> list[tuple[int, str, str, float]]:
    rows = zip(
        readings.ts_ns.tolist(),
        readings.device.tolist(),
        readings.sensor.tolist(),
        readings.value.tolist(),
        strict=True,
    )
    return sorted(
        (t, registry.device_list[d].id, registry.sensor_list[s].id, v) for t, d, s, v in rows
    )


def test_what_is_written_is_scanned_back_exactly(store: Store, registry: Registry) -> None:
    rows = [
        (T0, "sf-rlv-01", "level", 3.217),
        (T0, "sf-rlv-01", "water_temp", 24.5),
        (T0 + 600 * S, "sf-rlv-01", "level", 0.30000000000000004),
        (T0 + 600 * S + 1, "sf-rlv-02", "level", 1e-05),
        (T0 + 1200 * S, "sf-rlv-02", "level", -0.25),
        (T0 + 30 * S, "sf-wx-01", "temperature", 31.25),
    ]
    store.write(batch(registry, rows))
    got = store.scan("santa-fe", ["level", "water_temp", "temperature"], T0, T0 + 3600 * S)
    assert as_rows(registry, got) == sorted(rows)


def test_a_second_write_of_the_same_point_replaces_it(store: Store, registry: Registry) -> None:
    store.write(batch(registry, [(T0, "rs-wq-01", "ph", 7.1)]))
    store.write(batch(registry, [(T0, "rs-wq-01", "ph", 7.1), (T0, "rs-wq-01", "ph", 7.4)]))
    got = store.scan("resistencia", ["ph"], T0 - S, T0 + S)
    assert as_rows(registry, got) == [(T0, "rs-wq-01", "ph", 7.4)]


def test_scan_is_half_open_and_filters_pilot_sensor_and_device(
    store: Store, registry: Registry
) -> None:
    rows = [
        (T0 - 1, "sf-rlv-01", "level", 1.0),  # before the range
        (T0, "sf-rlv-01", "level", 2.0),  # first instant: included
        (T0 + 10 * S, "sf-rlv-02", "level", 3.0),
        (T0 + 10 * S, "sf-rlv-01", "water_temp", 20.0),  # other sensor
        (T0 + 10 * S, "rs-rlv-01", "level", 5.0),  # other pilot
        (T0 + 60 * S, "sf-rlv-01", "level", 4.0),  # end instant: excluded
    ]
    store.write(batch(registry, rows))
    got = store.scan("santa-fe", ["level"], T0, T0 + 60 * S)
    assert as_rows(registry, got) == [
        (T0, "sf-rlv-01", "level", 2.0),
        (T0 + 10 * S, "sf-rlv-02", "level", 3.0),
    ]
    only_02 = store.scan("santa-fe", ["level"], T0, T0 + 60 * S, devices=["sf-rlv-02"])
    assert as_rows(registry, only_02) == [(T0 + 10 * S, "sf-rlv-02", "level", 3.0)]
    assert len(store.scan("santa-fe", ["level"], T0 + 61 * S, T0 + 99 * S)) == 0
    # What a request would read is known before it reads: counts agree with the scans.
    for sensors, devices in (
        (["level"], None),
        (["level", "water_temp"], None),
        (["level"], ["sf-rlv-02"]),
        (["level", "water_temp"], ["sf-rlv-01"]),
        (["level"], []),
    ):
        scanned = store.scan("santa-fe", sensors, T0, T0 + 60 * S, devices=devices)
        assert store.count("santa-fe", sensors, T0, T0 + 60 * S, devices=devices) == len(scanned)


def test_latest_is_the_newest_reading_of_each_device_and_sensor(
    store: Store, registry: Registry
) -> None:
    rows = [
        (T0, "sn-aq-01", "pm25", 10.0),
        (T0 + 300 * S, "sn-aq-01", "pm25", 12.0),
        (T0 + 100 * S, "sn-aq-01", "battery_v", 3.9),
        (T0 + 200 * S, "sn-aq-02", "pm25", 30.0),
        (T0 + 50 * S, "sn-aq-02", "pm25", 35.0),
    ]
    store.write(batch(registry, rows))
    assert as_rows(registry, store.latest("san-nicolas")) == sorted(
        [
            (T0 + 300 * S, "sn-aq-01", "pm25", 12.0),
            (T0 + 100 * S, "sn-aq-01", "battery_v", 3.9),
            (T0 + 200 * S, "sn-aq-02", "pm25", 30.0),
        ]
    )
    assert len(store.latest("resistencia")) == 0


def test_a_large_batch_round_trips(store: Store, registry: Registry) -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    devices = registry.device_codes(["sn-aq-01", "sn-aq-02", "sn-aq-03"])
    readings = Readings.from_arrays(
        T0 + np.arange(n, dtype=np.int64) * S,
        rng.choice(devices, n),
        np.full(n, registry.sensors["no2"].code),
        np.round(rng.uniform(5, 120, n), 6),
    )
    store.write(readings)
    got = store.scan("san-nicolas", ["no2"], T0, T0 + n * S)
    assert as_rows(registry, got) == as_rows(registry, readings)


def test_ping_answers_while_the_store_is_up(store: Store) -> None:
    store.ping()


def test_uplinks_round_trip_with_absent_values(store: Store, registry: Registry) -> None:
    aq, wq = registry.devices["sn-aq-01"], registry.devices["sn-aq-02"]
    uplinks = Uplinks.from_columns(
        ts_ns=[T0, T0 + 300 * S, T0 + 10 * S],
        device=[aq.code, aq.code, wq.code],
        received_ns=[T0 + 2 * S, T0 + 301 * S, T0 + 11 * S],
        fcnt=[17, NO_FCNT, 4_294_967_295],
        rssi=[-97.5, math.nan, -120.0],
        snr=[7.25, math.nan, -12.5],
        sf=[9, NO_SF, 12],
        gateway=['gw "north" \\ 1', "", "0016c001f153a14c"],
    )
    store.write(Readings.empty(), uplinks)
    got = store.scan_uplinks("san-nicolas", T0, T0 + 3600 * S)
    order = np.lexsort((got.ts_ns, got.device))
    want_order = np.lexsort((uplinks.ts_ns, uplinks.device))
    for name in Uplinks.__slots__:
        a, b = getattr(got, name)[order], getattr(uplinks, name)[want_order]
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    only = store.scan_uplinks("san-nicolas", T0, T0 + 3600 * S, devices=["sn-aq-02"])
    assert only.fcnt.tolist() == [4_294_967_295]
    assert store.count_uplinks("san-nicolas", T0, T0 + 3600 * S) == 3
    assert store.count_uplinks("san-nicolas", T0, T0 + 3600 * S, devices=["sn-aq-02"]) == 1
    assert store.count_uplinks("san-nicolas", T0 + 11 * S, T0 + 3600 * S) == 1
    assert len(store.scan_uplinks("santa-fe", T0, T0 + 3600 * S)) == 0


def test_repeats_are_counted_per_device_apart_from_the_uplinks(
    store: Store, registry: Registry
) -> None:
    aq, wq = registry.devices["sn-aq-01"], registry.devices["sn-aq-02"]
    when = [T0 + 5 * S, T0 + 5 * S + 1, T0 + 900 * S, T0 + 3600 * S]
    repeats = Uplinks.from_columns(
        ts_ns=when,
        device=[aq.code, aq.code, wq.code, wq.code],
        received_ns=when,
        fcnt=[7, 7, 12, 13],
        rssi=[-97.0, -99.0, math.nan, -101.0],
        snr=[7.0, 6.5, math.nan, 1.0],
        sf=[9, 9, NO_SF, 10],
        gateway=["gw-1", "gw-2", "", "gw-1"],
    )
    store.write(Readings.empty(), None, repeats)
    # half-open: the repeat at T0 + 3600 s falls in the next hour
    assert store.count_repeats("san-nicolas", T0, T0 + 3600 * S) == {"sn-aq-01": 2, "sn-aq-02": 1}
    assert store.count_repeats("san-nicolas", T0 + 3600 * S, T0 + 7200 * S) == {"sn-aq-02": 1}
    assert store.count_repeats("santa-fe", T0, T0 + 7200 * S) == {}
    assert len(store.scan_uplinks("san-nicolas", T0, T0 + 7200 * S)) == 0


def test_readings_and_uplinks_are_written_together(store: Store, registry: Registry) -> None:
    code = registry.devices["rs-wq-01"].code
    store.write(
        batch(registry, [(T0, "rs-wq-01", "ph", 7.5)]),
        Uplinks.from_columns(
            ts_ns=[T0],
            device=[code],
            received_ns=[T0 + S],
            fcnt=[3],
            rssi=[math.nan],
            snr=[math.nan],
            sf=[0],
            gateway=[""],
        ),
    )
    assert len(store.scan("resistencia", ["ph"], T0, T0 + S)) == 1
    assert store.scan_uplinks("resistencia", T0, T0 + S).fcnt.tolist() == [3]


# -- rollups and watermarks -------------------------------------------------------------------

MIN = 60 * S
HOUR = 3600 * S
TOP = 1.7976931348623157e308


def rollup_rows(registry: Registry, rollups: Rollups) -> list[tuple[object, ...]]:
    """Every column of every row, by name, sorted; floats as `float` so 0.0 == -0.0."""
    columns = [
        rollups.start_ns.tolist(),
        [registry.device_list[d].id for d in rollups.device.tolist()],
        [registry.sensor_list[s].id for s in rollups.sensor.tolist()],
        *(
            getattr(rollups, name).tolist()
            for name in ("count", "sum", "m2", "min", "max", "first", "first_ts", "last")
        ),
        rollups.last_ts.tolist(),
        rollups.sketch.encode(),
    ]
    return sorted(zip(*columns, strict=True))


def test_rollups_round_trip_exactly(store: Store, registry: Registry) -> None:
    rows = [
        (T0 + 5 * S, "sf-rlv-01", "level", 0.30000000000000004),
        (T0 + 7 * S, "sf-rlv-01", "level", 1e-05),
        (T0 + 9 * S, "sf-rlv-01", "level", -2.5),
        (T0 + 61 * S, "sf-rlv-01", "level", 5e-324),  # subnormal: sketch's zero bucket
        (T0 + 125 * S, "sf-rlv-02", "level", TOP),
        (T0 + 3 * S, "sf-rlv-01", "water_temp", 1 / 3),
        (T0 + HOUR, "sf-wx-01", "temperature", -0.0),
    ]
    rollups = compute_rollups(batch(registry, rows), "1m")
    assert len(rollups) == 5
    store.write_rollups("1m", rollups)
    got = store.scan_rollups(
        "santa-fe", ["level", "water_temp", "temperature"], "1m", T0 - HOUR, T0 + 2 * HOUR
    )
    assert rollup_rows(registry, got) == rollup_rows(registry, rollups)
    assert got.equals(rollups)  # rows come back in (device, sensor, start) order
    # The sketch texts are stored as written and still answer quantiles.
    assert Sketches.decode(got.sketch.encode()).equals(rollups.sketch)
    assert got.sketch.quantiles([1.0])[0].tolist() == pytest.approx(
        rollups.sketch.quantiles([1.0])[0].tolist()
    )


def test_rewriting_a_rollup_window_replaces_the_whole_row(store: Store, registry: Registry) -> None:
    first = compute_rollups(
        batch(registry, [(T0 + S, "rs-wq-01", "ph", 7.0), (T0 + 2 * S, "rs-wq-01", "ph", 7.2)]),
        "1h",
    )
    second = compute_rollups(batch(registry, [(T0 + 30 * S, "rs-wq-01", "ph", 6.5)]), "1h")
    store.write_rollups("1h", first)
    store.write_rollups("1h", first)
    store.write_rollups("1h", second)
    got = store.scan_rollups("resistencia", ["ph"], "1h", T0 - 2 * HOUR, T0 + 2 * HOUR)
    assert rollup_rows(registry, got) == rollup_rows(registry, second)
    assert got.count.tolist() == [1]
    assert got.sketch.totals.tolist() == [1]


def test_scan_rollups_filters_pilot_sensor_device_resolution_and_time(
    store: Store, registry: Registry
) -> None:
    start = T0 - T0 % HOUR
    rows = [
        (start - 1, "sf-rlv-01", "level", 1.0),  # window before the range
        (start, "sf-rlv-01", "level", 2.0),  # first window: included
        (start + 10 * S, "sf-rlv-02", "level", 3.0),
        (start + 10 * S, "sf-rlv-01", "water_temp", 20.0),  # other sensor
        (start + 10 * S, "rs-rlv-01", "level", 5.0),  # other pilot
        (start + 2 * MIN, "sf-rlv-01", "level", 4.0),  # window starting at the end: excluded
    ]
    minutes = compute_rollups(batch(registry, rows), "1m")
    store.write_rollups("1m", minutes)
    store.write_rollups("1h", compute_rollups(batch(registry, rows), "1h"))

    def scanned(*args: Any, **kwargs: Any) -> list[tuple[int, str, float]]:
        got = store.scan_rollups(*args, **kwargs)
        return [
            (t - start, registry.device_list[d].id, v)
            for t, d, v in zip(
                got.start_ns.tolist(), got.device.tolist(), got.sum.tolist(), strict=True
            )
        ]

    window = ("santa-fe", ["level"], "1m", start, start + 2 * MIN)
    assert scanned(*window) == [(0, "sf-rlv-01", 2.0), (0, "sf-rlv-02", 3.0)]
    assert scanned(*window, devices=["sf-rlv-02"]) == [(0, "sf-rlv-02", 3.0)]
    assert scanned(*window, devices=[]) == []
    assert scanned("santa-fe", ["water_temp"], "1m", start, start + 2 * MIN) == [
        (0, "sf-rlv-01", 20.0)
    ]
    assert scanned("santa-fe", ["level"], "1h", start, start + HOUR) == [
        (0, "sf-rlv-01", 6.0),
        (0, "sf-rlv-02", 3.0),
    ]
    assert scanned("santa-fe", ["level"], "1d", start - HOUR, start + HOUR) == []
    with pytest.raises(ValueError, match="resolution"):
        store.scan_rollups("santa-fe", ["level"], "5m", start, start + HOUR)


def test_watermarks_are_set_read_and_overwritten(store: Store) -> None:
    assert store.get_watermark("rollups") is None
    store.set_watermark("rollups", T0)
    store.set_watermark("other.job", 7)
    assert store.get_watermark("rollups") == T0
    store.set_watermark("rollups", T0 - 1)  # a watermark may be moved back on purpose
    assert store.get_watermark("rollups") == T0 - 1
    assert store.get_watermark("other.job") == 7
    store.set_watermark("rollups", 2**63 - 1)
    assert store.get_watermark("rollups") == 2**63 - 1
    for bad in ("", "Rollups", "a b", "x,y=1"):
        with pytest.raises(ValueError, match="watermark name"):
            store.set_watermark(bad, 1)


# -- the quarantine ---------------------------------------------------------------------------


def entry(ts_ns: int, **fields: object) -> QuarantineEntry:
    base: dict[str, object] = {
        "ts_ns": ts_ns,
        "worker": "pilots-ingest-1",
        "source": "sf-rlv-01",
        "reason": "malformed_json",
        "received_ns": ts_ns,
        "topic": "pilots/santa-fe/sf-rlv-01/up",
        "detail": 'expected value at line 1 "column" 2\nand a \\ backslash',
        "sensor": None,
        "length": 4,
        "sha256": "ab" * 32,
        "head": b'{"\n\\',
    }
    base.update(fields)
    return QuarantineEntry(**base)  # type: ignore[arg-type]


def test_quarantine_entries_come_back_as_written_newest_first(store: Store) -> None:
    a = entry(T0)
    b = entry(T0 + S, reason="out_of_range", sensor="level", source="sf-rlv-02", refusals=3)
    c = entry(T0 + 2 * S, worker="pilots-ingest-2", head=bytes(range(256)), length=9000)
    store.add_quarantine([a, b, c])
    store.add_quarantine([a])  # the same key again: still one entry
    assert store.quarantine_entries() == [c, b, a]
    assert store.quarantine_entries(reason="out_of_range") == [b]
    assert store.quarantine_entries(source="sf-rlv-01") == [c, a]
    assert store.quarantine_entries(ids=[a.id, c.id]) == [c, a]
    assert store.quarantine_entries(limit=1) == [c]
    assert store.quarantine_entries(oldest_first=True) == [a, b, c]
    assert store.quarantine_entries(worker="pilots-ingest-2") == [c]
    assert store.quarantine_entries(since_ns=T0 + 1, oldest_first=True, limit=1) == [b]
    assert store.quarantine_entries(since_ns=T0, until_ns=T0 + 2 * S) == [b, a]
    assert not c.complete and a.complete
    assert store.quarantine_summary().kept == {"malformed_json": 2, "out_of_range": 3}


def test_quarantine_usage_delete_prune_and_dropped_counts(store: Store) -> None:
    old = [entry(T0 + i * S) for i in range(3)]
    new = entry(T0 + 10 * S, source="sf-rlv-02")
    other = entry(T0, worker="pilots-ingest-2")
    store.add_quarantine([*old, new, other])
    usage = store.quarantine_usage("pilots-ingest-1")
    assert {s: u.entries for s, u in usage.items()} == {"sf-rlv-01": 3, "sf-rlv-02": 1}
    assert usage["sf-rlv-01"].bytes == 3 * old[0].cost_bytes

    store.delete_quarantine([old[0]])
    assert store.quarantine_entries(source="sf-rlv-01") == [old[2], old[1], other]

    pruned = store.prune_quarantine("pilots-ingest-1", T0 + 5 * S, T0 + 20 * S)
    assert pruned == {("sf-rlv-01", "malformed_json"): 2}
    assert store.quarantine_entries() == [new, other], "only this worker's old entries go"
    store.record_dropped("pilots-ingest-1", T0 + 21 * S, {("cap", "sf-rlv-03", "oversized"): 7})
    store.record_dropped("pilots-ingest-2", T0 + 21 * S, {("cap", "sf-rlv-03", "oversized"): 1})
    assert store.quarantine_summary().dropped == {
        ("age", "malformed_json"): 2,
        ("cap", "oversized"): 8,
    }

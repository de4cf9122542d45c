"""`pilots publish` of periods longer than `PILOTS_API_RAW_MAX_HOURS`: daily figures from rollups.

Six local days of readings finer than hourly (a gap of a whole day, a day with few readings)
go into a real InfluxDB, and the rollups are built from them as ingest builds them
(`RollupMaintainer.note`, then `run`). The command then publishes the six whole days, whose
daily statistics the series service answers from the stored rollups (the daily ones, which a
fixed-offset zone has, and the hourly ones when days are not kept), and a period that starts and
ends inside days, whose cut days are read raw. Each daily row must be exactly the count, mean,
min and max numpy computes from the readings written, and readings.csv exactly the readings of
the period.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from core.readings import Readings
from core.registry import Registry
from core.store.influx import InfluxStore
from core.timeutil import DAY_NS, HOUR_NS, NS_PER_S, datetime_to_ns, parse_instant_ns
from ingest.rollups import RollupMaintainer
from pilots.cli import app
from tests.services import Influxd

pytestmark = pytest.mark.integration

TZ = ZoneInfo("America/Argentina/Cordoba")
FIRST_DAY = date(2026, 11, 2)
DAYS = 6
START_NS = datetime_to_ns(datetime(2026, 11, 2, tzinfo=TZ))
END_NS = START_NS + DAYS * DAY_NS
MIN_NS = 60 * NS_PER_S
#: Inside days: 06:30 on the second day to 17:45 on the sixth.
CUT = ("2026-11-03T06:30:00-03:00", "2026-11-07T17:45:00-03:00")

Row = tuple[int, str, str, float]
Key = tuple[str, str, str]


def _rows() -> list[Row]:
    """Six local days of three devices finer than hourly, and a few readings just outside.

    rs-wq-01 (ph, water_temp) every 15 min, but on the third day only from 08:00 to 11:45;
    rs-rlv-01 (level) every 10 min, silent from the third day's 20:00 to the fifth's 04:00
    (the fourth day has none); rs-wx-01 (temperature) every 20 min, microseconds past the
    minute.
    """
    rng = np.random.default_rng(20261102)
    rows: list[Row] = []
    few = START_NS + 2 * DAY_NS
    for t in range(START_NS, END_NS, 15 * MIN_NS):
        if few <= t < few + DAY_NS and not few + 8 * HOUR_NS <= t < few + 12 * HOUR_NS:
            continue
        rows.append((t, "rs-wq-01", "ph", round(float(rng.normal(7.2, 0.3)), 3)))
        rows.append((t + 5 * NS_PER_S, "rs-wq-01", "water_temp", float(rng.uniform(20, 30))))
    gap = (START_NS + 2 * DAY_NS + 20 * HOUR_NS, START_NS + 4 * DAY_NS + 4 * HOUR_NS)
    for t in range(START_NS, END_NS, 10 * MIN_NS):
        if not gap[0] <= t < gap[1]:
            rows.append((t + 30 * NS_PER_S, "rs-rlv-01", "level", round(3 + t % 997 / 1000, 3)))
    for t in range(START_NS, END_NS, 20 * MIN_NS):
        micros = int(rng.integers(0, 1_000_000)) * 1000
        rows.append((t + 7 * MIN_NS + micros, "rs-wx-01", "temperature", float(rng.normal(28, 4))))
    # Outside the six days: the second before, the instant after.
    rows += [
        (START_NS - NS_PER_S, "rs-wq-01", "ph", 6.0),
        (START_NS - NS_PER_S, "rs-rlv-01", "level", 9.0),
        (END_NS, "rs-wq-01", "ph", 6.0),
        (END_NS, "rs-wx-01", "temperature", 40.0),
    ]
    return rows


def _expected(rows: list[Row], lo: int, hi: int) -> dict[Key, dict[str, Any]]:
    """Per local day, device and sensor: count, mean, min, max of the readings in [lo, hi)."""
    values: dict[Key, list[float]] = {}
    for t, device, sensor, value in rows:
        if lo <= t < hi:
            day = datetime.fromtimestamp(t / NS_PER_S, tz=TZ).date().isoformat()
            values.setdefault((day, device, sensor), []).append(value)
    out = {}
    for key, vs in values.items():
        a = np.asarray(vs, dtype=np.float64)
        out[key] = {
            "count": len(a),
            "mean": float(np.mean(a)),
            "min": float(a.min()),
            "max": float(a.max()),
            "std": float(np.std(a, ddof=1)) if len(a) > 1 else None,
        }
    return out


@pytest.fixture(scope="module")
def stored(
    influxd: Influxd, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Row]]]:
    """The readings in a database of this module's own, and their rollups built as ingest does."""
    database = f"test_publish_rollups_{np.random.default_rng().integers(1 << 40):x}"
    store = InfluxStore(influxd.url, database, registry)
    store.start()
    rows = _rows()
    readings = Readings.from_arrays(
        [r[0] for r in rows],
        registry.device_codes([r[1] for r in rows]),
        registry.sensor_codes([r[2] for r in rows]),
        [r[3] for r in rows],
    )
    store.write(readings)
    # Where ingest keeps it: a notes queue of the writer's own, beside its spool.
    maintainer = RollupMaintainer(tmp_path_factory.mktemp("ingest") / "rollups.sqlite", registry)
    maintainer.note(readings)
    summary = maintainer.run(store)
    assert summary.hours > 0 and summary.days > 0, summary
    maintainer.close()
    yield database, rows
    store.close()


def _publish(
    database: str,
    influxd: Influxd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start: str,
    end: str,
) -> tuple[Path, list[str]]:
    """The folder published of [start, end), and the resolutions of the rollups it read."""
    read: list[str] = []
    scan_rollups = InfluxStore.scan_rollups

    def spy(self: InfluxStore, pilot: str, sensors: Any, resolution: str, *a: Any, **k: Any) -> Any:
        read.append(resolution)
        return scan_rollups(self, pilot, sensors, resolution, *a, **k)

    monkeypatch.setattr(InfluxStore, "scan_rollups", spy)
    monkeypatch.delenv("PILOTS_STORE", raising=False)
    monkeypatch.setenv("PILOTS_INFLUX_URL", influxd.url)
    monkeypatch.setenv("PILOTS_INFLUX_DATABASE", database)
    monkeypatch.setenv("PILOTS_API_RAW_MAX_HOURS", "48")
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("PILOTS_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "published"
    result = CliRunner().invoke(
        app, ["publish", "resistencia", "--start", start, "--end", end, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out, read


def _daily(out: Path) -> tuple[dict[Key, dict[str, Any]], dict[Key, dict[str, Any]]]:
    """The daily rows of the CSV and of the Parquet file, by (day, device, sensor)."""
    with (out / "data/daily.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    from_csv = {(r["day"], r["device"], r["sensor"]): r for r in rows}
    assert len(from_csv) == len(rows), "one row per day, device and sensor"
    table = pq.read_table(out / "data/daily.parquet")
    starts = table.column("window_start").cast(pa.int64()).to_pylist()  # ns, not datetime's µs
    from_parquet = {
        (r["day"].isoformat(), r["device"], r["sensor"]): {**r, "window_start": ns}
        for r, ns in zip(table.to_pylist(), starts, strict=True)
    }
    assert len(from_parquet) == table.num_rows == len(rows)
    return from_csv, from_parquet


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def _same(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """count, min and max exactly; mean and std to 1e-12 relative: a sum of the same values
    in another order (pairwise in numpy, merged hour by hour from rollups) may differ in its
    last bit, never more."""
    return (
        all(got[name] == want[name] for name in ("count", "min", "max"))
        and got["mean"] == pytest.approx(want["mean"], rel=1e-12, abs=0)
        and (got["std"] is None) == (want["std"] is None)
        and (want["std"] is None or got["std"] == pytest.approx(want["std"], rel=1e-12, abs=0))
    )


def _check_daily(out: Path, rows: list[Row], lo: int, hi: int) -> None:
    """Every (day, device, sensor) row is numpy's figures of the readings, in both files."""
    expected = _expected(rows, lo, hi)
    from_csv, from_parquet = _daily(out)
    assert from_csv.keys() == from_parquet.keys()
    days = {
        (FIRST_DAY + timedelta(days=d)).isoformat()
        for d in range(DAYS)
        if lo < START_NS + (d + 1) * DAY_NS and START_NS + d * DAY_NS < hi
    }
    assert {key[0] for key in from_csv} == days
    assert expected.keys() <= from_csv.keys()
    for key, row in from_csv.items():
        want = expected.get(key)
        got_csv = {
            "count": int(row["count"]),
            **{name: _number(row[name]) for name in ("mean", "min", "max", "std")},
        }
        got_parquet = {name: from_parquet[key][name] for name in ("count", *got_csv)}
        assert got_parquet == got_csv, key  # the same figures in both files
        if want is None:
            assert got_csv == {"count": 0, "mean": None, "min": None, "max": None, "std": None}
        else:
            assert _same(got_csv, want), (key, got_csv, want)
        day_start = datetime_to_ns(datetime.fromisoformat(key[0]).replace(tzinfo=TZ))
        window_start = max(day_start, lo)
        assert parse_instant_ns(row["window_start"]) == window_start, key
        assert from_parquet[key]["window_start"] == window_start, key


def _check_readings(out: Path, registry: Registry, rows: list[Row], lo: int, hi: int) -> None:
    """readings.csv and .parquet hold exactly the readings written within [lo, hi)."""
    expected = sorted((t, d, s, v, registry.sensors[s].unit) for t, d, s, v in rows if lo <= t < hi)
    with (out / "data/readings.csv").open(encoding="utf-8", newline="") as file:
        from_csv = [
            (parse_instant_ns(r["time"]), r["device"], r["sensor"], float(r["value"]), r["unit"])
            for r in csv.DictReader(file)
        ]
    table = pq.read_table(out / "data/readings.parquet")
    times = table.column("time").cast(pa.int64()).to_pylist()
    columns = [table.column(name).to_pylist() for name in ("device", "sensor", "value", "unit")]
    assert sorted(from_csv) == expected
    assert sorted(zip(times, *columns, strict=True)) == expected


@pytest.mark.parametrize("rollups", ["1d", "1h"])
def test_whole_days_from_rollups_are_the_readings_figures(
    stored: tuple[str, list[Row]],
    influxd: Influxd,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rollups: str,
) -> None:
    """Six whole local days: longer than 48 h, so every day comes from the stored rollups;
    the daily ones as shipped (a fixed-offset zone keeps days), or the hourly ones where the
    series service does not read days (a zone with daylight saving)."""
    database, rows = stored
    if rollups == "1h":

        def no_days(_: object) -> int:
            raise ValueError("a zone with daylight saving")

        monkeypatch.setattr("api.services.series.day_origin_ns", no_days)
    out, read = _publish(database, influxd, tmp_path, monkeypatch, "2026-11-02", "2026-11-08")
    assert set(read) == {rollups}  # every sensor's days, from the rollups only
    _check_daily(out, rows, START_NS, END_NS)
    _check_readings(out, registry, rows, START_NS, END_NS)
    _, parquet = _daily(out)
    assert parquet[("2026-11-05", "rs-rlv-01", "level")]["count"] == 0  # the gap's day
    assert parquet[("2026-11-04", "rs-wq-01", "ph")]["count"] == 16  # the day of few readings
    assert parquet[("2026-11-03", "rs-wq-01", "ph")]["count"] == 96


def test_a_period_cut_inside_days_counts_only_its_readings(
    stored: tuple[str, list[Row]],
    influxd: Influxd,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From 06:30 on the second day to 17:45 on the sixth: the whole days between come from
    rollups, the two cut days count only their part in the period."""
    database, rows = stored
    out, read = _publish(database, influxd, tmp_path, monkeypatch, *CUT)
    assert set(read) == {"1d"}  # the three whole days between; the cut days raw
    lo, hi = (parse_instant_ns(text) for text in CUT)
    _check_daily(out, rows, lo, hi)
    _check_readings(out, registry, rows, lo, hi)
    _, parquet = _daily(out)
    assert parquet[("2026-11-03", "rs-wq-01", "ph")]["count"] == 70  # from 06:30
    assert parquet[("2026-11-07", "rs-wq-01", "ph")]["count"] == 71  # to 17:45

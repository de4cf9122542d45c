"""`pilots publish` over a real InfluxDB: the folder holds what was written, and validates.

Known readings go in through the store's own write path; the command runs as an operator runs
it; the folder is then read as another city would: with `frictionless`, pyarrow and the CSV
module, its hashes recomputed, its daily statistics set against the API's own `/series` and
report for the same days.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from frictionless import validate
from typer.testing import CliRunner

from api.app import create_app
from api.auth import TokenStore
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from core.timeutil import HOUR_NS, NS_PER_MS, NS_PER_S, datetime_to_ns, parse_instant_ns
from core.uplinks import Uplinks
from pilots.cli import app
from tests.services import Influxd

pytestmark = pytest.mark.integration

START_NS = datetime_to_ns(datetime.fromisoformat("2026-11-20T00:00:00-03:00"))
END_NS = START_NS + 48 * HOUR_NS
PERIOD = ["--start", "2026-11-20", "--end", "2026-11-22"]

Row = tuple[int, str, str, float]
#: Readings just outside the two days, also written.
OUTSIDE: list[Row] = [(START_NS - NS_PER_S, "rs-wq-01", "ph", 6.0), (END_NS, "rs-wq-01", "ph", 6.0)]


def _known_rows() -> list[Row]:
    """Two local days of three series, the last reading 250 ms past its hour."""
    rows: list[Row] = []
    for h in range(48):
        t = START_NS + h * HOUR_NS
        rows.append((t, "rs-wq-01", "ph", round(7.0 + 0.01 * h, 2)))
        rows.append((t, "rs-wq-01", "water_temp", 24.0 + (h % 24) / 8))
        if h % 2 == 0:  # every other hour: a gauge with gaps
            rows.append((t + 30 * NS_PER_S, "rs-rlv-01", "level", 3.0 + h / 100))
    rows.append((START_NS + 47 * HOUR_NS + 250 * NS_PER_MS, "rs-rlv-01", "level", 3.5))
    return rows


@pytest.fixture
def published(
    influxd: Influxd,
    database: str,
    registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Path, list[Row], InfluxStore]]:
    """The known readings (and their uplinks) in InfluxDB, and the folder published of them."""
    store = InfluxStore(influxd.url, database, registry)
    store.start()
    rows = _known_rows()
    everything = rows + OUTSIDE
    readings = Readings.from_arrays(
        [r[0] for r in everything],
        registry.device_codes([r[1] for r in everything]),
        registry.sensor_codes([r[2] for r in everything]),
        [r[3] for r in everything],
    )
    sent = sorted({(r[0], r[1]) for r in everything})
    uplinks = Uplinks.from_columns(
        ts_ns=[t for t, _ in sent],
        device=registry.device_codes([d for _, d in sent]),
        received_ns=[t + 2 * NS_PER_S for t, _ in sent],
        fcnt=list(range(len(sent))),
        rssi=[-90.0] * len(sent),
        snr=[7.5] * len(sent),
        sf=[9] * len(sent),
        gateway=["gw-1"] * len(sent),
    )
    store.write(readings, uplinks)
    monkeypatch.delenv("PILOTS_STORE", raising=False)
    monkeypatch.setenv("PILOTS_INFLUX_URL", influxd.url)
    monkeypatch.setenv("PILOTS_INFLUX_DATABASE", database)
    (tmp_path / "data").mkdir()  # beside the folder: an --out in the data dir is refused
    monkeypatch.setenv("PILOTS_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "resistencia-2026-11"
    result = CliRunner().invoke(
        app,
        [
            "publish",
            "resistencia",
            *PERIOD,
            "--out",
            str(out),
            "--contributor",
            "UTN FRRe <iot@frre.utn.edu.ar>",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{len(rows)} readings" in result.output
    yield out, rows, store
    store.close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_folder_is_a_valid_data_package_with_checkable_files(
    published: tuple[Path, list[Row], InfluxStore],
) -> None:
    out, _, _ = published
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "README.md",
        "SHA256SUMS",
        "data/daily.csv",
        "data/daily.parquet",
        "data/devices.csv",
        "data/readings.csv",
        "data/readings.parquet",
        "datapackage.json",
        "index.html",
    ]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no temporary left"
    report = validate(str(out / "datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "type", "note"])
    assert {t.name for t in report.tasks} == {
        "readings",
        "readings-parquet",
        "daily",
        "daily-parquet",
        "devices",
    }
    # The command-line tool another city would run says the same.
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("frictionless")), "validate", "datapackage.json"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr

    package = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    for resource in package["resources"]:
        file = out / resource["path"]
        assert resource["hash"] == f"sha256:{_sha256(file)}"
        size = resource.get("bytes", resource.get("filesize"))
        assert size == file.stat().st_size, resource["name"]
    sums: dict[str, str] = {}
    for line in (out / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    assert sums == {
        p.relative_to(out).as_posix(): _sha256(p)
        for p in out.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert package["licenses"][0]["name"] == "CC-BY-4.0"
    assert package["contributors"] == [{"title": "UTN FRRe", "email": "iot@frre.utn.edu.ar"}]
    assert package["temporal"]["start"] == "2026-11-20T00:00:00-03:00"
    assert package["timezone"] == "America/Argentina/Cordoba"
    devices = {d["id"]: d for d in package["pilot"]["devices"]}
    assert devices["rs-rlv-01"]["kind"] == "river_level" and devices["rs-rlv-01"]["lat"] < 0
    units = {s["id"]: s["unit"] for s in package["pilot"]["sensors"]}
    assert units["ph"] == "pH" and units["level"] == "m"
    assert {(t["name"], t["value"]) for t in package["pilot"]["thresholds"]} >= {("alert", 6.0)}

    # A changed byte is caught by the package's own hash.
    csv_file = out / "data/readings.csv"
    text = csv_file.read_bytes()
    csv_file.write_bytes(text.replace(b"7.01,", b"7.02,", 1))
    tampered = validate(str(out / "datapackage.json"))
    assert not tampered.valid
    assert "hash-count" in {e.type for t in tampered.tasks for e in t.errors}


def test_the_tables_hold_exactly_the_readings_written(
    published: tuple[Path, list[Row], InfluxStore], registry: Registry
) -> None:
    out, rows, _ = published
    with (out / "data/readings.csv").open(encoding="utf-8", newline="") as file:
        from_csv = [
            (parse_instant_ns(r["time"]), r["device"], r["sensor"], float(r["value"]), r["unit"])
            for r in csv.DictReader(file)
        ]
    table = pq.read_table(out / "data/readings.parquet")
    times = table.column("time").cast(pa.int64()).to_pylist()
    columns = [table.column(name).to_pylist() for name in ("device", "sensor", "value", "unit")]
    from_parquet = list(zip(times, *columns, strict=True))
    expected = sorted((t, d, s, v, registry.sensors[s].unit) for t, d, s, v in rows)
    assert sorted(from_csv) == expected
    assert sorted(from_parquet) == expected
    assert all(r[0] % NS_PER_S == 0 or r[0] % NS_PER_MS == 0 for r in from_csv)
    with (out / "data/readings.csv").open(encoding="utf-8") as file:
        first = file.readlines()[1]
    assert first.startswith("2026-11-2") and "-03:00," in first  # local offset, documented


def test_daily_statistics_are_the_apis_for_the_same_days(
    published: tuple[Path, list[Row], InfluxStore],
    registry: Registry,
    influxd: Influxd,
    database: str,
    tmp_path: Path,
) -> None:
    out, _, store = published
    with (out / "data/daily.csv").open(encoding="utf-8", newline="") as file:
        daily = {(r["day"], r["device"], r["sensor"]): r for r in csv.DictReader(file)}
    parquet = pq.read_table(out / "data/daily.parquet").to_pylist()
    assert len(parquet) == len(daily)

    settings = Settings(
        data_dir=tmp_path / "api", influx_url=influxd.url, influx_database=database, _env_file=None
    )
    settings.data_dir.mkdir()
    token = TokenStore.in_data_dir(settings.data_dir).create("researcher", "read")
    api = create_app(settings, registry, store, cache=False)
    with TestClient(api, headers={"Authorization": f"Bearer {token}"}) as client:
        period = {"start": "2026-11-20T00:00:00-03:00", "end": "2026-11-22T00:00:00-03:00"}
        answer = client.get(
            "/pilots/resistencia/series",
            params={
                **period,
                "sensor": ["ph", "level"],
                "every": "day",
                "stats": "count,mean,min,max,std",
            },
        )
        assert answer.status_code == 200, answer.text
        report = client.get("/pilots/resistencia/report", params=period).json()

    compared = 0
    for sensor in answer.json()["sensors"]:
        for line in sensor["lines"]:
            for window in line["windows"]:
                row = daily[(window["start"][:10], line["device"], sensor["sensor"])]
                assert row["window_start"] == window["start"]
                assert int(row["count"]) == window["count"]
                for stat in ("mean", "min", "max", "std"):
                    got = None if row[stat] == "" else float(row[stat])
                    assert got == window[stat], (row, window)
                compared += 1
    assert compared == sum(1 for key in daily if key[2] in ("ph", "level")) >= 4
    ph = daily[("2026-11-21", "rs-wq-01", "ph")]
    assert (int(ph["count"]), float(ph["min"]), float(ph["max"])) == (24, 7.24, 7.47)

    heat = report["completeness"]
    for d, device in enumerate(heat["devices"]):
        for k, day in enumerate(heat["days"]):
            row = daily[(day, device, "battery_v")]
            expected = heat["ratio"][d][k]
            assert (
                None if row["device_completeness"] == "" else float(row["device_completeness"])
            ) == expected


def test_the_page_is_the_pilots_report_and_self_contained(
    published: tuple[Path, list[Row], InfluxStore],
) -> None:
    out, _, _ = published
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Resistencia" in page and "<svg" in page
    external: list[Any] = re.findall(
        r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", page
    )
    assert external == []
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "2026-11-20" in readme and "CC-BY-4.0" in readme
    assert "frictionless validate datapackage.json" in readme


def test_days_the_period_cuts_count_only_its_readings(
    published: tuple[Path, list[Row], InfluxStore], tmp_path: Path
) -> None:
    """From noon to 06:00 two days later: each day counts its readings within the period,
    never the whole local day around them (the series service widens to whole days)."""
    _, rows, _ = published
    start, end = "2026-11-20T12:00:00-03:00", "2026-11-22T06:00:00-03:00"
    out = tmp_path / "cut"
    result = CliRunner().invoke(
        app, ["publish", "resistencia", "--start", start, "--end", end, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lo, hi = parse_instant_ns(start), parse_instant_ns(end)
    expected: dict[tuple[str, str, str], int] = {}
    for t, device, sensor, _ in rows + OUTSIDE:
        if lo <= t < hi:
            day = datetime.fromtimestamp(t / NS_PER_S, tz=ZoneInfo("America/Argentina/Cordoba"))
            key = (day.date().isoformat(), device, sensor)
            expected[key] = expected.get(key, 0) + 1
    with (out / "data/daily.csv").open(encoding="utf-8", newline="") as file:
        counted = {
            (r["day"], r["device"], r["sensor"]): int(r["count"])
            for r in csv.DictReader(file)
            if int(r["count"])
        }
    assert counted == expected
    assert {k[0] for k in counted} == {"2026-11-20", "2026-11-21", "2026-11-22"}
    assert counted[("2026-11-20", "rs-wq-01", "ph")] == 12
    assert (
        counted[("2026-11-22", "rs-wq-01", "ph")] == 1
    )  # OUTSIDE's reading at midnight starting the 22nd
    report = validate(str(out / "datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "type", "note"])

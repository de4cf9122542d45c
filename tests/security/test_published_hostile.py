"""Published pilots against a stranger, a careless operator and a curious researcher.

Each test here shows one problem found in review of the published-pilots changes (api/access.py,
api/limiter.py, the `latest` values, the report's alarms, `pilots publish`): it fails until the
problem is fixed. The app runs in-process over the embedded store, as in
tests/unit/test_public_access.py.
"""

from __future__ import annotations

import csv
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from starlette.requests import Request
from typer.testing import CliRunner

from alerts.store import AlarmStore
from api.app import create_app
from api.auth import TokenStore
from api.limiter import SITE_FACTOR, PublicLimiter
from core.alerts import AlertEvent, alarm_id
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import HOUR_NS, datetime_to_ns
from pilots.cli import app as cli

#: San Nicolás is public for these local days: from 2026-11-20 to before 2026-11-27.
WEEK_START_NS = datetime_to_ns(datetime.fromisoformat("2026-11-20T00:00:00-03:00"))
WEEK_END_NS = datetime_to_ns(datetime.fromisoformat("2026-11-27T00:00:00-03:00"))
#: Santa Fe's zone (the registry's).
SANTA_FE_TZ = ZoneInfo("America/Argentina/Cordoba")


def _registry(tmp_path: Path, pilots: Mapping[str, Mapping[str, object]]) -> Registry:
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    for pilot, values in pilots.items():
        raw["pilots"][pilot].update(values)
    return build_registry(raw, tmp_path / "registry.toml")


def _write(
    store: EmbeddedStore, registry: Registry, rows: list[tuple[int, str, str, float]]
) -> None:
    store.write(
        Readings.from_arrays(
            [r[0] for r in rows],
            registry.device_codes([r[1] for r in rows]),
            registry.sensor_codes([r[2] for r in rows]),
            [r[3] for r in rows],
        )
    )


def _client(tmp_path: Path, registry: Registry, store: EmbeddedStore) -> TestClient:
    settings = Settings(data_dir=tmp_path, api_public_rate="1000/minute", _env_file=None)
    return TestClient(create_app(settings, registry, store, cache=False))


# -- (a) a stranger ------------------------------------------------------------------------------


@pytest.fixture
def week(tmp_path: Path) -> Iterator[tuple[TestClient, Registry]]:
    """San Nicolás public for one past week, Resistencia private; hourly readings around it."""
    registry = _registry(
        tmp_path,
        {
            "san-nicolas": {
                "public": True,
                "public_from": date(2026, 11, 20),
                "public_until": date(2026, 11, 27),
            },
        },
    )
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    times = range(WEEK_START_NS - 48 * HOUR_NS, WEEK_END_NS + 48 * HOUR_NS, HOUR_NS)
    _write(store, registry, [(t, "sn-aq-01", "pm25", 10.0) for t in times])
    with _client(tmp_path, registry, store) as client:
        yield client, registry
    store.close()


def test_an_unknown_pilot_does_not_list_the_private_pilots_to_a_stranger(
    week: tuple[TestClient, Registry],
) -> None:
    """Without a token, a 404 names only what the stranger may see (Resistencia is private)."""
    client, _ = week
    response = client.get("/pilots/rosario/report")
    assert response.status_code in (401, 404)
    assert "resistencia" not in response.text, response.text
    assert "santa-fe" not in response.text, response.text


def test_devices_latest_values_stop_at_the_start_of_the_published_period(
    tmp_path: Path,
) -> None:
    """A pilot published from today shows no reading from before today to a stranger."""
    today = datetime.now(SANTA_FE_TZ).date()
    registry = _registry(tmp_path, {"santa-fe": {"public": True, "public_from": today}})
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    start_ns = datetime_to_ns(datetime(today.year, today.month, today.day, tzinfo=SANTA_FE_TZ))
    # The river level two days before publication: not part of what was published.
    _write(store, registry, [(start_ns - 48 * HOUR_NS, "sf-rlv-01", "level", 4.87)])
    try:
        with _client(tmp_path, registry, store) as client:
            devices = client.get("/pilots/santa-fe/devices")
            assert devices.status_code == 200, devices.text
            gauge = next(d for d in devices.json() if d["id"] == "sf-rlv-01")
            assert "level" not in gauge["latest"], gauge["latest"]
            assert gauge["last_seen"] is None, gauge["last_seen"]
            summary = client.get("/pilots/santa-fe").json()
            assert summary["last_seen"] is None, summary["last_seen"]
    finally:
        store.close()


def _alarm(start_ns: int, end_ns: int) -> list[AlertEvent]:
    aid = alarm_id("sn.pm25.alert", "sn-aq-01", start_ns)
    fired = AlertEvent(
        id=f"{aid}:fired",
        alarm_id=aid,
        type="fired",
        rule="sn.pm25.alert",
        kind="threshold",
        pilot="san-nicolas",
        device="sn-aq-01",
        sensor="pm25",
        severity="warning",
        label="alert",
        level=35.0,
        direction="above",
        start_ns=start_ns,
        end_ns=None,
        at_ns=start_ns,
        value=36.0,
        latest=36.0,
        peak=36.0,
        late=False,
    )
    cleared = replace(
        fired,
        id=f"{aid}:cleared",
        type="cleared",
        end_ns=end_ns,
        at_ns=end_ns,
        peak=412.0,  # reached after the public week ended
    )
    return [fired, cleared]


def test_a_public_report_does_not_give_strangers_the_operators_notes_or_later_data(
    tmp_path: Path,
) -> None:
    """The report of a public week lists its alarms without who acknowledged them, their
    private notes, or what happened after the week (the peak reached after it)."""
    registry = _registry(
        tmp_path,
        {
            "san-nicolas": {
                "public": True,
                "public_from": date(2026, 11, 20),
                "public_until": date(2026, 11, 27),
            },
        },
    )
    alarms = AlarmStore(tmp_path / "alerts.sqlite")
    events = _alarm(WEEK_END_NS - 6 * HOUR_NS, WEEK_END_NS + 30 * HOUR_NS)
    alarms.record(events)
    alarms.ack(events[0].alarm_id, "ana.gomez", "plant manager Pérez phoned, +54 9 336 555 0101")
    alarms.close()
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    try:
        with _client(tmp_path, registry, store) as client:
            window = {"start": "2026-11-24", "end": "2026-11-27"}
            report = client.get("/pilots/san-nicolas/report", params=window)
            assert report.status_code == 200, report.text
            listed = report.json()["alarms"]
            assert listed, "the alarm overlapping the week is listed"
            text = report.text + client.get("/pilots/san-nicolas/report.html", params=window).text
            assert "555 0101" not in text, "the acknowledgement's note reaches strangers"
            assert "ana.gomez" not in text, "the acknowledging token's name reaches strangers"
            assert all(a["peak"] != 412.0 for a in listed), "a peak from after the week"
    finally:
        store.close()


def test_a_pilot_published_from_a_future_day_is_not_catalogued_before_it(
    tmp_path: Path,
) -> None:
    """Published from next year: its summary and devices are refused until then, and so must
    its SensorThings Things and Locations (device ids, sites, positions) be."""
    registry = _registry(
        tmp_path, {"resistencia": {"public": True, "public_from": date(2099, 6, 1)}}
    )
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    try:
        with _client(tmp_path, registry, store) as client:
            assert client.get("/pilots/resistencia/devices").status_code == 401
            things = client.get("/sta/v1.1/Things")
            assert things.status_code in (200, 401)
            assert "rs-wq-01" not in things.text, things.text[:300]
            assert "-27.4" not in client.get("/sta/v1.1/Locations").text
    finally:
        store.close()


def _request(host: str) -> Request:
    return Request({"type": "http", "client": (host, 1234), "headers": []})


def test_one_ipv6_site_cannot_multiply_the_anonymous_rate_by_its_64s() -> None:
    """A /48 (what one customer of a hosting provider gets: 65,536 /64s) gets at most
    `SITE_FACTOR` times the per-client rate, however many of its /64s ask."""
    limiter = PublicLimiter("5/minute", "100000/minute")
    allowed = 0
    for subnet in range(40):
        for _ in range(5):
            try:
                limiter.hit(_request(f"2001:db8:77:{subnet:x}::1"))
                allowed += 1
            except HTTPException:
                pass
    assert allowed == SITE_FACTOR * 5, f"{allowed} anonymous requests from one /48 in a minute"
    # Another site is not held back by the first.
    limiter.hit(_request("2001:db8:78::1"))


def test_the_limiters_memory_goes_down_once_its_windows_are_over() -> None:
    """A stranger cycling through /64s makes counters that expire with their windows."""
    limiter = PublicLimiter("2/second", "100000/second")
    for subnet in range(3000):
        limiter.hit(_request(f"2001:db8:{subnet:x}::1"))  # a /64 in a /48 of its own
    storage = limiter._limiter.storage
    made = len(storage.storage)  # type: ignore[attr-defined]
    assert made >= 3000
    time.sleep(2.3)  # a sliding window's counters expire two windows after their last hit
    limiter.hit(_request("192.0.2.1"))  # schedules the storage's expiry pass
    time.sleep(0.3)
    kept = len(storage.storage)  # type: ignore[attr-defined]
    assert kept < 100, f"{kept} client counters kept after their windows ended"


def test_all_strangers_together_get_the_total_rate_and_no_more_counters() -> None:
    """However many addresses ask, the total rate admits that many requests, and only those
    make counters: the limiter's memory is bounded by the total, not by the addresses."""
    limiter = PublicLimiter("5/minute", "100/minute")
    allowed = 0
    for n in range(3000):
        try:
            limiter.hit(_request(f"198.51.{n // 256}.{n % 256}"))
            allowed += 1
        except HTTPException as exc:
            assert exc.status_code == 429
            assert "PILOTS_API_PUBLIC_RATE_TOTAL" in str(exc.detail)
    assert allowed == 100
    clients = [k for k in limiter._limiter.storage.storage if "client" in k]  # type: ignore[attr-defined]
    assert len(clients) <= 2 * 100  # a sliding window keeps this and the previous window


# -- (b) a careless operator and (c) a curious researcher ------------------------------------


def _stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with an embedded store of 48 hourly pH readings of rs-wq-01 from
    2026-11-20 local midnight, and a token store, chosen by the environment."""
    data = tmp_path / "data"
    data.mkdir()
    registry = _registry(tmp_path, {})
    store = EmbeddedStore(data / "store.sqlite", registry)
    start = datetime_to_ns(datetime.fromisoformat("2026-11-20T00:00:00-03:00"))
    _write(store, registry, [(start + h * HOUR_NS, "rs-wq-01", "ph", 7.0) for h in range(48)])
    store.close()
    TokenStore.in_data_dir(data).create("researcher", "read")
    monkeypatch.setenv("PILOTS_DATA_DIR", str(data))
    monkeypatch.delenv("PILOTS_INFLUX_URL", raising=False)
    monkeypatch.delenv("PILOTS_STORE", raising=False)
    return data


def test_the_daily_statistics_hold_only_the_published_readings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A period from noon to 06:00 the next day: `readings.csv` holds its 18 readings, and the
    daily statistics must count those and no other (not the whole local days around them)."""
    data = _stored(tmp_path, monkeypatch)
    out = tmp_path / "out"
    span = ["--start", "2026-11-20T12:00:00-03:00", "--end", "2026-11-21T06:00:00-03:00"]
    result = CliRunner().invoke(cli, ["publish", "resistencia", *span, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert data.exists()
    with (out / "data" / "readings.csv").open(encoding="utf-8") as file:
        readings = [r for r in csv.DictReader(file) if r["device"] == "rs-wq-01"]
    with (out / "data" / "daily.csv").open(encoding="utf-8") as file:
        daily = [
            r for r in csv.DictReader(file) if (r["device"], r["sensor"]) == ("rs-wq-01", "ph")
        ]
    assert len(readings) == 18
    counted = {r["day"]: int(r["count"]) for r in daily}
    assert counted == {"2026-11-20": 12, "2026-11-21": 6}, counted


def test_publish_force_into_the_data_dir_does_not_delete_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pilots publish ... --out $PILOTS_DATA_DIR --force` (a slip of the path) must be
    refused: it replaces the data dir, store and tokens included, with the published folder."""
    data = _stored(tmp_path, monkeypatch)
    kept = sorted(p.name for p in data.iterdir())
    args = ["publish", "resistencia", "--start", "2026-11-20", "--end", "2026-11-21"]
    result = CliRunner().invoke(cli, [*args, "--out", str(data), "--force"])
    left = sorted(p.name for p in data.iterdir())
    assert (data / "store.sqlite").exists(), (
        f"exit {result.exit_code}: the data dir held {kept}, now {left}"
    )
    assert result.exit_code == 2, result.output

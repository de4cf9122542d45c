"""The API's contract, in-process over the embedded store: shapes, local time, sources, auth.

Readings and uplinks are written directly to the store and rolled up by the rollup maintainer,
as ingest would, so each expected number is known exactly or recomputed with the core.
"""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis
import numpy as np
import pyarrow.parquet as pq
import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from schemathesis import Case, checks

from api.app import create_app
from api.auth import TokenStore
from api.routes import export as data_routes
from api.routes import health as health_routes
from api.routes import pilots as pilot_routes
from api.routes import quarantine as quarantine_routes
from api.routes import report as report_routes
from api.routes import series as series_routes
from core import flood, quality
from core.aggregate import window_stats
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import datetime_to_ns
from core.uplinks import Uplinks
from core.windows import calendar_edges, fixed_edges
from ingest.quarantine import Keeper
from ingest.reasons import Reason, Rejection
from ingest.rollups import RollupMaintainer
from ingest.spool import Refused

S = 1_000_000_000
H = 3600 * S
# Local midnight in Santa Fe (UTC-3), and a 10-day span of hourly river levels before it.
MIDNIGHT_NS = datetime_to_ns(datetime.fromisoformat("2026-11-27T00:00:00-03:00"))
FIRST_NS = MIDNIGHT_NS - 10 * 24 * H
FLOOD_NS = MIDNIGHT_NS - 6 * H


def _level(i: int, device: int) -> float:
    return round(3.5 + 0.25 * math.sin(i / 7.0) + 0.1 * device, 3)


@pytest.fixture
def world(tmp_path: Path, registry: Registry) -> Iterator[tuple[TestClient, dict[str, str]]]:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    rows = []
    # A flood: sf-rlv-01 reads these from 18:00 on the last day, above the 5.30 m alert
    # from 19:00 to 22:00.
    flood = dict(enumerate([5.2, 5.4, 5.6, 5.5, 5.1], start=10 * 24 - 6))
    for i in range(10 * 24):
        t = FIRST_NS + i * H
        rows.append((t, "sf-rlv-01", "level", flood.get(i, _level(i, 0))))
        rows.append((t + 60 * S, "sf-rlv-02", "level", _level(i, 1)))
        rows.append((t, "sf-rlv-01", "battery_v", 4.0 - i * 0.001))
    rows.append((MIDNIGHT_NS + 2 * H, "sf-rlv-02", "level", 10.0))  # a spike, after midnight
    rows.append((MIDNIGHT_NS + H, "sf-rlv-01", "level", 2.0))
    rows.append((MIDNIGHT_NS + 5 * H, "sf-rlv-01", "level", 4.0))
    readings = Readings.from_arrays(
        [r[0] for r in rows],
        registry.device_codes([r[1] for r in rows]),
        registry.sensor_codes([r[2] for r in rows]),
        [r[3] for r in rows],
    )
    up_ts = sorted({(r[0], r[1]) for r in rows})
    sent: dict[str, int] = {}  # each device counts its own uplinks, with none missing
    fcnts = []
    for _, device in up_ts:
        fcnts.append(sent.get(device, 0))
        sent[device] = fcnts[-1] + 1
    uplinks = Uplinks.from_columns(
        ts_ns=[t for t, _ in up_ts],
        device=registry.device_codes([d for _, d in up_ts]),
        # Two seconds on the air, but the 18:00 flood uplink came in a gateway's backlog 3 h late.
        received_ns=[t + (3 * H if t == FLOOD_NS else 2 * S) for t, _ in up_ts],
        fcnt=fcnts,
        rssi=[-90.0] * len(up_ts),
        snr=[7.5] * len(up_ts),
        sf=[9] * len(up_ts),
        gateway=["gw-1"] * len(up_ts),
    )
    store.write(readings, uplinks)
    maintainer = RollupMaintainer(tmp_path / "rollups.sqlite", registry)
    maintainer.note(readings)
    maintainer.run(store)
    settings = Settings(
        data_dir=tmp_path, api_max_points=2000, api_raw_max_hours=48, _env_file=None
    )
    Keeper(store, settings, "pilots-ingest-2", registry).keep(
        [Refused(MIDNIGHT_NS, "pilots/santa-fe/x/up", b"{}", Rejection(Reason.UNKNOWN_DEVICE, "x"))]
    )
    tokens = TokenStore.in_data_dir(tmp_path)
    headers = {
        "read": {"Authorization": f"Bearer {tokens.create('researcher', 'read')}"},
        "admin": {"Authorization": f"Bearer {tokens.create('operator', 'admin')}"},
    }
    app = create_app(settings, registry, store, cache=True)
    with TestClient(app) as client:
        client.headers.update(headers["read"])
        yield client, headers["admin"]
    store.close()


def series(client: TestClient, **params: object) -> dict[str, object]:
    response = client.get("/pilots/santa-fe/series", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def windows(body: dict[str, object], sensor: int = 0, line: int = 0) -> list[dict[str, object]]:
    return body["sensors"][sensor]["lines"][line]["windows"]  # type: ignore[index,no-any-return]


def test_every_route_but_health_needs_a_token(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    anonymous = TestClient(client.app)
    for path in (
        "/pilots",
        "/pilots/santa-fe/series?sensor=level",
        "/compare?sensor=level",
        "/pilots/santa-fe/report",
        "/metrics",
        "/quarantine",
    ):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert "Bearer" in response.headers["www-authenticate"]
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/ready").status_code == 200
    assert anonymous.get("/").status_code == 200  # the dashboard page; its data needs a token


def test_quarantine_needs_the_admin_scope(world: tuple[TestClient, dict[str, str]]) -> None:
    client, admin = world
    denied = client.get("/quarantine")
    assert denied.status_code == 403 and "admin" in denied.json()["detail"]
    allowed = client.get("/quarantine", headers=admin)
    assert allowed.status_code == 200
    body = allowed.json()
    assert body["counts"] == {"unknown_device": 1}
    (entry,) = body["entries"]
    assert (entry["worker"], entry["source"], entry["payload"], entry["truncated"]) == (
        "pilots-ingest-2",
        "unregistered",
        "{}",
        False,
    )


def test_pilots_show_the_fleet(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    body = client.get("/pilots").json()
    assert [p["id"] for p in body] == ["santa-fe", "san-nicolas", "resistencia"]
    santa_fe = body[0]
    assert {"sensor": "level", "name": "alert", "value": 5.3} in santa_fe["thresholds"]
    offset = datetime.fromisoformat(santa_fe["last_seen"]).utcoffset()
    assert offset is not None and offset.total_seconds() == -3 * 3600
    assert body[1]["last_seen"] is None and body[1]["completeness_today"] == 0.0


def test_devices_show_battery_and_link(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    devices = {d["id"]: d for d in client.get("/pilots/santa-fe/devices").json()}
    one = devices["sf-rlv-01"]
    assert one["battery_v"] == pytest.approx(4.0 - 239 * 0.001)
    assert one["interval_s"] == 600
    assert devices["sf-wx-01"]["status"] == "never"


def test_a_day_window_runs_from_local_midnight(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    body = series(
        client,
        sensor="level",
        every="day",
        start="2026-11-27T00:00:00-03:00",
        end="2026-11-28T00:00:00-03:00",
        device="sf-rlv-01",
    )
    [day] = windows(body)
    assert day["start"] == "2026-11-27T00:00:00-03:00"
    assert (day["count"], day["mean"], day["min"], day["max"]) == (2, 3.0, 2.0, 4.0)
    assert body["source"] == "readings"


def test_a_date_means_the_pilots_local_midnight(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    by_date = series(client, sensor="level", every="day", start="2026-11-27", end="2026-11-28")
    assert by_date["start"] == "2026-11-27T00:00:00-03:00"
    assert windows(by_date)[0]["count"] == 2
    response = client.get("/compare", params={"sensor": "level", "start": "2026-11-27"})
    assert response.status_code == 422 and "offset" in response.json()["detail"]


def test_a_kept_answer_gives_way_to_new_data(
    world: tuple[TestClient, dict[str, str]], registry: Registry
) -> None:
    client, _ = world
    hour_ns = (time.time_ns() - 3 * H) // H * H  # recent: answered from the hot cache
    start = datetime.fromtimestamp(hour_ns / S, UTC).isoformat()
    end = datetime.fromtimestamp((hour_ns + H) / S, UTC).isoformat()
    params = {"sensor": "level", "every": "1h", "device": "sf-rlv-02", "start": start, "end": end}
    before = windows(series(client, **params))
    assert before[0]["count"] == 0 and windows(series(client, **params)) == before
    store = client.app.state.store  # type: ignore[attr-defined]
    store.write(
        Readings.from_arrays(
            [hour_ns + 30 * 60 * S],
            registry.device_codes(["sf-rlv-02"]),
            registry.sensor_codes(["level"]),
            [3.9],
        )
    )
    client.app.state.cache.refresh_now()  # type: ignore[attr-defined]
    after = windows(series(client, **params))
    assert (after[0]["count"], after[0]["mean"]) == (1, 3.9)


def test_windows_without_readings_have_count_zero(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    body = series(
        client,
        sensor="level",
        every="2h",
        start="2026-11-27T00:00:00-03:00",
        end="2026-11-27T06:00:00-03:00",
        device="sf-rlv-02",
    )
    assert [w["count"] for w in windows(body)] == [0, 1, 0]
    assert windows(body)[0]["mean"] is None


def test_exact_quantiles_pooling_and_excluding_the_spike(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = world
    params = {
        "sensor": "level",
        "every": "1d",
        "start": "2026-11-27T00:00:00-03:00",
        "end": "2026-11-28T00:00:00-03:00",
        "pooled": "true",
        "stats": "count,mean,p50",
    }
    pooled = windows(series(client, **params))[0]
    assert pooled["count"] == 3 and pooled["p50"] == 4.0  # 2.0, 4.0 and the 10.0 spike
    assert pooled["mean"] == pytest.approx(16.0 / 3)
    assert set(pooled) == {"start", "count", "mean", "p50"}, "only the statistics asked for"
    kept = windows(series(client, **params, exclude_flagged="true"))[0]
    assert (kept["count"], kept["mean"]) == (2, 3.0)


def test_long_ranges_come_from_rollups_with_the_same_numbers(
    world: tuple[TestClient, dict[str, str]],
    registry: Registry,
) -> None:
    client, _ = world
    params = {
        "sensor": "level",
        "every": "1d",
        "stats": "count,mean,min,max,std,first,last",
        "start": "2026-11-17T00:00:00-03:00",
        "end": "2026-11-28T00:00:00-03:00",
    }
    body = series(client, **params)
    assert body["source"] == "rollups"
    app_store = client.app.state.store  # type: ignore[attr-defined]
    start = datetime_to_ns(datetime.fromisoformat(params["start"]))
    end = datetime_to_ns(datetime.fromisoformat(params["end"]))
    raw = app_store.scan("santa-fe", ["level"], start, end)
    devices = registry.device_codes(["sf-rlv-01", "sf-rlv-02"])
    table = window_stats(
        raw,
        sensor=registry.sensors["level"].code,
        devices=devices,
        edges_ns=fixed_edges(start, end, 24 * H, 3 * H),
    )
    sensors = body["sensors"]
    assert isinstance(sensors, list)
    for row, line in enumerate(sensors[0]["lines"]):
        for w, window in enumerate(line["windows"]):
            assert window["count"] == table.count[row, w]
            for name in ("mean", "min", "max", "std", "first", "last"):
                want = float(getattr(table, name)[row, w])
                if math.isnan(want):
                    assert window[name] is None
                else:
                    assert window[name] == pytest.approx(want, rel=1e-9), (name, row, w)


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/pilots/rosario", 404, "rosario"),
        ("/pilots/santa-fe/series?sensor=pm25", 404, "pm25"),
        ("/pilots/santa-fe/series?sensor=level&device=sn-aq-01", 404, "sn-aq-01"),
        ("/pilots/santa-fe/series?sensor=level&start=yesterday", 422, "start"),
        ("/compare?sensor=level&start=2026-11-27T00:00:00", 422, "offset"),
        (
            "/pilots/santa-fe/series?sensor=level&start=2026-11-28T00:00:00Z"
            "&end=2026-11-27T00:00:00Z",
            422,
            "before",
        ),
        ("/pilots/santa-fe/series?sensor=level&every=fortnight", 422, "every"),
        ("/export?pilot=santa-fe&sensor=level&device=sf-rlv-99", 404, "sf-rlv-99"),
        ("/pilots/santa-fe/series?sensor=level&stats=mode", 422, "mode"),
        ("/pilots/santa-fe/series", 422, "sensor"),
        (
            "/pilots/santa-fe/series?sensor=level&start=2026-01-01T00:00:00Z"
            "&end=2026-11-27T00:00:00Z&every=1m",
            400,
            "PILOTS_API_MAX_POINTS",
        ),
        (
            "/pilots/santa-fe/series?sensor=level&start=2020-01-01T00:00:00Z"
            "&end=2026-11-27T00:00:00Z&every=month",
            400,
            "PILOTS_API_MAX_RANGE_DAYS",
        ),
    ],
)
def test_errors_are_problem_details_that_name_the_problem(
    world: tuple[TestClient, dict[str, str]], path: str, status: int, named: str
) -> None:
    client, _ = world
    response = client.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert named in response.json()["detail"]


def test_the_report_holds_the_cores_numbers(
    world: tuple[TestClient, dict[str, str]],
    registry: Registry,
) -> None:
    client, _ = world
    start, end = "2026-11-20T00:00:00-03:00", "2026-11-27T00:00:00-03:00"
    report = client.get("/pilots/santa-fe/report", params={"start": start, "end": end}).json()
    start_ns = datetime_to_ns(datetime.fromisoformat(start))
    end_ns = datetime_to_ns(datetime.fromisoformat(end))
    store = client.app.state.store  # type: ignore[attr-defined]
    raw = store.scan("santa-fe", ["level"], start_ns, end_ns)
    devices = registry.device_codes(["sf-rlv-01", "sf-rlv-02"])
    whole = window_stats(
        raw,
        sensor=registry.sensors["level"].code,
        devices=devices,
        edges_ns=np.array([start_ns, end_ns]),
        pooled=True,
        quantiles=(0.95,),
    )
    level = next(s for s in report["sensors"] if s["sensor"] == "level")
    assert level["count"] == whole.count[0, 0]
    assert level["mean"] == pytest.approx(float(whole.mean[0, 0]), rel=1e-12)
    assert level["p95"] == pytest.approx(float(whole.quantiles[0.95][0, 0]), rel=1e-12)
    uplinks = store.scan_uplinks("santa-fe", start_ns, end_ns)
    interval = np.array([d.interval_s for d in registry.pilots["santa-fe"].devices], float)
    row_of = {d.code: i for i, d in enumerate(registry.pilots["santa-fe"].devices)}
    rows = np.array([row_of[d] for d in uplinks.device.tolist()])
    completeness = quality.completeness(
        uplinks.ts_ns,
        rows,
        n_devices=len(interval),
        interval_s=interval,
        edges_ns=np.array([start_ns, end_ns]),
    )
    device = next(d for d in report["devices"] if d["device"] == "sf-rlv-01")
    assert device["completeness"] == pytest.approx(float(completeness.ratio[0, 0]), rel=1e-12)
    assert device["pdr"] == 1.0 and device["sf_mix"] == {"9": device["reports"]}
    [alert] = [t for t in report["thresholds"] if t["name"] == "alert"]
    [episode] = alert["episodes"]
    assert episode["device"] == "sf-rlv-01" and episode["peak"] == 5.6
    assert episode["duration_s"] == 3 * 3600  # from 5.4 m to the first reading back below
    assert report["completeness"]["days"][0] == "2026-11-20"
    assert report["flags"]["late"] == 2  # the level and battery readings of the late uplink
    day_edges = calendar_edges(start_ns, end_ns, "day", registry.pilots["santa-fe"].tz)
    one = raw.take((raw.sensor == registry.sensors["level"].code) & (raw.device == devices[0]))
    rows = np.zeros(len(one), dtype=np.int64)
    rise = flood.daily_rise(one.ts_ns, one.value, rows, n_rows=1, day_edges_ns=day_edges)
    trend = flood.trend_per_day(one.ts_ns, one.value, rows, n_rows=1)
    river = next(r for r in report["river"] if r["device"] == "sf-rlv-01")
    assert river["max_rise_cm_per_day"] == pytest.approx(100 * float(rise.rise[0]), rel=1e-12)
    assert river["trend_cm_per_day"] == pytest.approx(100 * float(trend[0]), rel=1e-12)
    assert river["max_rise_day"] == "2026-11-26"  # the flood day's mean is the highest
    rain = {r["device"]: r for r in report["rain"]}
    assert rain["sf-rg-01"] == {
        "device": "sf-rg-01",
        "total_mm": None,
        "max_mm_per_hour": None,
        "max_hour": None,
    }, "a gauge that sent nothing has no rain figures, not zero rain"


def test_the_html_report_is_self_contained(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    response = client.get(
        "/pilots/santa-fe/report.html",
        params={"start": "2026-11-20T00:00:00-03:00", "end": "2026-11-27T00:00:00-03:00"},
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<svg" in page and "Santa Fe" in page
    external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert external == []


def test_compare_pools_each_pilot(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    body = client.get(
        "/compare",
        params={
            "sensor": "level",
            "every": "day",
            "start": "2026-11-27T00:00:00-03:00",
            "end": "2026-11-28T00:00:00-03:00",
        },
    ).json()
    by_pilot = {line["pilot"]: line["windows"] for line in body["pilots"]}
    assert set(by_pilot) == {"santa-fe", "resistencia"}
    assert by_pilot["santa-fe"][0]["count"] == 3
    assert by_pilot["resistencia"][0]["count"] == 0


def test_export_streams_csv_and_parquet(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    params = {
        "pilot": "santa-fe",
        "sensor": "level",
        "start": "2026-11-27T00:00:00-03:00",
        "end": "2026-11-28T00:00:00-03:00",
    }
    csv_text = client.get("/export", params=params).text.splitlines()
    assert csv_text[0] == "time,device,sensor,value"
    assert len(csv_text) == 1 + 3
    assert csv_text[1].startswith("2026-11-27T01:00:00-03:00,sf-rlv-01,level,2.0")
    parquet = client.get("/export", params={**params, "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert sorted(table.column("value").to_pylist()) == [2.0, 4.0, 10.0]
    windowed = client.get("/export", params={**params, "every": "1d"}).text.splitlines()
    assert windowed[0].startswith("window_start,sensor,device,count,mean")


def test_metrics_count_requests(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    client.get("/pilots")
    text = client.get("/metrics").text
    assert 'pilots_api_requests_total{route="/pilots",status="200"}' in text


def test_openapi_documents_every_route(world: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = world
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/pilots",
        "/pilots/{pilot}",
        "/pilots/{pilot}/devices",
        "/pilots/{pilot}/series",
        "/pilots/{pilot}/report",
        "/pilots/{pilot}/report.html",
        "/compare",
        "/export",
        "/quarantine",
        "/health",
        "/ready",
        "/metrics",
    } <= set(paths)


#: Every documented operation, as (method, path).
OPERATIONS = sorted(
    (method, route.path)
    for module in (
        data_routes,
        health_routes,
        pilot_routes,
        quarantine_routes,
        report_routes,
        series_routes,
    )
    for route in module.router.routes
    if isinstance(route, APIRoute) and route.include_in_schema and route.methods is not None
    for method in route.methods
)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_request_the_schema_allows_breaks_the_api(
    world: tuple[TestClient, dict[str, str]], method: str, path: str
) -> None:
    """Generated requests, as an operator would send them: no 5xx, answers as documented."""
    client, admin = world
    operation = schemathesis.openapi.from_asgi("/openapi.json", client.app)[path][method]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=25, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
    )
    def check(case: Case[Any]) -> None:
        # `positive_data_acceptance` is left out: a schema cannot say which strings are valid
        # instants or windows, so a 422 naming the parameter is the right answer to them.
        case.call_and_validate(headers=admin, excluded_checks=[checks.positive_data_acceptance])

    check()

"""The API's contract: shapes, local-time windows and problem-details errors.

Runs the app in-process over the embedded store in a temporary directory, with readings
written directly, so each expected number is known exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore

# Local midnight in Santa Fe (UTC-3).
MIDNIGHT_NS = int(datetime.fromisoformat("2026-11-27T00:00:00-03:00").timestamp()) * 1_000_000_000
H = 3600 * 1_000_000_000


@pytest.fixture
def client(tmp_path: Path, registry: Registry) -> Iterator[TestClient]:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    rows = [
        (MIDNIGHT_NS - H, "sf-rlv-01", "level", 1.0),  # 23:00 the day before
        (MIDNIGHT_NS + H, "sf-rlv-01", "level", 2.0),  # 01:00
        (MIDNIGHT_NS + 5 * H, "sf-rlv-01", "level", 4.0),  # 05:00
        (MIDNIGHT_NS + 2 * H, "sf-rlv-02", "level", 10.0),
        (MIDNIGHT_NS + 2 * H, "sf-rlv-01", "battery_v", 3.95),
    ]
    store.write(
        Readings.from_arrays(
            [r[0] for r in rows],
            registry.device_codes([r[1] for r in rows]),
            registry.sensor_codes([r[2] for r in rows]),
            [r[3] for r in rows],
        )
    )
    settings = Settings(api_max_points=500, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings, registry, store)) as client:
        yield client
    store.close()


def test_pilots_lists_the_three_pilots_with_their_last_reading(client: TestClient) -> None:
    body = client.get("/pilots").json()
    assert [p["id"] for p in body] == ["santa-fe", "san-nicolas", "resistencia"]
    santa_fe = body[0]
    assert santa_fe["timezone"] == "America/Argentina/Cordoba"
    assert {"sensor": "level", "name": "alert", "value": 5.3} in santa_fe["thresholds"]
    assert datetime.fromisoformat(santa_fe["last_seen"]).timestamp() * 1e9 == MIDNIGHT_NS + 5 * H
    assert body[1]["last_seen"] is None


def test_devices_show_last_seen_and_battery(client: TestClient) -> None:
    devices = {d["id"]: d for d in client.get("/pilots/santa-fe/devices").json()}
    assert devices["sf-rlv-01"]["battery_v"] == 3.95
    assert devices["sf-rlv-01"]["interval_s"] == 600
    assert datetime.fromisoformat(
        devices["sf-rlv-02"]["last_seen"]
    ).utcoffset().total_seconds() == (-3 * 3600)
    assert devices["sf-wx-01"]["last_seen"] is None


def test_a_day_window_runs_from_local_midnight(client: TestClient) -> None:
    response = client.get(
        "/pilots/santa-fe/series",
        params={
            "sensor": "level",
            "start": "2026-11-26T00:00:00-03:00",
            "end": "2026-11-28T00:00:00-03:00",
            "every": "1d",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["every"] == "1d" and body["unit"] == "m"
    one = next(d for d in body["devices"] if d["device"] == "sf-rlv-01")["windows"]
    assert [w["start"] for w in one] == ["2026-11-26T00:00:00-03:00", "2026-11-27T00:00:00-03:00"]
    assert [w["count"] for w in one] == [1, 2]
    assert one[1] == {
        "start": "2026-11-27T00:00:00-03:00",
        "count": 2,
        "mean": 3.0,
        "min": 2.0,
        "max": 4.0,
    }
    # Devices of the pilot without the sensor are not listed; those with it always are.
    assert {d["device"] for d in body["devices"]} == {"sf-rlv-01", "sf-rlv-02"}


def test_empty_windows_are_present_with_count_zero(client: TestClient) -> None:
    body = client.get(
        "/pilots/santa-fe/series",
        params={
            "sensor": "level",
            "start": "2026-11-27T00:00:00-03:00",
            "end": "2026-11-27T06:00:00-03:00",
            "every": "2h",
        },
    ).json()
    two = next(d for d in body["devices"] if d["device"] == "sf-rlv-02")["windows"]
    assert [w["count"] for w in two] == [0, 1, 0]
    assert two[0]["mean"] is None and two[0]["min"] is None and two[0]["max"] is None


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/pilots/rosario", 404, "rosario"),
        ("/pilots/rosario/devices", 404, "rosario"),
        ("/pilots/santa-fe/series?sensor=pm25", 404, "pm25"),
        ("/pilots/santa-fe/series?sensor=nope", 404, "nope"),
        ("/pilots/santa-fe/series?sensor=level&start=yesterday", 422, "start"),
        ("/pilots/santa-fe/series?sensor=level&start=2026-11-27T00:00:00", 422, "offset"),
        (
            "/pilots/santa-fe/series?sensor=level&start=2026-11-28T00:00:00Z"
            "&end=2026-11-27T00:00:00Z",
            422,
            "before",
        ),
        ("/pilots/santa-fe/series?sensor=level&every=10x", 422, "every"),
        ("/pilots/santa-fe/series", 422, "sensor"),
        (
            "/pilots/santa-fe/series?sensor=level&start=2026-01-01T00:00:00Z"
            "&end=2026-11-27T00:00:00Z&every=1m",
            400,
            "PILOTS_API_MAX_POINTS",
        ),
    ],
)
def test_errors_are_problem_details_that_name_the_problem(
    client: TestClient, path: str, status: int, named: str
) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert named in body["detail"]


def test_health_is_ok_when_the_store_answers(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["store"].startswith("embedded")


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/pilots",
        "/pilots/{pilot}",
        "/pilots/{pilot}/devices",
        "/pilots/{pilot}/series",
        "/health",
    } <= set(paths)

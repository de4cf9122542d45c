"""Published pilots: what anyone may read without a token, and what still needs one.

The registry publishes Santa Fe from now on (`public = true`) and San Nicolás for one past week
(`public_from`/`public_until`); Resistencia stays private, as every pilot is by default. The
app runs in-process over the embedded store with readings on both sides of San Nicolás's week.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from api.app import create_app
from api.auth import TokenStore
from api.limiter import PublicLimiter
from core.errors import RegistryError
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import datetime_to_ns

S = 1_000_000_000
H = 3600 * S
#: San Nicolás is public for these local days: from 2026-11-20 to before 2026-11-27.
WEEK_START_NS = datetime_to_ns(datetime.fromisoformat("2026-11-20T00:00:00-03:00"))
WEEK_END_NS = datetime_to_ns(datetime.fromisoformat("2026-11-27T00:00:00-03:00"))


def _registry(tmp_path: Path, pilots: Mapping[str, Mapping[str, object]] | None = None) -> Registry:
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    for pilot, values in (pilots or {}).items():
        raw["pilots"][pilot].update(values)
    return build_registry(raw, tmp_path / "registry.toml")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    registry = _registry(
        tmp_path,
        {
            "santa-fe": {"public": True},
            "san-nicolas": {
                "public": True,
                "public_from": datetime.fromisoformat("2026-11-20").date(),
                "public_until": datetime.fromisoformat("2026-11-27").date(),
            },
        },
    )
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    # Hourly readings from two days before San Nicolás's public week to two days after it.
    times = range(WEEK_START_NS - 48 * H, WEEK_END_NS + 48 * H, H)
    rows = [(t, "sn-aq-01", "pm25", 10.0) for t in times]
    rows += [(t, "rs-wq-01", "water_temp", 21.0) for t in times]
    rows += [(t, "sf-rlv-01", "level", 3.5) for t in times]
    store.write(
        Readings.from_arrays(
            [r[0] for r in rows],
            registry.device_codes([r[1] for r in rows]),
            registry.sensor_codes([r[2] for r in rows]),
            [r[3] for r in rows],
        )
    )
    settings = Settings(data_dir=tmp_path, api_public_rate="20/minute", _env_file=None)
    tokens = TokenStore.in_data_dir(tmp_path)
    read = {"Authorization": f"Bearer {tokens.create('researcher', 'read')}"}
    app = create_app(settings, registry, store, cache=False)
    with TestClient(app) as client:
        yield client, read
    store.close()


def _get(client: TestClient, path: str, **params: str) -> Any:
    return client.get(path, params=params)


def test_a_public_pilot_is_readable_without_a_token(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = world
    listed = client.get("/pilots")
    assert listed.status_code == 200, listed.text
    # San Nicolás's week is over: only Santa Fe is public now.
    assert [p["id"] for p in listed.json()] == ["santa-fe"]
    assert client.get("/pilots/santa-fe").status_code == 200
    devices = client.get("/pilots/santa-fe/devices")
    assert devices.status_code == 200
    assert {d["id"] for d in devices.json()} >= {"sf-rlv-01"}
    window = {"start": "2026-11-20", "end": "2026-11-21"}
    report = client.get("/pilots/santa-fe/report", params=window)
    assert report.status_code == 200, report.text
    assert client.get("/pilots/santa-fe/report.html", params=window).status_code == 200
    series = client.get(
        "/pilots/santa-fe/series", params={**window, "sensor": "level", "every": "1h"}
    )
    assert series.status_code == 200, series.text
    counts = [w["count"] for w in series.json()["sensors"][0]["lines"][0]["windows"]]
    assert counts[:24] == [1] * 24


def test_a_private_pilot_answers_401_without_a_token(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, read = world
    window = {"start": "2026-11-20", "end": "2026-11-21"}
    for path, params in (
        ("/pilots/resistencia", {}),
        ("/pilots/resistencia/devices", {}),
        ("/pilots/resistencia/report", window),
        ("/pilots/resistencia/report.html", window),
        ("/pilots/resistencia/series", {**window, "sensor": "water_temp"}),
    ):
        response = client.get(path, params=params)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert "Bearer" in response.headers["www-authenticate"]
        assert "not public" in response.json()["detail"]
        assert client.get(path, params=params, headers=read).status_code == 200, path


def test_everything_else_still_needs_a_token(world: tuple[TestClient, dict[str, str]]) -> None:
    client, read = world
    for path in (
        "/export?pilot=santa-fe&sensor=level&start=2026-11-20&end=2026-11-21",
        "/compare?sensor=level",
        "/alerts",
        "/quarantine",
        "/metrics",
    ):
        assert client.get(path).status_code == 401, path
    # A bad token is refused even on a public pilot: a client that sends one expects it to count.
    bad = {"Authorization": "Bearer pt_" + "x" * 43}
    assert client.get("/pilots/santa-fe", headers=bad).status_code == 401
    assert client.get("/pilots/santa-fe", headers=read).status_code == 200


def test_only_the_published_period_is_readable(world: tuple[TestClient, dict[str, str]]) -> None:
    client, read = world
    inside = {"start": "2026-11-21", "end": "2026-11-23"}
    report = client.get("/pilots/san-nicolas/report", params=inside)
    assert report.status_code == 200, report.text
    for outside in (
        {"start": "2026-11-26", "end": "2026-11-28"},  # runs past its end
        {"start": "2026-11-19", "end": "2026-11-21"},  # starts before it
    ):
        response = client.get("/pilots/san-nicolas/report", params=outside)
        assert response.status_code == 401
        assert "is public" in response.json()["detail"]
        assert client.get("/pilots/san-nicolas/report", params=outside, headers=read).is_success
    # The windows count, not only the range: a month's window reaches past the week.
    monthly = {**inside, "sensor": "pm25"}
    assert client.get("/pilots/san-nicolas/series", params={**monthly, "every": "1h"}).is_success
    whole = client.get("/pilots/san-nicolas/series", params={**monthly, "every": "month"})
    assert whole.status_code == 401
    # Its status now is after the week: not public.
    assert client.get("/pilots/san-nicolas/devices").status_code == 401


def test_anonymous_requests_are_rate_limited_per_client(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, read = world
    answers = [client.get("/pilots/santa-fe").status_code for _ in range(21)]
    assert answers[:20] == [200] * 20
    assert answers[20] == 429
    refused = client.get("/pilots/santa-fe")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "PILOTS_API_PUBLIC_RATE" in refused.json()["detail"]
    # A token's requests are not counted against anonymous ones, nor limited by them.
    assert client.get("/pilots/santa-fe", headers=read).status_code == 200
    # Another client address has its own count.
    other = TestClient(client.app, client=("192.0.2.7", 50000))
    assert other.get("/pilots/santa-fe").status_code == 200


def _request(host: str) -> Request:
    return Request({"type": "http", "client": (host, 1234), "headers": []})


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    limiter = PublicLimiter("2/minute", "100/minute")
    assert limiter.client(_request("2001:db8:1:2::1")) == limiter.client(
        _request("2001:db8:1:2:ffff::9")
    )
    assert limiter.client(_request("2001:db8:1:3::1")) != limiter.client(
        _request("2001:db8:1:2::1")
    )
    limiter.hit(_request("2001:db8:1:2::1"))
    limiter.hit(_request("2001:db8:1:2::2"))
    with pytest.raises(Exception, match="limited"):
        limiter.hit(_request("2001:db8:1:2::3"))
    limiter.hit(_request("203.0.113.5"))


def test_nothing_is_public_by_default(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert all(p.public is None for p in registry.pilot_list)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"public_from": datetime.fromisoformat("2026-11-20").date()}, "need `public = true`"),
        (
            {
                "public": True,
                "public_from": datetime.fromisoformat("2026-11-27").date(),
                "public_until": datetime.fromisoformat("2026-11-20").date(),
            },
            "must come after",
        ),
    ],
)
def test_a_bad_public_period_is_refused(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        _registry(tmp_path, {"resistencia": values})


def test_a_public_period_runs_from_local_midnight(tmp_path: Path) -> None:
    registry = _registry(
        tmp_path,
        {
            "resistencia": {
                "public": True,
                "public_from": datetime.fromisoformat("2026-11-20").date(),
            }
        },
    )
    period = registry.pilots["resistencia"].public
    assert period is not None
    assert period.start_ns == WEEK_START_NS  # 2026-11-20T00:00-03:00
    assert period.end_ns is None


@pytest.mark.parametrize("rate", ["", "lots", "60 per fortnight"])
def test_a_bad_rate_setting_is_refused(rate: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        Settings(api_public_rate=rate, _env_file=None)


def test_strangers_hold_at_most_the_public_scan_slots(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, read = world
    slots = client.app.state.slots  # type: ignore[attr-defined]
    assert slots.limit == 2 and slots.public_limit == 1
    params = {"start": "2026-11-20", "end": "2026-11-22", "sensor": "level", "every": "1h"}
    # A stranger's expensive request while the public slot is taken: refused at once.
    assert slots._public.acquire(blocking=False)  # as another stranger's request holds it
    try:
        busy = client.get("/pilots/santa-fe/series", params=params)
        assert busy.status_code == 503
        assert "PILOTS_API_PUBLIC_MAX_SCANS" in busy.json()["detail"]
        assert "retry-after" in busy.headers
        # A token holder still gets one of the other slots.
        assert client.get("/pilots/santa-fe/series", params=params, headers=read).is_success
    finally:
        slots._public.release()
    assert client.get("/pilots/santa-fe/series", params=params).is_success


def test_other_sites_pages_may_read_public_data_but_not_send_tokens(
    world: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = world
    origin = {"Origin": "https://datos.other-city.example"}
    answer = client.get("/pilots/santa-fe", headers=origin)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    # A page elsewhere cannot send a token: the preflight for the header is refused.
    preflight = client.options(
        "/pilots/resistencia",
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 400
    assert "authorization" not in preflight.headers.get("access-control-allow-headers", "").lower()

"""The API's limits: what a request over one gets, and that it gets it before any work.

In-process over the embedded store (the hostile suite, tests/security, runs the same requests
against a real influxd and measures memory).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenStore
from core.errors import StoreUnavailableError
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore

S = 1_000_000_000
H = 3600 * S
END_NS = 1_795_000_000 * S  # 2026-11-18
SECRET = "http://admin:hunter2@influx.internal:8086"
DASHBOARD = Path(__file__).resolve().parents[2] / "api" / "static" / "dashboard.html"


class FailingStore(EmbeddedStore):
    """An embedded store whose reads fail the way an unreachable InfluxDB's do."""

    def scan(self, *args: object, **kwargs: object) -> Readings:
        raise StoreUnavailableError(f"cannot reach {SECRET}: connection refused")

    def ping(self) -> None:
        raise StoreUnavailableError(f"cannot reach {SECRET}: connection refused")


class HeldStore(EmbeddedStore):
    """An embedded store whose scans wait for `release`: a request held in progress."""

    def __init__(self, path: Path, registry: Registry) -> None:
        super().__init__(path, registry)
        self.entered = threading.Event()
        self.release = threading.Event()

    def scan(self, *args: object, **kwargs: object) -> Readings:
        self.entered.set()
        assert self.release.wait(60), "the test never released the held scan"
        return super().scan(*args, **kwargs)  # type: ignore[arg-type]


def _client(
    tmp_path: Path, registry: Registry, store: EmbeddedStore, **settings: object
) -> TestClient:
    """A read-token client; `ADMIN[tmp_path]` holds an admin token's header."""
    config = Settings(data_dir=tmp_path, _env_file=None, **settings)  # type: ignore[arg-type]
    tokens = TokenStore.in_data_dir(tmp_path)
    app = create_app(config, registry, store, cache=False)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {tokens.create('ana', 'read')}"
    ADMIN[tmp_path] = {"Authorization": f"Bearer {tokens.create('ops', 'admin')}"}
    return client


ADMIN: dict[Path, dict[str, str]] = {}


@pytest.fixture
def api(tmp_path: Path, registry: Registry) -> Iterator[TestClient]:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    ts = [END_NS - (i + 1) * 600 * S for i in range(144)]
    store.write(
        Readings.from_arrays(
            ts,
            registry.device_codes(["sf-rlv-01"] * len(ts)),
            registry.sensor_codes(["level"] * len(ts)),
            [3.0 + i / 1000 for i in range(len(ts))],
        )
    )
    client = _client(tmp_path, registry, store)
    with client:
        yield client
    store.close()


def _iso(ts_ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ns / S, UTC).isoformat()


def _problem(response: object, status: int, *words: str) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    detail: str = response.json()["detail"]  # type: ignore[attr-defined]
    for word in words:
        assert word in detail, detail
    return detail


def test_a_year_in_one_second_windows_is_refused_naming_max_points(api: TestClient) -> None:
    response = api.get(
        "/pilots/santa-fe/series",
        params={"sensor": "level", "every": "1s", "start": _iso(END_NS - 365 * 24 * H)},
    )
    _problem(response, 400, "PILOTS_API_MAX_POINTS")


def test_a_long_report_is_refused_naming_the_scan_limit(api: TestClient) -> None:
    start = _iso(END_NS - 60 * 24 * H)
    response = api.get("/pilots/san-nicolas/report", params={"start": start, "end": _iso(END_NS)})
    detail = _problem(response, 400, "PILOTS_API_MAX_SCAN_READINGS")
    estimate = int(re.search(r"about (\d+) readings", detail).group(1))  # type: ignore[union-attr]
    # 60 days of 5 devices every 5 minutes (5 sensors) and 2 every 10 (6 sensors), and uplinks.
    assert 60 * (5 * 288 * 5 + 2 * 144 * 6) < estimate < 60 * 1.1 * (5 * 288 * 6 + 2 * 144 * 7)
    html = api.get("/pilots/san-nicolas/report.html", params={"start": start, "end": _iso(END_NS)})
    _problem(html, 400, "PILOTS_API_MAX_SCAN_READINGS")


def test_a_30_day_report_of_santa_fe_still_works(api: TestClient) -> None:
    start, end = _iso(END_NS - 30 * 24 * H), _iso(END_NS)
    response = api.get("/pilots/santa-fe/report", params={"start": start, "end": end})
    assert response.status_code == 200, response.text
    level = next(s for s in response.json()["sensors"] if s["sensor"] == "level")
    assert level["count"] == 144


def test_exclude_flagged_over_a_year_is_refused(api: TestClient) -> None:
    response = api.get(
        "/pilots/san-nicolas/series",
        params={
            "sensor": ["pm25", "pm10", "no2"],
            "every": "1d",
            "exclude_flagged": "true",
            "start": _iso(END_NS - 395 * 24 * H),
            "end": _iso(END_NS),
        },
    )
    _problem(response, 400, "PILOTS_API_MAX_SCAN_READINGS")


def test_the_scan_limit_is_a_setting(tmp_path: Path, registry: Registry) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    client = _client(tmp_path, registry, store, api_max_scan_readings=100)
    params = {"pilot": "santa-fe", "sensor": "level", "start": _iso(END_NS - 24 * H)}
    params["end"] = _iso(END_NS)
    _problem(client.get("/export", params=params), 400, "limit of 100", "SCAN_READINGS")
    store.close()


@pytest.mark.parametrize("cache", [False, True])
def test_a_device_reporting_faster_than_registered_cannot_make_a_request_read_more(
    tmp_path: Path, registry: Registry, cache: bool
) -> None:
    """A gauge registered at 10 minutes that sends every second: the registry's estimate of a
    day passes, the stored readings (86,400, not 145) are counted before they are read, from
    the store or from the hot cache's recent readings."""
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    end_ns = time.time_ns() // S * S
    ts = [end_ns - (i + 1) * S for i in range(86_400)]
    store.write(
        Readings.from_arrays(
            ts,
            registry.device_codes(["sf-rlv-01"] * len(ts)),
            registry.sensor_codes(["level"] * len(ts)),
            [3.0] * len(ts),
        )
    )
    config = Settings(data_dir=tmp_path, api_max_scan_readings=50_000, _env_file=None)
    token = TokenStore.in_data_dir(tmp_path).create("ana", "read")
    with TestClient(create_app(config, registry, store, cache=cache)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        day = {"start": _iso(end_ns - 24 * H), "end": _iso(end_ns)}
        raw = client.get("/pilots/santa-fe/series", params={"sensor": "level", **day})
        _problem(raw, 400, "86400 stored readings", "PILOTS_API_MAX_SCAN_READINGS")
        export = client.get("/export", params={"pilot": "santa-fe", "sensor": "level", **day})
        _problem(export, 400, "86400 stored readings")
        report = client.get("/pilots/santa-fe/report", params=day)
        _problem(report, 400, "stored readings", "PILOTS_API_MAX_SCAN_READINGS")
        hour = {"start": _iso(end_ns - H), "end": _iso(end_ns)}
        ok = client.get("/pilots/santa-fe/series", params={"sensor": "level", **hour})
        assert ok.status_code == 200, ok.text
        counted = sum(w["count"] for w in ok.json()["sensors"][0]["lines"][0]["windows"])
        assert counted >= 3600, "an hour of them (widened to whole windows) is answered"
    store.close()


def test_a_repeated_sensor_is_read_once(api: TestClient) -> None:
    params = {"pilot": "santa-fe", "start": _iso(END_NS - 24 * H), "end": _iso(END_NS)}
    once = api.get("/export", params={**params, "sensor": "level"})
    many = api.get("/export", params={**params, "sensor": ["level"] * 20})
    assert once.status_code == many.status_code == 200
    assert many.text == once.text
    assert len(once.text.splitlines()) == 145


@pytest.mark.parametrize("path", ["/export?pilot=santa-fe", "/pilots/santa-fe/series?every=1h"])
def test_more_repeats_than_the_cap_are_refused_naming_it(api: TestClient, path: str) -> None:
    response = api.get(path + "&sensor=level" * 600)
    _problem(response, 422, "20")
    devices = api.get(path + "&sensor=level" + "&device=sf-rlv-01" * 65)
    _problem(devices, 422, "64")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"every": "999999999w"}, "every"),
        ({"every": "367d"}, "every"),
        ({"start": "0001-01-01T00:00:00Z"}, "start"),
        ({"start": "0001-01-01"}, "start"),
        ({"end": "9999-12-31T23:59:59Z"}, "end"),
        ({"end": "9999-12-31"}, "end"),
    ],
)
def test_out_of_range_windows_and_dates_are_422(
    api: TestClient, params: dict[str, str], name: str
) -> None:
    for path, fixed in (
        ("/pilots/santa-fe/series", {"sensor": "level"}),
        ("/export", {"pilot": "santa-fe", "sensor": "level"}),
    ):
        _problem(api.get(path, params={**fixed, **params}), 422, name)
    if "every" not in params:
        _problem(api.get("/pilots/santa-fe/report", params=params), 422, name)


def test_store_failures_are_503_without_the_stores_words(
    tmp_path: Path, registry: Registry
) -> None:
    store = FailingStore(tmp_path / "store.sqlite", registry)
    client = _client(tmp_path, registry, store, influx_url="http://admin:hunter2@influx:8086")
    response = client.get("/pilots/santa-fe/series", params={"sensor": "level"})
    detail = _problem(response, 503, "store is unavailable")
    assert "hunter2" not in detail and "influx" not in detail
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable"}
    store.close()


def test_health_tells_status_only_and_details_need_admin(
    tmp_path: Path, registry: Registry
) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    client = _client(tmp_path, registry, store, influx_url="http://admin:hunter2@influx:8086")
    anonymous = TestClient(client.app)
    assert anonymous.get("/health").json() == {"status": "ok"}
    assert anonymous.get("/ready").json() == {"status": "ok"}
    assert anonymous.get("/health/details").status_code == 401
    assert client.get("/health/details").status_code == 403
    details = client.get("/health/details", headers=ADMIN[tmp_path])
    assert details.status_code == 200
    assert details.json()["store"] == "influx http://influx:8086 database=pilots"
    store.close()


def test_the_openapi_pages_load_nothing_from_elsewhere(api: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        response = api.get(page)
        assert response.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert sources, response.text
        assert all(s.startswith("/docs-assets/") for s in sources), sources
        assert "default-src 'self'" in response.headers["content-security-policy"]
        for source in sources:
            assert api.get(source).status_code == 200, source


def test_kept_answers_are_bounded_in_bytes(tmp_path: Path, registry: Registry) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    config = Settings(
        data_dir=tmp_path, _env_file=None, api_answers_max_bytes=20_000, api_answers_kept=256
    )
    tokens = TokenStore.in_data_dir(tmp_path)
    app = create_app(config, registry, store, cache=True)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {tokens.create('ana', 'read')}"
        for hours in range(1, 30):
            response = client.get(
                "/pilots/santa-fe/series",
                params={"sensor": ["level", "battery_v"], "every": f"{hours}h"},
            )
            assert response.status_code == 200, response.text
        kept, size = app.state.series.answers_kept()
        assert 0 < kept < 29
        assert size <= 20_000
    store.close()


def _dashboard_requests() -> tuple[dict[str, tuple[int, str]], dict[str, str]]:
    """What the page at / asks for: its periods (name -> hours, every) and its fixed parameters."""
    page = DASHBOARD.read_text(encoding="utf-8")
    periods = {
        name: (math.prod(int(f) for f in hours.split("*")), every)
        for name, hours, every in re.findall(r'"(\w+)": \{hours: ([\d *]+), every: "(\w+)"', page)
    }
    fixed = dict(re.findall(r'\["(stats|pooled)", "([\w,]+)"\]', page))
    return periods, fixed


def test_the_dashboards_periods_are_answered_for_every_pilot_at_the_defaults(
    api: TestClient,
) -> None:
    """Every pilot's 24 h, 7 d and 30 d views, asked as the page asks them: every sensor, from
    `now - period` to now (to the millisecond, as `toISOString` writes them, not on an hour).
    Fixed windows follow the pilot's local clock, not the start, so a period longer than
    `PILOTS_API_RAW_MAX_HOURS` is read from hourly rollups and fits the default scan limit
    (the `api` fixture's settings are the defaults)."""
    defaults = Settings(_env_file=None)
    periods, fixed = _dashboard_requests()
    assert set(periods) == {"24h", "7d", "30d"} and set(fixed) == {"stats", "pooled"}
    now = datetime.fromtimestamp(END_NS / S, UTC) + timedelta(minutes=17, seconds=23.456)
    end = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    pilots = api.get("/pilots").json()
    assert [p["id"] for p in pilots] == ["santa-fe", "san-nicolas", "resistencia"]
    for pilot in pilots:
        for name, (hours, every) in periods.items():
            start = (now - timedelta(hours=hours)).isoformat(timespec="milliseconds")
            params = [
                *[("sensor", sensor["id"]) for sensor in pilot["sensors"]],
                ("start", start.replace("+00:00", "Z")),
                ("end", end),
                ("every", every),
                *fixed.items(),
            ]
            response = api.get(f"/pilots/{pilot['id']}/series", params=params)
            assert response.status_code == 200, (pilot["id"], name, response.text)
            expected = "readings" if hours <= defaults.api_raw_max_hours else "rollups"
            assert response.json()["source"] == expected, (pilot["id"], name)


def test_expensive_requests_past_the_concurrency_bound_get_503_and_cheap_ones_are_answered(
    tmp_path: Path, registry: Registry
) -> None:
    """With one slot and a series held in the middle of its scan: a report and a raw export
    are refused with 503 naming the setting (after the short wait), a request over a limit is
    still refused with 400 at once, and /pilots is answered; then the held series completes."""
    store = HeldStore(tmp_path / "store.sqlite", registry)
    client = _client(tmp_path, registry, store, api_max_concurrent_scans=1, api_scan_wait_s=0.1)
    day = {"start": _iso(END_NS - 24 * H), "end": _iso(END_NS)}
    held: dict[str, object] = {}

    def hold() -> None:
        held["response"] = client.get(
            "/pilots/santa-fe/series", params={"sensor": "level", "every": "1h", **day}
        )

    with client:
        worker = threading.Thread(target=hold)
        worker.start()
        try:
            assert store.entered.wait(60), "the first request never reached the store"
            for busy in (
                client.get("/pilots/santa-fe/report", params=day),
                client.get("/export", params={"pilot": "santa-fe", "sensor": "level", **day}),
            ):
                _problem(busy, 503, "PILOTS_API_MAX_CONCURRENT_SCANS")
                assert int(busy.headers["Retry-After"]) >= 1
            year = {"start": _iso(END_NS - 400 * 24 * H), "end": _iso(END_NS)}
            over = client.get("/pilots/san-nicolas/report", params=year)
            _problem(over, 400, "PILOTS_API_MAX_SCAN_READINGS")
            pilots = client.get("/pilots")
            assert pilots.status_code == 200, pilots.text
        finally:
            store.release.set()
            worker.join(60)
    first = held["response"]
    assert first.status_code == 200, first.text  # type: ignore[attr-defined]
    store.close()


def test_a_pilot_with_more_uplinks_than_the_bound_is_listed_without_reading_them(
    tmp_path: Path, registry: Registry
) -> None:
    """A network server sends 5,000 uplinks of one gauge in an hour; the listings count them
    and leave today's completeness and the radio medians out rather than read them all."""
    from core.uplinks import Uplinks

    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    now = time.time_ns()
    ts = [now - (i + 1) * 700_000_000 for i in range(5000)]
    code = registry.devices["sf-rlv-01"].code
    store.write(
        Readings.empty(),
        Uplinks.from_columns(
            ts_ns=ts,
            device=[code] * len(ts),
            received_ns=ts,
            fcnt=list(range(len(ts))),
            rssi=[-80.0] * len(ts),
            snr=[5.0] * len(ts),
            sf=[9] * len(ts),
            gateway=["gw-1"] * len(ts),
        ),
    )
    client = _client(tmp_path, registry, store, api_max_scan_readings=1000)
    pilots = {p["id"]: p for p in client.get("/pilots").json()}
    assert pilots["santa-fe"]["completeness_today"] is None
    assert pilots["resistencia"]["devices"] > 0
    devices = {d["id"]: d for d in client.get("/pilots/santa-fe/devices").json()}
    assert devices["sf-rlv-01"]["link"] == {
        "uplinks": 5000,
        "rssi_median": None,
        "snr_median": None,
    }
    assert devices["sf-rlv-02"]["completeness_today"] is None
    store.close()

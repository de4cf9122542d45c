"""The dashboard at `/` in a real (headless) Chromium, over `pilots api` and a seeded store.

The store holds a day of Santa Fe readings: two river gauges (one went quiet two hours ago)
and a weather station; the other devices never reported. The browser is Debian's Chromium
driven by Playwright; Playwright never downloads a browser of its own. Alarms are recorded in
the API's alarm store as the alert service would, while the page is open.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from alerts.store import AlarmStore
from api.auth import TokenStore
from core.alerts import AlertEvent, alarm_id
from core.readings import Readings
from core.registry import Registry
from core.rollups import compute_rollups
from core.store.embedded import EmbeddedStore
from core.uplinks import Uplinks
from tests.processes import PilotsProcess, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.e2e

NS_PER_S = 1_000_000_000
INTERVAL_S = 600
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
CHROMIUM_HINT = (
    "Debian's chromium is not installed: install it with `apt-get install -y chromium` "
    "(or run scripts/test-services.sh as root); Playwright must not download a browser"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PILOT_NAMES = ["Santa Fe", "San Nicolás de los Arroyos", "Resistencia"]


def chromium_path() -> str:
    """Debian's Chromium, or fail the test saying how to install it (never skip)."""
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(CHROMIUM_HINT, pytrace=False)


@dataclass(frozen=True)
class Seeded:
    """What the test later expects the page to show."""

    battery_v: dict[str, float]
    last_reading: datetime


def _local_hours(ts_ns: np.ndarray, tz: ZoneInfo, now_ns: int) -> np.ndarray:
    """Hour of the local day of each instant (the pilots' zones have no daylight saving)."""
    offset = datetime.fromtimestamp(now_ns / NS_PER_S, UTC).astimezone(tz).utcoffset()
    assert offset is not None
    return ((ts_ns // NS_PER_S + int(offset.total_seconds())) % 86_400) / 3600.0


@dataclass(frozen=True)
class Station:
    """A seeded device: its readings per sensor, and how long before now it went quiet."""

    quiet_s: int
    battery_base_v: float
    sensors: dict[str, np.ndarray]


def seed(registry: Registry, data_dir: Path, now_ns: int) -> Seeded:
    """A day of Santa Fe readings and uplinks ending now, with the hourly rollups ingest keeps."""
    pilot = registry.pilots["santa-fe"]
    rng = np.random.default_rng(20251120)
    first_ns = now_ns - 24 * 3600 * NS_PER_S + 30 * NS_PER_S
    ts_all = np.arange(first_ns, now_ns, INTERVAL_S * NS_PER_S, dtype=np.int64)
    day = 2 * math.pi * _local_hours(ts_all, pilot.tz, now_ns) / 24
    afternoon = day - 2 * math.pi * 15 / 24  # warmest near 15:00 local
    noise = rng.normal(0, 0.004, (2, len(ts_all)))
    fleet = {
        "sf-rlv-01": Station(
            0,
            3.86,
            {
                "level": 3.52 + 0.10 * np.sin(day - 1.0) + noise[0],
                "water_temp": 24.5 + 0.8 * np.sin(day - 2.0),
            },
        ),
        "sf-rlv-02": Station(  # silent for the last two hours
            2 * 3600,
            3.80,
            {
                "level": 3.31 + 0.08 * np.sin(day - 1.3) + noise[1],
                "water_temp": 25.1 + 0.9 * np.sin(day - 2.1),
            },
        ),
        "sf-wx-01": Station(
            0,
            3.92,
            {
                "temperature": 24.0 + 6.0 * np.cos(afternoon),
                "humidity": 68.0 - 15.0 * np.cos(afternoon),  # RH moves opposite to T
                "pressure": 1012.0 + 1.2 * np.sin(2 * day),
            },
        ),
    }
    readings: list[Readings] = []
    uplinks: list[Uplinks] = []
    battery_last: dict[str, float] = {}
    for device_id, station in fleet.items():
        code = registry.devices[device_id].code
        keep = ts_all <= now_ns - station.quiet_s * NS_PER_S
        ts, n = ts_all[keep], int(keep.sum())
        # Solar charging by day.
        battery = np.round(station.battery_base_v + 0.12 * np.clip(np.sin(day - 0.8), 0, None), 3)
        battery_last[device_id] = float(battery[keep][-1])
        for sensor_id, values in {**station.sensors, "battery_v": battery}.items():
            sensor = registry.sensors[sensor_id].code
            readings.append(
                Readings.from_arrays(ts, np.full(n, code), np.full(n, sensor), values[keep])
            )
        uplinks.append(
            Uplinks.from_columns(
                ts_ns=ts,
                device=np.full(n, code),
                received_ns=ts + 2 * NS_PER_S,
                fcnt=np.arange(n),
                rssi=np.round(rng.normal(-97.0, 3.0, n)),
                snr=np.round(rng.normal(6.5, 1.5, n), 1),
                sf=np.full(n, 9),
                gateway=np.full(n, "gw-frsf-01"),
            )
        )
    batch = Readings.concat(readings)
    store = EmbeddedStore(data_dir / "store.sqlite", registry)
    try:
        store.write(batch, Uplinks.concat(uplinks))
        store.write_rollups("1h", compute_rollups(batch, "1h"))
    finally:
        store.close()
    last_ns = int(ts_all[-1])
    return Seeded(
        battery_v=battery_last, last_reading=datetime.fromtimestamp(last_ns / NS_PER_S, pilot.tz)
    )


@dataclass(frozen=True)
class Served:
    """`pilots api` over the seeded store."""

    base: str
    token: str
    seeded: Seeded
    data_dir: Path
    operator_token: str


@pytest.fixture(scope="module")
def served(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The API as a process of its own, over a store seeded a moment ago."""
    tmp = tmp_path_factory.mktemp("dashboard")
    data_dir = tmp / "var"
    seeded = seed(registry, data_dir, time.time_ns())
    tokens = TokenStore.in_data_dir(data_dir)
    token = tokens.create("dashboard-test", "read")
    operator_token = tokens.create("dashboard-operator", "operator")
    tokens.close()
    env = {
        "PILOTS_DATA_DIR": str(data_dir),
        "PILOTS_API_PORT": str(free_port()),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
    }
    api = PilotsProcess(["api"], env, tmp, "api")
    base = f"http://127.0.0.1:{env['PILOTS_API_PORT']}"
    try:
        wait_for_http(f"{base}/health", 30, api)
        yield Served(base, token, seeded, data_dir, operator_token)
    finally:
        code = api.stop(signal.SIGTERM)
    assert code == 0, api.output()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page with every request URL and every console or page error it produced."""

    page: Page
    requests: list[str]
    errors: list[str]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    """A fresh browser context (no stored token) at a desktop size, its requests recorded."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC"
    )
    page = context.new_page()
    out = Watched(page, [], [])
    page.on("request", lambda request: out.requests.append(request.url))
    page.on("pageerror", lambda error: out.errors.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            out.errors.append(f"console error: {message.text}")

    page.on("console", console)
    yield out
    context.close()


def device_table(page: Page) -> dict[str, dict[str, str]]:
    """The device table as the user reads it: row header -> column header -> cell text."""
    headers = page.locator("#devices thead th").all_inner_texts()
    rows = [
        row.locator("th, td").all_inner_texts() for row in page.locator("#devices tbody tr").all()
    ]
    return {cells[0]: dict(zip(headers, cells, strict=True)) for cells in rows}


def chart_points(page: Page, sensor: str) -> int:
    """How many windows the chart of a sensor plotted."""
    return int(page.locator(f'svg[data-sensor="{sensor}"]').get_attribute("data-points") or -1)


def test_dashboard_shows_pilots_charts_and_devices(
    served: Served, watched: Watched, tmp_path: Path
) -> None:
    page = watched.page
    page.goto(f"{served.base}/#token={served.token}")

    cards = page.locator("#pilots li.card")
    expect(cards.locator("h3")).to_have_text(PILOT_NAMES)
    santa_fe = page.locator('li.card[data-pilot="santa-fe"]')
    expect(santa_fe.locator("dd.online")).to_have_text("2 / 7")
    last = served.seeded.last_reading.strftime("%H:%M")  # the pilot's local time
    expect(santa_fe.locator("dd.last-seen")).to_contain_text(re.compile(rf"{last} \(\d+ min ago\)"))
    expect(santa_fe.locator("dd.completeness")).to_have_text(re.compile(r"^\d{1,3} %$"))
    expect(page.locator('li.card[data-pilot="resistencia"] dd.online')).to_have_text("0 / 7")
    assert "token=" not in page.url, "the token is taken out of the address bar"

    # Another pilot first, so that selecting Santa Fe has to change what is drawn.
    page.locator('li.card[data-pilot="resistencia"]').click()
    expect(page.locator("#pilot-heading")).to_have_text("Resistencia")
    expect(page.locator('svg[data-sensor="ph"]')).to_have_attribute("data-points", "0")
    expect(page.locator('svg[data-sensor="level"] g.threshold[data-value="6"]')).to_have_count(1)

    santa_fe.click()
    expect(santa_fe).to_have_class(re.compile(r"\bselected\b"))
    expect(santa_fe.locator("button")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#pilot-heading")).to_have_text("Santa Fe")
    level = page.locator('svg[data-sensor="level"]')
    expect(level.locator("g.threshold[data-threshold=alert] text")).to_have_text("alert 5.3 m")
    expect(page.locator("#charts")).to_have_attribute("aria-busy", "false")

    # One plotted 10-minute window per reading: 144 of sf-rlv-01, 132 of sf-rlv-02 (which went
    # quiet two hours ago), less one each if the oldest fell out of the range meanwhile.
    assert 274 <= chart_points(page, "level") <= 276
    assert chart_points(page, "temperature") >= 143
    assert chart_points(page, "rain") == 0
    expect(page.locator('figure[data-sensor="level"] .legend')).to_contain_text("sf-rlv-02")
    expect(level.locator("text.unit")).to_have_text("m")
    geometry = level.evaluate(
        """svg => {
            const line = name => svg.querySelector(`g.threshold[data-threshold=${name}] line`);
            const curves = [...svg.querySelectorAll(".mean")].map(e => e.getBBox());
            return {
                dash: getComputedStyle(line("alert")).strokeDasharray,
                alert: Number(line("alert").getAttribute("y1")),
                evacuation: Number(line("evacuation").getAttribute("y1")),
                curveTop: Math.min(...curves.map(b => b.y)),
                curves: curves.length,
            };
        }"""
    )
    assert geometry["dash"] not in ("", "none"), "the alert level is drawn dashed"
    assert geometry["curves"] == 2, "one line per river gauge"
    # Screen y grows downwards: evacuation above alert, both above the river at ~3.5 m.
    assert geometry["evacuation"] < geometry["alert"] < geometry["curveTop"], geometry

    table = device_table(page)
    assert list(table) == [
        "sf-rlv-01",
        "sf-rlv-02",
        "sf-rg-01",
        "sf-rg-02",
        "sf-rg-03",
        "sf-wx-01",
        "sf-wx-02",
    ]
    one = table["sf-rlv-01"]
    assert one["Status"] == "online"
    assert one["Battery (V)"] == f"{served.seeded.battery_v['sf-rlv-01']:.2f}"
    assert re.fullmatch(r"-\d+", one["RSSI median (dBm)"]), one
    assert re.fullmatch(r"\d{1,3} %", one["Completeness today"]), one
    assert table["sf-rlv-02"]["Status"] == "silent"
    assert (table["sf-rg-01"]["Status"], table["sf-rg-01"]["Battery (V)"]) == ("never", "—")

    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    if os.environ.get("PILOTS_SCREENSHOT_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "dashboard.png", DOCS_SCREENSHOT)

    # Seven days come from hourly rollups: about 25 + 23 hours with readings.
    page.get_by_label("7 days").check()
    expect(page.locator("#charts")).to_have_attribute("data-every", "1h")
    assert 44 <= chart_points(page, "level") <= 50

    # Thirty days of the pilot that sends the most (San Nicolás, every 5 minutes) are within
    # the default limits: 6-hour windows of hourly rollups, no error shown.
    page.locator('li.card[data-pilot="san-nicolas"]').click()
    page.get_by_label("30 days").check()
    expect(page.locator("#pilot-heading")).to_have_text("San Nicolás de los Arroyos")
    expect(page.locator("#charts")).to_have_attribute("data-every", "6h")
    expect(page.locator("#error")).to_be_hidden()

    assert any("/pilots/santa-fe/series?" in url for url in watched.requests)
    elsewhere = [url for url in watched.requests if urlsplit(url).hostname != "127.0.0.1"]
    assert elsewhere == [], "the page must request nothing but the API"
    assert not any(served.token in url for url in watched.requests), "token in a URL"
    assert watched.errors == []


def test_a_refused_token_shows_the_api_detail_and_the_token_form(
    served: Served, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{served.base}/#token=pt_not-a-real-token")

    expect(page.get_by_role("alert")).to_contain_text("the token is unknown or revoked")
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()

    page.get_by_label("API token").fill(served.token)
    page.get_by_role("button", name="Open dashboard").click()
    expect(page.locator("#pilots h3")).to_have_text(PILOT_NAMES)
    expect(page.get_by_role("alert")).to_be_hidden()
    assert chart_points(page, "level") > 0


def river_alarm(kind: str, start_ns: int, at_ns: int) -> AlertEvent:
    """An event of the Santa Fe alert-level alarm of sf-rlv-01, as the evaluator makes one."""
    alarm = alarm_id("santa-fe.level.alert", "sf-rlv-01", start_ns)
    return AlertEvent(
        id=f"{alarm}:{kind}",
        alarm_id=alarm,
        type="fired" if kind == "fired" else "cleared",
        rule="santa-fe.level.alert",
        kind="threshold",
        pilot="santa-fe",
        device="sf-rlv-01",
        sensor="level",
        severity="warning",
        label="alert",
        level=5.3,
        direction="above",
        start_ns=start_ns,
        end_ns=None if kind == "fired" else at_ns,
        at_ns=at_ns,
        value=5.34,
        latest=5.34 if kind == "fired" else 5.21,
        peak=5.41,
        late=False,
    )


def test_the_banner_shows_an_active_alarm_until_it_clears(
    served: Served, watched: Watched, browser: Browser
) -> None:
    start_ns = time.time_ns() - 40 * 60 * NS_PER_S
    since = datetime.fromtimestamp(start_ns / NS_PER_S, ZoneInfo("America/Argentina/Cordoba"))
    words = rf"Santa Fe: alert at sf-rlv-01 since \w+ \d+, {since:%H:%M}"
    alarms = AlarmStore(served.data_dir / "alerts.sqlite")
    try:
        alarms.record([river_alarm("fired", start_ns, start_ns)])

        # A read token sees the alarm, and no way to acknowledge it.
        page = watched.page
        page.goto(f"{served.base}/#token={served.token}")
        banner = page.get_by_label("Active alarms")
        expect(banner.locator("li")).to_have_count(1)
        expect(banner).to_contain_text(re.compile(words))
        expect(banner.locator("li .sev")).to_have_text("warning")
        expect(banner.get_by_role("button", name="Acknowledge")).to_have_count(0)
        expect(page.locator("#alarm-table tbody tr")).to_have_count(1)

        # An operator token acknowledges it; the read page sees that too.
        context = browser.new_context(locale="en-US", timezone_id="UTC")
        try:
            operator = context.new_page()
            operator.goto(f"{served.base}/#token={served.operator_token}")
            operator.get_by_label("Active alarms").get_by_role("button", name="Acknowledge").click()
            expect(operator.get_by_label("Active alarms")).to_contain_text(
                "acknowledged by dashboard-operator"
            )
        finally:
            context.close()
        expect(banner).to_contain_text("acknowledged by dashboard-operator")

        # The notification's link: the pilot, and its day centred on the alarm's start.
        banner.get_by_role("link", name="Show").click()
        expect(page.locator("#pilot-heading")).to_have_text("Santa Fe")
        expect(page.locator("#chart-note")).to_contain_text("24 hours around")
        expect(page.locator('svg[data-sensor="level"] g.moment')).to_have_count(1)

        # The alarm clears: it leaves the banner and stays in the list as history.
        alarms.record([river_alarm("cleared", start_ns, time.time_ns() - 5 * 60 * NS_PER_S)])
        expect(banner).to_be_hidden()
        row = page.locator("#alarm-table tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_have_class(re.compile(r"\bcleared\b"))
        expect(row.locator("td").nth(7)).to_have_text("dashboard-operator")
    finally:
        alarms.close()
    assert watched.errors == []
    assert not any(served.token in url for url in watched.requests), "token in a URL"

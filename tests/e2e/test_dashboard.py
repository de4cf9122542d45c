"""The dashboard at `/` in a real (headless) Chromium, over `pilots api` and a seeded store.

The store holds a day of Santa Fe readings: two river gauges (one went quiet two hours ago)
and a weather station; the other devices never reported. The registry publishes Santa Fe, so
that a visitor without a token sees it. The browser is Debian's Chromium driven by Playwright;
Playwright never downloads a browser of its own. Alarms are recorded in the API's alarm store
as the alert service would, while the page is open. The charts (uPlot) are explored with the
mouse as a visitor would: drag to zoom, Shift + drag to pan, double-click, the wheel, and the
readout under the pointer; the map's markers are clicked. The HTML report is opened from a
file in an offline browser.

`PILOTS_SCREENSHOT_DOCS=1` also writes `docs/dashboard.png` (a chart's readout and a marker's
popup on show).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FloatRect,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from alerts.store import AlarmStore
from api.auth import TokenStore
from api.dashboard import dashboard_page, map_tiles
from core.alerts import AlertEvent, alarm_id
from core.errors import ConfigError
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
EN_DASH = "\u2013"


def chromium_path() -> str:
    """Debian's Chromium, or fail the test saying how to install it (never skip)."""
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(CHROMIUM_HINT, pytrace=False)


@dataclass(frozen=True)
class Seeded:
    """What the test later expects the page to show: sf-rlv-01's river levels among them."""

    battery_v: dict[str, float]
    last_reading: datetime
    level_ts_ns: np.ndarray
    level_m: np.ndarray


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
        battery_v=battery_last,
        last_reading=datetime.fromtimestamp(last_ns / NS_PER_S, pilot.tz),
        level_ts_ns=ts_all,
        level_m=fleet["sf-rlv-01"].sensors["level"],
    )


def public_registry(registry: Registry, to: Path) -> Path:
    """The shipped registry with Santa Fe published (`public = true`), as an operator would."""
    text = registry.source.read_text(encoding="utf-8")
    assert text.count("[pilots.santa-fe]\n") == 1
    to.write_text(text.replace("[pilots.santa-fe]\n", "[pilots.santa-fe]\npublic = true\n"))
    return to


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
        "PILOTS_REGISTRY": str(public_registry(registry, tmp / "registry.toml")),
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
    return int(page.locator(f'figure[data-sensor="{sensor}"]').get_attribute("data-points") or -1)


def chart(page: Page, sensor: str) -> Locator:
    """The figure of a sensor's chart (its uPlot is the figure's `uplot`)."""
    return page.locator(f'figure[data-sensor="{sensor}"]')


def x_range(page: Page, sensor: str) -> tuple[float, float]:
    """The time range a chart shows, epoch seconds: the chart library's own x scale."""
    low, high = chart(page, sensor).evaluate("f => [f.uplot.scales.x.min, f.uplot.scales.x.max]")
    return float(low), float(high)


def full_range(page: Page, sensor: str) -> tuple[float, float]:
    """The first and last window of a chart's data, epoch seconds."""
    low, high = chart(page, sensor).evaluate("f => [f.uplot.data[0][0], f.uplot.data[0].at(-1)]")
    return float(low), float(high)


def plot_box(page: Page, sensor: str) -> FloatRect:
    """The chart's plotting area on the page (where the pointer acts)."""
    box = chart(page, sensor).locator(".u-over").bounding_box()
    assert box is not None
    return box


def point_on_page(page: Page, sensor: str, t_s: float, value: float) -> tuple[float, float]:
    """Where a (time, value) point of a chart is on the page."""
    x, y = chart(page, sensor).evaluate(
        """(f, [t, v]) => {
            const u = f.uplot, r = u.over.getBoundingClientRect();
            return [r.left + u.valToPos(t, "x"), r.top + u.valToPos(v, "y")];
        }""",
        [t_s, value],
    )
    return float(x), float(y)


def readout(page: Page, sensor: str) -> dict[str, str]:
    """The chart's readout as the visitor reads it: each shown row's label and value."""
    rows: dict[str, str] = chart(page, sensor).evaluate(
        """f => Object.fromEntries([...f.querySelectorAll(".u-legend tr.u-series")]
            .filter(r => r.style.display !== "none")
            .map(r => [r.querySelector(".u-label").textContent,
                       r.querySelector(".u-value").textContent]))"""
    )
    return rows


def level_reading(served: Served, hours_ago: float) -> tuple[int, float]:
    """One of sf-rlv-01's seeded readings, about `hours_ago`: (its time in ns, its value)."""
    i = len(served.seeded.level_ts_ns) - 1 - round(hours_ago * 3600 / INTERVAL_S)
    return int(served.seeded.level_ts_ns[i]), float(served.seeded.level_m[i])


def window_of(ts_ns: int) -> tuple[datetime, datetime]:
    """The 10-minute window of the dashboard's last-24-hours view that holds an instant, local."""
    start_s = ts_ns // NS_PER_S // INTERVAL_S * INTERVAL_S  # the pilots' offsets are whole hours
    start = datetime.fromtimestamp(start_s, ZoneInfo("America/Argentina/Cordoba"))
    return start, start + timedelta(seconds=INTERVAL_S)


def get_json(served: Served, path: str) -> Any:
    response = httpx.get(
        f"{served.base}{path}", headers={"Authorization": f"Bearer {served.token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


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
    expect(chart(page, "ph")).to_have_attribute("data-points", "0")
    expect(chart(page, "ph").locator(".empty")).to_have_text("No readings in this period")
    expect(chart(page, "level").locator('li[data-value="6"]')).to_have_count(1)

    santa_fe.click()
    expect(santa_fe).to_have_class(re.compile(r"\bselected\b"))
    expect(santa_fe.locator("button")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#pilot-heading")).to_have_text("Santa Fe")
    level = chart(page, "level")
    expect(level.locator("li[data-threshold=alert]")).to_have_text("alert 5.3 m")
    expect(page.locator("#charts")).to_have_attribute("aria-busy", "false")

    # One plotted 10-minute window per reading: 144 of sf-rlv-01, 132 of sf-rlv-02 (which went
    # quiet two hours ago), less one each if the oldest fell out of the range meanwhile.
    assert 274 <= chart_points(page, "level") <= 276
    assert chart_points(page, "temperature") >= 143
    assert chart_points(page, "rain") == 0
    assert list(readout(page, "level")) == ["Time", "sf-rlv-01", "sf-rlv-02"]
    drawn = level.evaluate(
        """f => {
            const u = f.uplot;
            return {lines: u.series.filter(s => /^sf-rlv-0\\d$/.test(s.label)).length,
                    bands: u.bands.length, yMax: u.scales.y.max, yMin: u.scales.y.min};
        }"""
    )
    assert drawn["lines"] == 2, "one line per river gauge"
    assert drawn["bands"] == 2, "each with its min-max band"
    # The scale reaches the evacuation level (5.7 m), above the river at ~3.5 m.
    assert drawn["yMin"] < 3.3 and drawn["yMax"] > 5.7, drawn
    page.get_by_label(f"Min{EN_DASH}max band").uncheck()
    expect(chart(page, "level")).to_have_attribute("data-points", re.compile(r"^27\d$"))
    assert chart(page, "level").evaluate("f => f.uplot.bands.length") == 0
    page.get_by_label(f"Min{EN_DASH}max band").check()

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
        expect(chart(page, "level")).to_have_attribute("data-moment", re.compile(r"^\d{4}-"))

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


# -- exploring the charts ------------------------------------------------------------------------


def open_santa_fe(served: Served, page: Page) -> None:
    page.goto(f"{served.base}/#token={served.token}&pilot=santa-fe")
    expect(page.locator("#pilot-heading")).to_have_text("Santa Fe")
    expect(chart(page, "level")).to_have_attribute("data-points", re.compile(r"^27\d$"))


def test_the_readout_shows_a_written_reading_in_local_time(
    served: Served, watched: Watched, tmp_path: Path
) -> None:
    page = watched.page
    open_santa_fe(served, page)

    # A marker's popup, for the screenshot below.
    page.locator('#map .device-marker[data-device="sf-rlv-01"]').click()
    expect(page.locator(".leaflet-popup .map-popup")).to_be_visible()

    ts_ns, value = level_reading(served, hours_ago=8)
    start, end = window_of(ts_ns)
    chart(page, "level").scroll_into_view_if_needed()
    page.mouse.move(*point_on_page(page, "level", start.timestamp(), value))

    # The window under the pointer, in Santa Fe's time (the browser itself runs in UTC), and
    # the one reading sf-rlv-01 sent in it, with its unit.
    expect(chart(page, "level").locator(".u-legend")).to_contain_text(
        f"{start:%H:%M}{EN_DASH}{end:%H:%M}"
    )
    shown = readout(page, "level")
    assert shown["Time"] == f"{start:%b} {start.day}, {start:%H:%M}{EN_DASH}{end:%H:%M}", shown
    assert shown["sf-rlv-01"] == f"{value:.4g} m", shown
    # The other charts point at the same moment.
    assert readout(page, "temperature")["Time"] == shown["Time"]

    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    if os.environ.get("PILOTS_SCREENSHOT_DOCS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "dashboard.png", DOCS_SCREENSHOT)
    assert watched.errors == []


def test_a_chart_zooms_pans_and_resets_with_the_mouse(served: Served, watched: Watched) -> None:
    page = watched.page
    open_santa_fe(served, page)
    chart(page, "level").scroll_into_view_if_needed()
    first, last = full_range(page, "level")
    assert x_range(page, "level") == (first, last)
    box = plot_box(page, "level")
    middle_y = box["y"] + box["height"] / 2

    # Drag across a quarter of the chart: it shows that quarter, and so do the other charts.
    page.mouse.move(box["x"] + box["width"] * 0.25, middle_y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, middle_y, steps=5)
    page.mouse.up()
    low, high = x_range(page, "level")
    span = high - low
    assert span == pytest.approx((last - first) / 4, rel=0.05)
    assert low == pytest.approx(first + (last - first) / 4, rel=0, abs=(last - first) * 0.02)
    assert x_range(page, "temperature") == (low, high)

    # Shift + drag to the right: an earlier stretch of the same length.
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + box["width"] * 0.5, middle_y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.75, middle_y, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    panned_low, panned_high = x_range(page, "level")
    assert panned_high - panned_low == pytest.approx(span)
    assert panned_low == pytest.approx(low - span / 4, rel=0, abs=span * 0.05)

    # Double-click: the whole period again.
    page.mouse.dblclick(box["x"] + box["width"] / 2, middle_y)
    assert x_range(page, "level") == (first, last)

    # A plain wheel scrolls the page; with Ctrl it zooms in around the pointer, and out again
    # to the whole period at most.
    page.mouse.move(box["x"] + box["width"] / 2, middle_y)
    page.mouse.wheel(0, -200)
    page.wait_for_timeout(100)
    assert x_range(page, "level") == (first, last)
    box = plot_box(page, "level")  # the page may have scrolled
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.wait_for_function(
        "f => f.uplot.scales.x.max - f.uplot.scales.x.min < 0.8 * "
        "(f.uplot.data[0].at(-1) - f.uplot.data[0][0])",
        arg=chart(page, "level").element_handle(),
    )
    for _ in range(4):
        page.mouse.wheel(0, 200)
    page.keyboard.up("Control")
    page.wait_for_function(
        "f => f.uplot.scales.x.min === f.uplot.data[0][0] && "
        "f.uplot.scales.x.max === f.uplot.data[0].at(-1)",
        arg=chart(page, "level").element_handle(),
    )
    assert watched.errors == []


# -- the map -------------------------------------------------------------------------------------


def test_the_map_shows_each_device_with_its_status_and_latest_values(
    served: Served, watched: Watched, registry: Registry
) -> None:
    page = watched.page
    open_santa_fe(served, page)

    markers = page.locator("#map .device-marker[data-device]")
    expect(markers).to_have_count(7)
    placed = {m.get_attribute("data-device"): m for m in markers.all()}
    for device in registry.pilots["santa-fe"].devices:
        marker = placed[device.id]
        assert marker.get_attribute("data-lat") == str(device.lat)
        assert marker.get_attribute("data-lon") == str(device.lon)
    statuses = {d: m.get_attribute("data-status") for d, m in placed.items()}
    assert (statuses["sf-rlv-01"], statuses["sf-rlv-02"], statuses["sf-rg-01"]) == (
        "online",
        "silent",
        "never",
    )
    # Where they are: the faculty (sf-rg-01) lies north-east of the port (sf-rlv-01).
    port, faculty = placed["sf-rlv-01"].bounding_box(), placed["sf-rg-01"].bounding_box()
    assert port is not None and faculty is not None
    assert faculty["x"] > port["x"] and faculty["y"] < port["y"]
    # Two devices at one site are stacked, not hidden under each other.
    weather = placed["sf-wx-01"].bounding_box()
    assert weather is not None and weather["y"] > faculty["y"] + 10
    expect(page.locator(".leaflet-control-scale-line")).to_contain_text(re.compile(r"\d+ k?m"))
    expect(page.locator(".leaflet-tile")).to_have_count(0)  # no tile layer unless configured

    # A marker's popup: the status and the newest reading of each sensor, in local time.
    devices = {d["id"]: d for d in get_json(served, "/pilots/santa-fe/devices")}
    level = devices["sf-rlv-01"]["latest"]["level"]
    last_m = float(served.seeded.level_m[-1])
    assert (level["value"], level["unit"]) == (last_m, "m")
    at = datetime.fromisoformat(level["at"])
    assert at.utcoffset() == timedelta(hours=-3)  # local time
    assert abs(at - served.seeded.last_reading) < timedelta(milliseconds=1)
    assert list(devices["sf-rlv-01"]["latest"]) == ["level", "water_temp", "battery_v"]
    assert devices["sf-rg-01"]["latest"] == {}

    placed["sf-rlv-01"].click()
    popup = page.locator('.leaflet-popup .map-popup[data-device="sf-rlv-01"]')
    expect(popup).to_contain_text("online")
    level_row = popup.locator('tr[data-sensor="level"]')
    expect(level_row.locator(".value")).to_have_text(f"{last_m:.4g} m")
    expect(level_row.locator(".at")).to_contain_text(served.seeded.last_reading.strftime("%H:%M"))
    expect(popup.locator('tr[data-sensor="battery_v"] .value')).to_have_text(
        f"{served.seeded.battery_v['sf-rlv-01']:.4g} V"
    )

    page.locator(".leaflet-popup-close-button").click()
    placed["sf-rlv-02"].click()
    expect(page.locator('.leaflet-popup .map-popup[data-device="sf-rlv-02"]')).to_contain_text(
        "silent"
    )
    page.locator(".leaflet-popup-close-button").click()
    placed["sf-rg-01"].click()
    never = page.locator('.leaflet-popup .map-popup[data-device="sf-rg-01"]')
    expect(never).to_contain_text("never reported")
    expect(never).to_contain_text("No readings yet.")
    assert watched.errors == []


def test_the_map_takes_a_tile_layer_only_from_its_setting() -> None:
    assert map_tiles(None) is None
    assert map_tiles("  ") is None
    tiles = map_tiles("https://{s}.tile.example.org/{z}/{x}/{y}.png © Example contributors")
    assert tiles is not None
    assert tiles.attribution == "© Example contributors"
    page = '<meta name="pilots-map-tiles" content=""> content="default-src; img-src data:;"'
    served = dashboard_page(page, tiles)
    assert "img-src data: https://*.tile.example.org;" in served
    assert "&quot;url&quot;: &quot;https://{s}.tile.example.org/{z}/{x}/{y}.png&quot;" in served
    assert dashboard_page(page, None) == page
    # The page itself holds what `dashboard_page` fills in, once each.
    real = (Path(__file__).resolve().parents[2] / "api" / "static" / "dashboard.html").read_text()
    assert real.count('<meta name="pilots-map-tiles" content="">') == 1
    assert real.count("img-src data:;") == 1
    assert "img-src data: https://*.tile.example.org;" in dashboard_page(real, tiles)
    for bad in (
        "ftp://x.org/{z}/{x}/{y}.png",
        "https://x.org/tiles.png",
        "https://x;y/{z}/{x}/{y}",
    ):
        with pytest.raises(ConfigError, match="PILOTS_API_MAP_TILES"):
            map_tiles(bad)


# -- without a token -----------------------------------------------------------------------------


def test_a_visitor_without_a_token_sees_the_public_pilot_and_may_give_one(
    served: Served, watched: Watched
) -> None:
    page = watched.page
    page.goto(f"{served.base}/")

    # Only Santa Fe is published: its card, charts and map, without a token and without alarms.
    expect(page.locator("#pilots h3")).to_have_text(["Santa Fe"])
    expect(page.locator("#public-note")).to_be_visible()
    expect(page.locator("#pilot-heading")).to_have_text("Santa Fe")
    expect(chart(page, "level")).to_have_attribute("data-points", re.compile(r"^27\d$"))
    expect(page.locator("#map .device-marker[data-device]")).to_have_count(7)
    expect(page.locator("#alarms")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    expect(page.get_by_label("API token")).to_be_hidden()

    # The token opens the rest.
    page.locator("#sign-in").click()
    page.get_by_label("API token").fill(served.token)
    page.get_by_role("button", name="Open dashboard").click()
    expect(page.locator("#pilots h3")).to_have_text(PILOT_NAMES)
    expect(page.locator("#public-note")).to_be_hidden()
    expect(page.locator("#alarms")).to_be_visible()
    assert watched.errors == []


# -- the report, offline -------------------------------------------------------------------------


def test_the_report_opens_offline_with_explorable_charts(
    served: Served, browser: Browser, tmp_path: Path
) -> None:
    response = httpx.get(
        f"{served.base}/pilots/santa-fe/report.html",
        headers={"Authorization": f"Bearer {served.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    path = tmp_path / "santa-fe.html"
    path.write_bytes(response.content)

    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC", offline=True
    )
    try:
        page = context.new_page()
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())

        level = page.locator("figure.chart#chart-level")
        expect(level).to_have_class(re.compile(r"\blive\b"))
        expect(level.locator(".uplot")).to_be_visible()
        expect(level.locator("svg.chart")).to_be_hidden()
        expect(page.locator("section#map")).to_be_visible()

        # The readout of an hour: sf-rlv-01's mean over it, as the report computed it.
        level.scroll_into_view_if_needed()
        x_s, mean = level.evaluate(
            """f => { const u = f.uplot, i = Math.floor(u.data[0].length / 2);
                      return [u.data[0][i], u.data[1][i]]; }"""
        )
        in_hour = (served.seeded.level_ts_ns >= x_s * NS_PER_S) & (
            served.seeded.level_ts_ns < (x_s + 3600) * NS_PER_S
        )
        assert mean == pytest.approx(float(served.seeded.level_m[in_hour].mean()))
        x, y = level.evaluate(
            """(f, [t, v]) => {
                const u = f.uplot, r = u.over.getBoundingClientRect();
                return [r.left + u.valToPos(t, "x"), r.top + u.valToPos(v, "y")];
            }""",
            [x_s, mean],
        )
        page.mouse.move(x, y)
        hour = datetime.fromtimestamp(x_s, ZoneInfo("America/Argentina/Cordoba"))
        expect(level.locator(".u-legend")).to_contain_text(f"{mean:.4g} m")
        expect(level.locator(".u-legend")).to_contain_text(f"{hour:%H:%M}{EN_DASH}")

        # Printed, the static charts show instead.
        page.emulate_media(media="print")
        expect(level.locator("svg.chart")).to_be_visible()
        expect(level.locator(".plot")).to_be_hidden()
        assert requests == [path.as_uri()], "the report requests nothing"
        assert errors == []
    finally:
        context.close()

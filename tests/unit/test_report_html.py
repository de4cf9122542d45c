"""The HTML pilot report: one offline page that shows the report's numbers, charts and maps.

Reports and chart series are built by hand, so every figure a reader would look for is known.
SVG fragments are parsed as XML: they must be well-formed on their own. The page's scripts
(the inlined uPlot and chart script that make the charts explorable) are checked here for what
they are and what data they carry; `tests/e2e/test_dashboard.py` opens a report in Chromium,
offline, and explores a chart.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api.report_html import SensorChart, render_report
from api.schemas import (
    CompletenessMapOut,
    DeviceReportOut,
    EpisodeOut,
    ExceedanceDayOut,
    ExceedanceOut,
    FlagsOut,
    GapOut,
    RainOut,
    ReportOut,
    RiverOut,
    SensorSummaryOut,
    ThresholdReportOut,
)

CORDOBA = ZoneInfo("America/Argentina/Cordoba")
START = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)  # local midnight, 1 March (UTC-3)
END = START + timedelta(days=7)
DAYS = [date(2025, 3, 1) + timedelta(days=i) for i in range(7)]
VOID = {"meta", "link", "br", "hr", "img", "input", "area", "base", "col", "embed", "source", "wbr"}


# -- building reports ----------------------------------------------------------------------------


def pm25_summary(**changes: Any) -> SensorSummaryOut:
    fields: dict[str, Any] = {
        "sensor": "pm25",
        "name": "PM2.5",
        "unit": "µg/m³",
        "devices": 2,
        "count": 2016,
        "mean": 12.3456,
        "min": 0.5,
        "max": 250.0,
        "std": 3.14159,
        "p50": 11.0,
        "p95": 30.25,
        "flagged_share": 0.0123,
    }
    return SensorSummaryOut(**(fields | changes))


def device(**changes: Any) -> DeviceReportOut:
    fields: dict[str, Any] = {
        "device": "rs-aq-01",
        "kind": "lorawan",
        "site": "Plaza 25 de Mayo",
        "reports": 1000,
        "completeness": 0.992,
        "uptime_hours": 160.5,
        "hours": 168.0,
        "gaps": 2,
        "longest_gap_s": 8100.0,
        "repeats": 2,
        "silent_now": True,
        "pdr": 0.97,
        "counter_sessions": 2,
        "latency_mean_s": 1.234,
        "latency_p90_s": 2.5,
        "battery_last_v": 3.71,
        "battery_slope_v_per_day": -0.0021,
        "battery_days_left": 195.24,
        "rssi_median": -97.5,
        "snr_median": 7.25,
        "sf_mix": {"SF9": 40, "SF7": 812},
        "lat": -27.4512,
        "lon": -58.9866,
    }
    return DeviceReportOut(**(fields | changes))


def exceedance(**changes: Any) -> ExceedanceOut:
    fields: dict[str, Any] = {
        "sensor": "pm25",
        "guideline": 15.0,
        "days_with_data": 5,
        "days_missing": 2,
        "days_exceeding": 2,
        "days": [
            ExceedanceDayOut(day=date(2025, 3, 2), mean=21.3),
            ExceedanceDayOut(day=date(2025, 3, 5), mean=18.25),
        ],
        "missing": [date(2025, 3, 6), date(2025, 3, 7)],
        "hours_over": 31,
        "hours_measured": 120,
        "indicative": True,
    }
    return ExceedanceOut(**(fields | changes))


def report(**changes: Any) -> ReportOut:
    ratios: list[list[float | None]] = [
        [1.0, 0.5, 0.0, 0.9, 1.2, None, None],
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.0, None],
    ]
    fields: dict[str, Any] = {
        "pilot": "resistencia",
        "name": "Resistencia",
        "timezone": "America/Argentina/Cordoba",
        "theme": "air quality",
        "start": START,
        "end": END,
        "generated_at": END + timedelta(hours=2, minutes=30),
        "sensors": [
            pm25_summary(),
            pm25_summary(
                sensor="no2",
                name="NO2",
                count=0,
                devices=0,
                flagged_share=0.0,
                mean=None,
                min=None,
                max=None,
                std=None,
                p50=None,
                p95=None,
            ),
        ],
        "devices": [
            device(),
            device(
                device="rs-aq-02",
                kind="wifi",
                site="Parque",
                silent_now=False,
                pdr=None,
                counter_sessions=0,
                rssi_median=None,
                snr_median=None,
                sf_mix={},
                battery_slope_v_per_day=None,
                battery_days_left=None,
                latency_p90_s=95.0,
                lat=-27.4660,  # south and east of rs-aq-01
                lon=-58.9700,
            ),
        ],
        "completeness": CompletenessMapOut(
            days=DAYS, devices=["rs-aq-01", "rs-aq-02"], ratio=ratios
        ),
        "gaps": [
            GapOut(
                device="rs-aq-01",
                start=datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
                end=datetime(2025, 3, 1, 10, 15, tzinfo=UTC),
                length_s=8100.0,
            )
        ],
        "flags": FlagsOut(
            readings=2000,
            range=30,
            stuck=10,
            spike=2,
            duplicate=0,
            late=64,
            share=0.0215,
            repeats=2,
        ),
        "thresholds": [],
        "exceedances": [exceedance()],
        "river": [],  # an air-quality pilot: no river or rain gauges
        "rain": [],
    }
    return ReportOut(**(fields | changes))


def flood_report(**changes: Any) -> ReportOut:
    """A flood pilot: two level gauges (one still without readings) and two rain gauges."""
    fields: dict[str, Any] = {
        "river": [
            RiverOut(
                device="sf-rlv-01",
                trend_cm_per_day=2.34,
                max_rise_cm_per_day=18.26,
                max_rise_day=date(2025, 3, 4),
            ),
            RiverOut(
                device="sf-rlv-02",
                trend_cm_per_day=-0.74,
                max_rise_cm_per_day=-0.3,  # it only fell
                max_rise_day=date(2025, 3, 2),
            ),
            RiverOut(
                device="sf-rlv-03",
                trend_cm_per_day=None,
                max_rise_cm_per_day=None,
                max_rise_day=None,
            ),
        ],
        "rain": [
            RainOut(
                device="sf-rg-01",
                total_mm=42.6,
                max_mm_per_hour=12.4,
                max_hour=datetime(2025, 3, 3, 17, 0, tzinfo=UTC),  # 14:00 local
            ),
            RainOut(device="sf-rg-02", total_mm=None, max_mm_per_hour=None, max_hour=None),
        ],
    }
    return report(**(fields | changes))


def hourly(hours: int) -> list[datetime]:
    return [START + timedelta(hours=h) for h in range(hours)]


def pm25_chart(**changes: Any) -> SensorChart:
    fields: dict[str, Any] = {
        "sensor": "pm25",
        "name": "PM2.5",
        "unit": "µg/m³",
        "times": hourly(5),
        "lines": {"rs-aq-01": [10.0, 12.0, 14.0, 16.0, 18.0], "rs-aq-02": [9.0] * 5},
        "levels": (),
        "guideline": 15.0,
    }
    return SensorChart(**(fields | changes))


def level_chart(**changes: Any) -> SensorChart:
    fields: dict[str, Any] = {
        "sensor": "level",
        "name": "River level",
        "unit": "m",
        "times": hourly(4),
        "lines": {"all devices": [5.0, 5.3, 5.3, 5.6]},
        "levels": [("alert", 5.3), ("evacuation", 5.7)],
        "guideline": None,
    }
    return SensorChart(**(fields | changes))


# -- reading the page ----------------------------------------------------------------------------


class Structure(HTMLParser):
    """Every tag with its attributes, and any end tag that does not close the open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.mismatched.append(f"</{tag}> with {self.open[-3:]} open")


def structure(doc: str) -> Structure:
    parser = Structure()
    parser.feed(doc)
    parser.close()
    return parser


class Tables(HTMLParser):
    """Cell texts of each table, by the table's class: header row first."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.rows: list[list[str]] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.rows = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr" and self.rows is not None:
            self.rows.append([])
        elif tag in {"td", "th"}:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self.cell is not None and self.rows:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.rows = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables(doc: str) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(doc)
    return parser.tables


def row(doc: str, table: str, first_cell: str) -> list[str]:
    matches = [r for r in tables(doc)[table] if r and r[0] == first_cell]
    assert len(matches) == 1, f"{table}: {len(matches)} rows start with {first_cell!r}"
    return matches[0]


def svgs(doc: str, css: str) -> list[ET.Element]:
    return [
        ET.fromstring(fragment)
        for fragment in re.findall(rf'<svg class="{css}".*?</svg>', doc, flags=re.DOTALL)
    ]


def texts(element: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in element.iter("text")]


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    pairs = (p.split(",") for p in (polyline.get("points") or "").split())
    return [(float(x), float(y)) for x, y in pairs]


def series(chart: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-line") or "": g for g in chart.iter("g") if g.get("class") == "series"}


def dashed(chart: ET.Element) -> list[ET.Element]:
    return [line for line in chart.iter("line") if line.get("stroke-dasharray")]


def rgb(fill: str) -> tuple[int, int, int]:
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", fill), fill
    return int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)


def heat_cells(doc: str) -> dict[str, ET.Element]:
    (heatmap,) = svgs(doc, "heatmap")
    return {"".join(r.itertext()): r for r in heatmap.iter("rect")}


def scripts(doc: str) -> list[tuple[dict[str, str | None], str]]:
    """Each script element's attributes and text."""
    return [
        (dict(re.findall(r'(\w[\w-]*)(?:="([^"]*)")?', attrs)), text)
        for attrs, text in re.findall(r"<script([^>]*)>(.*?)</script>", doc, flags=re.DOTALL)
    ]


def without_scripts(doc: str) -> str:
    return re.sub(r"<script[^>]*>.*?</script>", "", doc, flags=re.DOTALL)


def vendored(name: str) -> str:
    return resources.files("api").joinpath("static", name).read_text(encoding="utf-8")


def chart_data(doc: str) -> dict[str, Any]:
    (data,) = [text for attrs, text in scripts(doc) if attrs.get("type") == "application/json"]
    parsed: dict[str, Any] = json.loads(data)
    return parsed


def sites(doc: str) -> dict[str, ET.Element]:
    (site_map,) = svgs(doc, "site-map")
    return {g.get("data-device") or "": g for g in site_map.iter("g") if g.get("class") == "site"}


def calendar_days(doc: str) -> dict[str, set[int]]:
    """Day-of-month numbers of the first calendar, by status."""
    (calendar,) = svgs(doc, "calendar")[:1]
    days: dict[str, set[int]] = {}
    for group in calendar.iter("g"):
        kind, status = (group.get("class") or "").split()
        assert kind == "day"
        days.setdefault(status, set()).add(int(group.get("data-day", "")[-2:]))
    return days


# -- the page as a whole -------------------------------------------------------------------------


def test_the_page_parses_with_every_element_closed() -> None:
    doc = render_report(report(), [pm25_chart(), level_chart()])

    page = structure(doc)
    assert doc.startswith("<!DOCTYPE html>")
    assert page.mismatched == []
    assert page.open == []
    assert [t for t, _ in page.tags].count("html") == 1
    assert [t for t, _ in page.tags].count("body") == 1
    # two charts, the map, heat map, calendar
    assert [t for t, _ in page.tags].count("svg") == 5


def test_the_page_requests_nothing_from_outside() -> None:
    doc = render_report(report(), [pm25_chart(), level_chart()])

    # The scripts are inline (no src), and are the vendored uPlot and chart script as shipped
    # and the page's own starter; everything else is checked without them.
    found = scripts(doc)
    assert [set(attrs) for attrs, _ in found] == [{"type", "id"}, set(), set(), set()]
    assert found[1][1] == vendored("vendor/uplot/uPlot.iife.min.js")
    assert found[2][1] == vendored("charts.js")
    rest = without_scripts(doc)
    assert re.search(r"\b(?:src|srcset|action|formaction|poster)\s*=", rest, re.I) is None
    # Links only within the page (the map's markers lead to their rows).
    assert re.findall(r'\bhref="([^"#][^"]*)"', rest) == []
    assert re.search(r"url\s*\(", rest, re.I) is None
    assert "@import" not in rest
    rest = rest.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert re.search(r"https?:", rest, re.I) is None
    assert re.search(r"""["'(\s]//""", rest) is None  # protocol-relative addresses
    csp = [a for t, a in structure(doc).tags if t == "meta" and a.get("http-equiv")]
    content = csp[0]["content"]
    assert content is not None
    assert "default-src 'none'" in content
    # Only the page's own scripts may run: each by its hash, nothing inline by default.
    (script_src,) = [d.strip() for d in content.split(";") if d.strip().startswith("script-src")]
    allowed = set(script_src.split()[1:])
    assert "'unsafe-inline'" not in allowed
    assert allowed == {
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        for attrs, text in found
        if "type" not in attrs
    }


def test_a_page_without_chart_data_carries_no_script() -> None:
    empty = pm25_chart(times=[], lines={}, guideline=None)
    doc = render_report(report(), [empty])

    assert "<script" not in doc.lower()
    assert "script-src" not in doc


def test_the_charts_series_are_inlined_for_the_live_charts() -> None:
    doc = render_report(report(), [pm25_chart(), level_chart()])

    data = chart_data(doc)
    assert data["timeZone"] == "America/Argentina/Cordoba"
    pm25, level = data["charts"]
    assert pm25["sensor"] == "pm25"
    assert pm25["unit"] == "µg/m³"
    assert pm25["x"] == [(START + timedelta(hours=h)).timestamp() for h in range(5)]
    assert pm25["windowS"] == 3600
    assert [(line["label"], line["values"]) for line in pm25["lines"]] == [
        ("rs-aq-01", [10.0, 12.0, 14.0, 16.0, 18.0]),
        ("rs-aq-02", [9.0] * 5),
    ]
    assert pm25["levels"] == [
        {"label": "WHO 2021 24-h guideline 15 µg/m³", "value": 15.0, "colour": "#5e3c99"}
    ]
    assert [(lv["label"], lv["value"]) for lv in level["levels"]] == [
        ("alert 5.3 m", 5.3),
        ("evacuation 5.7 m", 5.7),
    ]
    # Each live chart finds its figure, whose SVG stays for print and for readers without
    # scripts; the uPlot stylesheet is inlined with the page's.
    assert '<figure class="chart" id="chart-pm25" data-sensor="pm25">' in doc
    assert '<figure class="chart" id="chart-level" data-sensor="level">' in doc
    assert vendored("vendor/uplot/uPlot.min.css") in doc
    assert "@media print{figure.live>.plot{display:none}}" in doc
    assert len(svgs(doc, "chart")) == 2


def test_a_missing_value_reaches_the_live_chart_as_null() -> None:
    lines: dict[str, list[float | None]] = {"broken": [1.0, 2.0, None, 4.0, float("nan")]}
    doc = render_report(report(), [pm25_chart(lines=lines, guideline=None)])

    (chart,) = chart_data(doc)["charts"]
    assert chart["lines"][0]["values"] == [1.0, 2.0, None, 4.0, None]
    assert chart["levels"] == []


# -- the map -------------------------------------------------------------------------------------


def test_the_map_places_each_device_at_its_position_with_its_status() -> None:
    doc = render_report(report(), [pm25_chart()])

    placed = sites(doc)
    assert list(placed) == ["rs-aq-01", "rs-aq-02"]
    one, two = placed["rs-aq-01"], placed["rs-aq-02"]
    assert (one.get("data-status"), two.get("data-status")) == ("silent", "online")
    assert (one.get("data-lat"), one.get("data-lon")) == ("-27.4512", "-58.9866")
    (c1,), (c2,) = one.iter("circle"), two.iter("circle")
    # rs-aq-02 lies south (lower on the map) and east (to the right) of rs-aq-01.
    assert float(c2.get("cy", "nan")) > float(c1.get("cy", "nan"))
    assert float(c2.get("cx", "nan")) > float(c1.get("cx", "nan"))
    assert c1.get("fill") != c2.get("fill")
    assert texts(one) == ["rs-aq-01"]
    assert "rs-aq-01: silent now; Plaza 25 de Mayo" in (one.findtext("title") or "")
    (site_map,) = svgs(doc, "site-map")
    (scale,) = [t for t in texts(site_map) if re.fullmatch(r"\d+ k?m", t)]
    assert scale in {"500 m", "1 km", "2 km"}  # about 1.9 km between the two
    # A marker leads to its device's row: status and the last window with a value.
    assert '<a href="#map-rs-aq-01">' in doc
    assert '<tr id="map-rs-aq-01" data-device="rs-aq-01">' in doc
    assert row(doc, "sites", "rs-aq-01") == [
        "rs-aq-01",
        "Plaza 25 de Mayo",
        "-27.4512, -58.9866",
        "silent now",
        "PM2.5 18 µg/m³ (2025-03-01 04:00)",
    ]
    assert row(doc, "sites", "rs-aq-02")[3:] == [
        "reporting now",
        "PM2.5 9 µg/m³ (2025-03-01 04:00)",
    ]


def test_devices_at_one_site_are_stacked_and_others_listed_without_a_marker() -> None:
    devices = [
        device(device="a", silent_now=None),
        device(device="b", reports=0, silent_now=None),
        device(device="c", lat=None, lon=None),
    ]
    doc = render_report(report(devices=devices), [])

    placed = sites(doc)
    assert list(placed) == ["a", "b"]
    assert placed["a"].get("data-status") == "reported"
    assert placed["b"].get("data-status") == "never"
    (ca,), (cb,) = placed["a"].iter("circle"), placed["b"].iter("circle")
    assert ca.get("cx") == cb.get("cx")
    assert float(cb.get("cy", "nan")) > float(ca.get("cy", "nan"))
    assert "Without a position in the registry: c." in doc
    assert row(doc, "sites", "c")[2:4] == ["—", "silent now"]


def test_a_report_without_positions_says_so() -> None:
    doc = render_report(report(devices=[device(lat=None, lon=None)]), [])

    assert svgs(doc, "site-map") == []
    assert "No device of this report has a position." in doc
    assert row(doc, "sites", "rs-aq-01")[0] == "rs-aq-01"


def test_the_header_gives_the_pilot_and_the_period_in_local_time() -> None:
    doc = render_report(report(), [])

    assert "<h1>Resistencia</h1>" in doc
    assert "air quality" in doc
    # 03:00 UTC is local midnight in Resistencia (UTC-3).
    assert "2025-03-01 00:00 \u2013 2025-03-08 00:00 (UTC-03:00), 7 d" in doc
    assert "America/Argentina/Cordoba (UTC-03:00)" in doc
    assert "2025-03-08 02:30 (UTC-03:00)" in doc  # generated at


def test_sections_come_in_the_order_researchers_read_them() -> None:
    doc = render_report(report(), [pm25_chart()])

    order = ["summary", "charts", "map", "completeness", "exceedance", "devices", "gaps", "flags"]
    order.append("thresholds")
    positions = [doc.index(f'<section id="{key}">') for key in order]
    assert positions == sorted(positions)


def test_river_and_rain_follow_the_thresholds_in_a_flood_report() -> None:
    doc = render_report(flood_report(), [level_chart()])

    sections = re.findall(r'<section id="([^"]+)">', doc)
    at = sections.index("thresholds")
    assert sections[at : at + 3] == ["thresholds", "river", "rain"]


# -- tables --------------------------------------------------------------------------------------


def test_every_sensor_summary_number_appears_formatted() -> None:
    doc = render_report(report(), [])

    assert tables(doc)["summary"][0] == [
        "Sensor",
        "Unit",
        "Devices",
        "Readings",
        "Mean",
        "Min",
        "Max",
        "Std",
        "p50",
        "p95",
        "Flagged",
    ]
    assert row(doc, "summary", "PM2.5") == [
        "PM2.5",
        "µg/m³",
        "2",
        "2016",
        "12.346",
        "0.5",
        "250",
        "3.142",
        "11",
        "30.25",
        "1.2 %",
    ]
    # A sensor without readings: statistics are null, shown as a dash, never as 0.
    assert row(doc, "summary", "NO2") == ["NO2", "µg/m³", "0", "0", *["—"] * 6, "0.0 %"]


def test_the_device_table_shows_each_figure_of_the_device_report() -> None:
    doc = render_report(report(), [])

    assert row(doc, "devices", "rs-aq-01") == [
        "rs-aq-01",
        "lorawan",
        "Plaza 25 de Mayo",
        "1000",
        "99.2 %",
        "160.5 / 168",
        "2",
        "2 h 15 min",
        "yes",
        "97.0 %",
        "2",
        "2",
        "1.234 s",
        "2.5 s",
        "3.71",
        "-0.0021",
        "195.2",
        "-97.5",
        "7.25",
        "SF7 812 · SF9 40",
    ]
    wifi = row(doc, "devices", "rs-aq-02")
    assert wifi[8:11] == ["no", "—", "0"]  # not silent; no frame counters, so no PDR
    assert wifi[13] == "1 min 35 s"  # latency p90
    assert wifi[15:] == ["—", "—", "—", "—", "—"]


def test_gaps_are_listed_in_local_time_with_readable_lengths() -> None:
    doc = render_report(report(), [])

    assert row(doc, "gaps", "rs-aq-01") == [
        "rs-aq-01",
        "2025-03-01 05:00",
        "2025-03-01 07:15",
        "2 h 15 min",
    ]


def test_flags_show_counts_and_shares_of_readings() -> None:
    doc = render_report(report(), [])

    assert tables(doc)["flags"] == [
        ["Flag", "Readings", "Share"],
        ["range", "30", "1.5 %"],
        ["stuck", "10", "0.5 %"],
        ["spike", "2", "0.1 %"],
        ["duplicate", "0", "0.0 %"],
        ["any flag", "—", "2.1 %"],  # a reading can carry several flags: only the share is known
        ["late", "64", "3.2 %"],  # its own row: late values are sound and not flagged
    ]
    assert "Of 2000 readings" in doc
    assert 'not part of "any flag"' in html.unescape(doc)


def test_the_river_table_gives_each_gauge_trend_with_its_sign_and_largest_rise() -> None:
    doc = render_report(flood_report(), [])

    assert tables(doc)["river"][0] == [
        "Device",
        "Trend (cm/day)",
        "Largest rise (cm/day)",
        "Day of largest rise",
    ]
    assert row(doc, "river", "sf-rlv-01") == ["sf-rlv-01", "+2.3", "+18.3", "2025-03-04"]
    assert row(doc, "river", "sf-rlv-02") == ["sf-rlv-02", "-0.7", "-0.3", "2025-03-02"]
    assert row(doc, "river", "sf-rlv-03") == ["sf-rlv-03", "—", "—", "—"]


def test_the_rain_table_gives_totals_and_the_wettest_hour_in_local_time() -> None:
    doc = render_report(flood_report(), [])

    assert tables(doc)["rain"][0] == [
        "Device",
        "Total (mm)",
        "Wettest hour (mm/h)",
        "Wettest hour from",
    ]
    # 17:00 UTC is 14:00 in Resistencia (UTC-3).
    assert row(doc, "rain", "sf-rg-01") == ["sf-rg-01", "42.6", "12.4", "2025-03-03 14:00"]
    assert row(doc, "rain", "sf-rg-02") == ["sf-rg-02", "—", "—", "—"]


def test_river_and_rain_sections_appear_only_with_gauges() -> None:
    air = render_report(report(), [])
    river_only = render_report(flood_report(rain=[]), [])

    for doc in (air, river_only):
        assert '<section id="rain">' not in doc
        assert "rain" not in tables(doc)
    assert '<section id="river">' not in air
    assert "river" not in tables(air)
    assert "<h2>River</h2>" in river_only


def test_thresholds_show_hours_above_and_each_episode() -> None:
    episode = EpisodeOut(
        device="sf-rlv-01",
        start=datetime(2025, 3, 3, 12, 0, tzinfo=UTC),
        end=datetime(2025, 3, 4, 2, 30, tzinfo=UTC),
        duration_s=14.5 * 3600,
        peak=5.734,
        open=True,
    )
    thresholds = [
        ThresholdReportOut(
            sensor="level", name="alert", level=5.3, hours_above=14.5, episodes=[episode]
        ),
        ThresholdReportOut(
            sensor="level", name="evacuation", level=5.7, hours_above=0.25, episodes=[]
        ),
    ]
    doc = render_report(report(thresholds=thresholds), [level_chart()])

    levels = {r[1]: r for r in tables(doc)["thresholds"][1:]}
    assert levels["alert"] == ["River level", "alert", "5.3 m", "14.5", "1"]
    assert levels["evacuation"] == ["River level", "evacuation", "5.7 m", "0.25", "0"]
    assert row(doc, "episodes", "River level") == [
        "River level",
        "alert",
        "sf-rlv-01",
        "2025-03-03 09:00",
        "2025-03-03 23:30",
        "14 h 30 min",
        "5.734",
        "yes",
    ]


# -- charts --------------------------------------------------------------------------------------


def test_each_chart_draws_one_polyline_per_line_and_a_dashed_line_per_level() -> None:
    doc = render_report(report(), [pm25_chart(), level_chart()])

    pm25, level = svgs(doc, "chart")
    assert {name: len(list(g.iter("polyline"))) for name, g in series(pm25).items()} == {
        "rs-aq-01": 1,
        "rs-aq-02": 1,
    }
    (rising,) = series(pm25)["rs-aq-01"].iter("polyline")
    assert len(points(rising)) == 5
    assert len(dashed(pm25)) == 1
    assert any(t.startswith("WHO 2021 24-h guideline") for t in texts(pm25))
    assert len(dashed(level)) == 2
    assert {"alert 5.3 m", "evacuation 5.7 m"} <= set(texts(level))
    # The legend names each line under its chart.
    assert '<span class="sw" style="border-top-color:#0072B2"></span>rs-aq-01</span>' in doc


def test_a_value_at_a_level_sits_on_that_level_line_and_higher_is_drawn_higher() -> None:
    doc = render_report(report(), [level_chart()])

    (chart,) = svgs(doc, "chart")
    alert, evacuation = (float(line.get("y1", "nan")) for line in dashed(chart))
    (line,) = series(chart)["all devices"].iter("polyline")
    ys = [y for _, y in points(line)]
    xs = [x for x, _ in points(line)]
    assert ys[1] == pytest.approx(alert, abs=0.11)  # 5.3 m
    assert evacuation < ys[3] < alert < ys[0]  # 5.7 above 5.6 above 5.3 above 5.0
    assert xs == sorted(xs)
    assert len(set(xs)) == 4


def test_the_guideline_line_is_at_the_guideline_value() -> None:
    doc = render_report(report(), [pm25_chart()])

    (chart,) = svgs(doc, "chart")
    (guideline,) = dashed(chart)
    (rising,) = series(chart)["rs-aq-01"].iter("polyline")
    y14, y16 = points(rising)[2][1], points(rising)[3][1]
    assert y16 < float(guideline.get("y1", "nan")) < y14  # 15 lies between 14 and 16
    assert float(guideline.get("y1", "nan")) == pytest.approx((y14 + y16) / 2, abs=0.11)


def test_axes_show_the_unit_and_local_dates() -> None:
    week = [START + timedelta(hours=6 * i) for i in range(28)]
    chart = pm25_chart(times=week, lines={"all devices": [10.0] * 28})
    doc = render_report(report(), [chart])

    (svg,) = svgs(doc, "chart")
    labels = texts(svg)
    assert "µg/m³" in labels
    assert [f"{d} Mar" for d in range(1, 9)] == [t for t in labels if t.endswith(" Mar")]
    assert "local time (UTC-03:00)" in labels
    numeric = [t for t in labels if re.fullmatch(r"-?\d+(\.\d+)?", t)]
    assert 3 <= len(numeric) <= 8


def test_a_missing_value_in_the_middle_breaks_the_line_in_two() -> None:
    lines: dict[str, list[float | None]] = {
        "broken": [1.0, 2.0, None, 4.0, 5.0],
        "edges": [None, 2.0, 3.0, 4.0, None],
        "lone": [1.0, None, 3.0, None, None],
    }
    doc = render_report(report(), [pm25_chart(lines=lines, guideline=None)])

    (chart,) = svgs(doc, "chart")
    by_name = series(chart)
    first, second = (points(p) for p in by_name["broken"].iter("polyline"))
    assert len(first) == 2
    assert len(second) == 2
    assert first[-1][0] < second[0][0]
    assert len(list(by_name["edges"].iter("polyline"))) == 1
    # Readings alone between gaps still show, as dots.
    assert list(by_name["lone"].iter("polyline")) == []
    assert len(list(by_name["lone"].iter("circle"))) == 2


def test_a_chart_without_values_says_so() -> None:
    empty = pm25_chart(times=[], lines={}, guideline=None)
    doc = render_report(report(), [empty])

    (chart,) = svgs(doc, "chart")
    assert texts(chart) == ["No data in this period."]


def test_a_line_that_does_not_match_its_times_is_refused() -> None:
    with pytest.raises(ValueError, match="rs-aq-01"):
        pm25_chart(lines={"rs-aq-01": [1.0, 2.0]})


# -- completeness heat map -----------------------------------------------------------------------


def test_the_heat_map_has_a_cell_per_device_and_day_coloured_by_completeness() -> None:
    cmap = CompletenessMapOut(
        days=DAYS[:3], devices=["a", "b"], ratio=[[0.0, 0.5, 1.0], [1.2, None, 1.0]]
    )
    doc = render_report(report(completeness=cmap), [])

    cells = heat_cells(doc)
    assert list(cells) == [
        "a 2025-03-01: 0 %",
        "a 2025-03-02: 50 %",
        "a 2025-03-03: 100 %",
        "b 2025-03-01: 120 %",
        "b 2025-03-02: no data",
        "b 2025-03-03: 100 %",
    ]
    fill = {tip: rgb(rect.get("fill", "")) for tip, rect in cells.items()}
    red, green, blue = fill["a 2025-03-01: 0 %"]
    assert red > 2 * green and red > 2 * blue
    red, green, blue = fill["a 2025-03-02: 50 %"]  # half way: yellow
    assert abs(red - green) < 16 and blue < red / 2
    red, green, blue = fill["a 2025-03-03: 100 %"]
    assert green > 2 * red and green > 2 * blue
    assert fill["b 2025-03-01: 120 %"] == fill["a 2025-03-03: 100 %"]  # above 1 stays green
    red, green, blue = fill["b 2025-03-02: no data"]
    assert red == green == blue
    assert "nodata" in (cells["b 2025-03-02: no data"].get("class") or "")
    assert "nodata" not in (cells["a 2025-03-01: 0 %"].get("class") or "")  # 0 is data


# -- exceedance calendar -------------------------------------------------------------------------


def calendar_tips(doc: str) -> dict[str, str]:
    """Tooltip of each day of the first calendar, by ISO date."""
    (calendar,) = svgs(doc, "calendar")[:1]
    return {
        g.get("data-day", ""): g.findtext("title", "")
        for g in calendar.iter("g")
        if g.get("data-day")
    }


def test_the_calendar_marks_exceeding_within_and_missing_days() -> None:
    doc = render_report(report(), [])

    assert calendar_days(doc) == {"exceeding": {2, 5}, "within": {1, 3, 4}, "missing": {6, 7}}
    assert "2 of 5 days with data exceeded the WHO guideline (indicative, low-cost sensors)" in doc
    tips = calendar_tips(doc)
    assert tips["2025-03-02"] == "2025-03-02: mean 21.3 µg/m³, above 15"
    assert tips["2025-03-06"] == "2025-03-06: no data"
    assert tips["2025-03-04"] == "2025-03-04: within the guideline"


def test_the_calendar_takes_the_missing_days_from_the_report() -> None:
    # Every device reported every day, yet the sensor itself has no reading on 3 March.
    full = CompletenessMapOut(days=DAYS, devices=["a"], ratio=[[1.0] * 7])
    gap = exceedance(days_with_data=6, days_missing=1, missing=[date(2025, 3, 3)])
    doc = render_report(report(completeness=full, exceedances=[gap]), [])

    assert calendar_days(doc) == {"exceeding": {2, 5}, "within": {1, 4, 6, 7}, "missing": {3}}
    tips = calendar_tips(doc)
    assert tips["2025-03-03"] == "2025-03-03: no data"
    assert tips["2025-03-04"] == "2025-03-04: within the guideline"
    (calendar,) = svgs(doc, "calendar")
    fills = {
        g.get("data-day"): next(g.iter("rect")).get("fill")
        for g in calendar.iter("g")
        if g.get("data-day")
    }
    assert fills["2025-03-03"] != fills["2025-03-04"]  # no data does not look within


def test_the_exceedance_gives_hours_over_next_to_days() -> None:
    doc = render_report(report(), [])

    assert (
        "2 of 5 days with data exceeded the WHO guideline (indicative, low-cost sensors); "
        "2 days without data; hours over: 31 of 120 measured hours." in doc
    )


def test_with_no_missing_days_every_other_day_is_within() -> None:
    no_gaps = exceedance(days_with_data=7, days_missing=0, missing=[])
    doc = render_report(report(exceedances=[no_gaps]), [])

    assert calendar_days(doc) == {"exceeding": {2, 5}, "within": {1, 3, 4, 6, 7}}
    assert "2 of 7 days with data exceeded the WHO guideline" in doc


# -- escaping and empty reports ------------------------------------------------------------------


def test_text_from_the_report_cannot_inject_markup() -> None:
    evil = "<script>alert('x')</script>"
    attr = '"><script>alert(1)</script><b onmouseover="alert(2)'
    cmap = CompletenessMapOut(days=DAYS[:1], devices=[attr], ratio=[[1.0]])
    chart = level_chart(name=evil, unit=evil, lines={attr: [5.0] * 4}, levels=[(evil, 5.5)])
    doc = render_report(
        report(
            name=evil,
            theme=evil,
            sensors=[pm25_summary(name=evil, unit=evil)],
            devices=[device(device=attr, site=evil, sf_mix={evil: 1})],
            completeness=cmap,
            gaps=[GapOut(device=attr, start=START, end=END, length_s=60.0)],
            river=[
                RiverOut(
                    device=attr, trend_cm_per_day=1.0, max_rise_cm_per_day=1.0, max_rise_day=None
                )
            ],
            rain=[RainOut(device=evil, total_mm=1.0, max_mm_per_hour=1.0, max_hour=None)],
        ),
        [chart],
    )

    page = structure(doc)
    assert page.mismatched == []
    # Only the page's own scripts: the chart data, uPlot, the chart script, the starter.
    assert [tag for tag, _ in page.tags].count("script") == 4
    assert "b" not in {tag for tag, _ in page.tags}
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    assert "<script" not in without_scripts(doc).lower()
    assert "&lt;script&gt;" in doc
    # In the chart data, the hostile text is data: its `<` cannot end the element.
    assert chart_data(doc)["charts"][0]["unit"] == evil
    assert attr in sites(doc)
    assert svgs(doc, "chart")  # still well-formed XML with the hostile attribute inside
    assert attr in heat_cells(doc)[f"{attr} 2025-03-01: 100 %"].findtext("title", "")
    assert row(doc, "river", attr)[0] == attr
    assert row(doc, "rain", evil)[0] == evil


def test_an_empty_report_still_renders() -> None:
    empty = report(
        start=START,
        end=START,
        sensors=[],
        devices=[],
        completeness=CompletenessMapOut(days=[], devices=[], ratio=[]),
        gaps=[],
        flags=FlagsOut(
            readings=0, range=0, stuck=0, spike=0, duplicate=0, late=0, share=0.0, repeats=0
        ),
        thresholds=[],
        exceedances=[],
    )
    doc = render_report(empty, [])

    page = structure(doc)
    assert page.mismatched == []
    assert page.open == []
    assert "<h1>Resistencia</h1>" in doc
    assert "No sensor readings in this period." in doc
    assert "No devices in this report." in doc
    assert "No devices or days to map." in doc
    assert "No gaps in this period." in doc
    assert "<svg" not in doc
    flags = {r[0]: r[1:] for r in tables(doc)["flags"][1:]}
    assert flags["range"] == ["0", "—"]
    assert flags["late"] == ["0", "—"]


def test_an_exceedance_without_days_still_renders() -> None:
    no_days = exceedance(
        days_with_data=0,
        days_missing=0,
        days_exceeding=0,
        days=[],
        missing=[],
        hours_over=0,
        hours_measured=0,
    )
    doc = render_report(report(start=START, end=START, exceedances=[no_days]), [])

    assert structure(doc).mismatched == []
    assert "0 of 0 days with data exceeded the WHO guideline" in doc
    assert "hours over: 0 of 0 measured hours" in doc
    assert "No days in this period." in doc

"""The sections of the report page, one function each, all of one shape: `ReportPage -> str`.

A section turns its part of the report into markup (a heading, a table or a figure, a note
that says how to read it), or into nothing when it does not apply to the pilot (river and
rain). `api.report_html.page` lists them in the order the page shows them. Every section
function lives here, so that none can be written and left off the page
(`tests/unit/test_seams.py`); one that is a room of its own is built in its module and only
called from here (the map in `site_map`, the device table in `device_table`). A section must
not compute statistics: every number comes from the report or the chart series as given and is
only formatted (the flag table's per-flag share is the one division).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, tzinfo

from api.report_html import markup
from api.report_html.charts import SensorChart, chart_figure
from api.report_html.day_calendar import DAY_LEGEND, calendar_svg
from api.report_html.device_table import devices_section
from api.report_html.format import (
    DASH,
    EN_DASH,
    GUIDELINE_LABEL,
    day_label,
    duration,
    in_zone,
    num,
    offset_label,
    pct,
    signed,
    stamp,
    when,
)
from api.report_html.heatmap import heat_fill, heatmap_svg
from api.report_html.markup import Cell, esc
from api.report_html.site_map import map_section
from api.report_html.style import DAY_FILLS, NO_DATA_FILL
from api.schemas import AlarmOut, ExceedanceOut, ReportOut, ThresholdReportOut


@dataclass(frozen=True)
class ReportPage:
    """What every section is given: the report, its charts, and what the page derives once.

    `names` maps a sensor id to its (name, unit); `period_days` are the local days the
    period touches.
    """

    report: ReportOut
    charts: Sequence[SensorChart]
    tz: tzinfo
    names: Mapping[str, tuple[str, str]]
    period_days: Sequence[date]


Section = Callable[[ReportPage], str]


def header(page: ReportPage) -> str:
    """The pilot, its theme, the period in local time, the time zone and when generated."""
    report, tz = page.report, page.tz
    start, end = in_zone(report.start, tz), in_zone(report.end, tz)
    if offset_label(start) == offset_label(end):
        period = f"{start:%Y-%m-%d %H:%M} {EN_DASH} {end:%Y-%m-%d %H:%M} ({offset_label(start)})"
    else:
        period = f"{when(start, tz)} {EN_DASH} {when(end, tz)}"
    length = (report.end - report.start).total_seconds()
    rows = [
        ("Period", f"{period}, {duration(length)}"),
        ("Time zone", f"{report.timezone} ({offset_label(start)})"),
        ("Generated", when(report.generated_at, tz)),
    ]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return (
        f"<header><h1>{esc(report.name)}</h1>"
        f'<p class="sub">Pilot report · {esc(report.theme)} · {esc(report.pilot)}</p>'
        f'<dl class="meta">{meta}</dl></header>\n'
    )


def summary(page: ReportPage) -> str:
    """Each sensor's statistics over the whole period, devices pooled."""
    sensors = page.report.sensors
    if not sensors:
        return markup.section(
            "summary", "Sensors", markup.note("No sensor readings in this period.")
        )
    columns = ["Sensor", "Unit", "Devices", "Readings", "Mean", "Min", "Max", "Std"]
    columns += ["p50", "p95", "Flagged"]
    rows = [
        [
            s.name,
            s.unit,
            str(s.devices),
            str(s.count),
            num(s.mean),
            num(s.min),
            num(s.max),
            num(s.std),
            num(s.p50),
            num(s.p95),
            pct(s.flagged_share),
        ]
        for s in sensors
    ]
    note = markup.note("All devices pooled over the whole period.")
    table = markup.table("summary", columns, "llrrrrrrrrr", rows)
    return markup.section("summary", "Sensors", note + table)


def charts(page: ReportPage) -> str:
    """A line chart per sensor over the period, with its levels and guideline."""
    if not page.charts:
        return markup.section("charts", "Time series", markup.note("No series to plot."))
    start, end = page.report.start, page.report.end
    figures = "".join(chart_figure(c, start, end, page.tz) for c in page.charts)
    hint = (
        '<p class="note live-only">Drag across a chart (or Ctrl + mouse wheel) to zoom, Shift + '
        "drag to pan, double-click for the whole period; the values under the pointer show "
        "below the chart. Printed, the charts are drawn whole.</p>"
    )
    return markup.section("charts", "Time series", hint + figures)


def site_map(page: ReportPage) -> str:
    """Each device at its site, coloured by its status, with its latest values."""
    return map_section(page.report.devices, page.charts, page.tz)


def completeness(page: ReportPage) -> str:
    """The heat map of readings received / expected, per device and local day."""
    cmap = page.report.completeness
    if not cmap.days or not cmap.devices:
        return markup.section(
            "completeness", "Completeness", markup.note("No devices or days to map.")
        )
    key = markup.legend(
        [("box", heat_fill(r), f"{round(r * 100)} %") for r in (0.0, 0.25, 0.5, 0.75)]
        + [("box", heat_fill(1.0), "≥ 100 %"), ("box", NO_DATA_FILL, "no data")]
    )
    note = markup.note(
        f"Readings received / expected, per device and local day, "
        f"{day_label(cmap.days[0])} to {day_label(cmap.days[-1])} {cmap.days[-1].year}."
    )
    figure = f'<figure class="keep">{heatmap_svg(cmap)}{key}</figure>'
    return markup.section("completeness", "Completeness", note + figure)


def exceedance(page: ReportPage) -> str:
    """Per sensor with a WHO guideline: days over it, as a count and as a calendar."""
    heading = "WHO guideline exceedance"
    if not page.report.exceedances:
        return markup.section("exceedance", heading, markup.note("No sensor with a WHO guideline."))
    blocks = "".join(
        _exceedance_block(x, page.period_days, page.names) for x in page.report.exceedances
    )
    return markup.section("exceedance", heading, blocks)


def _exceedance_block(
    exc: ExceedanceOut,
    period_days: Sequence[date],
    names: Mapping[str, tuple[str, str]],
) -> str:
    name, unit = names.get(exc.sensor, (exc.sensor, ""))
    guideline = f"{num(exc.guideline)} {unit}".strip()
    count = (
        f"{exc.days_exceeding} of {exc.days_with_data} days with data exceeded the WHO guideline"
        + (" (indicative, low-cost sensors)" if exc.indicative else "")
        + f"; {exc.days_missing} days without data; hours over: {exc.hours_over} of "
        f"{exc.hours_measured} measured hours."
    )
    days = sorted(set(period_days) | {d.day for d in exc.days} | set(exc.missing))
    over = ", ".join(f"{day_label(d.day)} {num(d.mean)}" for d in exc.days)
    calendar = calendar_svg(exc, days, unit)
    key = markup.legend(("box", fill, DAY_LEGEND[k]) for k, fill in DAY_FILLS.items())
    hours = markup.note(
        "Hours over: local hours whose mean (devices pooled) is above the guideline value."
    )
    return (
        f'<div class="exceedance keep" data-sensor="{esc(exc.sensor)}">'
        f"<h3>{esc(name)}: {esc(GUIDELINE_LABEL)} {esc(guideline)} (24-h mean)</h3>"
        f'<p class="count">{esc(count)}</p>{calendar}{key}'
        + (markup.note(f"Daily means above it ({unit}): {over}.") if over else "")
        + hours
        + "</div>"
    )


def devices(page: ReportPage) -> str:
    """Each device's delivery, uptime, gaps, latency, battery and radio."""
    return devices_section(page.report.devices)


def gaps(page: ReportPage) -> str:
    """The longest gaps in reporting, in local time."""
    listed, tz = page.report.gaps, page.tz
    if not listed:
        return markup.section("gaps", "Longest gaps", markup.note("No gaps in this period."))
    rows = [[g.device, stamp(g.start, tz), stamp(g.end, tz), duration(g.length_s)] for g in listed]
    table = markup.table("gaps", ["Device", "From", "To", "Length"], "lllr", rows)
    return markup.section("gaps", "Longest gaps", table)


def flags(page: ReportPage) -> str:
    """Readings flagged per data-quality flag, late readings, and repeats dropped."""
    counted = page.report.flags

    def share(count: int) -> str:
        return pct(count / counted.readings) if counted.readings else DASH

    rows: list[list[Cell]] = [
        [name, str(count), share(count)]
        for name, count in (
            ("range", counted.range),
            ("stuck", counted.stuck),
            ("spike", counted.spike),
            ("duplicate", counted.duplicate),
        )
    ]
    rows.append([("any flag", "warn") if counted.share else "any flag", DASH, pct(counted.share)])
    # After "any flag" because it is not one: a late reading's value is sound and kept.
    rows.append(["late", str(counted.late), share(counted.late)])
    table = markup.table("flags", ["Flag", "Readings", "Share"], "lrr", rows)
    note = markup.note(
        f"Of {counted.readings} readings; a reading can carry more than one flag. Late: received "
        "more than one reporting interval after the device's time (a gateway's backlog); "
        'counted, not excluded, and not part of "any flag". '
        f"Besides the readings, ingest recognised and dropped {counted.repeats} repeated "
        "transmissions (retransmissions)."
    )
    return markup.section("flags", "Data quality flags", table + note)


def thresholds(page: ReportPage) -> str:
    """Hours above each named level, and every episode above it."""
    levels, tz, names = page.report.thresholds, page.tz, page.names
    if not levels:
        return markup.section(
            "thresholds", "Thresholds", markup.note("No thresholds for this pilot.")
        )

    def sensor(t: ThresholdReportOut) -> tuple[str, str]:
        return names.get(t.sensor, (t.sensor, ""))

    summary_table = markup.table(
        "thresholds",
        ["Sensor", "Level", "Value", "Hours above", "Episodes"],
        "llrrr",
        [
            [
                sensor(t)[0],
                t.name,
                f"{num(t.level)} {sensor(t)[1]}".strip(),
                num(t.hours_above),
                str(len(t.episodes)),
            ]
            for t in levels
        ],
    )
    rows: list[list[Cell]] = [
        [
            sensor(t)[0],
            t.name,
            ep.device,
            stamp(ep.start, tz),
            stamp(ep.end, tz),
            duration(ep.duration_s),
            num(ep.peak),
            ("yes", "warn") if ep.open else "no",
        ]
        for t in levels
        for ep in t.episodes
    ]
    columns = ["Sensor", "Level", "Device", "From", "To", "Duration", "Peak", "Still above"]
    episodes = (
        "<h3>Episodes</h3>" + markup.table("episodes", columns, "lllllrrl", rows)
        if rows
        else markup.note("No episodes above any level.")
    )
    return markup.section("thresholds", "Thresholds", summary_table + episodes)


#: Alarms a report lists at most (the alarm store's largest answer).
ALARMS_LISTED = 1000


def alarms(page: ReportPage) -> str:
    """The live alarms of the period: when, where, which rule, how far, who acknowledged."""
    listed, tz = page.report.alarms, page.tz
    if listed is None:
        return markup.section(
            "alarms",
            "Alarms",
            markup.note("No alarm record was available for this report: alarms are not listed."),
        )
    if not listed:
        return markup.section("alarms", "Alarms", markup.note("No alarms in this period."))
    rows: list[list[Cell]] = [
        [
            stamp(a.start, tz),
            stamp(a.end, tz) if a.end is not None else ("still active", "warn"),
            a.device,
            page.names.get(a.sensor, (a.sensor, ""))[0] if a.sensor else DASH,
            a.label,
            (a.severity, "warn") if a.severity == "critical" else a.severity,
            _alarm_peak(a, page.names),
            "yes" if a.late else "no",
            a.acked_by or DASH,
        ]
        for a in listed
    ]
    columns = ["From", "To", "Device", "Sensor", "Rule", "Severity", "Peak", "Late"]
    columns.append("Acknowledged by")
    table = markup.table("alarms", columns, "llllllrll", rows)
    note = markup.note(
        "Alarms of the live alert rules that overlap the period, oldest first"
        + (f" (the {ALARMS_LISTED} newest)" if len(listed) >= ALARMS_LISTED else "")
        + ". Peak: the furthest past the level while it lasted (a silence: its length). "
        "Late: found in a device's backlog after it was over, not raised live."
    )
    return markup.section("alarms", "Alarms", table + note)


def _alarm_peak(a: AlarmOut, names: Mapping[str, tuple[str, str]]) -> str:
    if a.kind == "silent":
        return duration(a.peak)
    unit = names.get(a.sensor, ("", ""))[1] if a.sensor else ""
    if a.kind == "rate_of_rise" and unit:
        unit += "/h"
    return f"{num(a.peak)} {unit}".strip() if a.peak is not None else DASH


def river(page: ReportPage) -> str:
    """Each level gauge's trend and largest daily rise; nothing without gauges."""
    gauges = page.report.river
    if not gauges:
        return ""
    rows: list[list[Cell]] = [
        [
            r.device,
            signed(r.trend_cm_per_day, 1),
            signed(r.max_rise_cm_per_day, 1),
            r.max_rise_day.isoformat() if r.max_rise_day is not None else DASH,
        ]
        for r in gauges
    ]
    columns = ["Device", "Trend (cm/day)", "Largest rise (cm/day)", "Day of largest rise"]
    table = markup.table("river", columns, "lrrl", rows)
    note = markup.note(
        "Trend: least-squares slope of all readings. Largest rise: between the means of two "
        "consecutive local days, dated by the later day; negative when the level only fell."
    )
    return markup.section("river", "River", table + note)


def rain(page: ReportPage) -> str:
    """Each rain gauge's total and wettest local hour; nothing without gauges."""
    gauges, tz = page.report.rain, page.tz
    if not gauges:
        return ""
    rows: list[list[Cell]] = [
        [
            r.device,
            num(r.total_mm, 1),
            num(r.max_mm_per_hour, 1),
            stamp(r.max_hour, tz) if r.max_hour is not None else DASH,
        ]
        for r in gauges
    ]
    columns = ["Device", "Total (mm)", "Wettest hour (mm/h)", "Wettest hour from"]
    table = markup.table("rain", columns, "lrrl", rows)
    note = markup.note("Wettest hour: the local clock hour with the most rain.")
    return markup.section("rain", "Rain", table + note)

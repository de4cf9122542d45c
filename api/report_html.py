"""The pilot report as one self-contained HTML page, to print or to send to ITU members.

`render_report` turns the same `ReportOut` the JSON report returns, plus one `SensorChart` per
sensor to plot, into a single HTML document: inline CSS, charts and maps as inline SVG drawn
here, times in the pilot's local time. The page opens offline, prints on A4 and can be
attached to an e-mail as it is.

It must not make any external request (no scripts, stylesheets, fonts, images or links; a
Content-Security-Policy in the page forbids them too), run JavaScript, read the store or
compute statistics: every number comes from the report or the chart series as given and is
only formatted (the flag table's per-flag share is the one division). Every text from the
report is escaped, in elements and in attributes.
"""

from __future__ import annotations

import colorsys
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.schemas import (
    CompletenessMapOut,
    DeviceReportOut,
    ExceedanceOut,
    FlagsOut,
    GapOut,
    RainOut,
    ReportOut,
    RiverOut,
    SensorSummaryOut,
    ThresholdReportOut,
)

__all__ = ["GUIDELINE_LABEL", "SensorChart", "render_report"]

GUIDELINE_LABEL = "WHO 2021 24-h guideline"
DASH = "—"
EN_DASH = "\u2013"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies and in greyscale print.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_LEVEL_COLOUR = "#b2182b"
_GUIDELINE_COLOUR = "#5e3c99"
_NO_DATA_FILL = "#d9d9d9"
_DAY_FILLS = {
    "exceeding": "#d7301f",
    "within": "#a6d96a",
    "missing": "#ffffff",
}
_DAY_LEGEND = {
    "exceeding": "mean above the guideline",
    "within": "within",
    "missing": "no data",
}
_DASHES = "6 4"

# Line chart geometry, in SVG user units (the chart scales to the page width).
_CW, _CH = 760, 260
_ML, _MR, _MT, _MB = 58, 16, 14, 36
_TIME_STEPS_H = (1, 2, 3, 6, 12, 24, 48, 168, 336)
_MAX_TIME_TICKS = 8

Cell = str | tuple[str, str]  # text, or (text, css class)


@dataclass(frozen=True)
class SensorChart:
    """One sensor's series to plot: a line per device (or one for all devices pooled).

    `lines` maps a line's name to values aligned with `times`; None is no data and breaks
    the line. `levels` are named horizontal lines such as ("alert", 5.3); `guideline` is the
    WHO 2021 24-hour guideline, drawn when not None.
    """

    sensor: str
    name: str
    unit: str
    times: Sequence[datetime]
    lines: Mapping[str, Sequence[float | None]]
    levels: Sequence[tuple[str, float]] = ()
    guideline: float | None = None

    def __post_init__(self) -> None:
        for line, values in self.lines.items():
            if len(values) != len(self.times):
                raise ValueError(
                    f"chart {self.sensor!r}: line {line!r} has {len(values)} values "
                    f"for {len(self.times)} times"
                )


def render_report(report: ReportOut, charts: Sequence[SensorChart]) -> str:
    """The report as one self-contained HTML document (UTF-8 text)."""
    tz = _zone(report.timezone, report.start)
    names = _sensor_names(report, charts)
    period_days = _period_days(report.start, report.end, tz)
    body = "".join(
        [
            _header(report, tz),
            _summary_section(report.sensors),
            _charts_section(charts, report, tz),
            _completeness_section(report.completeness),
            _exceedance_section(report.exceedances, period_days, names),
            _devices_section(report.devices),
            _gaps_section(report.gaps, tz),
            _flags_section(report.flags),
            _thresholds_section(report.thresholds, tz, names),
            _river_section(report.river),
            _rain_section(report.rain, tz),
        ]
    )
    footer = (
        f"<footer><p>Pilot Telemetry report for {_e(report.name)}, generated "
        f"{_e(_when(report.generated_at, tz))}. Times are local ({_e(report.timezone)}). "
        "Air-quality figures from low-cost sensors are indicative, not regulatory.</p></footer>"
    )
    title = f"{report.name}: pilot report {_stamp(report.start, tz)[:10]}"
    return _document(title, f"<main>{body}{footer}</main>")


# -- formatting ----------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float | None, places: int = 3) -> str:
    """`places` decimals at or above 1, as many significant digits below (0.0012, not 0.001)."""
    if value is None or not math.isfinite(value):
        return DASH
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    digits = places if magnitude >= 0 else min(places - 1 - magnitude, 12)
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _signed(value: float | None, places: int = 3) -> str:
    """A rate with its direction: "+1.5", "-0.2"; zero and no value carry no sign."""
    text = _num(value, places)
    return text if text in {DASH, "0"} or text.startswith("-") else "+" + text


def _pct(share: float | None) -> str:
    if share is None or not math.isfinite(share):
        return DASH
    return f"{share * 100:.1f} %"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return DASH
    if seconds < 0:  # latency under clock skew
        return "-" + _duration(-seconds)
    if seconds < 60:
        return f"{_num(seconds)} s"
    if round(seconds) < 3600:  # latencies and short gaps: keep the seconds
        mins, secs = divmod(round(seconds), 60)
        return f"{mins} min" + (f" {secs} s" if secs else "")
    return _long_duration(seconds)


def _long_duration(seconds: float) -> str:
    """An hour or more: "2 h 15 min", "3 d 4 h"."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def _zone(name: str, sample: datetime) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # The registry validates zones; a report built elsewhere keeps the offset it carries.
        return sample.tzinfo or ZoneInfo("UTC")


def _local(moment: datetime, tz: tzinfo) -> datetime:
    return moment.astimezone(tz) if moment.tzinfo is not None else moment


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    if offset is None:
        return ""
    minutes = round(offset.total_seconds() / 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def _stamp(moment: datetime, tz: tzinfo) -> str:
    return f"{_local(moment, tz):%Y-%m-%d %H:%M}"


def _when(moment: datetime, tz: tzinfo) -> str:
    local = _local(moment, tz)
    return f"{local:%Y-%m-%d %H:%M} ({_offset(local)})"


def _day_label(day: date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]}"


def _period_days(start: datetime, end: datetime, tz: tzinfo) -> list[date]:
    """Local days the period touches; an end at local midnight does not add a day."""
    if end <= start:
        return []
    first = _local(start, tz).date()
    last = _local(end - timedelta(microseconds=1), tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _sensor_names(report: ReportOut, charts: Sequence[SensorChart]) -> dict[str, tuple[str, str]]:
    names = {c.sensor: (c.name, c.unit) for c in charts}
    names.update({s.sensor: (s.name, s.unit) for s in report.sensors})
    return names


# -- page and tables -----------------------------------------------------------------------------

_CSS = """
*{box-sizing:border-box;-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;color:#1a1a1a;background:#fff;
font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:16px 20px}
h1{font-size:20px;margin:0}
h2{font-size:15px;margin:18px 0 6px;padding-bottom:2px;border-bottom:1px solid #ccc}
h3{font-size:13px;margin:10px 0 4px}
p{margin:4px 0}
.sub,.note,footer{color:#555}
footer{margin-top:18px;border-top:1px solid #ccc;font-size:11px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:0 12px;margin:6px 0}
dl.meta dt{color:#555}
dl.meta dd{margin:0}
.wide{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;margin:4px 0 8px}
th,td{padding:2px 6px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
th{font-weight:600;border-bottom:1px solid #888}
th.n,td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.devices{font-size:11px}
.warn{color:#b00020;font-weight:600}
figure{margin:6px 0 14px}
figcaption{font-weight:600}
svg{display:block;max-width:100%;height:auto}
svg text{font-family:inherit;font-size:11px;fill:#333}
.legend{display:flex;flex-wrap:wrap;gap:2px 14px;font-size:12px;margin:2px 0}
.legend .sw{display:inline-block;width:18px;border-top:3px solid;vertical-align:middle;
margin-right:4px}
.legend .sw.dash{border-top-style:dashed;border-top-width:2px}
.legend .box{display:inline-block;width:11px;height:11px;border:1px solid #888;
vertical-align:-1px;margin-right:4px}
@page{size:A4 landscape;margin:12mm}
@media print{body{font-size:11px}main{max-width:none;padding:0}.wide{overflow:visible}
h2,h3{break-after:avoid}figure,.keep,tr{break-inside:avoid}}
"""

# Belt and braces: even if something slipped into the markup, the browser fetches nothing.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _section(key: str, heading: str, content: str) -> str:
    return f'<section id="{key}"><h2>{_e(heading)}</h2>{content}</section>\n'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(css: str, columns: Sequence[str], align: str, rows: Iterable[Sequence[Cell]]) -> str:
    """A table; `align` has one letter per column, `r` for numbers (right-aligned)."""
    assert len(align) == len(columns)
    head = "".join(
        f'<th class="n">{_e(c)}</th>' if a == "r" else f"<th>{_e(c)}</th>"
        for c, a in zip(columns, align, strict=True)
    )
    body = []
    for row in rows:
        cells = []
        for cell, a in zip(row, align, strict=True):
            text, extra = (cell, "") if isinstance(cell, str) else cell
            classes = " ".join(c for c in ("n" if a == "r" else "", extra) if c)
            attr = f' class="{classes}"' if classes else ""
            cells.append(f"<td{attr}>{_e(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="wide"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _legend(items: Iterable[tuple[str, str, str]]) -> str:
    """Legend entries of (swatch class, colour, label)."""
    spans = []
    for kind, colour, label in items:
        style = f"background:{colour}" if kind == "box" else f"border-top-color:{colour}"
        spans.append(f'<span><span class="{kind}" style="{style}"></span>{_e(label)}</span>')
    return f'<div class="legend">{"".join(spans)}</div>'


# -- sections ------------------------------------------------------------------------------------


def _header(report: ReportOut, tz: tzinfo) -> str:
    start, end = _local(report.start, tz), _local(report.end, tz)
    if _offset(start) == _offset(end):
        period = f"{start:%Y-%m-%d %H:%M} {EN_DASH} {end:%Y-%m-%d %H:%M} ({_offset(start)})"
    else:
        period = f"{_when(start, tz)} {EN_DASH} {_when(end, tz)}"
    length = (report.end - report.start).total_seconds()
    rows = [
        ("Period", f"{period}, {_duration(length)}"),
        ("Time zone", f"{report.timezone} ({_offset(start)})"),
        ("Generated", _when(report.generated_at, tz)),
    ]
    meta = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return (
        f"<header><h1>{_e(report.name)}</h1>"
        f'<p class="sub">Pilot report · {_e(report.theme)} · {_e(report.pilot)}</p>'
        f'<dl class="meta">{meta}</dl></header>\n'
    )


def _summary_section(sensors: Sequence[SensorSummaryOut]) -> str:
    if not sensors:
        return _section("summary", "Sensors", _note("No sensor readings in this period."))
    columns = ["Sensor", "Unit", "Devices", "Readings", "Mean", "Min", "Max", "Std"]
    columns += ["p50", "p95", "Flagged"]
    rows = [
        [
            s.name,
            s.unit,
            str(s.devices),
            str(s.count),
            _num(s.mean),
            _num(s.min),
            _num(s.max),
            _num(s.std),
            _num(s.p50),
            _num(s.p95),
            _pct(s.flagged_share),
        ]
        for s in sensors
    ]
    note = _note("All devices pooled over the whole period.")
    return _section("summary", "Sensors", note + _table("summary", columns, "llrrrrrrrrr", rows))


def _devices_section(devices: Sequence[DeviceReportOut]) -> str:
    if not devices:
        return _section("devices", "Devices", _note("No devices in this report."))
    columns = ["Device", "Kind", "Site", "Reports", "Completeness", "Uptime (h)", "Gaps"]
    columns += ["Longest gap", "Silent now", "PDR", "Sessions", "Repeats", "Latency mean"]
    columns += ["Latency p90", "Battery (V)", "Slope (V/day)", "Days left", "RSSI (dBm)"]
    columns += ["SNR (dB)", "SF mix"]
    align = "lllrrrrrlrrrrrrrrrrl"
    table = _table("devices", columns, align, (_device_row(d) for d in devices))
    note = _note(
        "Uptime: hours with at least one report / hours in the period. PDR: distinct frame "
        "counters / counter span, per counter session. Repeats: transmissions received again "
        "(retransmissions) and dropped by ingest. Days left: until 3.3 V at the present slope."
    )
    return _section("devices", "Devices", table + note)


def _device_row(d: DeviceReportOut) -> list[Cell]:
    return [
        d.device,
        d.kind,
        d.site,
        str(d.reports),
        _pct(d.completeness),
        f"{_num(d.uptime_hours, 1)} / {_num(d.hours, 1)}",
        str(d.gaps),
        _duration(d.longest_gap_s),
        ("yes", "warn") if d.silent_now else ("no" if d.silent_now is False else DASH),
        _pct(d.pdr),
        str(d.counter_sessions),
        str(d.repeats),
        _duration(d.latency_mean_s),
        _duration(d.latency_p90_s),
        _num(d.battery_last_v),
        _num(d.battery_slope_v_per_day),
        _num(d.battery_days_left, 1),
        _num(d.rssi_median),
        _num(d.snr_median),
        _sf_mix(d.sf_mix),
    ]


def _sf_mix(mix: Mapping[str, int]) -> str:
    if not mix:
        return DASH

    def label(key: str) -> str:
        return key if key.upper().startswith("SF") else f"SF{key}"

    def order(key: str) -> tuple[int, str]:
        digits = "".join(ch for ch in key if ch.isdigit())
        return (int(digits) if digits else 99, key)

    return " · ".join(f"{label(k)} {mix[k]}" for k in sorted(mix, key=order))


def _gaps_section(gaps: Sequence[GapOut], tz: tzinfo) -> str:
    if not gaps:
        return _section("gaps", "Longest gaps", _note("No gaps in this period."))
    rows = [[g.device, _stamp(g.start, tz), _stamp(g.end, tz), _duration(g.length_s)] for g in gaps]
    table = _table("gaps", ["Device", "From", "To", "Length"], "lllr", rows)
    return _section("gaps", "Longest gaps", table)


def _flags_section(flags: FlagsOut) -> str:
    def share(count: int) -> str:
        return _pct(count / flags.readings) if flags.readings else DASH

    rows: list[list[Cell]] = [
        [name, str(count), share(count)]
        for name, count in (
            ("range", flags.range),
            ("stuck", flags.stuck),
            ("spike", flags.spike),
            ("duplicate", flags.duplicate),
        )
    ]
    rows.append([("any flag", "warn") if flags.share else "any flag", DASH, _pct(flags.share)])
    # After "any flag" because it is not one: a late reading's value is sound and kept.
    rows.append(["late", str(flags.late), share(flags.late)])
    table = _table("flags", ["Flag", "Readings", "Share"], "lrr", rows)
    note = _note(
        f"Of {flags.readings} readings; a reading can carry more than one flag. Late: received "
        "more than one reporting interval after the device's time (a gateway's backlog); "
        'counted, not excluded, and not part of "any flag". '
        f"Besides the readings, ingest recognised and dropped {flags.repeats} repeated "
        "transmissions (retransmissions)."
    )
    return _section("flags", "Data quality flags", table + note)


def _thresholds_section(
    thresholds: Sequence[ThresholdReportOut], tz: tzinfo, names: Mapping[str, tuple[str, str]]
) -> str:
    if not thresholds:
        return _section("thresholds", "Thresholds", _note("No thresholds for this pilot."))

    def sensor(t: ThresholdReportOut) -> tuple[str, str]:
        return names.get(t.sensor, (t.sensor, ""))

    summary = _table(
        "thresholds",
        ["Sensor", "Level", "Value", "Hours above", "Episodes"],
        "llrrr",
        [
            [
                sensor(t)[0],
                t.name,
                f"{_num(t.level)} {sensor(t)[1]}".strip(),
                _num(t.hours_above),
                str(len(t.episodes)),
            ]
            for t in thresholds
        ],
    )
    rows: list[list[Cell]] = [
        [
            sensor(t)[0],
            t.name,
            ep.device,
            _stamp(ep.start, tz),
            _stamp(ep.end, tz),
            _duration(ep.duration_s),
            _num(ep.peak),
            ("yes", "warn") if ep.open else "no",
        ]
        for t in thresholds
        for ep in t.episodes
    ]
    columns = ["Sensor", "Level", "Device", "From", "To", "Duration", "Peak", "Still above"]
    episodes = (
        "<h3>Episodes</h3>" + _table("episodes", columns, "lllllrrl", rows)
        if rows
        else _note("No episodes above any level.")
    )
    return _section("thresholds", "Thresholds", summary + episodes)


def _river_section(river: Sequence[RiverOut]) -> str:
    if not river:
        return ""
    rows: list[list[Cell]] = [
        [
            r.device,
            _signed(r.trend_cm_per_day, 1),
            _signed(r.max_rise_cm_per_day, 1),
            r.max_rise_day.isoformat() if r.max_rise_day is not None else DASH,
        ]
        for r in river
    ]
    columns = ["Device", "Trend (cm/day)", "Largest rise (cm/day)", "Day of largest rise"]
    table = _table("river", columns, "lrrl", rows)
    note = _note(
        "Trend: least-squares slope of all readings. Largest rise: between the means of two "
        "consecutive local days, dated by the later day; negative when the level only fell."
    )
    return _section("river", "River", table + note)


def _rain_section(rain: Sequence[RainOut], tz: tzinfo) -> str:
    if not rain:
        return ""
    rows: list[list[Cell]] = [
        [
            r.device,
            _num(r.total_mm, 1),
            _num(r.max_mm_per_hour, 1),
            _stamp(r.max_hour, tz) if r.max_hour is not None else DASH,
        ]
        for r in rain
    ]
    columns = ["Device", "Total (mm)", "Wettest hour (mm/h)", "Wettest hour from"]
    table = _table("rain", columns, "lrrl", rows)
    note = _note("Wettest hour: the local clock hour with the most rain.")
    return _section("rain", "Rain", table + note)


# -- line charts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """Maps time (epoch seconds) and value to chart coordinates."""

    t0: float
    t1: float
    lo: float
    hi: float

    def x(self, ts: float) -> float:
        width = _CW - _ML - _MR
        if self.t1 <= self.t0:
            return _ML + width / 2
        return _ML + (ts - self.t0) / (self.t1 - self.t0) * width

    def y(self, value: float) -> float:
        return _MT + (self.hi - value) / (self.hi - self.lo) * (_CH - _MT - _MB)


def _charts_section(charts: Sequence[SensorChart], report: ReportOut, tz: tzinfo) -> str:
    if not charts:
        return _section("charts", "Time series", _note("No series to plot."))
    figures = "".join(_chart_figure(c, report.start, report.end, tz) for c in charts)
    return _section("charts", "Time series", figures)


def _chart_figure(chart: SensorChart, start: datetime, end: datetime, tz: tzinfo) -> str:
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(chart.lines)}
    caption = f"{chart.name} ({chart.unit})" if chart.unit else chart.name
    legend = _legend(("sw", colours[name], name) for name in chart.lines)
    return (
        f'<figure class="chart" data-sensor="{_e(chart.sensor)}">'
        f"<figcaption>{_e(caption)}</figcaption>"
        f"{_chart_svg(chart, colours, start, end, tz)}{legend}</figure>\n"
    )


def _chart_values(chart: SensorChart) -> list[float]:
    values = [v for line in chart.lines.values() for v in line if v is not None]
    values += [level for _, level in chart.levels]
    if chart.guideline is not None:
        values.append(chart.guideline)
    return [v for v in values if math.isfinite(v)]


def _chart_svg(
    chart: SensorChart, colours: Mapping[str, str], start: datetime, end: datetime, tz: tzinfo
) -> str:
    label = _e(f"{chart.name} over time")
    head = f'<svg class="chart" viewBox="0 0 {_CW} {_CH}" role="img" aria-label="{label}">'
    values = _chart_values(chart)
    if not chart.times or not values:
        middle = f'x="{_CW / 2}" y="{_CH / 2}" text-anchor="middle"'
        return f"{head}<text {middle}>No data in this period.</text></svg>"
    t_first = min([*chart.times, start])
    t_last = max([*chart.times, end])
    ticks = _nice_ticks(min(values), max(values))
    frame = _Frame(t_first.timestamp(), t_last.timestamp(), ticks[0], ticks[-1])
    parts = [
        head,
        _y_axis(frame, ticks, chart.unit),
        _x_axis(frame, _time_ticks(t_first, t_last, tz), _offset(_local(t_first, tz))),
    ]
    rules = [
        (level, f"{name} {_num(level)} {chart.unit}".strip(), "level", _LEVEL_COLOUR)
        for name, level in chart.levels
    ]
    if chart.guideline is not None:
        text = f"{GUIDELINE_LABEL} {_num(chart.guideline)} {chart.unit}".strip()
        rules.append((chart.guideline, text, "guideline", _GUIDELINE_COLOUR))
    parts.extend(_hline(frame, value, css, colour) for value, _, css, colour in rules)
    times_s = [t.timestamp() for t in chart.times]
    parts.extend(
        _series(frame, name, times_s, line, colours[name]) for name, line in chart.lines.items()
    )
    # Labels last, so no series is drawn over them.
    parts.extend(
        _hline_label(frame, value, text, css, colour) for value, text, css, colour in rules
    )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times 10^k apart) spanning lo..hi, at least three."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def _time_ticks(t0: datetime, t1: datetime, tz: tzinfo) -> list[tuple[datetime, str]]:
    """Ticks at round local times: hours within a day or two, local midnights beyond."""
    start, end = _local(t0, tz), _local(t1, tz)
    span_h = (t1 - t0).total_seconds() / 3600
    fallback = 168 * max(1, math.ceil(span_h / (168 * _MAX_TIME_TICKS)))
    step_h = next((s for s in _TIME_STEPS_H if span_h / s <= _MAX_TIME_TICKS), fallback)
    tick = start.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(hours=step_h)
    while tick < start:
        tick += step if step_h < 24 else timedelta(days=1)
    ticks = []
    while tick <= end:
        midnight = tick.hour == 0 and tick.minute == 0
        ticks.append((tick, _day_label(tick.date()) if midnight else f"{tick:%H:%M}"))
        tick += step
    return ticks


def _y_axis(frame: _Frame, ticks: Sequence[float], unit: str) -> str:
    parts = ['<g class="y-axis">']
    for value in ticks:
        y = frame.y(value)
        parts.append(
            f'<line x1="{_ML}" x2="{_CW - _MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
            f'<text x="{_ML - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(_num(value))}</text>'
        )
    middle = _MT + (_CH - _MT - _MB) / 2
    parts.append(
        f'<text x="12" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {middle:.1f})">{_e(unit)}</text></g>'
    )
    return "".join(parts)


def _x_axis(frame: _Frame, ticks: Sequence[tuple[datetime, str]], offset: str) -> str:
    base = _CH - _MB
    parts = [
        f'<g class="x-axis"><line x1="{_ML}" x2="{_CW - _MR}" y1="{base}" y2="{base}" '
        'stroke="#888"/>'
    ]
    for moment, label in ticks:
        x = frame.x(moment.timestamp())
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="#888"/>'
            f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{_e(label)}</text>'
        )
    parts.append(
        f'<text x="{_CW - _MR}" y="{_CH - 3}" text-anchor="end">local time ({_e(offset)})</text>'
        "</g>"
    )
    return "".join(parts)


def _hline(frame: _Frame, value: float, css: str, colour: str) -> str:
    y = frame.y(value)
    return (
        f'<line class="{css}" x1="{_ML}" x2="{_CW - _MR}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="{colour}" stroke-width="1.2" stroke-dasharray="{_DASHES}"/>'
    )


def _hline_label(frame: _Frame, value: float, label: str, css: str, colour: str) -> str:
    # A white halo keeps the label readable where a series crosses it.
    return (
        f'<text class="{css}" x="{_CW - _MR - 4}" y="{frame.y(value) - 4:.1f}" '
        f'text-anchor="end" style="fill:{colour};stroke:#fff;stroke-width:3px;'
        f'paint-order:stroke">{_e(label)}</text>'
    )


def _segments(
    frame: _Frame, times_s: Sequence[float], values: Sequence[float | None]
) -> list[list[tuple[float, float]]]:
    """Runs of consecutive values, split wherever a value is missing."""
    segments: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for ts, value in zip(times_s, values, strict=True):
        if value is None or not math.isfinite(value):
            if current:
                segments.append(current)
                current = []
            continue
        current.append((frame.x(ts), frame.y(value)))
    if current:
        segments.append(current)
    return segments


def _series(
    frame: _Frame,
    name: str,
    times_s: Sequence[float],
    values: Sequence[float | None],
    colour: str,
) -> str:
    parts = [
        f'<g class="series" data-line="{_e(name)}" stroke="{colour}" fill="none" '
        f'stroke-width="1.5" stroke-linejoin="round"><title>{_e(name)}</title>'
    ]
    for segment in _segments(frame, times_s, values):
        if len(segment) == 1:  # a lone reading between gaps: a dot, or it would not show
            x, y = segment[0]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>')
        else:
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
            parts.append(f'<polyline points="{points}"/>')
    parts.append("</g>")
    return "".join(parts)


# -- completeness heat map -----------------------------------------------------------------------


def _heat_fill(ratio: float | None) -> str:
    """Red at 0 through yellow to green at 1 and above; grey for no data."""
    if ratio is None or not math.isfinite(ratio):
        return _NO_DATA_FILL
    share = min(max(ratio, 0.0), 1.0)
    red, green, blue = colorsys.hls_to_rgb(share / 3, 0.45, 0.7)  # hue 0° red .. 120° green
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def _ratio_at(row: Sequence[float | None], j: int) -> float | None:
    return row[j] if j < len(row) else None


def _completeness_section(cmap: CompletenessMapOut) -> str:
    if not cmap.days or not cmap.devices:
        return _section("completeness", "Completeness", _note("No devices or days to map."))
    legend = _legend(
        [("box", _heat_fill(r), f"{round(r * 100)} %") for r in (0.0, 0.25, 0.5, 0.75)]
        + [("box", _heat_fill(1.0), "≥ 100 %"), ("box", _NO_DATA_FILL, "no data")]
    )
    note = _note(
        f"Readings received / expected, per device and local day, "
        f"{_day_label(cmap.days[0])} to {_day_label(cmap.days[-1])} {cmap.days[-1].year}."
    )
    figure = f'<figure class="keep">{_heatmap_svg(cmap)}{legend}</figure>'
    return _section("completeness", "Completeness", note + figure)


def _heatmap_svg(cmap: CompletenessMapOut) -> str:
    cell = 16 if len(cmap.days) <= 45 else 10
    label_w = min(170, 10 + 7 * max(len(d) for d in cmap.devices))
    top = 16
    width = label_w + len(cmap.days) * cell + 4
    height = top + len(cmap.devices) * cell + 2
    parts = [
        f'<svg class="heatmap" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for j, day in enumerate(cmap.days):
        if cell >= 14 or day.day == 1 or j % 7 == 0:
            x = label_w + j * cell + cell / 2
            parts.append(f'<text x="{x:.1f}" y="{top - 4}" text-anchor="middle">{day.day}</text>')
    for i, device in enumerate(cmap.devices):
        y = top + i * cell
        parts.append(
            f'<text x="{label_w - 4}" y="{y + cell - 4}" text-anchor="end">{_e(device)}</text>'
        )
        row = cmap.ratio[i] if i < len(cmap.ratio) else []
        for j, day in enumerate(cmap.days):
            x = label_w + j * cell
            parts.append(_heat_cell(device, day, _ratio_at(row, j), x=x, y=y, cell=cell))
    parts.append("</svg>")
    return "".join(parts)


def _heat_cell(device: str, day: date, ratio: float | None, *, x: int, y: int, cell: int) -> str:
    if ratio is None or not math.isfinite(ratio):
        css, tip = "cell nodata", f"{device} {day.isoformat()}: no data"
    else:
        css, tip = "cell", f"{device} {day.isoformat()}: {round(ratio * 100)} %"
    return (
        f'<rect class="{css}" x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
        f'fill="{_heat_fill(ratio)}"><title>{_e(tip)}</title></rect>'
    )


# -- exceedance calendar -------------------------------------------------------------------------


def _exceedance_section(
    exceedances: Sequence[ExceedanceOut],
    period_days: Sequence[date],
    names: Mapping[str, tuple[str, str]],
) -> str:
    heading = "WHO guideline exceedance"
    if not exceedances:
        return _section("exceedance", heading, _note("No sensor with a WHO guideline."))
    blocks = "".join(_exceedance_block(x, period_days, names) for x in exceedances)
    return _section("exceedance", heading, blocks)


def _exceedance_block(
    exc: ExceedanceOut,
    period_days: Sequence[date],
    names: Mapping[str, tuple[str, str]],
) -> str:
    name, unit = names.get(exc.sensor, (exc.sensor, ""))
    guideline = f"{_num(exc.guideline)} {unit}".strip()
    count = (
        f"{exc.days_exceeding} of {exc.days_with_data} days with data exceeded the WHO guideline"
        + (" (indicative, low-cost sensors)" if exc.indicative else "")
        + f"; {exc.days_missing} days without data; hours over: {exc.hours_over} of "
        f"{exc.hours_measured} measured hours."
    )
    days = sorted(set(period_days) | {d.day for d in exc.days} | set(exc.missing))
    over = ", ".join(f"{_day_label(d.day)} {_num(d.mean)}" for d in exc.days)
    calendar = _calendar_svg(exc, days, unit)
    legend = _legend(("box", fill, _DAY_LEGEND[k]) for k, fill in _DAY_FILLS.items())
    hours = _note(
        "Hours over: local hours whose mean (devices pooled) is above the guideline value."
    )
    return (
        f'<div class="exceedance keep" data-sensor="{_e(exc.sensor)}">'
        f"<h3>{_e(name)}: {_e(GUIDELINE_LABEL)} {_e(guideline)} (24-h mean)</h3>"
        f'<p class="count">{_e(count)}</p>{calendar}{legend}'
        + (_note(f"Daily means above it ({unit}): {over}.") if over else "")
        + hours
        + "</div>"
    )


def _calendar_svg(exc: ExceedanceOut, days: Sequence[date], unit: str) -> str:
    if not days:
        return _note("No days in this period.")
    cell, left, top = 22, 48, 16
    monday = days[0] - timedelta(days=days[0].weekday())
    weeks = (days[-1] - monday).days // 7 + 1
    width, height = left + 7 * cell + 2, top + weeks * cell + 2
    parts = [
        f'<svg class="calendar" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for col, weekday in enumerate(_WEEKDAYS):
        x = left + col * cell + cell / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 4}" text-anchor="middle">{weekday}</text>')
    for row in range(weeks):
        y = top + row * cell + cell / 2 + 4
        label = _day_label(monday + timedelta(weeks=row))
        parts.append(f'<text x="{left - 4}" y="{y:.1f}" text-anchor="end">{label}</text>')
    means = {d.day: d.mean for d in exc.days}
    missing = set(exc.missing)
    for day in days:
        row = (day - monday).days // 7
        x, y = left + day.weekday() * cell, top + row * cell
        status = _day_status(day, means, missing)
        tip = {
            "exceeding": f"mean {_num(means.get(day))} {unit}, above {_num(exc.guideline)}",
            "within": "within the guideline",
            "missing": "no data",
        }[status]
        parts.append(_calendar_day(day, status, f"{day.isoformat()}: {tip}", x=x, y=y, cell=cell))
    parts.append("</svg>")
    return "".join(parts)


def _day_status(day: date, means: Mapping[date, float], missing: set[date]) -> str:
    """The report names both lists; a day in neither had data and stayed within."""
    if day in means:
        return "exceeding"
    return "missing" if day in missing else "within"


def _calendar_day(day: date, status: str, tip: str, *, x: int, y: int, cell: int) -> str:
    ink = "#fff" if status == "exceeding" else "#333"
    # The title sits on the group so the tooltip shows over the day number too.
    return (
        f'<g class="day {status}" data-day="{day.isoformat()}"><title>{_e(tip)}</title>'
        f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
        f'fill="{_DAY_FILLS[status]}" stroke="#999"/>'
        f'<text x="{x + (cell - 2) / 2:.1f}" y="{y + cell / 2 + 2:.1f}" text-anchor="middle" '
        f'style="fill:{ink}">{day.day}</text></g>'
    )

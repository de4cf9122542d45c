"""Line charts of the report page, as inline SVG: one figure per sensor, a line per device.

`SensorChart` is what a chart is drawn from: the series as given, with its named levels and
the WHO guideline. Time runs along the pilot's local clock; levels and the guideline are
dashed lines with their labels drawn last, over the series. This module must not compute
statistics nor read anything: it places given values on a frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from api.report_html.format import GUIDELINE_LABEL, day_label, in_zone, num, offset_label
from api.report_html.markup import esc, legend
from api.report_html.style import DASHES, GUIDELINE_COLOUR, LEVEL_COLOUR, PALETTE

# Line chart geometry, in SVG user units (the chart scales to the page width).
_CW, _CH = 760, 260
_ML, _MR, _MT, _MB = 58, 16, 14, 36
_TIME_STEPS_H = (1, 2, 3, 6, 12, 24, 48, 168, 336)
_MAX_TIME_TICKS = 8


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


def chart_figure(chart: SensorChart, start: datetime, end: datetime, tz: tzinfo) -> str:
    """One sensor's figure: caption, chart over at least `[start, end]`, and legend."""
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(chart.lines)}
    caption = f"{chart.name} ({chart.unit})" if chart.unit else chart.name
    key = legend(("sw", colours[name], name) for name in chart.lines)
    return (
        f'<figure class="chart" id="chart-{esc(chart.sensor)}" data-sensor="{esc(chart.sensor)}">'
        f"<figcaption>{esc(caption)}</figcaption>"
        f"{_chart_svg(chart, colours, start, end, tz)}{key}</figure>\n"
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
    label = esc(f"{chart.name} over time")
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
        _x_axis(frame, _time_ticks(t_first, t_last, tz), offset_label(in_zone(t_first, tz))),
    ]
    rules = [
        (level, f"{name} {num(level)} {chart.unit}".strip(), "level", LEVEL_COLOUR)
        for name, level in chart.levels
    ]
    if chart.guideline is not None:
        text = f"{GUIDELINE_LABEL} {num(chart.guideline)} {chart.unit}".strip()
        rules.append((chart.guideline, text, "guideline", GUIDELINE_COLOUR))
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
    start, end = in_zone(t0, tz), in_zone(t1, tz)
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
        ticks.append((tick, day_label(tick.date()) if midnight else f"{tick:%H:%M}"))
        tick += step
    return ticks


def _y_axis(frame: _Frame, ticks: Sequence[float], unit: str) -> str:
    parts = ['<g class="y-axis">']
    for value in ticks:
        y = frame.y(value)
        parts.append(
            f'<line x1="{_ML}" x2="{_CW - _MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>'
            f'<text x="{_ML - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(num(value))}</text>'
        )
    middle = _MT + (_CH - _MT - _MB) / 2
    parts.append(
        f'<text x="12" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {middle:.1f})">{esc(unit)}</text></g>'
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
            f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle">{esc(label)}</text>'
        )
    parts.append(
        f'<text x="{_CW - _MR}" y="{_CH - 3}" text-anchor="end">local time ({esc(offset)})</text>'
        "</g>"
    )
    return "".join(parts)


def _hline(frame: _Frame, value: float, css: str, colour: str) -> str:
    y = frame.y(value)
    return (
        f'<line class="{css}" x1="{_ML}" x2="{_CW - _MR}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="{colour}" stroke-width="1.2" stroke-dasharray="{DASHES}"/>'
    )


def _hline_label(frame: _Frame, value: float, label: str, css: str, colour: str) -> str:
    # A white halo keeps the label readable where a series crosses it.
    return (
        f'<text class="{css}" x="{_CW - _MR - 4}" y="{frame.y(value) - 4:.1f}" '
        f'text-anchor="end" style="fill:{colour};stroke:#fff;stroke-width:3px;'
        f'paint-order:stroke">{esc(label)}</text>'
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
        f'<g class="series" data-line="{esc(name)}" stroke="{colour}" fill="none" '
        f'stroke-width="1.5" stroke-linejoin="round"><title>{esc(name)}</title>'
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

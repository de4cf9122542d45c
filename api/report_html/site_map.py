"""The report page's map: each device at its registry position, coloured by its status.

Inline SVG on a plain background (the page loads nothing, so no map tiles), with a scale bar in
metres, then a table of each device's status and latest values. Positions are projected
equirectangularly around the devices' middle latitude: a pilot spans a few kilometres, where the
distortion stays far below a pixel. Devices at one site are stacked under it so that each can
be seen; a marker links to its row of the table (no script needed, and it prints).

This module must not compute statistics or read anything: a device's status comes from its
report entry, and its latest values are the last window with a value of each chart line, as
given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo

from api.report_html import markup
from api.report_html.charts import SensorChart
from api.report_html.format import DASH, num, stamp
from api.report_html.markup import esc
from api.report_html.style import STATUS_FILLS
from api.schemas import DeviceReportOut

# Map geometry, in SVG user units (the map scales to the page width).
_W, _H = 760, 320
_ML, _MR, _MT, _MB = 40, 150, 30, 44
_STACK = 18  # between devices stacked at one site
_M_PER_DEG = 111_320.0  # metres per degree of latitude
_SCALE_STEPS_M = (
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
)  # fmt: skip
#: Half the span shown around a lone site, in degrees (about a kilometre).
_LONE_SPAN_DEG = 0.01

STATUS_WORDS = {
    "online": "reporting now",
    "silent": "silent now",
    "never": "no reports in the period",
    "reported": "reported in the period",
}

Latest = tuple[str, float, str, datetime]  # sensor name, value, unit, window start


def status(device: DeviceReportOut) -> str:
    """online, silent, never (no reports in the period) or reported (the period is over)."""
    if device.reports == 0:
        return "never"
    if device.silent_now is None:
        return "reported"
    return "silent" if device.silent_now else "online"


def latest_values(charts: Sequence[SensorChart]) -> dict[str, list[Latest]]:
    """Per line (device), each chart's last window with a value."""
    found: dict[str, list[Latest]] = {}
    for chart in charts:
        for line, values in chart.lines.items():
            last = next(
                (
                    i
                    for i in range(len(values) - 1, -1, -1)
                    if values[i] is not None and math.isfinite(values[i] or 0.0)
                ),
                None,
            )
            if last is not None:
                value = values[last]
                assert value is not None
                found.setdefault(line, []).append(
                    (chart.name, value, chart.unit, chart.times[last])
                )
    return found


def map_section(
    devices: Sequence[DeviceReportOut], charts: Sequence[SensorChart], tz: tzinfo
) -> str:
    """The Map section: how to read the map, then the map and its table."""
    note = markup.note(
        "Devices at their registry positions; devices at one site are stacked under it. A "
        "marker leads to its row. Latest: each sensor's last chart window with a value, local time."
    )
    return markup.section("map", "Map", note + map_figure(devices, charts, tz))


def map_figure(
    devices: Sequence[DeviceReportOut], charts: Sequence[SensorChart], tz: tzinfo
) -> str:
    """The map and its table; a note alone when no device has a position."""
    if not devices:
        return '<p class="note">No devices in this report.</p>'
    placed = [d for d in devices if d.lat is not None and d.lon is not None]
    latest = latest_values(charts)
    unplaced = [d.device for d in devices if d.lat is None or d.lon is None]
    missing = (
        f'<p class="note">Without a position in the registry: {esc(", ".join(unplaced))}.</p>'
        if unplaced and placed
        else ""
    )
    if not placed:
        return '<p class="note">No device of this report has a position.</p>' + _table(
            devices, latest, tz
        )
    return f'<figure class="map keep">{_svg(placed)}{_key()}</figure>{missing}' + _table(
        devices, latest, tz
    )


def _project(placed: Sequence[DeviceReportOut]) -> tuple[dict[str, tuple[float, float]], float]:
    """Each device's point on the map, and the map's metres per unit."""
    lats = [d.lat for d in placed if d.lat is not None]
    lons = [d.lon for d in placed if d.lon is not None]
    k = math.cos(math.radians((min(lats) + max(lats)) / 2))
    xs = [lon * k for lon in lons]
    span_x, span_y = max(xs) - min(xs), max(lats) - min(lats)
    inner_w, inner_h = _W - _ML - _MR, _H - _MT - _MB
    fits = [
        inner_w / span_x if span_x > 0 else math.inf,
        inner_h / span_y if span_y > 0 else math.inf,
    ]
    scale = min(fits)
    if not math.isfinite(scale):
        scale = inner_h / (2 * _LONE_SPAN_DEG)
    cx, cy = (min(xs) + max(xs)) / 2, (min(lats) + max(lats)) / 2
    mid_x, mid_y = _ML + inner_w / 2, _MT + inner_h / 2
    points = {
        d.device: (mid_x + (x - cx) * scale, mid_y - (lat - cy) * scale)
        for d, x, lat in zip(placed, xs, lats, strict=True)
    }
    return points, _M_PER_DEG / scale


def _svg(placed: Sequence[DeviceReportOut]) -> str:
    points, m_per_unit = _project(placed)
    parts = [
        f'<svg class="site-map" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="Map of the devices at their sites">'
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#eef1f4"/>',
        _scale_bar(m_per_unit),
        f'<text x="{_W - 16}" y="22" text-anchor="end" font-weight="600">N ↑</text>',
    ]
    below: dict[tuple[float, float], int] = {}
    for d in placed:
        x, y = points[d.device]
        spot = (round(x, 1), round(y, 1))
        y += _STACK * below.get(spot, 0)
        below[spot] = below.get(spot, 0) + 1
        state = status(d)
        tip = f"{d.device}: {STATUS_WORDS[state]}; {d.site}"
        parts.append(
            f'<a href="#map-{esc(d.device)}"><g class="site" data-device="{esc(d.device)}" '
            f'data-status="{state}" data-lat="{d.lat}" data-lon="{d.lon}"><title>{esc(tip)}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6.5" fill="{STATUS_FILLS[state]}" '
            'stroke="#fff" stroke-width="2"/>'
            f'<text x="{x + 11:.1f}" y="{y + 4:.1f}" font-weight="600" '
            f'style="stroke:#eef1f4;stroke-width:3px;paint-order:stroke">{esc(d.device)}</text>'
            "</g></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _scale_bar(m_per_unit: float) -> str:
    target_m = 140 * m_per_unit
    length_m = max((s for s in _SCALE_STEPS_M if s <= target_m), default=_SCALE_STEPS_M[0])
    width = length_m / m_per_unit
    label = f"{length_m // 1000} km" if length_m >= 1000 else f"{length_m} m"
    x0, y0 = 16, _H - 16
    return (
        f'<g class="scale"><path d="M{x0} {y0 - 6}V{y0}H{x0 + width:.1f}V{y0 - 6}" '
        'fill="none" stroke="#333" stroke-width="1.5"/>'
        f'<text x="{x0 + width / 2:.1f}" y="{y0 - 9}" text-anchor="middle">{label}</text></g>'
    )


def _key() -> str:
    spans = "".join(
        f'<span><span class="box" style="background:{STATUS_FILLS[k]};border-radius:50%">'
        f"</span>{esc(words)}</span>"
        for k, words in STATUS_WORDS.items()
    )
    return f'<div class="legend">{spans}</div>'


def _table(
    devices: Sequence[DeviceReportOut], latest: Mapping[str, list[Latest]], tz: tzinfo
) -> str:
    rows = []
    for d in devices:
        state = status(d)
        values = "; ".join(
            f"{name} {num(value)} {unit} ({stamp(at, tz)})".replace("  ", " ")
            for name, value, unit, at in latest.get(d.device, [])
        )
        place = f"{d.lat:.4f}, {d.lon:.4f}" if d.lat is not None and d.lon is not None else DASH
        rows.append(
            f'<tr id="map-{esc(d.device)}" data-device="{esc(d.device)}"><td>{esc(d.device)}</td>'
            f"<td>{esc(d.site)}</td><td>{esc(place)}</td>"
            f'<td class="status-{state}">{esc(STATUS_WORDS[state])}</td>'
            f"<td>{esc(values or DASH)}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Device", "Site", "Position", "Status", "Latest (last window with data)")
    )
    return (
        f'<div class="wide"><table class="sites"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )

"""The completeness heat map, as inline SVG: a cell per device and local day.

A cell's colour runs from red (nothing received) through yellow to green (all expected
readings received); grey is a day without data. This module must not compute completeness:
it colours the ratios the report gives.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from datetime import date

from api.report_html.markup import esc
from api.report_html.style import NO_DATA_FILL
from api.schemas import CompletenessMapOut


def heat_fill(ratio: float | None) -> str:
    """Red at 0 through yellow to green at 1 and above; grey for no data."""
    if ratio is None or not math.isfinite(ratio):
        return NO_DATA_FILL
    share = min(max(ratio, 0.0), 1.0)
    red, green, blue = colorsys.hls_to_rgb(share / 3, 0.45, 0.7)  # hue 0° red .. 120° green
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def _ratio_at(row: Sequence[float | None], j: int) -> float | None:
    return row[j] if j < len(row) else None


def heatmap_svg(cmap: CompletenessMapOut) -> str:
    """The map: day numbers along the top, device ids down the side (at least one of each)."""
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
            f'<text x="{label_w - 4}" y="{y + cell - 4}" text-anchor="end">{esc(device)}</text>'
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
        f'fill="{heat_fill(ratio)}"><title>{esc(tip)}</title></rect>'
    )

"""The exceedance calendar, as inline SVG: one square per local day, a row per week.

A day is exceeding (its mean is above the guideline), within, or missing (no data), as the
report lists them. This module must not decide which days exceed: it draws the report's lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from api.report_html.format import day_label, num
from api.report_html.markup import esc, note
from api.report_html.style import DAY_FILLS
from api.schemas import ExceedanceOut

#: What each day colour means, for the legend (in `DAY_FILLS` order).
DAY_LEGEND = {
    "exceeding": "mean above the guideline",
    "within": "within",
    "missing": "no data",
}
_WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")


def calendar_svg(exc: ExceedanceOut, days: Sequence[date], unit: str) -> str:
    """Weeks from the Monday before the first day to the last day; a note when there are none."""
    if not days:
        return note("No days in this period.")
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
        label = day_label(monday + timedelta(weeks=row))
        parts.append(f'<text x="{left - 4}" y="{y:.1f}" text-anchor="end">{label}</text>')
    means = {d.day: d.mean for d in exc.days}
    missing = set(exc.missing)
    for day in days:
        row = (day - monday).days // 7
        x, y = left + day.weekday() * cell, top + row * cell
        status = _day_status(day, means, missing)
        tip = {
            "exceeding": f"mean {num(means.get(day))} {unit}, above {num(exc.guideline)}",
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
        f'<g class="day {status}" data-day="{day.isoformat()}"><title>{esc(tip)}</title>'
        f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
        f'fill="{DAY_FILLS[status]}" stroke="#999"/>'
        f'<text x="{x + (cell - 2) / 2:.1f}" y="{y + cell / 2 + 2:.1f}" text-anchor="middle" '
        f'style="fill:{ink}">{day.day}</text></g>'
    )

"""The report page put together: the document around the sections, in their order.

`SECTIONS` is the page's table of contents: to add a section, write its function in
`api.report_html.sections` and list it here. This module must not format numbers or draw:
it derives what every section shares (the zone, sensor names, the period's days), joins the
sections and wraps them in the document, with the inlined scripts that make the charts
explorable on screen (`api.report_html.interactive`) allowed by their hashes.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.report_html import sections
from api.report_html.charts import SensorChart
from api.report_html.format import period_days, stamp, when, zone
from api.report_html.interactive import Explorable
from api.report_html.markup import esc
from api.report_html.sections import ReportPage, Section
from api.report_html.style import CSP, CSS
from api.schemas import ReportOut

#: The page's sections, top to bottom, in the order researchers read them.
SECTIONS: tuple[Section, ...] = (
    sections.header,
    sections.summary,
    sections.charts,
    sections.site_map,
    sections.completeness,
    sections.exceedance,
    sections.devices,
    sections.gaps,
    sections.flags,
    sections.thresholds,
    sections.river,
    sections.rain,
    sections.alarms,
)


def render_report(report: ReportOut, charts: Sequence[SensorChart]) -> str:
    """The report as one self-contained HTML document (UTF-8 text)."""
    tz = zone(report.timezone, report.start)
    page = ReportPage(
        report=report,
        charts=charts,
        tz=tz,
        names=_sensor_names(report, charts),
        period_days=period_days(report.start, report.end, tz),
    )
    body = "".join(section(page) for section in SECTIONS)
    footer = (
        f"<footer><p>Pilot Telemetry report for {esc(report.name)}, generated "
        f"{esc(when(report.generated_at, tz))}. Times are local ({esc(report.timezone)}). "
        "Air-quality figures from low-cost sensors are indicative, not regulatory.</p></footer>"
    )
    title = f"{report.name}: pilot report {stamp(report.start, tz)[:10]}"
    live = Explorable.of(charts, report.timezone)
    return _document(title, f"<main>{body}{footer}</main>\n{live.markup}", live)


def _sensor_names(report: ReportOut, charts: Sequence[SensorChart]) -> dict[str, tuple[str, str]]:
    names = {c.sensor: (c.name, c.unit) for c in charts}
    names.update({s.sensor: (s.name, s.unit) for s in report.sensors})
    return names


def _document(title: str, body: str, live: Explorable) -> str:
    # Only the page's own scripts may run, each named by its hash.
    csp = CSP + (f"; script-src {' '.join(live.script_hashes)}" if live.script_hashes else "")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}{live.css}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )

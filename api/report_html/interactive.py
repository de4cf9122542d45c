"""The report's charts made explorable on screen: uPlot and the dashboard's chart script, inlined.

`Explorable.of(charts, zone)` holds what the page adds for its charts: each chart's series as
JSON data, the vendored uPlot (`api/static/vendor/uplot/`, its stylesheet too), the chart
script the dashboard uses (`api/static/charts.js`) and a few lines that draw each chart over
its static SVG. The SVG stays in the page: it is what prints, and what a reader without scripts
sees. Each script is allowed by its SHA-256 in the page's Content-Security-Policy, so nothing
else can run; nothing is fetched.

This module must not compute statistics or draw: it passes the chart series on as given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.report_html.charts import SensorChart
from api.report_html.format import GUIDELINE_LABEL, num
from api.report_html.style import GUIDELINE_COLOUR, LEVEL_COLOUR, PALETTE

#: The vendored files, under `api/static/` (see their README for version and origin).
UPLOT_JS = "vendor/uplot/uPlot.iife.min.js"
UPLOT_CSS = "vendor/uplot/uPlot.min.css"
CHARTS_JS = "charts.js"

#: Draws every chart of the data over its SVG; leaves the page as it is without uPlot.
_START = """(function () {
  "use strict";
  if (typeof uPlot !== "function" || !window.PilotCharts) return;
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const group = PilotCharts.group();
  for (const spec of data.charts) {
    const figure = document.getElementById(`chart-${spec.sensor}`);
    const still = figure && figure.querySelector("svg.chart");
    if (!still) continue;
    const plot = document.createElement("div");
    plot.className = "plot";
    still.after(plot);
    figure.classList.add("live");
    figure.uplot = PilotCharts.chart(plot, Object.assign(spec,
      {group, timeZone: data.timeZone, locale: "en-GB", height: 260}));
  }
  document.documentElement.classList.add("charts-live");
})();"""

#: Screen: the live chart and its readout instead of the SVG; print: the SVG, as before.
_CSS = """
.plot{overflow:hidden}
.u-legend{font-size:12px;text-align:left}
.u-legend .u-value{font-variant-numeric:tabular-nums}
.live-only{display:none}
@media screen{figure.live>svg.chart,figure.live>.legend{display:none}
.charts-live .live-only{display:block}}
@media print{figure.live>.plot{display:none}}
"""


@cache
def _static(name: str) -> str:
    return resources.files("api").joinpath("static", name).read_text(encoding="utf-8")


def _sha256(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _value(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def chart_spec(chart: SensorChart) -> dict[str, object]:
    """What `PilotCharts.chart` draws one chart from (times in epoch seconds)."""
    times = [t.timestamp() for t in chart.times]
    steps = {round(b - a) for a, b in pairwise(times)}
    levels: list[dict[str, object]] = [
        {
            "label": f"{name} {num(value)} {chart.unit}".strip(),
            "value": value,
            "colour": LEVEL_COLOUR,
        }
        for name, value in chart.levels
    ]
    if chart.guideline is not None:
        label = f"{GUIDELINE_LABEL} {num(chart.guideline)} {chart.unit}".strip()
        levels.append({"label": label, "value": chart.guideline, "colour": GUIDELINE_COLOUR})
    return {
        "sensor": chart.sensor,
        "unit": chart.unit,
        "x": times,
        # Windows of one length: the readout shows each as its start and end.
        "windowS": steps.pop() if len(steps) == 1 else None,
        "lines": [
            {
                "label": name,
                "colour": PALETTE[i % len(PALETTE)],
                "values": [_value(v) for v in values],
            }
            for i, (name, values) in enumerate(chart.lines.items())
        ],
        "levels": levels,
    }


def _has_data(chart: SensorChart) -> bool:
    return bool(chart.times) and any(
        _value(v) is not None for line in chart.lines.values() for v in line
    )


@dataclass(frozen=True)
class Explorable:
    """The markup, style and script hashes that make the page's charts explorable."""

    markup: str
    css: str
    script_hashes: tuple[str, ...]

    @classmethod
    def of(cls, charts: Sequence[SensorChart], timezone: str) -> Explorable:
        """For the charts with data; nothing when there is none or the zone has no name."""
        shown = [c for c in charts if _has_data(c)]
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            shown = []  # the browser needs the zone's name; the SVG charts stay
        if not shown:
            return cls("", "", ())
        data = json.dumps(
            {"timeZone": timezone, "charts": [chart_spec(c) for c in shown]},
            separators=(",", ":"),
            allow_nan=False,
        )
        # Inside <script>, only `<` could end the element early: JSON lets it be escaped.
        data = data.replace("<", "\\u003c")
        scripts = (_static(UPLOT_JS), _static(CHARTS_JS), _START)
        markup = f'<script type="application/json" id="chart-data">{data}</script>\n' + "".join(
            f"<script>{script}</script>\n" for script in scripts
        )
        return cls(markup, _static(UPLOT_CSS) + _CSS, tuple(_sha256(s) for s in scripts))

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

The modules: `page` (the document and the ordered list of sections), `sections` (one function
per section), `charts` (line charts), `heatmap` (completeness), `day_calendar` (exceedance
days), `markup` (escaping, tables, legends), `format` (numbers and times), `style` (CSS and
colours).
"""

from api.report_html.charts import SensorChart
from api.report_html.format import GUIDELINE_LABEL
from api.report_html.page import render_report

__all__ = ["GUIDELINE_LABEL", "SensorChart", "render_report"]

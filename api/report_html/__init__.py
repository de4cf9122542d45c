"""The pilot report as one self-contained HTML page, to print or to send to ITU members.

`render_report` turns the same `ReportOut` the JSON report returns, plus one `SensorChart` per
sensor to plot, into a single HTML document: inline CSS, charts and the device map as inline
SVG drawn here, times in the pilot's local time. On screen the charts are also explorable
(zoom, pan, a readout of the values under the pointer): the vendored uPlot and the dashboard's
chart script are inlined with the chart series as data, and draw over the SVG charts, which
stay for print and for readers without scripts. The page opens offline, prints on A4 and can
be attached to an e-mail as it is.

It must not make any external request (no external scripts, stylesheets, fonts, images or
links; a Content-Security-Policy in the page forbids them too, and lets only its own inlined
scripts run, by hash), read the store or compute statistics: every number comes from the
report or the chart series as given and is only formatted (the flag table's per-flag share is
the one division). Every text from the report is escaped, in elements and in attributes.

The modules: `page` (the document and the ordered list of sections), `sections` (one function
per section), `charts` (line charts), `interactive` (the inlined scripts), `site_map` (the
device map section), `device_table` (the device table section), `heatmap` (completeness),
`day_calendar` (exceedance days), `markup` (escaping, tables, legends), `format` (numbers and
times), `style` (CSS and colours).
"""

from api.report_html.charts import SensorChart
from api.report_html.format import GUIDELINE_LABEL
from api.report_html.page import render_report

__all__ = ["GUIDELINE_LABEL", "SensorChart", "render_report"]

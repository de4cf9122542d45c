"""How the report page looks: its stylesheet, its Content-Security-Policy and its colours.

All inline: the page loads no stylesheet or font from anywhere. This module must not hold
markup or text of the report.
"""

from __future__ import annotations

CSS = """
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
table.sites tr:target{background:#fff3c4}
svg.site-map a:focus circle,svg.site-map a:hover circle{stroke:#1a1a1a}
.status-silent,.status-never{color:#7a4b00;font-weight:600}
@page{size:A4 landscape;margin:12mm}
@media print{body{font-size:11px}main{max-width:none;padding:0}.wide{overflow:visible}
h2,h3{break-after:avoid}figure,.keep,tr{break-inside:avoid}}
"""

# Belt and braces: even if something slipped into the markup, the browser fetches nothing.
# The page adds `script-src` with the hash of each of its own scripts (`page._document`).
CSP = "default-src 'none'; style-src 'unsafe-inline'"

# Okabe-Ito: distinguishable with the common colour-vision deficiencies and in greyscale print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LEVEL_COLOUR = "#b2182b"
GUIDELINE_COLOUR = "#5e3c99"
NO_DATA_FILL = "#d9d9d9"
#: Exceedance calendar days by status, in the legend's order.
DAY_FILLS = {
    "exceeding": "#d7301f",
    "within": "#a6d96a",
    "missing": "#ffffff",
}
#: Map markers by device status (`api.report_html.site_map.status`).
STATUS_FILLS = {
    "online": "#1a9641",
    "silent": "#e08a00",
    "never": "#8a929c",
    "reported": "#2f74b5",
}
#: Dash pattern of level and guideline lines.
DASHES = "6 4"

"""The researchers' HTTP API (FastAPI): pilots, devices, windowed series, reports, exports.

Routes live in `api/routes/<resource>.py` (collected in `api.routes`), queries and aggregation
calls in `api/services/`, response types in `api/schemas.py`, the HTML report in
`api/report_html/`. The app's typed state (`api.state`) reaches routes through the aliases of
`api.deps`. The app reads the store; it never writes readings.
"""

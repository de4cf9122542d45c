"""The researchers' HTTP API (FastAPI): pilots, devices, windowed series, health.

Routes live in `api/routes/<resource>.py`, queries and aggregation calls in `api/services.py`,
response types in `api/schemas.py`. The app reads the store; it never writes readings.
"""

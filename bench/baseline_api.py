"""bench/api's baseline: a server that answers each request from InfluxDB, nothing kept.

`series` is InfluxQL `GROUP BY time(), device` (InfluxDB aggregates); `report` is built from a
fresh scan of the period, as `pilots api` builds it but with no cache. Configured as `pilots api`
is, by the `PILOTS_*` variables (the store, the database, the registry). Only bench/api starts
it, to compare `pilots api` with; it is not a server to run for anything else.

Run: `.venv/bin/python -m bench.baseline_api --port PORT`.
"""

from __future__ import annotations

import argparse
import urllib.parse
import urllib.request
from typing import Any

import orjson

from api.deps import TimeRangeDep
from core.store.influx import InfluxStore


def baseline_app() -> Any:
    """A server answering `series` with InfluxQL GROUP BY time() and `report` from a scan."""
    from fastapi import FastAPI
    from fastapi.responses import ORJSONResponse

    from api.services.report import build_report
    from core.registry import load_registry
    from core.settings import load_settings
    from core.timeutil import parse_duration_s

    settings = load_settings()
    registry = load_registry(settings.registry)
    store = InfluxStore.from_settings(settings, registry)
    store.start()
    app = FastAPI()
    app.state.settings = settings
    app.state.registry = registry
    url = settings.influx_url
    database = settings.influx_database

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/pilots/{pilot}/series")
    def series(pilot: str, sensor: str, every: str, window: TimeRangeDep) -> ORJSONResponse:
        width = parse_duration_s(every)
        q = (
            f'SELECT count("{sensor}"), mean("{sensor}"), min("{sensor}"), max("{sensor}") '
            f'FROM "readings" WHERE "pilot" = \'{pilot}\' AND time >= {window.start_ns} '
            f'AND time < {window.end_ns} GROUP BY time({width}s, -3h), "device" fill(none)'
        )
        query = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ns"})
        with urllib.request.urlopen(f"{url}/query?{query}", timeout=600) as response:
            body = orjson.loads(response.read())
        lines = [
            {
                "device": s["tags"]["device"],
                "windows": [
                    {"start": v[0], "count": v[1], "mean": v[2], "min": v[3], "max": v[4]}
                    for v in s["values"]
                ],
            }
            for s in body["results"][0].get("series", [])
        ]
        return ORJSONResponse({"pilot": pilot, "sensors": [{"sensor": sensor, "lines": lines}]})

    @app.get("/pilots/{pilot}/report")
    def report(pilot: str, window: TimeRangeDep) -> Any:
        built = build_report(
            registry, store, registry.pilots[pilot], window.start_ns, window.end_ns
        )
        return built.report

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(baseline_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

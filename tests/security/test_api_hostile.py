"""The API against a hostile read token, over a real influxd holding 40 days of the fleet.

Every operation under schemathesis answers no 5xx; for each endpoint, the costliest requests a
read token can make (bench/abuse.py's catalogue) are refused, or answered with this process's
RSS (the API runs in it) growing by at most 64 MB at the peak.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from schemathesis import Case, checks

from api.app import create_app
from api.auth import TokenStore
from bench.abuse import HOUR_NS, RSS_BOUND, Abuse, fill, measure, worst_requests
from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from tests.services import Influxd

pytestmark = pytest.mark.integration

DAYS = 40


class World:
    """The API over a filled influxd, and tokens."""

    def __init__(self, client: TestClient, admin: dict[str, str], end_ns: int) -> None:
        self.client = client
        self.admin = admin
        self.end_ns = end_ns


@pytest.fixture(scope="module")
def world(
    influxd: Influxd, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("hostile")
    database = f"hostile_{uuid.uuid4().hex[:8]}"
    store = InfluxStore(influxd.url, database, registry)
    store.start()
    end_ns = time.time_ns() // HOUR_NS * HOUR_NS
    fill(store, registry, DAYS, end_ns)
    settings = Settings(
        data_dir=data_dir, influx_url=influxd.url, influx_database=database, _env_file=None
    )
    tokens = TokenStore.in_data_dir(data_dir)
    app = create_app(settings, registry, store)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {tokens.create('curious', 'read')}"
        admin = {"Authorization": f"Bearer {tokens.create('ops', 'admin')}"}
        # Each pilot's hot cache loads at its first request, by design: not a request's cost.
        for pilot in ("santa-fe", "san-nicolas", "resistencia"):
            client.get(f"/pilots/{pilot}/series", params={"sensor": "temperature"})
        yield World(client, admin, end_ns)
    store.close()


def _operations() -> list[tuple[str, str]]:
    from api.routes import export as data
    from api.routes import health, pilots, quarantine, report, series

    return sorted(
        (method, route.path)
        for module in (data, health, pilots, quarantine, report, series)
        for route in module.router.routes
        if isinstance(route, APIRoute) and route.include_in_schema and route.methods is not None
        for method in route.methods
    )


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_generated_request_gets_a_5xx(world: World, method: str, path: str) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", world.client.app)[path][method]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=100, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
    )
    def check(case: Case[Any]) -> None:
        # With the admin token, every operation is reached; a 4xx naming the parameter is the
        # right answer to what the schema cannot rule out (instants, windows, limits).
        case.call_and_validate(
            headers=world.admin,
            checks=[checks.not_a_server_error],
            excluded_checks=[checks.positive_data_acceptance],
        )

    check()


WORST = worst_requests(time.time_ns() // HOUR_NS * HOUR_NS, DAYS)


@pytest.mark.parametrize("abuse", WORST, ids=[f"{a.endpoint}: {a.what}" for a in WORST])
def test_the_worst_requests_are_refused_or_stay_under_64_mb(world: World, abuse: Abuse) -> None:
    # The catalogue is built at import; rebuild this entry on the world's own clock.
    (current,) = [
        a
        for a in worst_requests(world.end_ns, DAYS)
        if (a.endpoint, a.what) == (abuse.endpoint, abuse.what)
    ]
    measured = measure(world.client, current)
    assert measured.status < 500
    if current.refused:
        assert measured.status in (400, 422), measured
    else:
        assert measured.status == 200, measured
        assert measured.rss_bytes <= RSS_BOUND, measured

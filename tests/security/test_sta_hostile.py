"""The SensorThings API (`/sta/v1.1`) against the worst read token and an anonymous stranger.

Each failing test here shows one problem found in a hostile review of `api/sta/*`; it fails
until the problem is fixed. The last test pins what held (a stranger cannot read a private
pilot, or a public pilot outside its published period, with forged ids or paging tokens).

The app runs in-process over the embedded store (as tests/unit/test_public_access.py), with
the store wrapped to count its queries: a request's cost is the number of store queries it
makes, which is what a real InfluxDB makes slow (about 5 ms a query on a local influxd, so
4000 queries hold one of the process's two scan slots for about 20 s).
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenStore
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import MINUTE_NS, parse_instant_ns

STA = "/sta/v1.1"
T0 = parse_instant_ns("2026-11-01T00:00:00Z")
STEP = 10 * MINUTE_NS
#: sf-rlv-01's level: one reading every 10 minutes, about four weeks.
N = 4000
LEVEL_TS = T0 + np.arange(N, dtype=np.int64) * STEP
LEVEL = np.sin(np.arange(N) / 50)
#: A scan bound above the series (so a filtered $count over it is within the limit).
MAX_SCAN = 6000
#: rs-rlv-01 belongs to Resistencia, which stays private.
PRIVATE_TS = T0 + np.arange(100, dtype=np.int64) * STEP
#: Santa Fe is published for the local days 2026-11-02 and 2026-11-03 (UTC-3).
PUBLIC_FROM = parse_instant_ns("2026-11-02T00:00:00-03:00")
PUBLIC_UNTIL = parse_instant_ns("2026-11-04T00:00:00-03:00")


class CountingStore:
    """The store, with its reading queries counted."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("count", "scan", "latest"):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def _registry(tmp_path: Path, public: dict[str, object]) -> Registry:
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    raw["pilots"]["santa-fe"].update(public)
    return build_registry(raw, tmp_path / "registry.toml")


def _readings(registry: Registry, device: str, sensor: str, ts: Any, value: Any) -> Readings:
    n = len(ts)
    return Readings.from_arrays(
        np.asarray(ts, np.int64),
        [registry.devices[device].code] * n,
        [registry.sensors[sensor].code] * n,
        np.asarray(value, np.float64),
    )


World = tuple[TestClient, CountingStore, dict[str, str]]


def _world(tmp_path: Path, public: dict[str, object], **limits: Any) -> Iterator[World]:
    registry = _registry(tmp_path, public)
    inner = EmbeddedStore(tmp_path / "store.sqlite", registry)
    inner.start()
    inner.write(_readings(registry, "sf-rlv-01", "level", LEVEL_TS, LEVEL))
    inner.write(_readings(registry, "rs-rlv-01", "level", PRIVATE_TS, np.ones(len(PRIVATE_TS))))
    store = CountingStore(inner)
    tokens = TokenStore.in_data_dir(tmp_path)
    read = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    settings = Settings(
        data_dir=tmp_path,
        api_public_rate="100000/minute",
        api_public_rate_total="100000/minute",
        api_max_scan_readings=MAX_SCAN,
        _env_file=None,
        **limits,
    )
    app = create_app(settings, registry, store, cache=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, store, read
    tokens.close()
    inner.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Santa Fe published for good (`public = true`), Resistencia private."""
    yield from _world(tmp_path_factory.mktemp("sta-hostile"), {"public": True})


@pytest.fixture(scope="module")
def period(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Santa Fe published for two local days only."""
    yield from _world(
        tmp_path_factory.mktemp("sta-hostile-period"),
        {"public": True, "public_from": date(2026, 11, 2), "public_until": date(2026, 11, 4)},
    )


def _measured(store: CountingStore, request: Callable[[], Any]) -> tuple[Any, int]:
    store.calls = 0
    response = request()
    return response, store.calls


# -- 500s for what a client sent ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("Things", {"$top": "²"}),  # superscript two: str.isdigit() is true, int() refuses it
        ("Things", {"$skip": "³"}),
        ("Datastreams('sf-rlv-01:level')/Observations", {"$top": "¹"}),
        ("Observations('sf-rlv-01:level:²')", {}),
        ("Observations('sf-rlv-01:level:--5')", {}),  # lstrip('-') takes both dashes
        ("Datastreams('sf-rlv-01:level')/Observations('sf-rlv-01:level:-²')", {}),
    ],
)
@pytest.mark.parametrize("token", [True, False], ids=["token", "anonymous"])
def test_odd_digits_are_a_client_error_not_a_500(
    world: World, path: str, params: dict[str, str], token: bool
) -> None:
    """`options._integer` and `resolve.Resolver.observation` test text with `str.isdigit`
    (true for '²', '³', '¹') or `lstrip('-')` and then call `int()`, which raises ValueError:
    an unhandled 500, for a stranger as for a token."""
    client, _, read = world
    response = client.get(f"{STA}/{path}", params=params, headers=read if token else {})
    assert response.status_code in (400, 404), (response.status_code, response.text[:200])
    assert response.json()["detail"]


# -- cost: one request, thousands of store queries, then a 400 ------------------------------------


def test_a_stranger_cannot_make_one_request_do_thousands_of_store_queries(world: World) -> None:
    """Each of a page's observations expands its Datastream's `Observations($top=0;$count=true)`:
    one store `count` per observation, and `$top=0` adds nothing to the expansion budget
    (`MAX_EXPANDED_OBSERVATIONS`). The request bound (`MAX_REQUEST_QUERIES`, 4000) is checked
    only after the queries are made: anonymously, the request makes 4001 store queries and then
    answers 400 (over InfluxDB: 20.8 s alone; two such requests at once took 26.5 s and every
    researcher's Observations request meanwhile got 503, both scan slots being held). The cost
    must be bounded before the work: refused, or a shorter page, after a few queries."""
    client, store, _ = world
    response, calls = _measured(
        store,
        lambda: client.get(
            f"{STA}/Datastreams('sf-rlv-01:level')/Observations",
            params={
                "$top": str(N),
                "$expand": "Datastream($expand=Observations($top=0;$count=true))",
            },
        ),
    )
    assert response.status_code in (200, 400), response.text[:200]
    assert calls <= 200, (calls, response.status_code, response.text[:200])


def test_a_strangers_request_does_not_hold_the_scan_slots_researchers_need(
    tmp_path: Path,
) -> None:
    """With one scan slot (`PILOTS_API_MAX_CONCURRENT_SCANS=1`, a short wait): while the
    stranger's request of the test above runs, a researcher's one-page request is refused 503.
    Over InfluxDB with the default two slots, two such anonymous requests (within the default
    60/minute) kept every researcher's Observations request at 503 for 26 s."""
    worlds = _world(tmp_path, {"public": True}, api_max_concurrent_scans=1, api_scan_wait_s=0.2)
    client, store, read = next(worlds)
    try:
        done = threading.Event()
        evil: dict[str, Any] = {}

        def attack() -> None:
            evil["response"] = client.get(
                f"{STA}/Datastreams('sf-rlv-01:level')/Observations",
                params={
                    "$top": str(N),
                    "$expand": "Datastream($expand=Observations($top=0;$count=true))",
                },
            )
            done.set()

        store.calls = 0
        worker = threading.Thread(target=attack)
        worker.start()
        while not done.is_set() and store.calls < 200:
            done.wait(0.001)
        page = client.get(
            f"{STA}/Datastreams('sf-rlv-01:level')/Observations",
            params={"$top": "100"},
            headers=read,
        )
        worker.join(60)
        assert page.status_code == 200, (page.status_code, page.text[:200])
        assert evil["response"].status_code in (200, 400)
    finally:
        for _ in worlds:
            pass


# -- correctness: a filtered $count within the scan bound -----------------------------------------


def test_a_count_with_a_result_filter_within_the_scan_bound_is_answered(world: World) -> None:
    """`$count=true` with a `result` filter over a series of 4000 readings, under the scan
    bound (6000 here): `Renderer._count` checks the count fits the bound, reads the series once
    to count, and then the page reads it again with the same budget and is refused 400
    "ask for a smaller $top" (the count alone fits; it is the page after it that overflows).
    With the default bound (250,000), a series of 157,680 readings (three years, one every 10
    min) fails the same way: its count fits, count plus page does not."""
    client, _, read = world
    response = client.get(
        f"{STA}/Datastreams('sf-rlv-01:level')/Observations",
        params={"$filter": "result gt 5", "$count": "true"},
        headers=read,
    )
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["@iot.count"] == 0
    assert body["value"] == []


# -- correctness: $orderby=id --------------------------------------------------------------------


def test_observations_ordered_by_id_come_in_id_order(world: World) -> None:
    """`$orderby=id` on `/Observations` is accepted (docs: "across Datastreams they come by
    id: Datastream, then time") but the series come in registry order (devices as listed,
    each device's sensors as listed): `sf-rlv-01:level` before `rs-rlv-01:level`, and
    `sf-rlv-01:water_temp` before `sf-rlv-01:battery_v`. A client that merges or bisects by
    id gets a wrong answer without an error."""
    client, _, read = world
    ids: list[str] = []
    url: str | None = f"{STA}/Observations?$orderby=id&$top=1000&$select=id"
    while url is not None:
        response = client.get(url, headers=read)
        assert response.status_code == 200, response.text[:200]
        body = response.json()
        ids += [o["@iot.id"] for o in body["value"]]
        url = body.get("@iot.nextLink")
    assert len(ids) == N + len(PRIVATE_TS)
    assert ids == sorted(ids), (ids[0], ids[-1])


# -- what held -----------------------------------------------------------------------------------


def test_forged_ids_and_skiptokens_do_not_reach_past_what_a_stranger_may_read(
    period: World,
) -> None:
    """A private device's Observation id is 404; a public device's reading outside the published
    period is 404 by id, and neither a `$skiptoken` nor a `$filter` on time reaches it."""
    client, _, read = period
    inside = LEVEL_TS[(LEVEL_TS >= PUBLIC_FROM) & (LEVEL_TS < PUBLIC_UNTIL)]
    before, after = int(LEVEL_TS[0]), int(LEVEL_TS[-1])
    for path in (
        f"Observations('rs-rlv-01:level:{int(PRIVATE_TS[0])}')",
        f"Observations('sf-rlv-01:level:{before}')",
        f"Observations('sf-rlv-01:level:{after}')",
        "Datastreams('rs-rlv-01:level')/Observations",
    ):
        assert client.get(f"{STA}/{path}").status_code == 404, path
        assert client.get(f"{STA}/{path}", headers=read).status_code == 200, path
    level = f"{STA}/Datastreams('sf-rlv-01:level')/Observations"
    for params in (
        {"$skiptoken": f"0~{before}", "$top": "1"},
        {"$skiptoken": f"0~{after + 1}", "$top": "1", "$orderby": "phenomenonTime desc"},
        {"$skiptoken": "0~", "$top": "1"},
    ):
        body = client.get(level, params=params).json()
        got = [int(o["@iot.id"].rsplit(":", 1)[1]) for o in body["value"]]
        assert got and all(int(inside[0]) <= t <= int(inside[-1]) for t in got), (params, got)
    outside = client.get(
        level,
        params={"$filter": "phenomenonTime lt 2026-11-02T00:00:00-03:00", "$count": "true"},
    ).json()
    assert outside == {"@iot.count": 0, "value": []}
    everything = client.get(f"{STA}/Observations", params={"$count": "true", "$top": "0"}).json()
    assert everything["@iot.count"] == len(inside)
    assert client.get(f"{STA}/Observations", params={"$skiptoken": "999~"}).status_code == 400

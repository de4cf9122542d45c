"""The SensorThings API served by uvicorn over a real InfluxDB, read with real clients.

One server and one store for the module: readings are written through the store's own write
path (`InfluxStore.write`), then read back through `/sta/v1.1` with the FROST project's Python
client (`frost_sta_client`, which follows `@iot.nextLink`) and with plain HTTP for the
requests of the standard's own examples (OGC 18-088, SensorThings API Part 1 v1.1: the
section is in each test's name or docstring). Santa Fe is published from 2026-11-02 to before
2026-11-04 (local days, UTC-3) in this module's registry; the other pilots are private.
"""

from __future__ import annotations

import datetime
import socket
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import frost_sta_client as fsc
import httpx
import numpy as np
import pytest
import requests
import uvicorn
from frost_sta_client.service.auth_handler import AuthHandler

from api.app import create_app
from api.auth import TokenStore
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.settings import Settings
from core.store.influx import InfluxStore
from core.timeutil import MINUTE_NS, parse_instant_ns
from tests.helpers import wait_for
from tests.services import Influxd

pytestmark = pytest.mark.integration

T0 = parse_instant_ns("2026-11-01T00:00:00Z")
STEP = 10 * MINUTE_NS
LEVEL_N = 576  # four days of sf-rlv-01's level, one every 10 minutes
PUBLIC_FROM = parse_instant_ns("2026-11-02T00:00:00-03:00")
PUBLIC_UNTIL = parse_instant_ns("2026-11-04T00:00:00-03:00")
LEVEL_TS = T0 + np.arange(LEVEL_N, dtype=np.int64) * STEP
LEVEL = np.round(np.arange(LEVEL_N) / 100, 2)


@dataclass
class World:
    """The served API's root URL, a read token, and the registry it serves."""

    root: str
    token: str
    registry: Registry

    def get(
        self, path: str, params: dict[str, str] | None = None, *, token: bool = True
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        url = path if path.startswith("http") else f"{self.root}/{path}"
        return httpx.get(url, params=params, headers=headers, timeout=30)

    def json(self, path: str, params: dict[str, str] | None = None, *, token: bool = True) -> Any:
        response = self.get(path, params, token=token)
        assert response.status_code == 200, response.text
        return response.json()


class Bearer(AuthHandler):  # type: ignore[misc]
    """frost_sta_client sends HTTP basic; the API takes a bearer token (requests' auth hook)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def add_auth_header(self) -> Any:
        token = self.token

        def sign(request: requests.PreparedRequest) -> requests.PreparedRequest:
            request.headers["Authorization"] = f"Bearer {token}"
            return request

        return sign


def published_registry() -> Registry:
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    raw["pilots"]["santa-fe"].update(
        public=True,
        public_from=datetime.date(2026, 11, 2),
        public_until=datetime.date(2026, 11, 4),
    )
    return build_registry(raw, DEFAULT_REGISTRY_PATH)


def readings(registry: Registry, device: str, sensor: str, ts: Any, value: Any) -> Readings:
    n = len(ts)
    return Readings.from_arrays(
        ts,
        [registry.devices[device].code] * n,
        [registry.sensors[sensor].code] * n,
        value,
    )


@pytest.fixture(scope="module")
def world(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    registry = published_registry()
    data_dir = tmp_path_factory.mktemp("sta")
    store = InfluxStore(influxd.url, "test_sta", registry)
    store.start()
    store.write(readings(registry, "sf-rlv-01", "level", LEVEL_TS, LEVEL))
    store.write(
        readings(registry, "sf-rlv-01", "water_temp", LEVEL_TS[:144], 20 + LEVEL[:144] / 10)
    )
    store.write(readings(registry, "sf-rg-01", "rain", LEVEL_TS[:10], np.ones(10)))
    store.write(readings(registry, "rs-rlv-01", "level", LEVEL_TS[:100], LEVEL[:100]))
    tokens = TokenStore.in_data_dir(data_dir)
    token = tokens.create("ana", "read")
    settings = Settings(data_dir=data_dir, api_public_rate="100000/minute", _env_file=None)
    app = create_app(settings, registry, store, cache=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "uvicorn started", interval_s=0.02)
        port = listener.getsockname()[1]
        yield World(f"http://127.0.0.1:{port}/sta/v1.1", token, registry)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
        tokens.close()
        store.close()


@pytest.fixture(scope="module")
def service(world: World) -> fsc.SensorThingsService:
    return fsc.SensorThingsService(world.root, auth_handler=Bearer(world.token))


def iso(ts_ns: int) -> str:
    return np.datetime_as_string(np.datetime64(ts_ns, "ns"), unit="s", timezone="UTC").item()


# -- the FROST client ---------------------------------------------------------------------------


def test_frost_client_lists_every_device_as_a_thing_across_pages(
    world: World, service: fsc.SensorThingsService
) -> None:
    things = service.things().query().top(5).count().list()
    assert things.count == len(world.registry.device_list)
    ids = [thing.id for thing in things]  # iterating follows @iot.nextLink, five at a time
    assert ids == [d.id for d in world.registry.device_list]
    first = next(t for t in things if t.id == "sf-rlv-01")
    assert first.properties == {
        "pilot": "santa-fe",
        "kind": "river_level",
        "site": "Puerto de Santa Fe",
        "interval_s": 600,
    }


def test_frost_client_pages_a_datastreams_observations_in_time_order(
    service: fsc.SensorThingsService,
) -> None:
    datastream = service.datastreams().find("sf-rlv-01:level")
    assert datastream.unit_of_measurement.symbol == "m"
    assert datastream.phenomenon_time is not None
    observations = list(
        datastream.get_observations().query().top(100).orderby("phenomenonTime", "ASC").list()
    )
    assert len(observations) == LEVEL_N  # six pages of 100, by nextLink
    assert [o.result for o in observations] == LEVEL.tolist()
    assert observations[0].phenomenon_time.startswith("2026-11-01T00:00:00")
    assert observations[-1].phenomenon_time.startswith(iso(int(LEVEL_TS[-1]))[:19])
    newest = list(
        datastream.get_observations().query().top(3).orderby("phenomenonTime", "DESC").list()
    )
    assert [o.result for o in newest][:3] == LEVEL[::-1][:3].tolist()


def test_frost_client_filters_and_expands(service: fsc.SensorThingsService) -> None:
    things = list(
        service.things()
        .query()
        .filter("properties/pilot eq 'resistencia'")
        .expand("Datastreams($top=2;$expand=ObservedProperty)")
        .list()
    )
    assert {t.id for t in things} == {
        "rs-wq-01",
        "rs-wq-02",
        "rs-wq-03",
        "rs-rlv-01",
        "rs-rg-01",
        "rs-rg-02",
        "rs-wx-01",
    }
    gauge = next(t for t in things if t.id == "rs-rlv-01")
    # The expansion's first page; iterating it would follow Datastreams@iot.nextLink.
    assert [d.id for d in gauge.datastreams.entities] == ["rs-rlv-01:level", "rs-rlv-01:water_temp"]
    assert gauge.datastreams.next_link is not None
    assert gauge.datastreams.get(0).observed_property.name == "River level"
    datastream = service.datastreams().find("sf-rlv-01:level")
    high = list(
        datastream.get_observations()
        .query()
        .filter("result gt 5 and phenomenonTime lt 2026-11-04T12:00:00Z")
        .list()
    )
    expected = (LEVEL > 5) & (parse_instant_ns("2026-11-04T12:00:00Z") > LEVEL_TS)
    assert [o.result for o in high] == LEVEL[expected].tolist()


# -- the standard's examples (18-088) ------------------------------------------------------------


def test_9_2_1_service_root_lists_the_entity_sets_and_conformance(world: World) -> None:
    body = world.json("")
    names = [v["name"] for v in body["value"]]
    assert names == [
        "Things",
        "Locations",
        "HistoricalLocations",
        "Sensors",
        "ObservedProperties",
        "Datastreams",
        "Observations",
        "FeaturesOfInterest",
    ]
    assert body["value"][0]["url"] == f"{world.root}/Things"
    assert (
        "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/expand"
        in body["serverSettings"]["conformance"]
    )


def test_9_2_3_to_9_2_8_an_entity_its_property_value_relations_and_refs(world: World) -> None:
    thing = world.json("Things('sf-rlv-01')")
    assert thing["@iot.id"] == "sf-rlv-01"
    assert thing["@iot.selfLink"] == f"{world.root}/Things('sf-rlv-01')"
    assert (
        thing["Datastreams@iot.navigationLink"] == f"{world.root}/Things('sf-rlv-01')/Datastreams"
    )
    assert world.json("Things('sf-rlv-01')/name") == {"name": "sf-rlv-01"}
    assert world.get("Things('sf-rlv-01')/name/$value").text == "sf-rlv-01"
    assert world.get("Things('sf-rlv-01')/properties/$value").json()["pilot"] == "santa-fe"
    location = world.json("Things('sf-rlv-01')/Locations")["value"][0]
    assert location["encodingType"] == "application/geo+json"
    assert location["location"] == {"type": "Point", "coordinates": [-60.6942, -31.6495]}
    assert world.json("Datastreams('sf-rlv-01:level')/Thing")["@iot.id"] == "sf-rlv-01"
    refs = world.json("Things('sf-rlv-01')/Datastreams/$ref")["value"]
    assert refs[0] == {"@iot.selfLink": f"{world.root}/Datastreams('sf-rlv-01:level')"}
    assert world.json("HistoricalLocations") == {"value": []}
    one = f"Observations('sf-rlv-01:level:{int(LEVEL_TS[0])}')"
    assert world.json(f"{one}/FeatureOfInterest")["feature"] == location["location"]
    assert world.json(f"{one}/Datastream/$ref") == {
        "@iot.selfLink": f"{world.root}/Datastreams('sf-rlv-01:level')"
    }
    of_feature = world.json("FeaturesOfInterest('sf-rlv-01')/Observations", {"$count": "true"})
    assert of_feature["@iot.count"] == LEVEL_N + 144  # its level and its water temperature


def test_8_2_datastream_from_the_registry_and_the_stores_times(world: World) -> None:
    datastream = world.json("Datastreams('sf-rlv-01:level')")
    assert datastream["unitOfMeasurement"]["symbol"] == "m"
    assert datastream["observationType"].endswith("OM_Measurement")
    assert datastream["observedArea"]["type"] == "Point"
    span = f"{iso(int(LEVEL_TS[0]))}/{iso(int(LEVEL_TS[-1]))}"
    assert datastream["phenomenonTime"] == span
    assert datastream["resultTime"] == span
    assert world.json("Datastreams('sf-rg-02:rain')")["phenomenonTime"] is None


def test_9_3_2_1_expand_datastreams_observed_property(world: World) -> None:
    things = world.json("Things", {"$expand": "Datastreams/ObservedProperty", "$top": "3"})
    assert len(things["value"]) == 3
    for thing in things["value"]:
        assert thing["Datastreams"], thing["@iot.id"]
        for datastream in thing["Datastreams"]:
            assert datastream["ObservedProperty"]["@iot.id"] == datastream["@iot.id"].split(":")[1]
    newest = world.json(
        "Datastreams('sf-rlv-01:level')",
        {"$expand": "Observations($top=2;$orderby=phenomenonTime desc;$select=result)"},
    )
    assert newest["Observations"] == [{"result": LEVEL[-1]}, {"result": LEVEL[-2]}]
    assert "Observations@iot.nextLink" in newest


def test_9_3_2_2_select_keeps_only_what_is_named(world: World) -> None:
    body = world.json("Datastreams", {"$select": "id,name", "$top": "2"})
    assert body["value"][0] == {"@iot.id": "sf-rlv-01:level", "name": "River level at sf-rlv-01"}
    one = f"Observations('sf-rlv-01:level:{int(LEVEL_TS[5])}')"
    assert world.json(one, {"$select": "result,resultTime"}) == {
        "result": LEVEL[5],
        "resultTime": iso(int(LEVEL_TS[5])),
    }


def test_9_3_3_orderby_top_skip_count_and_next_link(world: World) -> None:
    ordered = world.json("Things", {"$orderby": "name desc", "$top": "5"})
    names = [t["name"] for t in ordered["value"]]
    assert names == sorted((d.id for d in world.registry.device_list), reverse=True)[:5]
    skipped = world.json("Things", {"$skip": "5", "$top": "5", "$count": "true"})
    assert skipped["@iot.count"] == len(world.registry.device_list)
    assert [t["@iot.id"] for t in skipped["value"]] == [
        d.id for d in world.registry.device_list[5:10]
    ]
    following = world.json(skipped["@iot.nextLink"])
    assert [t["@iot.id"] for t in following["value"]] == [
        d.id for d in world.registry.device_list[10:15]
    ]


def test_9_3_3_5_filter_on_names_results_and_times(world: World) -> None:
    observed = world.json("ObservedProperties", {"$filter": "name eq 'River level'"})
    assert [o["@iot.id"] for o in observed["value"]] == ["level"]
    body = world.json(
        "Observations",
        {
            "$filter": "result gt 4 and result lt 10 and phenomenonTime lt 2026-11-04T00:00:00Z",
            "$count": "true",
            "$top": "1000",
        },
    )
    # Only sf-rlv-01's level goes past 4 (water temperatures are about 20, rain 1).
    expected = (LEVEL > 4) & (parse_instant_ns("2026-11-04T00:00:00Z") > LEVEL_TS)
    assert expected.sum() > 10
    assert body["@iot.count"] == int(expected.sum())
    assert [o["result"] for o in body["value"]] == LEVEL[expected].tolist()
    either = world.json(
        "Datastreams('sf-rlv-01:level')/Observations",
        {"$filter": "not (result ge 0.03) or (result eq 5.5)", "$select": "result"},
    )
    assert [o["result"] for o in either["value"]] == [0.0, 0.01, 0.02, 5.5]


def test_data_array_result_format(world: World) -> None:
    body = world.json(
        "Datastreams('sf-rlv-01:level')/Observations",
        {"$resultFormat": "dataArray", "$top": "3", "$count": "true"},
    )
    assert body["@iot.count"] == LEVEL_N
    (block,) = body["value"]
    assert block["Datastream@iot.navigationLink"] == f"{world.root}/Datastreams('sf-rlv-01:level')"
    assert block["components"] == ["id", "phenomenonTime", "resultTime", "result"]
    assert block["dataArray@iot.count"] == 3
    ts = int(LEVEL_TS[1])
    assert block["dataArray"][1] == [f"sf-rlv-01:level:{ts}", iso(ts), iso(ts), LEVEL[1]]


def test_observations_across_datastreams_come_in_bounded_pages(world: World) -> None:
    seen: list[str] = []
    url: str | None = f"{world.root}/Observations?$top=250"
    pages = 0
    while url is not None:
        body = world.json(url)
        assert len(body["value"]) <= 250
        seen += [o["@iot.id"] for o in body["value"]]
        url = body.get("@iot.nextLink")
        pages += 1
    assert len(seen) == len(set(seen)) == LEVEL_N + 144 + 10 + 100
    assert pages >= 4


# -- who sees what ------------------------------------------------------------------------------


def test_anonymous_sees_the_published_pilot_only(world: World) -> None:
    things = world.json("Things", {"$top": "100"}, token=False)
    santa_fe = [d.id for d in world.registry.pilots["santa-fe"].devices]
    assert [t["@iot.id"] for t in things["value"]] == santa_fe
    assert world.get("Things('rs-rlv-01')", token=False).status_code == 404
    assert world.get("Datastreams('rs-rlv-01:level')/Observations", token=False).status_code == 404
    datastreams = world.json("Datastreams", {"$top": "1000", "$select": "id"}, token=False)
    assert not [d for d in datastreams["value"] if d["@iot.id"].startswith("rs-")]
    everything = world.json("Observations", {"$count": "true", "$top": "1"}, token=False)
    inside = (LEVEL_TS >= PUBLIC_FROM) & (LEVEL_TS < PUBLIC_UNTIL)
    # sf-rlv-01's level; its water_temp and sf-rg-01's rain all precede the period.
    assert everything["@iot.count"] == int(inside.sum())


def test_anonymous_reads_observations_within_the_published_period_only(world: World) -> None:
    path = "Datastreams('sf-rlv-01:level')/Observations"
    results: list[float] = []
    url: str | None = f"{world.root}/{path}?$top=100&$select=result,phenomenonTime"
    while url is not None:
        body = world.json(url, token=False)
        results += [o["result"] for o in body["value"]]
        url = body.get("@iot.nextLink")
    inside = (LEVEL_TS >= PUBLIC_FROM) & (LEVEL_TS < PUBLIC_UNTIL)
    assert results == LEVEL[inside].tolist()
    datastream = world.json("Datastreams('sf-rlv-01:level')", token=False)
    first, last = LEVEL_TS[inside][0], LEVEL_TS[inside][-1]
    assert datastream["phenomenonTime"] == f"{iso(int(first))}/{iso(int(last))}"
    before = f"Observations('sf-rlv-01:level:{int(LEVEL_TS[0])}')"
    assert world.get(before, token=False).status_code == 404
    assert world.json(before)["result"] == LEVEL[0]
    assert world.json(path, {"$count": "true", "$top": "0"})["@iot.count"] == LEVEL_N


# -- hostile requests -----------------------------------------------------------------------------

HOSTILE = [
    ("Things", {"$filter": "(" * 40 + "name eq 'x'" + ")" * 40}),
    ("Things", {"$filter": "name eq '" + "x" * 5000 + "'"}),
    ("Things", {"$filter": "name eq"}),
    ("Things", {"$filter": "))((name"}),
    ("Things", {"$filter": "geo.intersects(location, geography'POINT(1 2)')"}),
    ("Things", {"$filter": "id add 1 eq 2"}),
    ("Things", {"$expand": "Datastreams/Observations/Datastream"}),
    ("Things", {"$expand": "Datastreams($expand=Observations($expand=Datastream))"}),
    ("Things", {"$expand": "Nothing"}),
    ("Things", {"$top": "99999999999999999999"}),
    ("Things", {"$top": "-1"}),
    ("Things", {"$top": "many"}),
    ("Things", {"$search": "river"}),
    ("Things", {"$bogus": "1"}),
    ("Things", {"$orderby": "properties desc"}),
    ("Things", {"$select": "nothing"}),
    ("Observations", {"$skip": "100000000"}),
    ("Observations", {"$orderby": "result"}),
    ("Observations", {"$skiptoken": "garbage"}),
    ("Observations", {"$skiptoken": "99~1"}),
    ("Observations", {"$filter": "name eq 'x'"}),
    ("Observations", {"$filter": "result gt 'high'"}),
    ("Observations", {"$resultFormat": "csv"}),
    ("Observations('sf-rlv-01:level:not-a-time')", {}),
    ("Observations('sf-rlv-01:level:1')", {}),
    ("Thingz", {}),
    ("Things('sf-rlv-01)", {}),
    ("Things(sf-rlv-01)", {}),
    ("Things('nobody')", {}),
    ("Things('sf-rlv-01')/Datastreams/Observations", {}),
    ("Things('sf-rlv-01')/nothing", {}),
    ("Things('sf-rlv-01')/$value", {}),
    ("Things/" + "x" * 600, {}),
]


def test_hostile_requests_are_refused_with_a_client_error(world: World) -> None:
    for path, params in HOSTILE:
        response = world.get(path, params)
        assert 400 <= response.status_code < 500 or response.status_code == 501, (
            path,
            params,
            response.status_code,
            response.text[:200],
        )
        assert response.json()["detail"], (path, params)


def test_a_huge_top_is_served_in_pages_and_a_skip_beyond_is_empty(world: World) -> None:
    body = world.json("Datastreams('sf-rlv-01:level')/Observations", {"$top": "2000000000"})
    assert len(body["value"]) == LEVEL_N  # under the server's page size: all of it
    assert "@iot.nextLink" not in body
    assert world.json("Things", {"$skip": "1000"}) == {"value": []}
    past = world.json("Datastreams('sf-rlv-01:level')/Observations", {"$skip": "5000"})
    assert past == {"value": []}

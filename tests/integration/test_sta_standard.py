"""`/sta/v1.1` against the text of the standard: OGC 18-088, SensorThings API Part 1 v1.1.

Each test replays the example requests of one section of 18-088 (or a requirement of its
Annex A, as the OGC conformance test suite and FROST-Server's test suite check it) and names
them: "§9.2.4" is 18-088 clause 9.2.4, "req/request-data/count" the requirement
`http://www.opengis.net/spec/iot_sensing/1.1/req/request-data/count`. The standard's examples
use numeric ids (`Things(1)`); here the ids are the registry's, quoted. One app over the
embedded store for the module (tests/integration/test_sta.py reads the same API over InfluxDB
with the FROST client).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenStore
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import MINUTE_NS, parse_instant_ns

pytestmark = pytest.mark.integration

ROOT = "http://testserver/sta/v1.1"
REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
T0 = parse_instant_ns("2026-11-01T00:00:00Z")
N = 30
TS = T0 + np.arange(N, dtype=np.int64) * 10 * MINUTE_NS
LEVEL = np.round(np.arange(N) / 5, 1)  # 0.0, 0.2, ... 5.8
TEMPERATURE = 20 + np.arange(N) / 2  # 20.0 ... 34.5
LEVEL_DS = "Datastreams('sf-rlv-01:level')"
FIRST = f"Observations('sf-rlv-01:level:{int(TS[0])}')"


class Sta:
    """GET under the service root with a read token; `json` insists on a 200."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        url = path if path.startswith("http") else f"{ROOT}/{path}".rstrip("/")
        response: httpx.Response = self.client.get(url, params=params, headers=self.headers)
        return response

    def json(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self.get(path, params)
        assert response.status_code == 200, (path, params, response.text[:300])
        return response.json()

    def status(self, path: str, params: dict[str, str] | None = None) -> int:
        return self.get(path, params).status_code


@pytest.fixture(scope="module")
def sta(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sta]:
    data_dir = tmp_path_factory.mktemp("sta-standard")
    store = EmbeddedStore(data_dir / "store.sqlite", registry)
    store.start()
    for device, sensor, values in (
        ("sf-rlv-01", "level", LEVEL),
        ("sf-wx-01", "temperature", TEMPERATURE),
    ):
        store.write(
            Readings.from_arrays(
                TS,
                [registry.devices[device].code] * N,
                [registry.sensors[sensor].code] * N,
                values,
            )
        )
    tokens = TokenStore.in_data_dir(data_dir)
    headers = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    settings = Settings(data_dir=data_dir, api_public_rate="100000/minute", _env_file=None)
    app = create_app(settings, registry, store, cache=False)
    try:
        with TestClient(app) as client:
            yield Sta(client, headers)
    finally:
        tokens.close()
        store.close()


def iso(ts_ns: int) -> str:
    return np.datetime_as_string(np.datetime64(ts_ns, "ns"), unit="s", timezone="UTC").item()


# -- §9.2 resource path (req/resource-path/resource-path-to-entities) ----------------------------


def test_9_2_1_usage_1_service_root_value_and_server_settings(sta: Sta) -> None:
    body = sta.json("")
    assert set(body) == {"value", "serverSettings"}
    entries = {v["name"]: v["url"] for v in body["value"]}
    for name in (
        "Things",
        "Locations",
        "HistoricalLocations",
        "Datastreams",
        "Sensors",
        "Observations",
        "ObservedProperties",
        "FeaturesOfInterest",
    ):
        assert entries[name] == f"{ROOT}/{name}"
    conformance = body["serverSettings"]["conformance"]
    assert all(uri.startswith(REQ) for uri in conformance)
    for met in ("datamodel", "resource-path/resource-path-to-entities", "data-array/data-array"):
        assert REQ + met in conformance
    assert not [uri for uri in conformance if "create-update-delete" in uri]


#: The requirements of the class request-data (18-088 §9.3) that this service meets in full.
REQUEST_DATA_MET = (
    "order",
    "expand",
    "select",
    "status-code",
    "query-status-code",
    "top",
    "skip",
    "count",
    "filter",
    "pagination",
)


def test_9_2_1_conformance_lists_by_requirement_what_is_met_of_a_class(sta: Sta) -> None:
    """§9.2.1: "If a service implements all requirements from a requirements class, it only
    needs to list the requirements class id": a class id claims every requirement of it."""
    conformance = sta.json("")["serverSettings"]["conformance"]
    assert REQ + "request-data" not in conformance
    for met in REQUEST_DATA_MET:
        assert REQ + "request-data/" + met in conformance


def test_9_2_2_usage_2_a_collection_count_before_value_and_next_link(sta: Sta) -> None:
    body = sta.json("ObservedProperties", {"$count": "true", "$top": "5"})
    assert next(iter(body)) == "@iot.count"  # "If present, it comes before the value"
    assert body["@iot.count"] > 5
    assert len(body["value"]) == 5
    assert "@iot.nextLink" in body
    assert sta.json("HistoricalLocations") == {"value": []}  # empty: an empty array


#: The properties of each entity type (§8.2.1 to §8.2.8), the mandatory and those served here.
PROPERTIES = {
    "Things('sf-rlv-01')": {"name", "description", "properties"},
    "Locations('sf-rlv-01')": {"name", "description", "encodingType", "location", "properties"},
    "Sensors('river_level')": {"name", "description", "encodingType", "metadata", "properties"},
    "ObservedProperties('level')": {"name", "definition", "description", "properties"},
    LEVEL_DS: {
        "name",
        "description",
        "unitOfMeasurement",
        "observationType",
        "observedArea",
        "phenomenonTime",
        "resultTime",
        "properties",
    },
    FIRST: {"phenomenonTime", "resultTime", "result"},
    "FeaturesOfInterest('sf-rlv-01')": {
        "name",
        "description",
        "encodingType",
        "feature",
        "properties",
    },
}
RELATIONS = {
    "Things('sf-rlv-01')": {"Locations", "HistoricalLocations", "Datastreams"},
    "Locations('sf-rlv-01')": {"Things", "HistoricalLocations"},
    "Sensors('river_level')": {"Datastreams"},
    "ObservedProperties('level')": {"Datastreams"},
    LEVEL_DS: {"Thing", "Sensor", "ObservedProperty", "Observations"},
    FIRST: {"Datastream", "FeatureOfInterest"},
    "FeaturesOfInterest('sf-rlv-01')": {"Observations"},
}


@pytest.mark.parametrize("path", list(PROPERTIES))
def test_9_2_3_usage_3_an_entity_with_its_properties_and_control_information(
    sta: Sta, path: str
) -> None:
    """§8.1 (req/datamodel/entity-control-information) and the §8.2 property tables."""
    entity = sta.json(path)
    links = {k.removesuffix("@iot.navigationLink") for k in entity if k.endswith("navigationLink")}
    assert links == RELATIONS[path]
    assert set(entity) - {k for k in entity if k.endswith("navigationLink")} == {
        "@iot.id",
        "@iot.selfLink",
        *PROPERTIES[path],
    }
    assert entity["@iot.selfLink"].startswith(ROOT + "/")  # "the absolute URL of an entity"
    assert sta.json(entity["@iot.selfLink"]) == entity
    for relation in RELATIONS[path]:
        assert sta.status(entity[f"{relation}@iot.navigationLink"]) == 200


def test_8_2_4_datastream_unit_of_measurement_and_observation_type(sta: Sta) -> None:
    datastream = sta.json("Datastreams('sf-wx-01:temperature')")
    assert datastream["unitOfMeasurement"] == {
        "name": "degree Celsius",  # "the full name of the unitOfMeasurement"
        "symbol": "°C",
        "definition": "http://unitsofmeasure.org/ucum.html#Cel",
    }
    assert datastream["observationType"] == (
        "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
    )
    assert datastream["phenomenonTime"] == f"{iso(int(TS[0]))}/{iso(int(TS[-1]))}"


def test_9_2_4_usage_4_a_property_a_value_inside_it_and_null_as_204(sta: Sta) -> None:
    assert sta.json(f"{FIRST}/resultTime") == {"resultTime": iso(int(TS[0]))}
    assert sta.json("Things('sf-rlv-01')/name") == {"name": "sf-rlv-01"}
    # "properties of that value can be addressed by further property name composition"
    assert sta.json("Things('sf-rlv-01')/properties/pilot") == {"pilot": "santa-fe"}
    assert sta.json(f"{LEVEL_DS}/unitOfMeasurement/symbol") == {"symbol": "m"}
    assert sta.status("Things('sf-rlv-01')/properties/nothing") == 404
    # "If the property is single-valued and has the null value, ... 204 No Content"
    empty = sta.get("Datastreams('sf-rg-02:rain')/phenomenonTime")
    assert empty.status_code == 204
    assert empty.content == b""


def test_9_2_5_usage_5_the_raw_value_of_a_property(sta: Sta) -> None:
    raw = sta.get(f"{FIRST}/resultTime/$value")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/plain")
    assert raw.text == iso(int(TS[0]))
    # "text/plain using the ISO8601 format ... for TM_Period"
    period = sta.get(f"{LEVEL_DS}/phenomenonTime/$value").text
    assert period == f"{iso(int(TS[0]))}/{iso(int(TS[-1]))}"
    assert sta.get("Things('sf-rlv-01')/properties/interval_s/$value").text == "600"
    assert sta.get("Datastreams('sf-rg-02:rain')/phenomenonTime/$value").status_code == 204


def test_9_2_6_usage_6_a_navigation_property(sta: Sta) -> None:
    body = sta.json(f"{LEVEL_DS}/Observations", {"$top": "1000"})
    assert [o["result"] for o in body["value"]] == LEVEL.tolist()
    assert sta.json(f"{LEVEL_DS}/Thing")["@iot.id"] == "sf-rlv-01"


def test_9_2_7_usage_7_association_links(sta: Sta) -> None:
    body = sta.json(f"{LEVEL_DS}/Observations/$ref", {"$top": "2"})
    assert body["value"] == [
        {"@iot.selfLink": f"{ROOT}/Observations('sf-rlv-01:level:{int(t)}')"} for t in TS[:2]
    ]
    assert sta.json(f"{FIRST}/Datastream/$ref") == {"@iot.selfLink": f"{ROOT}/{LEVEL_DS}"}


def test_9_2_8_usage_8_nested_resource_paths(sta: Sta) -> None:
    nested = f"{LEVEL_DS}/Observations('sf-rlv-01:level:{int(TS[0])}')"
    assert sta.json(nested)["result"] == LEVEL[0]
    assert sta.json(f"{nested}/resultTime") == {"resultTime": iso(int(TS[0]))}
    assert sta.json(f"{nested}/FeatureOfInterest")["@iot.id"] == "sf-rlv-01"
    elsewhere = f"Datastreams('sf-wx-01:temperature')/Observations('sf-rlv-01:level:{int(TS[0])}')"
    assert sta.status(elsewhere) == 404  # not an Observation of that Datastream


# -- §9.3 requesting data (req/request-data/...) --------------------------------------------------


def test_9_3_1_req_order_filter_count_orderby_skip_top(sta: Sta) -> None:
    """As the conformance suite's priority check, on one Datastream's Observations."""
    body = sta.json(
        f"{LEVEL_DS}/Observations",
        {
            "$count": "true",
            "$top": "1",
            "$skip": "2",
            "$orderby": "phenomenonTime asc",
            "$filter": "result gt 3",
        },
    )
    above = LEVEL[LEVEL > 3]
    assert body["@iot.count"] == len(above)  # $filter before $count, $count ignores $top/$skip
    assert [o["result"] for o in body["value"]] == [above[2]]  # then $orderby, $skip, $top


def test_9_3_2_1_req_expand_examples(sta: Sta) -> None:
    # Example 1: Things?$expand=Datastreams
    thing = sta.json("Things", {"$expand": "Datastreams", "$top": "1"})["value"][0]
    assert [d["@iot.id"] for d in thing["Datastreams"]] == [
        "sf-rlv-01:level",
        "sf-rlv-01:water_temp",
        "sf-rlv-01:battery_v",
    ]
    assert thing["Datastreams"][0]["unitOfMeasurement"]["symbol"] == "m"
    # Example 2: Things?$expand=Datastreams/ObservedProperty
    things = sta.json("Things", {"$expand": "Datastreams/ObservedProperty", "$top": "2"})
    for one in things["value"]:
        for datastream in one["Datastreams"]:
            assert datastream["ObservedProperty"]["@iot.id"] == datastream["@iot.id"].split(":")[1]
    # Example 3: Datastreams(1)?$expand=Observations,ObservedProperty
    both = sta.json(LEVEL_DS, {"$expand": "Observations,ObservedProperty"})
    assert len(both["Observations"]) == N
    assert both["ObservedProperty"]["name"] == "River level"
    # Example 4: Datastreams(1)?$expand=Observations($filter=result eq 1)
    one = sta.json(LEVEL_DS, {"$expand": "Observations($filter=result eq 1)"})
    assert [o["result"] for o in one["Observations"]] == [1.0]
    # Nested options: $filter, $select, $orderby, $skip, $top, $count and $expand
    nested = sta.json(
        LEVEL_DS,
        {
            "$expand": "Observations($filter=result ge 1;$orderby=phenomenonTime desc;"
            "$skip=1;$top=2;$count=true;$select=result;$expand=FeatureOfInterest($select=id))"
        },
    )
    assert nested["Observations@iot.count"] == int((LEVEL >= 1).sum())
    assert nested["Observations"] == [
        {"result": LEVEL[-2], "FeatureOfInterest": {"@iot.id": "sf-rlv-01"}},
        {"result": LEVEL[-3], "FeatureOfInterest": {"@iot.id": "sf-rlv-01"}},
    ]
    assert "Observations@iot.nextLink" in nested
    # $resultFormat is not among the options allowed inside $expand(...)
    assert sta.status(LEVEL_DS, {"$expand": "Observations($resultFormat=dataArray)"}) == 400


def test_9_3_2_2_req_select_examples(sta: Sta) -> None:
    # Example 1: Observations?$select=result,resultTime
    body = sta.json("Observations", {"$select": "result,resultTime", "$top": "3"})
    assert body["value"][0] == {"result": LEVEL[0], "resultTime": iso(int(TS[0]))}
    # Example 2: Datastreams(1)?$select=id&$expand=Observations/FeatureOfInterest
    # ("Expanded items are implicitly selected")
    datastream = sta.json(LEVEL_DS, {"$select": "id", "$expand": "Observations/FeatureOfInterest"})
    assert set(datastream) == {"@iot.id", "Observations"}
    assert datastream["Observations"][0]["FeatureOfInterest"]["@iot.id"] == "sf-rlv-01"
    assert "phenomenonTime" in datastream["Observations"][0]
    # Example 3: Datastreams(1)?$expand=Observations($select=result)
    results = sta.json(LEVEL_DS, {"$expand": "Observations($select=result)"})
    assert results["Observations"][:2] == [{"result": LEVEL[0]}, {"result": LEVEL[1]}]
    # "Each selection clause SHALL be a property name (including navigation property names)"
    linked = sta.json("Things('sf-rlv-01')", {"$select": "name,Datastreams"})
    assert linked == {
        "name": "sf-rlv-01",
        "Datastreams@iot.navigationLink": f"{ROOT}/Things('sf-rlv-01')/Datastreams",
    }


def test_9_3_3_1_req_orderby_default_ascending_and_several_keys(
    sta: Sta, registry: Registry
) -> None:
    names = sorted(d.id for d in registry.device_list)
    assert [t["name"] for t in sta.json("Things", {"$orderby": "name"})["value"]] == names
    desc = sta.json("Things", {"$orderby": "name desc"})["value"]
    assert [t["name"] for t in desc] == names[::-1]
    by_pilot = sta.json("Things", {"$orderby": "properties/pilot desc,name", "$select": "id"})
    expected = sorted(registry.device_list, key=lambda d: d.id)
    expected = sorted(expected, key=lambda d: d.pilot, reverse=True)
    assert [t["@iot.id"] for t in by_pilot["value"]] == [d.id for d in expected]
    # §9.3.3.2 Example 2, within one Datastream: $top=5&$orderby=phenomenonTime desc
    newest = sta.json(f"{LEVEL_DS}/Observations", {"$top": "5", "$orderby": "phenomenonTime desc"})
    assert [o["result"] for o in newest["value"]] == LEVEL[::-1][:5].tolist()


def test_9_3_3_2_and_9_3_3_3_req_top_and_skip(sta: Sta, registry: Registry) -> None:
    ids = [d.id for d in registry.device_list]
    top = sta.json("Things", {"$top": "5"})
    assert [t["@iot.id"] for t in top["value"]] == ids[:5]
    assert "@iot.nextLink" in top
    # "$skip SHALL be applied before $top, regardless of the order in which they appear"
    for params in ({"$skip": "5", "$top": "2"}, {"$top": "2", "$skip": "5"}):
        assert [t["@iot.id"] for t in sta.json("Things", params)["value"]] == ids[5:7]
    assert [t["@iot.id"] for t in sta.json("Things", {"$skip": "5"})["value"]] == ids[5:]
    # A $top over the server's page size is discarded and the server's limit imposed
    assert len(sta.json("Things", {"$top": "100000"})["value"]) == len(ids)
    assert sta.json("Things", {"$top": "0", "$count": "true"}) == {
        "@iot.count": len(ids),
        "value": [],
    }
    # §9.3.3.3 Example 2, within one Datastream: $skip=2&$top=2&$orderby=resultTime
    third = sta.json(
        f"{LEVEL_DS}/Observations", {"$skip": "2", "$top": "2", "$orderby": "resultTime"}
    )
    assert [o["result"] for o in third["value"]] == LEVEL[2:4].tolist()


def test_9_3_3_4_req_count(sta: Sta, registry: Registry) -> None:
    body = sta.json("Things", {"$count": "true", "$top": "2", "$skip": "1"})
    assert body["@iot.count"] == len(registry.device_list)
    assert "@iot.count" not in sta.json("Things", {"$count": "false"})
    assert "@iot.count" not in sta.json("Things")
    assert sta.status("Things", {"$count": "yes"}) == 400  # "400 Bad Request if ... other"
    counted = sta.json(f"{LEVEL_DS}/Observations", {"$count": "true", "$filter": "result lt 1"})
    assert counted["@iot.count"] == int((LEVEL < 1).sum())


def test_9_3_3_5_req_filter_examples(sta: Sta) -> None:
    # Example 1: Observations?$filter=result lt 10.00
    low = sta.json("Observations", {"$filter": "result lt 10.00", "$top": "1000"})
    assert [o["result"] for o in low["value"]] == LEVEL.tolist()
    # Example 2: Observations?$filter=Datastream/id eq 1
    of_one = sta.json(
        "Observations",
        {"$filter": "Datastream/id eq 'sf-wx-01:temperature'", "$count": "true", "$top": "3"},
    )
    assert of_one["@iot.count"] == N
    assert [o["result"] for o in of_one["value"]] == TEMPERATURE[:3].tolist()
    # Table 22: result le 3.5 and FeatureOfInterest/id eq 1; result gt 20 or result le 3.5
    mixed = sta.json(
        "Observations",
        {"$filter": "result le 3.5 and FeatureOfInterest/id eq 'sf-rlv-01'", "$count": "true"},
    )
    assert mixed["@iot.count"] == int((LEVEL <= 3.5).sum())
    either = sta.json(f"{LEVEL_DS}/Observations", {"$filter": "result gt 5 or result le 0.2"})
    assert [o["result"] for o in either["value"]] == [0.0, 0.2, 5.2, 5.4, 5.6, 5.8]
    # Table 22: Datastreams?$filter=unitOfMeasurement/name eq 'degree Celsius'
    celsius = sta.json("Datastreams", {"$filter": "unitOfMeasurement/name eq 'degree Celsius'"})
    assert celsius["value"]
    assert {d["unitOfMeasurement"]["symbol"] for d in celsius["value"]} == {"°C"}
    # Literals: strings in quotes, numbers, booleans, ISO 8601 instants
    since = sta.json(
        f"{LEVEL_DS}/Observations",
        {"$filter": f"phenomenonTime ge {iso(int(TS[-2]))}", "$select": "result"},
    )
    assert since["value"] == [{"result": LEVEL[-2]}, {"result": LEVEL[-1]}]


def test_9_3_req_query_status_code_501_for_what_is_not_implemented(sta: Sta) -> None:
    """req/request-data/query-status-code: an unsupported option fails with 501."""
    for params in (
        {"$filter": "not startswith(description,'test')"},  # Table 23 functions
        {"$filter": "geo.distance(Locations/location, geography'POINT(-122 43)') gt 1"},
        {"$search": "river"},
    ):
        response = sta.get("Things", params)
        assert response.status_code == 501, params
        assert response.json()["detail"]


def test_9_3_3_6_req_pagination_next_link_until_the_last_page(sta: Sta) -> None:
    url: str | None = f"{ROOT}/Observations?$top=7"
    seen: list[str] = []
    while url is not None:
        body = sta.json(url)
        assert len(body["value"]) <= 7
        seen += [o["@iot.id"] for o in body["value"]]
        url = body.get("@iot.nextLink")  # "The final partial set ... SHALL NOT contain a nextLink"
    assert len(seen) == len(set(seen)) == 2 * N


# -- §13.1 data array (req/data-array/data-array) -------------------------------------------------


def test_13_1_data_array_grouped_by_datastream(sta: Sta) -> None:
    body = sta.json(
        "Observations", {"$resultFormat": "dataArray", "$count": "true", "$top": "1000"}
    )
    assert body["@iot.count"] == 2 * N
    level, temperature = body["value"]
    assert level["Datastream@iot.navigationLink"] == f"{ROOT}/{LEVEL_DS}"
    assert level["components"] == ["id", "phenomenonTime", "resultTime", "result"]
    assert level["dataArray"][0] == [
        f"sf-rlv-01:level:{int(TS[0])}",
        iso(int(TS[0])),
        iso(int(TS[0])),
        LEVEL[0],
    ]
    assert [row[3] for row in temperature["dataArray"]] == TEMPERATURE.tolist()
    # "$select, $top, $skip, $count and $orderby work the same as ... with a non-dataArray"
    picked = sta.json(
        f"{LEVEL_DS}/Observations",
        {
            "$resultFormat": "dataArray",
            "$select": "result,phenomenonTime",
            "$orderby": "phenomenonTime desc",
            "$skip": "1",
            "$top": "2",
        },
    )
    (block,) = picked["value"]
    assert block["components"] == ["phenomenonTime", "result"]
    assert block["dataArray"] == [[iso(int(TS[-2])), LEVEL[-2]], [iso(int(TS[-3])), LEVEL[-3]]]
    assert "@iot.nextLink" in picked
    # "The $expand query parameter is not allowed for dataArray requests."
    assert (
        sta.status("Observations", {"$resultFormat": "dataArray", "$expand": "Datastream"}) == 400
    )
    # dataArray is a format of Observations only
    assert sta.status("Things", {"$resultFormat": "dataArray"}) == 400

"""No request breaks `/sta/v1.1`: generated paths and options answer 2xx, 4xx or 501.

The app (`api.app.create_app`) in a `TestClient` over the embedded store with a few days of
readings, since this is about reading requests, not about InfluxDB (tests/integration/
test_sta.py reads the same routes over InfluxDB with real clients). Every refusal must be
problem details with a detail a person can act on.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st

from api.app import create_app
from api.auth import TokenStore
from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.embedded import EmbeddedStore
from core.timeutil import MINUTE_NS, parse_instant_ns

T0 = parse_instant_ns("2026-11-01T00:00:00Z")


@pytest.fixture(scope="module")
def client(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("sta-routes")
    store = EmbeddedStore(data_dir / "store.sqlite", registry)
    store.start()
    n = 300
    for device, sensor in (("sf-rlv-01", "level"), ("sf-wx-01", "temperature")):
        store.write(
            Readings.from_arrays(
                T0 + np.arange(n, dtype=np.int64) * 10 * MINUTE_NS,
                [registry.devices[device].code] * n,
                [registry.sensors[sensor].code] * n,
                np.linspace(0, 6, n),
            )
        )
    tokens = TokenStore.in_data_dir(data_dir)
    headers = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    settings = Settings(data_dir=data_dir, api_public_rate="100000/minute", _env_file=None)
    app = create_app(settings, registry, store, cache=False)
    with TestClient(app) as test_client:
        yield test_client, headers
    tokens.close()
    store.close()


#: A first segment: mostly entity sets and entities that exist, some that do not.
FIRST = st.sampled_from(
    [
        "Things",
        "Things('sf-rlv-01')",
        "Things(1)",
        "Things('nope')",
        "Things('a''b')",
        "Datastreams",
        "Datastreams('sf-rlv-01:level')",
        "Datastreams('sf-rlv-01:nothing')",
        "Datastreams('sf-wx-01:temperature')",
        "Observations",
        f"Observations('sf-rlv-01:level:{T0}')",
        "Observations('x:y:z')",
        "Locations",
        "Locations('sf-rlv-01')",
        "HistoricalLocations",
        "Sensors",
        "Sensors('river_level')",
        "ObservedProperties",
        "ObservedProperties('level')",
        "FeaturesOfInterest",
        "FeaturesOfInterest('sf-rlv-01')",
        "Things('",
        "(",
        "",
        "Bogus",
    ]
)
#: What may follow: relations, properties, `$ref`/`$value`, and some nonsense.
FOLLOWING = st.sampled_from(
    [
        "Thing",
        "Things",
        "Datastreams",
        "Datastream",
        "Sensor",
        "ObservedProperty",
        "Observations",
        "FeatureOfInterest",
        "Locations",
        "HistoricalLocations",
        "Datastreams('sf-rlv-01:level')",
        "name",
        "properties",
        "result",
        "phenomenonTime",
        "id",
        "location",
        "$ref",
        "$value",
        "Bogus",
        "(",
    ]
)
OPTION_NAMES = st.sampled_from(
    [
        "$top",
        "$skip",
        "$count",
        "$orderby",
        "$select",
        "$expand",
        "$filter",
        "$resultFormat",
        "$skiptoken",
        "$search",
        "$bogus",
        "plain",
    ]
)
OPTION_TEXT = st.lists(
    st.sampled_from(
        [
            *"()',;/$=: -.0123456789",
            "eq ",
            "and ",
            "or ",
            "not ",
            "result ",
            "desc",
            "phenomenonTime ",
            "2026-11-01T12:00:00Z",
            "Datastreams",
            "Observations",
            "Thing",
            "ObservedProperty",
            "$top=",
            "$expand=",
            "$filter=",
            "$select=",
            "name",
            "id",
            "true",
            "dataArray",
            "0~",
            "1~",
            "''",
        ]
    ),
    max_size=30,
).map("".join)


#: Values that are valid for some option, so that many requests get past the parser.
VALID = st.sampled_from(
    [
        "3",
        "0",
        "true",
        "name desc",
        "phenomenonTime desc",
        "id,name",
        "result,phenomenonTime",
        "Datastreams",
        "Datastreams/ObservedProperty",
        "Observations($top=2)",
        "Thing",
        "result gt 1",
        "phenomenonTime lt 2026-11-02T00:00:00Z",
        "name eq 'sf-rlv-01'",
        "dataArray",
        "0~",
        "1~1793491200000000000",
    ]
)


@hypothesis.settings(
    max_examples=250, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
@hypothesis.given(
    first=FIRST,
    following=st.lists(FOLLOWING, max_size=2),
    options=st.dictionaries(OPTION_NAMES, VALID | OPTION_TEXT, max_size=3)
    | st.dictionaries(st.sampled_from(["$top", "$count", "$select", "$expand"]), VALID, max_size=2),
    anonymous=st.booleans(),
)
def test_no_generated_request_breaks_the_sensorthings_routes(
    client: tuple[TestClient, dict[str, str]],
    first: str,
    following: list[str],
    options: dict[str, str],
    anonymous: bool,
) -> None:
    test_client, headers = client
    segments = [first, *following]
    response = test_client.get(
        "/sta/v1.1/" + "/".join(segments), params=options, headers={} if anonymous else headers
    )
    assert response.status_code < 500 or response.status_code == 501, (
        segments,
        options,
        response.status_code,
        response.text[:300],
    )
    if response.status_code >= 400:
        assert response.json()["detail"]


def test_an_expansion_is_computed_once_and_its_observations_counted_each_time(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    """Every observation of a page expands the same Datastream: one computation (the same
    `@iot.count` in each), while what it includes counts toward the 10,000 expanded
    observations each time, so a page that would pass them is shortened before any reading."""
    test_client, headers = client
    level = "/sta/v1.1/Datastreams('sf-rlv-01:level')/Observations"
    body = test_client.get(
        level,
        params={"$top": "300", "$expand": "Datastream($expand=Observations($top=0;$count=true))"},
        headers=headers,
    ).json()
    assert len(body["value"]) == 300
    assert {o["Datastream"]["Observations@iot.count"] for o in body["value"]} == {300}
    shortened = test_client.get(
        level,
        params={"$top": "300", "$expand": "Datastream($expand=Observations)"},
        headers=headers,
    ).json()
    assert len(shortened["value"]) == 100  # each includes 100 (the default $top)
    assert "$top=100" in shortened["@iot.nextLink"]
    one = "Datastream($expand=Observations($top=10000))"
    single = test_client.get(level, params={"$expand": one}, headers=headers).json()
    assert len(single["value"]) == 1 and "@iot.nextLink" in single  # one observation's fit
    refused = test_client.get(
        level,
        params={"$expand": one + ",FeatureOfInterest($expand=Observations($top=1))"},
        headers=headers,
    )
    assert refused.status_code == 400
    assert "10000" in refused.json()["detail"]

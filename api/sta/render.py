"""A SensorThings request answered: the query options applied to what the path names.

What it is for: `Renderer.answer` takes the path's segments (`api.sta.model.parse_path`,
walked by `api.sta.resolve`) and the options (`api.sta.options.parse_options`) and returns
the JSON body: a collection with `@iot.count`, `@iot.nextLink` and `value`, one entity, one
property or a value inside one (`{"name": ...}`, or its raw `$value`; None when it is null,
which the route answers 204), or `$ref` links. Entities carry `@iot.selfLink` and a
`<Relation>@iot.navigationLink` per relation; `$select` picks their properties and `$expand`
puts the related entities in place (two levels at most), each with its own options. The
small entity sets come from the `Catalogue` (filtered, ordered and paged here), observations
from the `ObservationReader`, a page at a time (`api.sta.paging` orders, skips and counts
them; `api.sta.documents` writes them).

An expansion is computed once per request for one target and one set of nested options
(`_expand`, memoised: a page whose observations all expand the same Datastream reads it
once), and the outer page is fitted to the request's bounds before anything is read
(`api.sta.budget`): shortened, with its nextLink, or refused when not even one item fits;
an expanded page of observations counts against `MAX_EXPANDED_OBSERVATIONS`. This module
must not know about HTTP, nor read the store other than through the reader.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import numpy as np
import orjson

from api.sta import documents, expression, paging
from api.sta.budget import MAX_OBSERVATION_TOP, MAX_TOP, Budget, page_size
from api.sta.errors import bad, not_found, unsupported
from api.sta.model import PROPERTIES, SETS, Catalogue, Entity, Segment, lookup, quote
from api.sta.observations import Cursor, ObservationReader, Page, filter_keep
from api.sta.options import Options
from api.sta.resolve import EntityList, Observation, ObservationList, Resolver, Target


class Renderer(Resolver):
    """Answers one request for one reader."""

    def __init__(self, catalogue: Catalogue, reader: ObservationReader, root: str) -> None:
        super().__init__(catalogue, reader, root)
        self.budget = Budget(reader, catalogue.fanout)
        self._nested_depth = 0
        #: Expansions computed in this request: (relation, target, options) -> the
        #: properties they add to a document, and the observations they include.
        self._memo: dict[Hashable, tuple[dict[str, Any], int]] = {}

    def answer(self, segments: list[Segment], options: Options) -> dict[str, Any] | str | None:
        """The body for the path and options (a str for `$value`, None for no content).

        A property whose value is null is None: the route answers 204 No Content (18-088
        §9.2.4, as OData 4.0 Protocol §11.2.3), for the property and for its `$value`.
        """
        target, prop, suffix = self.resolve(segments)
        if options.data_array and (
            prop is not None or suffix is not None or not isinstance(target, ObservationList)
        ):
            raise bad(
                "$resultFormat=dataArray is for collections of Observations "
                "(18-088 §13.1), e.g. Datastreams('device:sensor')/Observations"
            )
        if prop is not None:
            value = self.property(target, prop)
            if value is None:
                return None
            return {prop.rsplit("/", 1)[-1]: value} if suffix != "$value" else _raw(value)
        if suffix == "$ref":
            return self.refs(target, options)
        if isinstance(target, EntityList):
            return self.entities(target, options)
        if isinstance(target, ObservationList):
            return self.observations(target, options)
        return self.document(target, options)

    def property(self, target: Target, path: str) -> Any:
        """One property of one entity, or a value inside it (`properties/pilot`); 404 if absent."""
        name, *inside = path.split("/")
        value: Any
        if isinstance(target, Observation):
            value = self.document(target, Options(select=(name,))).get(
                "@iot.id" if name == "id" else name
            )
        else:
            assert isinstance(target, Entity)
            if name == "id":
                value = target.id
            else:
                value = self.document(target, Options(select=(name,))).get(name)
        for i, key in enumerate(inside):
            if not isinstance(value, dict) or key not in value:
                where = "/".join([name, *inside[:i]])
                raise not_found(f"{where} has no {key[:40]!r}")
            value = value[key]
        return value

    def refs(self, target: Target, options: Options) -> dict[str, Any]:
        """`$ref`: the selfLinks only."""
        if isinstance(target, EntityList | ObservationList):
            options = replace(options, select=None, expand=(), data_array=False)
            body = (
                self.entities(target, options)
                if isinstance(target, EntityList)
                else self.observations(target, options)
            )
            body["value"] = [{"@iot.selfLink": v["@iot.selfLink"]} for v in body["value"]]
            return body
        return {"@iot.selfLink": self.document(target, Options())["@iot.selfLink"]}

    def link(self, path: str, options: Options, **page: str | int) -> str:
        """A nextLink: the collection's path with the options, paging ones replaced."""
        pairs = [(k, v) for k, v in options.given if k not in ("$skip", "$top", "$skiptoken")]
        pairs += [(f"${k}", str(v)) for k, v in page.items()]
        return f"{self.root}/{path}?{urlencode(pairs, quote_via=url_quote, safe='$,()/:')}"

    def entities(self, coll: EntityList, options: Options) -> dict[str, Any]:
        """A collection of a small set, filtered, ordered, paged."""
        items = coll.items
        if options.filter is not None:
            condition = options.filter
            if (
                coll.set == "Datastreams"
                and expression.paths(condition) & expression.TIME_PROPERTIES
            ):
                raise unsupported(
                    "$filter on a Datastream's phenomenonTime or resultTime is not supported"
                )
            items = [e for e in items if _passes(condition, e)]
        for key in reversed(options.orderby):
            items = sorted(items, key=_order_key(key.path), reverse=key.descending)
        top = page_size(options, MAX_TOP)
        if not self._nested_depth:
            top = self.budget.fit(coll.set, options, top, distinct=top)
        page = items[options.skip : options.skip + top]
        body: dict[str, Any] = {}
        if options.count:
            body["@iot.count"] = len(items)
        if options.skip + top < len(items) and top > 0:
            body["@iot.nextLink"] = self.link(coll.path, options, top=top, skip=options.skip + top)
        body["value"] = [self.document(e, options) for e in page]
        return body

    def observations(self, coll: ObservationList, options: Options) -> dict[str, Any]:
        """A collection of observations: a page from the store, by time cursor."""
        coll, options = paging.navigation_filter(self.catalogue, coll, options)
        descending, top = self._checked(coll, options)
        bounds = (
            expression.time_bounds(options.filter) if options.filter is not None else (None, None)
        )
        keep = filter_keep(options.filter)
        cursor = Cursor.parse(options.skiptoken) if options.skiptoken else None
        if cursor is not None and cursor.index >= len(coll.series):
            raise bad("$skiptoken is not one this service gave; follow @iot.nextLink")
        if cursor is None and options.skip:
            cursor = paging.skip(
                self.reader, coll, options.skip, descending=descending, bounds=bounds, keep=keep
            )
        body: dict[str, Any] = {}
        page: Page | None = None
        if options.count:
            if top and not paging.plain_count(options):
                body["@iot.count"], page = paging.count_and_page(
                    self.reader, coll, options, bounds, top, cursor=cursor, descending=descending
                )
            else:
                body["@iot.count"] = paging.count(self.reader, coll, options, bounds)
        if not top:
            body["value"] = []
            return body
        if page is None:
            page = self.reader.page(
                coll.series,
                n=top,
                descending=descending,
                cursor=cursor,
                bounds=bounds,
                keep=keep,
                end_when_spent=True,
            )
        if (
            page.next is not None
            and not len(page.ts_ns)
            and page.next == (cursor or Cursor(0, None))
        ):
            # Nothing read and nowhere further: the count spent the request's readings. A
            # nextLink to this same page would send a client round for ever.
            raise bad(
                "this $count with this $filter reads every reading of the range, which leaves "
                f"this page none of the {self.reader.max_scan} readings a request may read "
                "(PILOTS_API_MAX_SCAN_READINGS); ask without $count=true to page on, or narrow "
                "the range with phenomenonTime"
            )
        if page.next is not None:
            body["@iot.nextLink"] = self.link(
                coll.path, options, top=top, skiptoken=page.next.token()
            )
        body["value"] = self._page_documents(coll, page, options)
        return body

    def _checked(self, coll: ObservationList, options: Options) -> tuple[bool, int]:
        """Whether the order is descending and the page size; refusals before any reading."""
        descending = paging.ordered_descending(coll, options)
        documents.check_select(options.select)
        if options.filter is not None:
            expression.check_observation_filter(options.filter)
        if options.data_array and options.expand:
            raise bad("$expand does not go with $resultFormat=dataArray")
        top = page_size(options, MAX_OBSERVATION_TOP)
        if self._nested_depth:
            self.budget.include(top)
        else:
            # The Datastream and FeatureOfInterest an observation expands are its series':
            # memoised, a page expands at most one of each per series.
            top = self.budget.fit("Observations", options, top, distinct=len(coll.series))
        return descending, top

    def _page_documents(
        self, coll: ObservationList, page: Page, options: Options
    ) -> list[dict[str, Any]]:
        if options.data_array:
            return documents.data_arrays(self.root, coll.series, page, options.select)
        docs = documents.observations(self.root, coll.series, page, options.select)
        if options.expand:
            for doc, which, ts, value in zip(
                docs, page.which.tolist(), page.ts_ns.tolist(), page.value.tolist(), strict=True
            ):
                self._expand(doc, Observation(coll.series[which], ts, value), options)
        return docs

    def document(self, target: Entity | Observation, options: Options) -> dict[str, Any]:
        """One entity with its links, `$select` and `$expand` applied."""
        if isinstance(target, Observation):
            documents.check_select(options.select)
            one = documents.observations(
                self.root, [target.series], _one_page(target), options.select
            )[0]
            self._expand(one, target, options)
            return one
        select = options.select
        known = {
            *PROPERTIES[target.set],
            *SETS[target.set].relations,
            "id",
            "@iot.id",
            "@iot.selfLink",
        }
        for name in select or ():
            if name not in known:
                raise bad(f"$select: {target.set} have no property {name!r}")
        self_link = f"{self.root}/{target.set}({quote(target.id)})"
        doc: dict[str, Any] = {}
        if select is None or {"id", "@iot.id"} & set(select):
            doc["@iot.id"] = target.id
        if select is None or "@iot.selfLink" in select:
            doc["@iot.selfLink"] = self_link
        for name in PROPERTIES[target.set]:
            if select is None or name in select:
                doc[name] = self._value(target, name)
        for relation in SETS[target.set].relations:
            if select is None or relation in select:
                doc[f"{relation}@iot.navigationLink"] = f"{self_link}/{relation}"
        self._expand(doc, target, options)
        return doc

    def _value(self, entity: Entity, name: str) -> Any:
        if entity.set == "Datastreams" and name in expression.TIME_PROPERTIES:
            assert entity.device is not None and entity.sensor is not None
            edges = self.reader.edges(self.series(entity.device, entity.sensor))
            return None if edges is None else f"{documents.iso(edges[0])}/{documents.iso(edges[1])}"
        return entity.props[name]

    def _expand(self, doc: dict[str, Any], entity: Entity | Observation, options: Options) -> None:
        set_name = "Observations" if isinstance(entity, Observation) else entity.set
        for item in options.expand:
            relations = SETS[set_name].relations
            if item.name not in relations:
                raise bad(
                    f"$expand: {set_name} have no relation {item.name!r}; "
                    f"theirs: {', '.join(relations)}"
                )
            base = doc.get("@iot.selfLink") or self._self_path(entity)
            path = base.removeprefix(self.root + "/") + "/" + item.name
            found = self.related(entity, item.name, path)
            key = (item.name, _identity(found), item.options)
            memo = self._memo.get(key)
            if memo is None:
                before = self.budget.expanded
                added = self._expansion(item.name, found, item.options)
                memo = self._memo[key] = (added, self.budget.expanded - before)
            else:  # computed once per request; included (and counted) as often as asked
                self.budget.include(memo[1])
            doc.update(memo[0])

    def _expansion(self, name: str, found: Target | None, options: Options) -> dict[str, Any]:
        """What expanding the relation `name` to `found` adds to a document."""
        added: dict[str, Any] = {}
        self._nested_depth += 1
        try:
            if isinstance(found, EntityList | ObservationList):
                body = (
                    self.entities(found, options)
                    if isinstance(found, EntityList)
                    else self.observations(found, options)
                )
                added[name] = body["value"]
                if "@iot.count" in body:
                    added[f"{name}@iot.count"] = body["@iot.count"]
                if "@iot.nextLink" in body:
                    added[f"{name}@iot.nextLink"] = body["@iot.nextLink"]
            else:
                added[name] = None if found is None else self.document(found, options)
        finally:
            self._nested_depth -= 1
        return added

    def _self_path(self, entity: Entity | Observation) -> str:
        if isinstance(entity, Observation):
            return f"{self.root}/Observations('{entity.series.id}:{entity.ts_ns}')"
        return f"{self.root}/{entity.set}({quote(entity.id)})"


def _raw(value: Any) -> str:
    """A property's `$value`: text as it is, a complex value as JSON, null as nothing."""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


def _one_page(observation: Observation) -> Page:
    return Page(
        np.zeros(1, np.int32),
        np.asarray([observation.ts_ns], np.int64),
        np.asarray([observation.value], np.float64),
        None,
    )


def _identity(found: Target | None) -> Hashable:
    """What an expansion's result depends on, besides its options: the target and its path."""
    if isinstance(found, Entity):
        return ("entity", found.set, found.id)
    if isinstance(found, EntityList):
        return ("entities", found.set, tuple(e.id for e in found.items), found.path)
    if isinstance(found, ObservationList):
        return ("observations", tuple((s.id, s.lo_ns, s.hi_ns) for s in found.series), found.path)
    return None if found is None else ("observation", found.series.id, found.ts_ns)


def _passes(condition: expression.Expr, entity: Entity) -> bool:
    def value(path: expression.Path) -> object:
        return lookup(entity, path.text)

    return expression.matches(condition, value)


def _order_key(path: str) -> Callable[[Entity], tuple[int, Any]]:
    def key(entity: Entity) -> tuple[int, Any]:
        return _sort_key(lookup(entity, path))

    return key


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    raise bad("$orderby: only simple properties can be ordered by")

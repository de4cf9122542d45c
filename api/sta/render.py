"""A SensorThings request answered: the query options applied to what the path names.

What it is for: `Renderer.answer` takes the path's segments (`api.sta.model.parse_path`,
walked by `api.sta.resolve`) and the options (`api.sta.options.parse_options`) and returns
the JSON body: a collection with `@iot.count`, `@iot.nextLink` and `value`, one entity, one
property or a value inside one (`{"name": ...}`, or its raw `$value`; None when it is null,
which the route answers 204), or `$ref` links. Entities carry
`@iot.selfLink` and a `<Relation>@iot.navigationLink` per relation; `$expand` puts the
related entities in place (two levels at most), each with its own options. The small entity
sets come from the `Catalogue`, observations from the `ObservationReader`, a page at a time.

Limits, all checked before the reading they bound: `MAX_TOP` entities per page of a small
set, `MAX_OBSERVATION_TOP` observations per page (a larger `$top` is served in pages of that
size, as server-driven paging allows), `MAX_EXPANDED_OBSERVATIONS` observations expanded in
one answer, and the reader's own bounds (readings read, store queries). An expansion is
computed once per request for one target and one set of nested options (`_expand`, memoised:
a page whose observations all expand the same Datastream reads it once), and the outer page
is fitted to the bounds before anything is read (`_fit`: each item's store-reading expansions
times the page size, at `QUERIES_PER_READ` each, within the query budget left; each item's
expanded observations times the page size within `MAX_EXPANDED_OBSERVATIONS`): shortened,
with its nextLink, or refused when not even one item fits. This module must not know about
HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import numpy as np
import orjson

from api.sta import documents, expression
from api.sta.errors import bad, not_found, unsupported
from api.sta.model import PROPERTIES, SETS, Catalogue, Entity, Segment, lookup, quote
from api.sta.observations import (
    MAX_QUERIES,
    Cursor,
    ObservationReader,
    Page,
    Series,
    filter_keep,
)
from api.sta.options import Options
from api.sta.resolve import EntityList, Observation, ObservationList, Resolver, Target

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_OBSERVATION_TOP = 10_000
MAX_EXPANDED_OBSERVATIONS = 10_000
#: Store queries one store-reading expansion (a page of observations, a `$count`, a
#: Datastream's times) is estimated at before anything is read: a count, then a scan.
QUERIES_PER_READ = 2
_TIME_ORDER = ("phenomenonTime", "resultTime")
#: The relations of an Observation a `$filter` may follow (one Datastream, one feature each).
_OBSERVATION_NAVIGATION = frozenset({"Datastream", "FeatureOfInterest"})


class Renderer(Resolver):
    """Answers one request for one reader."""

    def __init__(self, catalogue: Catalogue, reader: ObservationReader, root: str) -> None:
        super().__init__(catalogue, reader, root)
        #: Observations included by `$expand` so far (memoised ones as often as included).
        self.expanded = 0
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

    def link(self, path: str, options: Options, **paging: str | int) -> str:
        """A nextLink: the collection's path with the options, paging ones replaced."""
        pairs = [(k, v) for k, v in options.given if k not in ("$skip", "$top", "$skiptoken")]
        pairs += [(f"${k}", str(v)) for k, v in paging.items()]
        return f"{self.root}/{path}?{urlencode(pairs, quote_via=url_quote, safe='$,()/:')}"

    def entities(self, coll: EntityList, options: Options) -> dict[str, Any]:
        """A collection of a small set, filtered, ordered, paged."""
        items = coll.items
        if options.filter is not None:
            condition = options.filter
            if coll.set == "Datastreams" and expression.paths(condition) & set(_TIME_ORDER):
                raise unsupported(
                    "$filter on a Datastream's phenomenonTime or resultTime is not supported"
                )
            items = [e for e in items if _passes(condition, e)]
        for key in reversed(options.orderby):
            items = sorted(items, key=_order_key(key.path), reverse=key.descending)
        top = min(DEFAULT_TOP if options.top is None else options.top, MAX_TOP)
        if not self._nested_depth:
            top = self._fit(coll.set, options, top, distinct=top)
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
        coll, options = self._navigation_filter(coll, options)
        descending, top = self._checked(coll, options)
        bounds = (
            expression.time_bounds(options.filter) if options.filter is not None else (None, None)
        )
        keep = filter_keep(options.filter)
        cursor = Cursor.parse(options.skiptoken) if options.skiptoken else None
        if cursor is not None and cursor.index >= len(coll.series):
            raise bad("$skiptoken is not one this service gave; follow @iot.nextLink")
        if cursor is None and options.skip:
            cursor = self._skip(coll, options.skip, descending, bounds, keep)
        body: dict[str, Any] = {}
        page: Page | None = None
        if options.count:
            if top and cursor is None and not descending and not _plain_count(options):
                body["@iot.count"], page = self._count_and_page(coll, options, bounds, top)
            else:
                body["@iot.count"] = self._count(coll, options, bounds)
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
        if page.next is not None:
            body["@iot.nextLink"] = self.link(
                coll.path, options, top=top, skiptoken=page.next.token()
            )
        body["value"] = self._page_documents(coll, page, options)
        return body

    def _navigation_filter(
        self, coll: ObservationList, options: Options
    ) -> tuple[ObservationList, Options]:
        """A `$filter` on the Observations' Datastream or FeatureOfInterest, settled per series.

        `Datastream/id eq 'x'` (18-088 §9.3.3.5, Example 2) and the like are the same for every
        observation of a series: each series keeps the comparisons of its own observations
        (the rest of the filter), or drops out when its Datastream or FeatureOfInterest fails.
        The rest must be the same for every series kept, or it is a 501.
        """
        condition = options.filter
        if condition is None or not any(
            p.split("/")[0] in _OBSERVATION_NAVIGATION for p in expression.paths(condition)
        ):
            return coll, options
        kept: list[Series] = []
        rests: set[expression.Expr | bool] = set()
        for series in coll.series:
            rest = expression.settle(condition, self._navigation_decider(series))
            if rest is False:
                continue
            kept.append(series)
            rests.add(rest)
        if len(rests) > 1:
            raise unsupported(
                "$filter: a condition on Datastream or FeatureOfInterest must leave the same "
                "condition on the observations of every Datastream it keeps"
            )
        rest = rests.pop() if rests else True
        narrowed = replace(options, filter=None if isinstance(rest, bool) else rest)
        return ObservationList(kept, coll.path), narrowed

    def _navigation_decider(self, series: Series) -> Callable[[expression.Compare], bool | None]:
        """Answers the comparisons of one series' Datastream and FeatureOfInterest paths."""
        entities = {
            "Datastream": lambda: self.catalogue.datastream(series.device, series.sensor),
            "FeatureOfInterest": lambda: self.catalogue.feature(series.device),
        }

        def value(term: expression.Const | expression.Path) -> tuple[bool, object]:
            if isinstance(term, expression.Const):
                literal = term.value
                return False, literal.ts_ns if isinstance(literal, expression.Instant) else literal
            head, _, rest = term.text.partition("/")
            if head not in entities:
                return False, term
            if not rest:
                raise bad(f"$filter: compare a property of {head}, e.g. {head}/id")
            return True, lookup(entities[head](), rest)

        def decide(compare: expression.Compare) -> bool | None:
            (left_nav, left), (right_nav, right) = value(compare.left), value(compare.right)
            if not (left_nav or right_nav):
                return None
            if isinstance(left, expression.Path) or isinstance(right, expression.Path):
                raise unsupported(
                    "$filter: compare a Datastream or FeatureOfInterest property with a value"
                )
            return expression.compare_values(compare.op, left, right)

        return decide

    def _checked(self, coll: ObservationList, options: Options) -> tuple[bool, int]:
        """Whether the order is descending and the page size; refusals before any reading."""
        descending = self._order(coll, options)
        documents.check_select(options.select)
        if options.filter is not None:
            expression.check_observation_filter(options.filter)
        if options.data_array and options.expand:
            raise bad("$expand does not go with $resultFormat=dataArray")
        top = min(DEFAULT_TOP if options.top is None else options.top, MAX_OBSERVATION_TOP)
        if self._nested_depth:
            self._include(top)
        else:
            # The Datastream and FeatureOfInterest an observation expands are its series':
            # memoised, a page expands at most one of each per series.
            top = self._fit("Observations", options, top, distinct=len(coll.series))
        return descending, top

    def _include(self, n: int) -> None:
        """`n` more observations in the answer through `$expand`, within the bound."""
        self.expanded += n
        if self.expanded > MAX_EXPANDED_OBSERVATIONS:
            raise bad(
                f"this $expand would include more than {MAX_EXPANDED_OBSERVATIONS} "
                "observations; use a smaller $top inside Observations(...) or outside"
            )

    def _fit(self, set_name: str, options: Options, top: int, *, distinct: int) -> int:
        """The outer page size that fits this request's bounds with its `$expand`, estimated.

        Before anything is read: each item's store-reading expansions (`_cost`) times the page
        size (at most `distinct` different targets, as memoised expansions are computed once)
        must fit the query budget left, and the observations each item includes times the page
        size must fit `MAX_EXPANDED_OBSERVATIONS`. A page that does not is shortened (its
        nextLink goes on from there); one that cannot hold even one item is refused.
        """
        reads, included = _cost(set_name, options)
        if not top or not (reads or included):
            return top
        fits = top
        if included:
            fits = min(fits, MAX_EXPANDED_OBSERVATIONS // included)
            if not fits:
                raise bad(
                    f"one {SETS[set_name].singular} with this $expand would include {included} "
                    f"observations, over the bound of {MAX_EXPANDED_OBSERVATIONS} per request; "
                    "use a smaller $top inside Observations(...)"
                )
        per_item = reads * QUERIES_PER_READ
        left = self.reader.max_queries - self.reader.queries
        if set_name == "Observations":
            left -= MAX_QUERIES  # the page itself
        if per_item and min(fits, distinct) * per_item > left:
            fits = min(fits, max(0, left) // per_item)
            if not fits:
                raise bad(
                    f"one {SETS[set_name].singular} with this $expand needs about {per_item} "
                    f"store queries and this request {self.reader.over_budget()}; expand less"
                )
        return fits

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

    def _order(self, coll: ObservationList, options: Options) -> bool:
        if not options.orderby:
            return False
        key = options.orderby[0]
        if len(options.orderby) > 1 or key.path not in (*_TIME_ORDER, "id", "@iot.id"):
            raise unsupported(
                "Observations are ordered by phenomenonTime (asc or desc) or id only; "
                f"not by {', '.join(k.path for k in options.orderby)}"
            )
        if key.path in ("id", "@iot.id"):
            if key.descending:
                raise unsupported("Observations are ordered by id ascending only")
            return False
        if len(coll.series) > 1:
            raise unsupported(
                f"$orderby={key.path} needs the observations of one Datastream: ask "
                "Datastreams('device:sensor')/Observations (here they come by id: "
                "Datastream, then time)"
            )
        return key.descending

    def _skip(
        self,
        coll: ObservationList,
        skip: int,
        descending: bool,
        bounds: tuple[int | None, int | None],
        keep: Any,
    ) -> Cursor | None:
        """The cursor after the first `skip` observations (read, within the request's bound)."""
        if skip > self.reader.max_scan:
            raise bad(
                f"$skip over {self.reader.max_scan} observations (PILOTS_API_MAX_SCAN_READINGS); "
                "follow @iot.nextLink or $filter on phenomenonTime instead"
            )
        cursor: Cursor | None = None
        left = skip
        while left > 0:
            page = self.reader.page(
                coll.series, n=left, descending=descending, cursor=cursor, bounds=bounds, keep=keep
            )
            left -= len(page.ts_ns)
            cursor = page.next
            if cursor is None:
                return Cursor(len(coll.series), None)
        return cursor

    def _count(
        self, coll: ObservationList, options: Options, bounds: tuple[int | None, int | None]
    ) -> int:
        """`@iot.count`: counted by the store, or read (a `result` filter) within the bound."""
        if _plain_count(options):
            return self.reader.count(coll.series, *bounds)
        counted, _ = self._count_and_page(coll, options, bounds, 0)
        return counted

    def _count_and_page(
        self,
        coll: ObservationList,
        options: Options,
        bounds: tuple[int | None, int | None],
        top: int,
    ) -> tuple[int, Page]:
        """A filtered `@iot.count` and the first page (`top`, ascending), in one reading.

        The readings the filter has to see are counted first (the store counts them, nothing
        is read); over what the request may still read, 400 naming both numbers. Then they
        are read once, in time order: the count is what passes, the page its first `top`.
        """
        total = self.reader.count(coll.series, *bounds)
        room = self.reader.max_scan - self.reader.scanned
        if total > room:
            spent = f", {self.reader.scanned} of them read already" if self.reader.scanned else ""
            raise bad(
                f"$count with this $filter would read {total} readings; this request may read "
                f"{self.reader.max_scan} in all (PILOTS_API_MAX_SCAN_READINGS){spent}; "
                "narrow phenomenonTime"
            )
        keep = filter_keep(options.filter)
        parts: list[Page] = []
        counted, cursor = 0, None
        while True:
            page = self.reader.page(
                coll.series,
                n=total + 1,
                descending=False,
                cursor=cursor,
                bounds=bounds,
                keep=keep,
            )
            if counted < top:
                parts.append(page)
            counted += len(page.ts_ns)
            if page.next is None or page.next == cursor:
                break
            cursor = page.next
        return counted, _first(parts, top, counted)

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
        if entity.set == "Datastreams" and name in _TIME_ORDER:
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
                before = self.expanded
                added = self._expansion(item.name, found, item.options)
                memo = self._memo[key] = (added, self.expanded - before)
            else:  # computed once per request; included (and counted) as often as asked
                self._include(memo[1])
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


def _first(parts: list[Page], top: int, counted: int) -> Page:
    """The first `top` observations of pages read in ascending order, and where to go on."""
    which = np.concatenate([p.which for p in parts]) if parts else np.zeros(0, np.int32)
    ts = np.concatenate([p.ts_ns for p in parts]) if parts else np.zeros(0, np.int64)
    value = np.concatenate([p.value for p in parts]) if parts else np.zeros(0)
    which, ts, value = which[:top], ts[:top], value[:top]
    more = Cursor(int(which[-1]), int(ts[-1]) + 1) if counted > top and len(ts) else None
    return Page(which, ts, value, more)


def _plain_count(options: Options) -> bool:
    """Whether `@iot.count` is the store's count: no filter, or one on time alone."""
    return options.filter is None or _exact_range(options.filter)


def _identity(found: Target | None) -> Hashable:
    """What an expansion's result depends on, besides its options: the target and its path."""
    if isinstance(found, Entity):
        return ("entity", found.set, found.id)
    if isinstance(found, EntityList):
        return ("entities", found.set, tuple(e.id for e in found.items), found.path)
    if isinstance(found, ObservationList):
        return ("observations", tuple((s.id, s.lo_ns, s.hi_ns) for s in found.series), found.path)
    return None if found is None else ("observation", found.series.id, found.ts_ns)


def _cost(set_name: str, options: Options) -> tuple[int, int]:
    """Store-reading expansions and observations included per entity of `set_name`.

    Estimated from the options alone, before anything is read. A store read (a page of
    observations, a `$count`, a `$skip`, a Datastream's times) counts once per expansion node:
    the Datastream and FeatureOfInterest of observations are memoised (one per series), and a
    to-many relation of the small sets is counted as one entity (the reader's query budget
    still bounds the rest, before each query).
    """
    reads = 0
    if set_name == "Datastreams" and (
        options.select is None or set(options.select) & set(_TIME_ORDER)
    ):
        reads += 1
    included = 0
    for item in options.expand:
        relation = SETS[set_name].relations.get(item.name)
        if relation is None:
            continue  # refused with its message where it is expanded
        target = relation[0]
        inner_reads, inner_included = _cost(target, item.options)
        if target != "Observations":
            reads += inner_reads
            included += inner_included
            continue
        nested = item.options
        top = min(DEFAULT_TOP if nested.top is None else nested.top, MAX_OBSERVATION_TOP)
        reads += (top > 0) + nested.count + (nested.skip > 0) + inner_reads
        included += top + top * inner_included
    return reads, included


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


def _exact_range(condition: expression.Expr) -> bool:
    """Whether the filter is exactly its time bounds (a conjunction of time comparisons)."""
    if isinstance(condition, expression.Logical):
        return (
            condition.op == "and" and _exact_range(condition.left) and _exact_range(condition.right)
        )
    if isinstance(condition, expression.Compare):
        if condition.op == "ne":
            return False
        names = expression.paths(condition)
        return bool(names) and names <= set(_TIME_ORDER)
    return False

"""An Observations collection's query options turned into reads: order, `$skip`, `$count`.

What it is for: the steps `api.sta.render` takes before it reads a page of observations.
`navigation_filter` settles a `$filter` on the Observations' Datastream or FeatureOfInterest
per series (18-088 §9.3.3.5), `ordered_descending` checks `$orderby` (time or id, one
Datastream for time), `skip` finds the cursor after `$skip` observations, `count` gives
`@iot.count` (counted by the store when the filter is on time alone: `plain_count`, read
otherwise) and `count_and_page` a filtered count and the first page in one reading. Every
read is bounded by the reader (`api.sta.observations`), and refused before it when it would
pass the request's bound. This module must not shape answers (`api.sta.render` and
`api.sta.documents` do) nor know about `$expand`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from api.sta import expression
from api.sta.errors import bad, unsupported
from api.sta.model import Catalogue, lookup
from api.sta.observations import Cursor, ObservationReader, Page, Series, filter_keep
from api.sta.options import Options
from api.sta.resolve import ObservationList

#: The relations of an Observation a `$filter` may follow (one Datastream, one feature each).
_OBSERVATION_NAVIGATION = frozenset({"Datastream", "FeatureOfInterest"})
_ID_ORDER = frozenset({"id", "@iot.id"})
Bounds = tuple[int | None, int | None]


def navigation_filter(
    catalogue: Catalogue, coll: ObservationList, options: Options
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
        rest = expression.settle(condition, _navigation_decider(catalogue, series))
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


def _navigation_decider(
    catalogue: Catalogue, series: Series
) -> Callable[[expression.Compare], bool | None]:
    """Answers the comparisons of one series' Datastream and FeatureOfInterest paths."""
    entities = {
        "Datastream": lambda: catalogue.datastream(series.device, series.sensor),
        "FeatureOfInterest": lambda: catalogue.feature(series.device),
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


def ordered_descending(coll: ObservationList, options: Options) -> bool:
    """Whether `$orderby` asks for the observations newest first; 501 for what is not served."""
    if not options.orderby:
        return False
    key = options.orderby[0]
    if len(options.orderby) > 1 or key.path not in expression.TIME_PROPERTIES | _ID_ORDER:
        raise unsupported(
            "Observations are ordered by phenomenonTime (asc or desc) or id only; "
            f"not by {', '.join(k.path for k in options.orderby)}"
        )
    if key.path in _ID_ORDER:
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


def skip(
    reader: ObservationReader,
    coll: ObservationList,
    n: int,
    *,
    descending: bool,
    bounds: Bounds,
    keep: Any,
) -> Cursor | None:
    """The cursor after the first `n` observations (read, within the request's bound)."""
    if n > reader.max_scan:
        raise bad(
            f"$skip over {reader.max_scan} observations (PILOTS_API_MAX_SCAN_READINGS); "
            "follow @iot.nextLink or $filter on phenomenonTime instead"
        )
    cursor: Cursor | None = None
    left = n
    while left > 0:
        page = reader.page(
            coll.series, n=left, descending=descending, cursor=cursor, bounds=bounds, keep=keep
        )
        left -= len(page.ts_ns)
        cursor = page.next
        if cursor is None:
            return Cursor(len(coll.series), None)
    return cursor


def count(
    reader: ObservationReader, coll: ObservationList, options: Options, bounds: Bounds
) -> int:
    """`@iot.count`: counted by the store, or read (a `result` filter) within the bound."""
    if plain_count(options):
        return reader.count(coll.series, *bounds)
    counted, _ = count_and_page(reader, coll, options, bounds, 0)
    return counted


def count_and_page(
    reader: ObservationReader,
    coll: ObservationList,
    options: Options,
    bounds: Bounds,
    top: int,
) -> tuple[int, Page]:
    """A filtered `@iot.count` and the first page (`top`, ascending), in one reading.

    The readings the filter has to see are counted first (the store counts them, nothing
    is read); over what the request may still read, 400 naming both numbers. Then they
    are read once, in time order: the count is what passes, the page its first `top`.
    """
    total = reader.count(coll.series, *bounds)
    room = reader.max_scan - reader.scanned
    if total > room:
        spent = f", {reader.scanned} of them read already" if reader.scanned else ""
        raise bad(
            f"$count with this $filter would read {total} readings; this request may read "
            f"{reader.max_scan} in all (PILOTS_API_MAX_SCAN_READINGS){spent}; "
            "narrow phenomenonTime"
        )
    keep = filter_keep(options.filter)
    parts: list[Page] = []
    counted, cursor = 0, None
    while True:
        page = reader.page(
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


def _first(parts: list[Page], top: int, counted: int) -> Page:
    """The first `top` observations of pages read in ascending order, and where to go on."""
    which = np.concatenate([p.which for p in parts]) if parts else np.zeros(0, np.int32)
    ts = np.concatenate([p.ts_ns for p in parts]) if parts else np.zeros(0, np.int64)
    value = np.concatenate([p.value for p in parts]) if parts else np.zeros(0)
    which, ts, value = which[:top], ts[:top], value[:top]
    more = Cursor(int(which[-1]), int(ts[-1]) + 1) if counted > top and len(ts) else None
    return Page(which, ts, value, more)


def plain_count(options: Options) -> bool:
    """Whether `@iot.count` is the store's count: no filter, or one on time alone."""
    return options.filter is None or _exact_range(options.filter)


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
        return bool(names) and names <= expression.TIME_PROPERTIES
    return False

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
from numpy.typing import NDArray

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
    *,
    cursor: Cursor | None = None,
    descending: bool = False,
) -> tuple[int, Page]:
    """A filtered `@iot.count` and the page (`top` from `cursor`, in its order), in one reading.

    The readings the filter has to see are counted first (the store counts them, nothing
    is read); over what the request may still read, 400 naming both numbers. Then they
    are read once, in time order: the count is what passes, the page is taken from them.
    Every page of such a collection reads the range once: none is left without readings
    to read after its count.
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
    at: Cursor | None = None
    while True:
        page = reader.page(
            coll.series, n=total + 1, descending=False, cursor=at, bounds=bounds, keep=keep
        )
        parts.append(page)
        if page.next is None or page.next == at:
            break
        at = page.next
    which = np.concatenate([p.which for p in parts])
    ts = np.concatenate([p.ts_ns for p in parts])
    value = np.concatenate([p.value for p in parts])
    return len(ts), _taken(which, ts, value, top, cursor, descending=descending)


def _taken(
    which: NDArray[np.int32],
    ts: NDArray[np.int64],
    value: NDArray[np.float64],
    top: int,
    cursor: Cursor | None,
    *,
    descending: bool,
) -> Page:
    """The page of `top` from `cursor` of a collection read whole in ascending order.

    As `ObservationReader.page` orders and continues it: series by series, each in time
    order (descending: latest first); a cursor's time is where the next page starts
    (descending: the time it ends before).
    """
    if descending:  # series still in their order, each latest first
        order = np.lexsort((-ts, which))
        which, ts, value = which[order], ts[order], value[order]
    if cursor is not None:
        if cursor.ts_ns is None:
            on = which >= cursor.index
        else:
            mine = (ts < cursor.ts_ns) if descending else (ts >= cursor.ts_ns)
            on = (which > cursor.index) | ((which == cursor.index) & mine)
        which, ts, value = which[on], ts[on], value[on]
    more = None
    if len(ts) > top and top:
        last = int(ts[top - 1])
        more = Cursor(int(which[top - 1]), last if descending else last + 1)
    return Page(which[:top], ts[:top], value[:top], more)


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

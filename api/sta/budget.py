"""What one SensorThings request may include and read through `$expand`, checked before reading.

What it is for: the page-size limits (`DEFAULT_TOP`, `MAX_TOP` entities per page of a small
set, `MAX_OBSERVATION_TOP` observations per page: a larger `$top` is served in pages of that
size, as server-driven paging allows), the bound on observations expanded in one answer
(`MAX_EXPANDED_OBSERVATIONS`, counted by `Budget.include`), the bound on other entities an
answer's `$expand` writes (`MAX_EXPANDED_ENTITIES`, which bounds its bytes), and the fitting
of an outer page to the bounds before anything is read (`Budget.fit`: each item's
store-reading expansions, estimated by `cost` from the options and the catalogue's shape,
times the page size, at `QUERIES_PER_READ` each, within the reader's query budget left; each
item's expanded observations and entities times the page size within their bounds):
shortened, or refused when not even one item fits. This
module must not read the store (the reader's counters only) nor shape answers
(`api.sta.render` does).
"""

from __future__ import annotations

from collections.abc import Mapping

from api.sta import expression
from api.sta.errors import bad
from api.sta.model import SETS
from api.sta.observations import MAX_QUERIES, ObservationReader
from api.sta.options import Options

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_OBSERVATION_TOP = 10_000
MAX_EXPANDED_OBSERVATIONS = 10_000
#: Other entities `$expand` may write into one answer (each a JSON object of up to about 1 KB;
#: memoised ones as often as they are written): what bounds an answer's bytes.
MAX_EXPANDED_ENTITIES = 20_000
#: Store queries one store-reading expansion (a page of observations, a `$count`, a
#: Datastream's times) is estimated at before anything is read: a count, then a scan.
QUERIES_PER_READ = 2
#: Reads a Datastream's `phenomenonTime`/`resultTime` is estimated at, cold: finding its first
#: (and, in a closed period, last) reading gallops and halves (`ObservationReader.edges`: about
#: 7 to 14 store queries at three years of one reading a minute, 24 estimated).
TIMES_READS = 12


def page_size(options: Options, most: int) -> int:
    """The `$top` asked for (`DEFAULT_TOP` when none), at most `most`."""
    return min(DEFAULT_TOP if options.top is None else options.top, most)


class Budget:
    """The observations one request has expanded so far, and the fitting of its pages."""

    def __init__(self, reader: ObservationReader, fanout: Mapping[str, int] | None = None) -> None:
        self.reader = reader
        #: The most entities each to-many relation of the small sets leads to ("Set/Relation").
        self.fanout = fanout or {}
        #: Observations included by `$expand` so far (memoised ones as often as included).
        self.expanded = 0

    def include(self, n: int) -> None:
        """`n` more observations in the answer through `$expand`, within the bound."""
        self.expanded += n
        if self.expanded > MAX_EXPANDED_OBSERVATIONS:
            raise bad(
                f"this $expand would include more than {MAX_EXPANDED_OBSERVATIONS} "
                "observations; use a smaller $top inside Observations(...) or outside"
            )

    def fit(self, set_name: str, options: Options, top: int, *, distinct: int) -> int:
        """The outer page size that fits this request's bounds with its `$expand`, estimated.

        Before anything is read: each item's store-reading expansions (`cost`) times the page
        size (at most `distinct` different targets, as memoised expansions are computed once)
        must fit the query budget left, and the observations each item includes times the page
        size must fit `MAX_EXPANDED_OBSERVATIONS`. A page that does not is shortened (its
        nextLink goes on from there); one that cannot hold even one item is refused.
        """
        reads, included, entities = cost(set_name, options, self.fanout)
        if not top or not (reads or included or entities):
            return top
        fits = top
        if entities:
            fits = min(fits, MAX_EXPANDED_ENTITIES // entities)
            if not fits:
                raise bad(
                    f"one {SETS[set_name].singular} with this $expand would include {entities} "
                    f"entities, over the bound of {MAX_EXPANDED_ENTITIES} per answer; expand less"
                )
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


def cost(
    set_name: str, options: Options, fanout: Mapping[str, int] | None = None
) -> tuple[int, int, int]:
    """Store reads, observations and other entities an entity of `set_name` expands to.

    Estimated from the options and the catalogue's shape, before anything is read. A store
    read (a page of observations, a `$count`, a `$skip`) counts once per expansion node, a
    Datastream's times `TIMES_READS`: the Datastream and FeatureOfInterest of observations are
    memoised (one per series), and a to-many relation of the small sets counts as many
    entities as it leads to at most (`fanout`, "Set/Relation"; 1 when not given), or its
    `$top` when smaller.
    """
    fanout = fanout or {}
    reads = 0
    if set_name == "Datastreams" and (
        options.select is None or set(options.select) & expression.TIME_PROPERTIES
    ):
        reads += TIMES_READS
    included = 0
    entities = 0
    for item in options.expand:
        relation = SETS[set_name].relations.get(item.name)
        if relation is None:
            continue  # refused with its message where it is expanded
        target, many = relation
        inner_reads, inner_included, inner_entities = cost(target, item.options, fanout)
        if target != "Observations":
            width = 1
            if many:
                most = fanout.get(f"{set_name}/{item.name}", 1)
                width = min(most, page_size(item.options, MAX_TOP))
            reads += width * inner_reads
            included += width * inner_included
            entities += width * (1 + inner_entities)
            continue
        nested = item.options
        top = page_size(nested, MAX_OBSERVATION_TOP)
        reads += (top > 0) + nested.count + (nested.skip > 0) + inner_reads
        included += top + top * inner_included
        entities += top * inner_entities
    return reads, included, entities

"""What one SensorThings request may include and read through `$expand`, checked before reading.

What it is for: the page-size limits (`DEFAULT_TOP`, `MAX_TOP` entities per page of a small
set, `MAX_OBSERVATION_TOP` observations per page: a larger `$top` is served in pages of that
size, as server-driven paging allows), the bound on observations expanded in one answer
(`MAX_EXPANDED_OBSERVATIONS`, counted by `Budget.include`), and the fitting of an outer page
to the bounds before anything is read (`Budget.fit`: each item's store-reading expansions,
estimated from the options alone by `cost`, times the page size, at `QUERIES_PER_READ` each,
within the reader's query budget left; each item's expanded observations times the page size
within `MAX_EXPANDED_OBSERVATIONS`): shortened, or refused when not even one item fits. This
module must not read the store (the reader's counters only) nor shape answers
(`api.sta.render` does).
"""

from __future__ import annotations

from api.sta import expression
from api.sta.errors import bad
from api.sta.model import SETS
from api.sta.observations import MAX_QUERIES, ObservationReader
from api.sta.options import Options

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_OBSERVATION_TOP = 10_000
MAX_EXPANDED_OBSERVATIONS = 10_000
#: Store queries one store-reading expansion (a page of observations, a `$count`, a
#: Datastream's times) is estimated at before anything is read: a count, then a scan.
QUERIES_PER_READ = 2


def page_size(options: Options, most: int) -> int:
    """The `$top` asked for (`DEFAULT_TOP` when none), at most `most`."""
    return min(DEFAULT_TOP if options.top is None else options.top, most)


class Budget:
    """The observations one request has expanded so far, and the fitting of its pages."""

    def __init__(self, reader: ObservationReader) -> None:
        self.reader = reader
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
        reads, included = cost(set_name, options)
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


def cost(set_name: str, options: Options) -> tuple[int, int]:
    """Store-reading expansions and observations included per entity of `set_name`.

    Estimated from the options alone, before anything is read. A store read (a page of
    observations, a `$count`, a `$skip`, a Datastream's times) counts once per expansion node:
    the Datastream and FeatureOfInterest of observations are memoised (one per series), and a
    to-many relation of the small sets is counted as one entity (the reader's query budget
    still bounds the rest, before each query).
    """
    reads = 0
    if set_name == "Datastreams" and (
        options.select is None or set(options.select) & expression.TIME_PROPERTIES
    ):
        reads += 1
    included = 0
    for item in options.expand:
        relation = SETS[set_name].relations.get(item.name)
        if relation is None:
            continue  # refused with its message where it is expanded
        target = relation[0]
        inner_reads, inner_included = cost(target, item.options)
        if target != "Observations":
            reads += inner_reads
            included += inner_included
            continue
        nested = item.options
        top = page_size(nested, MAX_OBSERVATION_TOP)
        reads += (top > 0) + nested.count + (nested.skip > 0) + inner_reads
        included += top + top * inner_included
    return reads, included

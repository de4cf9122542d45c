"""Observations read from the store on demand, a page at a time, by time cursor.

What it is for: the readings of one or more series (a Datastream is one (device, sensor)
series) as pages of observations, and the first and last reading time of a series (a
Datastream's `phenomenonTime`). Nothing is copied into another table: every page is a
`count` then a `scan` of the store's own readings.

How a page stays bounded: a page wants `n` readings from a cursor on. The reader guesses the
time window that holds about `n` from the device's registered interval, asks the store how many
readings the window holds (`ReadingReader.count`, before anything is read), widens a window
that holds too few and narrows one that holds far too many (a device reporting faster than the
registry says), and scans only once the count is known to be under the request's limit
(`PILOTS_API_MAX_SCAN_READINGS`). The next page starts at the first reading not sent (the
cursor is that time, in the `$skiptoken` of the nextLink), so no page reads again what an
earlier page read. A page asks the store at most `MAX_QUERIES` times; past that it ends early
with a nextLink, which the standard allows (server-driven paging, 18-088 §9.3.3.6); a page
that may (`end_when_spent`) also ends early where the request's readings run out. A request
asks the store at most `max_queries` times in all (`MAX_REQUEST_QUERIES` with a token,
`MAX_ANONYMOUS_QUERIES` without): the query past that is refused before it is made.

The first and last times are found by counting: from the newest reading back, windows growing
four-fold until one is empty, then halving until a window holds at most `EDGE_SCAN` readings,
which is scanned. They are kept for `EDGE_TTL_S` per series and visible range. This module
must not shape answers.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from api.sta import expression
from api.sta.errors import bad
from core.registry import Device, Pilot, Sensor
from core.store import ReadingReader
from core.timeutil import NS_PER_S

#: Instants a series may be read in when nothing narrows it (as `api.deps`: 1900 to 2200).
EARLIEST_NS = expression.EARLIEST_NS
LATEST_NS = expression.LATEST_NS
#: Store queries one page may make before it ends early with a nextLink.
MAX_QUERIES = 64
#: Store queries one request may make in all, with a token and without one (checked before
#: each query: the next one past the budget is refused, never made).
MAX_REQUEST_QUERIES = 4000
MAX_ANONYMOUS_QUERIES = 200
#: Readings the edge search scans at most once it has narrowed a window down.
EDGE_SCAN = 2000
EDGE_TTL_S = 30.0
#: Readings a filtered page reads at once at least (most of them may fail the filter).
FILTER_CHUNK = 5000
EDGE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Series:
    """One Datastream's readings as one reader may see them: `[lo_ns, hi_ns)`."""

    pilot: Pilot
    device: Device
    sensor: Sensor
    lo_ns: int = EARLIEST_NS
    hi_ns: int = LATEST_NS

    @property
    def id(self) -> str:
        """The Datastream id."""
        return f"{self.device.id}:{self.sensor.id}"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: series `index`, and the time (None: the series' start).

    Ascending, the next page reads from `ts_ns` on; descending, before `ts_ns`.
    """

    index: int
    ts_ns: int | None

    def token(self) -> str:
        """The `$skiptoken` text."""
        return f"{self.index}~{'' if self.ts_ns is None else self.ts_ns}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """A cursor from its token; 400 for one this service did not give."""
        index, sep, ts = text.partition("~")
        if not sep or not re.fullmatch(r"[0-9]{1,10}", index):
            raise bad("$skiptoken is not one this service gave; follow @iot.nextLink")
        if ts and not re.fullmatch(r"-?[0-9]{1,19}", ts):
            raise bad("$skiptoken is not one this service gave; follow @iot.nextLink")
        cursor = cls(int(index), int(ts) if ts else None)
        if cursor.ts_ns is not None and not EARLIEST_NS <= cursor.ts_ns <= LATEST_NS:
            raise bad("$skiptoken is not one this service gave; follow @iot.nextLink")
        return cursor


@dataclass
class Page:
    """Observations of a page: series index, time and value of each, and where to go on."""

    which: NDArray[np.int32]
    ts_ns: NDArray[np.int64]
    value: NDArray[np.float64]
    next: Cursor | None


class _Edges:
    """First and last reading times per (series, range), kept for a while."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: dict[tuple[str, int, int], tuple[float, tuple[int, int] | None]] = {}

    def get(self, key: tuple[str, int, int]) -> tuple[bool, tuple[int, int] | None]:
        with self.lock:
            hit = self.kept.get(key)
        if hit is None or time.monotonic() - hit[0] > EDGE_TTL_S:
            return False, None
        return True, hit[1]

    def put(self, key: tuple[str, int, int], value: tuple[int, int] | None) -> None:
        with self.lock:
            if len(self.kept) >= EDGE_ENTRIES:
                self.kept.clear()
            self.kept[key] = (time.monotonic(), value)


_EDGES: weakref.WeakKeyDictionary[object, _Edges] = weakref.WeakKeyDictionary()
_EDGES_LOCK = threading.Lock()


def _edges_of(store: object) -> _Edges:
    with _EDGES_LOCK:
        edges = _EDGES.get(store)
        if edges is None:
            edges = _EDGES[store] = _Edges()
        return edges


class ObservationReader:
    """Pages of observations and series edges from a store, within one request's limits."""

    def __init__(
        self,
        store: ReadingReader,
        max_scan_readings: int,
        max_queries: int = MAX_REQUEST_QUERIES,
    ) -> None:
        self.store = store
        self.max_scan = max_scan_readings
        self.max_queries = max_queries
        self.queries = 0
        self.scanned = 0
        self._page_start = 0
        self._edges = _edges_of(store)
        self._latest: dict[str, dict[tuple[int, int], int]] = {}

    # -- store access, counted ----------------------------------------------------------------

    def _spend(self) -> None:
        """One store query more, or a 400 if the request's budget is spent (before the query)."""
        if self.queries >= self.max_queries:
            raise bad(
                f"this request {self.over_budget()}; ask for fewer entities ($top) or expand less"
            )
        self.queries += 1

    def over_budget(self) -> str:
        """What a refusal over the query budget says: the bound and whose it is."""
        whose = "without a token" if self.max_queries == MAX_ANONYMOUS_QUERIES else "in all"
        return f"needs more than {self.max_queries} store queries (the bound per request {whose})"

    def _count(self, s: Series, lo: int, hi: int) -> int:
        if lo >= hi:
            return 0
        self._spend()
        return self.store.count(s.pilot.id, [s.sensor.id], lo, hi, devices=[s.device.id])

    def _scan(
        self, s: Series, lo: int, hi: int, found: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        if self.scanned + found > self.max_scan:
            raise bad(
                f"this request would read more than {self.max_scan} readings "
                "(PILOTS_API_MAX_SCAN_READINGS); ask for a smaller $top or a narrower "
                "$filter on phenomenonTime"
            )
        self._spend()
        readings = self.store.scan(s.pilot.id, [s.sensor.id], lo, hi, devices=[s.device.id])
        self.scanned += len(readings)
        order = np.argsort(readings.ts_ns, kind="stable")
        return readings.ts_ns[order], readings.value[order]

    # -- edges ----------------------------------------------------------------------------------

    def newest(self, s: Series) -> int | None:
        """The newest reading time of the series in its range, None if it has none."""
        found = self.edges(s)
        return None if found is None else found[1]

    def edges(self, s: Series) -> tuple[int, int] | None:
        """First and last reading time of the series within `[lo_ns, hi_ns)`, None if none.

        The last is asked afresh in each request when the range is open to the future (the
        store's `latest`, one query per pilot); the first, and a last in the past, are kept.
        """
        if s.hi_ns >= LATEST_NS:
            last = self._newest_stored(s)
            if last is None or last < s.lo_ns:
                return None
        else:
            key = (s.id + "/last", s.lo_ns, s.hi_ns)
            hit, kept = self._edges.get(key)
            if not hit:
                total = self._count(s, s.lo_ns, s.hi_ns)
                kept = (0, self._edge(s, s.lo_ns, s.hi_ns, total, first=False)) if total else None
                self._edges.put(key, kept)
            if kept is None:
                return None
            last = kept[1]
        key = (s.id + "/first", s.lo_ns, 0)
        hit, kept = self._edges.get(key)
        if not hit or kept is None or kept[0] > last:
            kept = (self._edge(s, s.lo_ns, last + 1, None, first=True), 0)
            self._edges.put(key, kept)
        return kept[0], last

    def _newest_stored(self, s: Series) -> int | None:
        """The newest stored reading of the series (`latest`, asked once per pilot)."""
        newest = self._latest.get(s.pilot.id)
        if newest is None:
            self._spend()
            latest = self.store.latest(s.pilot.id)
            newest = {
                (int(d), int(k)): int(t)
                for d, k, t in zip(
                    latest.device.tolist(),
                    latest.sensor.tolist(),
                    latest.ts_ns.tolist(),
                    strict=True,
                )
            }
            self._latest[s.pilot.id] = newest
        return newest.get((s.device.code, s.sensor.code))

    def _edge(self, s: Series, lo: int, hi: int, total: int | None, *, first: bool) -> int:
        """The first (or last) reading time in `[lo, hi)`, which holds at least one."""
        step = EDGE_SCAN * s.device.interval_s * NS_PER_S
        a, b = lo, hi
        # Gallop from the far end (the one near the data we look for is unknown): the newest
        # side for `first` is `hi`, for `last` it is `lo`.
        while b - a > step:
            if first:
                x = b - step
                if self._count(s, a, x) == 0:
                    a = x
                    break
                b = x
            else:
                x = a + step
                if self._count(s, x, b) == 0:
                    b = x
                    break
                a = x
            step *= 4
        found = self._count(s, a, b) if total is None or (a, b) != (lo, hi) else total
        # Narrowed further when the request has less left to read (a few more counts).
        most = max(1, min(EDGE_SCAN, self.max_scan - self.scanned))
        while found > most and b - a > 1:
            mid = a + (b - a) // 2
            left = self._count(s, a, mid)
            if first:
                a, b, found = (a, mid, left) if left else (mid, b, found - left)
            else:
                a, b, found = (mid, b, found - left) if found - left else (a, mid, left)
        ts, _ = self._scan(s, a, b, found)
        if not len(ts):  # written away meanwhile; the range's end is as good an answer
            return lo if first else hi - 1
        return int(ts[0] if first else ts[-1])

    # -- pages ----------------------------------------------------------------------------------

    def count(self, series: list[Series], lo: int | None, hi: int | None) -> int:
        """Readings of all the series within their ranges and `[lo, hi)`."""
        total = 0
        for s in series:
            a, b = _clip(s, lo, hi)
            total += self._count(s, a, b)
        return total

    def page(
        self,
        series: list[Series],
        *,
        n: int,
        descending: bool,
        cursor: Cursor | None,
        bounds: tuple[int | None, int | None],
        keep: Callable[[NDArray[np.int64], NDArray[np.float64]], NDArray[np.bool_]] | None,
        end_when_spent: bool = False,
    ) -> Page:
        """Up to `n` observations from `cursor` on (series by series, each in time order).

        Past the request's `max_scan` readings the page is refused (400), or, with
        `end_when_spent`, ends early where it got to, with a cursor (possibly with nothing in
        it, when what the request read before has spent the budget).
        """
        index, at = (cursor.index, cursor.ts_ns) if cursor is not None else (0, None)
        which: list[NDArray[np.int32]] = []
        times: list[NDArray[np.int64]] = []
        values: list[NDArray[np.float64]] = []
        got = 0
        self._page_start = self.queries
        while index < len(series) and got < n and self.queries - self._page_start < MAX_QUERIES:
            room = self.max_scan - self.scanned
            if end_when_spent and room <= 0:
                break
            s = series[index]
            span = self._span(s, bounds, at, descending=descending)
            if span is None:
                index, at = index + 1, None
                continue
            lo, hi = span
            room = self.max_scan - self.scanned  # the edges may have read some
            want = n - got
            if keep is not None:  # most readings may fail the filter: read more at once
                want = max(want, min(FILTER_CHUNK, room))
            limit = None
            if end_when_spent:
                if room <= 0:
                    break
                want = limit = min(want, room)
            ts, value, nxt = self._read(s, lo, hi, want, descending=descending, limit=limit)
            if keep is not None and len(ts):
                passed = keep(ts, value)
                ts, value = ts[passed], value[passed]
                if len(ts) > n - got:
                    ts, value = ts[: n - got], value[: n - got]
                    # on after the last one sent (descending: before it)
                    nxt = int(ts[-1]) + (0 if descending else 1)
            which.append(np.full(len(ts), index, dtype=np.int32))
            times.append(ts)
            values.append(value)
            got += len(ts)
            index, at = (index + 1, None) if nxt is None else (index, nxt)
        more = Cursor(index, at) if index < len(series) else None
        if not times:
            return Page(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), more)
        return Page(np.concatenate(which), np.concatenate(times), np.concatenate(values), more)

    def _span(
        self, s: Series, bounds: tuple[int | None, int | None], at: int | None, *, descending: bool
    ) -> tuple[int, int] | None:
        """What of the series a page reads from `at` on: `[lo, hi)`, None if nothing is left."""
        lo, hi = _clip(s, *bounds)
        if lo <= EARLIEST_NS or hi >= LATEST_NS:
            found = self.edges(s)  # an open end is where the data is, not 1900 or 2200
            if found is None:
                return None
            lo, hi = max(lo, found[0]), min(hi, found[1] + 1)
        if at is not None:
            lo, hi = (max(lo, at), hi) if not descending else (lo, min(hi, at))
        return (lo, hi) if lo < hi else None

    def _read(
        self,
        s: Series,
        lo: int,
        hi: int,
        want: int,
        *,
        descending: bool,
        limit: int | None = None,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], int | None]:
        """Up to `want` readings at the start (or end) of `[lo, hi)`, and where to go on.

        With a `limit`, a window holding more than that many is narrowed, as one holding far
        more than `want`.
        """
        too_many = 2 * want + 16 if limit is None else min(2 * want + 16, limit)
        width = max(want * s.device.interval_s * NS_PER_S, NS_PER_S)
        # Window widths known to hold too few (`short`) and far too many (`long`) readings:
        # the next guess stays strictly between them, so a silence next to a burst is
        # bracketed and halved rather than jumped over back and forth.
        short, long = 0, None
        settle = False
        while True:
            a, b = (lo, min(hi, lo + width)) if not descending else (max(lo, hi - width), hi)
            whole = (a, b) == (lo, hi)
            found = self._count(s, a, b)
            if settle or self.queries - self._page_start >= MAX_QUERIES - 1:
                break
            if found > too_many and b - a > 1:  # far more than the registry says
                long, guess = b - a, max(1, (b - a) * want // found)
            elif found >= want or whole:
                break
            else:
                short = b - a
                guess = (b - a) * (16 if found == 0 else max(2, -(-2 * want // found)))
            if long is not None and not short < guess < long:
                guess = short + (long - short) // 2
                if guess <= short:  # nothing between: take the narrowest that holds enough
                    guess, settle = long, True
            width = guess
        ts, value = self._scan(s, a, b, found)
        if descending:
            ts, value = ts[::-1], value[::-1]
        if len(ts) > want:
            # The next page starts at the first reading not sent (descending: ends after it).
            nxt = int(ts[want]) + (1 if descending else 0)
            return ts[:want], value[:want], nxt
        if whole:
            return ts, value, None
        return ts, value, (b if not descending else a)

    def one(self, s: Series, ts_ns: int) -> float | None:
        """The value of the series' reading at `ts_ns`, None if there is none it may see."""
        if not s.lo_ns <= ts_ns < s.hi_ns:
            return None
        ts, value = self._scan(s, ts_ns, ts_ns + 1, 1)
        return float(value[0]) if len(ts) else None


def _clip(s: Series, lo: int | None, hi: int | None) -> tuple[int, int]:
    return max(s.lo_ns, EARLIEST_NS if lo is None else lo), min(
        s.hi_ns, LATEST_NS if hi is None else hi
    )


def filter_keep(
    expr: expression.Expr | None,
) -> Callable[[NDArray[np.int64], NDArray[np.float64]], NDArray[np.bool_]] | None:
    """The filter as a whole-array test (None: everything passes)."""
    if expr is None:
        return None
    checked = expr

    def keep(ts: NDArray[np.int64], value: NDArray[np.float64]) -> NDArray[np.bool_]:
        return expression.mask(checked, ts, value)

    return keep

"""Observation pages by time cursor: every reading once, in order, whatever the device did.

`api.sta.observations.ObservationReader` over the embedded store (the reader only uses the
store contract's `count`, `scan` and `latest`, which the contract suite checks on InfluxDB
too). The series are made awkward on purpose: a device that reports every second although the
registry says every 10 minutes, long silences, readings on the page boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.sta import expression
from api.sta.documents import iso_times
from api.sta.errors import StaError
from api.sta.observations import Cursor, ObservationReader, Series, filter_keep
from core.readings import Readings
from core.registry import Registry
from core.store.embedded import EmbeddedStore
from core.timeutil import DAY_NS, NS_PER_MS, NS_PER_S, parse_instant_ns

T0 = parse_instant_ns("2026-01-01T00:00:00Z")


@pytest.fixture
def world(registry: Registry, tmp_path: Path) -> Iterator[tuple[EmbeddedStore, list[Series]]]:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    store.start()
    level = registry.sensors["level"]
    device = registry.devices["sf-rlv-01"]  # registered at 600 s
    burst = T0 + np.arange(500, dtype=np.int64) * NS_PER_S  # every second
    later = T0 + 200 * DAY_NS + np.arange(50, dtype=np.int64) * 600 * NS_PER_S
    ts = np.concatenate([burst, later])
    store.write(
        Readings.from_arrays(
            ts,
            [device.code] * len(ts),
            [level.code] * len(ts),
            np.arange(len(ts), dtype=np.float64),
        )
    )
    other = registry.devices["sf-rlv-02"]
    store.write(
        Readings.from_arrays(
            burst[:30], [other.code] * 30, [level.code] * 30, np.arange(30, dtype=np.float64)
        )
    )
    pilot = registry.pilots["santa-fe"]
    yield store, [Series(pilot, device, level), Series(pilot, other, level)]
    store.close()


def page_all(
    reader: ObservationReader,
    series: list[Series],
    n: int,
    *,
    descending: bool = False,
    condition: str | None = None,
) -> tuple[list[tuple[int, int]], int]:
    keep = filter_keep(expression.parse(condition) if condition else None)
    bounds = expression.time_bounds(expression.parse(condition)) if condition else (None, None)
    seen: list[tuple[int, int]] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        page = reader.page(
            series, n=n, descending=descending, cursor=cursor, bounds=bounds, keep=keep
        )
        assert len(page.ts_ns) <= n
        seen += list(zip(page.which.tolist(), page.ts_ns.tolist(), strict=True))
        pages += 1
        if page.next is None:
            return seen, pages
        cursor = Cursor.parse(page.next.token())


def test_every_reading_once_in_order_across_pages_gaps_and_series(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    seen, pages = page_all(ObservationReader(store, 10_000), series, 7)
    first = [t for w, t in seen if w == 0]
    assert len(first) == 550 and first == sorted(first)
    assert [t for w, t in seen if w == 1] == (T0 + np.arange(30) * NS_PER_S).tolist()
    assert len(seen) == len(set(seen)) == 580
    # Full pages but where a series ends: a silence or a burst costs no short pages.
    assert pages <= -(-550 // 7) + -(-30 // 7)


def test_descending_pages_are_the_same_readings_newest_first(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    seen, _ = page_all(ObservationReader(store, 10_000), series[:1], 13, descending=True)
    times = [t for _, t in seen]
    assert len(times) == 550 and times == sorted(times, reverse=True)


def test_a_result_filter_reads_on_past_pages_that_match_nothing(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    seen, _ = page_all(ObservationReader(store, 10_000), series[:1], 5, condition="result ge 540")
    assert len(seen) == 10  # the last ten values, 540 to 549
    window = "phenomenonTime ge 2026-01-01T00:01:00Z and phenomenonTime lt 2026-01-01T00:02:00Z"
    seen, _ = page_all(ObservationReader(store, 10_000), series[:1], 25, condition=window)
    assert [t for _, t in seen] == (T0 + np.arange(60, 120) * NS_PER_S).tolist()


def test_a_page_never_reads_past_the_request_bound(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    reader = ObservationReader(store, 100)
    with pytest.raises(StaError) as refused:
        reader.page(series, n=150, descending=False, cursor=None, bounds=(None, None), keep=None)
    assert refused.value.status == 400
    assert "PILOTS_API_MAX_SCAN_READINGS" in str(refused.value)
    assert reader.scanned <= 100


def test_edges_are_the_first_and_last_reading(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    reader = ObservationReader(store, 10_000)
    assert reader.edges(series[0]) == (T0, T0 + 200 * DAY_NS + 49 * 600 * NS_PER_S)
    narrowed = Series(series[0].pilot, series[0].device, series[0].sensor, T0 + 5, T0 + DAY_NS)
    assert reader.edges(narrowed) == (T0 + NS_PER_S, T0 + 499 * NS_PER_S)
    empty = Series(series[0].pilot, series[0].device, series[0].sensor, T0 - DAY_NS, T0)
    assert reader.edges(empty) is None


def test_a_page_that_may_end_early_ends_where_the_read_budget_runs_out(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    reader = ObservationReader(store, 100)
    page = reader.page(
        series,
        n=150,
        descending=False,
        cursor=None,
        bounds=(None, None),
        keep=None,
        end_when_spent=True,
    )
    assert reader.scanned <= 100 and 0 < len(page.ts_ns) < 150
    # the next page goes on after the last reading sent, before the next one (a second later)
    assert page.next is not None and page.next.index == 0 and page.next.ts_ns is not None
    assert int(page.ts_ns[-1]) < page.next.ts_ns <= int(page.ts_ns[-1]) + NS_PER_S


def test_the_query_budget_refuses_the_query_past_it_before_making_it(
    world: tuple[EmbeddedStore, list[Series]],
) -> None:
    store, series = world
    reader = ObservationReader(store, 10_000, max_queries=3)
    with pytest.raises(StaError) as refused:
        page_all(reader, series, 7)
    assert refused.value.status == 400
    assert "3 store queries" in str(refused.value)
    assert reader.queries == 3


def test_one_instant_is_always_the_same_text_whatever_page_it_is_in() -> None:
    second, milli, nano = T0, T0 + 250 * NS_PER_MS, T0 + 7
    alone = {t: iso_times(np.asarray([t], np.int64))[0] for t in (second, milli, nano)}
    mixed = iso_times(np.asarray([second, milli, nano], np.int64))
    assert mixed == [alone[second], alone[milli], alone[nano]]
    assert alone == {
        second: "2026-01-01T00:00:00Z",
        milli: "2026-01-01T00:00:00.250Z",
        nano: "2026-01-01T00:00:00.000000007Z",
    }

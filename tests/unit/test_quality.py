"""Data quality measures against hand-computed answers and plain-Python models."""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.quality import (
    NEVER_NS,
    completeness,
    duplicates,
    gaps,
    interval_s_of_device,
    last_seen,
    latency,
    packet_delivery,
    silent,
)
from core.readings import Readings
from core.registry import Registry
from core.timeutil import datetime_to_ns
from core.windows import calendar_edges, fixed_edges

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 3600 * NS
CORDOBA = ZoneInfo("America/Argentina/Cordoba")
PROPS = settings(max_examples=60, deadline=None)


def local_ns(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0) -> int:
    return datetime_to_ns(datetime(year, month, day, hour, tzinfo=tz))


#: Late evening before a local midnight that is also a month end (UTC is already 1 December).
T0 = local_ns(CORDOBA, 2024, 11, 30, 20)


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def arrays(rows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(device, ts_ns) rows as (ts_ns, device_row) arrays."""
    ts = np.asarray([t for _, t in rows], dtype=np.int64)
    dev = np.asarray([d for d, _ in rows], dtype=np.int32)
    return ts, dev


# (device, ts_ns): a 450 s grid around T0 gives repeats, unsorted input and local midnight.
reports = st.lists(
    st.tuples(st.integers(0, 2), st.integers(-20, 60).map(lambda i: T0 + i * 450 * NS)),
    max_size=50,
)
intervals = st.lists(st.sampled_from([300.0, 600.0, 900.0]), min_size=3, max_size=3)


# --- completeness ---------------------------------------------------------------------------


def ref_completeness(
    rows: list[tuple[int, int]], interval: list[float], edges: list[int], lo: int, hi: int
) -> tuple[list[list[int]], list[list[float]]]:
    n_windows = len(edges) - 1
    received = [[0] * n_windows for _ in interval]
    for device, t in {(d, t) for d, t in rows if lo <= t < hi}:
        window = max(i for i in range(n_windows) if edges[i] <= t)
        received[device][window] += 1
    expected = [
        [max(0, min(edges[i + 1], hi) - max(edges[i], lo)) / NS / iv for i in range(n_windows)]
        for iv in interval
    ]
    return received, expected


@PROPS
@given(
    rows=reports,
    interval=intervals,
    window_h=st.sampled_from([0, 1, 3, 24]),
    start=st.integers(-30, 40).map(lambda i: T0 + i * 600 * NS + 7),
    length=st.integers(1, 60).map(lambda i: i * 700 * NS),
    clip=st.booleans(),
)
def test_completeness_matches_a_plain_count(
    rows: list[tuple[int, int]],
    interval: list[float],
    window_h: int,
    start: int,
    length: int,
    clip: bool,
) -> None:
    end = start + length
    if window_h == 0:
        edges = calendar_edges(start, end, "day", CORDOBA)
    else:
        edges = fixed_edges(start, end, window_h * HOUR, origin_ns=-3 * HOUR)
    ts, dev = arrays(rows)
    got = completeness(
        ts,
        dev,
        n_devices=3,
        interval_s=np.asarray(interval),
        edges_ns=edges,
        start_ns=start if clip else None,
        end_ns=end if clip else None,
    )
    lo, hi = (start, end) if clip else (int(edges[0]), int(edges[-1]))
    received, expected = ref_completeness(rows, interval, [int(e) for e in edges], lo, hi)
    assert got.received.tolist() == received
    for d in range(3):
        for w in range(len(edges) - 1):
            assert close(got.expected[d, w], expected[d][w])
            ratio = received[d][w] / expected[d][w] if expected[d][w] else math.nan
            assert close(got.ratio[d, w], ratio)


def test_completeness_per_local_day_with_dropout_partial_day_and_fast_device() -> None:
    start = local_ns(CORDOBA, 2024, 11, 1)
    end = local_ns(CORDOBA, 2024, 11, 3)
    every_10 = np.arange(start, end, 10 * MIN)
    dropout = (every_10 >= start + 30 * HOUR) & (every_10 < start + 32 * HOUR)  # 12 lost
    fast = np.arange(start, end, 5 * MIN)  # registered at 10 minutes, reports every 5
    ts = np.concatenate((every_10[~dropout], fast, every_10[:3]))  # plus three repeats
    dev = np.concatenate(
        (np.zeros((~dropout).sum(), np.int32), np.ones(len(fast), np.int32), np.zeros(3, np.int32))
    )
    edges = calendar_edges(start, end, "day", CORDOBA)
    whole = completeness(ts, dev, n_devices=2, interval_s=600, edges_ns=edges)
    assert whole.expected.tolist() == [[144.0, 144.0], [144.0, 144.0]]
    assert whole.received.tolist() == [[144, 132], [288, 288]]
    assert whole.ratio[0].tolist() == [1.0, 132 / 144]
    assert whole.ratio[1].tolist() == [2.0, 2.0]  # not capped: faster than registered

    noon = start + 12 * HOUR  # asked from local noon: the first day expects half
    half = completeness(ts, dev, n_devices=2, interval_s=600, edges_ns=edges, start_ns=noon)
    assert half.expected[0].tolist() == [72.0, 144.0]
    assert half.received[0].tolist() == [72, 132]


def test_completeness_per_month_across_month_end() -> None:
    start = local_ns(CORDOBA, 2024, 11, 1)
    end = local_ns(CORDOBA, 2025, 1, 1)
    hourly = np.arange(start, end, HOUR)
    edges = calendar_edges(start, end, "month", CORDOBA)
    got = completeness(
        hourly, np.zeros(len(hourly), np.int32), n_devices=1, interval_s=3600.0, edges_ns=edges
    )
    assert got.expected.tolist() == [[720.0, 744.0]]
    assert got.ratio.tolist() == [[1.0, 1.0]]


def test_completeness_uses_the_registered_intervals(registry: Registry) -> None:
    interval = interval_s_of_device(registry)
    river = registry.devices["sf-rlv-01"].code
    air = registry.devices["sn-aq-01"].code
    assert interval[river] == 600.0
    assert interval[air] == 300.0
    day = calendar_edges(T0, T0 + 1, "day", CORDOBA)
    ts = np.arange(day[0], day[1], 10 * MIN)
    for device, ratio in ((river, 1.0), (air, 0.5)):
        got = completeness(
            ts,
            np.full(len(ts), device, np.int32),
            n_devices=len(interval),
            interval_s=interval,
            edges_ns=day,
        )
        assert got.ratio[device, 0] == ratio


# --- gaps and silence -----------------------------------------------------------------------


def ref_gaps(
    rows: list[tuple[int, int]], interval: list[float], k: float, start: int, end: int
) -> list[tuple[int, int, int, float]]:
    out = []
    for device, iv in enumerate(interval):
        times = sorted({t for d, t in rows if d == device and start <= t < end})
        points = [start, *times, end]
        for a, b in itertools.pairwise(points):
            if b - a > k * iv * NS:
                out.append((device, a, b, (b - a) / NS))
    return out


@PROPS
@given(
    rows=reports,
    interval=intervals,
    k=st.sampled_from([1.0, 1.5, 3.0]),
    start=st.integers(-25, 30).map(lambda i: T0 + i * 450 * NS),
    length=st.integers(1, 80).map(lambda i: i * 450 * NS),
)
def test_gaps_match_a_plain_scan(
    rows: list[tuple[int, int]], interval: list[float], k: float, start: int, length: int
) -> None:
    ts, dev = arrays(rows)
    got = gaps(
        ts,
        dev,
        n_devices=3,
        interval_s=np.asarray(interval),
        k=k,
        start_ns=start,
        end_ns=start + length,
    )
    want = ref_gaps(rows, interval, k, start, start + length)
    assert (
        list(
            zip(
                got.device_row.tolist(),
                got.start_ns.tolist(),
                got.end_ns.tolist(),
                got.length_s.tolist(),
                strict=True,
            )
        )
        == want
    )
    for device in range(3):
        lengths = [g[3] for g in want if g[0] == device]
        assert got.longest_s[device] == max(lengths, default=0.0)
        assert close(got.total_s[device], sum(lengths))


def test_gaps_known_answer() -> None:
    start, end = T0, T0 + 2 * HOUR
    minutes = [90, 0, 20, 10, 80, 80]  # unsorted, with a repeat
    ts = np.asarray([start + m * MIN for m in minutes], dtype=np.int64)
    got = gaps(
        ts,
        np.zeros(len(ts), np.int32),
        n_devices=2,
        interval_s=600,
        k=3,
        start_ns=start,
        end_ns=end,
    )
    # Device 0: 20 → 80 min is 60 min > 30; 90 → 120 is exactly 30, not longer. Device 1 never
    # reported: the whole range is one gap.
    assert got.device_row.tolist() == [0, 1]
    assert got.start_ns.tolist() == [start + 20 * MIN, start]
    assert got.end_ns.tolist() == [start + 80 * MIN, end]
    assert got.length_s.tolist() == [3600.0, 7200.0]
    assert got.longest_s.tolist() == [3600.0, 7200.0]

    empty = gaps(
        ts[:0],
        ts[:0].astype(np.int32),
        n_devices=1,
        interval_s=600,
        k=3,
        start_ns=start,
        end_ns=start + 20 * MIN,
    )
    assert len(empty) == 0  # 20 silent minutes are not longer than 3 x 10


def test_silent_and_last_seen() -> None:
    now = T0 + 10 * HOUR
    # Device 0 last seen 20 min ago, 1 at 31 min, 2 never, 3 ahead of the clock, 4 exactly
    # 30 min ago (3 intervals of 10 min: not yet silent).
    ts = np.asarray(
        [now - 5 * HOUR, now - 20 * MIN, now - 31 * MIN, now + MIN, now - 30 * MIN], np.int64
    )
    dev = np.asarray([0, 0, 1, 3, 4], np.int32)
    seen = last_seen(ts, dev, n_devices=5)
    assert seen.tolist() == [now - 20 * MIN, now - 31 * MIN, NEVER_NS, now + MIN, now - 30 * MIN]
    assert silent(seen, now_ns=now, interval_s=600, k=3).tolist() == [
        False,
        True,
        True,
        False,
        False,
    ]
    per_device = np.asarray([600.0, 900.0, 600.0, 600.0, 300.0])
    assert silent(seen, now_ns=now, interval_s=per_device, k=3).tolist() == [
        False,
        False,
        True,
        False,
        True,
    ]


@PROPS
@given(
    seen=st.lists(
        st.one_of(st.just(NEVER_NS), st.integers(0, 600).map(lambda m: T0 - m * MIN)),
        max_size=6,
    ),
    k=st.sampled_from([1.0, 2.5, 4.0]),
)
def test_silent_matches_definition(seen: list[int], k: float) -> None:
    got = silent(np.asarray(seen, np.int64), now_ns=T0, interval_s=900.0, k=k)
    assert got.tolist() == [s == NEVER_NS or T0 - s > k * 900.0 * NS for s in seen]


# --- packet delivery ------------------------------------------------------------------------


def ref_delivery(frames: list[tuple[int, int, int]], n_devices: int) -> list[tuple[int, int, int]]:
    out = []
    for device in range(n_devices):
        mine = sorted((t, f) for d, t, f in frames if d == device and f != -1)
        sessions: list[list[int]] = []
        for _, f in mine:
            if not sessions or f < sessions[-1][-1]:
                sessions.append([])
            sessions[-1].append(f)
        received = sum(len(set(s)) for s in sessions)
        expected = sum(max(s) - min(s) + 1 for s in sessions)
        out.append((received, expected, len(sessions)))
    return out


@PROPS
@given(
    frames=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(-1, 25)), max_size=60
    )
)
def test_packet_delivery_matches_sessions_by_hand(frames: list[tuple[int, int, int]]) -> None:
    ts = np.asarray([T0 + t * 300 * NS for _, t, _ in frames], dtype=np.int64)
    dev = np.asarray([d for d, _, _ in frames], dtype=np.int32)
    fcnt = np.asarray([f for _, _, f in frames], dtype=np.int64)
    got = packet_delivery(ts, dev, fcnt, n_devices=3)
    want = ref_delivery([(d, T0 + t * 300 * NS, f) for d, t, f in frames], 3)
    assert (
        list(zip(got.received.tolist(), got.expected.tolist(), got.sessions.tolist(), strict=True))
        == want
    )
    for device, (received, expected, _) in enumerate(want):
        assert close(got.ratio[device], received / expected if expected else math.nan)


def test_packet_delivery_known_answer_with_reset_and_retransmission() -> None:
    # Counters 10 11 _ 13 14, reboot, 0 1 2 2 _ 4; given shuffled, plus one frame without fcnt.
    counters = [10, 11, 13, 14, 0, 1, 2, 2, 4]
    minutes = [0, 10, 30, 40, 60, 70, 80, 80, 100]
    order = [4, 0, 8, 2, 6, 1, 7, 3, 5]
    ts = np.asarray([T0 + minutes[i] * MIN for i in order] + [T0 + 5 * MIN], np.int64)
    fcnt = np.asarray([counters[i] for i in order] + [-1], np.int64)
    got = packet_delivery(ts, np.zeros(len(ts), np.int32), fcnt, n_devices=2)
    assert got.sessions.tolist() == [2, 0]
    assert got.received.tolist() == [8, 0]  # 4 + 4 distinct counters
    assert got.expected.tolist() == [10, 0]  # 14-10+1 and 4-0+1
    assert got.ratio[0] == 0.8
    assert math.isnan(got.ratio[1])


# --- latency and duplicates -----------------------------------------------------------------


def linear_quantile(values: list[float], q: float) -> float:
    xs = sorted(values)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


@PROPS
@given(
    frames=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 30), st.integers(-2000, 90_000)), max_size=40
    )
)
def test_latency_matches_a_plain_mean_and_quantiles(frames: list[tuple[int, int, int]]) -> None:
    ts = np.asarray([T0 + t * MIN for _, t, _ in frames], dtype=np.int64)
    received = ts + np.asarray([ms * 1_000_000 for _, _, ms in frames], dtype=np.int64)
    dev = np.asarray([d for d, _, _ in frames], dtype=np.int32)
    got = latency(received, ts, dev, n_devices=3, quantiles=(0.5, 0.9))
    for device in range(3):
        last: dict[int, float] = {}
        for d, t, ms in frames:
            if d == device:
                last[t] = ms / 1000  # the same frame stored twice keeps the last
        values = list(last.values())
        assert close(got.mean_s[device], sum(values) / len(values) if values else math.nan)
        for q in (0.5, 0.9):
            assert close(
                got.quantiles_s[q][device], linear_quantile(values, q) if values else math.nan
            )


def test_latency_known_answer() -> None:
    ts = np.asarray([T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN], np.int64)
    received = ts + np.asarray([1, 2, 3, 10], np.int64) * NS
    mean_s, quantiles = latency(received, ts, np.zeros(4, np.int32), n_devices=1)
    assert mean_s.tolist() == [4.0]
    assert quantiles[0.5].tolist() == [2.5]
    assert quantiles[0.99][0] == pytest.approx(3 + 0.97 * 7)

    # Two gateways' devices: each keeps its own row; device 2 sent nothing.
    both = latency(
        np.concatenate((received, ts[:2] + 60 * NS)),
        np.concatenate((ts, ts[:2])),
        np.asarray([0, 0, 0, 0, 1, 1], np.int32),
        n_devices=3,
    )
    assert both.mean_s[:2].tolist() == [4.0, 60.0]
    assert math.isnan(both.mean_s[2])


@PROPS
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 1), st.floats(0, 9)),
        max_size=40,
    )
)
def test_duplicates_counts_repeated_points(rows: list[tuple[int, int, int, float]]) -> None:
    readings = Readings.from_arrays(
        [T0 + t * NS for t, _, _, _ in rows],
        [d for _, d, _, _ in rows],
        [s for _, _, s, _ in rows],
        [v for _, _, _, v in rows],
    )
    assert duplicates(readings) == len(rows) - len({(t, d, s) for t, d, s, _ in rows})


def test_duplicates_known_answer() -> None:
    readings = Readings.from_arrays([T0, T0, T0, T0 + 1], [0, 0, 1, 0], [2, 2, 2, 2], [1, 2, 3, 4])
    assert duplicates(readings) == 1
    assert duplicates(Readings.empty()) == 0

"""The late flag against hand-computed answers and a plain-Python join of readings to uplinks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.latency import first_receipt_ns, late
from core.quality import NEVER_NS
from core.readings import Readings
from core.uplinks import Uplinks

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 3600 * NS
T0 = 1_732_935_600 * NS  # 2024-11-30T00:00-03:00
PROPS = settings(max_examples=80, deadline=None)

Reading = tuple[int, int, int]  # (device, sensor, ts_ns)
Uplink = tuple[int, int, int]  # (device, ts_ns, received_ns)


def readings_of(rows: list[Reading]) -> Readings:
    if not rows:
        return Readings.empty()
    device, sensor, ts = zip(*rows, strict=True)
    return Readings.from_arrays(ts, device, sensor, [20.0] * len(rows))


def uplinks_of(rows: list[Uplink]) -> Uplinks:
    if not rows:
        return Uplinks.empty()
    device, ts, received = zip(*rows, strict=True)
    n = len(rows)
    return Uplinks.from_columns(
        ts_ns=ts,
        device=device,
        received_ns=received,
        fcnt=range(n),
        rssi=[-100.0] * n,
        snr=[5.0] * n,
        sf=[9] * n,
        gateway=["gw"] * n,
    )


def test_a_backlog_hours_late_is_late_and_a_few_seconds_is_not() -> None:
    # Two river gauges allowed 10 minutes; a weather station (device 2) allowed 1 minute.
    limits = np.asarray([600.0, 600.0, 60.0])
    readings = readings_of(
        [
            (0, 0, T0),  # level, came 2 s later
            (0, 1, T0),  # water temperature, same uplink
            (0, 0, T0 + 10 * MIN),  # level, a gateway's backlog 3 h later
            (0, 1, T0 + 10 * MIN),  # water temperature, same backlog
            (1, 0, T0),  # exactly at the limit: not more than it
            (2, 0, T0),  # 2 minutes: late for the weather station's 1-minute limit
            (2, 0, T0 + 10 * MIN),  # no uplink carried it (uplinks not scanned): not late
        ]
    )
    uplinks = uplinks_of(
        [
            (0, T0, T0 + 2 * NS),
            (0, T0 + 10 * MIN, T0 + 10 * MIN + 3 * HOUR),
            (1, T0, T0 + 600 * NS),
            (2, T0, T0 + 2 * MIN),
        ]
    )
    assert late(readings, uplinks, after_s_of_device=limits).tolist() == [
        False,
        False,
        True,
        True,
        False,
        True,
        False,
    ]
    # One limit for everyone: 1 hour lets only the 3-hour backlog through as late.
    assert late(readings, uplinks, after_s_of_device=3600.0).tolist() == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
    ]


def test_a_retried_uplink_counts_from_its_first_receipt() -> None:
    readings = readings_of([(0, 0, T0), (0, 0, T0 + 10 * MIN)])
    # The first frame arrived in 3 s and a webhook retry 5 hours later; the second frame's
    # only copies arrived 4 and 2 hours later (given out of order).
    uplinks = uplinks_of(
        [
            (0, T0, T0 + 5 * HOUR),
            (0, T0 + 10 * MIN, T0 + 10 * MIN + 4 * HOUR),
            (0, T0, T0 + 3 * NS),
            (0, T0 + 10 * MIN, T0 + 10 * MIN + 2 * HOUR),
        ]
    )
    assert first_receipt_ns(readings, uplinks).tolist() == [
        T0 + 3 * NS,
        T0 + 10 * MIN + 2 * HOUR,
    ]
    assert late(readings, uplinks, after_s_of_device=np.asarray([900.0])).tolist() == [False, True]


def test_the_answer_follows_the_batch_order_and_matches_by_device_and_time() -> None:
    rows = [(d, s, T0 + i * 10 * MIN) for i in range(4) for d in range(2) for s in range(2)]
    # Device 1's uplinks are all late by an hour; device 0's on time. Same device times.
    uplinks = uplinks_of(
        [
            (d, T0 + i * 10 * MIN, T0 + i * 10 * MIN + (HOUR if d else NS))
            for i in range(4)
            for d in (0, 1)
        ]
    )
    shuffled = [rows[i] for i in np.random.default_rng(7).permutation(len(rows))]
    got = late(readings_of(shuffled), uplinks, after_s_of_device=np.asarray([60.0, 60.0]))
    assert got.tolist() == [device == 1 for device, _, _ in shuffled]


def test_clock_ahead_and_empty_inputs_are_never_late() -> None:
    readings = readings_of([(0, 0, T0)])
    ahead = uplinks_of([(0, T0, T0 - 2 * MIN)])  # device clock 2 minutes fast
    assert late(readings, ahead, after_s_of_device=0.0).tolist() == [False]
    assert late(readings, Uplinks.empty(), after_s_of_device=0.0).tolist() == [False]
    assert first_receipt_ns(readings, Uplinks.empty()).tolist() == [NEVER_NS]
    assert late(Readings.empty(), ahead, after_s_of_device=0.0).tolist() == []
    assert late(Readings.empty(), Uplinks.empty(), after_s_of_device=np.empty(0)).tolist() == []


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="after_s_of_device"):
        late(readings_of([(0, 0, T0)]), Uplinks.empty(), after_s_of_device=np.asarray([-1.0]))


def ref_receipts(readings: list[Reading], uplinks: list[Uplink]) -> list[int | None]:
    first: dict[tuple[int, int], int] = {}
    for device, ts, received in uplinks:
        key = (device, ts)
        first[key] = min(received, first.get(key, received))
    return [first.get((device, ts)) for device, _, ts in readings]


def ref_late(readings: list[Reading], uplinks: list[Uplink], limits: list[float]) -> list[bool]:
    return [
        receipt is not None and receipt - ts > limits[device] * NS
        for (device, _, ts), receipt in zip(readings, ref_receipts(readings, uplinks), strict=True)
    ]


@PROPS
@given(
    readings=st.lists(
        st.tuples(
            st.integers(0, 2), st.integers(0, 2), st.integers(0, 4).map(lambda i: T0 + i * MIN)
        ),
        max_size=40,
    ),
    uplinks=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 4).map(lambda i: T0 + i * MIN),
            st.sampled_from([-60, 0, 2, 30, 59, 60, 61, 300, 3 * 3600]).map(lambda s: s * NS),
        ),
        max_size=40,
    ),
    limits=st.lists(st.sampled_from([0.0, 30.0, 59.5, 60.0, 300.0]), min_size=3, max_size=3),
)
def test_late_matches_a_plain_join(
    readings: list[Reading], uplinks: list[tuple[int, int, int]], limits: list[float]
) -> None:
    ups = [(d, ts, ts + delay) for d, ts, delay in uplinks]
    batch, carriers = readings_of(readings), uplinks_of(ups)
    receipts = [None if r == NEVER_NS else r for r in first_receipt_ns(batch, carriers).tolist()]
    assert receipts == ref_receipts(readings, ups)
    got = late(batch, carriers, after_s_of_device=np.asarray(limits))
    assert got.tolist() == ref_late(readings, ups, limits)

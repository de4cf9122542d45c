"""The alarm store: idempotent recording, the lifecycle, acknowledgement, filters and bounds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from alerts.store import AlarmQuery, AlarmStore, UnknownAlarmError
from core.alerts import AlertEvent, alarm_id
from core.timeutil import DAY_NS, HOUR_NS, NS_PER_S

T0 = 1_780_000_000 * NS_PER_S


def fired(device: str = "sf-rlv-01", start: int = T0, *, late: bool = False) -> AlertEvent:
    aid = alarm_id("sf.level.alert", device, start)
    return AlertEvent(
        id=f"{aid}:fired",
        alarm_id=aid,
        type="fired",
        rule="sf.level.alert",
        kind="threshold",
        pilot="santa-fe",
        device=device,
        sensor="level",
        severity="warning",
        label="alert",
        level=5.30,
        direction="above",
        start_ns=start,
        end_ns=None,
        at_ns=start,
        value=5.31,
        latest=5.31,
        peak=5.31,
        late=late,
    )


def cleared(event: AlertEvent, end: int, peak: float = 5.6) -> AlertEvent:
    return replace(
        event, id=f"{event.alarm_id}:cleared", type="cleared", end_ns=end, at_ns=end, peak=peak
    )


@pytest.fixture
def store(tmp_path: Path) -> AlarmStore:
    return AlarmStore(tmp_path / "alerts.sqlite", history_days=30)


def test_recording_the_same_events_twice_leaves_one_alarm_and_one_change(
    store: AlarmStore,
) -> None:
    f = fired()
    c = cleared(f, T0 + HOUR_NS)
    assert store.record([f, c], now_ns=T0 + HOUR_NS) == 2
    seq = store.last_seq()
    assert store.record([f, c], now_ns=T0 + HOUR_NS) == 0  # a batch handed over again
    assert store.last_seq() == seq
    [alarm] = store.query(AlarmQuery())
    assert (alarm.state, alarm.start_ns, alarm.end_ns, alarm.peak) == (
        "cleared",
        T0,
        T0 + HOUR_NS,
        5.6,
    )
    # a cleared alarm is never reopened by its own `fired` coming again
    store.record([f], now_ns=T0 + 2 * HOUR_NS)
    assert store.get(f.alarm_id).state == "cleared"


def test_a_cleared_without_its_fired_is_kept_as_a_whole_alarm(store: AlarmStore) -> None:
    f = fired()
    store.record([cleared(f, T0 + HOUR_NS)], now_ns=T0 + HOUR_NS)
    alarm = store.get(f.alarm_id)
    assert (alarm.state, alarm.start_ns, alarm.end_ns) == ("cleared", T0, T0 + HOUR_NS)


def test_acknowledgement_keeps_the_first_and_unknown_ids_are_refused(store: AlarmStore) -> None:
    f = fired()
    store.record([f], now_ns=T0)
    first = store.ack(f.alarm_id, "ana", "seen, crew sent", now_ns=T0 + 60 * NS_PER_S)
    again = store.ack(f.alarm_id, "ben", "", now_ns=T0 + 120 * NS_PER_S)
    assert (first.acked_by, first.ack_note, first.acked_ns) == (
        "ana",
        "seen, crew sent",
        T0 + 60 * NS_PER_S,
    )
    assert (again.acked_by, again.acked_ns) == ("ana", T0 + 60 * NS_PER_S)
    assert first.state == "active"  # acknowledged is not cleared
    with pytest.raises(UnknownAlarmError):
        store.ack("0" * 24, "ana")


def test_filters_and_the_change_feed(store: AlarmStore) -> None:
    a = fired("sf-rlv-01", T0)
    b = fired("sf-rlv-02", T0 + HOUR_NS)
    store.record([a, b, cleared(a, T0 + 2 * HOUR_NS)], now_ns=T0 + 2 * HOUR_NS)
    assert [x.device for x in store.query(AlarmQuery(state="active"))] == ["sf-rlv-02"]
    assert [x.device for x in store.query(AlarmQuery(device="sf-rlv-01"))] == ["sf-rlv-01"]
    # periods: before both, after the first ended (only the active one), inside the first
    assert store.query(AlarmQuery(until_ns=T0)) == []
    after = AlarmQuery(since_ns=T0 + 3 * HOUR_NS, until_ns=T0 + 4 * HOUR_NS)
    assert [x.device for x in store.query(after)] == ["sf-rlv-02"]
    during = AlarmQuery(since_ns=T0 + 30 * 60 * NS_PER_S, until_ns=T0 + 45 * 60 * NS_PER_S)
    assert [x.device for x in store.query(during)] == ["sf-rlv-01"]
    feed = store.changes(0)
    assert [x.device for x in feed] == ["sf-rlv-02", "sf-rlv-01"]  # by their last change
    assert store.changes(feed[-1].seq) == []
    assert len(store.query(AlarmQuery(limit=1))) == 1


def test_old_cleared_alarms_and_digests_are_pruned(store: AlarmStore) -> None:
    old = fired("sf-rlv-01", T0)
    store.record([old, cleared(old, T0 + HOUR_NS)], evaluated=[b"x" * 16], now_ns=T0 + HOUR_NS)
    assert store.evaluated([b"x" * 16]) == {b"x" * 16}
    active = fired("sf-rlv-02", T0)
    store.record([active], now_ns=T0 + 40 * DAY_NS)
    assert [x.device for x in store.query(AlarmQuery())] == ["sf-rlv-02"]  # active stays
    assert store.evaluated([b"x" * 16]) == set()


def test_the_saved_state_is_kept_with_the_events(store: AlarmStore) -> None:
    assert store.saved_state() is None
    store.record([fired()], state=b"state-1", now_ns=T0)
    store.record([], state=b"state-2", now_ns=T0 + 1)
    assert store.saved_state() == b"state-2"


def test_beyond_the_most_kept_the_oldest_cleared_alarms_go(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "alerts.sqlite", history_max=3)
    for i in range(5):
        f = fired(f"dev-{i}", T0 + i * HOUR_NS)
        store.record([f, cleared(f, T0 + i * HOUR_NS + 60 * NS_PER_S)], now_ns=T0 + 5 * HOUR_NS)
    active = fired("sf-rlv-09", T0)
    store.record([active], now_ns=T0 + 5 * HOUR_NS)
    kept = sorted(a.device for a in store.query(AlarmQuery()))
    assert kept == ["dev-2", "dev-3", "dev-4", "sf-rlv-09"]

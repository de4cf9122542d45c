"""The group's bookkeeping: who is absent, since when, and which live worker adopts whom."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.registry import load_registry
from core.settings import Settings
from ingest.members import (
    MAX_MEMBERS,
    SILENT_AFTER_S,
    Due,
    Members,
    Presence,
    is_presence,
    presence_filter,
    presence_topic,
)
from ingest.service import IngestService

ADOPT = 30.0


def group(me: str = "w2", *others: str) -> Members:
    members = Members(me, ADOPT)
    for name in others or ("w1", "w3"):
        members.heard(Presence(name, "online", f"e-{name}"), name, 0.0)
    return members


def beat(members: Members, now: float, *names: str) -> None:
    """The named members repeat their presence at `now`."""
    for name in names:
        members.heard(Presence(name, "online", f"e-{name}"), name, now)


def test_presence_round_trips_and_refuses_what_is_not_one() -> None:
    topic = presence_topic("g", "w1")
    assert topic == "ingest/g/members/w1"
    assert is_presence(topic, "g") and not is_presence("pilots/sf/x/up", "g")
    assert presence_filter("g") == "ingest/g/members/+"
    presence = Presence("w1", "absent", "abc")
    assert Presence.parse(topic, presence.encode()) == presence
    # another member's name in the payload, an unknown state, no epoch, not JSON, too big
    for payload in (
        Presence("w2", "online", "abc").encode(),
        b'{"member": "w1", "state": "dancing", "epoch": "abc"}',
        b'{"member": "w1", "state": "online"}',
        b"{nope",
        b"[]",
        b'{"member": "w1", "state": "online", "epoch": "' + b"x" * 600 + b'"}',
    ):
        assert Presence.parse(topic, payload) is None, payload
    assert Presence.parse("ingest/g/members/bad name", presence.encode()) is None


def test_the_next_live_member_in_the_ring_adopts_and_only_after_the_wait() -> None:
    members = group("w3", "w1", "w2")
    members.heard(Presence("w2", "absent", "e-w2"), "w2", 100.0)
    assert members.adopter_of("w2") == "w3"
    beat(members, 100.0 + ADOPT - 1, "w1")
    assert members.due(100.0 + ADOPT - 1) == []
    assert members.due(100.0 + ADOPT) == [Due("w2", 1)]
    # the last member's session goes round to the first live one
    others = group("w1", "w2", "w3")
    others.heard(Presence("w3", "stopped", "e-w3"), "w3", 100.0)
    beat(others, 100.0 + ADOPT, "w2")
    assert others.adopter_of("w3") == "w1"
    assert others.due(100.0 + ADOPT) == [Due("w3", 1)]
    # and the other live members leave it alone
    bystander = group("w2", "w1", "w3")
    bystander.heard(Presence("w3", "stopped", "e-w3"), "w3", 100.0)
    beat(bystander, 100.0 + ADOPT, "w1")
    assert bystander.due(100.0 + ADOPT) == []


def test_a_silent_member_is_absent_since_it_was_last_heard() -> None:
    members = group("w3", "w1", "w2")
    for t in (5.0, 10.0):
        members.heard(Presence("w1", "online", "e-w1"), "w1", t)
    members.heard(Presence("w2", "online", "e-w2"), "w2", 10.0)
    assert members.absent(10.0 + SILENT_AFTER_S) == {}
    later = 10.0 + SILENT_AFTER_S + 1
    assert set(members.absent(later)) == {"w1", "w2"}
    assert members.members["w2"].absent_for(later) == later - 10.0
    assert members.view(later)["w2"]["state"] == "silent"


def test_a_drained_absence_is_not_adopted_again_until_the_member_comes_and_goes() -> None:
    members = group("w2", "w1")
    members.heard(Presence("w1", "absent", "e-w1"), "w1", 0.0)
    [due] = members.due(ADOPT)
    members.finished(due, drained=True, messages=120, now=ADOPT + 2)
    assert members.due(ADOPT + 1000) == []
    view = members.view(ADOPT + 1000)["w1"]
    assert view["drained"] is True and view["taken_here"] == 120
    members.heard(Presence("w1", "online", "e-w1b"), "w1", 2000.0)
    members.heard(Presence("w1", "absent", "e-w1b"), "w1", 2001.0)
    assert members.due(2001.0 + ADOPT) == [Due("w1", 2)]


def test_an_interrupted_adoption_is_retried_with_backoff_while_the_member_stays_away() -> None:
    members = group("w2", "w1")
    members.heard(Presence("w1", "absent", "e-w1"), "w1", 0.0)
    [due] = members.due(ADOPT)
    members.finished(due, drained=False, messages=0, now=ADOPT)
    assert members.due(ADOPT + ADOPT - 1) == []
    assert members.due(ADOPT + ADOPT) == [due]
    members.finished(due, drained=False, messages=0, now=2 * ADOPT)
    assert members.due(2 * ADOPT + 2 * ADOPT - 1) == []
    assert members.due(2 * ADOPT + 2 * ADOPT) == [due]
    # the owner came back meanwhile: nothing is due, and a late report changes nothing
    members.heard(Presence("w1", "online", "e-w1"), "w1", 200.0)
    members.finished(due, drained=True, messages=5, now=201.0)
    assert members.due(200.0 + SILENT_AFTER_S) == []
    assert members.view(201.0)["w1"] == {"state": "online"}
    # gone again: a new absence, adopted as such
    members.heard(Presence("w1", "absent", "e-w1"), "w1", 300.0)
    assert members.due(300.0 + ADOPT) == [Due("w1", 2)]


def test_a_will_from_an_earlier_run_does_not_make_a_returned_member_absent() -> None:
    members = group("w2", "w1")
    members.heard(Presence("w1", "online", "run-2"), "w1", 50.0)
    members.heard(Presence("w1", "absent", "run-1"), "w1", 50.1)
    assert members.absent(51.0) == {}
    members.heard(Presence("w1", "absent", "run-2"), "w1", 60.0)
    assert set(members.absent(61.0)) == {"w1"}


def test_what_a_worker_heard_while_away_is_forgotten_on_reconnecting() -> None:
    # cut off, this worker heard nobody: everyone looks silent, and would be adopted
    members = group("w2", "w1", "w3")
    assert set(members.absent(10_000.0)) == {"w1", "w3"}
    members.reset()
    # back: the broker sends the retained presences again
    for name in ("w1", "w3"):
        members.heard(Presence(name, "online", f"e-{name}"), name, 10_000.5)
    assert members.absent(10_001.0) == {} and members.due(10_001.0) == []


def test_no_adoption_when_disabled_a_cleared_member_is_forgotten_and_the_table_is_bounded() -> None:
    off = Members("w2", 0)
    off.heard(Presence("w1", "absent", "e"), "w1", 0.0)
    assert off.due(1e9) == []
    assert off.view(1e9)["w1"]["adopter"] is None
    members = group("w2", "w1")
    members.heard(None, "w1", 5.0)  # its retained presence was cleared by an operator
    assert "w1" not in members.view(5.0)
    crowd = Members("me", ADOPT)
    for n in range(MAX_MEMBERS + 50):
        crowd.heard(Presence(f"m{n}", "absent", "e"), f"m{n}", 0.0)
    assert len(crowd.members) == MAX_MEMBERS
    # its own presence never makes a worker absent to itself
    crowd.heard(Presence("me", "absent", "e"), "me", 0.0)
    assert "me" not in crowd.members


def test_a_client_id_that_cannot_name_a_member_is_refused_in_a_group(tmp_path: Path) -> None:
    for client_id in ("ingest/1", "ingest+", "ingest#", "a b"):
        settings = Settings(
            mqtt_shared_group="g", mqtt_client_id=client_id, data_dir=tmp_path, ingest_http_port=0
        )
        with pytest.raises(ConfigError, match="PILOTS_MQTT_CLIENT_ID"):
            IngestService(settings, load_registry())

"""The spool: messages committed come back oldest first, and leave only when finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "ingest.sqlite")


def messages(n: int, first: int = 0) -> list[tuple[int, str, bytes]]:
    return [(1000 + i, f"pilots/p/d{i}/up", b'{"n": %d}' % i) for i in range(first, first + n)]


def test_messages_come_back_intact_and_oldest_first(spool: Spool) -> None:
    spool.append(messages(3))
    spool.append(messages(2, first=3))
    taken = spool.take(4)
    assert [(m.received_ns, m.topic, m.payload) for m in taken] == messages(4)
    assert spool.depth().messages == 5, "taking does not remove"


def test_finish_removes_messages_and_keeps_keys(spool: Spool) -> None:
    spool.append(messages(3))
    taken = spool.take(2)
    keys = [(("rs-wq-01", 9, 1234), 100), (("rs-wq-01", 10, 99), 50)]
    assert spool.finish([m.id for m in taken], keys)
    depth = spool.depth()
    assert (depth.messages, depth.oldest_ns) == (1, 1002)
    assert spool.frame_keys(since_ns=60) == {("rs-wq-01", 9, 1234): 100}, "older keys pruned"


def test_a_second_finish_of_the_same_messages_changes_nothing(spool: Spool) -> None:
    spool.append(messages(2))
    ids = [m.id for m in spool.take(2)]
    assert spool.finish(ids)
    keys = [(("rs-wq-01", 9, 1234), 100)]
    assert not spool.finish(ids, keys), "another writer got there first"
    assert spool.frame_keys(since_ns=0) == {}


def test_the_spool_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "ingest.sqlite")
    spool.append(messages(3))
    spool.close()
    again = Spool(tmp_path / "ingest.sqlite")
    assert [m.payload for m in again.take(10)] == [p for _, _, p in messages(3)]


def test_used_bytes_grow_with_the_messages(spool: Spool) -> None:
    empty = spool.used_bytes()
    spool.append([(1, "t", b"x" * 100_000)])
    assert spool.used_bytes() >= empty + 90_000  # pages, not exact bytes
    assert spool.depth().bytes == 100_000

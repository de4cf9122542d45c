"""Who is in ingest's shared group, who is absent, and which live worker adopts an absent one.

The broker hands each message of a shared subscription to one member's session, connected or
not (docs/SCALING.md, "Absent workers"): a worker that is down holds its share. So the workers
watch each other, through the broker and nothing else:

- each worker keeps a retained **presence** message on `ingest/<group>/members/<client id>`:
  `online` when it connects and every `PRESENCE_EVERY_S` after; `stopped` when it stops; and
  `absent`, its MQTT will, which the broker publishes when the connection ends without a
  DISCONNECT (a killed process, a lost host, a keepalive that ran out);
- a member is **absent** once its last word is `absent` or `stopped`, or once nothing has been
  heard from it for `SILENT_AFTER_S` (a host cut off by the network, seen before the broker's
  keepalive runs out; a broker restarted while a worker was down);
- once a member has been absent for `PILOTS_INGEST_ADOPT_AFTER_S`, **one** live member adopts
  its session (`ingest.adoption`): the first live member after it in the ring of client ids.
  Every worker sees the same retained messages, so they agree on that member without talking
  to each other; where two views differ for a moment, the broker lets only one connection hold
  a session (the later one takes it over) and the one that lost it does not try again before
  its backoff.

This module holds the bookkeeping only (no MQTT, a clock passed in), so that the decisions can
be tested on their own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

import orjson

#: How often a worker repeats its `online` presence.
PRESENCE_EVERY_S = 5.0
#: Heard nothing for this long: the member is taken as absent (three missed presences).
SILENT_AFTER_S = 3 * PRESENCE_EVERY_S
#: A presence message is a few dozen bytes; anything bigger is not one.
MAX_PRESENCE_BYTES = 512
#: Members tracked at most: the presence topic is writable by ingest's logins only on the
#: shipped broker, but a broker without logins (the demo's) lets anyone publish there.
MAX_MEMBERS = 64
#: A retry after a failed adoption waits `adopt_after_s` * 2^(attempts - 1), at most this.
MAX_RETRY_S = 600.0

#: The first level of the presence topics (the broker's ACL names it: `pilots.provision`).
PRESENCE_PREFIX = "ingest"

State = Literal["online", "absent", "stopped"]
STATES: tuple[State, ...] = ("online", "absent", "stopped")
_MEMBER = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


def presence_topic(group: str, member: str) -> str:
    """The topic of a member's presence."""
    return f"{PRESENCE_PREFIX}/{group}/members/{member}"


def presence_filter(group: str) -> str:
    """The filter that receives every member's presence."""
    return f"{PRESENCE_PREFIX}/{group}/members/+"


def is_presence(topic: str, group: str) -> bool:
    """Whether a message's topic is a member's presence."""
    return topic.startswith(f"{PRESENCE_PREFIX}/{group}/members/")


def valid_member(name: str) -> bool:
    """Whether a client id can name a member (one topic level, no wildcard)."""
    return bool(_MEMBER.match(name))


def new_epoch() -> str:
    """A fresh id for one run of a worker: tells its messages from an earlier run's."""
    return os.urandom(6).hex()


@dataclass(frozen=True, slots=True)
class Presence:
    """One presence message: which member, in which state, from which run (`epoch`)."""

    member: str
    state: State
    epoch: str

    def encode(self) -> bytes:
        """The message's payload."""
        return orjson.dumps({"member": self.member, "state": self.state, "epoch": self.epoch})

    @classmethod
    def parse(cls, topic: str, payload: bytes) -> Presence | None:
        """The presence in a message on `presence_filter`, or None when it is not one."""
        member = topic.rsplit("/", 1)[-1]
        if not valid_member(member) or len(payload) > MAX_PRESENCE_BYTES:
            return None
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict):
            return None
        state, epoch = body.get("state"), body.get("epoch")
        if body.get("member") != member or state not in STATES or not isinstance(epoch, str):
            return None
        return cls(member, state, epoch[:32])


@dataclass
class Member:
    """What one worker knows of another (times are the watcher's monotonic clock)."""

    name: str
    state: State
    epoch: str
    heard: float
    #: When it became absent (its last sign of life), None while online.
    absent_since: float | None = None
    #: Counts the member's absences: one adoption is due per absence.
    absence: int = 0
    #: The absence whose session was drained, if the last one was.
    drained: int = -1
    drained_messages: int = 0
    attempts: int = 0
    retry_at: float = 0.0

    def absent_for(self, now: float) -> float:
        """Seconds absent (0 while online)."""
        return 0.0 if self.absent_since is None else max(0.0, now - self.absent_since)


@dataclass(frozen=True, slots=True)
class Due:
    """An adoption this worker should make now."""

    member: str
    absence: int


@dataclass
class Members:
    """The group as one worker sees it (see the module docstring).

    `me` is the worker's own client id; `adopt_after_s` how long a member stays absent before
    its session is adopted (0: never).
    """

    me: str
    adopt_after_s: float
    members: dict[str, Member] = field(default_factory=dict)

    def heard(self, presence: Presence | None, member: str, now: float) -> None:
        """Take in a presence message (None: the retained message was cleared)."""
        if member == self.me:
            return
        if presence is None:
            self.members.pop(member, None)
            return
        known = self.members.get(member)
        if known is None:
            if len(self.members) >= MAX_MEMBERS:
                return
            known = self.members[member] = Member(member, presence.state, presence.epoch, now)
            if presence.state != "online":
                self._absent(known, now)
            return
        if presence.state == "online":
            known.state, known.epoch, known.heard = "online", presence.epoch, now
            known.absent_since = None
            known.attempts = 0
            return
        if presence.epoch != known.epoch and known.state == "online":
            # the will of an earlier run, published after the member came back: stale
            return
        if known.absent_since is None:
            self._absent(known, now)
        known.state, known.heard = presence.state, now

    def reset(self) -> None:
        """Forget the group: called on every (re)connection, before subscribing again.

        What this worker heard, or did not hear, while it was itself away from the broker says
        nothing of the others: a worker cut off would take every other member as silent and
        adopt their live sessions. The broker sends every member's retained presence again on
        subscribing, and the picture is drawn afresh from that.
        """
        self.members.clear()

    def tick(self, now: float) -> None:
        """Take members that went silent as absent."""
        for member in self.members.values():
            if member.absent_since is None and now - member.heard > SILENT_AFTER_S:
                self._absent(member, now, since=member.heard)

    @staticmethod
    def _absent(member: Member, now: float, since: float | None = None) -> None:
        member.absent_since = now if since is None else since
        member.absence += 1
        member.attempts = 0
        member.retry_at = 0.0

    def online(self) -> list[str]:
        """The members taken as present, this worker included, in ring order."""
        return sorted({self.me, *(m.name for m in self.members.values() if m.absent_since is None)})

    def adopter_of(self, member: str) -> str:
        """The live member that adopts `member`'s session: the next one after it in the ring."""
        ring = self.online()
        return next((name for name in ring if name > member), ring[0])

    def due(self, now: float) -> list[Due]:
        """The adoptions this worker should make now, longest absent first."""
        if self.adopt_after_s <= 0:
            return []
        self.tick(now)
        due = [
            m
            for m in self.members.values()
            if m.absent_since is not None
            and m.drained != m.absence
            and m.absent_for(now) >= self.adopt_after_s
            and now >= m.retry_at
            and self.adopter_of(m.name) == self.me
        ]
        due.sort(key=lambda m: (m.absent_since, m.name))
        return [Due(m.name, m.absence) for m in due]

    def finished(self, due: Due, *, drained: bool, messages: int, now: float) -> None:
        """Record how an adoption ended: drained, or not (retried later while still absent)."""
        member = self.members.get(due.member)
        if member is None or member.absence != due.absence or member.absent_since is None:
            return  # forgotten, or back (and maybe gone again) meanwhile: a new story
        member.drained_messages += messages
        if drained:
            member.drained = due.absence
            return
        member.attempts += 1
        member.retry_at = now + min(MAX_RETRY_S, self.adopt_after_s * 2 ** (member.attempts - 1))

    def absent(self, now: float) -> dict[str, Member]:
        """The members taken as absent."""
        self.tick(now)
        return {n: m for n, m in self.members.items() if m.absent_since is not None}

    def view(self, now: float) -> dict[str, dict[str, object]]:
        """What /health says of the group.

        Each member's state and, for an absent one, since how long, who adopts its session,
        whether it was drained and how many messages this worker took from it.
        """
        self.tick(now)
        out: dict[str, dict[str, object]] = {self.me: {"state": "online", "self": True}}
        for name, m in sorted(self.members.items()):
            if m.absent_since is None:
                out[name] = {"state": "online"}
                continue
            out[name] = {
                "state": m.state if m.state != "online" else "silent",
                "absent_s": round(m.absent_for(now), 1),
                "adopter": self.adopter_of(name) if self.adopt_after_s > 0 else None,
                "drained": m.drained == m.absence,
                "taken_here": m.drained_messages,
            }
        return out

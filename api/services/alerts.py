"""Alarms as the API serves them: listed, acknowledged, followed live, and in reports.

The alarms are the alert service's, in `alerts.store.AlarmStore` (`PILOTS_DATA_DIR/alerts.sqlite`).
`AlarmService` holds this process's connection to it (the app's lifespan opens and closes it; an
app that is not running, or whose store cannot be opened, has none and answers as if there were
no alarm) and shapes each `Alarm` as an `AlarmOut`: the stored fields, the times also in the
pilot's zone and the dashboard link its notifications carry.

The live stream (`GET /alerts/stream`) is server-sent events, built here as bytes:

    retry: 3000                      the client's reconnection delay (ms)
    event: snapshot                  on connect: the active alarms, and the change number they
    id: 41                           are as of (`seq`); not sent when a client resumes (one at
                                     most `max_replay` changes behind gets it instead)
    data: {"seq": 41, "alarms": [...], "can_acknowledge": false}

    event: alarm                     then each change (fired, cleared, acknowledged), in order,
    id: 42                           from `AlarmStore.changes`, polled every `poll_s`
    data: {...an AlarmOut...}

    : keep-alive                     a comment after `heartbeat_s` without an event

`StreamBounds` bounds the streams one process holds open (`PILOTS_API_MAX_STREAMS` in all,
`PILOTS_API_MAX_STREAMS_PER_TOKEN` per token) and ends them all when the process stops: each
running stream registers with it (`StreamBounds.ending`), and `close()` wakes every one on its
own event loop, so that a stream whose send waits for a client that does not read is cut
(`ENDING_GRACE_S`) instead of holding the server's shutdown. A stream holds one batch of changes
at most: `follow` reads the next only once the previous events were handed to the server, and a
send that waits more than `send_timeout_s` for the client ends the stream (see
`api.routes.alerts.AlarmStream`). Every read of the store runs in a worker thread of the
streams' own small pool, so that a slow store never blocks the event loop nor takes the threads
of the other routes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import anyio
import anyio.to_thread
import orjson

from alerts.message import dashboard_link
from alerts.store import (
    MAX_LIMIT,
    Alarm,
    AlarmQuery,
    AlarmStore,
    AlarmStoreError,
    UnknownAlarmError,
)
from api.schemas import AlarmOut
from api.services.values import number
from core.registry import Pilot, Registry
from core.settings import Settings
from core.timeutil import ns_to_datetime

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two reads of the store's changes by a stream.
POLL_S = 0.5
#: Seconds without an event after which a stream sends a comment (proxies close idle streams).
HEARTBEAT_S = 15.0
#: How long a client waits before reconnecting, in milliseconds (the stream's `retry:`).
RECONNECT_MS = 3000
#: What a refused stream's `Retry-After` says, in seconds.
STREAM_RETRY_AFTER_S = 10
#: Changes read from the store at a time.
BATCH = 100
#: Threads the streams read the store with, at most, in one process.
STREAM_THREADS = 4
#: Changes a resuming client may be behind at most: further behind, it gets a snapshot instead
#: of the replay (the snapshot's own bound, `MAX_LIMIT` active alarms).
MAX_REPLAY = MAX_LIMIT
#: Seconds a send may wait for the client to take the bytes before the stream is dropped.
SEND_TIMEOUT_S = 10.0
#: Seconds after `StreamBounds.close()` before a stream that did not end by itself is cut
#: (its send is waiting for a client that does not read).
ENDING_GRACE_S = 0.25


class AlarmService:
    """The process's alarm store, once opened, and the alarms shaped as the API shows them.

    `store` is None until `open()` (the app's lifespan) and after `close()`, or when the store
    cannot be opened (logged): then every listing is empty and every id unknown.
    """

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._store: AlarmStore | None = None

    @property
    def store(self) -> AlarmStore | None:
        """The open alarm store, or None."""
        return self._store

    def open(self) -> None:
        """Open the alarm store of `PILOTS_DATA_DIR` (creating it if the alert service never ran).

        A store that cannot be opened is logged, not raised: the API serves without alarms.
        """
        if self._store is not None:
            return
        try:
            self._store = AlarmStore.from_settings(self.settings)
        except AlarmStoreError as exc:
            log.warning("alarms unavailable: %s", exc)

    def close(self) -> None:
        """Close the store (alarms read after this are none)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def out(self, alarm: Alarm) -> AlarmOut:
        """An alarm as the API shows it, times in its pilot's zone."""
        pilot = self.registry.pilots.get(alarm.pilot)
        tz = pilot.tz if pilot is not None else None

        def at(ts_ns: int | None) -> object:
            if ts_ns is None:
                return None
            return ns_to_datetime(ts_ns) if tz is None else ns_to_datetime(ts_ns, tz)

        return AlarmOut.model_validate(
            {
                **alarm.as_dict(),
                "level": number(alarm.level),
                "value": number(alarm.value),
                "peak": number(alarm.peak),
                "latest": number(alarm.latest),
                "start": at(alarm.start_ns),
                "end": at(alarm.end_ns),
                "acked": at(alarm.acked_ns),
                "link": dashboard_link(
                    self.settings.alert_dashboard_url, alarm.pilot, alarm.start_ns
                ),
            }
        )

    def listing(self, query: AlarmQuery) -> list[AlarmOut]:
        """The alarms matching `query`, newest start first (none without a store)."""
        store = self._store
        return [] if store is None else [self.out(a) for a in store.query(query)]

    def get(self, alarm_id: str) -> AlarmOut | None:
        """The alarm, or None when there is none of that id."""
        store = self._store
        if store is None:
            return None
        try:
            return self.out(store.get(alarm_id))
        except UnknownAlarmError:
            return None

    def acknowledge(self, alarm_id: str, by: str, note: str) -> AlarmOut | None:
        """Acknowledge an alarm as `by`; an acknowledged one keeps its first. None if unknown."""
        store = self._store
        if store is None:
            return None
        try:
            return self.out(store.ack(alarm_id, by, note))
        except UnknownAlarmError:
            return None

    def period(self, pilot: Pilot, start_ns: int, end_ns: int) -> list[AlarmOut] | None:
        """The pilot's alarms overlapping `[start_ns, end_ns)`, oldest first; None without a store.

        For the report, which must not fail for its alarms: a store that cannot be read is
        logged and counts as none.
        """
        store = self._store
        if store is None:
            return None
        query = AlarmQuery(pilot=pilot.id, since_ns=start_ns, until_ns=end_ns, limit=MAX_LIMIT)
        try:
            found = store.query(query)
        except AlarmStoreError as exc:
            log.warning("alarms left out of a report: %s", exc)
            return None
        return [self.out(a) for a in sorted(found, key=lambda a: (a.start_ns, a.id))]


# -- the live stream ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a stream is not opened: its status (429: a bound, 503: stopping) and detail."""

    status: int
    detail: str


class StreamBounds:
    """Open streams of this process, bounded in all and per token; `close()` ends them all.

    Counting happens on the event loop and in request threads alike, under a lock (re-entrant:
    `close()` runs in signal handlers, which may interrupt the main thread while it holds it).
    Each running stream registers an event (`ending`) that `close()` sets on the stream's event
    loop: the stream's follower wakes at once and ends its body, and a stream still running
    `ENDING_GRACE_S` later (its send waits for the client) is cancelled, so every stream ends
    within 0.5 s of `close()`. `max_replay` bounds how far behind a resuming client may be
    (`opening`); `send_timeout_s` how long a send may wait for its client.
    """

    def __init__(
        self,
        max_streams: int,
        max_per_token: int,
        *,
        poll_s: float = POLL_S,
        heartbeat_s: float = HEARTBEAT_S,
        max_replay: int = MAX_REPLAY,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.max_streams = max_streams
        self.max_per_token = max_per_token
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.max_replay = max_replay
        self.send_timeout_s = send_timeout_s
        self._lock = threading.RLock()
        self._open: dict[int, int] = {}
        self._running: dict[int, tuple[asyncio.AbstractEventLoop, anyio.Event]] = {}
        self._closing = threading.Event()
        self._limiter: tuple[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = None

    @property
    def open_streams(self) -> int:
        """Streams open now."""
        with self._lock:
            return sum(self._open.values())

    @property
    def closing(self) -> bool:
        """Whether the process is stopping (no stream is kept open)."""
        return self._closing.is_set()

    def take(self, token_id: int) -> Refusal | None:
        """Count a new stream of this token; or why not (a bound is reached, or stopping)."""
        with self._lock:
            if self._closing.is_set():
                return Refusal(503, "the API is stopping; connect again in a moment")
            if sum(self._open.values()) >= self.max_streams:
                return Refusal(
                    429,
                    f"this API process already serves {self.max_streams} alarm streams "
                    "(PILOTS_API_MAX_STREAMS)",
                )
            if self._open.get(token_id, 0) >= self.max_per_token:
                return Refusal(
                    429,
                    f"this token already has {self.max_per_token} alarm streams open "
                    "(PILOTS_API_MAX_STREAMS_PER_TOKEN); close one",
                )
            self._open[token_id] = self._open.get(token_id, 0) + 1
            return None

    def release(self, token_id: int) -> None:
        """A stream of this token ended."""
        with self._lock:
            left = self._open.get(token_id, 0) - 1
            if left > 0:
                self._open[token_id] = left
            else:
                self._open.pop(token_id, None)

    @contextmanager
    def ending(self) -> Iterator[anyio.Event]:
        """An event that `close()` sets, for the stream running in this task (on its loop).

        Set already when the bounds were closed before the stream registered.
        """
        loop = asyncio.get_running_loop()
        event = anyio.Event()
        key = id(event)
        with self._lock:
            self._running[key] = (loop, event)
            closing = self._closing.is_set()
        if closing:
            event.set()
        try:
            yield event
        finally:
            with self._lock:
                self._running.pop(key, None)

    def close(self) -> None:
        """End every stream and refuse new ones; safe from a signal handler and any thread.

        The flag is set first, then every registered stream is woken on its own loop
        (`call_soon_threadsafe`: a signal handler or another thread must not touch the loop's
        objects itself); a stream that registers after this finds the flag set.
        """
        self._closing.set()
        with self._lock:
            running = list(self._running.values())
        for loop, event in running:
            with suppress(RuntimeError):  # that loop is closed: its stream is gone
                loop.call_soon_threadsafe(event.set)

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` in one of the streams' worker threads."""
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter[0] is not loop:
            self._limiter = (loop, anyio.CapacityLimiter(STREAM_THREADS))
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter[1])


def sse(
    event: str | None, data: object, event_id: int | None = None, retry_ms: int | None = None
) -> bytes:
    """One server-sent event: `data` as one line of JSON."""
    lines = []
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    text = "\n".join(lines)
    body = orjson.dumps(data)  # one line: orjson never writes a newline
    return (text + "\n" if text else "").encode() + b"data: " + body + b"\n\n"


KEEP_ALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class Follow:
    """Where a stream starts: after change `after`, with a snapshot first or not."""

    after: int
    opening: bytes


async def opening(
    alarms: AlarmService, bounds: StreamBounds, resume_from: int | None, can_acknowledge: bool
) -> Follow:
    """The stream's first bytes: the snapshot, or only `retry:` when a client resumes.

    A client resumes (`Last-Event-ID`) from a change this store has made, at most
    `bounds.max_replay` changes ago; an id further behind (a client away for long, or one
    asking for every change with `0`) or past the store's last change (a store replaced since)
    gets a snapshot, as a new client does. `AlarmStoreError` when the store cannot be read.
    """
    store = alarms.store
    last = 0 if store is None else await bounds.run(store.last_seq)
    if resume_from is not None and last - bounds.max_replay <= resume_from <= last:
        return Follow(resume_from, f"retry: {RECONNECT_MS}\n\n".encode())
    if store is None:
        active: list[Alarm] = []
    else:
        # Read after the sequence number: a change in between is sent again, never missed.
        active = await bounds.run(lambda: store.query(AlarmQuery(state="active", limit=MAX_LIMIT)))
    snapshot = {
        "seq": last,
        "alarms": [alarms.out(a).model_dump(mode="json") for a in active],
        "can_acknowledge": can_acknowledge,
    }
    return Follow(last, sse("snapshot", snapshot, last, RECONNECT_MS))


async def follow(
    alarms: AlarmService, bounds: StreamBounds, start: Follow, ending: anyio.Event
) -> AsyncIterator[bytes]:
    """The stream: its opening, then every change after it, until the process stops.

    It ends as soon as `ending` is set (`StreamBounds.close()`), and when the store fails (the
    client reconnects and resumes); the caller ends it when the client goes away. Changes are
    read `BATCH` at a time, the next batch only once the previous one was sent.
    """
    yield start.opening
    after = start.after
    quiet_since = time.monotonic()
    while not bounds.closing and not ending.is_set():
        store = alarms.store
        try:
            batch = [] if store is None else await bounds.run(partial(store.changes, after, BATCH))
        except AlarmStoreError as exc:
            log.warning("alarm stream ended: %s", exc)
            return
        for alarm in batch:
            yield sse("alarm", alarms.out(alarm).model_dump(mode="json"), alarm.seq)
            after = alarm.seq
        now = time.monotonic()
        if batch:
            quiet_since = now
        elif now - quiet_since >= bounds.heartbeat_s:
            yield KEEP_ALIVE
            quiet_since = now
        if len(batch) < BATCH:
            with anyio.move_on_after(bounds.poll_s):
                await ending.wait()

"""`GET /alerts`, `GET /alerts/stream` (server-sent events), `GET /alerts/{id}`, `POST .../ack`.

The alarms the alert service records (`alerts.store`), read and acknowledged through
`api.services.alerts`. Reading needs the read scope; acknowledging the operator scope (admin
includes it), and records the token's name. Without an alarm store (the alert service never
ran) the listing is empty and the stream's snapshot too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from alerts.store import AlarmQuery, AlarmStoreError
from api.auth import OperatorAccess, Principal, ReadAccess
from api.deps import AlarmsDep, RegistryDep, StreamBoundsDep, instant_ns
from api.problems import PROBLEM_JSON, PROBLEM_SCHEMA, Problem, problem_response, responses
from api.schemas import AckIn, AlarmOut
from api.services.alerts import (
    ENDING_GRACE_S,
    STREAM_RETRY_AFTER_S,
    AlarmService,
    StreamBounds,
    follow,
    opening,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["alerts"])

EVENT_STREAM = "text/event-stream"
UNAVAILABLE = "the alarm store is unavailable; try again later (the API's log has the reason)"

_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events: `snapshot`, then `alarm` per change (docs/ALERTS.md)",
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
    },
    429: {
        "description": "as many alarm streams are open as this process allows, in all or for "
        "this token (PILOTS_API_MAX_STREAMS, PILOTS_API_MAX_STREAMS_PER_TOKEN); `Retry-After` "
        "says when to try again",
        "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
    },
    **responses(401, 422, 503, _503="the alarm store cannot be read, or the API is stopping"),
}

AlarmId = Annotated[str, Path(description="the alarm's id", min_length=1, max_length=64)]


@router.get("/alerts", responses=responses(401, 404, 422, 503, _404="unknown pilot or device"))
def list_alerts(
    *,
    _: ReadAccess,
    alarms: AlarmsDep,
    registry: RegistryDep,
    pilot: Annotated[str | None, Query(description="only this pilot", max_length=64)] = None,
    device: Annotated[str | None, Query(description="only this device", max_length=64)] = None,
    rule: Annotated[str | None, Query(description="only this rule id", max_length=200)] = None,
    severity: Annotated[
        Literal["info", "warning", "critical"] | None, Query(description="only this severity")
    ] = None,
    state: Annotated[
        Literal["active", "cleared"] | None, Query(description="only active or cleared alarms")
    ] = None,
    since: Annotated[
        str | None,
        Query(description="RFC 3339; alarms still active at or ending after it", max_length=64),
    ] = None,
    until: Annotated[
        str | None, Query(description="RFC 3339; alarms that started before it", max_length=64)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="newest alarms to list")] = 100,
) -> list[AlarmOut]:
    """Alarms, newest start first: those that overlap `[since, until)`, filtered."""
    if pilot is not None and pilot not in registry.pilots:
        raise Problem(404, f"unknown pilot {pilot!r}; known pilots: {', '.join(registry.pilots)}")
    if device is not None:
        found = registry.devices.get(device)
        if found is None:
            raise Problem(404, f"unknown device {device!r}")
        if pilot is not None and found.pilot != pilot:
            raise Problem(404, f"unknown device {device!r} in pilot {pilot!r}")
    since_ns = None if since is None else instant_ns("since", since)
    until_ns = None if until is None else instant_ns("until", until)
    if since_ns is not None and until_ns is not None and since_ns >= until_ns:
        raise Problem(422, "since must be before until")
    query = AlarmQuery(
        pilot=pilot,
        device=device,
        rule=rule,
        severity=severity,
        state=state,
        since_ns=since_ns,
        until_ns=until_ns,
        limit=limit,
    )
    return alarms.listing(query)


async def _nothing() -> AsyncIterator[bytes]:
    """An empty body, until `AlarmStream.__call__` has the stream's opening."""
    chunks: tuple[bytes, ...] = ()
    for chunk in chunks:
        yield chunk


class AlarmStream(StreamingResponse):
    """The stream of one client: bounded, and ended when the client leaves or the API stops.

    Everything that must be undone happens here, between the first and the last byte: the
    stream is counted against the bounds (or refused with 429), its opening read (or refused
    with 503), then followed until the client disconnects, the follower ends (the process is
    stopping, the store failed) or sending fails; the count is given back in every case.

    As `StreamingResponse` does for servers before ASGI 2.4, the body and the wait for the
    client's disconnect run in one task group, whose cancel scope ends the stream. It is also
    cancelled when a send waits more than `StreamBounds.send_timeout_s` for the client (one
    that does not read: the stream is dropped, its slot given back) and `ENDING_GRACE_S` after
    `StreamBounds.close()` (the follower ends the body at once; a send that waits for the client
    would otherwise keep the stream, and the server's shutdown, waiting for ever). What the
    server (or a middleware in between) already took for that client is the server's: uvicorn
    closes such a connection when its graceful-shutdown timeout ends (`pilots api`).
    """

    media_type = EVENT_STREAM

    def __init__(
        self,
        alarms: AlarmService,
        bounds: StreamBounds,
        principal: Principal,
        resume_from: int | None,
    ) -> None:
        super().__init__(
            content=_nothing(),
            media_type=EVENT_STREAM,
            # No caching, and no buffering by a proxy in front (nginx honours this header).
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.alarms = alarms
        self.bounds = bounds
        self.principal = principal
        self.resume_from = resume_from

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count, open, follow, and give the count back (see the class)."""
        token = self.principal.token_id
        refused = self.bounds.take(token)
        if refused is not None:
            problem = problem_response(refused.status, refused.detail)
            problem.headers["Retry-After"] = str(STREAM_RETRY_AFTER_S)
            await problem(scope, receive, send)
            return
        try:
            try:
                start = await opening(
                    self.alarms,
                    self.bounds,
                    self.resume_from,
                    self.principal.allows("operator"),
                )
            except AlarmStoreError:
                await problem_response(503, UNAVAILABLE)(scope, receive, send)
                return
            with self.bounds.ending() as ending:
                self.body_iterator = follow(self.alarms, self.bounds, start, ending)
                await self._run(receive, self._in_time(send), ending)
        finally:
            self.bounds.release(token)

    async def _run(self, receive: Receive, send: Send, ending: anyio.Event) -> None:
        """Send the body until it ends, the client leaves or is too slow, or `ending` + grace."""
        who = self.principal.name
        async with anyio.create_task_group() as group:

            async def stream_then_stop() -> None:
                try:
                    await self.stream_response(send)
                except TimeoutError:  # before OSError, which it is
                    log.warning(
                        "alarm stream of token %r dropped: its client took nothing for %g s",
                        who,
                        self.bounds.send_timeout_s,
                    )
                except OSError:  # the client is gone (servers of ASGI 2.4 say so this way)
                    pass
                group.cancel_scope.cancel()

            async def cut_when_ending() -> None:
                await ending.wait()
                await anyio.sleep(ENDING_GRACE_S)
                log.info("alarm stream of token %r cut: its client is not reading", who)
                group.cancel_scope.cancel()

            group.start_soon(stream_then_stop)
            group.start_soon(cut_when_ending)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()

    def _in_time(self, send: Send) -> Send:
        """`send`, failing with TimeoutError when the client takes nothing for too long."""
        limit = self.bounds.send_timeout_s

        async def send_in_time(message: Message) -> None:
            with anyio.fail_after(limit):
                await send(message)

        return send_in_time


@router.get(
    "/alerts/stream", status_code=200, response_class=AlarmStream, responses=_STREAM_RESPONSES
)
async def stream_alerts(
    principal: ReadAccess,
    alarms: AlarmsDep,
    bounds: StreamBoundsDep,
    last_event_id: Annotated[
        str | None,
        Header(
            description="the `id` of the last event received: resume after it (no snapshot, "
            "unless it is more than 1000 changes behind)",
            max_length=19,
            pattern=r"^[0-9]+$",
        ),
    ] = None,
) -> AlarmStream:
    """Live alarms as server-sent events: a snapshot of the active ones, then every change.

    Send `Last-Event-ID` to resume after the last event received (as `EventSource` does when
    it reconnects); an id more than 1000 changes behind gets a snapshot instead. A comment is
    sent after 15 s without an event. A client that takes nothing for 10 s is dropped. Each
    token may hold `PILOTS_API_MAX_STREAMS_PER_TOKEN` streams open, the process
    `PILOTS_API_MAX_STREAMS`.
    """
    resume_from = None if last_event_id is None else int(last_event_id)
    return AlarmStream(alarms, bounds, principal, resume_from)


@router.get("/alerts/{alarm_id}", responses=responses(401, 404, 422, 503, _404="unknown alarm"))
def get_alert(_: ReadAccess, alarms: AlarmsDep, alarm_id: AlarmId) -> AlarmOut:
    """One alarm."""
    found = alarms.get(alarm_id)
    if found is None:
        raise Problem(404, f"unknown alarm {alarm_id!r}")
    return found


@router.post(
    "/alerts/{alarm_id}/ack",
    responses=responses(401, 403, 404, 422, 503, _404="unknown alarm"),
)
def ack_alert(
    principal: OperatorAccess,
    alarms: AlarmsDep,
    alarm_id: AlarmId,
    body: Annotated[AckIn | None, Body(description="an optional note")] = None,
) -> AlarmOut:
    """Acknowledge an alarm (operator scope), as the token's name; active or cleared.

    An alarm already acknowledged keeps its first acknowledgement: acknowledging it again
    changes nothing and answers the alarm as it is.
    """
    note = "" if body is None else body.note
    found = alarms.acknowledge(alarm_id, principal.name, note)
    if found is None:
        raise Problem(404, f"unknown alarm {alarm_id!r}")
    return found

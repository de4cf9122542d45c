"""Who may read what: a token's holder reads everything, anyone else only published pilots.

An operator publishes a pilot, or a period of it, in the registry (`public = true`, optional
`public_from` and `public_until`, `core.registry.PublicPeriod`). Its dashboard data, report and
SensorThings data are then readable without a token; everything else still needs one, and by
default nothing is public. Routes that serve published data take a `Reader`
(`PublicReadAccess`) instead of `ReadAccess`:

- a request with an `Authorization` header is authenticated as `ReadAccess` would (a bad token
  is a 401 even on a public pilot: a client that sends one expects it to count);
- a request without one is an anonymous reader, rate-limited per client address
  (`PILOTS_API_PUBLIC_RATE`, `api.limiter.PublicLimiter`; 429 with `Retry-After` past it).
  It then sees a pilot only when the pilot is published (`Reader.require`), and only the
  published period.

`PublicPilotDep` and `public_window` check a pilot and a time range for the route. A private
pilot answers an anonymous reader 401, as a token-only route does, so that the answer does not
tell a private pilot from a public one that the reader may not see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Principal, bearer, require
from api.deps import AppStateDep, RegistryDep
from api.problems import Problem
from api.services.slots import ANONYMOUS
from core.registry import Pilot, PublicPeriod
from core.timeutil import ns_to_datetime


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: a token's principal, or anyone (`principal` None)."""

    principal: Principal | None

    @property
    def anonymous(self) -> bool:
        """Whether the request came without a token."""
        return self.principal is None

    def sees(self, pilot: Pilot, now_ns: int | None = None) -> bool:
        """Whether this reader may read anything of `pilot` (a period that has begun)."""
        if self.principal is not None:
            return True
        period = pilot.public
        if period is None:
            return False
        now = time.time_ns() if now_ns is None else now_ns
        return period.start_ns is None or period.start_ns <= now

    def period(self, pilot: Pilot) -> PublicPeriod:
        """What of `pilot` this reader may read (everything for a token); 401 if nothing."""
        if self.principal is not None:
            return PublicPeriod(None, None)
        if pilot.public is None or not self.sees(pilot):
            raise private(pilot)
        return pilot.public

    def since(self, pilot: Pilot) -> int | None:
        """The oldest instant this reader may see of `pilot` (None: no limit)."""
        return self.period(pilot).start_ns

    def require(self, pilot: Pilot) -> Pilot:
        """`pilot`, or 401 when this reader may not read it."""
        self.period(pilot)
        return pilot

    def window(self, pilot: Pilot, start_ns: int, end_ns: int) -> None:
        """401 unless this reader may read all of `[start_ns, end_ns)` of `pilot`."""
        period = self.period(pilot)
        if not period.covers(start_ns, end_ns):
            raise unauthorized(
                f"only {_describe(period)} of pilot {pilot.id!r} is public; this range needs one"
            )

    def live(self, pilot: Pilot, now_ns: int | None = None) -> None:
        """401 unless this reader may see `pilot` as it is now (status, newest readings)."""
        now = time.time_ns() if now_ns is None else now_ns
        self.window(pilot, now - 1, now)


def unauthorized(why: str) -> HTTPException:
    """A 401 for an anonymous reader: `why`, and how to send a token."""
    return HTTPException(
        status_code=401,
        detail=f"{why}: send `Authorization: Bearer <token>` "
        "(operators create tokens with `pilots tokens create`)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def private(pilot: Pilot) -> HTTPException:
    """The 401 an anonymous reader gets for a pilot that is not published."""
    return unauthorized(f"pilot {pilot.id!r} is not public")


def _describe(period: PublicPeriod) -> str:
    def text(ts_ns: int) -> str:
        return ns_to_datetime(ts_ns).isoformat().replace("+00:00", "Z")

    start = "its beginning" if period.start_ns is None else text(period.start_ns)
    end = "now" if period.end_ns is None else text(period.end_ns)
    return f"{start} to {end}"


_read = require("read")


def _reader(
    request: Request,
    state: AppStateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Reader:
    if "authorization" in request.headers:
        return Reader(_read(request, credentials))
    state.public.hit(request)
    return Reader(None)


PublicReadAccess = Annotated[Reader, Depends(_reader)]


def _public_pilot(
    reader: PublicReadAccess,
    registry: RegistryDep,
    pilot: Annotated[str, Path(description="pilot id, e.g. santa-fe", max_length=64)],
) -> Pilot:
    found = registry.pilots.get(pilot)
    if found is None:
        # A stranger is told only of the pilots it may read.
        known = [p.id for p in registry.pilot_list if reader.sees(p)]
        raise Problem(
            404, f"unknown pilot {pilot!r}; known pilots: {', '.join(known) or 'none public'}"
        )
    return reader.require(found)


#: The path's pilot, when the reader may read it (401 for an anonymous reader otherwise); an
#: unknown pilot is a 404 naming only the pilots the reader may read.
PublicPilotDep = Annotated[Pilot, Depends(_public_pilot)]


class MarkAnonymous:
    """ASGI middleware: a request without an `Authorization` header is anonymous.

    It sets `api.services.slots.ANONYMOUS`, so that the scan slots the request takes are the
    public ones; set here, before the request's context is copied into the endpoint's thread,
    by the same rule `PublicReadAccess` follows.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request with `ANONYMOUS` set for it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        anonymous = not any(name == b"authorization" for name, _ in scope.get("headers", ()))
        mark = ANONYMOUS.set(anonymous)
        try:
            await self.app(scope, receive, send)
        finally:
            ANONYMOUS.reset(mark)

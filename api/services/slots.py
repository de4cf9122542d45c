"""How many expensive requests one API process works on at once (`ScanSlots`).

`api.services.cost` bounds what one request may read before it reads anything; that does not
bound the process, since FastAPI runs sync endpoints in a pool of 40 threads and each of them
may hold a request at its bound (about `PILOTS_API_MAX_SCAN_READINGS` x 250 bytes at its
peak). Reading readings or rollups for an answer and building a report or an export therefore
take a slot first; a request that finds none free within `PILOTS_API_SCAN_WAIT_S` is refused
with `BusyError` (503 with Retry-After), and so is one that finds as many requests already
waiting as there are slots: waiting holds a thread of that pool, and the cheap endpoints
(`/health` among them) need the rest. Answers already kept, refusals and the cheap endpoints
take none.

Requests without a token (readers of published pilots, `api.access`) also take one of
`public_limit` public slots first, fewer than `limit` (`PILOTS_API_PUBLIC_MAX_SCANS`), and never
wait for one: strangers, however many addresses they use, can hold at most those, and the rest
stay for token holders. `ANONYMOUS` says which requests those are; the API's middleware
(`api.access.MarkAnonymous`) sets it for each request. This module must not read the store or
the cache.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from api.services.errors import BusyError

#: Whether the request being served came without a token (set per request by the API).
ANONYMOUS: ContextVar[bool] = ContextVar("pilots_anonymous_request", default=False)


class ScanSlots:
    """At most `limit` holders at once; a caller waits at most `wait_s` for a slot.

    Of those, at most `public_limit` hold for requests without a token (`ANONYMOUS`).
    """

    def __init__(self, limit: int, wait_s: float, public_limit: int = 1) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.wait_s = wait_s
        # never every slot while there are two: the others stay for token holders
        self.public_limit = max(1, min(public_limit, limit - 1))
        self._free = threading.BoundedSemaphore(limit)
        self._public = threading.BoundedSemaphore(self.public_limit)
        self._waiting = 0
        self._lock = threading.Lock()

    def busy(self) -> BusyError:
        """The refusal of a request that found no slot."""
        return BusyError(
            f"the API is already working on {self.limit} expensive requests, its limit per "
            "process (PILOTS_API_MAX_CONCURRENT_SCANS); try again shortly",
            retry_after_s=max(1, math.ceil(self.wait_s)),
        )

    def public_busy(self) -> BusyError:
        """The refusal of a request without a token that found no public slot."""
        return BusyError(
            f"the API is already working on {self.public_limit} expensive requests without a "
            "token, its limit per process (PILOTS_API_PUBLIC_MAX_SCANS); try again shortly, "
            "or send a token",
            retry_after_s=max(1, math.ceil(self.wait_s)),
        )

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a slot for the body of the `with`; `BusyError` when none frees up in time.

        Not re-entrant: a holder that asks again counts twice (and with one slot, waits for
        itself), so callers take one slot per request, at its outermost expensive step.
        """
        if not ANONYMOUS.get():
            with self._shared():
                yield
            return
        if not self._public.acquire(blocking=False):  # strangers never wait: no thread held
            raise self.public_busy()
        try:
            with self._shared():
                yield
        finally:
            self._public.release()

    @contextmanager
    def _shared(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.limit:  # enough threads wait already
                    raise self.busy()
                self._waiting += 1
            try:
                got = self._free.acquire(timeout=self.wait_s)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not got:
                raise self.busy()
        try:
            yield
        finally:
            self._free.release()

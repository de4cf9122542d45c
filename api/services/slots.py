"""How many expensive requests one API process works on at once (`ScanSlots`).

`api.services.cost` bounds what one request may read before it reads anything; that does not
bound the process, since FastAPI runs sync endpoints in a pool of 40 threads and each of them
may hold a request at its bound (about `PILOTS_API_MAX_SCAN_READINGS` x 250 bytes at its
peak). Reading readings or rollups for an answer and building a report or an export therefore
take a slot first; a request that finds none free within `PILOTS_API_SCAN_WAIT_S` is refused
with `BusyError` (503 with Retry-After), and so is one that finds as many requests already
waiting as there are slots: waiting holds a thread of that pool, and the cheap endpoints
(`/health` among them) need the rest. Answers already kept, refusals and the cheap endpoints
take none. This module must not read the store or the cache.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from api.services.errors import BusyError


class ScanSlots:
    """At most `limit` holders at once; a caller waits at most `wait_s` for a slot."""

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.wait_s = wait_s
        self._free = threading.BoundedSemaphore(limit)
        self._waiting = 0
        self._lock = threading.Lock()

    def busy(self) -> BusyError:
        """The refusal of a request that found no slot."""
        return BusyError(
            f"the API is already working on {self.limit} expensive requests, its limit per "
            "process (PILOTS_API_MAX_CONCURRENT_SCANS); try again shortly",
            retry_after_s=max(1, math.ceil(self.wait_s)),
        )

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold a slot for the body of the `with`; `BusyError` when none frees up in time.

        Not re-entrant: a holder that asks again counts twice (and with one slot, waits for
        itself), so callers take one slot per request, at its outermost expensive step.
        """
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

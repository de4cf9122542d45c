"""The rate of anonymous requests, for published pilots (`api.access`).

Three counts, each a sliding-window counter of the `limits` library in this process's memory:

- per client: `PILOTS_API_PUBLIC_RATE` per address; an IPv6 client by its /64, which is what
  one host or home network gets, so cycling through its own addresses does not help;
- per IPv6 site: the /48 that holds those /64s, `SITE_FACTOR` times the client rate, so that one
  site's 65,536 /64s do not multiply it;
- in all: `PILOTS_API_PUBLIC_RATE_TOTAL` for every anonymous client together. This bounds what
  strangers cost the API whatever addresses they use, and the limiter's memory with it: a new
  client's counters are made only by a request the total admitted, and the counters of a
  sliding window expire two windows after their last request.

A request over any count gets 429 with `Retry-After`; a request that sends a token is never
counted here. The counts are per process: N API processes admit up to N times each rate.
"""

from __future__ import annotations

import ipaddress
import time

from fastapi import HTTPException, Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

#: Addresses an IPv6 client is counted by: its /64, what one host or home network gets.
IPV6_PREFIX = 64
#: An IPv6 site (an organisation's allocation), counted at `SITE_FACTOR` times the client rate.
IPV6_SITE_PREFIX = 48
SITE_FACTOR = 16


def _scaled(item: RateLimitItem, factor: int) -> RateLimitItem:
    return type(item)(item.amount * factor, item.multiples, item.namespace)


class PublicLimiter:
    """Counts anonymous requests per client, per IPv6 site and in all (module docstring)."""

    def __init__(self, rate: str, total: str) -> None:
        self.rate = rate
        self.total = total
        self.items: list[RateLimitItem] = parse_many(rate)
        self.site_items = [_scaled(item, SITE_FACTOR) for item in self.items]
        self.total_items: list[RateLimitItem] = parse_many(total)
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def client(self, request: Request) -> str:
        """The key a request is counted under: its address, or an IPv6 address's /64."""
        return self._keys(request)[0]

    def _keys(self, request: Request) -> tuple[str, str | None]:
        """The client's key and, for IPv6, its site's."""
        host = request.client.host if request.client is not None else "unknown"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host, None
        if address.version == 6:
            client = ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False)
            site = ipaddress.ip_network(f"{address}/{IPV6_SITE_PREFIX}", strict=False)
            return str(client), str(site)
        return str(address), None

    def hit(self, request: Request) -> None:
        """Count one request, or raise 429 with `Retry-After` when a count is over."""
        client, site = self._keys(request)
        counts = [(item, "client", client) for item in self.items]
        if site is not None:
            counts += [(item, "site", site) for item in self.site_items]
        # Looked at first, counted after: a client over its rate spends nothing of the total.
        for item, kind, key in counts:
            if not self._limiter.test(item, kind, key):
                raise self._refusal(
                    item, kind, key, f"limited to {self.rate} per client (PILOTS_API_PUBLIC_RATE)"
                )
        for item in self.total_items:
            if not self._limiter.hit(item, "total", "all"):
                raise self._refusal(
                    item,
                    "total",
                    "all",
                    f"limited to {self.total} from all clients together "
                    "(PILOTS_API_PUBLIC_RATE_TOTAL)",
                )
        for item, kind, key in counts:
            self._limiter.hit(item, kind, key)

    def _refusal(self, item: RateLimitItem, kind: str, key: str, why: str) -> HTTPException:
        stats = self._limiter.get_window_stats(item, kind, key)
        retry = max(1, int(stats.reset_time - time.time() + 0.999))
        return HTTPException(
            status_code=429,
            detail=f"anonymous requests are {why}; retry in {retry} s or send a token",
            headers={"Retry-After": str(retry)},
        )

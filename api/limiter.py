"""The rate of anonymous requests per client, for published pilots (`api.access`)."""

from __future__ import annotations

import ipaddress
import time

from fastapi import HTTPException, Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

#: Addresses an IPv6 client is counted by: its /64, what one host or home network gets.
IPV6_PREFIX = 64


class PublicLimiter:
    """Anonymous requests per client address, within `rate` ("60/minute;1000/hour").

    The `limits` library keeps a moving window per address in memory; its storage expires
    idle addresses itself, so the memory is bounded by the addresses seen within the longest
    window. IPv6 clients are counted by their /64, so one host cannot dodge the limit by
    cycling through its own addresses.
    """

    def __init__(self, rate: str) -> None:
        self.rate = rate
        self.items: list[RateLimitItem] = parse_many(rate) if rate else []
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def client(self, request: Request) -> str:
        """The key a request is counted under: its address, or an IPv6 address's /64."""
        host = request.client.host if request.client is not None else "unknown"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
        if address.version == 6:
            network = ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False)
            return str(network)
        return str(address)

    def hit(self, request: Request) -> None:
        """Count one request, or raise 429 with `Retry-After` when the client is over."""
        key = self.client(request)
        for item in self.items:
            if not self._limiter.hit(item, "public", key):
                reset_at, _ = self._limiter.get_window_stats(item, "public", key)
                retry = max(1, int(reset_at - time.time() + 0.999))
                raise HTTPException(
                    status_code=429,
                    detail=f"anonymous requests are limited to {self.rate} per client "
                    f"(PILOTS_API_PUBLIC_RATE); retry in {retry} s or send a token",
                    headers={"Retry-After": str(retry)},
                )

"""Recognising a LoRaWAN retransmission: the same frame again, with a new receive time.

Most duplicates need no help: a reading delivered twice carries the same device time and
overwrites itself in the store. A frame whose time is the network's receive time is different:
a retransmission (a confirmed uplink repeated, a network server or webhook retry) arrives with
a later time and would become a second point. Such frames are recognised by (device, frame
counter, digest of the values) within a window, and the second copy is dropped and counted.
The values' digest keeps a counter reset after a reboot from being mistaken for a repeat.

Keys live in memory for the window and are committed to the spool database with the batch
that first carried them, so a restart keeps recognising retransmissions.
"""

from __future__ import annotations

from ingest.spool import FrameKey

_PRUNE_EVERY = 10_000


class FrameCache:
    """Frame keys seen within the last `window_ns`."""

    def __init__(self, window_ns: int, known: dict[FrameKey, int] | None = None) -> None:
        self.window_ns = window_ns
        self._seen: dict[FrameKey, int] = dict(known or {})
        self._inserts = 0

    def __len__(self) -> int:
        return len(self._seen)

    def seen_before(self, key: FrameKey, now_ns: int) -> bool:
        """True for a repeat within the window; otherwise remembers the key and returns False."""
        first = self._seen.get(key)
        if first is not None and now_ns - first <= self.window_ns:
            return True
        self._seen[key] = now_ns
        self._inserts += 1
        if self._inserts >= _PRUNE_EVERY:
            self._prune(now_ns)
        return False

    def _prune(self, now_ns: int) -> None:
        oldest = now_ns - self.window_ns
        self._seen = {k: t for k, t in self._seen.items() if t >= oldest}
        self._inserts = 0

"""The store contract and the choice of adapter.

A store keeps readings as points keyed by (pilot, device, sensor, time): writing the same key
twice leaves one point, so redelivered or replayed readings overwrite themselves. It keeps
rollups (`core.rollups`) the same way, keyed by (resolution, pilot, device, sensor, window
start), and a few named watermarks (small integers the rollup maintainer uses to remember how
far it got).

The contract is split into small protocols (`Lifecycle`, `ReadingWriter`, `ReadingReader`,
`RollupStore`, `Watermarks`, `QuarantineStore`) so that a caller can ask for only the part it
uses; `Store` is all of them. Two adapters implement it and pass the same test suite: `influx`
(the store of record) and `embedded` (SQLite, for the zero-setup demo and offline use). They
are registered in `ADAPTERS` under their `PILOTS_STORE` names. This module must not import an
adapter at module level: each pulls in its own client library.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from core.quarantine import QuarantineEntry, QuarantineSummary, Usage
from core.readings import Readings
from core.registry import Registry
from core.rollups import Rollups
from core.settings import Settings
from core.uplinks import Uplinks


class QuarantineStore(Protocol):
    """The fleet's one quarantine (`core.quarantine`), kept in the store of record.

    Entries are keyed by (worker, source, reason, `ts_ns`): adding an entry twice leaves one.
    Removals are counted per (why, source, reason) in refusals, so that the quarantine can say
    how much it no longer holds.
    """

    def add_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keep these entries durably (a second add of a key replaces the first)."""

    def record_dropped(
        self, worker: str, ts_ns: int, dropped: dict[tuple[str, str, str], int]
    ) -> None:
        """Count refusals removed or never kept, per (why, source, reason), as of `ts_ns`."""

    def quarantine_entries(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        ids: Sequence[int] | None = None,
        worker: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        oldest_first: bool = False,
        limit: int | None = 100,
    ) -> list[QuarantineEntry]:
        """Entries newest (or oldest) first, filtered by what is given.

        `since_ns <= ts_ns < until_ns` for the range; `worker` for one worker's.
        """

    def quarantine_summary(self) -> QuarantineSummary:
        """Refusals kept per reason, and removed per (why, reason), over every worker."""

    def quarantine_usage(self, worker: str) -> dict[str, Usage]:
        """Entries and bytes one worker's entries hold, per source."""

    def delete_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Remove these entries (after a replay handled their messages)."""

    def prune_quarantine(
        self, worker: str, before_ns: int, now_ns: int
    ) -> dict[tuple[str, str], int]:
        """Remove one worker's entries older than `before_ns`, counted first as dropped by age.

        The count is recorded as of `now_ns`; returns the refusals removed per (source, reason).
        """


class Lifecycle(Protocol):
    """Connecting to a store, checking it answers, letting it go."""

    def start(self) -> None:
        """Connect and prepare (create the database where allowed); raises if unreachable."""

    def ping(self) -> None:
        """Raise unless the store answers now."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


class ReadingWriter(Protocol):
    """Where ingest writes readings, uplinks and repeats."""

    def write(
        self, readings: Readings, uplinks: Uplinks | None = None, repeats: Uplinks | None = None
    ) -> None:
        """Store readings (and their uplinks) durably; returns once the store accepted all.

        `repeats` are transmissions ingest received again and dropped, each timed (`ts_ns`) by
        the repeated frame's own time.
        """


class ReadingReader(Protocol):
    """Reading back raw readings, uplinks and repeats, and counting them first."""

    def scan(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> Readings:
        """Every stored reading of the pilot's named sensors (and devices) in the range."""

    def scan_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> Uplinks:
        """Every stored uplink of the pilot's devices (or the named ones) in the range."""

    def count(
        self,
        pilot: str,
        sensors: Sequence[str],
        start_ns: int,
        end_ns: int,
        devices: Sequence[str] | None = None,
    ) -> int:
        """How many readings `scan` with the same arguments would return, counted by the store.

        What a request will read, known before anything is read: the API checks it against its
        limit, whatever rate the devices actually sent at.
        """

    def count_uplinks(
        self, pilot: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None
    ) -> int:
        """How many uplinks `scan_uplinks` with the same arguments would return."""

    def count_repeats(self, pilot: str, start_ns: int, end_ns: int) -> dict[str, int]:
        """Repeated transmissions received in the range, per device id (absent: none)."""

    def latest(self, pilot: str) -> Readings:
        """The most recent reading of every (device, sensor) of the pilot."""


class RollupStore(Protocol):
    """Rollup rows (`core.rollups`), kept per resolution and keyed by window."""

    def write_rollups(self, resolution: str, rollups: Rollups) -> None:
        """Store rollup rows of one resolution (`1m`, `1h`, `1d`).

        A row replaces the stored row of the same (device, sensor, window start), wholly.
        Raises `ValueError` for an unknown resolution or a non-finite value.
        """

    def scan_rollups(
        self,
        pilot: str,
        sensors: Sequence[str],
        resolution: str,
        start_ns: int,
        end_ns: int,
        *,
        devices: Sequence[str] | None = None,
    ) -> Rollups:
        """Stored rollups of the pilot's sensors (and devices) whose window starts in the range.

        Rows come sorted by device code, sensor code and window start.
        """


class Watermarks(Protocol):
    """A few named integers, such as how far the rollup maintainer got."""

    def get_watermark(self, name: str) -> int | None:
        """The value last set for the watermark `name`, None if it was never set."""

    def set_watermark(self, name: str, value_ns: int) -> None:
        """Set the watermark `name` (an identifier, see `check_watermark_name`)."""


class Store(
    Lifecycle, ReadingWriter, ReadingReader, RollupStore, Watermarks, QuarantineStore, Protocol
):
    """What ingest writes to and what the API and core read from: every part above.

    Times are int64 nanoseconds since the epoch; ranges are half-open `[start_ns, end_ns)`.
    Every method raises `core.errors.StoreError` on failure: `StoreUnavailableError` when
    retrying later may help, `StoreRejectedError` when the data itself was refused,
    `StoreTooLargeError` when the request must be split.
    """


#: Watermark names become InfluxDB tag values: keep them as boring as registry identifiers.
_WATERMARK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def check_watermark_name(name: str) -> str:
    """The name, if it is a valid watermark name; raises `ValueError` otherwise."""
    if not _WATERMARK_NAME.match(name):
        raise ValueError(f"invalid watermark name {name!r}: use [a-z0-9][a-z0-9_.-]*")
    return name


def check_watermark_value(value_ns: int) -> int:
    """The value, if it fits a signed 64-bit integer; raises `ValueError` otherwise."""
    if not -(2**63) <= value_ns < 2**63:
        raise ValueError(f"watermark {value_ns} does not fit in 64 bits")
    return int(value_ns)


def embedded_path(settings: Settings) -> Path:
    """The embedded store's file in the data directory."""
    return settings.data_dir / "store.sqlite"


@dataclass(frozen=True, slots=True)
class Adapter:
    """One store adapter in `ADAPTERS`: its class, imported only when opened, and its name.

    `path` is `module:Class`; the class builds itself with `from_settings(settings, registry)`,
    which must not wait for a server (`Store.start` connects, retried by its callers).
    """

    path: str
    describe: Callable[[Settings], str]

    def open(self, settings: Settings, registry: Registry) -> Store:
        """The adapter, built from the settings (not started yet)."""
        module, _, name = self.path.partition(":")
        adapter = getattr(importlib.import_module(module), name)
        store: Store = adapter.from_settings(settings, registry)
        return store


def _describe_influx(settings: Settings) -> str:
    # Settings keep no login in the URL; dropping a user part here too is belt and braces.
    parts = urlsplit(settings.influx_url or "")
    host = parts.netloc.rpartition("@")[2]
    url = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return f"influx {url} database={settings.influx_database}"


def _describe_embedded(settings: Settings) -> str:
    return f"embedded {embedded_path(settings)}"


#: The store adapters by `PILOTS_STORE` name (`core.settings.Settings.store`).
ADAPTERS: Mapping[str, Adapter] = {
    "influx": Adapter("core.store.influx:InfluxStore", _describe_influx),
    "embedded": Adapter("core.store.embedded:EmbeddedStore", _describe_embedded),
}


def store_name(settings: Settings) -> str:
    """The name of the adapter the settings select, in `ADAPTERS`.

    `PILOTS_STORE` when set; otherwise `influx` when `PILOTS_INFLUX_URL` is set, else `embedded`.
    """
    if settings.store is not None:
        return settings.store
    return "influx" if settings.influx_url else "embedded"


def open_store(settings: Settings, registry: Registry) -> Store:
    """The adapter the settings select (`store_name`), built but not started."""
    return ADAPTERS[store_name(settings)].open(settings, registry)


def describe_store(settings: Settings) -> str:
    """One line naming the store the settings select, for logs and `/health`."""
    return ADAPTERS[store_name(settings)].describe(settings)

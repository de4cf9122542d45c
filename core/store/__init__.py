"""The store contract and the choice of adapter.

A store keeps readings as points keyed by (pilot, device, sensor, time): writing the same key
twice leaves one point, so redelivered or replayed readings overwrite themselves. Two adapters
implement the contract and pass the same test suite: `influx` (the store of record) and
`embedded` (SQLite, for the zero-setup demo and offline use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.uplinks import Uplinks


class Store(Protocol):
    """What ingest writes to and what the API and core read from.

    Times are int64 nanoseconds since the epoch; ranges are half-open `[start_ns, end_ns)`.
    Every method raises `core.errors.StoreError` on failure: `StoreUnavailableError` when
    retrying later may help, `StoreRejectedError` when the data itself was refused,
    `StoreTooLargeError` when the request must be split.
    """

    def start(self) -> None:
        """Connect and prepare (create the database where allowed); raises if unreachable."""

    def write(self, readings: Readings, uplinks: Uplinks | None = None) -> None:
        """Store readings (and their uplinks) durably; returns once the store accepted all."""

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

    def latest(self, pilot: str) -> Readings:
        """The most recent reading of every (device, sensor) of the pilot."""

    def ping(self) -> None:
        """Raise unless the store answers now."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


def open_store(settings: Settings, registry: Registry) -> Store:
    """The InfluxDB adapter when `PILOTS_INFLUX_URL` is set, otherwise the embedded store."""
    if settings.influx_url:
        from core.store.influx import InfluxStore

        return InfluxStore.from_settings(settings, registry)
    from core.store.embedded import EmbeddedStore

    return EmbeddedStore(settings.data_dir / "store.sqlite", registry)


def describe_store(settings: Settings) -> str:
    """One line naming the store the settings select, for logs and `/health`."""
    if settings.influx_url:
        return f"influx {settings.influx_url} database={settings.influx_database}"
    return f"embedded {settings.data_dir / 'store.sqlite'}"

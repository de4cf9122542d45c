"""The store contract fixture: each test that takes `store` runs on every registered adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.registry import Registry
from core.store import ADAPTERS, Store
from core.store.embedded import EmbeddedStore
from core.store.influx import InfluxStore
from tests.services import Influxd


def _embedded(request: pytest.FixtureRequest, registry: Registry, path: Path, _: str) -> Store:
    return EmbeddedStore(path / "store.sqlite", registry)


def _influx(request: pytest.FixtureRequest, registry: Registry, _: Path, database: str) -> Store:
    influxd: Influxd = request.getfixturevalue("influxd")
    return InfluxStore(influxd.url, database, registry)


#: How the contract suite gets a store of each `core.store.ADAPTERS` name: its own SQLite file,
#: its own database of a real influxd.
CONTRACT_STORES: dict[str, Callable[[pytest.FixtureRequest, Registry, Path, str], Store]] = {
    "embedded": _embedded,
    "influx": _influx,
}


@pytest.fixture(params=sorted(ADAPTERS))
def store(
    request: pytest.FixtureRequest, registry: Registry, tmp_path: Path, database: str
) -> Iterator[Store]:
    """A started store of this test's own, for each registered adapter."""
    make = CONTRACT_STORES.get(request.param)
    if make is None:
        pytest.fail(f"store {request.param!r} is registered but has no contract fixture here")
    store = make(request, registry, tmp_path, database)
    store.start()
    yield store
    store.close()

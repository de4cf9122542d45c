"""The store contract fixture: each test that takes `store` runs on both adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import Registry
from core.store import Store
from core.store.embedded import EmbeddedStore
from core.store.influx import InfluxStore
from tests.services import Influxd


@pytest.fixture(params=["embedded", "influx"])
def store(
    request: pytest.FixtureRequest, registry: Registry, tmp_path: Path, database: str
) -> Iterator[Store]:
    """A started store of this test's own: a SQLite file, then a database of a real influxd."""
    if request.param == "embedded":
        store: Store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    else:
        influxd: Influxd = request.getfixturevalue("influxd")
        store = InfluxStore(influxd.url, database, registry)
    store.start()
    yield store
    store.close()

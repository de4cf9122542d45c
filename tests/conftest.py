"""Fixtures shared by every tier: the registry, and real broker and database processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import Registry, load_registry
from tests.services import Influxd, Mosquitto, free_port


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The shipped registry of the three pilots."""
    return load_registry()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port, persistence on, for the whole session."""
    broker = Mosquitto(free_port(), tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """A real influxd on a free loopback port with a temporary data directory."""
    server = Influxd(free_port(), tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database() -> str:
    """A database name of this test's own, so tests never see each other's points."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory (spool, quarantine, embedded store) of this test's own."""
    path = tmp_path / "var"
    path.mkdir()
    return path

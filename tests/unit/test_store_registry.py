"""`PILOTS_STORE` picks the adapter from a registry; unset, it is inferred as it always was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from core.errors import ConfigError
from core.registry import Registry
from core.settings import Settings, load_settings
from core.store import ADAPTERS, describe_store, open_store, store_name
from core.store.embedded import EmbeddedStore
from core.store.influx import InfluxStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No `PILOTS_*` variables from the caller's shell and no `.env` file from the checkout."""
    for name in list(os.environ):
        if name.upper().startswith("PILOTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("store", "influx_url", "expected"),
    [
        (None, None, "embedded"),
        (None, "http://influx.example:8086", "influx"),
        ("embedded", None, "embedded"),
        ("embedded", "http://influx.example:8086", "embedded"),
        ("influx", "http://influx.example:8086", "influx"),
    ],
)
def test_the_store_is_the_setting_or_inferred_from_the_influx_url(
    monkeypatch: pytest.MonkeyPatch, store: str | None, influx_url: str | None, expected: str
) -> None:
    if store is not None:
        monkeypatch.setenv("PILOTS_STORE", store)
    if influx_url is not None:
        monkeypatch.setenv("PILOTS_INFLUX_URL", influx_url)
    assert store_name(load_settings()) == expected


def test_influx_without_its_url_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_STORE", "influx")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "PILOTS_STORE" in str(info.value)
    assert "PILOTS_INFLUX_URL" in str(info.value)


def test_an_unknown_store_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_STORE", "duckdb")
    with pytest.raises(ConfigError, match="PILOTS_STORE"):
        load_settings()


def test_every_store_name_has_an_adapter() -> None:
    names = {a for a in get_args(Settings.model_fields["store"].annotation) if a is not type(None)}
    literal = {n for arg in names for n in get_args(arg)}
    assert literal == set(ADAPTERS)


def test_the_registry_opens_and_describes_the_selected_adapter(
    registry: Registry, tmp_path: Path
) -> None:
    embedded = Settings(data_dir=tmp_path, _env_file=None)
    store = open_store(embedded, registry)
    assert isinstance(store, EmbeddedStore)
    assert store.path == tmp_path / "store.sqlite"
    store.close()
    assert describe_store(embedded) == f"embedded {tmp_path / 'store.sqlite'}"
    influx = Settings(
        data_dir=tmp_path, influx_url="http://127.0.0.1:9", influx_database="d", _env_file=None
    )
    store = open_store(influx, registry)  # builds, does not connect
    assert isinstance(store, InfluxStore)
    assert (store.url, store.database) == ("http://127.0.0.1:9", "d")
    store.close()
    assert describe_store(influx) == "influx http://127.0.0.1:9 database=d"


def test_the_description_leaves_a_password_in_the_url_out(tmp_path: Path) -> None:
    # It is logged at start and shown by /health/details.
    settings = Settings(
        data_dir=tmp_path,
        influx_url="http://reader:s3cret@influx.example:8086/",
        influx_database="pilots",
        _env_file=None,
    )
    described = describe_store(settings)
    assert described == "influx http://influx.example:8086 database=pilots"
    assert "s3cret" not in described and "reader" not in described


def test_the_registry_imports_no_adapter_and_core_no_service() -> None:
    code = (
        "import sys, core.store, core.rollups\n"
        "assert not any(m.startswith('core.store.') for m in sys.modules), 'adapter imported'\n"
        "import core.store.embedded, core.store.influx\n"
        "services = ('ingest', 'api', 'pilots', 'simulators')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in services]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

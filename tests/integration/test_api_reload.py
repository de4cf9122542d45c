"""A registry edited under a running API (embedded store): taken without a restart, or refused.

The app is `api.app.create_app` owning its store, as `pilots api` builds it, in a `TestClient`,
over a copy of the shipped registry in the test's directory, looked at every 0.1 s. A device
added shows in the pilot's devices; a moved threshold shows in the next report of a period
asked for before (no report made with the old registry is served again); a broken file is
refused with its reason and the API goes on with the registry it had; requests answered
while the registry changes all succeed, each with one registry or the other, and a request
running across the change finishes with the objects it began with. One test runs `pilots api`
as a process and has SIGHUP make it look at the file.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenStore
from api.deps import RegistryDep, StoreDep
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry
from core.settings import Settings
from core.store import Store, open_store
from core.store.embedded import EmbeddedStore
from core.timeutil import NS_PER_S, parse_instant_ns
from tests.helpers import wait_for
from tests.processes import PilotsProcess, wait_for_http
from tests.services import free_port

pytestmark = pytest.mark.integration

NEW_DEVICE = """
[[pilots.santa-fe.devices]]
id = "sf-new-01"
kind = "river_level"
site = "Added while the API runs"

"""
#: A day of Santa Fe's river level at 5.20 m: under the alert level of 5.30, over 5.10.
DAY = {"start": "2026-09-01", "end": "2026-09-02"}
DAY_START_NS = parse_instant_ns("2026-09-01T00:00:00-03:00")
LEVEL_M = 5.2


def with_device(text: str) -> str:
    """The registry with a device added at the end of santa-fe (the codes after it move)."""
    head, tail = text.split("[pilots.san-nicolas]", 1)
    return head + NEW_DEVICE + "[pilots.san-nicolas]" + tail


def with_alert_at(text: str, level: str) -> str:
    """The registry with Santa Fe's alert level of the river moved to `level`."""
    old = "alert = 5.30 "
    assert text.count(old) == 1
    return text.replace(old, f"alert = {level} ")


def level_day(registry: Registry) -> Readings:
    """Every 10 minutes of `DAY`, the river at `LEVEL_M` at sf-rlv-01."""
    ts = DAY_START_NS + np.arange(144, dtype=np.int64) * 600 * NS_PER_S
    return Readings.from_arrays(
        ts,
        np.full(len(ts), registry.devices["sf-rlv-01"].code),
        np.full(len(ts), registry.sensors["level"].code),
        np.full(len(ts), LEVEL_M),
    )


@dataclass
class Api:
    """The app in a client, the registry file it watches, what it logged, a read header."""

    app: FastAPI
    client: TestClient
    registry_file: Path
    store: Store
    caplog: pytest.LogCaptureFixture
    headers: dict[str, str]

    def get(self, path: str, **params: str) -> httpx.Response:
        response: httpx.Response = self.client.get(path, params=params, headers=self.headers)
        return response

    def devices(self) -> set[str]:
        response = self.get("/pilots/santa-fe/devices")
        assert response.status_code == 200, response.text
        return {d["id"] for d in response.json()}

    def alert_level(self) -> tuple[float, float]:
        """Santa Fe's river alert level in the report of `DAY`, and its hours above."""
        response = self.get("/pilots/santa-fe/report", **DAY)
        assert response.status_code == 200, response.text
        [alert] = [t for t in response.json()["thresholds"] if t["name"] == "alert"]
        return alert["level"], alert["hours_above"]

    def edit(self, text: str) -> None:
        self.registry_file.write_text(text, encoding="utf-8")

    def logged(self, words: str) -> bool:
        return any(words in r.getMessage() for r in self.caplog.records)

    def wait_logged(self, words: str) -> None:
        try:
            wait_for(lambda: self.logged(words), 10, repr(words))
        except AssertionError as exc:
            seen = "\n".join(r.getMessage() for r in self.caplog.records[-30:])
            raise AssertionError(f"{exc}; logged:\n{seen}") from None


def settings_for(tmp_path: Path, registry_file: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "var",
        registry=registry_file,
        store="embedded",
        alert_reload_every_s=0.1,
    )


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.toml"
    shutil.copy(DEFAULT_REGISTRY_PATH, path)
    return path


def run_api(
    tmp_path: Path, registry_file: Path, caplog: pytest.LogCaptureFixture, *, owned: bool
) -> Iterator[Api]:
    caplog.set_level(logging.INFO)
    settings = settings_for(tmp_path, registry_file)
    registry = load_registry(registry_file)
    store = open_store(settings, registry)
    store.start()
    store.write(level_day(registry))
    tokens = TokenStore.in_data_dir(settings.data_dir)
    headers = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    tokens.close()
    app = create_app(settings, registry, store, close_store=owned)
    try:
        with TestClient(app) as client:
            yield Api(app, client, registry_file, store, caplog, headers)
    finally:
        if not owned:
            store.close()


@pytest.fixture
def api(tmp_path: Path, registry_file: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Api]:
    """The app owning its store, as `pilots api` runs it."""
    yield from run_api(tmp_path, registry_file, caplog, owned=True)


def test_an_edited_registry_is_taken_and_a_broken_one_refused(api: Api) -> None:
    text = api.registry_file.read_text(encoding="utf-8")
    before = api.devices()
    assert "sf-new-01" not in before
    assert api.alert_level() == (5.3, 0.0)  # and now a report of DAY is kept

    # Requests keep coming while the registry changes: each is answered, with either registry.
    after = before | {"sf-new-01"}
    answers: list[tuple[int, frozenset[str]]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            response = api.get("/pilots/santa-fe/devices")
            ids = frozenset(d["id"] for d in response.json()) if response.is_success else None
            answers.append((response.status_code, ids or frozenset()))

    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(keep_asking)
        try:
            # A device added.
            api.edit(with_device(text))
            wait_for(lambda: "sf-new-01" in api.devices(), 10, "the new device listed")
            api.wait_logged("registry reloaded: ")
            assert api.logged("added sf-new-01")
            served = {ids for _, ids in answers}
            assert served <= {frozenset(before), frozenset(after)}, served
        finally:
            stop.set()
            asking.result(10)
    assert answers, "no request was answered while the registry changed"
    assert {status for status, _ in answers} == {200}
    assert {ids for _, ids in answers} <= {frozenset(before), frozenset(after)}

    # A moved threshold: the next report of the same period shows it (not the kept one).
    api.edit(with_alert_at(with_device(text), "5.10"))
    api.wait_logged("thresholds of santa-fe")
    level, hours_above = api.alert_level()
    assert level == 5.1
    assert hours_above > 20  # the river stood at 5.20 m all day
    pilot = api.get("/pilots/santa-fe").json()
    assert {t["name"]: t["value"] for t in pilot["thresholds"]} == {
        "alert": 5.1,
        "evacuation": 5.7,
    }

    # A broken file: refused with its reason, and the API goes on with the registry it had.
    api.edit(with_alert_at(with_device(text), "5.10") + "\n[pilots.santa-fe\n")
    api.wait_logged("refused, keeping the running one: cannot read registry")
    assert str(api.registry_file) in next(
        r.getMessage() for r in api.caplog.records if "refused" in r.getMessage()
    )
    assert api.devices() == after
    assert api.alert_level()[0] == 5.1
    assert api.get("/health").json() == {"status": "ok"}
    # Fixed, it is taken again.
    api.edit(with_alert_at(with_device(text), "5.20"))
    wait_for(lambda: api.alert_level()[0] == 5.2, 10, "the alert level at 5.20")


def test_a_request_running_across_the_change_ends_with_what_it_began_with(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[object] = []
    close = EmbeddedStore.close

    def recording_close(store: EmbeddedStore) -> None:
        closed.append(store)
        close(store)

    monkeypatch.setattr(EmbeddedStore, "close", recording_close)
    began, finish = threading.Event(), threading.Event()

    @api.app.get("/test/slow")
    def slow(request: Request, registry: RegistryDep, store: StoreDep) -> dict[str, Any]:
        began.set()
        assert finish.wait(10)
        state = request.app.state  # read again, after the change
        return {
            "same": state.registry is registry and state.store is store,
            "series_registry": state.series.registry is registry,
            "reports_registry": state.reports.registry is registry,
            "knows_new": "sf-new-01" in registry.devices,
            "store_closed": store in closed,
            "store_answers": int(store.count("santa-fe", ["level"], DAY_START_NS, 2**62)),
        }

    original = api.app.state.store
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(api.get, "/test/slow")
        assert began.wait(10)
        api.edit(with_device(api.registry_file.read_text(encoding="utf-8")))
        api.wait_logged("registry reloaded: ")
        assert "sf-new-01" in api.devices()  # new requests see the new registry
        assert api.app.state.store is not original
        assert original not in closed  # still used by the running request
        finish.set()
        response = running.result(10)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "same": True,
        "series_registry": True,
        "reports_registry": True,
        "knows_new": False,
        "store_closed": False,
        "store_answers": 144,
    }
    # Once that request has ended, the replaced store is closed.
    wait_for(lambda: original in closed, 10, "the replaced store closed")


def test_an_app_given_its_store_keeps_its_registry_and_says_why(
    tmp_path: Path, registry_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for api in run_api(tmp_path, registry_file, caplog, owned=False):
        before = api.devices()
        api.edit(with_device(registry_file.read_text(encoding="utf-8")))
        api.wait_logged("restart the program that runs it")
        assert api.devices() == before
        assert api.app.state.store is api.store


def test_sighup_makes_pilots_api_look_at_the_registry(tmp_path: Path, registry_file: Path) -> None:
    data_dir = tmp_path / "var"
    tokens = TokenStore.in_data_dir(data_dir)
    headers = {"Authorization": f"Bearer {tokens.create('ana', 'read')}"}
    tokens.close()
    env = {
        "PILOTS_DATA_DIR": str(data_dir),
        "PILOTS_REGISTRY": str(registry_file),
        "PILOTS_API_PORT": str(free_port()),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        # no look of its own within the test: only the signal makes one
        "PILOTS_ALERT_RELOAD_EVERY_S": "3600",
    }
    api = PilotsProcess(["api"], env, tmp_path, "api")
    base = f"http://127.0.0.1:{env['PILOTS_API_PORT']}"
    try:
        wait_for_http(f"{base}/health", 30, api)
        registry_file.write_text(
            with_device(registry_file.read_text(encoding="utf-8")), encoding="utf-8"
        )
        api.proc.send_signal(signal.SIGHUP)
        api.wait_for_output("registry reloaded: ", 10)
        devices = httpx.get(f"{base}/pilots/santa-fe/devices", headers=headers, timeout=10)
        assert "sf-new-01" in {d["id"] for d in devices.json()}
        # A second SIGHUP with the file unchanged: a look, and nothing to take.
        api.proc.send_signal(signal.SIGHUP)
        api.wait_for_output("read again: unchanged", 10)
        code = api.stop(signal.SIGTERM, timeout_s=20)
    finally:
        if api.proc.poll() is None:
            api.stop(signal.SIGKILL)
    assert code == 0, api.output()

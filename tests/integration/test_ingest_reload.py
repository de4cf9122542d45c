"""A registry edited under a running ingest (real mosquitto, embedded store): taken, or refused.

A device added to the registry file is stored from the next batch on, without a restart; a
broken file is refused with its reason and ingest goes on with the registry it had; and no
message of a steady stream is lost while the writer changes registries.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry
from core.settings import Settings
from core.store import embedded_path
from core.store.embedded import EmbeddedStore
from ingest.service import IngestService
from tests.helpers import StreamPublisher, plain, publish, wait_for
from tests.services import Mosquitto

pytestmark = pytest.mark.integration

MS = 1_000_000
NEW_DEVICE = """
[[pilots.santa-fe.devices]]
id = "{id}"
kind = "river_level"
site = "Added while ingest runs"

"""
#: The stream published while the writer changes registries: (pilot, device, sensor).
STREAM = [
    ("santa-fe", "sf-rlv-01", "level"),  # its code stays
    ("santa-fe", "sf-new-01", "level"),  # added by the first edit
    ("san-nicolas", "sn-aq-01", "pm25"),  # after the added devices: its code moves
]
STREAM_MESSAGES = 900


def with_devices(text: str, *ids: str) -> str:
    """The registry with devices added at the end of santa-fe (the codes after them move)."""
    head, tail = text.split("[pilots.san-nicolas]", 1)
    added = "".join(NEW_DEVICE.format(id=i) for i in ids)
    return head + added + "[pilots.san-nicolas]" + tail


class Logs:
    """What ingest and its writer process logged (to stderr) so far."""

    def __init__(self, capfd: pytest.CaptureFixture[str]) -> None:
        self.capfd = capfd
        self.text = ""

    def count(self, pattern: str) -> int:
        self.text += self.capfd.readouterr().err
        return len(re.findall(pattern, self.text))

    def wait(self, pattern: str, n: int, what: str) -> None:
        try:
            wait_for(lambda: self.count(pattern) >= n, 10, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; logged:\n{self.text[-3000:]}") from None


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.toml"
    shutil.copy(DEFAULT_REGISTRY_PATH, path)
    return path


class Ingest:
    """Starts ingest in the test itself (its writer process then logs to what `capfd` reads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service: IngestService | None = None

    def start(self, **overrides: object) -> IngestService:
        self.settings = self.settings.model_copy(update=overrides)
        assert self.settings.registry is not None
        self.service = IngestService(self.settings, load_registry(self.settings.registry))
        self.service.start()
        wait_for(self.service.subscribed.is_set, 15, "ingest to subscribe")
        return self.service

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@pytest.fixture
def ingest(mosquitto: Mosquitto, data_dir: Path, registry_file: Path) -> Iterator[Ingest]:
    settings = Settings(
        _env_file=None,
        mqtt_url=mosquitto.url,
        mqtt_client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        store="embedded",
        data_dir=data_dir,
        registry=registry_file,
        ingest_http_port=0,
        ingest_stop_timeout_s=5,
        alert_reload_every_s=0.1,
    )
    started = Ingest(settings)
    yield started
    started.stop()


class Store:
    """The embedded store ingest writes, read through the final registry."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.registry = registry
        self.store = EmbeddedStore(embedded_path(settings), registry)

    def count(self, pilot: str, device: str, sensor: str) -> int:
        return self.store.count(pilot, [sensor], 0, time.time_ns() + 3600 * 10**9, [device])

    def refused(self) -> dict[str, int]:
        return self.store.quarantine_summary().kept


def test_registry_edits_take_effect_without_a_restart(
    ingest: Ingest,
    mosquitto: Mosquitto,
    registry_file: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    logs = Logs(capfd)
    service = ingest.start()
    original = registry_file.read_text()
    final = tmp_path / "final.toml"
    final.write_text(with_devices(original, "sf-new-01", "sf-new-02"))
    store = Store(service.settings, load_registry(final))
    now_ms = time.time_ns() // MS - 600_000

    def reading(device: str, ts_ms: int, value: float) -> None:
        topic = f"pilots/santa-fe/{device}/up"
        publish(mosquitto.port, [(topic, plain(ts_ms, {"level": value}))])

    # a device the registry does not know: quarantined
    reading("sf-new-01", now_ms, 1.0)
    wait_for(lambda: store.refused() == {"unknown_device": 1}, 10, "the unknown device refused")

    # added to the file: taken at the writer's next look, and stored from then on
    registry_file.write_text(with_devices(original, "sf-new-01"))
    logs.wait(r"registry reloaded: \d+ devices \(\+1, -0\); added sf-new-01", 1, "the reload")
    reading("sf-new-01", now_ms + 1, 2.0)
    wait_for(lambda: store.count("santa-fe", "sf-new-01", "level") == 1, 10, "sf-new-01 stored")

    # a broken file: refused with its reason; ingest keeps the registry it has
    registry_file.write_text("[pilots.santa-fe\n")
    logs.wait(
        rf"registry {re.escape(str(registry_file))} refused, keeping the running one: "
        r"cannot read registry",
        1,
        "the broken registry refused",
    )
    reading("sf-new-01", now_ms + 2, 3.0)
    reading("sf-rlv-01", now_ms + 2, 3.0)
    wait_for(
        lambda: (
            store.count("santa-fe", "sf-new-01", "level") == 2
            and store.count("santa-fe", "sf-rlv-01", "level") == 1
        ),
        10,
        "readings of known devices stored under the running registry",
    )
    assert store.refused() == {"unknown_device": 1}

    # a steady stream while the writer changes registries: every message stored, none refused
    messages = [
        (f"pilots/{pilot}/{device}/up", plain(now_ms + 10 + i, {sensor: float(i % 10)}))
        for i in range(STREAM_MESSAGES)
        for pilot, device, sensor in [STREAM[i % len(STREAM)]]
    ]
    publisher = StreamPublisher(mosquitto.port, messages, rate_per_s=300).start()
    try:
        wait_for(lambda: publisher.sent >= STREAM_MESSAGES // 4, 10, "the stream under way")
        shutil.copy(final, registry_file)
        logs.wait(r"\(\+1, -0\); added sf-new-02", 1, "the reload during the stream")
        publisher.wait(20)
    finally:
        publisher.close()
    each = STREAM_MESSAGES // len(STREAM)
    expected = {("sf-rlv-01", "level"): 1 + each, ("sf-new-01", "level"): 2 + each}
    expected["sn-aq-01", "pm25"] = each

    def counts() -> dict[tuple[str, str], int]:
        return {(d, s): store.count(store.registry.devices[d].pilot, d, s) for d, s in expected}

    try:
        wait_for(lambda: counts() == expected, 15, "every reading of the stream stored")
    except AssertionError:
        assert (counts(), store.refused()) == (expected, {"unknown_device": 1})
        raise
    assert store.refused() == {"unknown_device": 1}
    assert logs.count("refused, keeping the running one") == 1
    assert service.metrics.value("pilots_ingest_acked_messages_total") == 4 + STREAM_MESSAGES


def test_a_sighup_has_the_writer_look_at_once(
    ingest: Ingest, mosquitto: Mosquitto, registry_file: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    logs = Logs(capfd)
    service = ingest.start(alert_reload_every_s=3600)  # no look of its own during the test
    store = Store(service.settings, load_registry(registry_file))
    ts_ms = time.time_ns() // MS - 60_000
    # the writer process is up (and has read the registry) once a reading is stored
    publish(mosquitto.port, [("pilots/santa-fe/sf-rlv-01/up", plain(ts_ms, {"level": 1.0}))])
    wait_for(lambda: store.count("santa-fe", "sf-rlv-01", "level") == 1, 10, "the writer up")
    registry_file.write_text(with_devices(registry_file.read_text(), "sf-new-01"))
    service.reload_registry()  # a SIGHUP to the writer process
    logs.wait(r"registry reloaded: \d+ devices \(\+1, -0\); added sf-new-01", 1, "the reload")
    publish(mosquitto.port, [("pilots/santa-fe/sf-new-01/up", plain(ts_ms, {"level": 1.25}))])
    store = Store(service.settings, load_registry(registry_file))
    wait_for(lambda: store.count("santa-fe", "sf-new-01", "level") == 1, 10, "sf-new-01 stored")
    assert store.refused() == {}
    assert logs.count("refused") == 0

"""Ingest against a real mosquitto and a real influxd."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from ingest.quarantine import Quarantine
from ingest.service import IngestService
from tests.helpers import plain, publish, wait_for
from tests.services import Influxd, Mosquitto, free_port

pytestmark = pytest.mark.integration

MS = 1_000_000


SettingsFor = Callable[..., Settings]


@pytest.fixture
def settings_for(
    mosquitto: Mosquitto, influxd: Influxd, database: str, data_dir: Path
) -> SettingsFor:
    """Settings of this test's ingest: its own client id (session), database and data dir."""
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"

    def make(influx_url: str = influxd.url) -> Settings:
        return Settings(
            mqtt_url=mosquitto.url,
            mqtt_client_id=client_id,
            influx_url=influx_url,
            influx_database=database,
            influx_timeout_s=2,
            data_dir=data_dir,
            _env_file=None,  # type: ignore[call-arg]
        )

    return make


def at_least(n: int, readings: Readings) -> Readings | None:
    return readings if len(readings) >= n else None


class Running:
    """An ingest service with its store and quarantine, stopped at teardown."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.store = InfluxStore.from_settings(settings, registry)
        self.quarantine = Quarantine(settings.data_dir / "quarantine.sqlite")
        self.service = IngestService(settings, registry, self.store, self.quarantine)
        self.stopped = False

    def start(self) -> Running:
        self.service.start()
        wait_for(self.service.subscribed.is_set, 15, "ingest to subscribe")
        return self

    def stop(self, timeout_s: float = 30) -> None:
        if not self.stopped:
            self.service.stop(timeout_s)
            self.quarantine.close()
            self.stopped = True


@pytest.fixture
def running(registry: Registry) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop(5)


def test_readings_are_stored_once_and_refusals_quarantined(
    mosquitto: Mosquitto,
    registry: Registry,
    settings_for: SettingsFor,
    running: list[Running],
) -> None:
    settings = settings_for()
    influx = InfluxStore.from_settings(settings_for(), registry)
    influx.start()
    ingest = Running(settings, registry).start()
    running.append(ingest)
    now_ms = time.time_ns() // MS
    t = [now_ms - 3_000_000 + i * 600_000 for i in range(4)]
    good = plain(t[0], {"level": 3.2, "water_temp": 24.0}, seq=7, battery_v=3.9)
    publish(
        mosquitto.port,
        [
            ("pilots/santa-fe/sf-rlv-01/up", good),
            ("pilots/santa-fe/sf-rlv-01/up", good),  # a duplicate uplink
            ("pilots/santa-fe/sf-rlv-01/up", plain(t[1], {"level": 3.3, "water_temp": 99.0})),
            ("pilots/santa-fe/sf-rlv-99/up", plain(t[2], {"level": 1.0})),  # unknown device
            ("pilots/santa-fe/sf-rlv-02/up", b"{not json"),
        ],
    )
    sensors = ["level", "water_temp", "battery_v", "fcnt"]
    stored = wait_for(
        lambda: at_least(5, influx.scan("santa-fe", sensors, t[0] * MS, t[3] * MS)),
        20,
        "5 readings in InfluxDB",
    )
    ingest.stop()
    by_sensor = sorted(
        (registry.sensor_list[s].id, v)
        for s, v in zip(stored.sensor.tolist(), stored.value.tolist(), strict=True)
    )
    assert by_sensor == [
        ("battery_v", 3.9),
        ("fcnt", 7.0),
        ("level", 3.2),
        ("level", 3.3),
        ("water_temp", 24.0),
    ]
    counts = Quarantine(settings.data_dir / "quarantine.sqlite").counts()
    assert counts == {"malformed_json": 1, "out_of_range": 1, "unknown_device": 1}


def test_messages_published_while_ingest_is_down_arrive_after_restart(
    mosquitto: Mosquitto,
    registry: Registry,
    settings_for: SettingsFor,
    running: list[Running],
) -> None:
    settings = settings_for()
    first = Running(settings, registry)
    first.store.start()
    running.append(first.start())
    first.stop()  # the persistent session stays on the broker
    now_ms = time.time_ns() // MS
    publish(
        mosquitto.port,
        [
            ("pilots/resistencia/rs-wq-02/up", plain(now_ms - i * 1000, {"ph": 7.0 + i / 100}))
            for i in range(50)
        ],
    )
    second = Running(settings, registry).start()
    running.append(second)
    influx = InfluxStore.from_settings(settings_for(), registry)
    wait_for(
        lambda: (
            len(influx.scan("resistencia", ["ph"], (now_ms - 60_000) * MS, (now_ms + 1) * MS)) == 50
        ),
        20,
        "the 50 readings published while ingest was down",
    )


def test_nothing_is_acknowledged_until_it_is_stored(
    mosquitto: Mosquitto,
    registry: Registry,
    settings_for: SettingsFor,
    running: list[Running],
) -> None:
    # InfluxDB unreachable: ingest receives the messages but cannot store them.
    dead = f"http://127.0.0.1:{free_port()}"
    down = Running(settings_for(dead), registry).start()
    running.append(down)
    now_ms = time.time_ns() // MS
    publish(
        mosquitto.port,
        [
            ("pilots/san-nicolas/sn-aq-04/up", plain(now_ms - i * 1000, {"pm25": 10.0 + i}))
            for i in range(20)
        ],
    )
    wait_for(lambda: down.service.stats.write_retries > 0, 15, "a failed write")
    down.stop(timeout_s=1)  # gives up: the messages stay unacknowledged with the broker
    assert down.service.stats.readings_written == 0

    # The same session with InfluxDB reachable: the broker redelivers, all 20 are stored.
    up = Running(settings_for(), registry)
    up.store.start()
    running.append(up.start())
    influx = InfluxStore.from_settings(settings_for(), registry)
    got = wait_for(
        lambda: at_least(
            20, influx.scan("san-nicolas", ["pm25"], (now_ms - 60_000) * MS, (now_ms + 1) * MS)
        ),
        30,
        "the 20 redelivered readings",
    )
    assert sorted(got.value.tolist()) == [10.0 + i for i in range(20)]

"""Ingest in-process against a real mosquitto and a real influxd."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from core.readings import Readings
from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
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

    def make(influx_url: str = influxd.url, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mqtt_url": mosquitto.url,
            "mqtt_client_id": client_id,
            "influx_url": influx_url,
            "influx_database": database,
            "influx_timeout_s": 2,
            "data_dir": data_dir,
            "ingest_http_port": 0,
            "ingest_stop_timeout_s": 5,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


def at_least(n: int, readings: Readings) -> Readings | None:
    return readings if len(readings) >= n else None


class Running:
    """An ingest service with its store, stopped at teardown."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.store = InfluxStore.from_settings(settings, registry)
        self.service = IngestService(settings, registry)
        self.stopped = False

    def start(self) -> Running:
        self.service.start()
        wait_for(self.service.subscribed.is_set, 15, "ingest to subscribe")
        return self

    def metric(self, name: str, **labels: str) -> float:
        return self.service.metrics.value(name, **labels)

    def stop(self) -> None:
        if not self.stopped:
            self.service.stop()
            self.stopped = True


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def start(settings: Settings, registry: Registry, running: list[Running]) -> Running:
    ingest = Running(settings, registry)
    ingest.store.start()
    running.append(ingest.start())
    return ingest


def test_readings_are_stored_once_and_refusals_quarantined(
    mosquitto: Mosquitto, registry: Registry, settings_for: SettingsFor, running: list[Running]
) -> None:
    settings = settings_for()
    ingest = start(settings, registry, running)
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
    sensors = ["level", "water_temp", "battery_v"]
    stored = wait_for(
        lambda: at_least(4, ingest.store.scan("santa-fe", sensors, t[0] * MS, t[3] * MS)),
        20,
        "4 readings in InfluxDB",
    )
    by_sensor = sorted(
        (registry.sensor_list[s].id, v)
        for s, v in zip(stored.sensor.tolist(), stored.value.tolist(), strict=True)
    )
    assert by_sensor == [("battery_v", 3.9), ("level", 3.2), ("level", 3.3), ("water_temp", 24.0)]
    uplinks = ingest.store.scan_uplinks("santa-fe", t[0] * MS, t[3] * MS)
    assert sorted(uplinks.fcnt.tolist()) == [-1, 7]  # the second frame carried no counter
    expected = {"malformed_json": 1, "out_of_range": 1, "unknown_device": 1}
    wait_for(
        lambda: ingest.store.quarantine_summary().kept == expected,
        10,
        f"{expected} in the quarantine, in InfluxDB",
    )
    # The writer reports its counts to ingest after each batch: wait for the report.
    wait_for(
        lambda: ingest.metric("pilots_ingest_refused_total", reason="out_of_range") == 1,
        10,
        "the refusal counted",
    )
    assert ingest.metric("pilots_ingest_acked_messages_total") == 5


def test_every_format_is_ingested_with_its_radio_metadata(
    mosquitto: Mosquitto, registry: Registry, settings_for: SettingsFor, running: list[Running]
) -> None:
    ingest = start(settings_for(), registry, running)
    now_s = time.time_ns() // 1_000_000_000 - 600
    aq = registry.devices["sn-aq-02"]
    rlv = registry.devices["rs-rlv-01"]
    assert rlv.dev_eui is not None
    wq = registry.devices["rs-wq-03"]

    def chirpstack(when_s: int, fcnt: int, pm25: float) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when_s)) + ".250000000+00:00"
        return orjson.dumps(
            {
                "deduplicationId": str(uuid.uuid4()),
                "time": stamp,
                "deviceInfo": {"deviceName": "aq2", "devEui": aq.dev_eui, "tenantId": "t"},
                "fCnt": fcnt,
                "object": {"pm25": pm25, "pm10": 30.0},
                "rxInfo": [
                    {"gatewayId": "0016c001f153a14c", "rssi": -101, "snr": -3.5},
                    {"gatewayId": "0016c001f153a14d", "rssi": -87, "snr": 6.25},
                ],
                "txInfo": {"modulation": {"lora": {"spreadingFactor": 9}}},
            }
        )

    tts = orjson.dumps(
        {
            "end_device_ids": {"device_id": "rs-rlv-01", "dev_eui": rlv.dev_eui.upper()},
            "received_at": "2030-01-01T00:00:00Z",
            "uplink_message": {
                "decoded_payload": {"level": 4.875, "water_temp": 26.5},
                "rx_metadata": [
                    {"gateway_ids": {"gateway_id": "utn-frre"}, "rssi": -95, "snr": 2.5}
                ],
                "settings": {"data_rate": {"lora": {"spreading_factor": 10}}},
                "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s + 60)),
            },
        }
    )
    senml = orjson.dumps(
        [
            {"bn": "rs-wq-03/", "bt": now_s + 120, "n": "ph", "v": 7.25},
            {"n": "water_temp", "u": "Cel", "v": 27.5},
            {"n": "dissolved_oxygen", "v": 6.5, "t": 60},
        ]
    )
    eui_topic = f"application/app-1/device/{aq.dev_eui}/event/up"
    publish(
        mosquitto.port,
        [
            (eui_topic, chirpstack(now_s, 41, 12.5)),
            (eui_topic, chirpstack(now_s + 5, 41, 12.5)),  # a retransmission of frame 41
            ("v3/utn-pilots@ttn/devices/rs-rlv-01/up", tts),
            ("pilots/resistencia/rs-wq-03/senml", senml),
        ],
    )
    lo, hi = (now_s - 10) * 1_000_000_000, (now_s + 600) * 1_000_000_000
    aq_readings = wait_for(
        lambda: at_least(2, ingest.store.scan("san-nicolas", ["pm25", "pm10"], lo, hi)),
        20,
        "the ChirpStack readings",
    )
    assert len(aq_readings) == 2, "the retransmission must not add a second point"
    wait_for(lambda: ingest.metric("pilots_ingest_duplicates_total") == 1, 10, "one duplicate")
    up = ingest.store.scan_uplinks("san-nicolas", lo, hi)
    assert up.fcnt.tolist() == [41]
    assert (up.rssi.tolist(), up.snr.tolist(), up.sf.tolist()) == ([-87.0], [6.25], [9])
    assert up.gateway.tolist() == ["0016c001f153a14d"]
    assert up.ts_ns.tolist() == [now_s * 1_000_000_000 + 250_000_000]

    rs = wait_for(
        lambda: at_least(
            5,
            ingest.store.scan(
                "resistencia", ["level", "water_temp", "ph", "dissolved_oxygen"], lo, hi
            ),
        ),
        20,
        "the TTS and SenML readings",
    )
    assert sorted(rs.value.tolist()) == [4.875, 6.5, 7.25, 26.5, 27.5]
    rs_up = ingest.store.scan_uplinks("resistencia", lo, hi)
    tts_row = rs_up.device.tolist().index(rlv.code)
    assert rs_up.fcnt[tts_row] == 0, "a missing f_cnt is 0"
    assert rs_up.gateway[tts_row] == "utn-frre" and rs_up.sf[tts_row] == 10
    # The SenML pack is one transmission: one uplink, at its latest record's time.
    assert rs_up.ts_ns[rs_up.device == wq.code].tolist() == [(now_s + 180) * 1_000_000_000]


def test_messages_published_while_ingest_is_down_arrive_after_restart(
    mosquitto: Mosquitto, registry: Registry, settings_for: SettingsFor, running: list[Running]
) -> None:
    settings = settings_for()
    start(settings, registry, running).stop()  # the persistent session stays on the broker
    now_ms = time.time_ns() // MS
    publish(
        mosquitto.port,
        [
            ("pilots/resistencia/rs-wq-02/up", plain(now_ms - i * 1000, {"ph": 7.0 + i / 100}))
            for i in range(50)
        ],
    )
    second = start(settings, registry, running)
    wait_for(
        lambda: (
            len(second.store.scan("resistencia", ["ph"], (now_ms - 60_000) * MS, (now_ms + 1) * MS))
            == 50
        ),
        20,
        "the 50 readings published while ingest was down",
    )


def test_the_spool_keeps_what_the_store_could_not_take_across_a_restart(
    mosquitto: Mosquitto, registry: Registry, settings_for: SettingsFor, running: list[Running]
) -> None:
    # InfluxDB unreachable: ingest spools and acknowledges, the writer keeps retrying.
    dead = f"http://127.0.0.1:{free_port()}"
    down = Running(settings_for(dead, ingest_stop_timeout_s=1), registry)
    running.append(down.start())
    now_ms = time.time_ns() // MS
    publish(
        mosquitto.port,
        [
            ("pilots/san-nicolas/sn-aq-04/up", plain(now_ms - i * 1000, {"pm25": 10.0 + i}))
            for i in range(20)
        ],
    )
    wait_for(lambda: down.metric("pilots_ingest_acked_messages_total") == 20, 15, "20 acks")
    wait_for(
        lambda: down.metric("pilots_ingest_write_errors_total", **{"class": "unavailable"}),
        15,
        "a failed write",
    )
    assert down.service.spool.depth().messages == 20
    down.stop()  # the spool keeps the 20 readings on disk

    up = start(settings_for(), registry, running)
    got = wait_for(
        lambda: at_least(
            20,
            up.store.scan("san-nicolas", ["pm25"], (now_ms - 60_000) * MS, (now_ms + 1) * MS),
        ),
        30,
        "the 20 spooled readings",
    )
    assert sorted(got.value.tolist()) == [10.0 + i for i in range(20)]
    wait_for(lambda: up.service.spool.depth().messages == 0, 10, "an empty spool")


def test_a_field_type_conflict_quarantines_only_the_refused_lines(
    mosquitto: Mosquitto,
    influxd: Influxd,
    registry: Registry,
    database: str,
    settings_for: SettingsFor,
    running: list[Running],
) -> None:
    now_ms = time.time_ns() // MS
    # Someone wrote `level` as a string into this shard: InfluxDB now refuses float levels there.
    store = InfluxStore(influxd.url, database, registry)
    store.start()
    conflict = f'readings,device=x,kind=x,pilot=x level="high" {(now_ms - 5000) * MS}'
    response = httpx.post(f"{influxd.url}/write", params={"db": database}, content=conflict)
    assert response.status_code == 204
    ingest = start(settings_for(), registry, running)
    publish(
        mosquitto.port,
        [
            (
                "pilots/santa-fe/sf-rlv-02/up",
                plain(now_ms - 1000, {"level": 3.5, "water_temp": 25.0}),
            )
        ],
    )
    wait_for(
        lambda: store.quarantine_summary().kept.get("store_rejected"),
        20,
        "the refused line in the quarantine",
    )
    stored = store.scan("santa-fe", ["water_temp"], (now_ms - 60_000) * MS, now_ms * MS)
    assert stored.value.tolist() == [25.0], "the lines InfluxDB accepted are stored"
    entry = store.quarantine_entries(reason="store_rejected")[0]
    assert b"sensor=level" in entry.head and "conflict" in entry.detail
    wait_for(lambda: ingest.service.spool.depth().messages == 0, 10, "an empty spool")


def test_metrics_and_health_are_served(
    registry: Registry, settings_for: SettingsFor, running: list[Running], mosquitto: Mosquitto
) -> None:
    ingest = start(settings_for(), registry, running)
    publish(mosquitto.port, [("pilots/santa-fe/sf-wx-01/up", b"[]")])
    base = f"http://127.0.0.1:{ingest.service.http_port}"
    wait_for(lambda: ingest.metric("pilots_ingest_acked_messages_total") == 1, 10, "one ack")
    wait_for(
        lambda: ingest.metric("pilots_ingest_refused_total", reason="malformed_structure"),
        10,
        "the refusal counted by the writer",
    )
    metrics = httpx.get(f"{base}/metrics").text
    assert 'pilots_ingest_refused_total{reason="malformed_structure"} 1.0' in metrics
    assert "pilots_ingest_spool_bytes" in metrics
    health = httpx.get(f"{base}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_workers_on_a_shared_subscription_split_the_stream(
    mosquitto: Mosquitto, registry: Registry, settings_for: SettingsFor, running: list[Running]
) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    one = start(
        settings_for(mqtt_shared_group=group, mqtt_client_id=f"{group}-1"), registry, running
    )
    two = start(
        settings_for(mqtt_shared_group=group, mqtt_client_id=f"{group}-2"), registry, running
    )
    now_ms = time.time_ns() // MS
    publish(
        mosquitto.port,
        [
            ("pilots/san-nicolas/sn-aq-05/up", plain(now_ms - i * 100, {"no2": float(i)}))
            for i in range(400)
        ],
    )
    wait_for(
        lambda: (
            one.metric("pilots_ingest_acked_messages_total")
            + two.metric("pilots_ingest_acked_messages_total")
            == 400
        ),
        20,
        "400 acknowledgements between the two workers",
    )
    assert one.metric("pilots_ingest_acked_messages_total") > 0
    assert two.metric("pilots_ingest_acked_messages_total") > 0
    got = wait_for(
        lambda: at_least(
            400, one.store.scan("san-nicolas", ["no2"], (now_ms - 60_000) * MS, now_ms * MS + 1)
        ),
        20,
        "400 readings",
    )
    assert sorted(got.value.tolist()) == [float(i) for i in range(400)]

"""MQTT over TLS with the development CA from `deploy/tls/make-dev-ca.sh`, on a real Mosquitto.

The script makes the CA and the server certificate in a temporary directory; a broker serves
them on a TLS listener next to its plain one, with provisioned logins. A device that trusts the
CA publishes over TLS and `pilots ingest`, connected with `mqtts://`, stores the reading; a
client that does not trust the CA is refused at the handshake.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from pilots.provision import plan_logins, provision
from tests.helpers import wait_for
from tests.processes import PilotsProcess
from tests.services import Influxd, Mosquitto, dynsec_conf, free_port, wait_for_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "tls" / "make-dev-ca.sh"
MS = 1_000_000
INGEST_PASSWORD = "ingest-" + uuid.uuid4().hex
DEVICE_PASSWORD = "device-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tls")
    done = subprocess.run(
        ["sh", str(SCRIPT), str(out), "localhost", "127.0.0.1"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and "openssl not found" in done.stderr:
        pytest.fail("openssl not found: apt-get install -y openssl", pytrace=False)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def tls_broker(
    tmp_path_factory: pytest.TempPathFactory, tls_dir: Path, registry: Registry
) -> Iterator[tuple[Mosquitto, int]]:
    auth = tmp_path_factory.mktemp("auth")
    routes = Settings.model_fields["ingest_routes"].get_default(call_default_factory=True)
    provision(
        auth,
        plan_logins(registry, routes),
        given={"pilots-ingest": INGEST_PASSWORD, "sf-rlv-01": DEVICE_PASSWORD},
    )
    tls_port = free_port()
    certs = tls_dir / "certs"
    broker = Mosquitto(
        free_port(),
        tmp_path_factory.mktemp("mosquitto-tls"),
        allow_anonymous=False,
        extra_conf=(
            dynsec_conf(auth) + f"listener {tls_port} 127.0.0.1\n"
            f"cafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\n"
            f"keyfile {certs / 'server.key'}\ntls_version tlsv1.2\n"
        ),
    )
    broker.start()
    assert broker.proc is not None
    wait_for_port(tls_port, 15, broker.proc, broker.log)
    yield broker, tls_port
    broker.stop()


def tls_client(ca_file: Path | None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-{uuid.uuid4().hex[:8]}")
    client.tls_set(ca_certs=str(ca_file) if ca_file else None)
    return client


def test_ingest_over_mqtts_stores_what_a_device_sends_over_tls(
    tls_broker: tuple[Mosquitto, int],
    tls_dir: Path,
    influxd: Influxd,
    registry: Registry,
    database: str,
    tmp_path: Path,
) -> None:
    _, tls_port = tls_broker
    ca = tls_dir / "certs" / "ca.crt"
    env = {
        "PILOTS_MQTT_URL": f"mqtts://pilots-ingest:{INGEST_PASSWORD}@localhost:{tls_port}",
        "PILOTS_MQTT_CLIENT_ID": f"tls-{database}",
        "PILOTS_INFLUX_URL": influxd.url,
        "PILOTS_INFLUX_DATABASE": database,
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
        # the private CA that signed the broker's certificate
        "PILOTS_MQTT_CA_FILE": str(ca),
    }
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    ingest.wait_for_output("ingest ready", 30)

    start_ms = time.time_ns() // MS - 3_600_000
    device = tls_client(ca)
    device.username_pw_set("sf-rlv-01", DEVICE_PASSWORD)
    device.connect("localhost", tls_port)
    device.loop_start()
    try:
        info = device.publish(
            "pilots/santa-fe/sf-rlv-01/up",
            orjson.dumps({"ts": start_ms, "readings": {"level": 2.75}}),
            qos=1,
        )
        info.wait_for_publish(10)
        assert info.is_published()
        assert isinstance(device.socket(), ssl.SSLSocket)
    finally:
        device.disconnect()
        device.loop_stop()

    store = InfluxStore(influxd.url, database, registry)

    def stored() -> list[float]:
        got = store.scan("santa-fe", ["level"], start_ms * MS, (start_ms + 1) * MS)
        values: list[float] = got.value.tolist()
        return values

    got = wait_for(stored, 60, "the reading sent over TLS")
    assert got == [2.75]
    assert "connected to mqtts://pilots-ingest@localhost" in ingest.output()
    assert ingest.stop(signal.SIGTERM) == 0, ingest.output()


def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_broker: tuple[Mosquitto, int],
) -> None:
    _, tls_port = tls_broker
    client = tls_client(None)  # the system's CAs only: the development CA is not among them
    client.username_pw_set("sf-rlv-01", DEVICE_PASSWORD)
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("localhost", tls_port)

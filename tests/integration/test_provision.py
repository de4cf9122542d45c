"""Device logins and topics written by `pilots devices provision`, enforced by a real Mosquitto.

A broker started with the provisioned dynamic-security file (and anonymous access off) must
let each device publish only on its own topics, refuse wrong passwords and anonymous clients,
and let ingest, logged in as itself on a shared subscription, store what devices send. The
alert service's evaluator receives a copy of every device message without joining or robbing
ingest's group, and its MQTT channel publishes the alerts and nothing else. What a device may
not subscribe to, what a network server may publish and the packet size limit are in
tests/security/test_broker_hostile.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from alerts.channels import MqttChannel, alert_mqtt_target
from alerts.message import compose
from alerts.service import AlertService
from core.registry import Registry
from core.settings import Settings
from core.store.influx import InfluxStore
from pilots.cli import app
from pilots.provision import (
    ALERT_TOPICS,
    CREDENTIALS_FILE,
    DEFAULT_ALERTS_LOGIN,
    DEFAULT_ALERTS_MQTT_LOGIN,
    DYNSEC_FILE,
    HEALTHCHECK_LOGIN,
    HEALTHCHECK_PASSWORD_FILE,
    LEGACY_ACL_FILE,
    LEGACY_PASSWORD_FILE,
    Login,
    Provisioned,
    hash_password,
    plan_logins,
    provision,
)
from tests.helpers import wait_for
from tests.processes import PilotsProcess
from tests.services import Influxd, Mosquitto, dynsec_conf, free_port

pytestmark = pytest.mark.integration

MS = 1_000_000
INGEST_LOGIN = "pilots-ingest"
INGEST_PASSWORD = "ingest-" + uuid.uuid4().hex  # what an operator puts in PILOTS_MQTT_URL
TOPIC_01 = "pilots/santa-fe/sf-rlv-01/up"
ROUTES = Settings.model_fields["ingest_routes"].get_default(call_default_factory=True)


def credentials(path: Path) -> dict[str, str]:
    """login -> password, as the operator reads them from the credentials file."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            login, password, *_topics = line.split()
            found[login] = password
    return found


def secured_broker(workdir: Path, auth: Path, extra: str = "") -> Mosquitto:
    broker = Mosquitto(
        free_port(),
        workdir,
        allow_anonymous=False,
        # as deploy/mosquitto/mosquitto.conf: a connection's client id is its login
        extra_conf=dynsec_conf(auth) + "use_username_as_clientid true\n" + extra,
    )
    broker.workdir.mkdir(parents=True)
    return broker


def connack(port: int, username: str | None, password: str | None) -> ReasonCode:
    """The broker's answer to a login (MQTT 3.1.1, as devices and ingest connect)."""
    answers: list[ReasonCode] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, u, flags, code, props: answers.append(code)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: answers, 10, "CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return answers[0]


def publish_as(port: int, login: str, password: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 as a device and wait for every PUBACK.

    With MQTT 3.1.1 Mosquitto acknowledges a publication the ACL forbids and drops it, so the
    device learns nothing about other devices' topics.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{login}-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(login, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published(), f"{login}: the broker did not acknowledge"
    finally:
        client.disconnect()
        client.loop_stop()


def dynsec(directory: Path) -> dict[str, dict[str, list[str]]]:
    """login -> ACL type -> topics, from the plugin file a run wrote."""
    tree = json.loads((directory / DYNSEC_FILE).read_text())
    assert tree["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {role["rolename"]: role["acls"] for role in tree["roles"]}
    found: dict[str, dict[str, list[str]]] = {}
    for client in tree["clients"]:
        acls = found.setdefault(client["username"], {})
        for role in client["roles"]:
            for acl in roles[role["rolename"]]:
                assert acl["allow"] is True
                acls.setdefault(acl["acltype"], []).append(acl["topic"])
    return found


def level(ts_ms: int, value: float) -> bytes:
    return orjson.dumps({"ts": ts_ms, "readings": {"level": value}})


@pytest.fixture
def provisioned(tmp_path: Path, registry: Registry) -> Provisioned:
    logins = plan_logins(registry, ROUTES, ingest_login=INGEST_LOGIN)
    return provision(
        tmp_path / "auth",
        logins,
        given={INGEST_LOGIN: INGEST_PASSWORD},
        credentials=tmp_path / "auth" / CREDENTIALS_FILE,
    )


@pytest.fixture
def broker(tmp_path: Path, provisioned: Provisioned) -> Iterator[Mosquitto]:
    broker = secured_broker(tmp_path / "mosquitto", provisioned.directory)
    broker.start()
    yield broker
    broker.stop()


def test_devices_publish_only_on_their_own_topics_and_ingest_stores_it(
    broker: Mosquitto,
    provisioned: Provisioned,
    influxd: Influxd,
    registry: Registry,
    database: str,
    tmp_path: Path,
) -> None:
    passwords = credentials(provisioned.credentials or Path())
    env = {
        "PILOTS_MQTT_URL": f"mqtt://{INGEST_LOGIN}:{INGEST_PASSWORD}@127.0.0.1:{broker.port}",
        "PILOTS_MQTT_SHARED_GROUP": "ingest",
        "PILOTS_MQTT_CLIENT_ID": f"provision-{database}",
        "PILOTS_INFLUX_URL": influxd.url,
        "PILOTS_INFLUX_DATABASE": database,
        "PILOTS_DATA_DIR": str(tmp_path / "var"),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
    }
    ingest = PilotsProcess(["ingest"], env, tmp_path, "ingest")
    ingest.wait_for_output("ingest ready", 30)
    start_ms = time.time_ns() // MS - 3_600_000
    own = "pilots/santa-fe/sf-rlv-01/up"
    other = "pilots/santa-fe/sf-rlv-02/up"
    # sf-rlv-01 sends its reading, forges one for sf-rlv-02, and sends a last one of its own:
    # ingest stores in the order the broker delivers, so once the last is stored the forged
    # one would be stored too had the broker let it through. The forgery has a time of its own,
    # so no genuine reading could overwrite it.
    publish_as(
        broker.port,
        "sf-rlv-01",
        passwords["sf-rlv-01"],
        [
            (own, level(start_ms, 3.1)),
            (other, level(start_ms + 5, 9.9)),
            (own, level(start_ms + 1, 3.2)),
        ],
    )
    # sf-rlv-02 with its own password, on its own topic, goes through.
    publish_as(broker.port, "sf-rlv-02", passwords["sf-rlv-02"], [(other, level(start_ms, 4.0))])

    store = InfluxStore(influxd.url, database, registry)

    def stored(device: str) -> list[float]:
        got = store.scan("santa-fe", ["level"], start_ms * MS, (start_ms + 10) * MS, [device])
        values: list[float] = got.value.tolist()
        return values

    wait_for(lambda: len(stored("sf-rlv-01")) == 2, 60, "both readings of sf-rlv-01")
    wait_for(lambda: stored("sf-rlv-02"), 60, "the reading of sf-rlv-02")
    assert stored("sf-rlv-01") == [3.1, 3.2]
    assert stored("sf-rlv-02") == [4.0], "a device published into another device's topic"
    assert ingest.stop(signal.SIGTERM) == 0, ingest.output()


def test_wrong_passwords_other_logins_and_anonymous_clients_are_refused(
    broker: Mosquitto, provisioned: Provisioned
) -> None:
    passwords = credentials(provisioned.credentials or Path())
    assert not connack(broker.port, "sf-rlv-01", passwords["sf-rlv-01"]).is_failure
    assert connack(broker.port, "sf-rlv-01", passwords["sf-rlv-02"]).is_failure
    assert connack(broker.port, "sf-rlv-01", "wrong").is_failure
    assert connack(broker.port, "not-a-device", "whatever").is_failure
    assert connack(broker.port, None, None).is_failure


def test_a_device_cannot_read_what_others_send(broker: Mosquitto, provisioned: Provisioned) -> None:
    passwords = credentials(provisioned.credentials or Path())
    suback: dict[str, list[ReasonCode]] = {}
    received: list[str] = []
    clients = []
    for name, login, password, topic in (
        ("spy", "sf-rlv-02", passwords["sf-rlv-02"], "pilots/#"),
        ("ingest", INGEST_LOGIN, INGEST_PASSWORD, "$share/probe/pilots/+/+/up"),
    ):
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}"
        )
        client.username_pw_set(login, password)

        # a def, not `lambda ..., n=name:`, whose type mypy cannot infer (python/mypy#15459)
        def on_subscribe(
            c: mqtt.Client,
            u: object,
            mid: int,
            codes: list[ReasonCode],
            props: Properties,
            n: str = name,
        ) -> None:
            suback.setdefault(n, codes)

        client.on_subscribe = on_subscribe
        client.on_message = lambda c, u, msg, n=name: received.append(f"{n}:{msg.topic}")
        client.on_connect = lambda c, u, f, code, props, t=topic: c.subscribe(t, qos=1)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        clients.append(client)
    own = "pilots/santa-fe/sf-rlv-01/up"
    try:
        wait_for(lambda: len(suback) == 2, 10, "both SUBACKs")
        for n in (1, 2):
            publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], [(own, b"{}")])

            def got(n: int = n) -> bool:  # not `lambda n=n:` (python/mypy#15459)
                return len(received) >= n

            wait_for(got, 10, f"ingest to receive message {n}")
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
    # the plugin refuses the spy's subscription outright (SUBACK 0x80)
    assert suback["spy"][0].is_failure
    assert not suback["ingest"][0].is_failure
    assert received == [f"ingest:{own}", f"ingest:{own}"]


def test_a_network_server_login_is_given_its_applications_and_the_old_form_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    auth = tmp_path / "auth"
    command = ["devices", "provision", "--dir", str(auth)]
    # before, `--network-server chirpstack` could publish for every application
    old = CliRunner().invoke(app, [*command, "--network-server", "chirpstack"])
    assert old.exit_code == 2
    assert "chirpstack=<ChirpStack application id>" in old.output
    assert not auth.exists(), "a refused run wrote files"
    result = CliRunner().invoke(
        app,
        [
            *command,
            *("--network-server", "chirpstack=6f1c2b1e-0d9a-4c55-8a5e-2b1f3c4d5e6f"),
            *("--network-server", "chirpstack=chirpstack:santa-fe"),
            *("--network-server", "tts-bridge=tts:river-levels@pilots"),
        ],
    )
    assert result.exit_code == 0, result.output
    rules = dynsec(auth)
    assert rules["chirpstack"] == {
        "publishClientSend": [
            "application/6f1c2b1e-0d9a-4c55-8a5e-2b1f3c4d5e6f/device/+/event/up",
            "application/santa-fe/device/+/event/up",
        ]
    }
    assert rules["tts-bridge"] == {"publishClientSend": ["v3/river-levels@pilots/devices/+/up"]}
    handed = (auth / CREDENTIALS_FILE).read_text()
    assert "tts-bridge " in handed and "v3/river-levels@pilots/devices/+/up" in handed


def test_a_device_cannot_take_over_ingest_s_session(
    broker: Mosquitto, provisioned: Provisioned
) -> None:
    passwords = credentials(provisioned.credentials or Path())
    received: list[bytes | bytearray] = []
    dropped: list[object] = []
    subscribed: list[object] = []
    ingest = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="pilots-ingest", clean_session=False
    )
    ingest.username_pw_set(INGEST_LOGIN, INGEST_PASSWORD)
    ingest.on_connect = lambda c, u, f, code, props: c.subscribe("pilots/+/+/up", qos=1)
    ingest.on_subscribe = lambda c, u, mid, codes, props: subscribed.append(codes)
    ingest.on_message = lambda c, u, msg: received.append(msg.payload)
    ingest.on_disconnect = lambda c, u, flags, code, props: dropped.append(code)
    ingest.connect("127.0.0.1", broker.port)
    ingest.loop_start()
    try:
        wait_for(lambda: subscribed, 10, "ingest's SUBACK")
        # a device logs in with its own password but ingest's client id
        intruder = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="pilots-ingest", clean_session=False
        )
        intruder.username_pw_set("sf-rlv-02", passwords["sf-rlv-02"])
        answers: list[ReasonCode] = []
        intruder.on_connect = lambda c, u, f, code, props: answers.append(code)
        intruder.connect("127.0.0.1", broker.port)
        intruder.loop_start()
        wait_for(lambda: answers, 10, "the intruder's CONNACK")
        publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], [(TOPIC_01, b"after")])
        wait_for(lambda: received, 10, "ingest to go on receiving")
        assert dropped == [], "a device using ingest's client id disconnected ingest"
        intruder.disconnect()
        intruder.loop_stop()
    finally:
        ingest.disconnect()
        ingest.loop_stop()
    assert received == [b"after"]


def test_a_rerun_keeps_passwords_and_a_rotation_replaces_one(
    broker: Mosquitto, provisioned: Provisioned, registry: Registry
) -> None:
    before = credentials(provisioned.credentials or Path())
    logins = plan_logins(registry, ROUTES, ingest_login=INGEST_LOGIN)
    again = provision(
        provisioned.directory,
        logins,
        given={INGEST_LOGIN: INGEST_PASSWORD},
        rotate=["sf-rlv-02"],
        credentials=provisioned.credentials,
    )
    assert set(again.new_passwords) == {"sf-rlv-02"}
    # the plugin reads its file only at start (a SIGHUP does not apply a run): restart
    broker.restart()
    rotated = again.new_passwords["sf-rlv-02"]
    assert not connack(broker.port, "sf-rlv-02", rotated).is_failure
    assert connack(broker.port, "sf-rlv-02", before["sf-rlv-02"]).is_failure
    assert not connack(broker.port, "sf-rlv-01", before["sf-rlv-01"]).is_failure
    assert not connack(broker.port, INGEST_LOGIN, INGEST_PASSWORD).is_failure
    assert credentials(provisioned.credentials or Path())["sf-rlv-02"] == rotated


def test_a_lost_health_check_password_is_replaced(
    provisioned: Provisioned, registry: Registry
) -> None:
    health = provisioned.directory / HEALTHCHECK_PASSWORD_FILE
    health.unlink()
    logins = plan_logins(registry, ROUTES, ingest_login=INGEST_LOGIN)
    again = provision(provisioned.directory, logins, given={INGEST_LOGIN: INGEST_PASSWORD})
    password = health.read_text(encoding="utf-8").strip()
    assert set(again.new_passwords) == {HEALTHCHECK_LOGIN}
    assert again.new_passwords[HEALTHCHECK_LOGIN] == password
    broker = secured_broker(provisioned.directory.parent / "mosquitto", provisioned.directory)
    broker.start()
    try:
        assert not connack(broker.port, HEALTHCHECK_LOGIN, password).is_failure
    finally:
        broker.stop()


def test_the_command_writes_the_files_and_never_prints_a_password(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("PILOTS_MQTT_URL", f"mqtt://{INGEST_LOGIN}:{INGEST_PASSWORD}@broker:1883")
    auth = tmp_path / "auth"
    result = CliRunner().invoke(app, ["devices", "provision", "--dir", str(auth), "--simulator"])
    assert result.exit_code == 0, result.output
    handed = credentials(auth / CREDENTIALS_FILE)
    assert set(handed) == {d.id for d in registry.device_list} | {"simulator"}
    assert not any(password in result.output for password in handed.values())
    assert stat.S_IMODE((auth / CREDENTIALS_FILE).stat().st_mode) == 0o600
    rules = dynsec(auth)
    alert_logins = {DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN}  # PILOTS_MQTT_URL's password
    assert set(rules) == set(handed) | {"pilots-ingest", HEALTHCHECK_LOGIN, *alert_logins}
    assert rules["sf-rlv-01"] == {
        "publishClientSend": ["pilots/santa-fe/sf-rlv-01/up", "pilots/santa-fe/sf-rlv-01/senml"]
    }
    assert "$share/+/pilots/+/+/up" in rules["pilots-ingest"]["subscribePattern"]
    assert "pilots/+/+/up" in rules["pilots-ingest"]["publishClientReceive"]
    assert stat.S_IMODE((auth / DYNSEC_FILE).stat().st_mode) == 0o644
    # A second run hands out nothing new.
    again = CliRunner().invoke(app, ["devices", "provision", "--dir", str(auth)])
    assert again.exit_code == 0, again.output
    assert "no new passwords" in again.output
    assert "simulator" not in dynsec(auth)


def test_workers_logging_in_as_their_client_ids_get_a_login_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PILOTS_MQTT_URL", f"mqtt://{{client_id}}:{INGEST_PASSWORD}@broker:1883")
    auth = tmp_path / "auth"
    result = CliRunner().invoke(
        app, ["devices", "provision", "--dir", str(auth), "--ingest-workers", "2"]
    )
    assert result.exit_code == 0, result.output
    logins = set(dynsec(auth))
    assert {"pilots-ingest-1", "pilots-ingest-2"} <= logins
    assert "pilots-ingest-3" not in logins and "{client_id}" not in logins
    # the alert service logs in the same way, as its session id and its channel's client id
    assert {DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN} <= logins
    broker = secured_broker(tmp_path / "mosquitto", auth)
    broker.start()
    try:
        for worker in ("pilots-ingest-1", "pilots-ingest-2"):
            assert not connack(broker.port, worker, INGEST_PASSWORD).is_failure, worker
        for login in (DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN):
            assert not connack(broker.port, login, INGEST_PASSWORD).is_failure, login
    finally:
        broker.stop()


def test_passwords_of_an_earlier_password_file_are_kept_and_its_files_removed(
    tmp_path: Path, registry: Registry
) -> None:
    auth = tmp_path / "auth"
    auth.mkdir()
    # what an earlier version wrote: Mosquitto's password file and ACL
    (auth / LEGACY_PASSWORD_FILE).write_text(
        f"sf-rlv-01:{hash_password('from-before')}\n{INGEST_LOGIN}:{hash_password('old')}\n"
    )
    (auth / LEGACY_ACL_FILE).write_text("user sf-rlv-01\ntopic write pilots/#\n")
    logins = plan_logins(registry, ROUTES, ingest_login=INGEST_LOGIN)
    done = provision(auth, logins, given={INGEST_LOGIN: INGEST_PASSWORD})
    assert "sf-rlv-01" in done.kept and "sf-rlv-01" not in done.new_passwords
    assert not (auth / LEGACY_PASSWORD_FILE).exists()
    assert not (auth / LEGACY_ACL_FILE).exists()
    broker = secured_broker(tmp_path / "mosquitto", auth)
    broker.start()
    try:
        assert not connack(broker.port, "sf-rlv-01", "from-before").is_failure
        assert not connack(broker.port, INGEST_LOGIN, INGEST_PASSWORD).is_failure
        assert connack(broker.port, INGEST_LOGIN, "old").is_failure
    finally:
        broker.stop()


def test_the_provisioned_logins_let_a_worker_adopt_an_absent_one_and_nothing_more(
    tmp_path: Path, registry: Registry, influxd: Influxd, database: str
) -> None:
    workers = ["pilots-ingest-1", "pilots-ingest-2"]
    logins = plan_logins(registry, ROUTES, ingest_login=workers)
    # as `pilots devices provision --ingest-workers 2`: one password for the workers
    done = provision(
        tmp_path / "auth",
        logins,
        given=dict.fromkeys(workers, INGEST_PASSWORD),
        credentials=tmp_path / "auth" / CREDENTIALS_FILE,
    )
    rules = dynsec(done.directory)
    # each worker writes its own presence only; devices have nothing to do with the group
    assert rules["pilots-ingest-1"]["publishClientSend"] == ["ingest/+/members/pilots-ingest-1"]
    assert "ingest/+/members/+" in rules["pilots-ingest-1"]["subscribePattern"]
    assert not any("ingest/" in t for t in rules["sf-rlv-01"].get("publishClientSend", []))
    broker = secured_broker(tmp_path / "mosquitto", done.directory)
    broker.start()
    processes = []
    try:
        envs = [
            {
                # each worker logs in as its client id, as deploy/pilots.compose.env has it
                "PILOTS_MQTT_URL": f"mqtt://{{client_id}}:{INGEST_PASSWORD}@127.0.0.1:{broker.port}",
                "PILOTS_MQTT_SHARED_GROUP": f"g{database[-8:]}",
                "PILOTS_MQTT_CLIENT_ID": worker,
                "PILOTS_INGEST_ADOPT_AFTER_S": "2",
                "PILOTS_INFLUX_URL": influxd.url,
                "PILOTS_INFLUX_DATABASE": database,
                "PILOTS_DATA_DIR": str(tmp_path / worker),
                "PILOTS_INGEST_HTTP_PORT": str(free_port()),
            }
            for worker in workers
        ]
        processes = [
            PilotsProcess(["ingest"], env, tmp_path, env["PILOTS_MQTT_CLIENT_ID"]) for env in envs
        ]
        for process in processes:
            process.wait_for_output("ingest ready", 30)
        processes[0].proc.kill()
        processes[0].proc.wait()
        passwords = credentials(done.credentials or Path())
        start_ms = time.time_ns() // MS - 3_600_000
        sent = [(TOPIC_01, level(start_ms + i, 3.0 + i / 100)) for i in range(40)]
        publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], sent)
        store = InfluxStore(influxd.url, database, registry)

        def stored() -> int:
            got = store.scan(
                "santa-fe", ["level"], start_ms * MS, (start_ms + 40) * MS, ["sf-rlv-01"]
            )
            return len(got.value)

        wait_for(lambda: stored() == 40, 60, "the 40 readings, half of them adopted")
        processes[1].wait_for_output("adopted the session of pilots-ingest-1", 10)
        assert "refused" not in processes[1].output()
        assert processes[1].stop(signal.SIGTERM) == 0, processes[1].output()
    finally:
        for process in processes:
            process.stop(signal.SIGKILL)
        broker.stop()


# -- the alert service's logins ------------------------------------------------------------------

#: Ingest's shared group, as a device that knows it would name it.
GROUP = "ingest-" + uuid.uuid4().hex[:8]
#: A test-only login that may read every topic: it sees what the broker let through.
OBSERVER = "observer"
DEVICE_ROUTES = [f for f in ROUTES if f.startswith("pilots/")]


class Client:
    """A client logged in as `login` (client id = login, as the broker sets it): its SUBACKs,
    what it receives, and QoS 1 publishing that waits for the PUBACK."""

    def __init__(self, port: int, login: str, password: str, *, clean: bool = True) -> None:
        self.subacks: list[list[ReasonCode]] = []
        self.received: list[tuple[str, bytes, bool]] = []
        self.connected: list[ReasonCode] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=login, clean_session=clean)
        self.client.username_pw_set(login, password)
        self.client.on_connect = lambda c, u, f, code, props: self.connected.append(code)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.append(codes)
        self.client.on_message = lambda c, u, msg: self.received.append(
            (msg.topic, bytes(msg.payload), bool(msg.retain))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(lambda: self.connected, 10, f"{login}'s CONNACK")
        assert not self.connected[0].is_failure, f"{login}: {self.connected[0]}"

    def subscribe(self, *filters: str) -> list[bool]:
        """Whether each filter was refused (one SUBACK per filter, in order)."""
        refused = []
        for topic_filter in filters:
            before = len(self.subacks)
            self.client.subscribe(topic_filter, qos=1)

            def answered(before: int = before) -> bool:  # not a lambda (python/mypy#15459)
                return len(self.subacks) > before

            wait_for(answered, 10, f"SUBACK for {topic_filter}")
            refused.append(self.subacks[-1][0].is_failure)
        return refused

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def topics(self) -> list[str]:
        return [topic for topic, _, _ in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def alert_broker(tmp_path: Path, registry: Registry) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    """A broker provisioned as `pilots devices provision` does with a `{client_id}` URL, plus an
    observer login; the passwords of every login."""
    workers = ["pilots-ingest-1", "pilots-ingest-2"]
    logins = plan_logins(
        registry,
        ROUTES,
        ingest_login=workers,
        alerts_login=DEFAULT_ALERTS_LOGIN,
        alerts_mqtt_login=DEFAULT_ALERTS_MQTT_LOGIN,
    )
    logins.append(Login(OBSERVER, "healthcheck", read=("#",), subscribe=("#",), note="test"))
    service_logins = [*workers, DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN]
    done = provision(
        tmp_path / "auth",
        logins,
        given=dict.fromkeys(service_logins, INGEST_PASSWORD),
        credentials=tmp_path / "auth" / CREDENTIALS_FILE,
    )
    passwords = credentials(done.credentials or Path()) | dict.fromkeys(
        service_logins, INGEST_PASSWORD
    )
    broker = secured_broker(tmp_path / "mosquitto", done.directory)
    broker.start()
    yield broker, passwords
    broker.stop()


def test_the_alert_evaluator_gets_a_copy_of_every_device_message_and_nothing_more(
    alert_broker: tuple[Mosquitto, dict[str, str]],
) -> None:
    broker, passwords = alert_broker
    ingest = Client(broker.port, "pilots-ingest-1", INGEST_PASSWORD)
    evaluator = Client(broker.port, DEFAULT_ALERTS_LOGIN, INGEST_PASSWORD, clean=False)
    observer = Client(broker.port, OBSERVER, passwords[OBSERVER])
    clients = [ingest, evaluator, observer]
    try:
        assert ingest.subscribe(*(f"$share/{GROUP}/{f}" for f in ROUTES)) == [False] * len(ROUTES)
        assert observer.subscribe("#") == [False]
        # every route directly, as the service subscribes (Router(routes).topic_filters) ...
        assert evaluator.subscribe(*ROUTES) == [False] * len(ROUTES)
        # ... and never ingest's shared group (it would take a share of ingest's messages),
        # nor anything wider than the routes: SUBACK 0x80, no subscription made
        assert (
            evaluator.subscribe(
                f"$share/{GROUP}/pilots/+/+/up", f"$share/{GROUP}/#", "pilots/#", "#", "ingest/#"
            )
            == [True] * 5
        )
        sent = [(TOPIC_01, f"reading {n}".encode()) for n in range(20)]
        publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], sent)
        wait_for(lambda: len(ingest.received) >= 20, 30, "ingest to receive all 20")
        wait_for(lambda: len(evaluator.received) >= 20, 30, "the evaluator to receive all 20")
        # the evaluator may publish nothing: as a device it would forge readings. MQTT 3.1.1
        # gets its PUBACK and the message is dropped; the device's next one is the sentinel.
        for topic in (TOPIC_01, "pilots/santa-fe/alerts", "ingest/x/members/pilots-ingest-1"):
            evaluator.publish(topic, b"forged")
        publish_as(broker.port, "sf-rlv-01", passwords["sf-rlv-01"], [(TOPIC_01, b"last")])
        wait_for(lambda: (TOPIC_01, b"last", False) in observer.received, 10, "the sentinel")
    finally:
        for client in clients:
            client.close()
    # ingest lost nothing to the evaluator, which got its own copy of each
    assert sorted((t, p) for t, p, _ in ingest.received) == sorted([*sent, (TOPIC_01, b"last")])
    assert [(t, p) for t, p, _ in evaluator.received[:20]] == sent
    assert not any(p == b"forged" for _, p, _ in observer.received), observer.received


def test_the_alert_channel_publishes_the_alerts_and_nothing_else(
    alert_broker: tuple[Mosquitto, dict[str, str]], registry: Registry
) -> None:
    broker, passwords = alert_broker
    observer = Client(broker.port, OBSERVER, passwords[OBSERVER])
    channel = Client(broker.port, DEFAULT_ALERTS_MQTT_LOGIN, INGEST_PASSWORD)
    try:
        assert observer.subscribe("#") == [False]
        # it subscribes to nothing, its own topics included
        assert channel.subscribe("pilots/+/alerts", "pilots/#", *ROUTES) == [True] * (
            2 + len(ROUTES)
        )
        for topic in (
            TOPIC_01,  # a device's
            "pilots/santa-fe/alerts/other/x",
            "pilots/santa-fe/sf-rlv-01/alerts",
            "ingest/x/members/pilots-alerts",
            "$SYS/broker/version",
        ):
            channel.publish(topic, b"forged")
        channel.publish("pilots/santa-fe/alerts", b"event")
        channel.publish("pilots/santa-fe/alerts/active/a1", b"state", retain=True)
        wait_for(lambda: len(observer.received) >= 2, 10, "both alerts")
    finally:
        channel.close()
        observer.close()
    assert observer.topics() == ["pilots/santa-fe/alerts", "pilots/santa-fe/alerts/active/a1"]
    # the retained state is there for a subscriber that comes later
    newcomer = Client(broker.port, OBSERVER, passwords[OBSERVER])
    try:
        newcomer.subscribe("pilots/+/alerts/active/#")
        wait_for(lambda: newcomer.received, 10, "the retained alarm state")
    finally:
        newcomer.close()
    assert newcomer.received == [("pilots/santa-fe/alerts/active/a1", b"state", True)]
    assert ALERT_TOPICS == ("pilots/+/alerts", "pilots/+/alerts/active/+")


def test_the_alert_service_and_its_mqtt_channel_work_with_the_provisioned_logins(
    alert_broker: tuple[Mosquitto, dict[str, str]], registry: Registry, tmp_path: Path
) -> None:
    broker, passwords = alert_broker
    # as deployed: one URL for every service, its user {client_id}
    settings = Settings(
        _env_file=None,
        mqtt_url=f"mqtt://{{client_id}}:{INGEST_PASSWORD}@127.0.0.1:{broker.port}",
        data_dir=tmp_path / "var",
        alert_eval_every_s=0.01,
    )
    observer = Client(broker.port, OBSERVER, passwords[OBSERVER])
    service = AlertService(settings).start()
    channel = MqttChannel(alert_mqtt_target(settings), settings.alert_mqtt_client_id, timeout_s=5)
    try:
        assert observer.subscribe("pilots/+/alerts/#") == [False]
        # `subscribed` is set only when the broker granted every route (what it then does
        # with the readings is tests/integration/test_alert_service.py's)
        assert service.subscribed.wait(15), "the evaluator's subscriptions were refused"
        note = compose(
            registry,
            alarm_id="provision-test",
            kind="fired",
            device="sf-rlv-01",
            sensor="level",
            rule_id="santa-fe.level.alert",
            severity="warning",
            level="alert",
            threshold=5.3,
            value=5.34,
            start_ns=time.time_ns(),
        )
        channel.send(note)  # returns once the broker acknowledged both
        wait_for(lambda: len(observer.received) >= 2, 10, "the event and the alarm's state")
    finally:
        channel.close()
        service.stop()
        observer.close()
    assert sorted(observer.topics()) == sorted(MqttChannel.topics(note))
    assert service.target.username == DEFAULT_ALERTS_LOGIN

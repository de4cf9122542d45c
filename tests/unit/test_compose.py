"""Static checks of the compose stack: docker-compose.yml and the deploy/ files it uses.

No Docker here: these read the files and hold them to the code they deploy (the settings
fields, the `pilots` subcommands, the packages in pyproject.toml), so a renamed setting or
command, a moved file or a forgotten package breaks this test instead of a deployment.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import typer.core
import yaml
from pydantic import ValidationError

from alerts.service import AlertService
from core.settings import (
    DEFAULT_MQTT_PORT,
    DEFAULT_MQTTS_PORT,
    PLACEHOLDER_SECRETS,
    MqttTarget,
    Settings,
)
from pilots.cli import app
from pilots.devices import DEFAULT_DIR as PROVISIONED_DIR
from pilots.provision import (
    DEFAULT_ALERTS_LOGIN,
    DEFAULT_ALERTS_MQTT_LOGIN,
    DYNSEC_FILE,
    HEALTHCHECK_LOGIN,
    HEALTHCHECK_PASSWORD_FILE,
    HEALTHCHECK_TOPIC,
    SIMULATOR_LOGIN,
)
from tests.services import MAX_PACKET_SIZE, PACKET_HEADROOM_BYTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "pilots.compose.env.example"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
TLS_SCRIPT = ROOT / "deploy" / "tls" / "make-dev-ca.sh"

INGEST = ("ingest-1", "ingest-2", "ingest-3")
PROJECT = {*INGEST, "api", "alerts", "simulator"}
SERVICES = {"mosquitto", "influxdb", *PROJECT}
SETTINGS_VARS = {f"PILOTS_{name.upper()}" for name in Settings.model_fields}
INFLUX_PORT = 8086


# -- reading the files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _config_lines(text: str) -> Iterator[str]:
    """Non-blank lines that are not `#` comments, stripped."""
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line


def _env_file_values(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in _config_lines(path.read_text()):
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def _env_files(service: dict[str, Any]) -> list[tuple[str, bool]]:
    """(path, required) of each env_file entry, in order."""
    entries = service.get("env_file") or []
    if isinstance(entries, str):
        entries = [entries]
    return [
        (entry, True) if isinstance(entry, str) else (entry["path"], entry.get("required", True))
        for entry in entries
    ]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in _config_lines(text):
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _dockerfile_instructions():
        if word == "ENV":
            env.update(item.partition("=")[::2] for item in shlex.split(rest))
    return env


def _is_project_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _mounts(service: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(type, source, target) of each volume entry; type is "bind" or "volume"."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            yield volume["type"], volume["source"], volume["target"]
            continue
        source, target = volume.split(":")[:2]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source, target


def _mosquitto_options() -> dict[str, str]:
    """Each option's last value (the global options appear once)."""
    return {key: values[-1] for key, values in _mosquitto_all_options().items()}


def _mosquitto_all_options() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for line in _config_lines(MOSQUITTO_CONF.read_text()):
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value.strip())
    return options


def _mosquitto_listeners() -> dict[int, dict[str, str]]:
    """port -> the options that follow its `listener` line (up to the next listener)."""
    listeners: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in _config_lines(MOSQUITTO_CONF.read_text()):
        key, _, value = line.partition(" ")
        if key == "listener":
            current = listeners[int(value.split()[0])] = {}
        elif current is not None:
            current[key] = value.strip()
    return listeners


def _container_path_source(service: dict[str, Any], path: str) -> Path:
    """The repository file a bind mount puts at `path` inside the container."""
    for kind, source, target in _mounts(service):
        if kind == "bind" and (path == target or path.startswith(target.rstrip("/") + "/")):
            return ROOT / source / path[len(target) :].lstrip("/")
    raise AssertionError(f"{path} is on no bind mount")


def _service_settings_env(service: dict[str, Any]) -> dict[str, str]:
    """The PILOTS_* environment a container of this service starts with (no operator file)."""
    env = _dockerfile_env() if _is_project_image(service) else {}
    for path, required in _env_files(service):
        if required:
            env.update(_env_file_values(ROOT / path))
    env.update(_environment(service))
    return {key: value for key, value in env.items() if key.startswith("PILOTS_")}


def _load_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


# -- the stack -----------------------------------------------------------------------------------


def test_every_service_exists_and_only_the_simulator_is_optional(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) >= SERVICES
    assert services["simulator"].get("profiles") == ["simulator"]
    for name in SERVICES - {"simulator"}:
        assert not services[name].get("profiles"), f"{name} would not start with `compose up`"
        assert services[name].get("restart") == "unless-stopped", name


def test_every_built_mounted_or_required_file_exists(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert (context / str(dockerfile)).is_file(), f"{name}: {dockerfile} missing"
        for kind, source, target in _mounts(service):
            if kind == "bind":
                assert (ROOT / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in declared_volumes, f"{name}: volume {source} not declared"
            assert target.startswith("/"), f"{name}: mount target {target!r}"
        for path, required in _env_files(service):
            if required:
                assert (ROOT / path).is_file(), f"{name}: env_file {path} missing"


def test_every_pilots_variable_is_a_settings_field(
    services: dict[str, dict[str, Any]],
) -> None:
    sources = {"deploy/pilots.compose.env.example": _env_file_values(ENV_EXAMPLE)}
    sources["deploy/Dockerfile"] = _dockerfile_env()
    sources.update({f"service {n}": _environment(s) for n, s in services.items()})
    unknown = {
        f"{where}: {key}"
        for where, env in sources.items()
        for key in env
        if key.startswith("PILOTS_") and key not in SETTINGS_VARS
    }
    assert not unknown
    assert any(k.startswith("PILOTS_") for k in sources["deploy/pilots.compose.env.example"])


def test_each_project_service_starts_with_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in sorted(PROJECT):
        env = _service_settings_env(services[name])
        try:
            _load_settings(monkeypatch, env)
        except ValidationError as exc:
            pytest.fail(f"{name}: settings refuse the compose environment: {exc}")


def test_the_placeholder_secrets_are_refused_in_production(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = _env_file_values(ENV_EXAMPLE)
    assert example["PILOTS_INFLUX_PASSWORD"].lower() in PLACEHOLDER_SECRETS
    env = _service_settings_env(services["ingest-1"]) | {"PILOTS_ENV": "production"}
    with pytest.raises(ValidationError, match="PILOTS_INFLUX_PASSWORD"):
        _load_settings(monkeypatch, env)
    real_influx = {"PILOTS_INFLUX_PASSWORD": "a-real-one", "PILOTS_ENV": "production"}
    for name in (*INGEST, "alerts", "simulator"):
        env = _service_settings_env(services[name]) | real_influx
        with pytest.raises(ValidationError, match="PILOTS_MQTT_URL"):
            _load_settings(monkeypatch, env)


def test_the_pilots_account_is_the_one_influxdb_creates() -> None:
    example = _env_file_values(ENV_EXAMPLE)
    assert example["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert example["PILOTS_INFLUX_DATABASE"] == example["INFLUXDB_DB"]
    assert example["PILOTS_INFLUX_USERNAME"] == example["INFLUXDB_USER"]
    assert example["PILOTS_INFLUX_PASSWORD"] == example["INFLUXDB_USER_PASSWORD"]
    assert example["INFLUXDB_ADMIN_USER"] != example["INFLUXDB_USER"]


def test_project_services_run_real_pilots_subcommands(
    services: dict[str, dict[str, Any]],
) -> None:
    cli = typer.main.get_command(app)
    assert isinstance(cli, typer.core.TyperGroup)
    commands = set(cli.commands)
    project = {name: s for name, s in services.items() if _is_project_image(s)}
    assert set(project) == PROJECT
    for name, service in project.items():
        command = service["command"]
        words = shlex.split(command) if isinstance(command, str) else command
        assert words[0] in commands, f"{name}: `pilots {words[0]}` does not exist"
        group = cli.commands[words[0]]
        if isinstance(group, typer.core.TyperGroup):  # `alerts run`: a command of a group
            assert words[1:2] and words[1] in group.commands, f"{name}: `pilots {command}`"
    assert services["alerts"]["command"] == ["alerts", "run"]

    instructions = dict(_dockerfile_instructions())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert instructions["ENTRYPOINT"] == '["pilots"]'
    assert "pilots" in scripts


def test_the_image_contains_every_package(services: dict[str, dict[str, Any]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {pattern.split(".")[0] for pattern in include}
    copied: set[str] = set()
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(src.rstrip("/") for src in rest.split()[:-1])
    assert top_level <= copied, f"not copied into the image: {top_level - copied}"
    assert "." not in copied, "copying the whole context sends .venv and .git into the image"
    for source in copied - {"README.m[d]"}:
        assert (ROOT / source).exists(), f"COPY {source}: missing"


def test_published_ports_match_the_settings(services: dict[str, dict[str, Any]]) -> None:
    api_port = Settings.model_fields["api_port"].default
    assert api_port in _container_ports(services["api"])
    assert {DEFAULT_MQTT_PORT, DEFAULT_MQTTS_PORT} <= _container_ports(services["mosquitto"])
    assert INFLUX_PORT in _container_ports(services["influxdb"])
    healthcheck = " ".join(services["api"]["healthcheck"]["test"])
    assert f"127.0.0.1:{api_port}/health" in healthcheck


def test_service_urls_name_services_and_their_ports(services: dict[str, dict[str, Any]]) -> None:
    for name in (*INGEST, "alerts", "simulator"):
        target = MqttTarget.parse(_service_settings_env(services[name])["PILOTS_MQTT_URL"])
        assert target.host == "mosquitto", name
        assert target.port in _container_ports(services["mosquitto"]), name
        assert target.port in _mosquitto_listeners(), name
        assert target.username and target.password, f"{name}: the broker refuses anonymous"
    for name in (*INGEST, "api"):
        url = urlsplit(_environment(services[name])["PILOTS_INFLUX_URL"])
        assert url.hostname == "influxdb", name
        assert url.port in _container_ports(services["influxdb"]), name
    assert _environment(services["api"])["PILOTS_API_HOST"] == "0.0.0.0"


def test_depends_on_waits_for_health_where_there_is_a_check(
    services: dict[str, dict[str, Any]],
) -> None:
    expected = {
        **{name: {"mosquitto", "influxdb"} for name in INGEST},
        "api": {"influxdb"},
        "alerts": {"mosquitto"},
        "simulator": {"mosquitto", *INGEST},
    }
    for name, needs in expected.items():
        assert needs <= set(services[name].get("depends_on") or {}), name
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {dep: {"condition": "service_started"} for dep in depends_on}
        for dep, spec in depends_on.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if "healthcheck" in services[dep]:
                assert spec.get("condition") == "service_healthy", f"{name} -> {dep}"


def test_state_lives_on_named_volumes(services: dict[str, dict[str, Any]]) -> None:
    def volume_targets(name: str) -> set[str]:
        return {t.rstrip("/") for kind, _, t in _mounts(services[name]) if kind == "volume"}

    for name in (*INGEST, "api", "alerts"):  # the api's data directory holds its token database
        data_dir = _service_settings_env(services[name])["PILOTS_DATA_DIR"]
        assert data_dir.rstrip("/") in volume_targets(name), name
    assert _mosquitto_options()["persistence_location"].rstrip("/") in volume_targets("mosquitto")
    assert "/var/lib/influxdb" in volume_targets("influxdb")


def test_mosquitto_keeps_what_ingest_has_not_acknowledged(
    services: dict[str, dict[str, Any]],
) -> None:
    options = _mosquitto_options()
    assert options["persistence"] == "true"
    assert int(options["max_inflight_messages"]) >= 100
    assert int(options["max_queued_messages"]) > int(options["max_inflight_messages"])
    assert int(options["max_queued_bytes"]) > 0
    assert set(_mosquitto_listeners()) <= _container_ports(services["mosquitto"])
    assert options["log_dest"] == "stdout"


def test_mosquitto_refuses_packets_larger_than_ingest_accepts() -> None:
    # A bigger packet disconnects its sender before the broker queues it for ingest, which
    # would refuse its payload anyway; the headroom is for the header and the topic.
    payload_limit = Settings(_env_file=None).ingest_max_payload_bytes
    max_packet_size = int(_mosquitto_options()["max_packet_size"])
    assert max_packet_size == payload_limit + PACKET_HEADROOM_BYTES
    assert max_packet_size == MAX_PACKET_SIZE, "the integration tests' broker has another limit"


def test_health_checks_ask_the_ports_the_services_listen_on(
    services: dict[str, dict[str, Any]],
) -> None:
    defaults = Settings(_env_file=None)
    checks = [("api", defaults.api_port)] + [(name, defaults.ingest_http_port) for name in INGEST]
    for name, port in checks:
        test = " ".join(str(part) for part in services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/health" in test, name


# -- scale-out, device security, TLS -------------------------------------------------------------


def test_ingest_workers_share_one_subscription_with_their_own_session_and_spool(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client_ids, volumes, groups = set(), set(), set()
    for name in INGEST:
        service = services[name]
        assert service["command"] == "ingest", name
        # The client id is fixed per worker (not the container id, which changes when the
        # container is recreated and would strand the session's queued messages).
        assert service.get("hostname") == name
        settings = _load_settings(monkeypatch, _service_settings_env(service))
        client_ids.add(settings.mqtt_client_id.replace("{hostname}", service["hostname"]))
        groups.add(settings.mqtt_shared_group)
        volumes |= {src for kind, src, _ in _mounts(service) if kind == "volume"}
    assert len(client_ids) == len(INGEST)
    assert len(volumes) == len(INGEST), "two workers would share a spool"
    assert len(groups) == 1
    assert None not in groups


def test_the_broker_refuses_anonymous_clients_and_reads_the_provisioned_files(
    services: dict[str, dict[str, Any]],
) -> None:
    options = _mosquitto_options()
    assert options["allow_anonymous"] == "false"
    mosquitto = services["mosquitto"]
    provisioned = ROOT / PROVISIONED_DIR
    # The dynamic-security plugin (in the eclipse-mosquitto image) checks subscriptions too;
    # an acl_file or password_file next to it would be a second, weaker set of rules.
    assert options["plugin"] == "/usr/lib/mosquitto_dynamic_security.so"
    assert not {"password_file", "acl_file"} & set(options)
    config_file = _container_path_source(mosquitto, options["plugin_opt_config_file"])
    assert config_file == provisioned / DYNSEC_FILE
    assert provisioned.is_dir()
    # A directory mount: provisioning replaces the files by renaming them.
    assert any(
        kind == "bind" and (ROOT / src).resolve() == provisioned.resolve()
        for kind, src, _ in _mounts(mosquitto)
    )


def test_the_broker_health_check_logs_in_as_the_provisioned_healthcheck_login(
    services: dict[str, dict[str, Any]],
) -> None:
    mosquitto = services["mosquitto"]
    test = " ".join(mosquitto["healthcheck"]["test"][1:]).replace("$$", "$")
    assert f"-u {HEALTHCHECK_LOGIN}" in test
    secret = re.search(r"cat (\S+?)\)", test)
    assert secret, test
    source = _container_path_source(mosquitto, secret.group(1))
    assert source.name == HEALTHCHECK_PASSWORD_FILE
    assert source.parent.resolve() == (ROOT / PROVISIONED_DIR).resolve()
    assert f"-t '{HEALTHCHECK_TOPIC}'" in test
    port = int(re.search(r"-p (\d+)", test).group(1))  # type: ignore[union-attr]
    assert port in _mosquitto_listeners()


def test_the_simulator_logs_in_as_the_simulator_login(
    services: dict[str, dict[str, Any]],
) -> None:
    url = _service_settings_env(services["simulator"])["PILOTS_MQTT_URL"]
    assert MqttTarget.parse(url).username == SIMULATOR_LOGIN


def test_the_tls_listener_uses_the_files_the_dev_ca_script_makes(
    services: dict[str, dict[str, Any]],
) -> None:
    listeners = _mosquitto_listeners()
    tls = listeners[DEFAULT_MQTTS_PORT]
    script = TLS_SCRIPT.read_text()
    assert os.access(TLS_SCRIPT, os.X_OK)
    for option in ("cafile", "certfile", "keyfile"):
        source = _container_path_source(services["mosquitto"], tls[option])
        # make-dev-ca.sh writes certs/<name> under deploy/tls by default.
        assert source.parent == TLS_SCRIPT.parent / "certs", option
        assert f'"$out/certs/{source.name}"' in script, (
            f"{option}: the script makes no {source.name}"
        )
    assert not {"cafile", "certfile", "keyfile"} & set(listeners[DEFAULT_MQTT_PORT])


# -- the alert service ---------------------------------------------------------------------------


def test_the_alert_service_shares_the_api_s_data_directory_and_volume(
    services: dict[str, dict[str, Any]],
) -> None:
    # alerts.sqlite: the alert service writes the alarms and its outbox, the api serves them
    def data(name: str) -> tuple[str, set[str]]:
        data_dir = _service_settings_env(services[name])["PILOTS_DATA_DIR"].rstrip("/")
        volumes = {
            src
            for kind, src, target in _mounts(services[name])
            if kind == "volume" and target.rstrip("/") == data_dir
        }
        return data_dir, volumes

    assert data("alerts") == data("api")
    assert data("api")[1] == {"api-data"}
    assert _is_project_image(services["alerts"])
    assert services["alerts"]["image"] == services["api"]["image"]
    # one alert service: its MQTT session and the outbox's dispatcher are single
    assert "deploy" not in services["alerts"] and "scale" not in services["alerts"]
    for name in INGEST:
        assert not {src for kind, src, _ in _mounts(services[name])} & data("api")[1], name


def test_the_alert_service_logs_in_as_the_logins_provision_writes(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _load_settings(monkeypatch, _service_settings_env(services["alerts"]))
    # alerts.service logs in as its session id, alerts.channels as its channel's client id
    assert settings.mqtt(settings.alert_session_id).username == DEFAULT_ALERTS_LOGIN
    assert settings.mqtt(settings.alert_mqtt_client_id).username == DEFAULT_ALERTS_MQTT_LOGIN
    ingest = _load_settings(monkeypatch, _service_settings_env(services["ingest-1"]))
    assert settings.mqtt_url == ingest.mqtt_url, "provision gives them ingest's URL password"


def test_the_alert_service_is_given_the_time_its_stop_takes(
    services: dict[str, dict[str, Any]],
) -> None:
    grace = str(services["alerts"]["stop_grace_period"])
    assert grace.endswith("s")
    stop_s = inspect.signature(AlertService.stop).parameters["timeout_s"].default
    assert int(grace[:-1]) > 2 * stop_s  # the evaluator's stop, then the dispatcher's

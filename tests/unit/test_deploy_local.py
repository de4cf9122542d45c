"""Static checks of deploy/local: the systemd units, settings, Mosquitto snippet and scripts.

No systemd here: these read the files and hold them to the code and to install.sh, so a renamed
setting or command, or a path the installer does not create, breaks this test instead of a
machine.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
import typer.core

from alerts.service import AlertService
from core.settings import MqttTarget, Settings
from pilots.cli import app
from pilots.commands.alerts import alerts_run
from pilots.provision import DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN, DYNSEC_FILE
from tests.services import PACKET_HEADROOM_BYTES

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"
INSTALL = LOCAL / "install.sh"
UNITS = ("pilots-api.service", "pilots-ingest@.service", "pilots-alerts.service")
#: What each unit runs: `pilots <command...>`.
COMMANDS = {
    "pilots-api.service": ["api"],
    "pilots-ingest@.service": ["ingest"],
    "pilots-alerts.service": ["alerts", "run"],
}
#: The sandbox every pilots unit shares: the same user, settings and hardening.
HARDENING = (
    "User",
    "Group",
    "EnvironmentFile",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "ReadWritePaths",
    "InaccessiblePaths",
)
ENV_EXAMPLE = LOCAL / "pilots.env.example"
MOSQUITTO_SNIPPET = LOCAL / "mosquitto-pilots.conf"
WRAPPER = LOCAL / "pilots.sh"
SETTINGS_VARS = {f"PILOTS_{name.upper()}" for name in Settings.model_fields}
#: Set per unit on its command line, never in the shared env file.
PER_UNIT = {"PILOTS_DATA_DIR", "PILOTS_MQTT_CLIENT_ID", "PILOTS_INGEST_HTTP_PORT"}


def unit(name: str) -> dict[str, list[str]]:
    """`Key` -> values of a unit file (systemd allows a key more than once)."""
    keys: dict[str, list[str]] = {}
    for raw in (LOCAL / name).read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def exec_start(name: str) -> tuple[dict[str, str], list[str]]:
    """The environment `/usr/bin/env` sets, and the command after it."""
    words = shlex.split(unit(name)["ExecStart"][0])
    assert words[0] == "/usr/bin/env", name
    env = {}
    rest = words[1:]
    while rest and "=" in rest[0]:
        key, _, value = rest.pop(0).partition("=")
        env[key] = value
    return env, rest


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key] = value
    return values


def snippet_options() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for raw in MOSQUITTO_SNIPPET.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, []).append(value.strip())
    return options


@pytest.fixture(scope="module")
def install() -> str:
    return INSTALL.read_text()


def test_units_run_real_pilots_subcommands_from_the_installed_venv(install: str) -> None:
    cli = typer.main.get_command(app)
    assert isinstance(cli, typer.core.TyperGroup)
    assert set(COMMANDS) == set(UNITS)
    for name, command in COMMANDS.items():
        _, words = exec_start(name)
        binary = Path(words[0])
        assert binary.name == "pilots"
        assert f"python3 -m venv {binary.parent.parent}" in install, name
        assert words[1:] == command
        found: object = cli
        for word in command:  # `alerts run`: a command of the `alerts` group
            assert isinstance(found, typer.core.TyperGroup), name
            assert word in found.commands, f"{name}: no `pilots ... {word}`"
            found = found.commands[word]


def test_units_set_only_settings_and_give_each_worker_its_own_state() -> None:
    env, _ = exec_start("pilots-ingest@.service")
    assert set(env) <= SETTINGS_VARS
    assert set(env) == PER_UNIT
    # The instance number makes the spool, the session and the metrics port differ per worker.
    for key in PER_UNIT:
        assert "%i" in env[key], key
    api_env, _ = exec_start("pilots-api.service")
    assert set(api_env) <= SETTINGS_VARS
    assert api_env["PILOTS_DATA_DIR"] != env["PILOTS_DATA_DIR"].replace("%i", "1")
    # The alert service writes alerts.sqlite where the API reads it: the API's directory.
    alerts_env, _ = exec_start("pilots-alerts.service")
    assert alerts_env == {"PILOTS_DATA_DIR": api_env["PILOTS_DATA_DIR"]}


def test_units_read_the_env_file_and_run_as_the_user_the_installer_creates(install: str) -> None:
    for name in UNITS:
        keys = unit(name)
        assert keys["EnvironmentFile"] == ["/etc/pilots/pilots.env"], name
        assert keys["User"] == ["pilots"], name
        assert "useradd --system --home-dir /var/lib/pilots" in install
        for path in keys.get("ReadWritePaths", []):
            assert f"install -d -o pilots -g pilots -m 0750 {path}" in install, path
        assert f'"$here/{name}"' in install, f"install.sh does not install {name}"
    assert "/etc/pilots/pilots.env" in install


def test_the_alert_unit_is_sandboxed_like_the_api_reloads_on_sighup_and_stops_cleanly(
    install: str,
) -> None:
    alerts, api = unit("pilots-alerts.service"), unit("pilots-api.service")
    for key in HARDENING:
        assert alerts.get(key) == api.get(key), key
        assert key in api, key
    assert alerts["Restart"] == ["always"]
    # `systemctl reload` sends SIGHUP to the pilots process itself (env execs it), which
    # `pilots alerts run` turns into a reload of the rules and the registry
    assert alerts["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "signal.SIGHUP" in inspect.getsource(alerts_run)
    # SIGTERM to the process, which then evaluates and acknowledges what it holds; systemd
    # waits for that longer than its own stop takes at most (the evaluator, then the sends)
    assert alerts["KillSignal"] == ["SIGTERM"]
    assert alerts["KillMode"][0] in {"mixed", "control-group"}
    stop_s = inspect.signature(AlertService.stop).parameters["timeout_s"].default
    assert int(alerts["TimeoutStopSec"][0]) > 2 * stop_s
    assert "mosquitto.service" in alerts["After"][0]
    # installed, enabled and (re)started
    assert "systemctl enable -q pilots-alerts" in install
    assert "systemctl restart pilots-alerts" in install


def test_the_installer_provisions_the_logins_the_alert_service_logs_in_as(
    install: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision = next(line for line in install.splitlines() if "pilots devices provision" in line)
    assert "--no-alerts" not in provision and "--alerts-login" not in provision
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    values = env_values(ENV_EXAMPLE)
    monkeypatch.setenv("PILOTS_MQTT_URL", values["PILOTS_MQTT_URL"].replace("CHANGE-ME", "pw"))
    settings = Settings(_env_file=None)
    # as alerts.service and alerts.channels resolve them: the names provision gives by default
    assert settings.mqtt(settings.alert_session_id).username == DEFAULT_ALERTS_LOGIN
    assert settings.mqtt(settings.alert_mqtt_client_id).username == DEFAULT_ALERTS_MQTT_LOGIN


def test_data_directories_are_the_ones_the_installer_creates(install: str) -> None:
    env, _ = exec_start("pilots-ingest@.service")
    assert env["PILOTS_DATA_DIR"].replace("%i", "$i") in install
    api_env, _ = exec_start("pilots-api.service")
    assert api_env["PILOTS_DATA_DIR"] in install
    # `pilots tokens` through the wrapper works on the api's token database by default.
    assert f"PILOTS_DATA_DIR:-{api_env['PILOTS_DATA_DIR']}" in WRAPPER.read_text()


def test_the_env_example_is_valid_production_settings_once_installed(
    install: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = env_values(ENV_EXAMPLE)
    assert set(values) <= SETTINGS_VARS
    assert not set(values) & PER_UNIT, "set per unit on its command line"
    placeholders = [k for k, v in values.items() if "CHANGE-ME" in v]
    for key in placeholders:
        prefix = values[key].split("CHANGE-ME")[0]
        assert re.search(rf"s\|\^?({re.escape(key)}=)?{re.escape(prefix)}CHANGE-ME", install), (
            f"install.sh does not replace the placeholder of {key}"
        )
    installed = {k: v.replace("CHANGE-ME", "a0b1c2d3e4f5") for k, v in values.items()}
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    for key, value in installed.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.env == "production"
    assert settings.mqtt_shared_group
    assert settings.mqtt().username


def test_the_broker_snippet_matches_the_installer_and_the_ingest_url(install: str) -> None:
    options = snippet_options()
    assert options["allow_anonymous"] == ["false"]
    assert not {"password_file", "acl_file"} & set(options), "a second, weaker set of rules"
    config_file = Path(options["plugin_opt_config_file"][0])
    assert config_file.name == DYNSEC_FILE
    assert f"pilots devices provision --dir {config_file.parent}" in install
    # install.sh writes the plugin's path for the machine's architecture over this line
    [plugin] = options["plugin"]
    assert Path(plugin).name == "mosquitto_dynamic_security.so"
    assert 's|^plugin .*|plugin $plugin|" "$here/mosquitto-pilots.conf"' in install
    assert "dpkg -L mosquitto | grep '/mosquitto_dynamic_security" in install
    payload_limit = Settings(_env_file=None).ingest_max_payload_bytes
    assert options["max_packet_size"] == [str(payload_limit + PACKET_HEADROOM_BYTES)]
    script = (ROOT / "deploy" / "tls" / "make-dev-ca.sh").read_text()
    for key in ("cafile", "certfile", "keyfile"):
        path = Path(options[key][0])
        assert f"{path.parent}/" in install, key
        assert f"certs/{path.name}" in install, f"install.sh does not install {path.name}"
        assert f'"$out/certs/{path.name}"' in script, f"make-dev-ca.sh makes no {path.name}"
    listeners = {int(v.split()[0]): v for v in options["listener"]}
    target = MqttTarget.parse(env_values(ENV_EXAMPLE)["PILOTS_MQTT_URL"])
    assert target.port in listeners
    assert target.host in listeners[target.port], "ingest's URL names the listener's address"
    assert 8883 in listeners
    assert "conf.d/pilots.conf" in install


def test_the_installer_copies_only_files_that_exist(install: str) -> None:
    for name in re.findall(r'"\$here/([^"]+)"', install):
        assert (LOCAL / name).exists(), name
    for path in re.findall(r'"\$repo/([^"*]+)"', install):
        assert (ROOT / path).exists(), path


def test_the_scripts_are_valid_shell() -> None:
    for script in (INSTALL, WRAPPER, ROOT / "deploy" / "tls" / "make-dev-ca.sh"):
        done = subprocess.run(
            ["sh", "-n", str(script)], check=False, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{script.name}: {done.stderr}"
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"

"""The one settings class: defaults, `PILOTS_*` variables, the MQTT URL and placeholder secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import MqttTarget, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No `PILOTS_*` variables from the caller's shell and no `.env` file from the checkout."""
    for name in list(os.environ):
        if name.upper().startswith("PILOTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = Settings()
    assert s.env == "development"
    assert s.log_level == "INFO"
    assert s.data_dir == Path("var")
    assert s.registry is None
    assert s.mqtt_url is None
    assert s.ingest_routes["pilots/+/+/up"] == "plain"
    assert s.mqtt_protocol == "3.1.1"
    assert s.influx_url is None
    assert s.influx_database == "pilots"
    assert s.influx_password is None
    assert s.ingest_max_future_s == 600
    assert s.ingest_max_age_days == 3650
    assert s.api_port == 8000
    target = s.mqtt()
    assert (target.host, target.port, target.tls, target.username) == (
        "127.0.0.1",
        1883,
        False,
        None,
    )


def test_environment_variables_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_API_PORT", "9001")
    monkeypatch.setenv("PILOTS_INFLUX_URL", "http://influx.example:8086/")
    monkeypatch.setenv("PILOTS_INFLUX_PASSWORD", "s3cret-from-vault")
    monkeypatch.setenv("PILOTS_MQTT_URL", "mqtt://ingest:pw@broker.example:1884")
    monkeypatch.setenv("PILOTS_REGISTRY", "/etc/pilots/registry.toml")
    monkeypatch.setenv("API_PORT", "1234")  # without the prefix: not ours
    s = Settings()
    assert s.api_port == 9001
    assert s.influx_url == "http://influx.example:8086"  # trailing slash removed
    assert s.influx_password is not None
    assert s.influx_password.get_secret_value() == "s3cret-from-vault"
    assert "s3cret" not in repr(s)
    assert s.registry == Path("/etc/pilots/registry.toml")
    assert s.mqtt().host == "broker.example"
    assert s.mqtt().port == 1884


def test_dot_env_file_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PILOTS_INFLUX_DATABASE=from_dotenv\n", encoding="utf-8")
    assert Settings().influx_database == "from_dotenv"


def test_environment_wins_over_dot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PILOTS_INFLUX_DATABASE=from_dotenv\n", encoding="utf-8")
    monkeypatch.setenv("PILOTS_INFLUX_DATABASE", "from_env")
    assert Settings().influx_database == "from_env"


def test_mqtt_url_with_an_escaped_password() -> None:
    target = MqttTarget.parse("mqtt://user:p%40ss@host:1884")
    assert target == MqttTarget(host="host", port=1884, username="user", password="p@ss", tls=False)
    assert "p@ss" not in str(target)
    assert str(target) == "mqtt://user@host:1884"


@pytest.mark.parametrize(
    ("url", "port", "tls"),
    [
        ("mqtts://broker.example", 8883, True),
        ("ssl://broker.example", 8883, True),
        ("mqtt://broker.example", 1883, False),
        ("tcp://broker.example", 1883, False),
        ("mqtts://broker.example:9883", 9883, True),
    ],
)
def test_mqtt_default_ports(url: str, port: int, tls: bool) -> None:
    target = MqttTarget.parse(url)
    assert (target.host, target.port, target.tls) == ("broker.example", port, tls)
    assert target.username is None and target.password is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://broker.example", "scheme"),
        ("broker.example:1883", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://broker.example:99999", "bad port"),
        ("mqtt://broker.example:port", "bad port"),
    ],
)
def test_bad_mqtt_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        MqttTarget.parse(url)
    assert "PILOTS_MQTT_URL" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PILOTS_INFLUX_PASSWORD", "changeme"),
        ("PILOTS_INFLUX_PASSWORD", "Password"),
        ("PILOTS_INFLUX_TOKEN", "secret"),
        ("PILOTS_MQTT_URL", "mqtt://ingest:changeme@broker"),
    ],
)
def test_production_refuses_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("PILOTS_ENV", "production")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable) as info:
        load_settings()
    assert "placeholder" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PILOTS_INFLUX_PASSWORD", "changeme"), ("PILOTS_MQTT_URL", "mqtt://ingest:changeme@b")],
)
def test_development_accepts_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert load_settings().env == "development"


def test_production_accepts_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_ENV", "production")
    monkeypatch.setenv("PILOTS_INFLUX_PASSWORD", "k7#Vq2!pLx")
    monkeypatch.setenv("PILOTS_MQTT_URL", "mqtts://ingest:Zr9%24mWq@broker.example")
    s = load_settings()
    assert s.env == "production"
    assert s.mqtt().password == "Zr9$mWq"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PILOTS_API_PORT", "not-a-port"),
        ("PILOTS_API_PORT", "70000"),
        ("PILOTS_INFLUX_URL", "influx.example:8086"),
        ("PILOTS_ENV", "staging"),
        ("PILOTS_MQTT_KEEPALIVE_S", "1"),
        ("PILOTS_INFLUX_WRITE_API", "v3"),
        ("PILOTS_MQTT_URL", "http://broker.example"),
    ],
)
def test_load_settings_names_the_bad_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.api_port = 1  # type: ignore[misc]


def test_a_private_ca_for_the_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PILOTS_MQTT_URL", "mqtts://broker.example")
    monkeypatch.setenv("PILOTS_MQTT_CA_FILE", str(ca))
    target = load_settings().mqtt()
    assert (target.tls, target.port, target.ca_file) == (True, 8883, str(ca))
    monkeypatch.setenv("PILOTS_MQTT_CA_FILE", str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError, match=r"missing\.crt"):
        load_settings()


@pytest.mark.parametrize("group", ["ingest", "ingest-change-me", "changeme"])
def test_production_refuses_a_guessable_shared_group(
    group: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTS_ENV", "production")
    monkeypatch.setenv("PILOTS_MQTT_URL", "mqtt://pilots-ingest:a0b1c2d3e4f5@broker:1883")
    monkeypatch.setenv("PILOTS_MQTT_SHARED_GROUP", group)
    with pytest.raises(ConfigError, match="PILOTS_MQTT_SHARED_GROUP is guessable"):
        load_settings()
    monkeypatch.setenv("PILOTS_MQTT_SHARED_GROUP", "ingest-9f2c61d0a4b7e853")
    assert load_settings().mqtt_shared_group == "ingest-9f2c61d0a4b7e853"


def test_each_ingest_worker_logs_in_as_its_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_MQTT_URL", "mqtt://{client_id}:a0b1c2d3@mosquitto:1883")
    monkeypatch.setenv("PILOTS_MQTT_CLIENT_ID", "pilots-ingest-2")
    target = load_settings().mqtt()
    assert (target.username, target.password, target.host) == (
        "pilots-ingest-2",
        "a0b1c2d3",
        "mosquitto",
    )


def test_a_login_in_the_influx_url_becomes_the_login_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The HTTP client would ignore it there, and the URL is logged and shown by /health/details.
    monkeypatch.setenv("PILOTS_INFLUX_URL", "http://reader:p%40ss@[::1]:8086/")
    s = load_settings()
    assert s.influx_url == "http://[::1]:8086"
    assert s.influx_username == "reader"
    assert s.influx_password is not None and s.influx_password.get_secret_value() == "p@ss"


def test_a_login_given_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_INFLUX_URL", "http://reader:pw@influx:8086")
    monkeypatch.setenv("PILOTS_INFLUX_USERNAME", "writer")
    with pytest.raises(ConfigError, match="give the login once"):
        load_settings()


@pytest.mark.parametrize("url", ["http://influx:99999", "http://:8086", "https://"])
def test_an_influx_url_without_a_usable_host_or_port_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("PILOTS_INFLUX_URL", url)
    with pytest.raises(ConfigError, match="PILOTS_INFLUX_URL"):
        load_settings()

"""`pilots devices provision` and `pilots.provision`: the alert service's broker logins.

Files only (the broker that enforces them is in tests/integration/test_provision.py): the
evaluator's login may subscribe to and receive the routed topics, never through `$share/`, and
publish nothing; the MQTT channel's may publish the alerts and nothing else; both are named as
the alert service resolves its logins, with PILOTS_MQTT_URL's password.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from alerts.channels import MqttChannel, alert_mqtt_target
from alerts.message import compose
from core.registry import Registry
from core.settings import Settings
from ingest.decoders import topic_matches
from pilots.cli import app
from pilots.provision import (
    ALERT_TOPICS,
    CREDENTIALS_FILE,
    DEFAULT_ALERTS_LOGIN,
    DEFAULT_ALERTS_MQTT_LOGIN,
    DYNSEC_FILE,
    Login,
    ProvisionError,
    plan_logins,
    provision,
    render_dynsec,
    verify_password,
)

from .helpers import shipped_registry

ROUTES: dict[str, str] = Settings.model_fields["ingest_routes"].get_default(
    call_default_factory=True
)
PASSWORD = "url-password-0123456789"
T0 = 1_765_000_000_000_000_000


@pytest.fixture(scope="module")
def registry() -> Registry:
    return shipped_registry()


def by_name(logins: list[Login]) -> dict[str, Login]:
    return {login.name: login for login in logins}


def acls(tree: dict[str, Any], login: str) -> dict[str, list[str]]:
    """ACL type -> topics of a login's role in a dynamic-security tree."""
    [role] = [r for r in tree["roles"] if r["rolename"] == login]
    found: dict[str, list[str]] = {}
    for acl in role["acls"]:
        assert acl["allow"] is True
        found.setdefault(acl["acltype"], []).append(acl["topic"])
    return found


# -- plan_logins --------------------------------------------------------------------------------


def test_the_defaults_are_the_alert_service_s_own_ids() -> None:
    defaults = Settings(_env_file=None)
    assert defaults.alert_session_id == DEFAULT_ALERTS_LOGIN
    assert defaults.alert_mqtt_client_id == DEFAULT_ALERTS_MQTT_LOGIN


def test_the_evaluator_reads_every_route_directly_and_publishes_nothing(
    registry: Registry,
) -> None:
    logins = by_name(
        plan_logins(
            registry,
            ROUTES,
            ingest_login=["pilots-ingest-1"],
            alerts_login=DEFAULT_ALERTS_LOGIN,
            alerts_mqtt_login=DEFAULT_ALERTS_MQTT_LOGIN,
        )
    )
    evaluator = logins[DEFAULT_ALERTS_LOGIN]
    assert evaluator.role == "alerts"
    # the very filters the service subscribes to (Router(routes).topic_filters), ...
    assert evaluator.subscribe == tuple(ROUTES) == evaluator.read
    # ... never ingest's shared group, nor the group's presence topics
    assert not any(t.startswith("$share/") for t in evaluator.subscribe)
    assert not any("members" in t for t in (*evaluator.subscribe, *evaluator.read))
    assert evaluator.write == ()
    # ingest keeps its own grants, the shared form included
    ingest = logins["pilots-ingest-1"]
    assert {f"$share/+/{f}" for f in ROUTES} <= set(ingest.subscribe)


def test_the_channel_publishes_the_alert_topics_only(registry: Registry) -> None:
    logins = by_name(plan_logins(registry, ROUTES, alerts_mqtt_login=DEFAULT_ALERTS_MQTT_LOGIN))
    channel = logins[DEFAULT_ALERTS_MQTT_LOGIN]
    assert channel.role == "alerts"
    assert channel.write == ALERT_TOPICS
    assert channel.subscribe == () == channel.read
    assert DEFAULT_ALERTS_LOGIN not in logins, "asked for the channel only"


def test_the_alert_topics_are_those_the_mqtt_channel_publishes(registry: Registry) -> None:
    note = compose(
        registry,
        alarm_id="a1b2c3d4e5f6",
        kind="fired",
        device="sf-rlv-01",
        sensor="level",
        rule_id="santa-fe.level.alert",
        severity="warning",
        level="alert",
        threshold=5.3,
        value=5.34,
        start_ns=T0,
    )
    event, state = MqttChannel.topics(note)
    assert topic_matches(ALERT_TOPICS[0], event)
    assert topic_matches(ALERT_TOPICS[1], state)
    assert not topic_matches(ALERT_TOPICS[1], event)
    # no device topic is an alert topic, and no alert topic a routed one
    for device in registry.device_list:
        for route in ROUTES:
            for topic in (event.replace("santa-fe", device.pilot), state):
                assert not topic_matches(route, topic), (route, topic)
        for alert in ALERT_TOPICS:
            assert not topic_matches(alert, f"pilots/{device.pilot}/{device.id}/up")


def test_the_dynamic_security_file_grants_exactly_that(registry: Registry) -> None:
    logins = plan_logins(
        registry,
        ROUTES,
        alerts_login=DEFAULT_ALERTS_LOGIN,
        alerts_mqtt_login=DEFAULT_ALERTS_MQTT_LOGIN,
    )
    hashes = {login.name: "$7$101$AAAAAAAAAAAAAAAA$" + "A" * 88 for login in logins}
    tree = render_dynsec(logins, hashes)
    assert acls(tree, DEFAULT_ALERTS_LOGIN) == {
        "subscribePattern": list(ROUTES),
        "publishClientReceive": list(ROUTES),
    }
    assert acls(tree, DEFAULT_ALERTS_MQTT_LOGIN) == {"publishClientSend": list(ALERT_TOPICS)}
    client = next(c for c in tree["clients"] if c["username"] == DEFAULT_ALERTS_LOGIN)
    assert client["textname"] == "alerts: alert evaluator"


def test_an_alert_login_named_like_a_device_or_ingest_is_refused(registry: Registry) -> None:
    with pytest.raises(ProvisionError, match="used twice"):
        plan_logins(registry, ROUTES, alerts_login="sf-rlv-01")
    with pytest.raises(ProvisionError, match="used twice"):
        plan_logins(registry, ROUTES, ingest_login="x", alerts_login="x")
    with pytest.raises(ProvisionError, match="used twice"):
        plan_logins(registry, ROUTES, alerts_login="x", alerts_mqtt_login="x")


# -- the command --------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.startswith("PILOTS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def run(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    auth = tmp_path / "auth"
    result = CliRunner().invoke(app, ["devices", "provision", "--dir", str(auth), *args])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((auth / DYNSEC_FILE).read_text())


def hashes(tree: dict[str, Any]) -> dict[str, str]:
    return {
        c["username"]: f"$7${c['iterations']}${c['salt']}${c['password']}" for c in tree["clients"]
    }


def handed(tmp_path: Path) -> set[str]:
    path = tmp_path / "auth" / CREDENTIALS_FILE
    if not path.exists():
        return set()
    return {line.split()[0] for line in path.read_text().splitlines() if not line.startswith("#")}


def test_with_a_client_id_url_the_alert_logins_are_its_ids_with_its_password(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("PILOTS_MQTT_URL", f"mqtt://{{client_id}}:{PASSWORD}@broker:1883")
    output, tree = run(tmp_path)
    found = hashes(tree)
    settings = Settings(_env_file=None)
    # what the service logs in as: its session (alerts.service) and its channel (alerts.channels)
    evaluator = settings.mqtt(settings.alert_session_id).username
    channel = alert_mqtt_target(settings).username
    assert (evaluator, channel) == (DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN)
    for login in (DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN):
        assert verify_password(PASSWORD, found[login]), login
    assert not {DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN} & handed(tmp_path), (
        "their password is the URL's"
    )
    assert f"alerts as {DEFAULT_ALERTS_LOGIN} and {DEFAULT_ALERTS_MQTT_LOGIN}" in output
    assert PASSWORD not in output
    assert "warning" not in output


def test_the_alert_logins_follow_the_alert_settings_and_the_url_s_template(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("PILOTS_MQTT_URL", f"mqtt://site-{{client_id}}:{PASSWORD}@broker:1883")
    env.setenv("PILOTS_ALERT_SESSION_ID", "alerts-eval-b")
    env.setenv("PILOTS_ALERT_MQTT_CLIENT_ID", "alerts-out-b")
    _, tree = run(tmp_path)
    assert {"site-alerts-eval-b", "site-alerts-out-b"} <= set(hashes(tree))
    assert DEFAULT_ALERTS_LOGIN not in hashes(tree)


def test_the_alert_logins_by_name_and_without_them(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    env.setenv("PILOTS_MQTT_URL", f"mqtt://{{client_id}}:{PASSWORD}@broker:1883")
    _, tree = run(tmp_path, "--alerts-login", "eval-1", "--alerts-mqtt-login", "notify-1")
    assert acls(tree, "eval-1")["subscribePattern"] == list(ROUTES)
    assert acls(tree, "notify-1") == {"publishClientSend": list(ALERT_TOPICS)}
    assert verify_password(PASSWORD, hashes(tree)["eval-1"])
    output, tree = run(tmp_path, "--no-alerts")
    assert not {"eval-1", "notify-1"} & set(hashes(tree))
    assert "eval-1" in output and "removed" in output
    assert not any(c["textname"].startswith("alerts:") for c in tree["clients"])


def test_without_a_url_password_no_alert_login_is_written(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    output, tree = run(tmp_path)
    assert not {DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN} & set(hashes(tree))
    assert "no logins for the alert service" in output
    # a password of their own would be one the service, which uses the URL's, cannot use
    assert not {DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN} & handed(tmp_path)


def test_a_fixed_url_user_gets_the_alert_logins_and_a_warning(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("PILOTS_MQTT_URL", f"mqtt://pilots-ingest:{PASSWORD}@broker:1883")
    output, tree = run(tmp_path)
    assert {DEFAULT_ALERTS_LOGIN, DEFAULT_ALERTS_MQTT_LOGIN, "pilots-ingest"} <= set(hashes(tree))
    assert "warning: PILOTS_MQTT_URL's user is pilots-ingest, not {client_id}" in output


def test_an_alert_login_named_like_ingest_s_is_refused(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("PILOTS_MQTT_URL", f"mqtt://{{client_id}}:{PASSWORD}@broker:1883")
    result = CliRunner().invoke(
        app,
        ["devices", "provision", "--dir", str(tmp_path / "a"), "--alerts-login", "pilots-ingest-1"],
    )
    assert result.exit_code == 2
    assert "used twice" in result.output
    assert not (tmp_path / "a").exists()


def test_rotating_an_alert_login_is_refused_its_password_is_the_url_s(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    env.setenv("PILOTS_MQTT_URL", f"mqtt://{{client_id}}:{PASSWORD}@broker:1883")
    result = CliRunner().invoke(
        app,
        [
            "devices",
            "provision",
            "--dir",
            str(tmp_path / "a"),
            "--rotate",
            DEFAULT_ALERTS_LOGIN,
        ],
    )
    assert result.exit_code == 2
    assert "comes from the configuration" in result.output
    done = provision(
        tmp_path / "b",
        plan_logins(shipped_registry(), ROUTES, alerts_login=DEFAULT_ALERTS_LOGIN),
        given={DEFAULT_ALERTS_LOGIN: PASSWORD},
        rotate_all=True,
    )
    assert DEFAULT_ALERTS_LOGIN not in done.new_passwords

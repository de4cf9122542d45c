"""`pilots devices provision`: the broker's logins and access rules, written from the registry.

The logic lives in `pilots.provision`; this module reads the settings and the registry, calls
it and tells the operator what changed and what to do next. It never prints a password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import PilotsError
from core.registry import load_registry
from core.settings import CLIENT_ID_LOGIN, MqttTarget, Settings, load_settings
from pilots.provision import (
    CREDENTIALS_FILE,
    DEFAULT_INGEST_LOGIN,
    HEALTHCHECK_LOGIN,
    network_server_applications,
    plan_logins,
    provision,
)

#: Where the compose stack's broker reads them (docker-compose.yml mounts it at /mosquitto/auth).
DEFAULT_DIR = Path("deploy/mosquitto/auth")

devices_app = typer.Typer(
    help="Devices' broker logins: Mosquitto's dynamic-security file from the registry.",
    no_args_is_help=True,
)


@devices_app.command("provision")
def provision_command(  # noqa: PLR0917 (typer options)
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="where to write dynamic-security.json and healthcheck.password "
            "(the broker reads them)",
        ),
    ] = DEFAULT_DIR,
    rotate: Annotated[
        list[str] | None,
        typer.Option(help="give this login a new password (repeatable)", metavar="LOGIN"),
    ] = None,
    rotate_all: Annotated[
        bool, typer.Option(help="new passwords for every login except ingest's")
    ] = False,
    simulator: Annotated[
        bool,
        typer.Option(
            help="keep a `simulator` login that may publish as every device (testing only; "
            "a run without this flag removes it)"
        ),
    ] = False,
    ingest_workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="when PILOTS_MQTT_URL's user is {client_id}: one login per worker, "
            "pilots-ingest-1 .. pilots-ingest-N (the workers' client ids)",
        ),
    ] = 3,
    ingest_login: Annotated[
        list[str] | None,
        typer.Option(help="ingest's broker logins by name instead (repeatable)", metavar="NAME"),
    ] = None,
    network_server: Annotated[
        list[str] | None,
        typer.Option(
            help="a login NAME for a LoRaWAN network server or its MQTT bridge, which may "
            "publish the uplinks of this application only: chirpstack=<application id>, "
            "NAME=chirpstack:<application id> or NAME=tts:<app>@<tenant> (repeatable: one "
            "per application)",
            metavar="NAME=[FORMAT:]APPLICATION",
        ),
    ] = None,
    alerts: Annotated[
        bool,
        typer.Option(
            help="the alert service's logins (`pilots alerts run`): its evaluator's, which may "
            "read the routed topics, and its MQTT channel's, which may publish the alerts; "
            "both with PILOTS_MQTT_URL's password"
        ),
    ] = True,
    alerts_login: Annotated[
        str | None,
        typer.Option(
            help="the alert evaluator's login by name instead (default: PILOTS_MQTT_URL's "
            "user for PILOTS_ALERT_SESSION_ID, pilots-alerts-eval)",
            metavar="NAME",
        ),
    ] = None,
    alerts_mqtt_login: Annotated[
        str | None,
        typer.Option(
            help="the alert MQTT channel's login by name instead (default: PILOTS_MQTT_URL's "
            "user for PILOTS_ALERT_MQTT_CLIENT_ID, pilots-alerts)",
            metavar="NAME",
        ),
    ] = None,
    credentials: Annotated[
        Path | None,
        typer.Option(help="file new passwords are appended to, mode 0600 [DIR/credentials.txt]"),
    ] = None,
) -> None:
    """Write the broker's logins and access rules: each device publishes only on its topics.

    Ingest's login and password are those of PILOTS_MQTT_URL when it has them (else
    `pilots-ingest` with a new password); with several workers each has a login of its own
    (--ingest-login), all with that password. The alert service's two logins (its evaluator's
    session and its MQTT channel) are named as PILOTS_MQTT_URL's `{client_id}` user resolves for
    it, and share that password. Existing passwords are kept unless rotated; new ones are
    appended to the credentials file, never printed. Then restart the broker: its
    dynamic-security plugin reads the file only at start (SIGHUP does not reload it).
    """
    try:
        settings = load_settings()
        registry = load_registry(settings.registry)
        target = MqttTarget.parse(settings.mqtt_url) if settings.mqtt_url else None
        named = (target.username if target else None) or DEFAULT_INGEST_LOGIN
        if ingest_login:
            ingest_logins = ingest_login
        elif CLIENT_ID_LOGIN in named:
            # each worker logs in as its client id: pilots-{hostname} in the compose stack
            # (ingest-1, ...), pilots-ingest-<instance> in the Debian units
            ingest_logins = [f"{DEFAULT_INGEST_LOGIN}-{i}" for i in range(1, ingest_workers + 1)]
        else:
            ingest_logins = [named]
        password = target.password if target else None
        given = dict.fromkeys(ingest_logins, password) if password else {}
        alert_logins: tuple[str, str] | None = None
        if alerts and password:
            # the alert service logs in with PILOTS_MQTT_URL's password, whatever its login
            alert_logins = _alert_logins(settings, named, alerts_login, alerts_mqtt_login)
            given.update(dict.fromkeys(alert_logins, password))
        logins = plan_logins(
            registry,
            settings.ingest_routes,
            ingest_login=ingest_logins,
            simulator=simulator,
            network_servers=network_server_applications(network_server or ()),
            alerts_login=alert_logins[0] if alert_logins else None,
            alerts_mqtt_login=alert_logins[1] if alert_logins else None,
        )
        done = provision(
            directory,
            logins,
            given=given,
            rotate=rotate or (),
            rotate_all=rotate_all,
            credentials=credentials or directory / CREDENTIALS_FILE,
        )
    except PilotsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    devices = sum(login.role == "device" for login in logins)
    typer.echo(
        f"{done.dynsec_file}: {devices} devices, ingest as "
        f"{', '.join(ingest_logins)}"
        + (f", alerts as {' and '.join(alert_logins)}" if alert_logins else "")
        + (", simulator" if simulator else "")
    )
    if given:
        typer.echo(f"{', '.join(given)}: password from PILOTS_MQTT_URL")
    if alerts:
        _say_alert_logins(alert_logins, named)
    handed = sorted(name for name in done.new_passwords if name != HEALTHCHECK_LOGIN)
    if handed:
        typer.echo(
            f"{len(handed)} new passwords ({', '.join(handed[:5])}"
            f"{', ...' if len(handed) > 5 else ''}) appended to {done.credentials}: hand each "
            "to its device, then move that file off this machine"
        )
    else:
        typer.echo("no new passwords: every login keeps its own")
    if done.removed:
        typer.echo(
            f"removed (no longer in the registry, or not asked for): {', '.join(done.removed)}"
        )
    if done.legacy_removed:
        typer.echo(
            f"removed {' and '.join(path.name for path in done.legacy_removed)} of an earlier "
            "version (its passwords are kept): the broker's configuration must load the "
            "dynamic-security plugin instead (see deploy/mosquitto/mosquitto.conf)"
        )
    typer.echo(
        "restart the broker to apply (a reload does not re-read the file): "
        "systemctl restart mosquitto, or docker compose restart mosquitto"
    )


def _alert_logins(
    settings: Settings, named: str, evaluator: str | None, channel: str | None
) -> tuple[str, str]:
    """The alert evaluator's and the alert MQTT channel's logins: as the service resolves them.

    With PILOTS_MQTT_URL's user `{client_id}` the service logs in as its session id
    (PILOTS_ALERT_SESSION_ID) and its channel as PILOTS_ALERT_MQTT_CLIENT_ID
    (`Settings.mqtt(client_id)`); with any other user, these ids are the logins' names still,
    for the alert service's own `{client_id}` URL.
    """
    if CLIENT_ID_LOGIN in named:
        resolved = (
            settings.mqtt(settings.alert_session_id).username,
            settings.mqtt(settings.alert_mqtt_client_id).username,
        )
    else:
        resolved = (settings.alert_session_id, settings.alert_mqtt_client_id)
    return (
        evaluator or resolved[0] or settings.alert_session_id,
        channel or resolved[1] or settings.alert_mqtt_client_id,
    )


def _say_alert_logins(alert_logins: tuple[str, str] | None, named: str) -> None:
    """Tell the operator when the alert service will not log in as provisioned."""
    if alert_logins is None:
        typer.echo(
            "no logins for the alert service: it logs in with PILOTS_MQTT_URL's password, and "
            "that URL has none (set it, then provision again; --no-alerts says this is meant)"
        )
    elif CLIENT_ID_LOGIN not in named:
        typer.echo(
            f"warning: PILOTS_MQTT_URL's user is {named}, not {CLIENT_ID_LOGIN}: the alert "
            f"service would log in as {named} too, and the broker (client id = login) would "
            "then hand it ingest's session; give it PILOTS_MQTT_URL="
            f"mqtt://{CLIENT_ID_LOGIN}:<the same password>@... to log in as "
            f"{' and '.join(alert_logins)}"
        )

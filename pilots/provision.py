"""Broker logins from the registry: the Mosquitto dynamic-security plugin's file, one login each.

Every device in the registry gets a login named after its id that may publish only on its own
topics (the `pilots/+/+/<format>` routes of `PILOTS_INGEST_ROUTES`, with its pilot and id
filled in) and may subscribe to nothing. Each ingest worker gets a login that may subscribe to
the routed topics, directly or through a shared subscription (`$share/<group>/...`), and
receive them. The alert service (`pilots alerts run`) has two: its evaluator's, named like its
MQTT session (`PILOTS_ALERT_SESSION_ID`), may subscribe to the same routed topics and receive
them, directly only, never through `$share/...` (it needs a copy of every message, and must
not take a share of ingest's), and publishes nothing; its MQTT channel's
(`PILOTS_ALERT_MQTT_CLIENT_ID`) may publish the notifications, `pilots/+/alerts` and the
retained `pilots/+/alerts/active/+`, and subscribe to nothing. A network-server login may
publish the uplinks of its own LoRaWAN applications only. A `healthcheck` login may read the
broker's version and nothing else; an optional `simulator` login may publish as every device
(development only). Everything else is refused: the file's default access is "deny" for
publishing, receiving and subscribing.

Why the plugin and not Mosquitto's `acl_file`: the ACL file is checked on publishing and on
delivery, never on subscribing. A device could join ingest's shared group, be handed its share
of the messages, and the broker would then drop that share at delivery: readings lost. The
plugin (shipped with Mosquitto 2.0 and later, `mosquitto_dynamic_security.so`) checks every
SUBSCRIBE, so that subscription is refused with SUBACK 0x80 and ingest keeps every message.

The plugin keeps passwords as PBKDF2-HMAC-SHA512 (101 iterations, 12-byte salt: the same hash
as Mosquitto 2's `$7$` password file), written here in Python because the project's image and
an operator's laptop have no Mosquitto tools. A login keeps its password across runs unless it
is rotated, so re-running after adding a device changes nothing for the others; the hashes of a
password file written by an earlier version are carried over once, and that file and its ACL
are removed. New and rotated passwords are appended to a credentials file (mode 0600) for the
operator to hand to the devices; they are never printed and cannot be read back.

The plugin reads its file only when the broker starts (a SIGHUP does not reload it): restart
the broker after a run. This module writes files only: it never connects to a broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.errors import PilotsError
from core.registry import Registry
from ingest.decoders import LORAWAN_FORMATS
from ingest.members import PRESENCE_PREFIX

#: The dynamic-security plugin's `plugin_opt_config_file`.
DYNSEC_FILE = "dynamic-security.json"
CREDENTIALS_FILE = "credentials.txt"
#: The health check's own password, in plain text, for the broker container's health check.
HEALTHCHECK_PASSWORD_FILE = "healthcheck.password"  # noqa: S105 -- a file name
#: Mosquitto's `password_file` and `acl_file` as earlier versions wrote them: the hashes are
#: carried over into DYNSEC_FILE, then both files are removed.
LEGACY_PASSWORD_FILE = "passwd"  # noqa: S105 -- a file name
LEGACY_ACL_FILE = "acl"

DEFAULT_INGEST_LOGIN = "pilots-ingest"
#: The alert service's logins when PILOTS_MQTT_URL's user is `{client_id}`: the defaults of
#: PILOTS_ALERT_SESSION_ID (its evaluator's session) and PILOTS_ALERT_MQTT_CLIENT_ID (its
#: MQTT channel).
DEFAULT_ALERTS_LOGIN = "pilots-alerts-eval"
DEFAULT_ALERTS_MQTT_LOGIN = "pilots-alerts"
#: What the alert service's MQTT channel publishes (`alerts.channels.MqttChannel.topics`): each
#: event, and each alarm's retained state while it is on.
ALERT_TOPICS = ("pilots/+/alerts", "pilots/+/alerts/active/+")
HEALTHCHECK_LOGIN = "healthcheck"
SIMULATOR_LOGIN = "simulator"
#: The retained topic the health check reads: it arrives at once from a live broker.
HEALTHCHECK_TOPIC = "$SYS/broker/version"

#: mosquitto_passwd's and the plugin's defaults in Mosquitto 2.0: PBKDF2-HMAC-SHA512, 101
#: iterations, 12-byte salt (the plugin refuses any other salt length); a password file line is
#: `login:$7$<iterations>$<base64 salt>$<base64 hash>`.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
#: 24 random bytes: 32 url-safe characters, no `:` or whitespace, safe in an mqtt:// URL.
PASSWORD_BYTES = 24

#: The broker reads these files after dropping to its own user, and inside a container their
#: owner is the operator's uid on the host: readable by all. They hold salted hashes and topic
#: names, not passwords.
BROKER_FILE_MODE = 0o644
SECRET_FILE_MODE = 0o600

_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: One topic level without wildcards: a ChirpStack application id (a UUID), or The Things
#: Stack's `<application id>@<tenant id>` (or `<application id>` on a single-tenant server).
_APPLICATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_HASH = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
#: A route whose topic names pilot and device: `pilots/+/+/<format>`.
_DEVICE_ROUTE = re.compile(r"^pilots/\+/\+/([A-Za-z0-9_-]+)$")

Role = Literal["device", "ingest", "alerts", "healthcheck", "simulator", "network-server"]


class ProvisionError(PilotsError):
    """The logins cannot be written: a bad name, an unreadable password file."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Mosquitto 2's `$7$` hash of a password (PBKDF2-HMAC-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches a `$7$` hash (other formats never match)."""
    found = _HASH.match(encoded)
    if found is None:
        return False
    iterations, salt, digest = found.groups()
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(computed, base64.b64decode(digest))


def plugin_can_read(encoded: str) -> bool:
    """Whether the plugin accepts a `$7$` hash: a 12-byte salt and a 64-byte SHA-512 digest.

    It skips, without a word, a client whose salt or digest has another length.
    """
    found = _HASH.match(encoded)
    if found is None:
        return False
    _, salt, digest = found.groups()
    try:
        sizes = len(base64.b64decode(salt)), len(base64.b64decode(digest))
    except ValueError:
        return False
    return sizes == (SALT_BYTES, hashlib.sha512().digest_size)


def new_password() -> str:
    """A random password for one login."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True, slots=True)
class Login:
    """One broker login and the topics it may publish, subscribe to and receive.

    `write`: topics it may publish on; `subscribe`: filters it may subscribe to (`$share/...`
    included); `read`: topics of the messages it may receive.
    """

    name: str
    role: Role
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if not _LOGIN.match(self.name):
            raise ProvisionError(
                f"login {self.name!r}: use letters, digits and . _ @ - (at most 128)"
            )


@dataclass(frozen=True, slots=True)
class Application:
    """A LoRaWAN application a network-server login publishes uplinks for.

    `format` is the ingest format of its uplinks (`chirpstack`, `tts`); `id` the topic level
    that names it: ChirpStack's application id, The Things Stack's `<app>@<tenant>`.
    """

    format: str
    id: str

    def __post_init__(self) -> None:
        if self.format not in LORAWAN_FORMATS:
            raise ProvisionError(
                f"application {self.id!r}: format {self.format!r} is not one of "
                f"{', '.join(sorted(LORAWAN_FORMATS))}"
            )
        if not _APPLICATION.match(self.id):
            raise ProvisionError(
                f"application {self.id!r}: one topic level of letters, digits and . _ @ - "
                "(no `/`, `+` or `#`)"
            )


def parse_network_server(spec: str) -> tuple[str, Application]:
    """`NAME=[FORMAT:]APPLICATION` (the `--network-server` option) as login and application.

    FORMAT may be left out when NAME is a format itself (`chirpstack=<id>`, `tts=<app>@<tenant>`).
    """
    name, sep, value = spec.partition("=")
    if not sep or not value:
        raise ProvisionError(
            f"--network-server {spec}: name the application(s) this login publishes for, "
            "e.g. chirpstack=<ChirpStack application id> or NAME=tts:<application id>@<tenant>, "
            "once per application; a network-server login no longer publishes for every one"
        )
    fmt, colon, app_id = value.rpartition(":")
    if not colon:
        if name not in LORAWAN_FORMATS:
            examples = (f"{name}={server}:{value}" for server in sorted(LORAWAN_FORMATS))
            raise ProvisionError(
                f"--network-server {spec}: say which network server it is: " + " or ".join(examples)
            )
        fmt = name
    return name, Application(fmt, app_id)


def network_server_applications(specs: Iterable[str]) -> dict[str, tuple[Application, ...]]:
    """Each network-server login with its applications, from repeated `--network-server`."""
    found: dict[str, list[Application]] = {}
    for spec in specs:
        name, application = parse_network_server(spec)
        apps = found.setdefault(name, [])
        if application not in apps:
            apps.append(application)
    return {name: tuple(apps) for name, apps in found.items()}


def device_formats(routes: Mapping[str, str]) -> list[str]:
    """The last topic level of each route that names pilot and device (`up`, `senml`)."""
    return [m.group(1) for f in routes if (m := _DEVICE_ROUTE.match(f))]


def application_topics(routes: Mapping[str, str], application: Application) -> tuple[str, ...]:
    """The routed topics of one application: the route's first `+` becomes its id.

    `application/+/device/+/event/up` -> `application/<id>/device/+/event/up`,
    `v3/+/devices/+/up` -> `v3/<app>@<tenant>/devices/+/up`.
    """
    topics = []
    for topic_filter, fmt in routes.items():
        if fmt != application.format:
            continue
        levels = topic_filter.split("/")
        if "+" not in levels:
            raise ProvisionError(
                f"PILOTS_INGEST_ROUTES: {topic_filter!r} has no `+` level for the application"
            )
        levels[levels.index("+")] = application.id
        topics.append("/".join(levels))
    if not topics:
        raise ProvisionError(f"PILOTS_INGEST_ROUTES routes no topic to {application.format}")
    return tuple(topics)


def plan_logins(
    registry: Registry,
    routes: Mapping[str, str],
    *,
    ingest_login: str | Sequence[str] = DEFAULT_INGEST_LOGIN,
    simulator: bool = False,
    network_servers: Mapping[str, Iterable[Application]] | None = None,
    alerts_login: str | None = None,
    alerts_mqtt_login: str | None = None,
) -> list[Login]:
    """Every login the broker should know, with its topics, from the registry and the routes.

    A network server (ChirpStack, The Things Stack bridge) may publish on the LoRaWAN routes of
    its own applications only; ingest matches each uplink to a registry device by EUI. The
    simulator may publish on every route. Only ingest, the alert evaluator (`alerts_login`)
    and the health check may subscribe; the alert evaluator to the routes themselves only, not
    through ingest's shared group. `alerts_mqtt_login` may publish the alert notifications.
    """
    formats = device_formats(routes)
    if not formats:
        raise ProvisionError(
            "PILOTS_INGEST_ROUTES has no pilots/+/+/<format> route: devices would have no topic"
        )
    logins = [
        Login(
            device.id,
            "device",
            write=tuple(f"pilots/{device.pilot}/{device.id}/{fmt}" for fmt in formats),
            note=f"{device.pilot} {device.kind}",
        )
        for device in registry.device_list
    ]
    # Mosquitto checks a shared subscription against the filter with its `$share/<group>/`
    # prefix, and each delivered message against its topic: both forms are granted.
    shared = tuple(f"$share/+/{f}" for f in routes)
    workers = (ingest_login,) if isinstance(ingest_login, str) else tuple(ingest_login)
    # The workers of a group watch each other's presence, each writing its own (and its
    # will); a worker adopts an absent one's session by logging in as it (ingest.members).
    logins.extend(
        Login(
            name,
            "ingest",
            write=(f"{PRESENCE_PREFIX}/+/members/{name}",),
            read=(*routes, f"{PRESENCE_PREFIX}/+/members/+"),
            subscribe=(*routes, *shared, f"{PRESENCE_PREFIX}/+/members/+"),
            note="ingest",
        )
        for name in workers
    )
    if alerts_login is not None:
        # Its own persistent session on every route: the broker gives it a copy of each
        # message. No `$share/` form is granted, so it cannot take (and lose) a share of
        # ingest's, and a device logging in as nothing else cannot either.
        logins.append(
            Login(
                alerts_login,
                "alerts",
                read=tuple(routes),
                subscribe=tuple(routes),
                note="alert evaluator",
            )
        )
    if alerts_mqtt_login is not None:
        logins.append(
            Login(alerts_mqtt_login, "alerts", write=ALERT_TOPICS, note="alert notifications")
        )
    logins.append(
        Login(
            HEALTHCHECK_LOGIN,
            "healthcheck",
            read=(HEALTHCHECK_TOPIC,),
            subscribe=(HEALTHCHECK_TOPIC,),
            note="health check",
        )
    )
    for name, applications in (network_servers or {}).items():
        apps = tuple(applications)
        if not apps:
            raise ProvisionError(f"network server {name}: no application to publish for")
        writes = tuple(t for app in apps for t in application_topics(routes, app))
        note = "LoRaWAN uplinks of " + ", ".join(f"{a.format} {a.id}" for a in apps)
        logins.append(Login(name, "network-server", write=writes, note=note))
    if simulator:
        # the simulated fleets publish in every format, LoRaWAN uplinks of any application too
        lorawan = tuple(f for f, fmt in routes.items() if fmt in LORAWAN_FORMATS)
        writes = tuple(f"pilots/+/+/{fmt}" for fmt in formats) + lorawan
        logins.append(Login(SIMULATOR_LOGIN, "simulator", write=writes, note="development only"))
    names = [login.name for login in logins]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ProvisionError(
            "login names used twice (a device named like a service, or two services given "
            f"one login?): {doubled}"
        )
    return logins


def _acls(login: Login) -> list[dict[str, Any]]:
    return [
        *({"acltype": "publishClientSend", "topic": t, "allow": True} for t in login.write),
        *({"acltype": "subscribePattern", "topic": t, "allow": True} for t in login.subscribe),
        *({"acltype": "publishClientReceive", "topic": t, "allow": True} for t in login.read),
    ]


def render_dynsec(logins: Iterable[Login], hashes: Mapping[str, str]) -> dict[str, Any]:
    """The dynamic-security plugin's configuration: a client and a role of its own per login.

    `hashes` maps each login to its `$7$` hash. Access not granted by a role is denied
    (`defaultACLAccess`); unsubscribing is always allowed.
    """
    clients, roles = [], []
    for login in logins:
        found = _HASH.match(hashes[login.name])
        if found is None:
            raise ProvisionError(f"login {login.name}: not a $7$ password hash")
        iterations, salt, digest = found.groups()
        clients.append(
            {
                "username": login.name,
                "textname": f"{login.role}: {login.note}",
                "password": digest,
                "salt": salt,
                "iterations": int(iterations),
                "roles": [{"rolename": login.name}],
            }
        )
        roles.append({"rolename": login.name, "acls": _acls(login)})
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def read_dynsec_hashes(path: Path) -> dict[str, str]:
    """Map login to `$7$` hash from an existing plugin file; empty when there is none."""
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"cannot read {path}: {exc}") from exc
    hashes = {}
    for client in tree.get("clients", []) if isinstance(tree, dict) else []:
        try:
            name = str(client["username"])
            encoded = f"$7${int(client['iterations'])}${client['salt']}${client['password']}"
        except (KeyError, TypeError, ValueError) as exc:
            raise ProvisionError(f"{path}: a client without username and password") from exc
        hashes[name] = encoded
    return hashes


def read_password_file(path: Path) -> dict[str, str]:
    """Map login to hash from an existing password file; empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ProvisionError(f"cannot read {path}: {exc}") from exc
    hashes = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        if not sep or not encoded:
            raise ProvisionError(f"{path}:{number}: not `login:hash`")
        hashes[name] = encoded
    return hashes


def _write(path: Path, text: str, mode: int) -> None:
    """Replace `path` atomically, so the broker never reads a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Provisioned:
    """What a run did; `new_passwords` are those created or rotated by it."""

    directory: Path
    logins: list[Login]
    new_passwords: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    credentials: Path | None = None
    #: Files of an earlier version (password file, ACL), removed once their hashes are kept.
    legacy_removed: list[Path] = field(default_factory=list)

    @property
    def dynsec_file(self) -> Path:
        """The dynamic-security plugin's `plugin_opt_config_file`."""
        return self.directory / DYNSEC_FILE


def _old_hashes(directory: Path) -> tuple[dict[str, str], list[Path]]:
    """The hashes of the last run, and the files of an earlier version that are left."""
    legacy = [directory / LEGACY_PASSWORD_FILE, directory / LEGACY_ACL_FILE]
    hashes = read_dynsec_hashes(directory / DYNSEC_FILE)
    if not hashes:
        hashes = read_password_file(legacy[0])
    return hashes, [path for path in legacy if path.exists()]


def provision(
    directory: Path,
    logins: list[Login],
    *,
    given: Mapping[str, str] | None = None,
    rotate: Iterable[str] = (),
    rotate_all: bool = False,
    credentials: Path | None = None,
) -> Provisioned:
    """Write the plugin's file and the health check's password into `directory`.

    `given` sets a login's password (ingest's, from `PILOTS_MQTT_URL`); the others keep their
    hash from the existing file, or get a new random password when they are new or rotated.
    Logins no longer planned (devices removed from the registry) are dropped.
    """
    configured = dict(given or {})
    names = {login.name for login in logins}
    _check_rotation(set(rotate), names, set(configured))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"cannot create {directory}: {exc}") from exc
    result = Provisioned(directory, logins, credentials=credentials)
    old, result.legacy_removed = _old_hashes(directory)
    health_file = directory / HEALTHCHECK_PASSWORD_FILE
    known = dict(configured)
    if HEALTHCHECK_LOGIN not in known and health_file.exists():
        known[HEALTHCHECK_LOGIN] = health_file.read_text(encoding="utf-8").strip()
    rotating = names - set(configured) if rotate_all else set(rotate)
    if HEALTHCHECK_LOGIN in names and HEALTHCHECK_LOGIN not in known:
        # its password file is gone (deleted, or not restored from a backup): the hash alone
        # cannot give the health check its password back, so it gets a new one
        rotating.add(HEALTHCHECK_LOGIN)
    hashes: dict[str, str] = {}
    for name in (login.name for login in logins):
        password = None if name in rotating else known.get(name)
        unchanged = password is None or verify_password(password, old.get(name, ""))
        if name in old and name not in rotating and unchanged and plugin_can_read(old[name]):
            hashes[name] = old[name]
            result.kept.append(name)
            continue
        if password is None:
            password = result.new_passwords[name] = new_password()
            known[name] = password
        hashes[name] = hash_password(password)
    result.removed = sorted(set(old) - names)
    try:
        if HEALTHCHECK_LOGIN in names:
            _write(health_file, known[HEALTHCHECK_LOGIN] + "\n", SECRET_FILE_MODE)
        tree = render_dynsec(logins, hashes)
        _write(result.dynsec_file, json.dumps(tree, indent=2) + "\n", BROKER_FILE_MODE)
        _append_credentials(result, {login.name: login for login in logins})
        for legacy in result.legacy_removed:
            # a broker still configured with them would go on applying the old rules
            legacy.unlink()
    except OSError as exc:
        raise ProvisionError(f"cannot write the broker's files in {directory}: {exc}") from exc
    return result


def _check_rotation(rotate: set[str], names: set[str], configured: set[str]) -> None:
    unknown = sorted(rotate - names)
    if unknown:
        raise ProvisionError(f"cannot rotate unknown logins: {', '.join(unknown)}")
    fixed = sorted(rotate & configured)
    if fixed:
        raise ProvisionError(
            f"the password of {', '.join(fixed)} comes from the configuration: change it there"
        )


def _append_credentials(result: Provisioned, by_name: Mapping[str, Login]) -> None:
    """Append the new passwords for the operator (mode 0600); the health check's stays out."""
    handed = {n: p for n, p in result.new_passwords.items() if n != HEALTHCHECK_LOGIN}
    if not handed or result.credentials is None:
        return
    path = result.credentials
    when = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [f"# {when} pilots devices provision: login password topics"]
    for name, password in handed.items():
        login = by_name[name]
        lines.append(f"{name} {password} {' '.join(login.write or login.read)}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, SECRET_FILE_MODE)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    path.chmod(SECRET_FILE_MODE)  # an existing file keeps its mode otherwise

"""Broker logins from the registry: Mosquitto's password file and ACL, one login per device.

Every device in the registry gets a login named after its id that may publish only on its own
topics (the `pilots/+/+/<format>` routes of `PILOTS_INGEST_ROUTES`, with its pilot and id
filled in). Ingest gets one login that may read every routed topic, directly or through a shared
subscription (`$share/<group>/...`). A `healthcheck` login may read the broker's version and
nothing else; an optional `simulator` login may publish as every device (development only).
Everything else is refused: Mosquitto with an `acl_file` denies whatever the file does not grant.

The password file holds hashes only, in Mosquitto 2's `$7$` format (PBKDF2-HMAC-SHA512). It is
written here in Python rather than by `mosquitto_passwd` because the project's image and an
operator's laptop have no Mosquitto tools; only the broker needs them. A login keeps its
password across runs unless it is rotated, so re-running after adding a device changes nothing
for the others. New and rotated passwords are appended to a credentials file (mode 0600) for
the operator to hand to the devices; they are never printed and cannot be read back.

This module writes files only: it never connects to a broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from core.errors import PilotsError
from core.registry import Registry

PASSWORD_FILE = "passwd"  # noqa: S105 -- a file name
ACL_FILE = "acl"
CREDENTIALS_FILE = "credentials.txt"
#: The health check's own password, in plain text, for the broker container's health check.
HEALTHCHECK_PASSWORD_FILE = "healthcheck.password"  # noqa: S105 -- a file name

DEFAULT_INGEST_LOGIN = "pilots-ingest"
HEALTHCHECK_LOGIN = "healthcheck"
SIMULATOR_LOGIN = "simulator"
#: The retained topic the health check reads: it arrives at once from a live broker.
HEALTHCHECK_TOPIC = "$SYS/broker/version"

#: mosquitto_passwd's defaults in Mosquitto 2.0: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte
#: salt; the line is `login:$7$<iterations>$<base64 salt>$<base64 hash>`.
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
_HASH = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
#: A route whose topic names pilot and device: `pilots/+/+/<format>`.
_DEVICE_ROUTE = re.compile(r"^pilots/\+/\+/([A-Za-z0-9_-]+)$")

Role = Literal["device", "ingest", "healthcheck", "simulator", "network-server"]


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


def new_password() -> str:
    """A random password for one login."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True, slots=True)
class Login:
    """One broker login and the topics it may publish (`write`) and receive (`read`)."""

    name: str
    role: Role
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if not _LOGIN.match(self.name):
            raise ProvisionError(
                f"login {self.name!r}: use letters, digits and . _ @ - (at most 128)"
            )


def device_formats(routes: Mapping[str, str]) -> list[str]:
    """The last topic level of each route that names pilot and device (`up`, `senml`)."""
    return [m.group(1) for f in routes if (m := _DEVICE_ROUTE.match(f))]


#: Formats a LoRaWAN network server publishes in (see ingest.decoders).
LORAWAN_FORMATS = frozenset({"chirpstack", "tts"})


def plan_logins(
    registry: Registry,
    routes: Mapping[str, str],
    *,
    ingest_login: str | Sequence[str] = DEFAULT_INGEST_LOGIN,
    simulator: bool = False,
    network_servers: Iterable[str] = (),
) -> list[Login]:
    """Every login the broker should know, with its topics, from the registry and the routes.

    A network server (ChirpStack, The Things Stack bridge) may publish on the LoRaWAN routes
    (every topic routed to `chirpstack` or `tts`): it speaks for all its devices, and ingest
    matches each uplink to a registry device by EUI. The simulator may publish on every route.
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
    reads = tuple(routes) + tuple(f"$share/+/{f}" for f in routes)
    workers = (ingest_login,) if isinstance(ingest_login, str) else tuple(ingest_login)
    logins.extend(Login(name, "ingest", read=reads, note="pilots ingest") for name in workers)
    logins.append(
        Login(HEALTHCHECK_LOGIN, "healthcheck", read=(HEALTHCHECK_TOPIC,), note="health check")
    )
    lorawan = tuple(f for f, fmt in routes.items() if fmt in LORAWAN_FORMATS)
    for name in network_servers:
        if not lorawan:
            raise ProvisionError("PILOTS_INGEST_ROUTES routes no topic to chirpstack or tts")
        logins.append(Login(name, "network-server", write=lorawan, note="LoRaWAN uplinks"))
    if simulator:
        # the simulated fleets publish in every format, LoRaWAN uplinks included
        writes = tuple(f"pilots/+/+/{fmt}" for fmt in formats) + lorawan
        logins.append(Login(SIMULATOR_LOGIN, "simulator", write=writes, note="development only"))
    names = [login.name for login in logins]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ProvisionError(f"login names used twice (a device named like a service?): {doubled}")
    return logins


def render_acl(logins: Iterable[Login]) -> str:
    """Mosquitto's ACL file: a `user` block per login, nothing for anyone else."""
    lines = [
        "# Written by `pilots devices provision` from the registry; edits are overwritten.",
        "# Mosquitto denies every topic not granted here; there is no anonymous section.",
    ]
    for login in logins:
        lines += ["", f"# {login.role}: {login.note}".rstrip(), f"user {login.name}"]
        lines += [f"topic write {topic}" for topic in login.write]
        lines += [f"topic read {topic}" for topic in login.read]
    return "\n".join(lines) + "\n"


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

    @property
    def password_file(self) -> Path:
        """Mosquitto's `password_file`."""
        return self.directory / PASSWORD_FILE

    @property
    def acl_file(self) -> Path:
        """Mosquitto's `acl_file`."""
        return self.directory / ACL_FILE


def provision(
    directory: Path,
    logins: list[Login],
    *,
    given: Mapping[str, str] | None = None,
    rotate: Iterable[str] = (),
    rotate_all: bool = False,
    credentials: Path | None = None,
) -> Provisioned:
    """Write `passwd`, `acl` and the health check's password into `directory`.

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
    old = read_password_file(result.password_file)
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
        if name in old and name not in rotating and unchanged:
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
        _write(
            result.password_file,
            "".join(f"{name}:{hashes[name]}\n" for name in sorted(hashes)),
            BROKER_FILE_MODE,
        )
        _write(result.acl_file, render_acl(logins), BROKER_FILE_MODE)
        _append_credentials(result, {login.name: login for login in logins})
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

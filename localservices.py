"""Real Mosquitto and influxd processes on free loopback ports, for the tests and the benchmarks.

Each runs with its own temporary data directory from Debian's packages, configured as every
shipped configuration is where it matters (the broker's packet limit). Not part of the installed
package: `core`, `ingest`, `api`, `simulators` and `pilots` never import it. It installs
nothing: a missing binary raises `MissingServiceError`, saying what to install.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings

INSTALL_HINT = (
    "install Debian's mosquitto and influxdb packages (apt-get install -y mosquitto influxdb), "
    "or run `make test` as root, which installs them"
)

#: Added to ingest's payload limit for `max_packet_size` in every shipped broker configuration:
#: the packet's fixed header, its topic and MQTT 5 properties.
PACKET_HEADROOM_BYTES = 4096
#: The local broker's `max_packet_size`, as deploy/ sets it for the default payload limit.
MAX_PACKET_SIZE = (
    int(Settings.model_fields["ingest_max_payload_bytes"].default) + PACKET_HEADROOM_BYTES
)


class MissingServiceError(RuntimeError):
    """A service's binary is not on this machine; the message says what to install."""


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    """The path of a service binary; `MissingServiceError` if there is none."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise MissingServiceError(f"`{name}` not found: {INSTALL_HINT}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM (a graceful stop, which persists state), then SIGKILL after the timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_port(
    port: int,
    timeout_s: float,
    proc: subprocess.Popen[bytes],
    log: Path,
    host: str = "127.0.0.1",
) -> None:
    """Return once something accepts TCP connections on the port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{_tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout_s} s:\n{_tail(log)}")


@dataclass
class Mosquitto:
    """A mosquitto process; `restart()` stops it gracefully (persisting) and starts it again."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    max_queued_messages: int = 200_000
    #: False for a broker that needs logins (its plugin's lines in `extra_conf`).
    allow_anonymous: bool = True
    #: Configuration lines appended as they are: the logins' plugin, a TLS listener.
    extra_conf: str = ""
    #: The address it listens on (another than loopback for hosts in network namespaces).
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """Where clients connect: `mqtt://host:port`."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        """The broker's log file (errors, warnings and notices)."""
        return self.workdir / "mosquitto.log"

    def start(self) -> None:
        """Write the configuration and start the broker; returns once it listens."""
        binary = find_binary("mosquitto")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {str(self.allow_anonymous).lower()}\n"
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {data}/\n"
            "autosave_interval 60\n"
            # Ingest acknowledges in batches: the in-flight window must hold a batch.
            "max_inflight_messages 1000\n"
            f"max_queued_messages {self.max_queued_messages}\n"
            "max_queued_bytes 0\n"
            # as every shipped configuration: ingest's payload limit plus room for the topic
            f"max_packet_size {MAX_PACKET_SIZE}\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + self.extra_conf
        )
        self.proc = subprocess.Popen(  # noqa: S603 -- our binary and our configuration file
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, 15, self.proc, self.log, self.host)

    def stop(self) -> None:
        """Stop it gracefully (it persists its sessions and queues)."""
        terminate(self.proc, 15)
        self.proc = None

    def restart(self) -> None:
        """Stop gracefully and start again on the same port and data."""
        self.stop()
        self.start()


@dataclass
class Influxd:
    """An influxd (1.x) process with authentication off."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    #: The address it listens on (another than loopback for hosts in network namespaces).
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """Its HTTP API: `http://host:port`."""
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        """The file influxd writes its output to."""
        return self.workdir / "influxd.log"

    def start(self) -> None:
        """Write the configuration and start influxd; returns once it answers /ping."""
        binary = find_binary("influxd")
        conf = self.workdir / "influxdb.conf"
        rpc_port = free_port()
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{rpc_port}"\n'
            f'[meta]\n  dir = "{self.workdir}/meta"\n'
            f'[data]\n  dir = "{self.workdir}/data"\n  wal-dir = "{self.workdir}/wal"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "{self.host}:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 -- our binary and our configuration file
                [binary, "-config", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false"},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"influxd exited with {self.proc.returncode}:\n{_tail(self.log)}"
                )
            try:
                # an http:// URL of our own making
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:  # noqa: S310
                    if response.status == 204:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError(f"influxd did not answer /ping:\n{_tail(self.log)}")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 20 s)."""
        terminate(self.proc, 20)
        self.proc = None

"""Real Mosquitto and InfluxDB processes for the integration and end-to-end tests.

The processes are `localservices`' (the benchmarks start the same ones); each runs on a free
loopback port with its own temporary data directory and is stopped by its fixture. Here a
missing binary fails the test run with what to install; it never skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import localservices
from localservices import (
    INSTALL_HINT,
    MAX_PACKET_SIZE,
    PACKET_HEADROOM_BYTES,
    MissingServiceError,
    free_port,
    terminate,
    wait_for_port,
)
from pilots.provision import DYNSEC_FILE

__all__ = [
    "INSTALL_HINT",
    "MAX_PACKET_SIZE",
    "PACKET_HEADROOM_BYTES",
    "Influxd",
    "Mosquitto",
    "dynsec_conf",
    "find_binary",
    "find_dynsec_plugin",
    "free_port",
    "terminate",
    "wait_for_port",
]


def find_binary(name: str) -> str:
    """The path of a service binary, or fail the run saying what to install."""
    try:
        return localservices.find_binary(name)
    except MissingServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


def find_dynsec_plugin() -> str:
    """The path of Mosquitto's dynamic-security plugin, or fail the run saying what to install."""
    name = "mosquitto_dynamic_security.so"
    candidates = [*sorted(Path("/usr/lib").glob(f"*/{name}")), Path("/usr/lib", name)]
    for candidate in [*candidates, Path("/usr/local/lib", name)]:
        if candidate.exists():
            return str(candidate)
    pytest.fail(
        "mosquitto_dynamic_security.so not found: install Debian's mosquitto 2.0 or later "
        "(apt-get install -y mosquitto), which ships the plugin",
        pytrace=False,
    )


def dynsec_conf(auth: Path) -> str:
    """Broker configuration lines that load the logins `pilots devices provision` wrote in `auth`.

    As deploy/mosquitto/mosquitto.conf: the dynamic-security plugin reads them.
    """
    return f"plugin {find_dynsec_plugin()}\nplugin_opt_config_file {auth / DYNSEC_FILE}\n"


class Mosquitto(localservices.Mosquitto):
    """`localservices.Mosquitto`; a missing binary fails the test run."""

    def start(self) -> None:
        try:
            super().start()
        except MissingServiceError as exc:
            pytest.fail(str(exc), pytrace=False)


class Influxd(localservices.Influxd):
    """`localservices.Influxd`; a missing binary fails the test run."""

    def start(self) -> None:
        try:
            super().start()
        except MissingServiceError as exc:
            pytest.fail(str(exc), pytrace=False)

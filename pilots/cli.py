"""The `pilots` command: one entry point for every service and tool.

This module only builds the top-level app and registers the commands of `pilots.commands`, in
the order `pilots --help` lists them. Adding a command is one module there and one line in
`COMMANDS`; no command's options or logic belong here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from pilots.commands import (
    alerts,
    api,
    demo,
    devices,
    ingest,
    publish,
    quarantine,
    report,
    simulate,
    tokens,
)

app = typer.Typer(
    help="Pilot Telemetry: MQTT ingest, InfluxDB storage, aggregation and API for the UTN "
    "IoT pilots. Configure with PILOTS_* environment variables (see pilots.env.example).",
    no_args_is_help=True,
    add_completion=False,
)

#: Each command module's `register`, in the order of `pilots --help`.
COMMANDS: tuple[Callable[[typer.Typer], None], ...] = (
    demo.register,
    ingest.register,
    api.register,
    alerts.register,
    simulate.register,
    report.register,
    publish.register,
    quarantine.register,
    tokens.register,
    devices.register,
)

for register in COMMANDS:
    register(app)


def main() -> None:
    """Entry point for `python -m pilots`."""
    sys.exit(app())

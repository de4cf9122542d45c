"""`pilots demo`: the command's options and handler; the demo itself is `pilots.demo`."""

from __future__ import annotations

import typer

from core.errors import PilotsError
from pilots.commands.common import fail, setup


def demo() -> None:
    """Run everything in one process: broker, simulated fleets, ingest, store and API.

    Uses an in-process MQTT broker unless PILOTS_MQTT_URL names a real one, and the store
    PILOTS_STORE selects (influx or embedded; unset, influx when PILOTS_INFLUX_URL is set, else
    embedded). Serves http://127.0.0.1:8000; Ctrl-C stops it.
    """
    from pilots.demo import run_demo

    settings, registry = setup()
    try:
        run_demo(settings, registry)
    except PilotsError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    """Add `pilots demo`."""
    app.command()(demo)

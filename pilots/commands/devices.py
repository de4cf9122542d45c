"""`pilots devices`: the broker's logins; the commands themselves live in `pilots.devices`."""

from __future__ import annotations

import typer

from pilots.devices import devices_app


def register(app: typer.Typer) -> None:
    """Add `pilots devices` and its commands."""
    app.add_typer(devices_app, name="devices")

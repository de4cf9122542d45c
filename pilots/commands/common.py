"""What every command handler does the same way: settings, logging, errors and stop signals.

Exit codes are decided here for all commands: 2 for a configuration the command cannot start
with, 1 for a failure once running. Nothing here knows any one command.
"""

from __future__ import annotations

import logging
import signal
import threading

import typer

from core.errors import PilotsError
from core.registry import Registry, load_registry
from core.settings import Settings, load_settings


def setup() -> tuple[Settings, Registry]:
    """The settings and the registry, with logging configured; exit 2 if either is invalid."""
    try:
        settings = load_settings()
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        )
        return settings, load_registry(settings.registry)
    except PilotsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def fail(exc: PilotsError) -> typer.Exit:
    """Say what went wrong on stderr; the exit (code 1) for the caller to raise."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def stop_on_signal() -> threading.Event:
    """An event that SIGINT or SIGTERM sets (instead of interrupting the program)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop

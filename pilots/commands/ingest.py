"""`pilots ingest`: the command's handler; the service itself is `ingest.service`."""

from __future__ import annotations

import logging
import signal

import typer

from core.errors import PilotsError
from pilots.commands.common import fail, setup, stop_on_signal

log = logging.getLogger(__name__)


def ingest() -> None:
    """Subscribe to the broker, spool and acknowledge, write to the store; SIGTERM stops it.

    SIGHUP makes it look at the registry file at once (an edited file is also found by itself).

    Serves Prometheus metrics and a health check on PILOTS_INGEST_HTTP_HOST:PORT.
    """
    from core.store import describe_store
    from ingest.service import IngestService

    settings, registry = setup()
    stop = stop_on_signal()
    try:
        log.info("store: %s", describe_store(settings))
        service = IngestService(settings, registry)
        # SIGHUP: look at the registry file now (it is also watched for changes)
        signal.signal(signal.SIGHUP, lambda *_: service.reload_registry())
        service.start()
        while not stop.wait(1):
            pass
        service.stop()
    except PilotsError as exc:
        raise fail(exc) from exc


def register(app: typer.Typer) -> None:
    """Add `pilots ingest`."""
    app.command()(ingest)

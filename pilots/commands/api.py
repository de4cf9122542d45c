"""`pilots api`: the command's options and handler; the application itself is `api.app`."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from core.errors import PilotsError
from pilots.commands.common import fail, setup

#: Seconds uvicorn waits, once stopping, for the responses still open before it cancels them
#: and runs the app's shutdown: a client that stopped reading keeps its connection (and a
#: response with unsent bytes) until then, or until the process is killed.
GRACEFUL_SHUTDOWN_S = 5


def api(
    host: Annotated[str | None, typer.Option(help="bind address [PILOTS_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [PILOTS_API_PORT]")] = None,
    workers: Annotated[
        int | None, typer.Option(help="processes serving the port [PILOTS_API_WORKERS]")
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) over the configured store; SIGTERM stops it.

    Once stopping, open responses get GRACEFUL_SHUTDOWN_S (5 s) to finish; the alarm streams
    end at once.

    An edited registry file (PILOTS_REGISTRY) is taken without a restart, found within
    PILOTS_ALERT_RELOAD_EVERY_S, and at once on SIGHUP; a bad file is refused with its reason
    and the running registry kept. With several workers, SIGHUP restarts them instead.
    """
    import uvicorn

    from api.app import app_from_environment

    settings, _ = setup()
    if workers is None and settings.api_workers == 1:
        # Until the app runs and makes SIGHUP a look at the registry (and after it stops), a
        # SIGHUP must not end the server: the edited file is found by its look anyway.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            app = app_from_environment()  # built here, so that a bad store URL fails now
        except PilotsError as exc:
            raise fail(exc) from exc
        # uvicorn re-raises the signal that stopped it once it has shut down (closing the
        # store); a handler of ours turns that into a clean exit.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        uvicorn.run(
            app,
            host=host or settings.api_host,
            port=port if port is not None else settings.api_port,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        return
    uvicorn.run(
        "api.app:app_from_environment",
        factory=True,
        workers=workers or settings.api_workers,
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def register(app: typer.Typer) -> None:
    """Add `pilots api`."""
    app.command()(api)

"""An in-process MQTT broker (amqtt) for the zero-setup demo, and nothing else.

Tests and deployments use Mosquitto; this exists so that `make demo` needs no service
installed. It runs its own asyncio loop on a background thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class EmbeddedBroker:
    """amqtt on `host:port`, anonymous, started and stopped from synchronous code."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="demo-broker", daemon=True
        )
        self._broker: Any = None

    def start(self, timeout_s: float = 15.0) -> None:
        """Start listening; returns once clients can connect."""
        from amqtt.broker import Broker

        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

        async def boot() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        self._thread.start()
        future: Future[None] = asyncio.run_coroutine_threadsafe(boot(), self._loop)
        future.result(timeout_s)
        log.info("embedded MQTT broker (amqtt) on mqtt://%s:%d", self.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the broker down and end its loop."""
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(timeout_s)
            except Exception:  # shutting down regardless
                log.exception("embedded broker did not shut down cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)

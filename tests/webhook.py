"""A user's webhook receiver for the tests: a real HTTP server on a loopback port.

It checks each notification's HMAC-SHA256 signature as a receiver should, records what came
(idempotency key, event, body) and answers as a test tells it: 204, a refusal (400), busy (503
with Retry-After), or a body that never ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tests.services import free_port


@dataclass(frozen=True)
class Received:
    key: str
    event: str
    body: dict[str, Any]
    signed: bool


class Receiver:
    """A user's webhook receiver: checks the signature, records what came, answers as told."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.port = free_port()
        self.received: list[Received] = []
        self.refuse: set[str] = set()  # keys answered with 400
        self.endless: set[str] = set()  # keys answered with 400 and a body that never ends
        self.busy = 0  # how many requests to answer 503 with Retry-After: 1
        self.statuses: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/pilots"

    def keys(self) -> list[str]:
        with self._lock:
            return [r.key for r in self.received]

    def answer(self, body: bytes, headers: Any) -> tuple[int, dict[str, str]]:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        given = headers.get("X-Pilots-Signature", "")
        key = headers.get("X-Pilots-Idempotency-Key", "")
        with self._lock:
            self.received.append(
                Received(
                    key,
                    headers.get("X-Pilots-Event", ""),
                    orjson.loads(body),
                    hmac.compare_digest(expected, given),
                )
            )
            if key in self.endless:
                status, extra = 400, {"X-Endless": "1"}
            elif key in self.refuse:
                status, extra = 400, {}
            elif self.busy > 0:
                self.busy -= 1
                status, extra = 503, {"Retry-After": "1"}
            else:
                status, extra = 204, {}
            self.statuses.append(status)
        return status, extra

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, extra = receiver.answer(body, self.headers)
                if extra.pop("X-Endless", None):
                    self.send_response(status)
                    self.end_headers()  # no length: the body lasts until the connection ends
                    with contextlib.suppress(OSError):
                        while receiver._server is not None:
                            self.wfile.write(b"x" * 65536)
                            time.sleep(0.01)
                    return
                text = b"unknown pilot" if status == 400 else b""
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

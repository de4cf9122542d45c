"""Ingest's own metrics (Prometheus) and health, served over HTTP at /metrics and /health.

Health turns unhealthy (HTTP 503) when the store has been unreachable, or the broker
disconnected, for longer than `PILOTS_INGEST_UNHEALTHY_AFTER_S`, or while the spool is full;
the body says which. In a shared group it also lists the members, and for each absent one how
long it has been away and whether its session was adopted (`ingest.members`). Metrics carry
the `pilots_ingest_` prefix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class IngestMetrics:
    """Every counter and gauge ingest exports, on a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter("pilots_ingest_messages", "MQTT messages received", registry=r)
        self.acked = Counter(
            "pilots_ingest_acked_messages", "Messages acknowledged to the broker", registry=r
        )
        self.accepted = Counter(
            "pilots_ingest_readings_accepted", "Readings that passed validation", registry=r
        )
        self.refused = Counter(
            "pilots_ingest_refused",
            "Messages or readings quarantined, by reason",
            ["reason"],
            registry=r,
        )
        self.unkept = Counter(
            "pilots_ingest_quarantine_unkept",
            "Refusals counted but no longer kept in the quarantine, by why (cap, age, "
            "store_refused)",
            ["why"],
            registry=r,
        )
        self.duplicates = Counter(
            "pilots_ingest_duplicates", "Retransmitted frames recognised and dropped", registry=r
        )
        self.written = Counter(
            "pilots_ingest_readings_written", "Readings the store accepted", registry=r
        )
        self.write_errors = Counter(
            "pilots_ingest_write_errors",
            "Failed store writes, by class (unavailable, throttled, too_large, rejected, other)",
            ["class"],
            registry=r,
        )
        self.batch_latency = Histogram(
            "pilots_ingest_batch_latency_seconds",
            "From receiving a batch's oldest message to the batch being written",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
            registry=r,
        )
        self.spool_messages = Gauge(
            "pilots_ingest_spool_messages", "Messages in the spool, not yet written", registry=r
        )
        self.spool_bytes = Gauge(
            "pilots_ingest_spool_bytes", "Bytes the spool database uses", registry=r
        )
        self.spool_age = Gauge(
            "pilots_ingest_spool_oldest_age_seconds",
            "Age of the oldest message in the spool",
            registry=r,
        )
        self.spool_full = Gauge(
            "pilots_ingest_spool_full", "1 while the spool is full and acks are held", registry=r
        )
        self.store_up = Gauge(
            "pilots_ingest_store_up", "1 while the store accepts writes", registry=r
        )
        self.broker_up = Gauge(
            "pilots_ingest_broker_connected", "1 while connected to the broker", registry=r
        )

        self.adopted = Counter(
            "pilots_ingest_adopted_messages",
            "Messages taken from absent workers' sessions (what the broker held for them)",
            ["member"],
            registry=r,
        )
        self.adoptions = Counter(
            "pilots_ingest_adoptions",
            "Adoptions of absent workers' sessions, by outcome (drained, interrupted, refused, "
            "unreachable)",
            ["outcome"],
            registry=r,
        )

    def watch_members(self, absent: Callable[[], dict[str, float]]) -> None:
        """Export the shared group's absent members: how many, and each one's absence."""
        self.registry.register(_AbsentMembers(absent))

    def value(self, name: str, **labels: str) -> float:
        """The current value of a sample (0 when it does not exist yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0


class _AbsentMembers(Collector):
    """The shared group's absent members, read from its bookkeeping at each scrape.

    `pilots_ingest_group_absent_members` and `..._member_absent_seconds{member}`: members come
    and go, and a collector leaves no stale label behind.
    """

    def __init__(self, absent: Callable[[], dict[str, float]]) -> None:
        self._absent = absent

    def collect(self) -> Iterable[Metric]:
        absent = self._absent()
        count = GaugeMetricFamily(
            "pilots_ingest_group_absent_members",
            "Members of the shared group this worker sees as absent",
            value=len(absent),
        )
        seconds = GaugeMetricFamily(
            "pilots_ingest_group_member_absent_seconds",
            "How long each absent member of the shared group has been absent",
            labels=["member"],
        )
        for member, absent_s in sorted(absent.items()):
            seconds.add_metric([member], absent_s)
        yield count
        yield seconds


class MetricEvents:
    """The writer's events as metrics and health (see `ingest.writer.Events`)."""

    def __init__(self, metrics: IngestMetrics, health: Health) -> None:
        self.metrics = metrics
        self.health = health

    def accepted(self, readings: int) -> None:
        """Readings passed validation and were written."""
        self.metrics.accepted.inc(readings)

    def refused(self, reason: str) -> None:
        """A message or reading was quarantined."""
        self.metrics.refused.labels(reason).inc()

    def unkept(self, why: str, refusals: int) -> None:
        """Refusals were counted but not kept (or pruned) in the quarantine."""
        self.metrics.unkept.labels(why).inc(refusals)

    def duplicates(self, frames: int) -> None:
        """Retransmitted frames were dropped."""
        self.metrics.duplicates.inc(frames)

    def written(self, readings: int) -> None:
        """The store accepted a write."""
        self.metrics.written.inc(readings)

    def write_error(self, kind: str) -> None:
        """A store write failed."""
        self.metrics.write_errors.labels(kind).inc()

    def latency(self, seconds: float) -> None:
        """A batch was finished this long after its oldest message arrived."""
        self.metrics.batch_latency.observe(seconds)

    def store(self, up: bool) -> None:
        """The store answered, or did not."""
        self.metrics.store_up.set(int(up))
        self.health.store(up)


class Health:
    """Tracks how long the store and the broker have been unreachable."""

    def __init__(self, unhealthy_after_s: float) -> None:
        self.unhealthy_after_s = unhealthy_after_s
        self._store_down_since: float | None = None
        self._broker_down_since: float | None = time.monotonic()
        self.spool_full = False
        #: The shared group's members as this worker sees them, when it is in one.
        self.group: Callable[[], dict[str, dict[str, object]]] | None = None
        self._lock = threading.Lock()

    def store(self, up: bool) -> None:
        """Record whether the last store request succeeded."""
        with self._lock:
            if up:
                self._store_down_since = None
            elif self._store_down_since is None:
                self._store_down_since = time.monotonic()

    def broker(self, up: bool) -> None:
        """Record a connection to, or a disconnection from, the broker."""
        with self._lock:
            if up:
                self._broker_down_since = None
            elif self._broker_down_since is None:
                self._broker_down_since = time.monotonic()

    def check(self) -> tuple[bool, dict[str, object]]:
        """Whether ingest is healthy, and the reasons when it is not."""
        now = time.monotonic()
        problems: list[str] = []
        with self._lock:
            for what, since in (
                ("store", self._store_down_since),
                ("broker", self._broker_down_since),
            ):
                if since is not None and now - since > self.unhealthy_after_s:
                    problems.append(f"{what} unreachable for {now - since:.0f} s")
            if self.spool_full:
                problems.append("spool full: messages are not acknowledged")
        body: dict[str, object] = {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
        }
        if self.group is not None:
            # another member's absence is not this worker's ill health: said, not failed on
            body["members"] = self.group()
        return not problems, body


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_app(metrics: IngestMetrics, health: Health) -> WSGIApp:
    """The WSGI app: /metrics (Prometheus text) and /health (JSON, 200 or 503)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(metrics.registry)]
        if path == "/health":
            ok, body = health.check()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json")],
            )
            return [orjson.dumps(body)]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /health\n"]

    return app


class HttpEndpoint:
    """The /metrics and /health server on a background thread."""

    def __init__(self, host: str, port: int, app: WSGIApp) -> None:
        self._server: WSGIServer = make_server(host, port, app, handler_class=_Quiet)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ingest-http", daemon=True
        )

    def start(self) -> None:
        """Serve until `stop`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

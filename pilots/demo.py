"""`pilots demo`: the whole system in one process on embedded defaults.

An in-process MQTT broker (unless `PILOTS_MQTT_URL` names a real one), the simulated fleets of
the three pilots, ingest over real MQTT/TCP, the store `PILOTS_STORE` selects (`influx` or
`embedded`; unset, InfluxDB when `PILOTS_INFLUX_URL` is set, else the embedded one), the alert
service and the API. Ctrl-C stops it cleanly.

The fleets first publish their history: `PILOTS_DEMO_BACKFILL_HOURS` up to now (3 days unless
set), from the local midnight before so that every day shown is whole, as history packs
(`simulators.history`: a device's six hours in one message, faults and all). The API is announced
only once ingest has stored it (or after `HISTORY_WAIT_S`, saying how far it got), so the first
page a user sees holds whole days. Then the fleets play in real time.

The API publishes San Nicolás (`DEMO_PUBLIC_PILOT`, in the demo only: the shipped registry keeps
every pilot private), so that its dashboard, report and SensorThings data answer without a
token, as a published pilot's do.

Santa Fe's fleet plays the storm scenario (`simulators.storm`), started `DEMO_STORM_AGO_H` hours
ago: the Paraná is over its evacuation level when the demo opens, so the dashboard shows live
alarms; later in the run its gauges fall silent and send a late backlog, as the scenario says.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import tomllib
from collections.abc import Iterator

import uvicorn

from alerts.service import AlertService
from api.app import create_app
from api.auth import TokenStore
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry
from core.settings import Settings
from core.store import Store, describe_store, open_store
from core.timeutil import HOUR_NS, NS_PER_S, datetime_to_ns, ns_to_datetime
from ingest.rollups import RollupMaintainer
from ingest.service import IngestService
from ingest.writer import ROLLUP_NOTES
from pilots.broker import EmbeddedBroker, free_port, port_is_free
from simulators.faults import Faults
from simulators.fleet import Fleet
from simulators.formats import DEFAULT_MIX
from simulators.history import Limits
from simulators.publisher import Publisher, publish_history, run_realtime
from simulators.storm import storm

#: How long ago the demo's storm began: 14 h puts the river past its evacuation level now.
DEMO_STORM_AGO_H = 14
STORM_PILOT = "santa-fe"
#: The pilot the demo's API publishes (readable without a token), to show what that does.
DEMO_PUBLIC_PILOT = "san-nicolas"
#: The alert service's checkpoint (its acknowledgements) with the embedded broker, which waits
#: 5 s for an acknowledgement.
AMQTT_CHECKPOINT_S = 1.0
#: How long the API waits for the history to be stored before it opens anyway.
HISTORY_WAIT_S = 120.0

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _broker(settings: Settings) -> Iterator[Settings]:
    """Yield settings that point at a broker: the configured one, or an embedded one."""
    if settings.mqtt_url:
        log.info("using the broker at %s", settings.mqtt())
        yield settings
        return
    host = "127.0.0.1"
    port = settings.demo_mqtt_port
    if port == 0 or not port_is_free(host, port):
        chosen = free_port(host)
        if port:
            log.warning(
                "port %d is taken; the demo broker uses %d (PILOTS_DEMO_MQTT_PORT)", port, chosen
            )
        port = chosen
    broker = EmbeddedBroker(host, port)
    broker.start()
    try:
        # amqtt speaks MQTT 3.1.1 only; ingest's persistent session works the same there. It
        # gives a subscriber 5 s (hard-coded) to acknowledge a message, and the alert service
        # acknowledges at its checkpoints: after the history's burst, one 5 s apart is too late.
        yield settings.model_copy(
            update={
                "mqtt_url": f"mqtt://{host}:{port}",
                "mqtt_protocol": "3.1.1",
                "alert_checkpoint_every_s": min(
                    settings.alert_checkpoint_every_s, AMQTT_CHECKPOINT_S
                ),
            }
        )
    finally:
        broker.stop()


class _History:
    """How far the demo's history has got: what the fleet published, for ingest to store."""

    def __init__(self, hours: float) -> None:
        self.hours = hours
        self.messages = 0
        self.published = threading.Event()


def _first_midnight(registry: Registry, at_ns: int) -> int:
    """The earliest of the pilots' local midnights that begin the day of `at_ns`."""
    return min(
        datetime_to_ns(
            ns_to_datetime(at_ns, p.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        )
        for p in registry.pilots.values()
    )


def _simulate(
    settings: Settings, registry: Registry, stop: threading.Event, past: _History
) -> None:
    publisher = Publisher(settings.mqtt(), client_id="pilots-demo-fleet")
    try:
        publisher.connect()
        # the realistic fleets: every payload format, and the faults real fleets show; a storm
        now = time.time_ns()
        scenario = None
        if STORM_PILOT in registry.pilots:
            began = (now - DEMO_STORM_AGO_H * HOUR_NS) // HOUR_NS * HOUR_NS
            scenario = storm(registry, [STORM_PILOT], began)
        fleet = Fleet(registry, faults=Faults.realistic(), formats=DEFAULT_MIX, scenario=scenario)
        limits = Limits.of(settings)
        start = now  # no history asked
        if past.hours > 0:
            start = _first_midnight(registry, now - int(past.hours * 3600 * NS_PER_S))
        if start < limits.earliest_ns(now):
            start = limits.earliest_ns(now)
            log.warning(
                "history: %.0f h asked, %.0f h kept: ingest refuses older readings "
                "(PILOTS_INGEST_MAX_AGE_DAYS=%d)",
                past.hours,
                (now - start) / HOUR_NS,
                limits.max_age_days,
            )
        past.hours = (now - start) / HOUR_NS
        log.info("history: publishing the fleets' last %.1f h (from local midnight)", past.hours)
        try:
            past.messages = publish_history(publisher, fleet, start, now, limits=limits, stop=stop)
        finally:
            past.published.set()
        run_realtime(publisher, fleet, stop, start_ns=now)
    except Exception:
        log.exception("the simulated fleet stopped")
    finally:
        past.published.set()
        publisher.close()


def _await_history(
    past: _History,
    ingest: IngestService,
    alerts: AlertService,
    stop: threading.Event,
    notes: RollupMaintainer,
) -> None:
    """Wait until the history is stored and rolled up, and the alerts have seen it.

    The API's cache loads a pilot's hourly rollups at its first request, so they must be there
    before the API opens. Logs how long it took, or how far it got.
    """
    began = time.monotonic()
    deadline = began + HISTORY_WAIT_S
    stored = False
    while not stop.wait(0.1):
        if not stored:
            stored = (
                past.published.is_set()
                and ingest.metrics.value("pilots_ingest_acked_messages_total") >= past.messages
                and alerts.messages >= past.messages
                and ingest.spool.depth().messages == 0
            )
            if stored:
                log.info("history: stored in %.1f s", time.monotonic() - began)
        # the writer notes what it stored (before it leaves the spool) and rolls up when idle
        if stored and notes.pending() == 0:
            log.info(
                "history: %.1f h stored and rolled up in %.1f s (%d messages, %d readings)",
                past.hours,
                time.monotonic() - began,
                past.messages,
                ingest.metrics.value("pilots_ingest_readings_written_total"),
            )
            return
        if time.monotonic() > deadline:
            break
    if stop.is_set():
        return
    log.warning(
        "history: not ready after %.0f s (%s published, %d taken by ingest, %d waiting to be "
        "written, %d readings written, %d rollup cells to compute); the API opens anyway and "
        "fills in as it goes",
        HISTORY_WAIT_S,
        f"{past.messages} messages" if past.published.is_set() else "still being",
        ingest.metrics.value("pilots_ingest_acked_messages_total"),
        ingest.spool.depth().messages,
        ingest.metrics.value("pilots_ingest_readings_written_total"),
        notes.pending(),
    )


def _demo_token(settings: Settings) -> str:
    """A fresh admin token named `demo` for this run (the previous run's is revoked)."""
    tokens = TokenStore.in_data_dir(settings.data_dir)
    tokens.revoke("demo")
    return tokens.create("demo", "admin")


def _published(registry: Registry) -> Registry:
    """The shipped registry with `DEMO_PUBLIC_PILOT` published, for the demo's API only.

    Shows what publishing a pilot does (a stranger reads it without a token) without changing
    the shipped file, where nothing is public. A registry of the operator's own
    (`PILOTS_REGISTRY`) is served as it is.
    """
    if registry.source.resolve() != DEFAULT_REGISTRY_PATH.resolve():
        return registry
    raw = tomllib.loads(registry.source.read_text(encoding="utf-8"))
    if DEMO_PUBLIC_PILOT not in raw.get("pilots", {}):
        return registry
    raw["pilots"][DEMO_PUBLIC_PILOT]["public"] = True
    return build_registry(raw, registry.source)


def _serve(live: Settings, registry: Registry, store: Store) -> None:
    """Announce the API and the dashboard, and serve them until a signal stops uvicorn."""
    shown = _published(registry)
    app = create_app(live, shown, store)
    token = _demo_token(live)
    base = f"http://{live.api_host}:{live.api_port}"
    log.info("API on %s (OpenAPI at %s/docs)", base, base)
    log.info("dashboard: %s/#token=%s", base, token)
    log.info("try: curl -H 'Authorization: Bearer %s' %s/pilots", token, base)
    if shown is not registry:
        log.info(
            "%s is published in the demo: %s/ and %s/sta/v1.1/Things answer without a token",
            DEMO_PUBLIC_PILOT,
            base,
            base,
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=live.api_host,
            port=live.api_port,
            log_level="warning",
            timeout_graceful_shutdown=5,  # as `pilots api`: what a stuck client may delay
        )
    )
    server.run()


def run_demo(settings: Settings, registry: Registry) -> None:
    """Run everything until interrupted."""
    store: Store = open_store(settings, registry)
    store.start()
    log.info("store: %s", describe_store(settings))
    stop = threading.Event()
    with _broker(settings) as live:
        ingest = IngestService(live, registry)
        ingest.start()
        alerts = AlertService(live).start()
        if not ingest.subscribed.wait(30):
            log.warning("ingest has not subscribed yet; the fleet publishes anyway")
        if not alerts.subscribed.wait(30):
            log.warning("the alert service has not subscribed yet; the fleet publishes anyway")
        past = _History(live.demo_backfill_hours)
        fleet = threading.Thread(
            target=_simulate, args=(live, registry, stop, past), name="demo-fleet", daemon=True
        )
        fleet.start()
        # uvicorn re-raises the signal that stopped it once it has shut down; with our handler in
        # place that only sets `stop`, so the rest of the system gets to stop cleanly too.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            notes = RollupMaintainer(live.data_dir / ROLLUP_NOTES, registry)
            try:
                _await_history(past, ingest, alerts, stop, notes)
            finally:
                notes.close()
            if not stop.is_set():
                _serve(live, registry, store)
        finally:
            log.info("stopping the demo")
            stop.set()
            fleet.join(10)
            ingest.stop()
            alerts.stop()
    store.close()

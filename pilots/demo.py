"""`pilots demo`: the whole system in one process on embedded defaults.

An in-process MQTT broker (unless `PILOTS_MQTT_URL` names a real one), the simulated fleets of
the three pilots with a backfill so charts are not empty, ingest over real MQTT/TCP, the store
`PILOTS_STORE` selects (`influx` or `embedded`; unset, InfluxDB when `PILOTS_INFLUX_URL` is set,
else the embedded one), the alert service and the API. Ctrl-C stops it cleanly.

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
from collections.abc import Iterator

import uvicorn

from alerts.service import AlertService
from api.app import create_app
from api.auth import TokenStore
from core.registry import Registry
from core.settings import Settings
from core.store import Store, describe_store, open_store
from core.timeutil import HOUR_NS, NS_PER_S
from ingest.service import IngestService
from pilots.broker import EmbeddedBroker, free_port, port_is_free
from simulators.faults import Faults
from simulators.fleet import Fleet
from simulators.formats import DEFAULT_MIX
from simulators.publisher import Publisher, backfill, run_realtime
from simulators.storm import storm

#: How long ago the demo's storm began: 14 h puts the river past its evacuation level now.
DEMO_STORM_AGO_H = 14
STORM_PILOT = "santa-fe"

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
        # amqtt speaks MQTT 3.1.1 only; ingest's persistent session works the same there.
        yield settings.model_copy(
            update={"mqtt_url": f"mqtt://{host}:{port}", "mqtt_protocol": "3.1.1"}
        )
    finally:
        broker.stop()


def _simulate(settings: Settings, registry: Registry, stop: threading.Event) -> None:
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
        start = now - int(settings.demo_backfill_hours * 3600 * NS_PER_S)
        backfill(publisher, fleet, start, now, stop=stop)
        run_realtime(publisher, fleet, stop, start_ns=now)
    except Exception:
        log.exception("the simulated fleet stopped")
    finally:
        publisher.close()


def _demo_token(settings: Settings) -> str:
    """A fresh admin token named `demo` for this run (the previous run's is revoked)."""
    tokens = TokenStore.in_data_dir(settings.data_dir)
    tokens.revoke("demo")
    return tokens.create("demo", "admin")


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
        fleet = threading.Thread(
            target=_simulate, args=(live, registry, stop), name="demo-fleet", daemon=True
        )
        fleet.start()
        app = create_app(live, registry, store)
        token = _demo_token(live)
        base = f"http://{live.api_host}:{live.api_port}"
        log.info("API on %s (OpenAPI at %s/docs)", base, base)
        log.info("dashboard: %s/#token=%s", base, token)
        log.info("try: curl -H 'Authorization: Bearer %s' %s/pilots", token, base)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=live.api_host,
                port=live.api_port,
                log_level="warning",
                timeout_graceful_shutdown=5,  # as `pilots api`: what a stuck client may delay
            )
        )
        # uvicorn re-raises the signal that stopped it once it has shut down; with our handler in
        # place that only sets `stop`, so the rest of the system gets to stop cleanly too.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            server.run()
        finally:
            log.info("stopping the demo")
            stop.set()
            fleet.join(10)
            ingest.stop()
            alerts.stop()
    store.close()

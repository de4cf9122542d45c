"""`pilots alerts run | list | ack | check`: the alert service, and its alarms for operators.

The service is `alerts.service`, the alarms `alerts.store`; this module reads the options and
prints.
"""

from __future__ import annotations

import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from core.errors import PilotsError
from pilots.commands.common import fail, setup, stop_on_signal

log = logging.getLogger(__name__)

alerts_app = typer.Typer(
    help="Live alerts: the evaluator, alarms, acknowledgement.", no_args_is_help=True
)


@alerts_app.command("run")
def alerts_run() -> None:
    """Evaluate every reading against the alert rules and notify; SIGTERM stops it.

    SIGHUP reloads the rules and the registry at once (they are also watched for changes).
    """
    from alerts.service import AlertService

    settings, _ = setup()
    stop = stop_on_signal()
    try:
        service = AlertService(settings)
        signal.signal(signal.SIGHUP, lambda *_: service.reload())
        log.info(
            "alerts: %d rules (%s); channels: %s",
            len(service.config.rules),
            settings.alert_rules or "the registry's defaults",
            ", ".join(service.outbox.channels) if service.outbox else "none (alarms only)",
        )
        service.start()
        while not stop.wait(1):
            pass
        service.stop()
    except PilotsError as exc:
        raise fail(exc) from exc


@alerts_app.command("check")
def alerts_check(
    rules: Annotated[
        Path | None, typer.Argument(help="the rules file (default: PILOTS_ALERT_RULES)")
    ] = None,
) -> None:
    """Check a rules file against the registry and list the rules it gives."""
    from core.alerts import load_rules

    settings, registry = setup()
    try:
        found = load_rules(rules or settings.alert_rules, registry)
    except PilotsError as exc:
        raise fail(exc) from exc
    for rule in found:
        devices = len(rule.devices)
        typer.echo(f"{rule.id:<40} {rule.kind:<20} {rule.severity:<8} {devices} devices")
    typer.echo(f"{len(found)} rules, valid")


def _when(ns: int | None, tz: str | None = None) -> str:
    if ns is None:
        return "-"
    from zoneinfo import ZoneInfo

    moment = datetime.fromtimestamp(ns / 1e9, ZoneInfo(tz) if tz else None)
    return moment.isoformat(timespec="minutes")


@alerts_app.command("list")
def alerts_list(
    pilot: Annotated[str | None, typer.Option(help="only this pilot's alarms")] = None,
    active: Annotated[bool, typer.Option(help="only active alarms")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
) -> None:
    """The alarms, newest first, in each pilot's local time."""
    from alerts.store import AlarmQuery, AlarmStore

    settings, registry = setup()
    try:
        store = AlarmStore.from_settings(settings)
        try:
            found = store.query(
                AlarmQuery(pilot=pilot, state="active" if active else None, limit=limit)
            )
        finally:
            store.close()
    except PilotsError as exc:
        raise fail(exc) from exc
    if not found:
        typer.echo("no alarms")
        return
    for a in found:
        known = registry.pilots.get(a.pilot)
        tz = known.timezone if known else None
        flags = " late" if a.late else ""
        flags += f" acked by {a.acked_by}" if a.acked_ns is not None else ""
        typer.echo(
            f"{a.id}  {a.state:<7} {a.severity:<8} {a.pilot:<12} {a.device:<10} {a.rule}  "
            f"{_when(a.start_ns, tz)} .. {_when(a.end_ns, tz)}  peak {a.peak:g}{flags}"
        )


@alerts_app.command("ack")
def alerts_ack(
    alarm_id: Annotated[str, typer.Argument(help="the alarm's id (`pilots alerts list`)")],
    by: Annotated[str, typer.Option(help="who acknowledges it")],
    note: Annotated[str, typer.Option(help="a short note kept with it")] = "",
) -> None:
    """Acknowledge an alarm (an alarm acknowledged before keeps its first acknowledgement)."""
    from alerts.store import AlarmStore, UnknownAlarmError

    settings, _ = setup()
    try:
        store = AlarmStore.from_settings(settings)
        try:
            alarm = store.ack(alarm_id, by, note)
        finally:
            store.close()
    except UnknownAlarmError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except PilotsError as exc:
        raise fail(exc) from exc
    typer.echo(f"{alarm.id} acknowledged by {alarm.acked_by} at {_when(alarm.acked_ns)}")


def register(app: typer.Typer) -> None:
    """Add `pilots alerts`."""
    app.add_typer(alerts_app, name="alerts")

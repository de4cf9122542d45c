"""`pilots alerts run` as operators run it, through the faults an operator meets, on the wall clock.

One run of about 70 s, against the session's Mosquitto and a real webhook receiver that is
down for the first 60 s:

- an alarm fires while the receiver is down, and the service is killed with SIGKILL with its
  notification still waiting: after the restart the notification arrives, with the key it had;
- a rule with a 20-second pending duration has its first reading past the level before the
  kill and its second after the restart: one alarm, starting at the first reading (the pending
  run survived the kill), not two and not none;
- a rule's level is moved in the running service's rules file: a reading that did not alarm
  at the old level alarms at the new one;
- a broken rules file is refused with its reason, and the running rules go on working (the
  alarm clears at the edited rule's clear level);
- a backlog three hours old arrives after newer readings: its episode is a late alarm, with its
  real start and end, never a live one;

and when the receiver comes back, every notification arrives: each key at least once, the
same body every time, and exactly the events the alarms imply.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from alerts.store import Alarm, AlarmQuery, AlarmStore
from core.alerts import AlertState
from core.timeutil import NS_PER_MS, NS_PER_S
from tests.helpers import plain, publish, wait_for
from tests.processes import PilotsProcess
from tests.services import Mosquitto
from tests.webhook import Receiver

pytestmark = pytest.mark.e2e

SECRET = "webhook-" + uuid.uuid4().hex
DOWN_S = 60.0

RULES = """
[defaults]
include = false

[[rules]]
id = "live.alert"
kind = "threshold"
pilot = "santa-fe"
sensor = "level"
devices = ["sf-rlv-01"]
level = 5.30
clear_level = 5.25
clear_s = 0

[[rules]]
id = "live.pending"
kind = "threshold"
pilot = "santa-fe"
sensor = "level"
devices = ["sf-rlv-02"]
level = 5.30
pending_s = 20
clear_level = 5.25
clear_s = 0

[[rules]]
id = "live.edit"
kind = "threshold"
pilot = "resistencia"
sensor = "level"
devices = ["rs-rlv-01"]
level = {edit_level}
clear_level = {edit_clear}
clear_s = 0
"""


def level(device: str, pilot: str, ts_ns: int, value: float) -> tuple[str, bytes]:
    return f"pilots/{pilot}/{device}/up", plain(ts_ns // NS_PER_MS, {"level": value})


def alarms_of(data_dir: Path) -> list[Alarm]:
    store = AlarmStore(data_dir / "alerts.sqlite")
    try:
        return store.query(AlarmQuery(limit=100))
    finally:
        store.close()


def saved_last_ts(data_dir: Path, device: str) -> int | None:
    """The newest device time of `device` in the evaluator's saved state."""
    store = AlarmStore(data_dir / "alerts.sqlite")
    try:
        raw = store.saved_state()
    finally:
        store.close()
    if raw is None:
        return None
    state = AlertState.from_bytes(raw)
    if device not in state.device_ids:
        return None
    code = state.device_ids.index(device)
    rows = [int(t) for d, t in zip(state.device, state.last_ts_ns, strict=True) if d == code]
    return max(rows) if rows else None


def test_alerts_survive_a_kill_a_dead_receiver_a_live_edit_and_a_broken_file(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    data = tmp_path / "var"
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.format(edit_level=6.00, edit_clear=5.95))
    receiver = Receiver(SECRET)  # down: nothing listens on its port yet
    env = {
        "PILOTS_MQTT_URL": mosquitto.url,
        "PILOTS_DATA_DIR": str(data),
        "PILOTS_LOG_LEVEL": "INFO",
        "PILOTS_ALERT_RULES": str(rules),
        "PILOTS_ALERT_SESSION_ID": f"alerts-{uuid.uuid4().hex[:8]}",
        "PILOTS_ALERT_WEBHOOK_URL": receiver.url,
        "PILOTS_ALERT_WEBHOOK_SECRET": SECRET,
        "PILOTS_ALERT_RETRY_BASE_S": "0.2",
        "PILOTS_ALERT_RETRY_MAX_S": "2",
        "PILOTS_ALERT_RELOAD_EVERY_S": "0.2",
        "PILOTS_ALERT_CHECKPOINT_EVERY_S": "0.2",
    }
    t = time.time_ns() // NS_PER_S * NS_PER_S
    down_since = time.monotonic()
    service = PilotsProcess(["alerts", "run"], env, tmp_path, "alerts-1")
    try:
        service.wait_for_output("alerts ready", 30)
        # an alarm, and a pending run, before the kill
        publish(
            mosquitto.port,
            [
                level("sf-rlv-01", "santa-fe", t - 100 * NS_PER_S, 5.40),
                level("sf-rlv-02", "santa-fe", t - 90 * NS_PER_S, 5.40),
            ],
        )
        wait_for(lambda: any(a.rule == "live.alert" for a in alarms_of(data)), 20, "the alarm")
        wait_for(
            lambda: saved_last_ts(data, "sf-rlv-02") == t - 90 * NS_PER_S,
            20,
            "the pending run saved",
        )
        assert not receiver.received
        service.stop(signal.SIGKILL)

        service = PilotsProcess(["alerts", "run"], env, tmp_path, "alerts-2")
        service.wait_for_output("alerts ready", 30)
        publish(mosquitto.port, [level("sf-rlv-02", "santa-fe", t - 60 * NS_PER_S, 5.41)])
        wait_for(lambda: any(a.rule == "live.pending" for a in alarms_of(data)), 20, "pending")

        # the level moved in the running service
        publish(mosquitto.port, [level("rs-rlv-01", "resistencia", t - 50 * NS_PER_S, 5.50)])
        rules.write_text(RULES.format(edit_level=5.20, edit_clear=5.15))
        service.wait_for_output("alert rules reloaded", 20)
        publish(mosquitto.port, [level("rs-rlv-01", "resistencia", t - 40 * NS_PER_S, 5.50)])
        wait_for(lambda: any(a.rule == "live.edit" for a in alarms_of(data)), 20, "edited")

        # a broken file is refused; the edited rules keep working
        rules.write_text("[[rules]\nkind = ")
        service.wait_for_output("refused, keeping the running one", 20)
        publish(mosquitto.port, [level("rs-rlv-01", "resistencia", t - 30 * NS_PER_S, 5.10)])
        wait_for(
            lambda: any(a.rule == "live.edit" and not a.active for a in alarms_of(data)),
            20,
            "the edited rule's alarm cleared",
        )

        # a backlog three hours old, after newer readings
        old = t - 3 * 3600 * NS_PER_S
        publish(
            mosquitto.port,
            [
                level("rs-rlv-01", "resistencia", old + i * 600 * NS_PER_S, v)
                for i, v in enumerate((5.60, 5.65, 5.00))
            ],
        )
        wait_for(lambda: len(alarms_of(data)) == 4, 20, "the late alarm")

        left = DOWN_S - (time.monotonic() - down_since)
        assert left > 0, "the steps took longer than the receiver's downtime"
        time.sleep(left)
        receiver.start()
        alarms = {a.rule + ("/late" if a.late else ""): a for a in alarms_of(data)}
        expected_keys = {
            f"{alarms['live.alert'].id}:fired",
            f"{alarms['live.pending'].id}:fired",
            f"{alarms['live.edit'].id}:fired",
            f"{alarms['live.edit'].id}:cleared",
            f"{alarms['live.edit/late'].id}:fired",
            f"{alarms['live.edit/late'].id}:cleared",
        }
        wait_for(lambda: set(receiver.keys()) >= expected_keys, 30, "every notification")
    finally:
        service.stop()
        receiver.stop()

    assert set(receiver.keys()) == expected_keys
    bodies: dict[str, dict[str, Any]] = {}
    for r in receiver.received:
        assert r.signed
        assert bodies.setdefault(r.key, r.body) == r.body  # a resend is the same notification
    assert sorted(alarms) == ["live.alert", "live.edit", "live.edit/late", "live.pending"]
    assert alarms["live.pending"].start_ns == t - 90 * NS_PER_S  # pending survived the kill
    assert alarms["live.edit"].start_ns == t - 40 * NS_PER_S
    assert alarms["live.edit"].level == pytest.approx(5.20)
    assert alarms["live.edit"].end_ns == t - 30 * NS_PER_S
    late = alarms["live.edit/late"]
    assert (late.start_ns, late.end_ns, late.peak) == (old, old + 1200 * NS_PER_S, 5.65)
    assert not any(a.late for k, a in alarms.items() if k != "live.edit/late")
    assert "late" in bodies[f"{late.id}:fired"]["text"]

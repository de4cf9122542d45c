"""Live alerts, the pure core: rules, and their vectorised, incremental evaluation.

- `core.alerts.rules`: the rules file (TOML, checked with pydantic against the registry) and
  the resolved `Rule`; `core.alerts.defaults`: the rules derived from the registry.
- `core.alerts.evaluate`: `Evaluator`, turning `Readings` batches (and the clock, for silent
  devices) into `AlertEvent`s and a new `AlertState` (`core.alerts.state`), which persists as
  bytes. `core.alerts.machine`, `metrics` and `kernels` are its numpy parts.

No I/O here beyond reading a rules file: no MQTT, no store, no clock of its own. The format,
the rule kinds and the late-data rules are in docs/ALERTS.md.
"""

from core.alerts.defaults import default_rules
from core.alerts.evaluate import DEFAULT_LATE_AFTER_S, AlertEvent, Evaluator, alarm_id
from core.alerts.rules import KINDS, SEVERITIES, Rule, load_rules, parse_rules
from core.alerts.state import ActiveAlarm, AlertState, AlertStateError

__all__ = [
    "DEFAULT_LATE_AFTER_S",
    "KINDS",
    "SEVERITIES",
    "ActiveAlarm",
    "AlertEvent",
    "AlertState",
    "AlertStateError",
    "Evaluator",
    "Rule",
    "alarm_id",
    "default_rules",
    "load_rules",
    "parse_rules",
]

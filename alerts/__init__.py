"""Live alerts as a service: evaluation, alarms, and notifications never lost silently.

`alerts.service` is `pilots alerts run`: it reads every device message on a session of its own
(with ingest's decoders and checks), evaluates it with `core.alerts`, and records the events in
`alerts.store` (the alarms, their acknowledgement and change feed, the evaluator's saved state)
and `alerts.outbox` (notifications kept durably until `alerts.channels` delivered them: webhook,
MQTT, e-mail, with backoff). `alerts.message` words them. The package imports `core` and
ingest's reading of messages; the API reads its store. docs/ALERTS.md tells the whole of it.
"""

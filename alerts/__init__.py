"""Alarm notifications, delivered at least once and never lost silently.

`alerts.message` builds a `Notification` (its plain-words text in the pilot's local time);
`alerts.outbox` keeps notifications durably (`Outbox`) and sends them (`Dispatcher`) on the
channels of `alerts.channels` (webhook, MQTT, e-mail), retrying with backoff. This package sits
beside ingest and api: it imports `core` and nothing above it. docs/ALERTS-channels.md tells
the whole of it.
"""

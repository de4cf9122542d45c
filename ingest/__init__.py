"""Ingest: MQTT messages in, validated readings out to the store, refusals to quarantine.

Two processes. The receiver (`ingest.service`) commits each message's raw bytes to a durable
local spool (`ingest.spool`) and only then acknowledges it to the broker. The writer
(`ingest.writer`) takes batches from the spool: decode (one module per payload format,
`ingest.decoders`) → validate against the registry → write to the store (refusals to the
quarantine) → remove from the spool. A crash before the spool's commit means redelivery; after
it, the spool holds the message until the writer has stored it: never loss, never a second
reading (a reading is keyed by pilot, device, sensor and device time).
"""

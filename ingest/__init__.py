"""Ingest: MQTT messages in, validated readings out to the store, refusals to quarantine.

decode (one module per payload format) → validate against the registry → batch → write →
acknowledge. A message is acknowledged to the broker only after its readings are stored and its
refusals quarantined, so a crash before that point means redelivery, never loss.
"""

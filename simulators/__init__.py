"""Simulated device fleets of the three pilots, publishing over MQTT like the real devices.

`signals` holds the per-kind signal models and `faults` the faults real fleets show; `fleet`
turns the registry into timed messages, with `schedule` (when each report is due and what
becomes of it), `values` (what it says) and `formats` (each payload format's encoder, keyed by
the formats `ingest.decoders` registers); `truth` records what a run injected, `publisher`
sends the messages to a broker in real time or as a backfill, `history` regroups a past period
into few large packs (the demo's history, in seconds), `load` sizes a fleet for a rate.
`script` lets a scenario make chosen devices do chosen things at chosen times, and `storm` is
one: a river over its flood levels, a silent gauge and a late backlog, with what must alarm.
"""

"""Simulated device fleets of the three pilots, publishing over MQTT like the real devices.

`signals` holds the per-kind signal models, `fleet` turns the registry into timed messages in
the device contract, `publisher` sends them to a broker in real time or as a backfill.
"""

"""Readings to InfluxDB line protocol, and the schema both directions agree on.

Schema (documented in docs/SCHEMA.md): measurement `readings`, tags `device`, `kind`, `pilot`
(bounded by the registry, sorted as InfluxDB prefers), one float field per sensor, the device's
time as the point time in nanoseconds. A reading is one line; lines of the same device and
time merge into one point, and writing a line again overwrites the same field of that point.
Measurement `uplinks`, same tags and time: integer `received_ns`, `fcnt`, `sf`, float `rssi`,
`snr`, string `gateway`, each only when known.
Registry identifiers are restricted to `[a-z0-9_-]`, so tags and field keys need no escaping.
"""

from __future__ import annotations

import math

import numpy as np

from core.readings import Readings
from core.registry import Registry
from core.uplinks import NO_FCNT, NO_SF, Uplinks

MEASUREMENT = "readings"
UPLINKS = "uplinks"


class LineEncoder:
    """Turns `Readings` into line protocol bytes, with per-registry prefixes built once."""

    def __init__(self, registry: Registry) -> None:
        self._prefix = [
            f"{MEASUREMENT},device={d.id},kind={d.kind},pilot={d.pilot} "
            for d in registry.device_list
        ]
        self._field = [f"{s.id}=" for s in registry.sensor_list]
        self._uplink_prefix = [p.replace(MEASUREMENT, UPLINKS, 1) for p in self._prefix]

    def encode(self, readings: Readings) -> bytes:
        """Line protocol for the batch, one line per reading, newline-separated.

        `repr` of a float is the shortest text that parses back to the same float64, so values
        round-trip exactly. Non-finite values cannot be stored by InfluxDB and are refused.
        """
        if len(readings) == 0:
            return b""
        if not np.isfinite(readings.value).all():
            raise ValueError("line protocol cannot carry NaN or infinite values")
        prefix = self._prefix
        field = self._field
        lines = [
            f"{prefix[d]}{field[s]}{v!r} {t}"
            for d, s, v, t in zip(
                readings.device.tolist(),
                readings.sensor.tolist(),
                readings.value.tolist(),
                readings.ts_ns.tolist(),
                strict=True,
            )
        ]
        return "\n".join(lines).encode()

    def encode_uplinks(self, uplinks: Uplinks) -> bytes:
        """Line protocol for uplinks, one line per row, absent values left out."""
        if len(uplinks) == 0:
            return b""
        prefix = self._uplink_prefix
        lines = []
        for d, t, received, fcnt, rssi, snr, sf, gateway in zip(
            uplinks.device.tolist(),
            uplinks.ts_ns.tolist(),
            uplinks.received_ns.tolist(),
            uplinks.fcnt.tolist(),
            uplinks.rssi.tolist(),
            uplinks.snr.tolist(),
            uplinks.sf.tolist(),
            uplinks.gateway.tolist(),
            strict=True,
        ):
            fields = f"received_ns={received}i"
            if fcnt != NO_FCNT:
                fields += f",fcnt={fcnt}i"
            if not math.isnan(rssi):
                fields += f",rssi={rssi!r}"
            if not math.isnan(snr):
                fields += f",snr={snr!r}"
            if sf != NO_SF:
                fields += f",sf={sf}i"
            if gateway:
                fields += f',gateway="{_escape_string(gateway)}"'
            lines.append(f"{prefix[d]}{fields} {t}")
        return "\n".join(lines).encode()


def _escape_string(text: str) -> str:
    """A string field value as line protocol wants it: backslash and quote escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")

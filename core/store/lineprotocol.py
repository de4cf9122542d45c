"""Readings to InfluxDB line protocol, and the schema both directions agree on.

Schema (documented in docs/SCHEMA.md): measurement `readings`, tags `device`, `kind`, `pilot`
(bounded by the registry, sorted as InfluxDB prefers), one float field per sensor, the device's
time as the point time in nanoseconds. A reading is one line; lines of the same device and
time merge into one point, and writing a line again overwrites the same field of that point.
Measurement `uplinks`, same tags and time: integer `received_ns`, `fcnt`, `sf`, float `rssi`,
`snr`, string `gateway`, each only when known. Measurement `repeats`: the same fields for
transmissions ingest received again and dropped (retransmissions), timed by the repeated
frame's own time (a LoRaWAN retransmission's: when the network server received it again).
Measurements `rollups_1m`, `rollups_1h`, `rollups_1d`: the readings' tags plus `sensor`, the
window start as the point time, every field always written (integer `count`, `first_ts`,
`last_ts`; float `sum`, `m2`, `min`, `max`, `first`, `last`; string `sketch`: the columns of
`core.rollups.COLUMNS`), so a rewrite of a window replaces the whole point. Measurement
`watermarks`: tag `name`, integer field `value`, time 0, so setting a watermark again
overwrites it.
Registry identifiers are restricted to `[a-z0-9_-]`, so tags and field keys need no escaping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import repeat

import numpy as np

from core.readings import Readings
from core.registry import Registry
from core.rollups import SKETCH_COLUMN, VALUE_COLUMNS, Rollups, resolution_ns
from core.uplinks import NO_FCNT, NO_SF, Uplinks

MEASUREMENT = "readings"
UPLINKS = "uplinks"
REPEATS = "repeats"
WATERMARKS = "watermarks"


def rollup_measurement(resolution: str) -> str:
    """The measurement holding rollups of a resolution (`rollups_1h`); refuses unknown ones."""
    resolution_ns(resolution)
    return f"rollups_{resolution}"


class LineEncoder:
    """Turns `Readings` into line protocol bytes, with per-registry prefixes built once."""

    def __init__(self, registry: Registry) -> None:
        self._prefix = [
            f"{MEASUREMENT},device={d.id},kind={d.kind},pilot={d.pilot} "
            for d in registry.device_list
        ]
        self._field = [f"{s.id}=" for s in registry.sensor_list]
        self._uplink_prefix = {
            m: [p.replace(MEASUREMENT, m, 1) for p in self._prefix] for m in (UPLINKS, REPEATS)
        }
        self._sensor_ids = [s.id for s in registry.sensor_list]

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

    def encode_uplinks(self, uplinks: Uplinks, measurement: str = UPLINKS) -> bytes:
        """Line protocol for uplinks (or repeats), one line per row, absent values left out."""
        if len(uplinks) == 0:
            return b""
        prefix = self._uplink_prefix[measurement]
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

    def encode_rollups(self, resolution: str, rollups: Rollups) -> bytes:
        """Line protocol for rollup rows, one line (one whole point) per row."""
        measurement = rollup_measurement(resolution)
        if len(rollups) == 0:
            return b""
        rollups.check_finite()
        # Tags stay sorted: device, kind, pilot, sensor.
        prefix = [
            p.replace(MEASUREMENT, measurement, 1).rstrip() + ",sensor=" for p in self._prefix
        ]
        # A line joins one piece from each of these, in order: text the same on every line, or
        # one column's values as text. The fields are every column of
        # `core.rollups.VALUE_COLUMNS` (integers with their `i`, floats as their exact `repr`),
        # then the sketch. The pieces are laid out once per call: a row costs one join.
        n = len(rollups)
        pieces: list[Iterable[str]] = [
            map(prefix.__getitem__, rollups.device.tolist()),
            map(self._sensor_ids.__getitem__, rollups.sensor.tolist()),
        ]
        separator = " "
        for name, dtype, _ in VALUE_COLUMNS:
            integer = dtype.kind == "i"
            text = str if integer else repr
            pieces += (repeat(f"{separator}{name}=", n), map(text, getattr(rollups, name).tolist()))
            separator = "i," if integer else ","
        pieces += (
            repeat(f'{separator}{SKETCH_COLUMN}="', n),
            rollups.sketch.encode(),  # base64: nothing to escape in a string field
            repeat('" ', n),
            map(str, rollups.start_ns.tolist()),
        )
        return "\n".join(map("".join, zip(*pieces, strict=True))).encode()


def encode_watermark(name: str, value_ns: int) -> bytes:
    """The one line that sets a watermark (the name is a checked identifier)."""
    return f"{WATERMARKS},name={name} value={int(value_ns)}i 0".encode()


def _escape_string(text: str) -> str:
    """A string field value as line protocol wants it: backslash and quote escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")

"""The registry's devices as a fleet that produces timed messages in the device contract.

Each device reports every `interval_s` at a fixed phase of its own (devices do not all speak on
the same second), carries a frame counter, battery voltage and its kind's sensors. Generation
is vectorised per device over a whole time range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zlib import crc32

import numpy as np
import orjson

from core.registry import Device, Registry
from core.timeutil import NS_PER_S
from simulators.signals import SIGNALS, Context, battery

#: Decimal places a real device of this kind would send.
DECIMALS = {"level": 3, "rain": 1, "rain_tips": 0, "ph": 2, "conductivity": 0, "wind_dir": 0}
_DEFAULT_DECIMALS = 2
_TIP_MM = 0.2


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication: when the device sent it, where, and the bytes."""

    ts_ns: int
    topic: str
    payload: bytes


def topic_of(device: Device) -> str:
    """The device contract topic, `pilots/<pilot>/<device>/up`."""
    return f"pilots/{device.pilot}/{device.id}/up"


class Fleet:
    """Devices of the chosen pilots (all by default) with a seed for their noise."""

    def __init__(self, registry: Registry, *, pilots: Sequence[str] = (), seed: int = 0) -> None:
        unknown = set(pilots) - set(registry.pilots)
        if unknown:
            raise ValueError(f"unknown pilots {sorted(unknown)}")
        chosen = set(pilots) or set(registry.pilots)
        self.registry = registry
        self.seed = seed
        self.devices = tuple(d for d in registry.device_list if d.pilot in chosen)
        self._tips = {d.id: crc32(f"{d.id}/{seed}/tips".encode()) % 5000 for d in self.devices}

    def phase_ns(self, device: Device) -> int:
        """The device's reporting phase within its interval."""
        return (crc32(f"{device.id}/{self.seed}/phase".encode()) % device.interval_s) * NS_PER_S

    def report_times(self, device: Device, start_ns: int, end_ns: int) -> np.ndarray:
        """Instants in `[start_ns, end_ns)` at which the device reports."""
        step = device.interval_s * NS_PER_S
        phase = self.phase_ns(device)
        first = -(-(start_ns - phase) // step)
        last = -(-(end_ns - phase) // step)
        return phase + np.arange(first, last, dtype=np.int64) * step

    def messages(self, start_ns: int, end_ns: int) -> list[Message]:
        """Every message the fleet sends in `[start_ns, end_ns)`, in time order."""
        out: list[Message] = []
        for device in self.devices:
            out.extend(self.device_messages(device, start_ns, end_ns))
        out.sort(key=lambda m: m.ts_ns)
        return out

    def device_messages(self, device: Device, start_ns: int, end_ns: int) -> list[Message]:
        """One device's messages in `[start_ns, end_ns)`."""
        times = self.report_times(device, start_ns, end_ns)
        if len(times) == 0:
            return []
        ctx = Context(device, self.registry.pilots[device.pilot], self.seed)
        values = {k: v for k, v in SIGNALS[device.kind](ctx, times).items() if k in device.sensors}
        if "rain_tips" in device.sensors and "rain" in values:
            tips = np.cumsum(np.rint(values["rain"] / _TIP_MM)) + self._tips[device.id]
            self._tips[device.id] = int(tips[-1])
            values["rain_tips"] = tips
        rounded = {
            k: np.round(v, DECIMALS.get(k, _DEFAULT_DECIMALS)).tolist() for k, v in values.items()
        }
        volts = np.round(battery(ctx, times), 3).tolist()
        step = device.interval_s * NS_PER_S
        seqs = ((times // step) % (1 << 32)).tolist()
        topic = topic_of(device)
        names = list(rounded)
        columns = [rounded[k] for k in names]
        return [
            Message(
                ts,
                topic,
                orjson.dumps(
                    {
                        "ts": ts // 1_000_000,
                        "seq": seq,
                        "readings": dict(zip(names, row, strict=True)),
                        "battery_v": volt,
                    }
                ),
            )
            for ts, seq, volt, *row in zip(times.tolist(), seqs, volts, *columns, strict=True)
        ]

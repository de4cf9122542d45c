"""Validation at the edge: decoded frames checked against the registry, once.

A frame from an unknown device, addressed to the wrong pilot, naming another device, or stamped
too far in the future or past is refused whole. Within a good frame each reading stands alone:
an unknown sensor or a non-numeric, non-finite or out-of-range value refuses that reading and
keeps the rest. What passes is a clean `Readings` batch the core can trust without re-checking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from core.readings import Readings
from core.registry import Registry
from core.timeutil import NS_PER_S
from ingest.decoders import Frame
from ingest.reasons import Reason, Rejection


@dataclass(slots=True)
class Checked:
    """The readings that passed and the rejections, of one message."""

    readings: Readings
    rejections: list[Rejection] = field(default_factory=list)


class Validator:
    """Checks frames against one registry with the configured time limits."""

    def __init__(self, registry: Registry, *, max_future_s: int, max_age_days: int) -> None:
        self.registry = registry
        self.max_future_ns = max_future_s * NS_PER_S
        self.max_age_ns = max_age_days * 86_400 * NS_PER_S

    def check(self, frames: list[Frame], received_ns: int) -> Checked:
        """Split the frames' readings into accepted and refused."""
        ts: list[int] = []
        device: list[int] = []
        sensor: list[int] = []
        value: list[float] = []
        rejections: list[Rejection] = []
        for frame in frames:
            refusal = self._frame_refusal(frame, received_ns)
            if refusal is not None:
                rejections.append(refusal)
                continue
            code = self.registry.devices[frame.device].code
            for sensor_id, raw in self._values(frame).items():
                checked = self._value(frame.device, sensor_id, raw)
                if isinstance(checked, Rejection):
                    rejections.append(checked)
                    continue
                ts.append(frame.ts_ns)
                device.append(code)
                sensor.append(checked[0])
                value.append(checked[1])
        readings = Readings.from_arrays(ts, device, sensor, value)
        return Checked(*self._range_checked(readings, rejections))

    def _frame_refusal(self, frame: Frame, received_ns: int) -> Rejection | None:
        known = self.registry.devices.get(frame.device)
        if known is None:
            return Rejection(Reason.UNKNOWN_DEVICE, f"device {frame.device!r} is not registered")
        if frame.claimed_device is not None and frame.claimed_device != frame.device:
            return Rejection(
                Reason.DEVICE_MISMATCH,
                f"payload names device {frame.claimed_device!r}, topic {frame.device!r}",
            )
        if frame.pilot is not None and frame.pilot != known.pilot:
            return Rejection(
                Reason.WRONG_PILOT,
                f"device {frame.device!r} belongs to {known.pilot!r}, not {frame.pilot!r}",
            )
        if frame.ts_ns > received_ns + self.max_future_ns:
            ahead_s = (frame.ts_ns - received_ns) / NS_PER_S
            return Rejection(Reason.FUTURE_TIMESTAMP, f"timestamp {ahead_s:.0f} s in the future")
        if frame.ts_ns < received_ns - self.max_age_ns:
            return Rejection(Reason.TOO_OLD, "timestamp older than the retention window")
        return None

    def _values(self, frame: Frame) -> dict[str, object]:
        if frame.seq is None:
            return frame.values
        return {**frame.values, "fcnt": frame.seq}

    def _value(self, device: str, sensor_id: str, raw: object) -> tuple[int, float] | Rejection:
        sensor = self.registry.sensors.get(sensor_id)
        if sensor is None or sensor_id not in self.registry.devices[device].sensors:
            return Rejection(
                Reason.UNKNOWN_SENSOR,
                f"device {device!r} has no sensor {sensor_id!r}",
                sensor=sensor_id[:64],
            )
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return Rejection(
                Reason.NON_NUMERIC, f"{sensor_id} = {str(raw)[:64]!r} is not a number", sensor_id
            )
        number = float(raw)
        if not math.isfinite(number):
            return Rejection(Reason.NON_FINITE, f"{sensor_id} = {raw} is not finite", sensor_id)
        return sensor.code, number

    def _range_checked(
        self, readings: Readings, rejections: list[Rejection]
    ) -> tuple[Readings, list[Rejection]]:
        low = self.registry.sensor_min[readings.sensor]
        high = self.registry.sensor_max[readings.sensor]
        inside = (readings.value >= low) & (readings.value <= high)
        if inside.all():
            return readings, rejections
        for i in np.flatnonzero(~inside).tolist():
            sensor = self.registry.sensor_list[int(readings.sensor[i])]
            rejections.append(
                Rejection(
                    Reason.OUT_OF_RANGE,
                    f"{sensor.id} = {readings.value[i]!r} outside [{sensor.min}, {sensor.max}]",
                    sensor.id,
                )
            )
        return readings.take(inside), rejections

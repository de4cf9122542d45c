"""Validation at the edge: decoded frames checked against the registry, once.

A frame from an unknown device, addressed to the wrong pilot, naming another device, or stamped
too far in the future or past is refused whole. Within a good frame each reading stands alone:
an unknown sensor, a unit other than the registry's, or a non-numeric, non-finite or
out-of-range value refuses that reading and keeps the rest, and so does a second reading of a
sensor at an instant the message already gave it (`duplicate_record`: stored, it would
overwrite the first point without a trace). What passes becomes plain columns (built into
`Readings` and `Uplinks` once per batch, not per message) that the core can trust without
re-checking.

Devices: a frame a LoRaWAN network server forwarded is matched by its EUI and nothing else; its
name at the network server may only confirm the match. Other frames name the device in their
topic (its registry id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from zlib import crc32

import orjson

from core.registry import Device, Registry
from core.timeutil import DAY_NS, NS_PER_S
from core.uplinks import NO_FCNT, NO_SF
from ingest.decoders import Frame
from ingest.dedupe import FrameCache
from ingest.reasons import Reason, Rejection
from ingest.spool import FrameKey


@dataclass(slots=True)
class Checked:
    """The accepted readings and uplinks of one message as columns, and its rejections.

    `frame_keys` holds the retransmission keys first seen in this message (see
    `ingest.dedupe`), with when they were seen; `duplicates` counts frames dropped as
    retransmissions of frames already taken, and the `rep_*` columns describe each of them
    (stored as repeats, so reports can count them).
    """

    ts_ns: list[int] = field(default_factory=list)
    device: list[int] = field(default_factory=list)
    sensor: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    up_ts_ns: list[int] = field(default_factory=list)
    up_device: list[int] = field(default_factory=list)
    up_fcnt: list[int] = field(default_factory=list)
    up_rssi: list[float] = field(default_factory=list)
    up_snr: list[float] = field(default_factory=list)
    up_sf: list[int] = field(default_factory=list)
    up_gateway: list[str] = field(default_factory=list)
    rep_ts_ns: list[int] = field(default_factory=list)
    rep_device: list[int] = field(default_factory=list)
    rep_fcnt: list[int] = field(default_factory=list)
    rep_rssi: list[float] = field(default_factory=list)
    rep_snr: list[float] = field(default_factory=list)
    rep_sf: list[int] = field(default_factory=list)
    rep_gateway: list[str] = field(default_factory=list)
    frame_keys: list[tuple[FrameKey, int]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0

    @property
    def readings(self) -> int:
        """How many readings were accepted."""
        return len(self.value)


def frame_digest(values: dict[str, object]) -> int:
    """A digest of a frame's values that is the same in every process (unlike `hash`)."""
    try:
        return crc32(orjson.dumps(values, option=orjson.OPT_SORT_KEYS))
    except TypeError:
        return crc32(repr(sorted(values.items(), key=lambda kv: kv[0])).encode())


class Validator:
    """Checks frames against one registry with the configured time limits."""

    def __init__(
        self,
        registry: Registry,
        *,
        max_future_s: int,
        max_age_days: int,
        frames: FrameCache | None = None,
    ) -> None:
        self.registry = registry
        self.frames = frames
        self.max_future_ns = max_future_s * NS_PER_S
        self.max_age_ns = max_age_days * DAY_NS
        self._sensors = {s.id: (s.code, s.min, s.max, s.unit) for s in registry.sensor_list}
        self._allowed = {d.code: frozenset(d.sensors) for d in registry.device_list}
        # Per device: its sensors' (code, min, max, unit), for the common path of _readings.
        self._specs = {
            d.code: {s: self._sensors[s] for s in d.sensors} for d in registry.device_list
        }

    def check(self, frames: list[Frame], received_ns: int, out: Checked | None = None) -> Checked:
        """Split the frames' readings into accepted and refused (appending to `out`).

        `frames` are those of one message. Each accepted frame with a frame counter is an
        uplink of its own; frames without one (a SenML pack's records, a plain JSON array)
        were sent together, so they make one uplink per device, stamped with the latest time.
        """
        out = out if out is not None else Checked()
        uncounted: dict[int, int] = {}  # device code -> its uplink row without a counter
        resolved: dict[tuple[object, ...], Device | Rejection] = {}
        # (device code, ts_ns) -> the readings accepted for that point: the span of `out` the
        # first frame gave, then (from a second frame on) sensor code -> value, kept up to date
        instants: dict[tuple[int, int], tuple[int, int] | dict[int, float]] = {}
        for frame in frames:
            # The frames of one message mostly name the same device: resolve it once.
            key = (frame.device, frame.dev_eui, frame.claimed_device, frame.pilot)
            found = resolved.get(key)
            if found is None:
                refusals: list[Rejection] = []
                found = resolved[key] = self._resolve(frame, refusals) or refusals[0]
            if isinstance(found, Rejection):
                out.rejections.append(replace(found, records=len(frame.values)))
                continue
            device = found
            ts_ns = frame.ts_ns if frame.ts_ns is not None else received_ns + frame.relative_ns
            if not self._time_ok(ts_ns, received_ns, len(frame.values), out.rejections):
                continue
            if self._is_retransmission(frame, device, (ts_ns, received_ns), out):
                continue
            point = (device.code, ts_ns)
            given = instants.get(point)
            if given is None:
                start = len(out.value)
                self._readings(frame, device, ts_ns, out, None)
                instants[point] = (start, len(out.value))
            else:
                if isinstance(given, tuple):
                    given = instants[point] = _taken(out, *given)
                self._readings(frame, device, ts_ns, out, given)
            if frame.seq is None:
                row = uncounted.get(device.code)
                if row is not None:
                    out.up_ts_ns[row] = max(out.up_ts_ns[row], ts_ns)
                    continue
                uncounted[device.code] = len(out.up_ts_ns)
            out.up_ts_ns.append(ts_ns)
            out.up_device.append(device.code)
            out.up_fcnt.append(NO_FCNT if frame.seq is None else frame.seq)
            out.up_rssi.append(math.nan if frame.rssi is None else frame.rssi)
            out.up_snr.append(math.nan if frame.snr is None else frame.snr)
            out.up_sf.append(NO_SF if frame.sf is None else frame.sf)
            out.up_gateway.append(frame.gateway or "")
        return out

    def _is_retransmission(
        self, frame: Frame, device: Device, times: tuple[int, int], out: Checked
    ) -> bool:
        """Whether the frame repeats one already taken (only for receive-time frames).

        `times` are the frame's time and when ingest received it.
        """
        ts_ns, received_ns = times
        if self.frames is None or frame.seq is None:
            return False
        if frame.ts_ns is not None and not frame.time_is_reception:
            return False  # the device's own time makes a repeat the same point anyway
        key = (device.id, frame.seq, frame_digest(frame.values))
        if self.frames.seen_before(key, received_ns):
            out.duplicates += 1
            out.rep_ts_ns.append(ts_ns)
            out.rep_device.append(device.code)
            out.rep_fcnt.append(frame.seq)
            out.rep_rssi.append(math.nan if frame.rssi is None else frame.rssi)
            out.rep_snr.append(math.nan if frame.snr is None else frame.snr)
            out.rep_sf.append(NO_SF if frame.sf is None else frame.sf)
            out.rep_gateway.append(frame.gateway or "")
            return True
        out.frame_keys.append((key, received_ns))
        return False

    def _resolve(self, frame: Frame, rejections: list[Rejection]) -> Device | None:
        device = (
            self._by_eui(frame, rejections)
            if frame.from_network_server
            else self._by_topic(frame, rejections)
        )
        if device is None:
            return None
        claimed = frame.claimed_device
        if (
            claimed is not None
            and claimed not in (device.id, device.lns_id, device.dev_eui)
            and (claimed.lower() != device.dev_eui)
        ):
            rejections.append(
                Rejection(
                    Reason.DEVICE_MISMATCH, f"payload names device {claimed!r}, topic {device.id!r}"
                )
            )
            return None
        if frame.pilot is not None and frame.pilot != device.pilot:
            rejections.append(
                Rejection(
                    Reason.WRONG_PILOT,
                    f"device {device.id!r} belongs to {device.pilot!r}, not {frame.pilot!r}",
                )
            )
            return None
        return device

    def _named(self, name: str | None) -> Device | None:
        """The device a name stands for: a registry id, or an id at the network server."""
        if name is None:
            return None
        return self.registry.devices.get(name) or self.registry.by_lns_id.get(name)

    def _by_topic(self, frame: Frame, rejections: list[Rejection]) -> Device | None:
        """The device a topic names (plain JSON, SenML)."""
        device = self._named(frame.device)
        if device is None:
            rejections.append(
                Rejection(Reason.UNKNOWN_DEVICE, f"device {frame.device!r} is not registered")
            )
        return device

    def _by_eui(self, frame: Frame, rejections: list[Rejection]) -> Device | None:
        """The device of a network server's uplink: the one with its EUI, and no other.

        The network server's name for the device (`device`) only confirms the match: a name
        that is another registry device's is refused, and a registry device without an EUI
        cannot be reached this way at all.
        """
        eui = frame.dev_eui
        named = self._named(frame.device)
        if not eui:
            rejections.append(
                Rejection(
                    Reason.MISSING_DEV_EUI,
                    f"uplink of {frame.device!r} has no EUI: network-server uplinks are matched "
                    "to registry devices by EUI only",
                )
            )
            return None
        device = self.registry.by_dev_eui.get(eui)
        if device is None:
            rejections.append(_unknown_eui(eui, frame.device, named))
            return None
        if named is not None and named.code != device.code:
            rejections.append(
                Rejection(
                    Reason.DEVICE_MISMATCH,
                    f"EUI {eui} is {device.id}, but the name {frame.device!r} is {named.id}",
                )
            )
            return None
        return device

    def _time_ok(
        self, ts_ns: int, received_ns: int, records: int, rejections: list[Rejection]
    ) -> bool:
        """Whether the frame's time is within the limits; `records` is its number of readings."""
        if ts_ns > received_ns + self.max_future_ns:
            ahead_s = (ts_ns - received_ns) / NS_PER_S
            rejections.append(
                Rejection(
                    Reason.FUTURE_TIMESTAMP,
                    f"timestamp {ahead_s:.0f} s in the future",
                    records=records,
                )
            )
            return False
        if ts_ns < received_ns - self.max_age_ns:
            rejections.append(
                Rejection(
                    Reason.TOO_OLD, "timestamp older than the retention window", records=records
                )
            )
            return False
        return True

    def _readings(
        self,
        frame: Frame,
        device: Device,
        ts_ns: int,
        out: Checked,
        taken: dict[int, float] | None,
    ) -> None:
        """Accept or refuse each reading of a frame whose device and time passed.

        `taken` holds the sensors (code -> value) the message already gave at this device and
        instant, None when it gave none.
        """
        specs = self._specs[device.code]
        units = frame.units
        code_of = device.code
        for sensor_id, raw in frame.values.items():
            # The common case, a registered sensor with an in-range number and no unit stated,
            # takes the short way; everything else is checked one rule at a time below.
            spec = specs.get(sensor_id)
            kind = type(raw)
            if (
                spec is not None
                and (kind is float or kind is int)
                and not units
                and spec[1] <= raw <= spec[2]  # type: ignore[operator]
            ):
                number = float(raw)  # type: ignore[arg-type]
                code = spec[0]
            else:
                checked = self._value(device, sensor_id, raw, units)
                if isinstance(checked, Rejection):
                    out.rejections.append(checked)
                    continue
                code, number = checked
            if taken is not None:
                if code in taken:
                    out.rejections.append(_duplicate(sensor_id, number, taken[code]))
                    continue
                taken[code] = number
            out.ts_ns.append(ts_ns)
            out.device.append(code_of)
            out.sensor.append(code)
            out.value.append(number)

    def _value(
        self, device: Device, sensor_id: str, raw: object, units: dict[str, str] | None
    ) -> tuple[int, float] | Rejection:
        """The sensor code and value of one reading, or why it is refused."""
        spec = self._sensors.get(sensor_id)
        if spec is None or sensor_id not in self._allowed[device.code]:
            return Rejection(
                Reason.UNKNOWN_SENSOR,
                f"device {device.id!r} has no sensor {sensor_id[:64]!r}",
                sensor_id[:64],
            )
        code, low, high, unit = spec
        if units and sensor_id in units and units[sensor_id] != unit:
            return Rejection(
                Reason.UNIT_MISMATCH,
                f"{sensor_id} in {units[sensor_id][:32]!r}, the registry says {unit!r}",
                sensor_id,
            )
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return Rejection(
                Reason.NON_NUMERIC, f"{sensor_id} = {str(raw)[:64]!r} is not a number", sensor_id
            )
        number = float(raw)
        if not math.isfinite(number):
            return Rejection(Reason.NON_FINITE, f"{sensor_id} = {raw} is not finite", sensor_id)
        if not low <= number <= high:
            return Rejection(
                Reason.OUT_OF_RANGE, f"{sensor_id} = {number!r} outside [{low}, {high}]", sensor_id
            )
        return code, number


def _unknown_eui(eui: str, name: str | None, named: Device | None) -> Rejection:
    """Why an uplink whose EUI is in no registry device is refused."""
    if named is not None and named.dev_eui:
        return Rejection(
            Reason.DEVICE_MISMATCH,
            f"{named.id} has EUI {named.dev_eui}, the uplink named {name!r} came from {eui}",
        )
    if named is not None:
        return Rejection(
            Reason.UNKNOWN_DEVICE,
            f"no registry device has EUI {eui}; {name!r} is {named.id}, which has no `dev_eui` "
            "in the registry, and a device without one cannot be reached through a network "
            "server (uplinks are matched by EUI only)",
        )
    return Rejection(
        Reason.UNKNOWN_DEVICE,
        f"no registry device has EUI {eui} (named {name!r} at the network server)",
    )


def _taken(out: Checked, start: int, end: int) -> dict[int, float]:
    """Sensor code -> value of the readings in this span of `out`'s accepted columns."""
    return {out.sensor[i]: out.value[i] for i in range(start, end)}


def _duplicate(sensor_id: str, number: float, first: float) -> Rejection:
    """The refusal of a second reading of a sensor at an instant the message already gave it."""
    if number == first:
        detail = f"{sensor_id} = {number!r} repeats a reading of this message at the same time"
    else:
        detail = (
            f"{sensor_id} = {number!r} at a time this message already gave {sensor_id} = "
            f"{first!r} (the first is stored)"
        )
    return Rejection(Reason.DUPLICATE_RECORD, detail, sensor_id)

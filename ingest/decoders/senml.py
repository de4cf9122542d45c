"""SenML JSON (RFC 8428, `application/senml+json`) packs.

Topic `pilots/<pilot>/<device>/senml`. A pack is an array of records. Base fields (`bn`, `bt`,
`bu`, `bv`, `bs`, `bver`) apply to the records after them until changed; a record's name is
`bn` + `n`, its time `bt` + `t` in seconds since the epoch, its value `bv` + `v`. Times below
2**28 s are relative to now (RFC 8428 §4.5.3): they are measured from the moment ingest
receives the pack, so a redelivered pack without absolute times is a new reading (the README
says so).

Names map to sensors: the sensor id is the part after the last `:` or `/` of the name; what comes
before (e.g. `urn:dev:ow:10e2073a01080063:` or `sf-rlv-01/`) names the device and must be the
topic's device, its id at the network server or its EUI. Units, when given, must be the
registry's unit for that sensor (SenML codes such as `Cel` and `%RH` are understood; `/` is a
ratio, RFC 8428 §12.1).
String, boolean and data values (`vs`, `vb`, `vd`) and sum-only records have no place in a
numeric store: each is quarantined as `unsupported_value`, the rest of the pack is kept.

Every record becomes a reading or a refusal. Records may share a name and a time: RFC 8428
§5.1.3 packs a position (`lat`, `lon`) under the name of a measurement that way. Such records
are never merged: each goes to its own frame, so validation keeps the one whose unit is the
registry's, refuses the others as `unit_mismatch`, and refuses a second reading of a sensor at
one instant as `duplicate_record`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

import orjson

from core.timeutil import NS_PER_S
from ingest.decoders.base import (
    INVALID,
    Decoded,
    Frame,
    FrameError,
    Packs,
    kind_of,
    load_json,
)
from ingest.reasons import Reason, Rejection

SUPPORTED_VERSION = 10
RELATIVE_LIMIT_S = 2**28
_MISSING = object()

#: SenML unit codes (RFC 8428 §12.1 and the IANA registry) spelled as the registry spells them.
UNIT_ALIASES = {
    "Cel": "°C",
    "%RH": "%",
    "/": "ratio",  # §12.1: `/` is a dimensionless ratio, not a count
    "ug/m3": "µg/m³",
    "mg/m3": "mg/m³",
    "uS/cm": "µS/cm",
    "mg/l": "mg/L",
    "deg": "°",
}


class _PackError(FrameError):
    """The whole pack is refused (a newer SenML version, RFC 8428 §4.4)."""


_BASE_NUMBERS = ("bt", "bv", "bs")
_BASE_STRINGS = ("bn", "bu")
_BASE_KEYS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_UNSUPPORTED = ("vs", "vb", "vd")
_UNSUPPORTED_KEYS = frozenset(_UNSUPPORTED)
_KNOWN = _BASE_KEYS | _UNSUPPORTED_KEYS | {"n", "u", "v", "s", "t", "ut"}


class _Bases:
    __slots__ = ("bn", "bs", "bt", "bu", "bv")

    def __init__(self) -> None:
        self.bn = ""
        self.bt = 0.0
        self.bu: str | None = None
        self.bv = 0.0
        self.bs = 0.0

    def update(self, record: dict[str, Any]) -> None:
        for key in _BASE_STRINGS:
            if key in record:
                if not isinstance(record[key], str):
                    raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{key}` must be a string")
                setattr(self, key, record[key])
        for key in _BASE_NUMBERS:
            if key in record:
                value = record[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise FrameError(Reason.MALFORMED_STRUCTURE, f"`{key}` must be a number")
                setattr(self, key, float(value))
        version = record.get("bver", SUPPORTED_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise FrameError(Reason.MALFORMED_STRUCTURE, "`bver` must be an integer")
        if version > SUPPORTED_VERSION:
            raise _PackError(
                Reason.MALFORMED_STRUCTURE, f"SenML version {version} is newer than 10"
            )


class _Frames(dict[tuple[str | None, int, int], Frame]):
    """A pack's frames by (claimed device, time, layer), and how many layers each sensor has.

    `layers[(claimed, time, sensor)]` is how often the sensor was stated at that instant so far:
    its next statement goes to that layer (so a pack repeating one reading costs linear time).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers: dict[tuple[str | None, int, str], int] = {}


def decode(topic: str, payload: bytes) -> Decoded:
    """Frames of a SenML pack (one per device and instant); bad records become rejections."""
    out = Decoded()
    levels = topic.split("/")
    if len(levels) != 4 or levels[0] != "pilots" or not all(levels):
        out.rejections.append(
            Rejection(Reason.BAD_TOPIC, f"topic {topic!r} is not pilots/<pilot>/<device>/senml")
        )
        return out
    pilot, device = levels[1], levels[2]
    pack = load_json(payload, out, unique_names=True)
    if pack is INVALID:
        return out
    if not isinstance(pack, list) or not pack:
        detail = "a SenML pack is a non-empty array of records"
        out.rejections.append(
            Rejection(Reason.MALFORMED_STRUCTURE, f"{detail}, got {kind_of(pack)}")
        )
        return out
    frames = _Frames()
    names: dict[str, tuple[str, str | None, str]] = {}
    bases = _Bases()
    for index, record in enumerate(pack):
        try:
            if type(record) is not dict:
                raise FrameError(Reason.MALFORMED_STRUCTURE, f"record is {kind_of(record)}")
            keys = record.keys()
            if not keys <= _KNOWN:
                _check_unknown(index, keys - _KNOWN)
            if not keys.isdisjoint(_BASE_KEYS):
                bases.update(record)
                names.clear()  # names cached under the previous base name
            _record(record, bases, pilot=pilot, device=device, frames=frames, names=names, out=out)
        except _PackError as exc:
            return Decoded(rejections=[replace(exc.rejection, records=len(pack))])
        except FrameError as exc:
            rejection = exc.rejection
            out.rejections.append(
                Rejection(rejection.reason, f"record {index}: {rejection.detail}", rejection.sensor)
            )
    out.frames.extend(frames.values())
    return out


def _check_unknown(index: int, unknown: set[str]) -> None:
    """Unknown fields are ignored, except must-understand ones (ending in `_`)."""
    must_understand = sorted(k for k in unknown if k.endswith("_"))
    if must_understand:
        # RFC 8428 §4.4: a pack with a field the receiver must understand and does not is
        # refused whole.
        raise _PackError(
            Reason.MALFORMED_STRUCTURE,
            f"record {index}: must-understand fields {must_understand} are not supported",
        )


def _record(
    record: dict[str, Any],
    bases: _Bases,
    *,
    pilot: str,
    device: str,
    frames: _Frames,
    names: dict[str, tuple[str, str | None, str]],
    out: Decoded,
) -> None:
    name = record.get("n", "")
    resolved = names.get(name) if type(name) is str else None
    if resolved is None:
        resolved = names[name] = _name(name, bases)
    full, claimed, sensor = resolved
    if not record.keys().isdisjoint(_UNSUPPORTED_KEYS) or ("v" not in record and "s" in record):
        kinds = [k for k in (*_UNSUPPORTED, "s") if k in record]
        out.rejections.append(
            Rejection(
                Reason.UNSUPPORTED_VALUE,
                f"{full}: {'/'.join(kinds)} values are not stored (numeric `v` only)",
                sensor[:64],
            )
        )
        return
    number = _value(record, bases, full)
    when = _time(record, bases, full)
    unit = record.get("u", bases.bu)
    if unit is not None and type(unit) is not str:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"{full}: `u` must be a string")
    time_ns = _time_key(when)
    # A sensor stated again at an instant goes to a frame of its own: the n-th statement to
    # layer n (counted, so that a pack repeating one reading costs linear time, not quadratic).
    layer = frames.layers.get((claimed, time_ns, sensor), 0)
    frames.layers[claimed, time_ns, sensor] = layer + 1
    frame = frames.get((claimed, time_ns, layer))
    if frame is None:
        relative = when < RELATIVE_LIMIT_S
        frame = Frame(
            device=device,
            pilot=pilot,
            ts_ns=None if relative else time_ns,
            relative_ns=time_ns if relative else 0,
            values={},
            claimed_device=claimed,
            units={},
        )
        frames[claimed, time_ns, layer] = frame
    frame.values[sensor] = number
    if unit is not None and frame.units is not None:
        frame.units[sensor] = UNIT_ALIASES.get(unit, unit)


def _name(name: object, bases: _Bases) -> tuple[str, str | None, str]:
    """The record's full name, the device its prefix names (if any), and the sensor."""
    if not isinstance(name, str):
        raise FrameError(Reason.MALFORMED_STRUCTURE, "`n` must be a string")
    full = bases.bn + name
    cut = max(full.rfind(":"), full.rfind("/"))
    sensor = full[cut + 1 :]
    if not sensor:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"name {full!r} names no sensor")
    return full, _device_part(full[: cut + 1]) if cut >= 0 else None, sensor


def _value(record: dict[str, Any], bases: _Bases, full: str) -> object:
    """`bv` + `v`; a value that is not a number is passed on for validation to refuse."""
    value = record.get("v", _MISSING)
    kind = type(value)
    if kind is float or kind is int:
        return bases.bv + value
    if value is _MISSING:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"{full}: no value")
    return value


def _time(record: dict[str, Any], bases: _Bases, full: str) -> float:
    """`bt` + `t`, in seconds."""
    offset = record.get("t", 0)
    kind = type(offset)
    if kind is not float and kind is not int:
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"{full}: `t` must be a number")
    when = bases.bt + float(offset)
    if not math.isfinite(when):
        raise FrameError(Reason.MALFORMED_STRUCTURE, f"{full}: time is not finite")
    return when


def _time_key(seconds: float) -> int:
    """Nanoseconds of a SenML time, split so that the float's precision is not lost."""
    whole = math.floor(seconds)
    return whole * NS_PER_S + round((seconds - whole) * NS_PER_S)


def _device_part(prefix: str) -> str | None:
    """The device named by a name prefix such as `urn:dev:ow:10e2073a01080063:` or `dev/`."""
    text = prefix.rstrip(":/")
    if text.startswith("urn:dev:"):
        text = text.split(":")[-1]
    return text or None


# -- column-wise: the common pack, read straight into columns ----------------------------------

#: The fields a simple pack's first record may hold, and the others.
_SIMPLE_FIRST = frozenset({"bn", "bt", "bu", "bv", "bver", "n", "u", "v", "t"})
_SIMPLE_REST = frozenset({"n", "u", "v", "t"})
_NUMBER_TYPES = frozenset({float, int})
_STR = frozenset({str})
_DICT = frozenset({dict})


def read_pack(topic: str, payload: bytes, packs: Packs, index: int, received_ns: int) -> bool:
    """Append a simple pack to `packs` (`ingest.decoders.base.PackReader`).

    Simple: a non-empty array of objects; base fields (`bn`, `bt`, `bu`, `bv`, `bver` up to 10)
    only in the first record; every record a numeric `v`, an optional numeric `t`, a string
    `n` and `u`, and nothing else; no JSON name repeated; every name's device part, if any,
    the same; each number an exact float. Such a pack is what `decode` reads without a
    refusal of its own, so it can be checked column-wise; anything else (including every pack
    `decode` would refuse a part of) returns False, and `decode` reads it record by record.
    The per-record work is a few list comprehensions and C-level type sets.
    """
    levels = topic.split("/")
    if len(levels) != 4 or levels[0] != "pilots" or not all(levels):
        return False
    try:
        pack = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if type(pack) is not list or not pack or not set(map(type, pack)) <= _DICT:
        return False
    columns = _columns(payload, pack)
    if columns is None:
        return False
    base = len(packs.slot_sensor)
    slots = _slots(packs, columns)
    if slots is None:
        del packs.slot_sensor[base:], packs.slot_unit[base:]
        return False
    claimed, slot_of = slots
    packs.slot.extend([slot_of[k] for k in columns.keys])
    packs.value.extend(columns.values)
    packs.time.extend(columns.times)
    packs.message.append(index)
    packs.device.append(levels[2])
    packs.pilot.append(levels[1])
    packs.claimed.append(claimed)
    packs.base_time.append(float(columns.bt))
    packs.base_value.append(float(columns.bv))
    packs.received_ns.append(received_ns)
    packs.readings.append(len(pack))
    packs.slots.append(len(slot_of))
    return True


class _Columns(NamedTuple):
    """A simple pack's bases and columns: name (or name and unit) keys, values, times."""

    bn: str
    bt: float
    bv: float
    bu: str | None
    keys: list[Any]
    values: list[float]
    times: list[float]
    stated: bool


def _columns(payload: bytes, pack: list[Any]) -> _Columns | None:
    """The columns of a pack of objects, or None if it is not simple (see `read_pack`)."""
    first = pack[0]
    if not first.keys() <= _SIMPLE_FIRST or not set().union(*pack[1:]) <= _SIMPLE_REST:
        return None
    bn = first.get("bn", "")
    bt = first.get("bt", 0.0)
    bv = first.get("bv", 0.0)
    bu = first.get("bu")
    version = first.get("bver", SUPPORTED_VERSION)
    if (
        type(bn) is not str
        or type(bt) not in _NUMBER_TYPES
        or type(bv) not in _NUMBER_TYPES
        or ("bu" in first and type(bu) is not str)
        or type(version) is not int
        or version > SUPPORTED_VERSION
        or not _exact([bt, bv])
    ):
        return None
    names = [r.get("n", "") for r in pack]
    values = [r.get("v") for r in pack]
    times = [r.get("t", 0.0) for r in pack]
    value_types = set(map(type, values))
    time_types = set(map(type, times))
    stated = [r["u"] for r in pack if "u" in r]
    if (
        not set(map(type, names)) <= _STR
        or not value_types <= _NUMBER_TYPES
        or not time_types <= _NUMBER_TYPES
        or (int in value_types and not _exact(values))
        or (int in time_types and not _exact(times))
        or not set(map(type, stated)) <= _STR
        or not _names_unique(payload, pack, [bn, bu or "", *names, *stated])
    ):
        return None
    # Keyed by name, or by name and unit where records state their own.
    keys = names if not stated else list(zip(names, [r.get("u", bu) for r in pack], strict=True))
    return _Columns(bn, bt, bv, bu, keys, values, times, bool(stated))


def _slots(packs: Packs, columns: _Columns) -> tuple[str | None, dict[Any, int]] | None:
    """Append a slot per distinct key; the device the names claim and each key's slot.

    None (slots left half-appended for the caller to cut) for a name that names no sensor, a
    sensor under two names or units, or names of two devices: `decode` reads such packs.
    """
    slot_of: dict[Any, int] = {}
    claimed: set[str | None] = set()
    sensors: set[str] = set()
    base = len(packs.slot_sensor)
    for key in dict.fromkeys(columns.keys):
        name, unit = key if columns.stated else (key, columns.bu)
        full = columns.bn + name
        cut = max(full.rfind(":"), full.rfind("/"))
        sensor = full[cut + 1 :]
        claimed.add(_device_part(full[: cut + 1]) if cut >= 0 else None)
        if not sensor or sensor in sensors or len(claimed) > 1:
            return None
        sensors.add(sensor)
        slot_of[key] = base + len(slot_of)
        packs.slot_sensor.append(sensor)
        packs.slot_unit.append(None if unit is None else UNIT_ALIASES.get(unit, unit))
    return claimed.pop(), slot_of


def _names_unique(payload: bytes, pack: list[dict[str, Any]], strings: list[str]) -> bool:
    """Whether no object of a flat pack repeats a name (`load_json`'s check, for flat packs).

    Every `:` of the payload separates a member or sits in a string; the strings of a simple
    pack are its names, units and base name and unit (`strings`). A payload with escapes is
    left to `decode`, whose check reads them.
    """
    colons = payload.count(b":")
    members = sum(map(len, pack))
    if colons == members:
        return True
    if b"\\u" in payload:
        return False
    return colons == members + sum(s.count(":") for s in strings)


def _exact(numbers: list[Any]) -> bool:
    """Whether each number is a float, or an integer a float holds exactly (no rounding)."""
    try:
        return all(type(x) is float or float(x) == x for x in numbers)
    except OverflowError:
        return False

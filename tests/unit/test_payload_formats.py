"""The payload formats, described once: ingest's table, the simulators' encoders and the logins.

`ingest.decoders.PAYLOAD_FORMATS` is the one description of each format; the simulators attach
an encoder to each by name, and the default routes of the settings (core, which cannot import
ingest) repeat the formats' routes. These tests keep every side in step with the table.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pilots.provision
from core.registry import Device
from core.settings import Settings
from ingest.decoders import (
    FORMATS,
    LORAWAN_FORMATS,
    PAYLOAD_FORMATS,
    PayloadFormat,
    Router,
    _by_name,
    default_routes,
    topic_matches,
)
from simulators.formats import ENCODERS, LORAWAN, Uplink
from simulators.formats import FORMATS as SIMULATED

from .helpers import shipped_registry

UPLINK = Uplink(
    ts_ns=1_731_639_600_000_000_000,
    seq=7,
    values={"level": 2.5},
    battery_v=3.61,
    rssi=-97.0,
    snr=6.5,
    sf=9,
)


def _device() -> Device:
    """A registry device every format can send for: it has a `dev_eui`."""
    return next(d for d in shipped_registry().device_list if d.dev_eui and "level" in d.sensors)


def test_every_registered_format_has_an_encoder_and_every_encoder_a_format() -> None:
    assert list(ENCODERS) == list(PAYLOAD_FORMATS)


def test_the_views_of_the_table_follow_it() -> None:
    assert list(FORMATS) == list(PAYLOAD_FORMATS)
    assert all(FORMATS[name] is f.decode for name, f in PAYLOAD_FORMATS.items())
    assert all(name == f.name for name, f in PAYLOAD_FORMATS.items())
    lorawan = {name for name, f in PAYLOAD_FORMATS.items() if f.lorawan}
    # provision's own import, read on purpose although it does not re-export it
    assert LORAWAN_FORMATS == LORAWAN == pilots.provision.LORAWAN_FORMATS == lorawan  # type: ignore[attr-defined]
    assert tuple(PAYLOAD_FORMATS) == SIMULATED


def test_the_default_settings_route_every_format_on_its_route() -> None:
    field = Settings.model_fields["ingest_routes"]
    assert field.get_default(call_default_factory=True) == default_routes()


@pytest.mark.parametrize("name", list(PAYLOAD_FORMATS))
def test_the_simulated_topic_is_on_the_route_and_reaches_the_decoder(name: str) -> None:
    fmt = PAYLOAD_FORMATS[name]
    topic = ENCODERS[name].topic(_device())
    assert topic_matches(fmt.route, topic)
    assert Router(default_routes()).decoder_for(topic) is fmt.decode


@pytest.mark.parametrize("name", list(PAYLOAD_FORMATS))
def test_lorawan_is_what_the_decoder_makes_of_the_simulated_message(name: str) -> None:
    fmt, encoder = PAYLOAD_FORMATS[name], ENCODERS[name]
    device = _device()
    decoded = fmt.decode(encoder.topic(device), encoder.encode(device, UPLINK))
    assert decoded.rejections == []
    assert decoded.frames
    assert all(frame.from_network_server is fmt.lorawan for frame in decoded.frames)
    assert all(frame.time_is_reception is fmt.lorawan for frame in decoded.frames)
    # an encoder said to carry a frame counter does, and one said not to does not
    assert {frame.seq for frame in decoded.frames} == ({UPLINK.seq} if encoder.counted else {None})


@pytest.mark.parametrize(
    ("name", "route"), [("plain", "other/+/up"), ("other", "pilots/+/+/up")], ids=["name", "route"]
)
def test_a_name_or_route_is_registered_once(name: str, route: str) -> None:
    plain = PAYLOAD_FORMATS["plain"]
    with pytest.raises(ValueError, match="registered twice"):
        _by_name(plain, PayloadFormat(name, route, plain.decode))


def test_ingest_loads_no_simulator() -> None:
    code = (
        "import sys, ingest.decoders, ingest.service; "
        "sys.exit(any(m.split('.')[0] == 'simulators' for m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0

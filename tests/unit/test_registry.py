"""The pilot/device registry: the shipped file and the errors an operator sees when editing it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, RegistryError
from core.registry import load_registry

from .helpers import shipped_registry

# A small valid registry; each error test below changes one thing in it.
MINIMAL = """
[sensors.level]
name = "River level"
unit = "m"
min = -1.0
max = 15.0

[sensors.battery_v]
name = "Battery voltage"
unit = "V"
min = 0.0
max = 5.0

[sensors.fcnt]
name = "Frame counter"
unit = "count"
min = 0.0
max = 4294967295.0
meta = true

[kinds.river_level]
name = "River level gauge"
sensors = ["level"]
interval_s = 600

[pilots.town]
name = "Town"
timezone = "America/Argentina/Cordoba"

[pilots.town.thresholds.level]
alert = 2.0

[[pilots.town.devices]]
id = "tw-rlv-01"
kind = "river_level"
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return load_registry(path)


def _refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(RegistryError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert str(tmp_path / "registry.toml") in message  # the operator is told which file
    return message


# --- the shipped registry ----------------------------------------------------------------------


def test_shipped_registry_has_the_three_pilots() -> None:
    reg = shipped_registry()
    assert set(reg.pilots) == {"santa-fe", "san-nicolas", "resistencia"}
    assert reg.pilots["santa-fe"].timezone == "America/Argentina/Cordoba"
    assert reg.pilots["resistencia"].timezone == "America/Argentina/Cordoba"
    assert reg.pilots["san-nicolas"].timezone == "America/Argentina/Buenos_Aires"


def test_shipped_registry_devices_belong_to_their_pilots() -> None:
    reg = shipped_registry()
    ids = {p: {d.id for d in pilot.devices} for p, pilot in reg.pilots.items()}
    assert ids["santa-fe"] == {
        "sf-rlv-01",
        "sf-rlv-02",
        "sf-rg-01",
        "sf-rg-02",
        "sf-rg-03",
        "sf-wx-01",
        "sf-wx-02",
    }
    assert ids["san-nicolas"] == {
        "sn-aq-01",
        "sn-aq-02",
        "sn-aq-03",
        "sn-aq-04",
        "sn-aq-05",
        "sn-wx-01",
        "sn-wx-02",
    }
    assert ids["resistencia"] == {
        "rs-wq-01",
        "rs-wq-02",
        "rs-wq-03",
        "rs-rlv-01",
        "rs-rg-01",
        "rs-rg-02",
        "rs-wx-01",
    }
    for pilot_id, pilot in reg.pilots.items():
        for device in pilot.devices:
            assert device.pilot == pilot_id
            assert reg.devices[device.id] is device


def test_codes_index_the_lists() -> None:
    reg = shipped_registry()
    assert [d.code for d in reg.device_list] == list(range(len(reg.device_list)))
    assert [s.code for s in reg.sensor_list] == list(range(len(reg.sensor_list)))
    for device in reg.device_list:
        assert reg.pilot_list[int(reg.device_pilot[device.code])].id == device.pilot
    assert reg.device_codes(["sf-rlv-01", "rs-wx-01"]).tolist() == [
        reg.devices["sf-rlv-01"].code,
        reg.devices["rs-wx-01"].code,
    ]


def test_shipped_flood_thresholds() -> None:
    reg = shipped_registry()
    santa_fe = {(t.sensor, t.name): t.value for t in reg.pilots["santa-fe"].thresholds}
    resistencia = {(t.sensor, t.name): t.value for t in reg.pilots["resistencia"].thresholds}
    assert santa_fe == {("level", "alert"): 5.30, ("level", "evacuation"): 5.70}
    assert resistencia == {("level", "alert"): 6.00, ("level", "evacuation"): 6.50}
    assert reg.pilots["san-nicolas"].thresholds == ()


def test_every_device_reports_battery_and_frame_counter() -> None:
    reg = shipped_registry()
    for device in reg.device_list:
        assert "battery_v" in device.sensors, device.id
        assert "fcnt" in device.sensors, device.id
        allowed = reg.device_sensor_allowed[device.code]
        assert allowed[reg.sensors["battery_v"].code]
        assert allowed[reg.sensors["fcnt"].code]


def test_device_sensors_and_intervals_follow_kind_and_overrides() -> None:
    reg = shipped_registry()
    level = reg.devices["sf-rlv-01"]
    assert level.kind == "river_level"
    assert set(level.sensors) == {"level", "water_temp", "battery_v", "fcnt"}
    assert level.interval_s == 600
    # sf-wx-01 lists only three of the weather kind's sensors
    assert set(reg.devices["sf-wx-01"].sensors) == {
        "temperature",
        "humidity",
        "pressure",
        "battery_v",
        "fcnt",
    }
    assert "wind_speed" in reg.devices["sn-wx-01"].sensors
    assert reg.devices["rs-wq-01"].interval_s == 900
    assert reg.devices["sn-aq-01"].interval_s == 300
    allowed = reg.device_sensor_allowed
    assert not allowed[level.code, reg.sensors["pm25"].code]
    assert allowed[reg.devices["sn-aq-01"].code, reg.sensors["pm25"].code]
    # each row allows exactly the device's sensors
    assert allowed.sum(axis=1).tolist() == [len(d.sensors) for d in reg.device_list]


def test_sensor_ranges_as_arrays() -> None:
    reg = shipped_registry()
    level = reg.sensors["level"]
    assert (level.min, level.max, level.unit) == (-1.0, 15.0, "m")
    assert reg.sensor_min[level.code] == -1.0
    assert reg.sensor_max[level.code] == 15.0
    assert np.all(reg.sensor_min < reg.sensor_max)
    assert reg.sensors["pm25"].guideline_24h == 15.0


def test_pilot_sensors_are_what_its_devices_report() -> None:
    reg = shipped_registry()
    for pilot in reg.pilot_list:
        reported = {s for d in pilot.devices for s in d.sensors}
        assert set(pilot.sensors) == reported
    assert "pm25" in reg.pilots["san-nicolas"].sensors
    assert "pm25" not in reg.pilots["santa-fe"].sensors


def test_minimal_document_loads(tmp_path: Path) -> None:
    reg = _load(tmp_path, MINIMAL)
    assert list(reg.pilots) == ["town"]
    device = reg.devices["tw-rlv-01"]
    assert device.sensors == ("level", "battery_v", "fcnt")
    assert reg.pilots["town"].thresholds[0].value == 2.0


# --- errors the operator sees --------------------------------------------------------------------


def test_unknown_kind(tmp_path: Path) -> None:
    message = _refused(tmp_path, MINIMAL.replace('kind = "river_level"', 'kind = "sonar"'))
    assert "unknown kind 'sonar'" in message
    assert "pilots.town.devices[0]" in message


def test_unknown_sensor_in_a_kind(tmp_path: Path) -> None:
    message = _refused(tmp_path, MINIMAL.replace('sensors = ["level"]', 'sensors = ["lvl"]'))
    assert "unknown sensor 'lvl'" in message
    assert "kinds.river_level" in message


def test_unknown_sensor_in_a_device(tmp_path: Path) -> None:
    text = MINIMAL + 'sensors = ["level", "salinity"]\n'
    message = _refused(tmp_path, text)
    assert "unknown sensor 'salinity'" in message
    assert "pilots.town.devices[0]" in message


def test_unknown_sensor_in_thresholds(tmp_path: Path) -> None:
    message = _refused(
        tmp_path, MINIMAL.replace("[pilots.town.thresholds.level]", "[pilots.town.thresholds.lvl]")
    )
    assert "unknown sensor 'lvl'" in message
    assert "thresholds" in message


def test_duplicate_device_id(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[pilots.town.devices]]\nid = "tw-rlv-01"\nkind = "river_level"\n'
    message = _refused(tmp_path, text)
    assert "duplicate id 'tw-rlv-01'" in message
    assert "pilots.town.devices[1]" in message


def test_duplicate_device_id_across_pilots(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[pilots.other]\nname = "Other"\ntimezone = "UTC"\n'
        '[[pilots.other.devices]]\nid = "tw-rlv-01"\nkind = "river_level"\n'
    )
    message = _refused(tmp_path, text)
    assert "duplicate id 'tw-rlv-01'" in message
    assert "pilots.other" in message


def test_bad_time_zone(tmp_path: Path) -> None:
    message = _refused(
        tmp_path, MINIMAL.replace("America/Argentina/Cordoba", "America/Santa_Fe_Capital")
    )
    assert "pilots.town.timezone" in message
    assert "America/Santa_Fe_Capital" in message


@pytest.mark.parametrize(("low", "high"), [("5.0", "1.0"), ("2.0", "2.0")])
def test_min_not_below_max(tmp_path: Path, low: str, high: str) -> None:
    text = MINIMAL.replace("min = -1.0\nmax = 15.0", f"min = {low}\nmax = {high}")
    message = _refused(tmp_path, text)
    assert "sensors.level" in message
    assert "must be below max" in message


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('id = "tw-rlv-01"', 'id = "TW-RLV-01"', "pilots.town.devices.0.id"),
        ('id = "tw-rlv-01"', 'id = "tw rlv 01"', "pilots.town.devices.0.id"),
        ('id = "tw-rlv-01"', 'id = "tw-rlv-01\\n"', "pilots.town.devices.0.id"),
        ('id = "tw-rlv-01"', 'id = "tw,rlv=01"', "pilots.town.devices.0.id"),
        ('id = "tw-rlv-01"', 'id = "-tw"', "pilots.town.devices.0.id"),
        ("[pilots.town]", '[pilots."Town Centre"]', "Town Centre"),
        ("[sensors.level]", '[sensors."Level"]', "sensors.Level"),
    ],
)
def test_bad_identifier(tmp_path: Path, old: str, new: str, where: str) -> None:
    text = MINIMAL.replace(old, new)
    if old.startswith("[pilots.town]"):
        text = text.replace("pilots.town.", 'pilots."Town Centre".')
    message = _refused(tmp_path, text)
    assert where in message
    assert "pattern" in message


def test_common_sensor_must_be_defined(tmp_path: Path) -> None:
    text = MINIMAL.replace("[sensors.fcnt]", "[sensors.frames]")
    message = _refused(tmp_path, text)
    assert "'fcnt'" in message


def test_listing_a_common_sensor_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, MINIMAL.replace('sensors = ["level"]', 'sensors = ["fcnt"]'))
    assert "'fcnt'" in message
    assert "kinds.river_level" in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, MINIMAL.replace('unit = "m"', 'unit = "m"\nunits = "m"'))
    assert "sensors.level.units" in message


def test_not_toml(tmp_path: Path) -> None:
    message = _refused(tmp_path, "[sensors\n")
    assert "cannot read registry" in message


def test_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="PILOTS_REGISTRY"):
        load_registry(tmp_path / "nope.toml")


def test_registry_errors_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _load(tmp_path, MINIMAL.replace('kind = "river_level"', 'kind = "sonar"'))

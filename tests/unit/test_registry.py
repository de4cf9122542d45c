"""The pilot/device registry: the shipped file and the errors an operator sees when editing it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, RegistryError
from core.registry import COMMON_SENSORS, Registry, load_registry

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


def _load(tmp_path: Path, text: str) -> Registry:
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


def test_every_device_reports_battery_and_the_frame_counter_is_not_a_sensor() -> None:
    reg = shipped_registry()
    assert COMMON_SENSORS == ("battery_v",)
    assert "fcnt" not in reg.sensors  # frame counters travel with the uplink, not as readings
    for device in reg.device_list:
        assert "battery_v" in device.sensors, device.id
        assert reg.device_sensor_allowed[device.code, reg.sensors["battery_v"].code]


def test_every_shipped_device_has_its_own_eui_and_is_found_by_it() -> None:
    reg = shipped_registry()
    assert reg.devices["sf-rlv-01"].dev_eui == "a840410001010101"
    assert reg.by_dev_eui["a840410001010101"] is reg.devices["sf-rlv-01"]
    assert reg.by_dev_eui["a840410003040101"] is reg.devices["rs-wq-01"]
    assert len(reg.by_dev_eui) == len(reg.device_list)
    for device in reg.device_list:
        assert device.dev_eui is not None, device.id
        assert device.dev_eui == device.dev_eui.lower(), device.id
        assert len(device.dev_eui) == 16, device.id
        assert device.lns_id is None, device.id
        assert reg.by_dev_eui[device.dev_eui] is device
        assert reg.by_lns_id[device.id] is device  # no lns_id: known at the LNS by its id


def test_device_sensors_and_intervals_follow_kind_and_overrides() -> None:
    reg = shipped_registry()
    level = reg.devices["sf-rlv-01"]
    assert level.kind == "river_level"
    assert set(level.sensors) == {"level", "water_temp", "battery_v"}
    assert level.interval_s == 600
    # sf-wx-01 lists only three of the weather kind's sensors
    assert set(reg.devices["sf-wx-01"].sensors) == {
        "temperature",
        "humidity",
        "pressure",
        "battery_v",
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
    assert device.sensors == ("level", "battery_v")
    assert reg.pilots["town"].thresholds[0].value == 2.0
    assert (device.dev_eui, device.lns_id) == (None, None)
    assert dict(reg.by_dev_eui) == {}
    assert dict(reg.by_lns_id) == {"tw-rlv-01": device}


def _second_device(**fields: str) -> str:
    lines = "".join(f'{key} = "{value}"\n' for key, value in fields.items())
    return f'\n[[pilots.town.devices]]\nkind = "river_level"\n{lines}'


def test_eui_and_network_server_id_lookups(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + 'dev_eui = "A84041000A0B0C0D"\n'  # upper case in the file
        + _second_device(id="tw-rlv-02", lns_id="gauge-north")
        + _second_device(id="tw-rlv-03", dev_eui="0004a30b001c0530", lns_id="gauge-south")
    )
    reg = _load(tmp_path, text)
    first, second, third = (reg.devices[f"tw-rlv-0{n}"] for n in (1, 2, 3))
    assert first.dev_eui == "a84041000a0b0c0d"
    assert dict(reg.by_dev_eui) == {"a84041000a0b0c0d": first, "0004a30b001c0530": third}
    assert dict(reg.by_lns_id) == {"tw-rlv-01": first, "gauge-north": second, "gauge-south": third}
    assert second.dev_eui is None
    assert "A84041000A0B0C0D" not in reg.by_dev_eui  # callers look up lower case


def test_duplicate_dev_eui_is_refused_whatever_its_case(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + 'dev_eui = "a84041000a0b0c0d"\n'
        + _second_device(id="tw-rlv-02", dev_eui="A84041000A0B0C0D")
    )
    message = _refused(tmp_path, text)
    assert "duplicate dev_eui 'a84041000a0b0c0d' (tw-rlv-01 and tw-rlv-02)" in message
    assert "pilots.town.devices" in message


def test_lns_id_that_is_another_devices_id_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, MINIMAL + _second_device(id="tw-rlv-02", lns_id="tw-rlv-01"))
    assert "'tw-rlv-01' names both tw-rlv-01 and tw-rlv-02" in message


def test_two_devices_with_the_same_lns_id_are_refused(tmp_path: Path) -> None:
    text = MINIMAL + 'lns_id = "gauge"\n' + _second_device(id="tw-rlv-02", lns_id="gauge")
    message = _refused(tmp_path, text)
    assert "'gauge' names both tw-rlv-01 and tw-rlv-02" in message


def test_lns_id_that_is_another_devices_id_is_refused_even_if_that_device_has_an_lns_id(
    tmp_path: Path,
) -> None:
    text = MINIMAL + 'lns_id = "gauge-port"\n' + _second_device(id="tw-rlv-02", lns_id="tw-rlv-01")
    message = _refused(tmp_path, text)
    assert "'tw-rlv-01'" in message


@pytest.mark.parametrize("eui", ["a84041000a0b0c0", "a84041000a0b0c0d0", "g84041000a0b0c0d", ""])
def test_malformed_dev_eui_is_refused(tmp_path: Path, eui: str) -> None:
    message = _refused(tmp_path, MINIMAL + f'dev_eui = "{eui}"\n')
    assert "pilots.town.devices.0.dev_eui" in message


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
    assert "duplicate id 'tw-rlv-01' (tw-rlv-01 and tw-rlv-01)" in message
    assert "pilots.town.devices" in message


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
    text = MINIMAL.replace("[sensors.battery_v]", "[sensors.battery]")
    message = _refused(tmp_path, text)
    assert "common sensor 'battery_v' must be defined" in message


def test_listing_a_common_sensor_reports_it_once(tmp_path: Path) -> None:
    reg = _load(
        tmp_path, MINIMAL.replace('sensors = ["level"]', 'sensors = ["battery_v", "level"]')
    )
    assert reg.devices["tw-rlv-01"].sensors == ("battery_v", "level")


def test_the_removed_meta_flag_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, MINIMAL.replace('unit = "V"', 'unit = "V"\nmeta = true'))
    assert "sensors.battery_v.meta" in message


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

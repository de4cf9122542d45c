"""`pilots publish` refusals, replacement and licence, over the embedded store.

What a refused or failed run leaves behind is the point here: never a half folder, never an
operator's folder overwritten without `--force`. The folder's contents against a real InfluxDB
are `tests/integration/test_publish.py`'s.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from frictionless import validate
from typer.testing import CliRunner

from api.auth import TokenStore
from core.errors import RegistryError
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry
from core.store.embedded import EmbeddedStore
from core.timeutil import HOUR_NS, NS_PER_S, datetime_to_ns
from pilots.cli import app

runner = CliRunner()
START_NS = datetime_to_ns(datetime.fromisoformat("2026-11-20T00:00:00-03:00"))
PERIOD = ["--start", "2026-11-20", "--end", "2026-11-22"]


@pytest.fixture
def stored(tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder beside the data dir `data`, whose embedded store (chosen by the settings)
    holds 48 hourly pH readings of rs-wq-01, and whose token database holds one token."""
    data = tmp_path / "data"
    data.mkdir()
    store = EmbeddedStore(data / "store.sqlite", registry)
    store.write(
        Readings.from_arrays(
            [START_NS + h * HOUR_NS for h in range(48)],
            registry.device_codes(["rs-wq-01"] * 48),
            registry.sensor_codes(["ph"] * 48),
            [7.0 + 0.01 * h for h in range(48)],
        )
    )
    store.close()
    TokenStore.in_data_dir(data).create("researcher", "read")
    monkeypatch.setenv("PILOTS_DATA_DIR", str(data))
    monkeypatch.delenv("PILOTS_INFLUX_URL", raising=False)
    monkeypatch.delenv("PILOTS_STORE", raising=False)
    return tmp_path


def _publish(out: Path, *more: str, pilot: str = "resistencia") -> tuple[int, str]:
    result = runner.invoke(app, ["publish", pilot, *PERIOD, "--out", str(out), *more])
    return result.exit_code, " ".join(result.output.split())


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_an_unknown_pilot_is_refused(stored: Path) -> None:
    code, said = _publish(stored / "out", pilot="rosario")
    assert code == 2 and "unknown pilot 'rosario'" in said and "resistencia" in said
    assert not (stored / "out").exists()


def test_a_period_longer_than_the_apis_is_refused(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTS_API_MAX_RANGE_DAYS", "1")
    code, said = _publish(stored / "out")
    assert code == 2 and "PILOTS_API_MAX_RANGE_DAYS" in said and "longer than 1 days" in said
    assert not (stored / "out").exists()


def test_an_export_over_the_row_limit_is_refused_before_anything_is_written(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTS_API_EXPORT_MAX_ROWS", "1000")
    code, said = _publish(stored / "out")
    assert code == 2 and "PILOTS_API_EXPORT_MAX_ROWS" in said
    assert not (stored / "out").exists() and _left_in(stored) == []


def test_a_store_over_the_limit_fails_without_leaving_a_half_folder(
    stored: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A device that reports every 10 s where the registry promises 15 min: the registry's
    # estimate passes, the store's own count does not.
    store = EmbeddedStore(stored / "data" / "store.sqlite", registry)
    n = 2 * 8640
    store.write(
        Readings.from_arrays(
            [START_NS + i * 10 * NS_PER_S + 1 for i in range(n)],
            registry.device_codes(["rs-wq-02"] * n),
            registry.sensor_codes(["ph"] * n),
            [7.2] * n,
        )
    )
    store.close()
    monkeypatch.setenv("PILOTS_API_EXPORT_MAX_ROWS", "15000")
    code, said = _publish(stored / "out")
    assert code == 1 and f"holds {n + 48} readings" in said and "PILOTS_API_EXPORT_MAX_ROWS" in said
    assert not (stored / "out").exists() and _left_in(stored) == []


def _data_kept(stored: Path) -> bool:
    data = stored / "data"
    return (data / "store.sqlite").is_file() and any(
        p.name != "store.sqlite" for p in data.iterdir()
    )


def test_the_data_dir_is_refused_even_forced(stored: Path) -> None:
    code, said = _publish(stored / "data", "--force")
    assert code == 2 and "data dir" in said and "PILOTS_DATA_DIR" in said
    assert _data_kept(stored) and _left_in(stored) == []


def test_a_folder_inside_the_data_dir_is_refused(stored: Path) -> None:
    code, said = _publish(stored / "data" / "published")
    assert code == 2 and "data dir" in said
    assert not (stored / "data" / "published").exists() and _data_kept(stored)


def test_a_folder_holding_the_data_dir_is_refused_even_forced(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, said = _publish(stored, "--force")
    assert code == 2 and "data dir" in said
    monkeypatch.chdir(stored)
    code, said = _publish(Path(), "--force")  # `--out .` from beside the data dir
    assert code == 2 and "data dir" in said
    assert _data_kept(stored)


def test_the_data_dir_through_a_symlink_is_refused(stored: Path) -> None:
    (stored / "link").symlink_to(stored / "data", target_is_directory=True)
    code, said = _publish(stored / "link", "--force")
    assert code == 2 and "data dir" in said
    assert _data_kept(stored) and (stored / "link").is_symlink()


def test_the_registrys_folder_is_refused(stored: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = stored / "conf"
    conf.mkdir()
    registry = conf / "registry.toml"
    registry.write_text(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("PILOTS_REGISTRY", str(registry))
    for out in (conf, stored / "elsewhere" / ".." / "conf"):
        code, said = _publish(out, "--force")
        assert code == 2 and "registry" in said
    assert registry.is_file()


def test_a_non_empty_folder_is_kept_unless_forced(stored: Path) -> None:
    out = stored / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    code, said = _publish(out)
    assert code == 2 and "--force" in said
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_force_replaces_only_an_earlier_publish(stored: Path) -> None:
    out = stored / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    code, said = _publish(out, "--force")
    assert code == 2 and "not a folder pilots publish wrote" in said
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    (out / "notes.txt").unlink()
    assert _publish(out)[0] == 0
    (out / "index.html").write_text("an edit", encoding="utf-8")
    code, said = _publish(out, "--force")
    assert code == 0, said
    assert "an edit" not in (out / "index.html").read_text(encoding="utf-8")
    assert _left_in(stored) == []


def test_a_folder_appearing_during_the_run_is_kept(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pilots.publishing import folder

    out = stored / "out"
    write = folder._write_folder

    def write_then_appear(*args: object) -> dict[str, int]:
        rows = write(*args)  # type: ignore[arg-type]
        out.mkdir()
        (out / "notes.txt").write_text("mine", encoding="utf-8")
        return rows

    monkeypatch.setattr(folder, "_write_folder", write_then_appear)
    code, said = _publish(out)
    assert code == 2 and "appeared during the run" in said
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and _left_in(stored) == []


def test_a_period_cutting_days_counts_only_its_readings_each_day(stored: Path) -> None:
    span = ["--start", "2026-11-20T12:00:00-03:00", "--end", "2026-11-21T06:00:00-03:00"]
    result = runner.invoke(app, ["publish", "resistencia", *span, "--out", str(stored / "o")])
    assert result.exit_code == 0, result.output
    with (stored / "o/data/daily.csv").open(encoding="utf-8") as file:
        ph = [r for r in csv.DictReader(file) if (r["device"], r["sensor"]) == ("rs-wq-01", "ph")]
    assert {r["day"]: int(r["count"]) for r in ph} == {"2026-11-20": 12, "2026-11-21": 6}
    assert {r["window_start"] for r in ph} == {
        "2026-11-20T12:00:00-03:00",
        "2026-11-21T00:00:00-03:00",
    }
    lowest, highest = min(float(r["min"]) for r in ph), max(float(r["max"]) for r in ph)
    assert (round(lowest, 2), round(highest, 2)) == (7.12, 7.29)
    report = validate(str(stored / "o/datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "type", "note"])


def test_a_private_pilot_is_published_with_a_note(stored: Path) -> None:
    result = runner.invoke(app, ["publish", "resistencia", *PERIOD, "--out", str(stored / "o")])
    assert result.exit_code == 0, result.output
    assert "not public in the registry" in result.stderr
    assert "not public" not in result.stdout


def test_registry_strings_are_not_markup_in_the_readme(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8")
    name = 'name = "Resistencia"'
    assert name in text
    hostile = 'name = "Res <img src=x onerror=alert(1)> [click](https://evil.example) *x* | y"'
    (stored / "registry.toml").write_text(text.replace(name, hostile, 1), encoding="utf-8")
    monkeypatch.setenv("PILOTS_REGISTRY", str(stored / "registry.toml"))
    assert _publish(stored / "o")[0] == 0
    readme = (stored / "o/README.md").read_text(encoding="utf-8")
    assert not re.search(r"(?<!\\)<img", readme), "raw HTML in the README"
    assert "](https://evil" not in readme and "*x*" not in readme
    assert r"Res \<img src=x onerror=alert\(1\)\>" in readme


def test_an_empty_folder_is_used(stored: Path) -> None:
    (stored / "out").mkdir()
    code, said = _publish(stored / "out")
    assert code == 0 and "48 readings" in said
    assert (stored / "out" / "index.html").exists()


def test_rows_are_appended_slice_by_slice_under_one_header(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pilots.publishing.tables.SLICE_READINGS", 1)  # one hour per slice
    code, said = _publish(stored / "out")
    assert code == 0, said
    lines = (stored / "out/data/readings.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "time,device,sensor,value,unit" and len(lines) == 49
    assert sum(line.startswith("time,") for line in lines) == 1
    report = validate(str(stored / "out/datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "type", "note"])


def test_the_licence_comes_from_the_option_else_the_registry_else_cc_by(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def licence(out: Path) -> str:
        name: str = json.loads((out / "datapackage.json").read_text())["licenses"][0]["name"]
        return name

    assert _publish(stored / "a")[0] == 0
    assert licence(stored / "a") == "CC-BY-4.0"
    assert _publish(stored / "b", "--licence", "CC0-1.0")[0] == 0
    assert licence(stored / "b") == "CC0-1.0"
    assert "CC0 1.0" in (stored / "b/README.md").read_text(encoding="utf-8")

    text = DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8")
    marked = text.replace("[pilots.resistencia]\n", '[pilots.resistencia]\nlicence = "ODbL-1.0"\n')
    assert marked != text
    (stored / "registry.toml").write_text(marked, encoding="utf-8")
    monkeypatch.setenv("PILOTS_REGISTRY", str(stored / "registry.toml"))
    assert _publish(stored / "c")[0] == 0
    assert licence(stored / "c") == "ODbL-1.0"
    code, said = _publish(stored / "d", "--licence", "any licence you like")
    assert code == 2 and "SPDX" in said


def test_the_registry_licence_is_optional_and_checked(tmp_path: Path) -> None:
    assert all(p.licence is None for p in load_registry().pilot_list)
    text = DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8")
    bad = text.replace("[pilots.resistencia]\n", '[pilots.resistencia]\nlicence = "no such"\n')
    (tmp_path / "registry.toml").write_text(bad, encoding="utf-8")
    with pytest.raises(RegistryError, match="licence"):
        load_registry(tmp_path / "registry.toml")

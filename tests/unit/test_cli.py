"""The `pilots` command: every subcommand exists and documents itself."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from core.readings import Readings
from core.registry import Registry
from core.store.embedded import EmbeddedStore
from core.timeutil import NS_PER_S, datetime_to_ns
from pilots.cli import app
from tests.services import free_port

runner = CliRunner()


def test_top_level_help_lists_the_services() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "ingest", "api", "simulate", "report", "tokens", "quarantine"):
        assert command in result.output


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["demo", "--help"], "embedded"),
        (["ingest", "--help"], "SIGTERM"),
        (["api", "--help"], "--port"),
        (["simulate", "--help"], "--backfill"),
        (["quarantine", "list", "--help"], "--reason"),
    ],
)
def test_each_subcommand_has_help(args: list[str], mentions: str) -> None:
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0
    assert mentions in result.output


def test_simulate_help_documents_every_mode_and_fault() -> None:
    from simulators.faults import FAULT_HELP

    result = runner.invoke(app, ["simulate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for mode in ("realtime", "fast-forward", "backfill", "load"):
        assert f"{mode}" in text, mode
    for fault, description in FAULT_HELP.items():
        assert f"{fault} (realistic" in text, fault
        assert " ".join(description.split()[:4]) in text, fault


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--mode", "backfill", "--end", "2999-01-01T00:00:00Z"], "--end is in the future"),
        (["--mode", "fast-forward", "--start", "2999-01-01T00:00:00Z"], "--start is in the future"),
        (["--backfill", "1", "--fault", "dropout=2"], "not in [0, 1)"),
        (["--backfill", "1", "--formats", "morse=1"], "FORMAT one of"),
    ],
)
def test_simulate_refuses_what_it_cannot_do(
    args: list[str], problem: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PILOTS_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    result = runner.invoke(app, ["simulate", *args], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert problem in " ".join(result.output.split())


def test_a_bad_setting_fails_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PILOTS_MQTT_URL", "http://not-a-broker")
    result = runner.invoke(app, ["simulate", "--backfill", "1"])
    assert result.exit_code == 2
    assert "PILOTS_MQTT_URL" in result.output


def test_report_writes_a_shareable_page_and_its_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registry: Registry
) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite", registry)
    day_ns = datetime_to_ns(datetime.fromisoformat("2026-11-20T00:00:00-03:00"))
    hours = range(48)
    store.write(
        Readings.from_arrays(
            [day_ns + h * 3600 * NS_PER_S for h in hours],
            registry.device_codes(["rs-wq-01"] * len(hours)),
            registry.sensor_codes(["ph"] * len(hours)),
            [7.0 + 0.01 * h for h in hours],
        )
    )
    store.close()
    monkeypatch.setenv("PILOTS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PILOTS_INFLUX_URL", raising=False)
    args = ["report", "--pilot", "resistencia", "--start", "2026-11-20", "--end", "2026-11-22"]
    page = runner.invoke(app, [*args, "--out", str(tmp_path / "r.html")])
    assert page.exit_code == 0, page.output
    assert "48 readings" in page.output
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Resistencia" in html and "<svg" in html
    data = runner.invoke(app, [*args, "--out", str(tmp_path / "r.json")])
    assert data.exit_code == 0, data.output
    report = orjson.loads((tmp_path / "r.json").read_bytes())
    [ph] = [s for s in report["sensors"] if s["sensor"] == "ph"]
    assert (ph["count"], ph["min"], ph["max"]) == (48, 7.0, 7.47)
    assert report["start"] == "2026-11-20T00:00:00-03:00"


def test_report_refuses_an_unknown_pilot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTS_DATA_DIR", str(tmp_path))
    result = runner.invoke(
        app, ["report", "--pilot", "rosario", "--start", "2026-11-20", "--end", "2026-11-21"]
    )
    assert result.exit_code == 2 and "rosario" in result.output

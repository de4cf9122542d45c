"""The `pilots` command: every subcommand exists and documents itself."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pilots.cli import app

runner = CliRunner()


def test_top_level_help_lists_the_services() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "ingest", "api", "simulate", "quarantine"):
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


def test_a_bad_setting_fails_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PILOTS_MQTT_URL", "http://not-a-broker")
    result = runner.invoke(app, ["simulate", "--backfill", "1"])
    assert result.exit_code == 2
    assert "PILOTS_MQTT_URL" in result.output

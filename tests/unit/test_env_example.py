"""`pilots.env.example` documents every setting with its real default."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "pilots.env.example"


def documented() -> dict[str, str]:
    pairs = re.findall(r"^# (PILOTS_[A-Z0-9_]+)=(.*)$", EXAMPLE.read_text(), flags=re.MULTILINE)
    return dict(pairs)


def test_every_setting_is_documented_and_nothing_else() -> None:
    fields = {f"PILOTS_{name.upper()}" for name in Settings.model_fields}
    assert set(documented()) == fields


def test_documented_defaults_are_the_real_defaults() -> None:
    defaults = Settings(_env_file=None).model_dump(mode="json")
    for key, shown in documented().items():
        default = defaults[key.removeprefix("PILOTS_").lower()]
        if isinstance(default, dict):
            assert json.loads(shown) == default, key
            continue
        expected = "" if default is None else str(default)
        assert shown == expected, f"{key}: example shows {shown!r}, default is {expected!r}"

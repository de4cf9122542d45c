"""Each extension table holds every extension written for it: a module or function added but
not registered is caught here, not by a user who finds it missing (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import inspect
import pkgutil
from dataclasses import fields

import pilots.commands
from api.report_html import page, sections
from pilots.cli import COMMANDS
from simulators.faults import FAULT_HELP, Faults

#: Modules of pilots/commands that are not commands.
NOT_COMMANDS = {"common"}


def test_every_command_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(pilots.commands.__path__)} - NOT_COMMANDS
    registered = {register.__module__.rsplit(".", 1)[1] for register in COMMANDS}
    assert registered == modules


def test_every_section_function_is_on_the_page() -> None:
    def is_section(name: str, fn: object) -> bool:
        if name.startswith("_") or not inspect.isfunction(fn):
            return False
        if fn.__module__ != sections.__name__:
            return False
        params = list(inspect.signature(fn).parameters.values())
        return len(params) == 1 and params[0].annotation == "ReportPage"

    written = {name for name, fn in vars(sections).items() if is_section(name, fn)}
    assert written, "no section function found: the test no longer reads the module"
    assert written == {fn.__name__ for fn in page.SECTIONS}


def test_every_fault_is_explained_in_the_help() -> None:
    assert set(FAULT_HELP) == {f.name for f in fields(Faults)}

"""The layers of docs/ARCHITECTURE.md: a package imports only the floors below its own.

Every `import` and `from ... import` of the packages' modules is read (those inside functions
too), so a new import that points up or sideways fails here, naming the file and the line.
With every arrow pointing strictly down, no import circle can join two packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Each package's floor, as docs/ARCHITECTURE.md draws them.
FLOORS = {
    "core": 1,
    "ingest": 2,
    "alerts": 3,
    "api": 4,
    "simulators": 4,
    "pilots": 5,
    "bench": 5,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_every_import_points_down() -> None:
    wrong = []
    for package, floor in FLOORS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, target in _imports(path):
                if target in FLOORS and target != package and FLOORS[target] >= floor:
                    where = path.relative_to(ROOT)
                    wrong.append(f"{where}:{line} imports {target} (floor {FLOORS[target]})")
    assert wrong == []


def test_the_floors_are_those_the_architecture_draws() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    drawn: dict[str, int] = {}
    floor = 0
    for line in text.split("## The layers", 1)[1].split("```")[1].splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "floor":
            floor, words = int(words[1]), words[2:]
        if words and words[0].endswith("/") and words[0][:-1] in FLOORS:
            drawn[words[0][:-1]] = floor
    assert drawn == FLOORS

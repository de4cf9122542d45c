"""The docs a newcomer reads first name files that exist: a move leaves no stale path behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Top-level folders: a backticked path starting with one is a claim about the tree.
TOP = (
    "core/",
    "ingest/",
    "alerts/",
    "api/",
    "simulators/",
    "pilots/",
    "bench/",
    "tests/",
    "deploy/",
    "docs/",
    "scripts/",
)
PATH = re.compile(r"`([A-Za-z0-9_./-]+)`")
#: Made on the operator's machine, not kept in the repository.
GENERATED = {"deploy/tls/ca/"}


def named_paths(doc: Path) -> set[str]:
    found = set()
    for token in PATH.findall(doc.read_text()):
        path = token.split(":", 1)[0]
        if path.startswith(TOP) and path not in GENERATED:
            found.add(path)
    return found


@pytest.mark.parametrize("doc", ["README.md", "docs/ARCHITECTURE.md", "docs/INGEST.md"])
def test_every_path_a_doc_names_exists(doc: str) -> None:
    names = named_paths(ROOT / doc)
    assert names, f"{doc} names no path: the pattern no longer reads it"
    missing = sorted(p for p in names if not (ROOT / p).exists())
    assert not missing, f"{doc} names paths that do not exist: {missing}"

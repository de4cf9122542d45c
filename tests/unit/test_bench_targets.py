"""`make bench` runs every benchmark: a new one cannot be left out of it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Runnable modules that are parts of a benchmark, run by it rather than by `make`.
PARTS = {
    "bench.abuse_ingest": "bench/abuse.py runs it first",
    "bench.baseline_api": "the server bench/api compares with, started by it",
}


def runnable_benchmarks() -> set[str]:
    return {
        f"bench.{path.stem}"
        for path in (ROOT / "bench").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    } - set(PARTS)


def make_bench_commands() -> str:
    """What `make -n bench` would run (the recipes, not run)."""
    done = subprocess.run(
        ["make", "-n", "-B", "bench"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_make_bench_runs_every_runnable_benchmark() -> None:
    commands = make_bench_commands()
    run = set(re.findall(r"-m (bench\.[a-z_]+)", commands))
    missing = sorted(runnable_benchmarks() - run)
    assert not missing, f"make bench leaves out {missing}: add them to a bench-* target"
    assert run <= runnable_benchmarks() | set(PARTS), "make bench names a module that is gone"

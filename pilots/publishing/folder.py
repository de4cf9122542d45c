"""The run: the folder's files written in order under a temporary name, then put in place.

`publish` checks the estimate, writes every file into a temporary folder beside `out`
(`.<out>.XXXX.partial`), then renames it to `out`; a folder `out` held before goes only once
the new one is in place. A failed run leaves no half folder, and the old one as it was.
`check_out` refuses an `out` that is not an empty folder unless forced. This module decides
which files the folder holds and in what order they are written; it must not shape a table
(`tables`) or describe one (`descriptor`), and must not decide an exit code (the command's).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from pilots.publishing.descriptor import descriptor, readme, sha256sums
from pilots.publishing.period import (
    Period,
    RefusedError,
    Services,
    check_estimate,
    too_many,
)
from pilots.publishing.tables import write_daily, write_devices, write_readings


def check_out(out: Path, *, force: bool) -> None:
    """Refuse an `out` that is not an empty folder, unless `force` lets it be replaced."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise RefusedError(
            f"{out} exists and is not an empty folder; choose another --out or add --force"
        )


def publish(services: Services, period: Period, out: Path) -> dict[str, int]:
    """The folder `out` written whole, or not at all; the rows of each table.

    The store is started here; closing it (and the services) is the caller's.
    """
    check_estimate(services, period)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the folder from a web server
    try:
        services.store.start()
        rows = _write_folder(services, period, work)
        _put_in_place(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _write_folder(services: Services, period: Period, work: Path) -> dict[str, int]:
    """Every file of the folder, written into `work`; the rows of each table."""
    from api.services.errors import QueryError

    pilot, limit = period.pilot, services.settings.api_export_max_rows
    found = services.store.count(pilot.id, list(pilot.sensors), period.start_ns, period.end_ns)
    if found > limit:  # the devices sent more than the registry promises
        raise QueryError(too_many(f"the store holds {found} readings of the period", limit))
    built = services.reports.get(pilot, period.start_ns, period.end_ns)
    (work / "index.html").write_text(built.html, encoding="utf-8")
    (work / "data").mkdir()
    rows = {
        "readings": write_readings(services, period, work / "data"),
        "daily": write_daily(services, period, work / "data", built.report.completeness),
        "devices": write_devices(period, work / "data" / "devices.csv"),
    }
    package = descriptor(services.registry, period, work, rows)
    text = json.dumps(package, indent=2, ensure_ascii=False) + "\n"
    (work / "datapackage.json").write_text(text, encoding="utf-8")
    (work / "README.md").write_text(readme(period, rows), encoding="utf-8")
    (work / "SHA256SUMS").write_text(sha256sums(work), encoding="utf-8")
    return rows


def _put_in_place(work: Path, out: Path) -> None:
    """Rename the finished folder to `out`; a folder `out` held before goes only after."""
    if not out.exists():
        work.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    out.rename(old / "previous")
    try:
        work.rename(out)
    except OSError:
        (old / "previous").rename(out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)

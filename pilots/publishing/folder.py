"""The run: the folder's files written in order under a temporary name, then put in place.

`publish` checks the estimate, writes every file into a temporary folder beside `out`
(`.<out>.XXXX.partial`), then renames it to `out`; a folder `out` held before goes only once
the new one is in place. A failed run leaves no half folder, and the old one as it was.
`check_out` refuses an `out` that is, holds or lies in the data dir, that is or holds the
registry file's folder, and one that is not an empty folder unless forced; `--force` replaces
only an earlier publish (`datapackage.json` and `SHA256SUMS` at its top, and nothing but what
`pilots publish` writes). The rename is the
last step and is checked again just before it: rename(2) of a folder never replaces a
non-empty one, so a second run into the same `out` is refused, not mixed in. This module
decides which files the folder holds and in what order they are written; it must not shape a
table (`tables`) or describe one (`descriptor`), and must not decide an exit code (the
command's).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pilots.publishing.descriptor import descriptor, readme, sha256sums
from pilots.publishing.period import (
    Period,
    RefusedError,
    Services,
    check_estimate,
    too_many,
)
from pilots.publishing.tables import write_daily, write_devices, write_readings

if TYPE_CHECKING:
    from core.registry import Registry
    from core.settings import Settings

#: The files at the top of a folder `pilots publish` wrote: what `--force` may replace.
PUBLISHED_MARKS = ("datapackage.json", "SHA256SUMS")
#: Everything `pilots publish` writes at a folder's top: `--force` replaces a folder holding
#: these and nothing else (a site's `.git` or `CNAME` beside them is the user's, never removed).
PUBLISHED_NAMES = frozenset({*PUBLISHED_MARKS, "index.html", "README.md", "data"})


@dataclass(frozen=True)
class Kept:
    """What an `--out` must never be, hold or lie in: the service's own files."""

    data_dir: Path
    registry_file: Path

    @classmethod
    def of(cls, settings: Settings, registry: Registry) -> Kept:
        """The data dir and the registry file, symlinks resolved."""
        return cls(Path(settings.data_dir).resolve(), registry.source.resolve())

    def refuse(self, out: Path) -> None:
        """Refuse an `out` that would replace the data dir or the registry (`RefusedError`)."""
        target = out.resolve()  # through symlinks: a link to the data dir is the data dir
        data = self.data_dir
        if target == data or target in data.parents or data in target.parents:
            raise RefusedError(
                f"--out {out} is, holds or lies in the data dir {data} (PILOTS_DATA_DIR), "
                "which holds the store and the tokens; choose a folder outside it"
            )
        folder = self.registry_file.parent
        if target in (self.registry_file, folder) or target in folder.parents:
            raise RefusedError(
                f"--out {out} is or holds the registry file {self.registry_file} "
                "(PILOTS_REGISTRY); choose another folder"
            )


def looks_published(folder: Path) -> bool:
    """Whether `folder` is an earlier publish and nothing else (what --force replaces)."""
    names = {entry.name for entry in folder.iterdir()}
    return names <= PUBLISHED_NAMES and all((folder / name).is_file() for name in PUBLISHED_MARKS)


def check_out(out: Path, *, force: bool, kept: Kept) -> None:
    """Refuse an `out` the run must not write: the service's files, or a folder in the way.

    An empty or missing folder is used; a non-empty one only with `force`, and only if it is
    an earlier publish.
    """
    kept.refuse(out)
    if not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise RefusedError(f"{out} exists and is not a folder; choose another --out")
    if not any(out.iterdir()):
        return
    if not force:
        raise RefusedError(
            f"{out} exists and is not an empty folder; choose another --out, or add --force "
            "to replace an earlier publish"
        )
    if not looks_published(out):
        marks = " and ".join(PUBLISHED_MARKS)
        names = ", ".join(sorted(PUBLISHED_NAMES))
        raise RefusedError(
            f"{out} is not a folder pilots publish wrote, or holds more ({marks} at its top, "
            f"and nothing but {names}); --force replaces only an earlier publish, never other "
            "files: choose another --out"
        )


def publish(
    services: Services, period: Period, out: Path, *, force: bool = False
) -> dict[str, int]:
    """The folder `out` written whole, or not at all; the rows of each table.

    The store is started here; closing it (and the services) is the caller's.
    """
    kept = Kept.of(services.settings, services.registry)
    check_estimate(services, period)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the folder from a web server
    try:
        services.store.start()
        rows = _write_folder(services, period, work)
        _put_in_place(work, out, force=force, kept=kept)
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


def _appeared(out: Path) -> RefusedError:
    return RefusedError(
        f"{out} appeared during the run (another publish?); it is kept as it is, "
        "and nothing was written: run again, with another --out or --force"
    )


def _put_in_place(work: Path, out: Path, *, force: bool, kept: Kept) -> None:
    """Rename the finished folder to `out`; an earlier publish there goes only after.

    Checked again first: `out` may have appeared, or changed, while the run wrote.
    """
    try:
        check_out(out, force=force, kept=kept)
    except RefusedError as exc:
        if force:
            raise
        raise _appeared(out) from exc
    if not (out.exists() or out.is_symlink()) or not any(out.iterdir()):
        _rename(work, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    try:
        try:
            out.rename(old / "previous")
        except FileNotFoundError:  # gone meanwhile: nothing to replace
            _rename(work, out)
            return
        # Checked once more where no one else can swap it: only a publish is deleted.
        if not looks_published(old / "previous"):
            _restore(old / "previous", out)
            raise _appeared(out)
        try:
            _rename(work, out)
        except RefusedError:
            _restore(old / "previous", out)
            raise
    finally:
        previous = old / "previous"
        if not previous.exists() or looks_published(previous):
            shutil.rmtree(old, ignore_errors=True)


def _rename(work: Path, out: Path) -> None:
    """`work` renamed to `out` in one step; refused if `out` is a non-empty folder by now."""
    try:
        work.rename(out)
    except OSError as exc:
        if out.exists() or out.is_symlink():
            raise _appeared(out) from exc
        raise


def _restore(previous: Path, out: Path) -> None:
    """The folder moved aside put back, unless another run's folder took its place."""
    try:
        previous.rename(out)
    except OSError as exc:  # another run's publish stands at `out`: ours was to go anyway
        if not looks_published(previous):
            raise RefusedError(
                f"{out} changed during the run; what it held is kept at {previous}"
            ) from exc

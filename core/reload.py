"""Configuration files looked at again while a service runs (the registry, the alert rules).

`Watched` remembers each file's (mtime_ns, size, inode) and, when one of them changes (an edit,
an atomic rename, a deleted file) or a look is requested (SIGHUP), loads the files again. A load
that fails (`PilotsError`: a bad file, a missing one) is refused: logged at ERROR with its
reason, counted, and the running value stays; the same bad file is not read again until it
changes. What to do with a new value (swap it in between two units of work) is the caller's.

`watch_registry` is the registry's watch, and `registry_change` describes a new registry for the
log. The module holds no process state of its own: each service keeps its watch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from core.errors import PilotsError
from core.registry import DEFAULT_REGISTRY_PATH, Registry, load_registry

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What identifies a version of a file: (mtime_ns, size, inode); None when it cannot be read.
Stamp = tuple[int, int, int] | None

#: A file modified more recently than this is left to settle before it is read (seconds).
SETTLE_S = 0.25

#: At most this many device ids are named in `registry_change`.
_NAMED = 10


def stamp(path: Path) -> Stamp:
    """The file's (mtime_ns, size, inode), following symbolic links; None when missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Watched(Generic[T]):
    """A value loaded from files, loaded again when they change (see the module docstring).

    `check()` is meant to be called from one thread, as often as convenient: with `every_s`
    it looks at the files at most that often (a `request()` looks at the next call whatever
    the interval). `request()` only sets a flag, so a signal handler may call it.

    A file modified less than `settle_s` ago is not read yet (looked at again `settle_s`
    later, or `every_s` if sooner): an editor writing it in place may not be done, and a
    file cut short can still be valid (a registry without its last devices). The stamps are
    taken before the files are read: a file that changes while it is being read is read
    again at the next look. A filesystem with coarse timestamps can hide an edit that keeps
    the size within the same tick; `request()` then forces the look.
    """

    def __init__(
        self,
        paths: Iterable[Path | str],
        load: Callable[[], T],
        *,
        name: str = "configuration",
        every_s: float = 0.0,
        settle_s: float = SETTLE_S,
        value: T | None = None,
    ) -> None:
        self.paths = tuple(Path(p) for p in paths)
        if not self.paths:
            raise ValueError("Watched needs at least one file")
        if every_s < 0 or settle_s < 0:
            raise ValueError(f"every_s and settle_s must be >= 0, not {every_s}, {settle_s}")
        self.name = name
        self.every_s = every_s
        self.settle_s = settle_s
        #: Successful loads by `check()` (not counting `load()`).
        self.reloaded = 0
        #: Loads refused (the file was bad or missing); the running value stayed.
        self.refused = 0
        #: The reason of the latest refusal; None once a load succeeds.
        self.last_error: str | None = None
        self._load = load
        self._value = value
        self._stamps = self._stat()
        self._requested = False
        self._forced = False
        self._next_look = time.monotonic() + every_s
        self._lock = threading.Lock()

    @property
    def value(self) -> T | None:
        """The running value: the latest loaded (or given), None before any."""
        return self._value

    def _stat(self) -> tuple[Stamp, ...]:
        return tuple(stamp(p) for p in self.paths)

    def load(self) -> T:
        """Load now and make it the running value; raises what the loader raises.

        For the first load at start: the files' stamps are taken before they are read, so no
        change between this load and the first look is missed.
        """
        with self._lock:
            stamps = self._stat()
            value = self._load()
            self._stamps = stamps
            self._value = value
            self.last_error = None
            return value

    def request(self) -> None:
        """Have the next `check()` load the files whether they changed or not (SIGHUP)."""
        self._requested = True

    def changed(self) -> list[Path]:
        """The files whose stamp differs from the last load's (looked at now)."""
        return [
            path
            for path, before, now in zip(self.paths, self._stamps, self._stat(), strict=True)
            if before != now
        ]

    def check(self) -> T | None:
        """A freshly loaded value when a file changed (or a look was requested), else None.

        A refused load (a `PilotsError` from the loader, or any other error) is logged at
        ERROR and counted; None is returned and the running value stays.
        """
        now = time.monotonic()
        if not self._requested and now < self._next_look:
            return None
        with self._lock:
            self._next_look = now + self.every_s
            forced = self._requested or self._forced
            self._requested = self._forced = False
            stamps = self._stat()
            changed = [
                path
                for path, before, after in zip(self.paths, self._stamps, stamps, strict=True)
                if before != after
            ]
            if not changed and not forced:
                return None
            if self._settling(stamps):
                self._forced = forced  # kept for the look after the file settled
                self._next_look = now + min(self.settle_s, self.every_s)
                return None
            # Recorded before loading: a bad version is not read again until it changes.
            self._stamps = stamps
            where = ", ".join(str(p) for p in (changed or self.paths))
            try:
                value = self._load()
            except PilotsError as exc:
                self._refuse(where, str(exc))
                return None
            except Exception as exc:  # a loader's bug must not stop the service either
                log.exception("%s %s could not be loaded", self.name, where)
                self._refuse(where, f"{type(exc).__name__}: {exc}")
                return None
            self._value = value
            self.reloaded += 1
            self.last_error = None
            log.debug("%s %s loaded again", self.name, where)
            return value

    def _settling(self, stamps: tuple[Stamp, ...]) -> bool:
        """Whether a file was modified less than `settle_s` ago (it may be being written)."""
        if self.settle_s <= 0:
            return False
        now_ns = time.time_ns()
        settle_ns = int(self.settle_s * 1e9)
        # a time ahead of the clock (another host's, on a network filesystem) does not wait
        return any(s is not None and 0 <= now_ns - s[0] < settle_ns for s in stamps)

    def _refuse(self, where: str, reason: str) -> None:
        self.refused += 1
        self.last_error = reason
        log.error("%s %s refused, keeping the running one: %s", self.name, where, reason)


def registry_path(path: Path | None) -> Path:
    """The registry file in use: `PILOTS_REGISTRY`, or the shipped one when unset."""
    return path or DEFAULT_REGISTRY_PATH


def watch_registry(
    path: Path | None,
    *,
    every_s: float = 0.0,
    settle_s: float = SETTLE_S,
    value: Registry | None = None,
) -> Watched[Registry]:
    """The watch of the registry at `path` (`PILOTS_REGISTRY`; None: the shipped file)."""
    return Watched(
        [registry_path(path)],
        lambda: load_registry(path),
        name="registry",
        every_s=every_s,
        settle_s=settle_s,
        value=value,
    )


def registry_change(old: Registry, new: Registry) -> str:
    """The new registry in a few words: `N devices (+added, -removed)` and what else changed."""
    added = [d for d in new.devices if d not in old.devices]
    removed = [d for d in old.devices if d not in new.devices]
    text = f"{len(new.device_list)} devices (+{len(added)}, -{len(removed)})"
    if added:
        text += f"; added {_names(added)}"
    if removed:
        text += f"; removed {_names(removed)}"
    edited = [
        d for d in new.devices if d in old.devices and _device_spec(old, d) != _device_spec(new, d)
    ]
    if edited:
        text += f"; changed {_names(edited)}"
    moved = [
        p
        for p, pilot in new.pilots.items()
        if p in old.pilots and old.pilots[p].thresholds != pilot.thresholds
    ]
    if moved:
        text += f"; thresholds of {_names(moved)}"
    if old.sensor_list != new.sensor_list:
        text += "; sensors"
    return text


def _device_spec(registry: Registry, device_id: str) -> tuple[object, ...]:
    """A device as configured, without its code (which moves with the devices before it)."""
    d = registry.devices[device_id]
    return (d.pilot, d.kind, d.sensors, d.interval_s, d.site, d.lat, d.lon, d.dev_eui, d.lns_id)


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:_NAMED])
    return shown if len(ids) <= _NAMED else f"{shown} and {len(ids) - _NAMED} more"

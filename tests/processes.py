"""The `pilots` command run as users run it: separate processes with PILOTS_* settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import wait_for


class PilotsProcess:
    """`python -m pilots <args>` with its output in a log file."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        name: str,
        prefix: list[str] | None = None,
        *,
        own_group: bool = False,
    ) -> None:
        """`prefix` runs it through another command (e.g. `ip netns exec <host>`, which
        executes it in place, so that `proc` is still the `pilots` process); `own_group` starts
        it in a process group of its own, which a test may signal as a whole."""
        self.log = cwd / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("PILOTS_")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "pilots", *args],
                env={**base, **env},
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=own_group,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited ({self.proc.returncode}):\n{self.output()}")
            return text in self.output()

        wait_for(seen, timeout_s, f"{text!r} in the output")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired as exc:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"did not stop within {timeout_s} s:\n{self.output()}"
                ) from exc
        return self.proc.returncode


def wait_for_http(url: str, timeout_s: float, proc: PilotsProcess) -> httpx.Response:
    """GET `url` until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.proc.returncode}):\n{proc.output()}")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout_s} s:\n{proc.output()}")
        time.sleep(0.2)


def stack_env(mqtt_url: str, influx_url: str, database: str, data_dir: Path) -> dict[str, str]:
    """The variables of an ingest and an API sharing one broker, one database and one data
    directory, with the API and ingest's HTTP endpoint on free ports."""
    from tests.services import free_port

    return {
        "PILOTS_MQTT_URL": mqtt_url,
        "PILOTS_MQTT_CLIENT_ID": f"e2e-{database}",
        "PILOTS_INFLUX_URL": influx_url,
        "PILOTS_INFLUX_DATABASE": database,
        "PILOTS_DATA_DIR": str(data_dir),
        "PILOTS_API_PORT": str(free_port()),
        "PILOTS_INGEST_HTTP_PORT": str(free_port()),
    }

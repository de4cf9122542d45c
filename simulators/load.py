"""A fleet of any size for load tests: copies of the registry's devices, sized for a message rate.

Device `i` copies the registry's device `i mod n` (its pilot, kind and sensors) under the id
`<device>-l<i>`, with a made-up LoRaWAN EUI, and every copy reports every `devices / rate`
seconds, so the fleet as a whole sends `rate` messages per second. Ingest refuses devices the
registry does not list, so the load registry is written out as a file for ingest
(`PILOTS_REGISTRY`): the shipped registry's text with the copies appended. The copies leave out
counters (a rain gauge's running tip count), which need each device's history: without them a
fault-free load fleet is generated in whole batches of devices, fast enough for the broker.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from core.registry import Registry, build_registry
from simulators.values import COUNTERS

MIN_DEVICES, MAX_DEVICES = 10, 100_000


def load_registry_text(registry: Registry, devices: int, rate_per_s: float) -> str:
    """The registry file of a load fleet: the registry's own text plus the device copies."""
    if not MIN_DEVICES <= devices <= MAX_DEVICES:
        raise ValueError(
            f"a load fleet has {MIN_DEVICES} to {MAX_DEVICES:,} devices, not {devices}"
        )
    if rate_per_s <= 0:
        raise ValueError("the target rate must be positive")
    interval_s = round(devices / rate_per_s)
    if interval_s < 1:
        raise ValueError(
            f"{devices} devices reporting every second send at most {devices} messages/s; "
            f"ask for more devices to reach {rate_per_s:g}/s"
        )
    base = registry.device_list
    lines = [
        registry.source.read_text(encoding="utf-8").rstrip(),
        "",
        f"# Load fleet: {devices} copies of the devices above, reporting every {interval_s} s.",
    ]
    for i in range(devices):
        model = base[i % len(base)]
        sensors = ", ".join(f'"{s}"' for s in model.sensors if s not in COUNTERS)
        lines += [
            "",
            f"[[pilots.{model.pilot}.devices]]",
            f'id = "{model.id}-l{i:06d}"',
            f'kind = "{model.kind}"',
            f"sensors = [{sensors}]",
            f"interval_s = {interval_s}",
            f'dev_eui = "fe{i:014x}"',
        ]
    return "\n".join(lines) + "\n"


def load_registry(
    registry: Registry, devices: int, rate_per_s: float, path: Path
) -> tuple[Registry, tuple[str, ...]]:
    """Write the load fleet's registry to `path`; the registry read back and the copies' ids."""
    text = load_registry_text(registry, devices, rate_per_s)
    path.write_text(text, encoding="utf-8")
    loaded = build_registry(tomllib.loads(text), path)
    copies = tuple(d.id for d in loaded.device_list if d.id not in registry.devices)
    return loaded, copies

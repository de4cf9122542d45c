"""bench/alerts_eval: the alert evaluator's cost per reading, against a plain numpy sort.

Fleet: one pilot of 10,000 devices, half river gauges (`level`, `battery_v`, every 10 minutes)
and half air-quality monitors (`pm25`, `battery_v`, every 5 minutes), built in memory from
the shipped registry's sensors and kinds. Readings: 1,000,000 (50 reports a device, two
readings each), random walks around the levels so that alarms do fire, jittered device times,
in receipt (time) order across devices, as ingest's writer would hand them over.

Measured, best of `--repeats`, single-threaded, in one process:
  baseline   `np.lexsort` of the batch by (device, sensor, time): the one pass any evaluation
             of readings in device-time order needs
  few rules  the evaluator with five rules (river alert level, river rise, PM2.5 24-hour mean,
             low battery, silence): one 1,000,000-reading batch on an empty state
  defaults   the same with the rules derived from the registry (8 rules: the evacuation
             level and flat sensors besides)
  stream     the live case: after that batch (defaults), the next readings of the same fleet
             streamed in batches of 1,000, 100 and 10 readings (200 batches each, every run
             from a copy of the state the big batch left), each batch on the state the one
             before returned; next to each, the baseline: `np.lexsort` of the same batches.
             Then 10-reading batches of 1 % of the devices on that state and on a state of
             those devices alone: the cost of a small batch does not depend on the state
  state      its size after the big batch; `to_bytes()`, `from_bytes()`, and a copy of all
             its columns (the least a batch cost when every batch built a new state)

Printed: ns per reading and the ratio to the baseline (stream: also the time a batch, and
for batches of 1,000 the cost by the number of events a batch raised: each event is an
`AlertEvent` with its hashed id, and the machine's work on a key that has something under way).
Nothing is asserted; the targets are under 1 µs a reading for the big batch and for streamed
batches of 1,000, and a cost per batch that does not grow with the state for small ones.

Run: `.venv/bin/python -m bench.alerts_eval` (`--devices`, `--reports`, `--repeats`).
"""

from __future__ import annotations

import argparse
import time
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from core.alerts import AlertState, Evaluator, default_rules, parse_rules
from core.alerts.rules import Rule
from core.readings import Readings
from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry

S = 1_000_000_000
T0 = 1_795_000_000 * S


def fleet(devices: int) -> Registry:
    """One pilot: half river gauges, half air-quality monitors, from the shipped sensors."""
    shipped = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    half = devices // 2
    rows = [{"id": f"rl-{i:05d}", "kind": "river_level", "sensors": ["level"]} for i in range(half)]
    rows += [
        {"id": f"aq-{i:05d}", "kind": "air_quality", "sensors": ["pm25"]}
        for i in range(devices - half)
    ]
    raw: dict[str, Any] = {
        "sensors": shipped["sensors"],
        "kinds": shipped["kinds"],
        "pilots": {
            "bench": {
                "name": "Bench",
                "timezone": "America/Argentina/Cordoba",
                "thresholds": {"level": {"alert": 5.3, "evacuation": 5.7}},
                "devices": rows,
            }
        },
    }
    return build_registry(raw, Path("<bench>"))


def readings(registry: Registry, reports: int, seed: int = 11) -> Readings:
    """`reports` reports of every device (its sensor and battery), in time order."""
    rng = np.random.default_rng(seed)
    n_dev = len(registry.device_list)
    interval = np.asarray([d.interval_s for d in registry.device_list], np.int64)
    level_code = registry.sensors["level"].code
    pm25_code = registry.sensors["pm25"].code
    battery_code = registry.sensors["battery_v"].code
    device = np.repeat(np.arange(n_dev, dtype=np.int64), reports)
    k = np.tile(np.arange(reports, dtype=np.int64), n_dev)
    phase = rng.integers(0, 600 * S, n_dev)[device]
    ts = T0 + phase + k * interval[device] * S + rng.integers(0, 5 * S, len(k))
    river = device < n_dev // 2
    walk = np.cumsum(rng.normal(0, 1, (n_dev, reports)), axis=1).ravel()
    main = np.where(river, np.round(5.2 + 0.02 * walk, 3), np.round(14 + 1.5 * walk, 1))
    volts = np.round(3.45 + 0.01 * np.cumsum(rng.normal(0, 1, (n_dev, reports)), axis=1), 3)
    sensor = np.where(river, level_code, pm25_code)
    out = Readings.from_arrays(
        np.concatenate((ts, ts)),
        np.concatenate((device, device)),
        np.concatenate((sensor, np.full(len(ts), battery_code))),
        np.concatenate((main, volts.ravel())),
    )
    return out.take(np.argsort(out.ts_ns, kind="stable"))


def few_rules(registry: Registry) -> tuple[Rule, ...]:
    document = {
        "defaults": {"include": False},
        "rules": [
            {"id": "level.alert", "kind": "threshold", "sensor": "level", "level": 5.3},
            {"id": "level.rise", "kind": "rate_of_rise", "sensor": "level", "rise_per_h": 0.05},
            {"id": "pm25.mean", "kind": "mean_over_guideline", "sensor": "pm25"},
            {"id": "battery", "kind": "battery_low"},
            {"id": "silent", "kind": "silent"},
        ],
    }
    return parse_rules(document, registry)


def best(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def lexsort_of(registry: Registry, batch: Readings) -> None:
    pair = batch.device.astype(np.int64) * len(registry.sensor_list) + batch.sensor
    np.lexsort((batch.ts_ns, pair))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    registry = fleet(args.devices)
    batch = readings(registry, args.reports)
    n = len(batch)
    now = int(batch.ts_ns.max())
    print(f"fleet: {args.devices} devices; batch: {n:,} readings over {args.devices} devices")

    base = best(args.repeats, lambda: lexsort_of(registry, batch))
    print(f"{'baseline np.lexsort':<28} {base / n * 1e9:8.0f} ns/reading")

    state = AlertState.empty()
    for name, rules in (("few rules", few_rules(registry)), ("defaults", default_rules(registry))):
        evaluator = Evaluator(rules, registry)
        found: list[int] = []

        def once(ev: Evaluator = evaluator, sink: list[int] = found) -> None:
            events, _ = ev.evaluate(batch, AlertState.empty(), now)
            sink.append(len(events))

        took = best(args.repeats, once)
        label = f"{name} ({len(rules)} rules)"
        print(
            f"{label:<28} {took / n * 1e9:8.0f} ns/reading  ({took / base:4.1f}x baseline, "
            f"{found[-1]} events)"
        )
    _, state = evaluator.evaluate(batch, AlertState.empty(), now)
    stream(evaluator, registry, state, args)

    columns = state.columns()
    start = time.perf_counter()
    data = state.to_bytes()
    saved = time.perf_counter() - start
    start = time.perf_counter()
    AlertState.from_bytes(data)
    loaded = time.perf_counter() - start
    copied = best(args.repeats, lambda: {k: v.copy() for k, v in state.columns().items()})
    print(
        f"state: {len(state):,} keys, {len(columns['window_ts_ns']):,} kept window readings, "
        f"{len(data) / 1e6:.1f} MB; to_bytes {saved * 1e3:.0f} ms, "
        f"from_bytes {loaded * 1e3:.0f} ms, a copy of its columns {copied * 1e3:.1f} ms"
    )


def stream(evaluator: Evaluator, registry: Registry, state: AlertState, args: Any) -> None:
    """Batches of 1,000, 100 and 10 readings after the big batch, each on the state before.

    Then the same 10-reading batches of a few devices on that state and on a state of those
    devices alone: the cost of a small batch is the same whatever the size of the state.
    """
    count = 200
    later = readings(registry, -(-count * 1000 // (2 * args.devices)), seed=12)
    shift = (args.reports + 1) * 600 * S
    later = Readings(later.ts_ns + shift, later.device, later.sensor, later.value)
    print(
        f"stream after it ({len(evaluator.rules)} rules, a state of {len(state):,} keys): "
        f"{count} batches of each size, each on the state the one before returned"
    )
    for size in (1000, 100, 10):
        batches = [later.take(slice(i, i + size)) for i in range(0, count * size, size)]
        took, each, found = run_stream(evaluator, state, batches, args.repeats)
        base = best(args.repeats, partial(lexsort_all, registry, batches))
        readings_n = count * size
        label = f"  batches of {size:,}"
        print(
            f"{label:<28} {took / readings_n * 1e9:8.0f} ns/reading  "
            f"({took / count * 1e6:,.0f} µs a batch; baseline {base / readings_n * 1e9:.0f} "
            f"ns/reading, {took / base:4.1f}x; {int(found.sum())} events)"
        )
        if size == 1000:
            parts = []
            for low, high in ((0, 10), (10, 50), (50, None)):
                chosen = (found >= low) & (found < (high if high is not None else 1 << 30))
                if chosen.any():
                    name = f"{low}+" if high is None else f"{low}-{high - 1}"
                    parts.append(
                        f"{name} events: {each[chosen].mean() / size * 1e9:.0f} ns/reading "
                        f"({int(chosen.sum())} batches)"
                    )
            print(f"{'    by events a batch':<28} " + "; ".join(parts))
    few = max(args.devices // 100, 1)
    mine = np.flatnonzero(later.device < few)
    batches = [later.take(mine[i : i + 10]) for i in range(0, min(len(mine), count * 10), 10)]
    big, _, _ = run_stream(evaluator, state, batches, args.repeats)
    first = readings(registry, args.reports)
    first = first.take(np.flatnonzero(first.device < few))
    _, small_state = evaluator.evaluate(first, AlertState.empty(), int(first.ts_ns.max()))
    small, _, _ = run_stream(evaluator, small_state, batches, args.repeats)
    print(
        f"  batches of 10 from {few} devices: {big / len(batches) * 1e6:,.0f} µs a batch on the "
        f"state of {len(state):,} keys, {small / len(batches) * 1e6:,.0f} µs on one of "
        f"{len(small_state):,} keys (those devices alone)"
    )


def run_stream(
    evaluator: Evaluator, state: AlertState, batches: list[Readings], repeats: int
) -> tuple[float, Any, Any]:
    """Evaluating `batches` in turn from a copy of `state`, `repeats` times.

    The best total time; per batch, its best time and its events.
    """
    saved = state.to_bytes()
    totals = []
    each = np.full(len(batches), np.inf)
    found = np.zeros(len(batches), dtype=np.int64)
    for _ in range(repeats):
        current = AlertState.from_bytes(saved)
        total = 0.0
        for i, part in enumerate(batches):
            start = time.perf_counter()
            new, current = evaluator.evaluate(part, current, int(part.ts_ns.max()))
            took = time.perf_counter() - start
            total += took
            each[i] = min(each[i], took)
            found[i] = len(new)
        totals.append(total)
    return min(totals), each, found


def lexsort_all(registry: Registry, batches: list[Readings]) -> None:
    for part in batches:
        lexsort_of(registry, part)


if __name__ == "__main__":
    main()

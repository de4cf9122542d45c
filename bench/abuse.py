"""bench/abuse: the most expensive requests a read token can make, and how fast refusals are.

Store: a real influxd holding `--days` (40) days of the three pilots as registered (every device
at its registered interval, with hourly and daily rollups), about 15,800 readings a day.

Measured, per endpoint, in this process (the API runs in it, under Starlette's TestClient, so
RSS is the API's): the slowest and most memory-hungry request a read token can make, answered
or refused, with its time and its RSS growth at the peak (sampled every millisecond); and, as
the baseline in the same run, what the dashboard asks (24 h of one sensor in 10-minute windows).
Targets: every refused request answered in under 50 ms; no request grows RSS by 64 MB.

`api_abuse` is the API part; the ingest part, good devices' throughput while one device floods,
is `bench/abuse_ingest.py` (real mosquitto, influxd and `pilots ingest`), run first.

Run: `.venv/bin/python -m bench.abuse` (Debian's mosquitto and influxdb), or `make bench-abuse`;
`--only api` or `--only ingest` runs one part.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psutil

from core.readings import Readings
from core.registry import Registry
from core.rollups import coarsen, compute_rollups, day_origin_ns
from core.store import Store
from core.uplinks import Uplinks

S = 1_000_000_000
HOUR_NS = 3600 * S
DAY_NS = 24 * HOUR_NS
#: The bound of the issue: no request may grow the API's RSS by more than this.
RSS_BOUND = 64 << 20
#: Refusals should cost nothing: answered within this.
REFUSAL_TARGET_S = 0.050
T = TypeVar("T")


# --- the fleet's data -----------------------------------------------------------------------


def day_of_data(registry: Registry, day_start_ns: int, seed: int) -> tuple[Readings, Uplinks]:
    """One day of every registered device at its registered interval."""
    rng = np.random.default_rng(seed)
    ts_parts, dev_parts, sen_parts, val_parts, up_ts, up_dev = [], [], [], [], [], []
    for device in registry.device_list:
        slots = np.arange(day_start_ns, day_start_ns + DAY_NS, device.interval_s * S)
        ts = slots.astype(np.int64) + rng.integers(0, 5 * S, len(slots))
        up_ts.append(ts)
        up_dev.append(np.full(len(ts), device.code, dtype=np.int32))
        for sensor_id in device.sensors:
            sensor = registry.sensors[sensor_id]
            high = min(sensor.max, sensor.min + 1000.0)
            ts_parts.append(ts)
            dev_parts.append(np.full(len(ts), device.code, dtype=np.int32))
            sen_parts.append(np.full(len(ts), sensor.code, dtype=np.int16))
            wave = rng.uniform(0.3, 0.6, len(ts))
            val_parts.append(np.round(sensor.min + (high - sensor.min) * wave, 3))
    readings = Readings.from_arrays(
        np.concatenate(ts_parts),
        np.concatenate(dev_parts),
        np.concatenate(sen_parts),
        np.concatenate(val_parts),
    )
    ts_all = np.concatenate(up_ts)
    n = len(ts_all)
    uplinks = Uplinks.from_columns(
        ts_ns=ts_all,
        device=np.concatenate(up_dev),
        received_ns=ts_all + S,
        fcnt=np.arange(n) + seed * n,
        rssi=np.full(n, -95.0),
        snr=np.full(n, 7.0),
        sf=np.full(n, 9),
        gateway=np.full(n, "gw-1"),
    )
    return readings, uplinks


def fill(store: Store, registry: Registry, days: int, end_ns: int) -> int:
    """Write `days` of the fleet ending at `end_ns`, with hourly and daily rollups; readings."""
    written = 0
    origins = {p.id: day_origin_ns(p.tz) for p in registry.pilot_list}
    for day in range(days):
        readings, uplinks = day_of_data(registry, end_ns - (days - day) * DAY_NS, seed=day)
        readings = readings.take(readings.ts_ns < end_ns)
        store.write(readings, uplinks.take(uplinks.ts_ns < end_ns))
        hourly = coarsen(compute_rollups(readings, "1m"), "1m", "1h")
        store.write_rollups("1h", hourly)
        for pilot in registry.pilot_list:
            mine = registry.device_pilot[hourly.device] == pilot.code
            daily = coarsen(hourly.take(mine), "1h", "1d", origin_ns=origins[pilot.id])
            store.write_rollups("1d", daily)
        written += len(readings)
    return written


# --- measuring ------------------------------------------------------------------------------


def peak_rss(work: Callable[[], T]) -> tuple[T, int, float]:
    """`work()`, its RSS growth at the peak in bytes (sampled every millisecond), its seconds."""
    process = psutil.Process()
    gc.collect()
    base = process.memory_info().rss
    top = base
    done = threading.Event()

    def watch() -> None:
        nonlocal top
        while not done.is_set():
            top = max(top, process.memory_info().rss)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.perf_counter()
    try:
        result = work()
    finally:
        seconds = time.perf_counter() - began
        done.set()
        watcher.join()
    return result, max(top, process.memory_info().rss) - base, seconds


def iso(ts_ns: int) -> str:
    """RFC 3339 in UTC."""
    return datetime.fromtimestamp(ts_ns / S, UTC).isoformat()


@dataclass(frozen=True)
class Abuse:
    """One expensive request, and whether the limits should refuse it."""

    endpoint: str
    what: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    refused: bool = True


def worst_requests(end_ns: int, days: int) -> list[Abuse]:
    """Per endpoint, the costliest requests a read token can make (data: `days` to `end_ns`)."""
    year = {"start": iso(end_ns - 400 * DAY_NS), "end": iso(end_ns)}
    # The longest reports the default PILOTS_API_MAX_SCAN_READINGS (250000) fits: Santa Fe
    # sends about 4,300 readings and uplinks a day (57 days), San Nicolas about 10,800 (23).
    held = {"start": iso(end_ns - min(days - 1, 57) * DAY_NS), "end": iso(end_ns)}
    nicolas_held = {"start": iso(end_ns - min(days - 1, 23) * DAY_NS), "end": iso(end_ns)}
    month = {"start": iso(end_ns - 30 * DAY_NS), "end": iso(end_ns)}
    nicolas = ["pm25", "pm10", "no2", "co", "temperature", "humidity", "pressure", "battery_v"]
    santa_fe = ["level", "water_temp", "rain", "rain_tips", "temperature", "humidity"]
    series = "/pilots/san-nicolas/series"
    return [
        Abuse("series", "every=1s, 400 days", series, {"sensor": "pm25", "every": "1s", **year}),
        Abuse(
            "series",
            "exclude_flagged, 8 sensors, 400 days",
            series,
            {"sensor": nicolas, "every": "1d", "exclude_flagged": "true", **year},
        ),
        Abuse(
            "series",
            "sensor x600, every=1h",
            series,
            {"sensor": ["pm25"] * 600, "every": "1h", **month},
        ),
        Abuse(
            "series",
            "8 sensors per device, daily, 400 days",
            series,
            {"sensor": nicolas, "every": "1d", "stats": "count,mean,p50,p99", **year},
            refused=False,
        ),
        Abuse(
            "series",
            "dashboard's 30 days: every sensor, 6h",
            series,
            {
                "sensor": [*nicolas, "wind_speed", "wind_dir"],
                "every": "6h",
                "stats": "count,mean,min,max",
                **month,
            },
            refused=False,
        ),
        Abuse(
            "series",
            "4 sensors per device, hourly, 30 days",
            series,
            {"sensor": nicolas[:4], "every": "1h", "stats": "count,mean,p50,p99", **month},
            refused=False,
        ),
        Abuse(
            "compare",
            "temperature hourly, 400 days",
            "/compare",
            {"sensor": "temperature", "every": "1h", **year},
        ),
        Abuse(
            "compare",
            "temperature daily, 400 days",
            "/compare",
            {"sensor": "temperature", "every": "1d", **year},
            refused=False,
        ),
        Abuse(
            "export",
            "raw, sensor x600",
            "/export",
            {"pilot": "san-nicolas", "sensor": ["pm25"] * 600, **year},
        ),
        Abuse(
            "export",
            "raw, 8 sensors, 400 days",
            "/export",
            {"pilot": "san-nicolas", "sensor": nicolas, **year},
        ),
        Abuse(
            "export",
            "raw, 6 sensors, 30 days",
            "/export",
            {"pilot": "santa-fe", "sensor": santa_fe, **month},
            refused=False,
        ),
        Abuse(
            "export",
            "parquet, hourly, 4 sensors, 30 days",
            "/export",
            {
                "pilot": "san-nicolas",
                "sensor": nicolas[:4],
                "every": "1h",
                "format": "parquet",
                **month,
            },
            refused=False,
        ),
        Abuse("report", "san-nicolas, 400 days", "/pilots/san-nicolas/report", year),
        Abuse(
            "report",
            f"santa-fe, {min(days - 1, 57)} days",
            "/pilots/santa-fe/report",
            held,
            refused=False,
        ),
        Abuse(
            "report",
            f"san-nicolas, {min(days - 1, 23)} days",
            "/pilots/san-nicolas/report",
            nicolas_held,
            refused=False,
        ),
        Abuse("report.html", "san-nicolas, 400 days", "/pilots/san-nicolas/report.html", year),
        Abuse(
            "report.html",
            "resistencia, 30 days",
            "/pilots/resistencia/report.html",
            month,
            refused=False,
        ),
        Abuse("series", "every=999999999w", series, {"sensor": "pm25", "every": "999999999w"}),
        Abuse("series", "start in year 1", series, {"sensor": "pm25", "start": "0001-01-01"}),
        Abuse("pilots", "every pilot", "/pilots", refused=False),
        Abuse("devices", "san-nicolas", "/pilots/san-nicolas/devices", refused=False),
    ]


@dataclass(frozen=True)
class Measured:
    """What one request cost."""

    abuse: Abuse
    status: int
    rss_bytes: int
    seconds: float

    @property
    def refused(self) -> bool:
        """Whether the API refused it (4xx)."""
        return 400 <= self.status < 500

    def line(self) -> str:
        """One row of the table."""
        a = self.abuse
        return (
            f"{a.endpoint:<12} {a.what:<42} {self.status:>4} {self.seconds * 1000:>9.1f} "
            f"{self.rss_bytes / 1e6:>9.1f}"
        )


def measure(client: Any, abuse: Abuse) -> Measured:
    """Send one request through `client` (a TestClient of the app), reading the whole body."""
    response, grown, seconds = peak_rss(lambda: client.get(abuse.path, params=abuse.params))
    return Measured(abuse, response.status_code, grown, seconds)


def api_abuse(client: Any, end_ns: int, days: int) -> list[Measured]:
    """Every worst request once (after a warm-up), with the dashboard's request as baseline."""
    baseline = Abuse(
        "baseline",
        "dashboard: 24 h of pm25, 10m windows",
        "/pilots/san-nicolas/series",
        {"sensor": "pm25", "every": "10m"},
        refused=False,
    )
    # Each pilot's hot cache loads at its first request (by design, the slow one): load them
    # and the code paths first, so that each request below is measured for its own cost.
    for pilot in ("santa-fe", "san-nicolas", "resistencia"):
        client.get(f"/pilots/{pilot}/series", params={"sensor": "temperature", "every": "1h"})
        client.get(f"/pilots/{pilot}/report", params={"start": iso(end_ns - DAY_NS)})
    results = [measure(client, baseline)]
    results += [measure(client, abuse) for abuse in worst_requests(end_ns, days)]
    print(f"{'endpoint':<12} {'request':<42} {'code':>4} {'ms':>9} {'RSS MB':>9}")
    for result in results:
        print(result.line())
    refused = [r for r in results if r.refused]
    answered = [r for r in results if not r.refused]
    slowest = max(refused, key=lambda r: r.seconds)
    print(
        f"refused {len(refused)}: slowest {slowest.seconds * 1000:.1f} ms "
        f"(target < {REFUSAL_TARGET_S * 1000:.0f} ms), most RSS "
        f"{max(r.rss_bytes for r in refused) / 1e6:.1f} MB"
    )
    print(
        f"answered {len(answered)}: slowest {max(r.seconds for r in answered):.2f} s, most RSS "
        f"{max(r.rss_bytes for r in answered) / 1e6:.1f} MB (bound {RSS_BOUND / 1e6:.0f} MB)"
    )
    return results


def main() -> None:
    """Start influxd, fill it, serve the API in this process and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=40, help="days of data in influxd")
    parser.add_argument(
        "--flood-messages", type=int, default=50_000, help="good messages in the ingest flood run"
    )
    parser.add_argument("--only", choices=["api", "ingest"], help="run one part only")
    args = parser.parse_args()
    if args.only != "api":
        from bench import abuse_ingest

        with tempfile.TemporaryDirectory(prefix="bench-abuse-ingest-") as tmp:
            abuse_ingest.report(abuse_ingest.run(args.flood_messages, Path(tmp)))
        if args.only == "ingest":
            return

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.auth import TokenStore
    from core.registry import load_registry
    from core.settings import Settings
    from core.store.influx import InfluxStore
    from localservices import Influxd, free_port

    registry = load_registry()
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        work = Path(tmp)
        server = Influxd(free_port(), work / "influxd")
        (work / "influxd").mkdir()
        server.start()
        try:
            store = InfluxStore(server.url, "abuse", registry)
            store.start()
            end_ns = time.time_ns() // HOUR_NS * HOUR_NS
            began = time.perf_counter()
            written = fill(store, registry, args.days, end_ns)
            print(f"load: {written:,} readings in {time.perf_counter() - began:.1f} s")
            settings = Settings(
                data_dir=work, influx_url=server.url, influx_database="abuse", _env_file=None
            )
            token = TokenStore.in_data_dir(work).create("bench", "read")
            app = create_app(settings, registry, store)
            with TestClient(app) as client:
                client.headers["Authorization"] = f"Bearer {token}"
                api_abuse(client, end_ns, args.days)
            store.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()

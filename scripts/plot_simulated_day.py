"""Draw one simulated day of each pilot as an SVG (docs/simulated-day.svg), faults included.

    .venv/bin/python scripts/plot_simulated_day.py [--day 2024-11-20] [--seed 0] [--out FILE]

The messages are the ones `pilots simulate` would publish (realistic faults, plain JSON so the
values can be read back directly), drawn per device in local time. The SVG is written by hand
(a few polylines and labels) rather than with a plotting library, so the project needs no
plotting dependency for one picture in its docs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.registry import load_registry  # noqa: E402
from core.timeutil import NS_PER_S  # noqa: E402
from simulators.faults import Faults  # noqa: E402
from simulators.fleet import Fleet  # noqa: E402

PANELS = {
    "santa-fe": ("rain", "level", "temperature"),
    "san-nicolas": ("pm25", "humidity", "wind_speed"),
    "resistencia": ("dissolved_oxygen", "ph", "turbidity"),
}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
W, H, PAD_L, PAD_T, GAP = 300, 150, 48, 30, 26


def _panel(x0: float, y0: float, title: str, lines: dict[str, list[tuple[float, float]]]) -> str:
    points = [p for line in lines.values() for p in line]
    lo = min((v for _, v in points), default=0.0)
    hi = max((v for _, v in points), default=1.0)
    if hi == lo:
        hi = lo + 1.0
    parts = [
        f'<rect x="{x0}" y="{y0}" width="{W}" height="{H}" fill="#fafafa" stroke="#ccc"/>',
        f'<text x="{x0}" y="{y0 - 6}" font-size="12" font-weight="bold">{title}</text>',
        f'<text x="{x0 - 4}" y="{y0 + 10}" font-size="9" text-anchor="end">{hi:.4g}</text>',
        f'<text x="{x0 - 4}" y="{y0 + H}" font-size="9" text-anchor="end">{lo:.4g}</text>',
    ]
    for hour in (0, 6, 12, 18, 24):
        x = x0 + W * hour / 24
        parts.append(f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y0 + H}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x}" y="{y0 + H + 11}" font-size="9" text-anchor="middle">{hour:02d}h</text>'
        )
    for colour, (_, line) in zip(COLOURS * 4, sorted(lines.items()), strict=False):
        coords = " ".join(
            f"{x0 + W * h / 24:.1f},{y0 + H - (v - lo) / (hi - lo) * H:.1f}" for h, v in line
        )
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.2"/>'
        )
    return "\n".join(parts)


def main() -> None:
    """Write the SVG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--day", default="2024-11-20", help="local date to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "simulated-day.svg")
    args = parser.parse_args()
    registry = load_registry()
    fleet = Fleet(registry, seed=args.seed, faults=Faults.realistic())
    tz = ZoneInfo("America/Argentina/Cordoba")
    start = datetime.fromisoformat(args.day).replace(tzinfo=tz)
    start_ns = int(start.timestamp()) * NS_PER_S
    series: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(dict)
    for m in fleet.messages(start_ns, start_ns + 86_400 * NS_PER_S):
        try:
            doc = orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            continue  # a payload cut in half on the way: nothing to draw
        _, pilot, device, _ = m.topic.split("/")
        hour = (doc["ts"] / 1000 - start.timestamp()) / 3600
        for sensor, value in doc["readings"].items():
            if sensor in PANELS[pilot] and registry.sensors[sensor].max >= value:
                series[pilot, sensor].setdefault(device, []).append((hour, value))
    panels = []
    for row, (pilot, sensors) in enumerate(PANELS.items()):
        name = registry.pilots[pilot].name
        for col, sensor in enumerate(sensors):
            spec = registry.sensors[sensor]
            x0 = PAD_L + col * (W + PAD_L)
            y0 = PAD_T + row * (H + PAD_T + GAP)
            lines = {d: sorted(pts) for d, pts in series[pilot, sensor].items()}
            panels.append(_panel(x0, y0, f"{name}: {spec.name} ({spec.unit})", lines))
    width = PAD_L + 3 * (W + PAD_L)
    height = PAD_T + 3 * (H + PAD_T + GAP)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
        + "\n".join(panels)
        + "\n</svg>\n"
    )
    args.out.write_text(svg, encoding="utf-8")
    print(f"wrote {args.out} ({args.day}, seed {args.seed}, one line per device, local time)")


if __name__ == "__main__":
    main()

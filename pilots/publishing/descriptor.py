"""What the folder says about itself: `datapackage.json`, the README and `SHA256SUMS`.

The descriptor is a Frictionless Data Package v1 (tabular): a Table Schema per table (the
Parquet files share their CSV's), each resource with the size and SHA-256 of its file as
written and its row count, the licence and contributors, and the registry's description of
the pilot (devices, sensors with units, thresholds) as a package property. The README says
the same for a reader. This module only describes files already written in the folder: it
must not write a table or read the store, and its schemas must stay true to `tables`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilots.publishing.period import Period

if TYPE_CHECKING:
    from core.registry import Pilot, Registry

#: Titles and texts of the licences open data is usually published under, by SPDX id.
LICENCES = {
    "CC-BY-4.0": (
        "Creative Commons Attribution 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
    ),
    "CC-BY-SA-4.0": (
        "Creative Commons Attribution Share-Alike 4.0",
        "https://creativecommons.org/licenses/by-sa/4.0/",
    ),
    "CC0-1.0": (
        "CC0 1.0 Public Domain Dedication",
        "https://creativecommons.org/publicdomain/zero/1.0/",
    ),
    "ODbL-1.0": ("Open Database License 1.0", "https://opendatacommons.org/licenses/odbl/1-0/"),
    "ODC-By-1.0": (
        "Open Data Commons Attribution 1.0",
        "https://opendatacommons.org/licenses/by/1-0/",
    ),
    "PDDL-1.0": (
        "Public Domain Dedication and License 1.0",
        "https://opendatacommons.org/licenses/pddl/1-0/",
    ),
}
MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sha256sums(folder: Path) -> str:
    """`SHA256SUMS`: every file of the folder (but itself), as `sha256sum -c` reads it."""
    sums = [f"{_sha256(p)}  {p.relative_to(folder).as_posix()}" for p in sorted(_files(folder))]
    return "\n".join(sums) + "\n"


def _field(name: str, kind: str, description: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "description": description, **more}


def _schemas(registry: Registry, period: Period) -> dict[str, dict[str, Any]]:
    """The Table Schema of each table (the Parquet files share their CSV's)."""
    pilot = period.pilot
    sensors = {"enum": list(pilot.sensors)}
    units = {"enum": sorted({registry.sensors[s].unit for s in pilot.sensors})}
    device = _field("device", "string", "device id (devices.csv)", constraints={"required": True})
    sensor = _field("sensor", "string", "sensor id (package property pilot.sensors)")
    unit = _field("unit", "string", "unit of the row's values (by sensor)", constraints=units)
    to_devices = [{"fields": "device", "reference": {"resource": "devices", "fields": "id"}}]
    stat = "of the day's readings in the period of the device and sensor, in `unit`"
    return {
        "readings": {
            "fields": [
                _field("time", "datetime", "device time, RFC 3339 with the pilot's UTC offset"),
                device,
                {**sensor, "constraints": {"required": True, **sensors}},
                _field("value", "number", "the reading, in `unit`"),
                unit,
            ],
            "primaryKey": ["time", "device", "sensor"],
            "foreignKeys": to_devices,
        },
        "daily": {
            "fields": [
                _field("day", "date", f"local calendar day ({pilot.timezone})"),
                _field(
                    "window_start",
                    "datetime",
                    "local midnight starting the day, or the period's start on a day it "
                    "starts inside; RFC 3339",
                ),
                device,
                {**sensor, "constraints": {"required": True, **sensors}},
                unit,
                _field("count", "integer", "readings received that day within the period"),
                _field("mean", "number", f"mean {stat}"),
                _field("min", "number", f"lowest {stat}"),
                _field("max", "number", f"highest {stat}"),
                _field("std", "number", f"standard deviation {stat}"),
                _field(
                    "device_completeness",
                    "number",
                    "the device's transmissions received / expected that day (all its "
                    "sensors; the report's heat map); empty when not known",
                    constraints={"minimum": 0},
                ),
            ],
            "primaryKey": ["day", "device", "sensor"],
            "foreignKeys": to_devices,
        },
        "devices": {
            "fields": [
                _field("id", "string", "device id", constraints={"required": True}),
                _field("kind", "string", "device kind (river level, weather, ...)"),
                _field("site", "string", "where it stands"),
                _field("lat", "number", "latitude, WGS 84", unit="degree_north"),
                _field("lon", "number", "longitude, WGS 84", unit="degree_east"),
                _field("interval_s", "integer", "registered reporting interval", unit="s"),
                _field("sensors", "string", "sensor ids it reports, space-separated"),
            ],
            "primaryKey": ["id"],
        },
    }


def _resource(work: Path, name: str, path: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """A resource with its integrity: size and SHA-256 of the file as written."""
    file = work / path
    fmt = file.suffix[1:]
    resource: dict[str, Any] = {
        "name": name,
        "path": path,
        "profile": "tabular-data-resource",
        "format": fmt,
        "mediatype": MEDIA[fmt],
        "hash": f"sha256:{_sha256(file)}",
    }
    size = file.stat().st_size
    if fmt == "csv":
        resource |= {"encoding": "utf-8", "bytes": size}
    else:
        # frictionless-py reads Parquet through pyarrow, never counting its bytes, so a
        # standard `bytes` would fail its validation: the size goes in a property of ours.
        resource["filesize"] = size
    if schema is not None:
        resource["schema"] = schema
    return resource


def _pilot_metadata(registry: Registry, pilot: Pilot) -> dict[str, Any]:
    """The registry's description of the pilot: devices, sensors with units, thresholds."""
    return {
        "id": pilot.id,
        "name": pilot.name,
        "theme": pilot.theme,
        "timezone": pilot.timezone,
        "devices": [
            {
                "id": d.id,
                "kind": d.kind,
                "site": d.site,
                "lat": d.lat,
                "lon": d.lon,
                "interval_s": d.interval_s,
                "sensors": list(d.sensors),
            }
            for d in pilot.devices
        ],
        "sensors": [
            {
                "id": s.id,
                "name": s.name,
                "unit": s.unit,
                "min": s.min,
                "max": s.max,
                "guideline_24h": s.guideline_24h,
            }
            for s in (registry.sensors[name] for name in pilot.sensors)
        ],
        "thresholds": [
            {
                "sensor": t.sensor,
                "name": t.name,
                "value": t.value,
                "unit": registry.sensors[t.sensor].unit,
            }
            for t in pilot.thresholds
        ],
    }


def _contributor(text: str) -> dict[str, str]:
    """`Name <e-mail>` as a package contributor."""
    found = re.fullmatch(r"\s*(.*?)\s*<([^<>@\s]+@[^<>\s]+)>\s*", text)
    if found:
        return {"title": found.group(1) or found.group(2), "email": found.group(2)}
    return {"title": text.strip()}


def descriptor(
    registry: Registry, period: Period, work: Path, rows: dict[str, int]
) -> dict[str, Any]:
    """`datapackage.json` (Data Package v1, tabular), with the pilot's metadata as properties."""
    pilot = period.pilot
    schemas = _schemas(registry, period)
    title, url = LICENCES.get(period.licence, (period.licence, None))
    licence = {"name": period.licence, "title": title} | ({"path": url} if url else {})
    start, end = period.at(period.start_ns), period.at(period.end_ns)
    package: dict[str, Any] = {
        "profile": "tabular-data-package",
        "name": f"{pilot.id}-{start[:10]}-{end[:10]}",
        "title": f"{pilot.name}: IoT pilot readings, {start[:10]} to {end[:10]} (end excluded)",
        "description": (
            f"Sensor readings of the UTN IoT pilot {pilot.name} ({pilot.theme or pilot.id}) "
            f"from {start} to {end} (excluded), as the devices timed them: every reading, "
            "daily statistics per device and sensor over local days, and the devices. "
            "index.html is the pilot's report for the same period."
        ),
        "keywords": ["IoT", "LoRaWAN", "UTN", "ITU", pilot.id],
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "licenses": [licence],
        "sources": [
            {"title": f"Field devices of the UTN IoT pilot {pilot.name} ({pilot.id})"},
            {"title": "Pilot Telemetry: MQTT ingest into InfluxDB, numpy aggregation"},
        ],
        "temporal": {"start": start, "end": end, "end_excluded": True},
        "timezone": pilot.timezone,
        "pilot": _pilot_metadata(registry, pilot),
        "resources": [
            _resource(work, "readings", "data/readings.csv", schemas["readings"]),
            _resource(work, "readings-parquet", "data/readings.parquet", schemas["readings"]),
            _resource(work, "daily", "data/daily.csv", schemas["daily"]),
            _resource(work, "daily-parquet", "data/daily.parquet", schemas["daily"]),
            _resource(work, "devices", "data/devices.csv", schemas["devices"]),
        ],
    }
    if period.contributors:
        package["contributors"] = [_contributor(c) for c in period.contributors]
    for resource in package["resources"]:
        resource["rows"] = rows[resource["name"].removesuffix("-parquet")]
    return package


#: What Markdown could read as markup (emphasis, links, HTML, tables, headings) in a line.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&])")


def md_text(text: str) -> str:
    """A registry string as literal Markdown text on one line: every markup character escaped."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def md_code(text: str) -> str:
    """A registry string as a Markdown code span, fenced longer than any backtick run in it."""
    flat = " ".join(text.split())
    fence = "`" * (max((len(r) for r in re.findall(r"`+", flat)), default=0) + 1)
    return f"{fence} {flat} {fence}" if "`" in flat else f"{fence}{flat}{fence}"


def readme(period: Period, rows: dict[str, int]) -> str:
    """The folder's README: what it is, the period, the licence, how to read it.

    The registry's strings are escaped (`md_text`, `md_code`): a name is shown, never read
    as markup, links or HTML.
    """
    pilot = period.pilot
    name, theme = md_text(pilot.name), md_text(pilot.theme or "sensors")
    start, end = period.at(period.start_ns), period.at(period.end_ns)
    title, url = LICENCES.get(period.licence, (period.licence, None))
    licence = f"[{title}]({url})" if url else md_text(title)
    return f"""# {name}: IoT pilot data, {start[:10]} to {end[:10]}

Readings of the UTN IoT pilot **{name}** ({md_code(pilot.id)}, {theme}) from
{start} to {end} (excluded), published with Pilot Telemetry's `pilots publish`.
Licence: {licence} ({md_code(period.licence)}). Time zone: {md_code(pilot.timezone)}.

| file | what |
|---|---|
| `index.html` | the pilot's report for the period, to open in a browser (offline) |
| `datapackage.json` | the Frictionless Data Package: the tables' schemas, sizes and hashes; \
the pilot's devices, sensors, units and thresholds |
| `data/readings.csv`, `.parquet` | {rows["readings"]} readings: time, device, sensor, value, unit |
| `data/daily.csv`, `.parquet` | {rows["daily"]} daily statistics per device and sensor |
| `data/devices.csv` | the {rows["devices"]} devices: kind, site, latitude, longitude, interval |
| `SHA256SUMS` | the SHA-256 of every file |

Times in the CSV files are RFC 3339 with the pilot's UTC offset (`2026-11-20T06:00:00-03:00`);
in the Parquet files they are UTC timestamps (nanoseconds). `time` is the device's clock.
Daily statistics are per local day over the day's readings within the period: a day the
period starts or ends inside counts only its part in the period (its `window_start` is then
the period's start, not midnight); a day without readings has count 0 and no figures;
`device_completeness` is the device's transmissions received / expected that day.

## Reading it

```sh
sha256sum -c SHA256SUMS                 # every file as published
frictionless validate datapackage.json  # every table against its schema
```

```python
import pandas as pd
readings = pd.read_parquet("data/readings.parquet")
daily = pd.read_csv("data/daily.csv", parse_dates=["window_start"])
import pyarrow.parquet as pq
table = pq.read_table("data/readings.parquet")
from frictionless import Package
rows = Package("datapackage.json").get_resource("readings").read_rows()
```

In R: `frictionless::read_resource(frictionless::read_package("datapackage.json"), "readings")`.
"""

"""Observation documents: a page of readings as SensorThings JSON, built column-wise.

What it is for: turning a `Page` (series index, times, values) into the standard's
Observation objects (with `@iot.selfLink` and navigation links) or into the form of the
standard's Data Array extension (`$resultFormat=dataArray`): one object per Datastream with
`components` and `dataArray` rows. Times are formatted for the whole page at once by numpy
(`iso_times`), each in the shortest exact form of its own instant (so one instant is always
the same text); no per-reading objects other than the output itself. This module must not
read the store.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from api.sta.errors import bad
from api.sta.observations import Page, Series
from core.timeutil import NS_PER_MS, NS_PER_S

NS_PER_US = 1000

#: What `$select` may name on an Observation (the last three are never set here).
OBSERVATION_FIELDS = (
    "id",
    "@iot.id",
    "@iot.selfLink",
    "phenomenonTime",
    "resultTime",
    "result",
    "Datastream",
    "FeatureOfInterest",
    "resultQuality",
    "validTime",
    "parameters",
)
_UNITS: tuple[Literal["s", "ms", "us", "ns"], ...] = ("s", "ms", "us", "ns")
#: dataArray components in the standard's order.
COMPONENTS = ("id", "phenomenonTime", "resultTime", "result")


def iso_times(ts_ns: NDArray[np.int64]) -> list[str]:
    """RFC 3339 UTC text of each instant, in the shortest exact form of that instant.

    Whole seconds print without a fraction (`...:00Z`), then milliseconds (`.250Z`),
    microseconds, nanoseconds: the form depends on the instant alone, never on the page it is
    in, so one instant is always the same text.
    """
    if not len(ts_ns):
        return []
    stamps: NDArray[np.datetime64] = ts_ns.astype("datetime64[ns]")
    # 0: s, 1: ms, 2: us, 3: ns (the coarsest unit that holds the instant exactly).
    form = (
        (ts_ns % NS_PER_S != 0).astype(np.int8)
        + (ts_ns % NS_PER_MS != 0)
        + (ts_ns % NS_PER_US != 0)
    )
    first = int(form[0])
    if (form == first).all():  # the usual page: one form throughout
        text: list[str] = np.datetime_as_string(stamps, unit=_UNITS[first], timezone="UTC").tolist()
        return text
    out = np.empty(len(ts_ns), dtype=object)
    for i, unit in enumerate(_UNITS):
        chosen = form == i
        if chosen.any():
            out[chosen] = np.datetime_as_string(stamps[chosen], unit=unit, timezone="UTC")
    mixed: list[str] = out.tolist()
    return mixed


def iso(ts_ns: int) -> str:
    """One instant as RFC 3339 UTC text."""
    return iso_times(np.asarray([ts_ns], dtype=np.int64))[0]


def results(values: NDArray[np.float64]) -> list[float | None]:
    """JSON numbers (None for the non-finite, which JSON cannot carry)."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


def check_select(select: tuple[str, ...] | None) -> None:
    """400 for a `$select` naming what an Observation does not have."""
    for name in select or ():
        if name not in OBSERVATION_FIELDS:
            raise bad(f"$select: Observations have no property {name!r}")


def observations(
    root: str, series: list[Series], page: Page, select: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """The page as Observation objects (expansions are added by the caller)."""
    times = iso_times(page.ts_ns)
    values = results(page.value)
    names = [s.id for s in series]
    ids = [f"{names[w]}:{t}" for w, t in zip(page.which.tolist(), page.ts_ns.tolist(), strict=True)]
    base = f"{root}/Observations('"
    if select is None:
        links = [f"{base}{oid}')" for oid in ids]
        return [
            {
                "@iot.id": oid,
                "@iot.selfLink": link,
                "phenomenonTime": t,
                "resultTime": t,
                "result": v,
                "Datastream@iot.navigationLink": link + "/Datastream",
                "FeatureOfInterest@iot.navigationLink": link + "/FeatureOfInterest",
            }
            for oid, link, t, v in zip(ids, links, times, values, strict=True)
        ]
    chosen = set(select)
    out: list[dict[str, Any]] = []
    for oid, t, v in zip(ids, times, values, strict=True):
        doc: dict[str, Any] = {}
        if chosen & {"id", "@iot.id"}:
            doc["@iot.id"] = oid
        if "@iot.selfLink" in chosen:
            doc["@iot.selfLink"] = f"{base}{oid}')"
        if "phenomenonTime" in chosen:
            doc["phenomenonTime"] = t
        if "resultTime" in chosen:
            doc["resultTime"] = t
        if "result" in chosen:
            doc["result"] = v
        for relation in ("Datastream", "FeatureOfInterest"):
            if relation in chosen:
                doc[f"{relation}@iot.navigationLink"] = f"{base}{oid}')/{relation}"
        out.append(doc)
    return out


def data_arrays(
    root: str, series: list[Series], page: Page, select: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """The page in the dataArray form: one object per Datastream, rows of `components`."""
    components = [
        c
        for c in COMPONENTS
        if select is None or c in select or (c == "id" and "@iot.id" in select)
    ]
    if not components:
        raise bad("$select names no dataArray component; the components: " + ", ".join(COMPONENTS))
    times = iso_times(page.ts_ns)
    values = results(page.value)
    which = page.which.tolist()
    stamps = page.ts_ns.tolist()
    out: list[dict[str, Any]] = []
    start = 0
    while start < len(which):
        end = start
        while end < len(which) and which[end] == which[start]:
            end += 1
        s = series[which[start]]
        columns: list[list[Any]] = []
        for c in components:
            if c == "id":
                columns.append([f"{s.id}:{t}" for t in stamps[start:end]])
            elif c == "result":
                columns.append(values[start:end])
            else:
                columns.append(times[start:end])
        out.append(
            {
                "Datastream@iot.navigationLink": f"{root}/Datastreams('{s.id}')",
                "components": components,
                "dataArray@iot.count": end - start,
                "dataArray": [list(row) for row in zip(*columns, strict=True)],
            }
        )
        start = end
    return out

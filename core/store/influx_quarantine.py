"""The quarantine part of the InfluxDB adapter (`core.store.QuarantineStore` over InfluxQL).

Measurement `quarantine`: tags `worker`, `source`, `reason`; fields `received_ns`, `topic`,
`detail`, `sensor`, `length`, `sha256`, `head` (the kept bytes, base64), `refusals`, `cost`;
time = the entry's key time. Measurement `quarantine_dropped`: tags `worker`, `why`, `source`,
`reason`; field `n`. docs/SCHEMA.md. Tag values are checked names (`core.quarantine.tag_safe`,
the reason codes), so they may be written into DELETE statements, which take no parameters.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

from core.errors import StoreError
from core.quarantine import DROPPED_AGE, QuarantineEntry, QuarantineSummary, Usage, tag_safe

QUARANTINE = "quarantine"
DROPPED = "quarantine_dropped"

_REASON = re.compile(r"^[a-z0-9_]{1,64}$")
_FIELDS = '"received_ns","topic","detail","sensor","length","sha256","head","refusals"'


def _string(text: str) -> str:
    """A string field value: backslash and quote escaped (newlines are kept by InfluxDB)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _checked(name: str, pattern: re.Pattern[str] | None = None) -> str:
    ok = _REASON.match(name) if pattern is not None else tag_safe(name) == name
    if not ok:
        raise StoreError(f"not a quarantine name: {name!r}")
    return name


def encode_entries(entries: Sequence[QuarantineEntry]) -> bytes:
    """The entries as line protocol points."""
    lines = []
    for e in entries:
        tags = f"worker={_checked(e.worker)},source={_checked(e.source)},reason={e.reason}"
        _checked(e.reason, _REASON)
        fields = ",".join(
            (
                f"received_ns={int(e.received_ns)}i",
                f"topic={_string(e.topic)}",
                f"detail={_string(e.detail)}",
                f"sensor={_string(e.sensor or '')}",
                f"length={int(e.length)}i",
                f"sha256={_string(e.sha256)}",
                f"head={_string(base64.b64encode(e.head).decode())}",
                f"refusals={int(e.refusals)}i",
                f"cost={int(e.cost_bytes)}i",
            )
        )
        lines.append(f"{QUARANTINE},{tags} {fields} {int(e.ts_ns)}")
    return "\n".join(lines).encode()


class InfluxQuarantine:
    """The quarantine methods of `InfluxStore` (a mixin: it needs `_query` and `_send`)."""

    def _query(self, q: str, params: dict[str, object], *, csv: bool) -> bytes:  # the store's
        raise NotImplementedError

    def _send(self, body: bytes) -> None:  # the store's
        raise NotImplementedError

    def _results(self, q: str, params: dict[str, object] | None = None) -> list[dict[str, Any]]:
        body = json.loads(self._query(q, params or {}, csv=False))
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise StoreError(f"InfluxDB quarantine query failed: {result['error']}")
        return results

    def _rows(self, q: str, params: dict[str, object]) -> list[dict[str, Any]]:
        """Every row of every series of the answer, as a column -> value mapping."""
        return [
            dict(zip(series["columns"], row, strict=True))
            for result in self._results(q, params)
            for series in result.get("series", [])
            for row in series.get("values", [])
        ]

    def add_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Write the entries as points (a rewrite of a key replaces it)."""
        if entries:
            self._send(encode_entries(entries))

    def record_dropped(
        self, worker: str, ts_ns: int, dropped: dict[tuple[str, str, str], int]
    ) -> None:
        """Write the counts as points of `quarantine_dropped`."""
        lines = [
            f"{DROPPED},worker={_checked(worker)},why={_checked(why, _REASON)},"
            f"source={_checked(source)},reason={_checked(reason, _REASON)} n={int(n)}i {ts_ns}"
            for (why, source, reason), n in dropped.items()
            if n > 0
        ]
        if lines:
            self._send("\n".join(lines).encode())

    def quarantine_entries(
        self,
        *,
        reason: str | None = None,
        source: str | None = None,
        ids: Sequence[int] | None = None,
        worker: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        oldest_first: bool = False,
        limit: int | None = 100,
    ) -> list[QuarantineEntry]:
        """Entries newest first (ids: one statement each, InfluxQL has no `time IN`)."""
        clauses: list[str] = []
        params: dict[str, object] = {}
        for tag, value in (("reason", reason), ("source", source), ("worker", worker)):
            if value is not None:
                clauses.append(f'"{tag}" = ${tag}')
                params[tag] = value
        for clause, name, bound in (
            ("time >= $since", "since", since_ns),
            ("time < $until", "until", until_ns),
        ):
            if bound is not None:
                clauses.append(clause)
                params[name] = int(bound)
        head = f'SELECT {_FIELDS},"worker","source","reason" FROM "{QUARANTINE}"'  # noqa: S608
        order = " ORDER BY time " + ("ASC" if oldest_first else "DESC")
        tail = order + (f" LIMIT {int(limit)}" if limit is not None else "")
        if ids is not None:
            if not ids:
                return []
            q = _by_time(head, clauses, ids, params)
        else:
            q = head + (" WHERE " + " AND ".join(clauses) if clauses else "") + tail
        out = [_entry(row) for row in self._rows(q, params)]
        out.sort(
            key=lambda e: (e.ts_ns if oldest_first else -e.ts_ns, e.worker, e.source, e.reason)
        )
        return out if limit is None else out[:limit]

    def quarantine_summary(self) -> QuarantineSummary:
        """Refusals kept per reason and removed per (why, reason)."""
        q = (
            f'SELECT sum("refusals") FROM "{QUARANTINE}" GROUP BY "reason"; '  # noqa: S608
            f'SELECT sum("n") FROM "{DROPPED}" GROUP BY "why","reason"'
        )
        kept_result, dropped_result = self._results(q)
        kept = {s["tags"]["reason"]: int(s["values"][0][1]) for s in kept_result.get("series", [])}
        dropped = {
            (s["tags"]["why"], s["tags"]["reason"]): int(s["values"][0][1])
            for s in dropped_result.get("series", [])
        }
        return QuarantineSummary(kept=dict(sorted(kept.items())), dropped=dropped)

    def quarantine_usage(self, worker: str) -> dict[str, Usage]:
        """Entries and bytes of one worker, per source."""
        q = (
            f'SELECT count("cost"), sum("cost") FROM "{QUARANTINE}" '  # noqa: S608
            'WHERE "worker" = $worker GROUP BY "source"'
        )
        (result,) = self._results(q, {"worker": worker})
        return {
            s["tags"]["source"]: Usage(int(s["values"][0][1]), int(s["values"][0][2]))
            for s in result.get("series", [])
        }

    def delete_quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Remove exactly these entries (one DELETE each, sent together)."""
        statements = [
            f'DELETE FROM "{QUARANTINE}" WHERE "worker" = \'{_checked(e.worker)}\' AND '  # noqa: S608
            f"\"source\" = '{_checked(e.source)}' AND \"reason\" = '{_checked(e.reason, _REASON)}'"
            f" AND time >= {int(e.ts_ns)} AND time <= {int(e.ts_ns)}"
            for e in entries
        ]
        for start in range(0, len(statements), 200):
            self._results("; ".join(statements[start : start + 200]))

    def prune_quarantine(
        self, worker: str, before_ns: int, now_ns: int
    ) -> dict[tuple[str, str], int]:
        """Count (as of `now_ns`), then remove, one worker's entries older than `before_ns`."""
        q = (
            f'SELECT sum("refusals") FROM "{QUARANTINE}" '  # noqa: S608
            'WHERE "worker" = $worker AND time < $before GROUP BY "source","reason"'
        )
        (result,) = self._results(q, {"worker": worker, "before": int(before_ns)})
        counts = {
            (s["tags"]["source"], s["tags"]["reason"]): int(s["values"][0][1])
            for s in result.get("series", [])
        }
        if counts:
            self.record_dropped(worker, now_ns, {(DROPPED_AGE, *k): n for k, n in counts.items()})
            self._results(
                f'DELETE FROM "{QUARANTINE}" WHERE "worker" = \'{_checked(worker)}\' '  # noqa: S608
                f"AND time < {int(before_ns)}"
            )
        return counts


def _by_time(head: str, clauses: list[str], ids: Sequence[int], params: dict[str, object]) -> str:
    """One statement per entry time (InfluxQL has no `time IN`), the times bound parameters."""
    statements = []
    for i, ts in enumerate(ids):
        params[f"t{i}"] = int(ts)
        statements.append(f"{head} WHERE " + " AND ".join([*clauses, f"time = $t{i}"]))
    return "; ".join(statements)


def _entry(row: dict[str, Any]) -> QuarantineEntry:
    return QuarantineEntry(
        ts_ns=int(row["time"]),
        worker=str(row["worker"]),
        source=str(row["source"]),
        reason=str(row["reason"]),
        received_ns=int(row["received_ns"] or 0),
        topic=str(row["topic"] or ""),
        detail=str(row["detail"] or ""),
        sensor=row["sensor"] or None,
        length=int(row["length"] or 0),
        sha256=str(row["sha256"] or ""),
        head=base64.b64decode(row["head"] or ""),
        refusals=int(row["refusals"] or 1),
    )

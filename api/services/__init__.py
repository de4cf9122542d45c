"""The service layer: queries and aggregation calls behind the routes, one module per resource.

Routes validate names (pilot, sensor, device) against the registry and parse parameters; the
services read the store (or the hot cache), run the numpy core and shape typed responses with
times in the pilot's local offset. Nothing here knows about HTTP beyond raising `QueryError`
for a request that is too large and `BusyError` for one that finds no slot free (both in
`api.services.errors`, re-exported here).

Per resource: `pilots`, `series` (also `/compare`), `report` (builds a report) and
`report_cache` (keeps built ones), `export`, `quarantine`. Shared: `sources` (where readings
are read from), `values` (the clock and conversions into answers), `cost` (estimates before
reading), `slots` (how many expensive requests at once).
"""

from api.services.errors import BusyError, QueryError

__all__ = ["BusyError", "QueryError"]

"""A pilot's period as a folder another city or an archive can take whole (`pilots publish`).

The folder (docs/PUBLISHING.md) holds the shareable report as `index.html`, a Frictionless Data
Package (`datapackage.json`: readings, daily statistics and devices as CSV and Parquet, with
table schemas, sizes and SHA-256 hashes), a README and `SHA256SUMS`. The page is the report
service's (`ReportCache.get(...).html`, what `/pilots/{pilot}/report.html` serves); the
readings are the export service's (`api.services.export.raw`), read one slice of the period at
a time and appended to the files, so memory holds a slice, never the period; the daily
statistics are the series service's local days (`/series?every=day`) through the export
service's `windowed`, a day the period cuts counted over its part in the period only, with the
report's completeness of each device and day. This package computes no figure and renders no
HTML: it asks the services and arranges their answers.

Bounds are the API's: a period longer than `PILOTS_API_MAX_RANGE_DAYS`, or more readings than
`PILOTS_API_EXPORT_MAX_ROWS`, is refused (`RefusedError`) before anything is written. The
folder is written under a temporary name beside `out` and renamed into place at the end: a
failed run leaves no half folder. An `out` that is, holds or lies in the data dir, or holds the
registry, is refused; `--force` replaces only an earlier publish. Whether the pilot is public
does not matter: the operator reads it all (the command notes a private one). Exit codes and
options are the command's (`pilots.commands.publish`), not ours.

The modules: `period` (the options checked as a `Period`, the `Services` read through, the
estimate against the bounds), `folder` (the run: the files in order, the temporary folder and
its atomic put-in-place), `tables` (readings, daily statistics and devices as CSV and Parquet,
slice by slice), `descriptor` (Table Schemas, resources with sizes and hashes, the registry's
pilot metadata, `datapackage.json`, the README and `SHA256SUMS`).
"""

from pilots.publishing.folder import Kept, check_out, publish
from pilots.publishing.period import (
    DEFAULT_LICENCE,
    Period,
    RefusedError,
    Services,
    check_period,
    open_services,
)

__all__ = [
    "DEFAULT_LICENCE",
    "Kept",
    "Period",
    "RefusedError",
    "Services",
    "check_out",
    "check_period",
    "open_services",
    "publish",
]

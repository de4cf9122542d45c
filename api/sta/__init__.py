"""The OGC SensorThings API 1.1, Part 1 (Sensing), read-only, at `/sta/v1.1`.

The registry's devices, kinds and sensors are the Things, Sensors, ObservedProperties and
Datastreams; the store's readings are the Observations, read on demand, never copied. The
package, by concern: `model` (entities, ids, paths), `resolve` (a path walked), `options`
and `expression` (the query options and `$filter`), `observations` (pages of readings by
time cursor), `documents` (observations as JSON), `paging` (an Observations collection's
order, `$skip` and `$count`), `budget` (page sizes and what `$expand` may cost), `render` (a
request answered), `routes` (the router), `errors`. docs/SENSORTHINGS.md says what is
served and its limits. Nothing here writes.
"""

from api.sta.routes import router

__all__ = ["router"]

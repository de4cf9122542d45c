"""The service layer: queries and aggregation calls behind the routes, one module per resource.

Routes validate names (pilot, sensor, device) against the registry and parse parameters; the
services read the store (or the hot cache), run the numpy core and shape typed responses with
times in the pilot's local offset. Nothing here knows about HTTP beyond raising `QueryError`
for a request that is too large and `BusyError` for one that finds no slot free.
"""


class QueryError(ValueError):
    """The request is valid but over a limit; the message says which and how to fit it."""


class BusyError(RuntimeError):
    """As many expensive requests as allowed are in progress; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

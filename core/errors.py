"""One exception base for the project, one subclass per failure tier.

Callers catch `PilotsError`; library errors are wrapped at the boundary with `raise ... from exc`
so that a traceback still shows the cause.
"""


class PilotsError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(PilotsError):
    """Bad configuration: raised at start-up with a message that names the setting or file."""


class RegistryError(ConfigError):
    """The registry file is missing, unreadable or inconsistent."""


class StoreError(PilotsError):
    """The store could not be reached or refused a request.

    `status` is the HTTP status when the store answered with one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StoreUnavailableError(StoreError):
    """A transient failure (connection refused, timeout, 5xx, 429): retry later.

    `retry_after_s` is what the store asked for (HTTP `Retry-After`), when it did.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class StoreRejectedError(StoreError):
    """The store refused the data itself (bad line, field type conflict): retrying won't help."""


class StoreTooLargeError(StoreError):
    """The request was too large for the store (HTTP 413): send it in smaller parts."""

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
    """The store could not be reached or refused a request."""


class StoreUnavailableError(StoreError):
    """A transient store failure (connection refused, timeout, 5xx): retry later."""


class StoreRejectedError(StoreError):
    """The store refused the data itself (bad line, field type conflict): retrying won't help."""

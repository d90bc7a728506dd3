"""The exceptions emarl raises.

Every error emarl raises on purpose derives from :class:`EmarlError`, so a caller
can catch one type. Foreign exceptions (``sqlite3``, ``psycopg``, MQTT, file
system) are translated at the package boundary with ``raise ... from exc``;
strategies and handlers never see them raw.

::

    EmarlError
    ├── ConfigError     a scenario file or an option is wrong (names the key)
    ├── DataError       market data cannot be read or fails validation
    │                   (names the file, the row and the problem)
    ├── BusError        an event could not be published or delivered
    ├── StorageError    the database refused a read or a write
    │   ├── RunNotFoundError   a run id that is not in the database
    │   └── ResumeError        a paper run's stored bars do not reproduce its
    │                          stored state; it is not resumed
    └── HandlerError    a handler raised while processing an event; the run
                        is stored as ``failed``

Trading outcomes are *not* exceptions: a risk refusal is an ``OrderDenied``
event and a broker refusal an ``OrderRejected`` event.
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "ConfigError",
    "DataError",
    "EmarlError",
    "HandlerError",
    "ResumeError",
    "RunNotFoundError",
    "StorageError",
]


class EmarlError(Exception):
    """Base class of every error emarl raises on purpose."""


class ConfigError(EmarlError):
    """A scenario file, a config value or a command-line option is invalid."""


class DataError(EmarlError):
    """Market data could not be read or failed validation."""


class BusError(EmarlError):
    """An event could not be published or delivered."""


class StorageError(EmarlError):
    """The database refused a read or a write."""


class RunNotFoundError(StorageError):
    """A run id that the database does not hold."""


class ResumeError(StorageError):
    """Re-driving a paper run's stored bars did not reproduce what was stored."""


class HandlerError(EmarlError):
    """A handler raised while processing an event."""

"""The base of every component's configuration and its range checks.

Each component owns its configuration type (``DataConfig`` in :mod:`engine.feeds.config`,
``BrokerConfig`` in :mod:`brokers.config`, the strategies' in their modules...), a frozen
``msgspec.Struct`` that rejects unknown keys. msgspec checks types when it decodes;
:meth:`ConfigStruct.check` checks the ranges, raising :class:`ConfigError` with the key.
:mod:`engine.app.scenario` assembles them into one scenario and is the only place that
decodes one.
"""

from __future__ import annotations

import math

import msgspec

from engine.core.errors import ConfigError

__all__ = ["MAX_SEED", "ConfigStruct", "check_seed", "non_negative", "positive"]

#: the largest seed: seeds are stored as 64-bit signed integers
MAX_SEED = 2**63 - 1


class ConfigStruct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def check(self) -> None:
        """Raise ``ConfigError`` for values of the right type but outside their range."""


def positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def non_negative(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be zero or positive, got {value!r}")


def check_seed(name: str, value: int) -> None:
    """A random seed: numpy takes whole numbers from 0, the database up to :data:`MAX_SEED`."""
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be a whole number from 0 to 2**63 - 1, got {value}")

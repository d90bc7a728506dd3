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

__all__ = ["ConfigStruct", "non_negative", "positive"]


class ConfigStruct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def check(self) -> None:
        """Raise ``ConfigError`` for values of the right type but outside their range."""


def positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def non_negative(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be zero or positive, got {value!r}")

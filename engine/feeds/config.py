"""Where bars come from and how they are validated: ``[data]`` of a scenario."""

from __future__ import annotations

import zoneinfo
from typing import Literal

import msgspec

from engine.core.configs import ConfigStruct, positive
from engine.core.errors import ConfigError

__all__ = ["DataConfig", "DropPolicy", "OrderPolicy", "Policy", "SyntheticConfig"]

Policy = Literal["error", "drop", "fill"]
OrderPolicy = Literal["error", "drop", "sort"]
DropPolicy = Literal["error", "drop"]


class SyntheticConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A seeded regime-switching market (see :mod:`engine.feeds.synthetic`)."""

    bars: int = 20_000
    start: str = "2020-01-01T00:30:00Z"
    start_price: float = 100.0
    stay_probability: float = 0.995
    base_volatility: float = 0.004
    #: a universe's: the correlation of any two symbols' shocks (one market factor)
    correlation: float = 0.3

    def check(self) -> None:
        positive("data.synthetic.bars", self.bars)
        positive("data.synthetic.start_price", self.start_price)
        positive("data.synthetic.base_volatility", self.base_volatility)
        if not 0.0 <= self.correlation <= 1.0:
            raise ConfigError(
                f"data.synthetic.correlation must be in [0, 1], got {self.correlation}"
            )
        if not 0.0 <= self.stay_probability < 1.0:
            raise ConfigError(
                f"data.synthetic.stay_probability must be in [0, 1), got {self.stay_probability}"
            )


class DataConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where bars come from and how they are validated.

    ``source`` is ``"file"`` (``path`` to a CSV or Parquet file) or ``"synthetic"``.
    Timestamps without a zone are read in ``timezone``; ``timestamp_label`` says
    whether a timestamp marks the bar's start or its end (emarl stamps bars with
    their end). The file's own bar length is ``source_bar_minutes``, or, when 0, the
    most common spacing of its rows; a start-stamped bar ends one *source* bar length
    after its start. Finer bars are resampled to ``bar_minutes`` (right-closed,
    right-labelled); bars coarser than ``bar_minutes``, or whose length does not divide
    it, are refused. The ``on_*`` policies say what to do with a repairable
    problem: ``error`` (default) stops with the file, row and problem;
    ``drop`` removes the row; ``fill`` repairs it (a flat bar at the previous
    close for a bad price, volume 0 for a bad volume, a widened range for an
    inconsistent high/low, and for a bar off the grid a merge into the grid
    bar that contains it). Duplicates can only be dropped; out-of-order rows
    can be dropped or sorted.

    A universe (``[[instruments]]`` in a scenario) reads one file per symbol: an
    instrument's own ``path``; ``path`` with a ``{symbol}`` placeholder
    (``data/{symbol}.parquet``); a glob (``data/*.csv``: the file whose name without its
    suffix is the symbol); or one long file whose ``symbol_column`` names each row's
    symbol. Every symbol's bars are validated on their own, by the same rules.

    Limits that no real market reaches keep absurd numbers out of the accounting:
    a price above ``max_price`` or a bar whose open, high, low or close lies more
    than ``max_abs_log_return`` (natural log) from the previous bar's close, or
    whose high and low lie further apart, is a bad price (``on_bad_price``); a
    volume above ``max_volume`` is a bad volume (``on_bad_volume``).
    """

    source: Literal["file", "synthetic"] = "file"
    path: str = ""
    format: Literal["auto", "csv", "parquet"] = "auto"
    timestamp_column: str = "timestamp"
    open_column: str = "open"
    high_column: str = "high"
    low_column: str = "low"
    close_column: str = "close"
    volume_column: str = "volume"
    timezone: str = "UTC"
    timestamp_label: Literal["start", "end"] = "end"
    bar_minutes: int = 30
    source_bar_minutes: int = 0
    grid_offset_minutes: int = 0
    start: str = ""
    end: str = ""
    on_bad_price: Policy = "error"
    on_bad_volume: Policy = "error"
    on_bad_range: Policy = "error"
    on_duplicate: DropPolicy = "error"
    on_out_of_order: OrderPolicy = "error"
    on_off_grid: Policy = "error"
    max_price: float = 1e15
    max_volume: float = 1e18
    max_abs_log_return: float = 10.0  # a factor of about 22,000 in one bar
    #: a universe's bars in one long file: the column that names each row's symbol
    symbol_column: str = ""
    synthetic: SyntheticConfig = msgspec.field(default_factory=SyntheticConfig)

    def check(self, paths_given: bool = False) -> None:
        """Check the section; ``paths_given``: every instrument names its own file, so
        ``path`` may be empty."""
        if self.source == "file" and not self.path and not paths_given:
            raise ConfigError("data.path is required when data.source = 'file'")
        if self.symbol_column and self.source != "file":
            raise ConfigError("data.symbol_column reads a file: set data.source = 'file'")
        positive("data.bar_minutes", self.bar_minutes)
        if self.source_bar_minutes < 0 or (
            self.source_bar_minutes and self.bar_minutes % self.source_bar_minutes
        ):
            raise ConfigError(
                f"data.source_bar_minutes must divide data.bar_minutes={self.bar_minutes} "
                f"(0 = infer it from the data), got {self.source_bar_minutes}"
            )
        for name in ("max_price", "max_volume", "max_abs_log_return"):
            positive(f"data.{name}", getattr(self, name))
        if not 0 <= self.grid_offset_minutes < self.bar_minutes:
            raise ConfigError(
                f"data.grid_offset_minutes must be in [0, bar_minutes={self.bar_minutes}), "
                f"got {self.grid_offset_minutes}"
            )
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except Exception as exc:
            raise ConfigError(
                f"data.timezone: unknown time zone {self.timezone!r} "
                "(use an IANA name such as 'UTC' or 'Asia/Shanghai')"
            ) from exc
        self.synthetic.check()

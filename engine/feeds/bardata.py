"""The bars of one symbol as numpy columns (:class:`BarData`) and what validation did to
them (:class:`DataReport`): what every feed produces (:mod:`engine.feeds.bars` from files,
:mod:`engine.feeds.synthetic` from the synthetic market)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FIELDS", "NS_PER_MINUTE", "PRICE_FIELDS", "BarData", "DataReport"]

NS_PER_MINUTE = 60_000_000_000
PRICE_FIELDS = ("open", "high", "low", "close")
FIELDS = (*PRICE_FIELDS, "volume")


@dataclass
class DataReport:
    """What validation did to the data."""

    source: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    sorted_rows: int = 0
    resampled_from_minutes: int | None = None
    bars: int = 0
    gaps: int = 0
    #: the unit of timestamps read as Unix times ("s", "ms", "us" or "ns"), if they were
    epoch_unit: str = ""

    def note(self, kind: str, problem: str, count: int) -> None:
        target = self.dropped if kind == "drop" else self.filled
        target[problem] = target.get(problem, 0) + count

    def changes(self) -> dict[str, Any] | None:
        """What loading changed in the rows read, as a run's summary keeps it: the rows
        dropped and filled by problem, the rows sorted into time order, and the bar length
        the rows were resampled from; None when the bars are the rows as read."""
        out: dict[str, Any] = {}
        if self.dropped:
            out["dropped"] = dict(self.dropped)
        if self.filled:
            out["filled"] = dict(self.filled)
        if self.sorted_rows:
            out["sorted_rows"] = self.sorted_rows
        if self.resampled_from_minutes:
            out["resampled_from_minutes"] = self.resampled_from_minutes
        if self.epoch_unit:
            out["epoch_unit"] = self.epoch_unit
        return out or None


@dataclass
class BarData:
    """Validated bars of one symbol, oldest first, stamped with their end time."""

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    bar_ns: int
    report: DataReport
    regime: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def __repr__(self) -> str:
        return f"<BarData {self.symbol}: {len(self):,} bars>"

    def frame(self) -> pd.DataFrame:
        """The bars as a DataFrame indexed by UTC end time."""
        index = pd.DatetimeIndex(pd.to_datetime(self.ts, utc=True), name="timestamp")
        columns = {name: getattr(self, name) for name in FIELDS}
        if self.regime is not None:
            columns["regime"] = self.regime
        return pd.DataFrame(columns, index=index)

    def slice(self, start: int, stop: int) -> BarData:
        """Bars ``start:stop`` as a new ``BarData`` (shares the arrays)."""
        return BarData(
            self.symbol,
            self.ts[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
            self.bar_ns,
            self.report,
            None if self.regime is None else self.regime[start:stop],
        )

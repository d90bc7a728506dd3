"""Fixtures of the integration tests: two real series on one calendar (a universe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from engine.app.scenario import parse_scenario
from engine.feeds.bars import load_bars


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.reset_index().rename(columns={"timestamp": "timestamp"}).to_csv(path, index=False)


def _bars(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["open", "high", "low", "close", "volume"]]


@pytest.fixture(scope="module")
def two_symbols(weichai_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real series on the same 30-minute calendar: Weichai's first 6,000 bars (A),
    and its next 6,000 bars' prices stamped with A's times (B)."""
    config = parse_scenario(f'[data]\npath = "{weichai_path}"\ntimezone = "Asia/Shanghai"')
    frame = load_bars(config.data, "W", path=weichai_path).frame()
    a = _bars(frame.iloc[:6_000])
    b = _bars(frame.iloc[6_000:12_000]).set_axis(a.index)
    folder = tmp_path_factory.mktemp("two")
    for symbol, part in (("A", a), ("B", b)):
        _write(part, folder / f"{symbol}.csv")
    return folder


def universe_scenario(
    folder: Path,
    symbols: list[str],
    cash: float,
    strategy: str,
    *,
    extra: str = "",
    broker: str = "",
) -> Any:
    """A universe of ``symbols`` on the files ``folder/<symbol>.csv`` (UTC, off-grid bars
    dropped); ``extra`` goes into ``[data]``, ``broker`` and ``strategy`` into theirs."""
    instruments = "".join(f'[[instruments]]\nsymbol = "{s}"\n' for s in symbols)
    return parse_scenario(
        f"""
[data]
path = "{folder}/{{symbol}}.csv"
timezone = "UTC"
on_off_grid = "drop"
{extra}
{instruments}
[broker]
initial_cash = {cash}
{broker}
[strategy]
{strategy}
"""
    )

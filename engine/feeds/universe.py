"""A universe's bars: one validated series per symbol, and their merge onto one clock.

:func:`load_universe` reads each symbol's bars (files as :class:`DataConfig` describes
them, or the synthetic market) and validates each series on its own, by the rules of
:mod:`engine.feeds.bars`. :class:`Universe` merges them into one sequence of bar events
in **time-slice order**: by bar end time, and within one time by the symbols' order in
the scenario's ``[[instruments]]``. All the bars that end at the same time form one
time slice, dispatched together before the next; a symbol without a bar at a time is
simply absent from that slice (it gets no fill there and keeps its last mark).

The merged columns look like a :class:`~engine.feeds.bardata.BarData` (``ts``,
``open``...``volume``, one entry per bar event) with ``symbol_index`` saying whose bar
each is, so a replay is one loop over them.
"""

from __future__ import annotations

import glob as globbing
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core.errors import ConfigError, DataError
from engine.feeds.bardata import FIELDS, BarData, DataReport
from engine.feeds.bars import (
    bars_fingerprint,
    bars_from_frame,
    first_row,
    load_bars,
    read_frame,
    window,
)
from engine.feeds.config import DataConfig
from engine.feeds.synthetic import generate_universe

__all__ = ["Universe", "load_universe", "symbol_files"]

_GLOB = ("*", "?", "[")


@dataclass
class Universe:
    """The bars of several symbols (``series``, in the scenario's order), merged."""

    series: list[BarData]
    ts: np.ndarray = field(init=False)
    symbol_index: np.ndarray = field(init=False)
    open: np.ndarray = field(init=False)
    high: np.ndarray = field(init=False)
    low: np.ndarray = field(init=False)
    close: np.ndarray = field(init=False)
    volume: np.ndarray = field(init=False)
    report: DataReport = field(init=False)

    def __post_init__(self) -> None:
        if not self.series:
            raise ConfigError("a universe needs at least one symbol")
        ts = np.concatenate([s.ts for s in self.series])
        index = np.concatenate(
            [np.full(len(s), i, dtype=np.int64) for i, s in enumerate(self.series)]
        )
        # time first, then the scenario's order (lexsort sorts by its last key first)
        order = np.lexsort((index, ts))
        self.ts = ts[order]
        self.symbol_index = index[order]
        for name in FIELDS:
            column = np.concatenate([getattr(s, name) for s in self.series])[order]
            setattr(self, name, np.ascontiguousarray(column))
        sources = "; ".join(s.report.source for s in self.series)
        self.report = DataReport(
            source=sources,
            rows_read=sum(s.report.rows_read for s in self.series),
            bars=len(self.ts),
            gaps=sum(s.report.gaps for s in self.series),
            sorted_rows=sum(s.report.sorted_rows for s in self.series),
        )
        resampled = {s.report.resampled_from_minutes for s in self.series} - {None}
        if len(resampled) == 1:
            self.report.resampled_from_minutes = resampled.pop()
        self.report.epoch_unit = ", ".join(
            sorted({s.report.epoch_unit for s in self.series} - {""})
        )
        for s in self.series:
            for kind in ("dropped", "filled"):
                for problem, count in getattr(s.report, kind).items():
                    self.report.note("drop" if kind == "dropped" else "fill", problem, count)

    def __len__(self) -> int:
        """The number of bar events (every symbol's bars together)."""
        return len(self.ts)

    def __repr__(self) -> str:
        return f"<Universe of {len(self.series)} symbols: {len(self):,} bars>"

    @property
    def symbols(self) -> list[str]:
        return [s.symbol for s in self.series]

    @property
    def symbol(self) -> str:
        """The symbols as one label (a run row's ``symbol``)."""
        return symbols_label(self.symbols)

    @property
    def bar_ns(self) -> int:
        return self.series[0].bar_ns

    @property
    def times(self) -> np.ndarray:
        """The end time of every time slice, oldest first."""
        return np.unique(self.ts)

    def fingerprint(self) -> str:
        """SHA-256 over every symbol's name and bar fingerprint, in the scenario's order."""
        digest = hashlib.sha256()
        for s in self.series:
            digest.update(s.symbol.encode())
            digest.update(bars_fingerprint(s).encode())
        return digest.hexdigest()


def symbols_label(symbols: Sequence[str], width: int = 100) -> str:
    """``A,B,C``, or ``N symbols: A..Z`` when that would not fit in ``width`` characters."""
    joined = ",".join(symbols)
    if len(joined) <= width:
        return joined
    return f"{len(symbols)} symbols: {symbols[0]}..{symbols[-1]}"[:width]


def symbol_files(
    config: DataConfig, symbols: Sequence[str], own: Sequence[Path | None], base: Path
) -> list[Path | None]:
    """Each symbol's file: its own (``own``), ``data.path`` with ``{symbol}`` filled in, or
    the file a glob in ``data.path`` finds for it; None where ``data.symbol_column``
    picks its rows from the one long file at ``data.path``."""
    pattern = config.path
    if pattern and not Path(pattern).is_absolute():
        pattern = str(base / pattern)
    found: dict[str, Path] = {}
    if any(char in pattern for char in _GLOB) and "{symbol}" not in pattern:
        for name in sorted(globbing.glob(pattern)):
            path = Path(name)
            if path.is_file():
                found.setdefault(path.name.split(".")[0], path)
    files: list[Path | None] = []
    for symbol, given in zip(symbols, own, strict=True):
        if given is not None:
            files.append(given)
        elif config.symbol_column:
            files.append(None)
        elif "{symbol}" in pattern:
            files.append(Path(pattern.replace("{symbol}", symbol)))
        elif found or any(char in pattern for char in _GLOB):
            if symbol not in found:
                names = ", ".join(sorted(found)[:10]) or "no files"
                raise DataError(
                    f"data.path {config.path!r} finds no file for {symbol!r} (a file's name "
                    f"without its suffix is its symbol; found: {names})"
                )
            files.append(found[symbol])
        else:
            raise ConfigError(
                f"data.path {config.path!r} is one file for {len(symbols)} instruments: give "
                "each instrument a path, put {symbol} in data.path, use a glob, or name the "
                "file's symbol column with data.symbol_column"
            )
    return files


def load_universe(
    config: DataConfig,
    symbols: Sequence[str],
    own: Sequence[Path | None],
    *,
    base: Path,
    seed: int = 0,
) -> Universe:
    """Load and validate every symbol's bars (module docstring). The synthetic market
    is a correlated one (:func:`engine.feeds.synthetic.generate_universe`, windowed by
    ``data.start`` / ``data.end``); ``own`` are the instruments' own files."""
    if config.source == "synthetic":
        series = generate_universe(
            config.synthetic, list(symbols), seed=seed, bar_minutes=config.bar_minutes
        )
        return Universe([window(data, config) for data in series])
    files = symbol_files(config, symbols, own, base)
    long_frame: pd.DataFrame | None = None
    series = []
    for symbol, path in zip(symbols, files, strict=True):
        if path is not None:
            series.append(load_bars(config, symbol, path=path))
            continue
        long_path = Path(config.path) if Path(config.path).is_absolute() else base / config.path
        if long_frame is None:
            long_frame = read_frame(long_path, config.format)
            if config.symbol_column not in long_frame.columns:
                raise DataError(
                    f"{long_path}: no column {config.symbol_column!r} (data.symbol_column); "
                    f"the file has {', '.join(map(repr, map(str, long_frame.columns)))}"
                )
        names = long_frame[config.symbol_column].astype(str).str.strip().to_numpy()
        rows = np.flatnonzero(names == symbol)
        if len(rows) == 0:
            known = ", ".join(sorted(set(names))[:10])
            raise DataError(
                f"{long_path}: no rows of {symbol!r} in column {config.symbol_column!r} "
                f"(it holds {known})"
            )
        part = long_frame.iloc[rows].reset_index(drop=True)
        source = f"{long_path} [{symbol}]"
        numbers = rows + first_row(long_path, config)
        series.append(bars_from_frame(part, config, symbol, source, rows=numbers))
    return Universe(series)

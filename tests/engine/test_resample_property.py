"""Resampling finer bars, checked against pandas on generated sessions.

The bars are generated from their true start times, so the truth is known whatever the
file's label: a source bar that starts at ``s`` covers ``[s, s + source)``. The
reference resamples those start times with pandas (left-closed bins aligned to local
midnight, labelled with their end), an independent route to what ``load_bars`` must give
from the file (end stamps, right-closed, right-labelled). The sessions include a lunch
break (A-shares, 09:30-11:30 and 13:00-15:00), a zone with daylight saving changes
(New York, across both 2024 changes), holes, and bars at the session's open and close.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.errors import DataError
from engine.feeds.bars import load_bars
from engine.feeds.config import DataConfig

MARKETS = {
    # zone, sessions (local start, local end), first days to draw from
    "us": ("America/New_York", [("09:30", "16:00")], ["2024-03-07", "2024-10-31"]),
    "a_shares": ("Asia/Shanghai", [("09:30", "11:30"), ("13:00", "15:00")], ["2024-01-02"]),
}


def _bar_starts(market: str, first_day: str, days: int, source: int) -> pd.DatetimeIndex:
    """Naive local start times of every source bar of ``days`` weekdays from ``first_day``."""
    _zone, sessions, _ = MARKETS[market]
    starts: list[pd.Timestamp] = []
    for day in pd.bdate_range(first_day, periods=days):
        for open_, close in sessions:
            starts.extend(
                pd.date_range(
                    f"{day.date()} {open_}",
                    f"{day.date()} {close}",
                    freq=f"{source}min",
                    inclusive="left",
                )
            )
    return pd.DatetimeIndex(starts)


def _frame(starts: pd.DatetimeIndex, rng: np.random.Generator) -> pd.DataFrame:
    close = 10.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, len(starts))))
    open_ = close * np.exp(rng.normal(0.0, 0.001, len(starts)))
    spread = np.abs(rng.normal(0.0, 0.002, len(starts))) * close
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(0, 1_000, len(starts)).astype(float),
        },
        index=starts,
    )


def _reference(frame: pd.DataFrame, bar_minutes: int, zone: str) -> pd.DataFrame:
    """pandas: bins [k m, (k + 1) m) of start times from local midnight, labelled by end."""
    grouped = frame.resample(f"{bar_minutes}min", closed="left", label="right")
    out = grouped.agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    out = out[grouped["close"].count() > 0]
    out.index = out.index.tz_localize(zone).tz_convert("UTC")
    return out


def _write(frame: pd.DataFrame, stamps: pd.DatetimeIndex, folder: Path) -> Path:
    path = folder / "bars.csv"
    out = frame.copy()
    out.index = stamps.strftime("%Y-%m-%d %H:%M:%S")
    out.index.name = "timestamp"
    out.reset_index().to_csv(path, index=False, float_format="%.17g")
    return path


@settings(max_examples=60, deadline=None)
@given(
    market=st.sampled_from(sorted(MARKETS)),
    source=st.sampled_from([1, 5, 15]),
    bar_minutes=st.sampled_from([30, 60]),
    label=st.sampled_from(["start", "end"]),
    give_source=st.booleans(),
    days=st.integers(1, 3),
    day_choice=st.integers(0, 1),
    keep=st.floats(0.8, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_load_bars_resampled_equals_pandas_on_sessions(
    market: str,
    source: int,
    bar_minutes: int,
    label: str,
    give_source: bool,
    days: int,
    day_choice: int,
    keep: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    zone, _, first_days = MARKETS[market]
    starts = _bar_starts(market, first_days[day_choice % len(first_days)], days, source)
    mask = rng.random(len(starts)) < keep
    mask[[0, -1]] = True  # the session's first and last bars are always there
    frame = _frame(starts[mask], rng)
    stamps = frame.index if label == "start" else frame.index + pd.Timedelta(minutes=source)
    config = DataConfig(
        path="bars.csv",
        timezone=zone,
        timestamp_label=label,  # type: ignore[arg-type]
        bar_minutes=bar_minutes,
        source_bar_minutes=source if give_source else 0,
    )
    with tempfile.TemporaryDirectory() as folder:
        bars = load_bars(config, "X", path=_write(frame, stamps, Path(folder)))
    expected = _reference(frame, bar_minutes, zone)
    np.testing.assert_array_equal(bars.ts, expected.index.as_unit("ns").asi8)
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(getattr(bars, name), expected[name].to_numpy(), rtol=1e-15)
    assert bars.report.resampled_from_minutes == (source if source != bar_minutes else None)


def _us_minutes(label: str, folder: Path) -> Path:
    starts = _bar_starts("us", "2024-06-03", 1, 1)
    frame = _frame(starts, np.random.default_rng(0))
    stamps = starts if label == "start" else starts + pd.Timedelta(minutes=1)
    return _write(frame, stamps, folder)


@pytest.mark.parametrize("label", ["start", "end"])
def test_load_bars_us_minutes_give_13_half_hours_ending_10_00_to_16_00(
    label: str, tmp_path: Path
) -> None:
    # A 09:30-16:00 session of 1-minute bars. Stamped at their start, a bar used to be
    # moved to its end by the *target* length (30 min): 14 bars ending 10:00..16:30.
    path = _us_minutes(label, tmp_path)
    config = DataConfig(path=str(path), timezone="America/New_York", timestamp_label=label)  # type: ignore[arg-type]
    bars = load_bars(config, "X", path=path)
    local = pd.to_datetime(bars.ts, utc=True).tz_convert("America/New_York")
    assert list(local.strftime("%H:%M")) == [
        f"{h:02d}:{m:02d}" for h in range(10, 17) for m in (0, 30) if (h, m) != (16, 30)
    ]
    assert bars.report.resampled_from_minutes == 1


def test_load_bars_hourly_bars_with_30_minute_target_are_refused(tmp_path: Path) -> None:
    # Hourly bars used to run as 30-minute bars, every one stamped 30 minutes early.
    starts = pd.date_range("2024-01-01", periods=48, freq="60min")
    path = _write(_frame(starts, np.random.default_rng(1)), starts, tmp_path)
    config = DataConfig(path=str(path), timestamp_label="start", bar_minutes=30)
    with pytest.raises(DataError, match=r"bars are 60 minutes long .*coarser than data\.bar_"):
        load_bars(config, "X", path=path)
    hourly = load_bars(
        DataConfig(path=str(path), timestamp_label="start", bar_minutes=60), "X", path=path
    )
    assert pd.Timestamp(int(hourly.ts[0]), tz="UTC") == pd.Timestamp("2024-01-01 01:00", tz="UTC")


def test_load_bars_spacing_that_does_not_divide_the_bar_is_refused(tmp_path: Path) -> None:
    starts = pd.date_range("2024-01-01", periods=40, freq="20min")
    path = _write(_frame(starts, np.random.default_rng(2)), starts, tmp_path)
    with pytest.raises(DataError, match=r"20 minutes long .*does not divide data\.bar_minutes"):
        load_bars(DataConfig(path=str(path), bar_minutes=30), "X", path=path)


def test_load_bars_row_off_the_source_grid_names_both_rows(tmp_path: Path) -> None:
    starts = pd.date_range("2024-01-01 09:00", periods=20, freq="5min")
    stamps = starts.insert(7, pd.Timestamp("2024-01-01 09:32"))
    frame = _frame(stamps, np.random.default_rng(3))
    path = _write(frame, stamps, tmp_path)
    # CSV rows count the header as row 1: the 09:32 bar is row 9, after row 8 (09:30).
    with pytest.raises(DataError, match=r"row 9: .*09:32.*5-minute grid .*2 minutes after row 8"):
        load_bars(DataConfig(path=str(path)), "X", path=path)

"""Market data: read, validate, repair and resample OHLCV bars.

:func:`load_bars` turns a CSV or Parquet file (or the synthetic market) into
:class:`BarData`: numpy arrays stamped with each bar's *end* in int
nanoseconds UTC, the convention of every emarl event. Validation names the
file, the row (1-based, counting the header line of a CSV as row 1, so the
number matches what an editor shows; for Parquet, the 1-based row index) and
the problem. Repairable problems follow the policies of
:class:`engine.app.scenario.DataConfig`; the default is to stop with an error.

Gaps (missing bars) are allowed. They are counted as follows: the session
template is the set of bar end times of day (in the data's time zone) seen on
at least half of the trading days; a day is missing a bar when a template time
between its first and its last bar is absent. Whole missing days (weekends,
holidays, suspensions) are breaks, not gaps.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.core.errors import ConfigError, DataError
from engine.feeds.bardata import FIELDS, NS_PER_MINUTE, PRICE_FIELDS, BarData, DataReport
from engine.feeds.config import DataConfig
from engine.feeds.limits import apply_limits
from engine.feeds.rows import Validator, parse_numbers, parse_timestamps, read_frame
from engine.feeds.synthetic import generate_market

__all__ = [
    "BarData",
    "DataReport",
    "bars_fingerprint",
    "bars_from_frame",
    "bound_ns",
    "count_gaps",
    "first_row",
    "load_bars",
    "read_frame",
    "resample_bars",
    "window",
]

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _validate(
    frame: pd.DataFrame,
    config: DataConfig,
    source: str,
    row_base: int,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], DataReport, int]:
    """Check and repair a raw frame; return end stamps, columns, report and source bar minutes."""
    names = {
        "timestamp": config.timestamp_column,
        "open": config.open_column,
        "high": config.high_column,
        "low": config.low_column,
        "close": config.close_column,
        "volume": config.volume_column,
    }
    missing = [column for column in names.values() if column not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(repr, map(str, frame.columns)))} (map names with data.*_column)"
        )
    v = Validator(frame, config, source, row_base, rows)
    ts = parse_timestamps(frame[names["timestamp"]], config, v)
    cols: dict[str, np.ndarray] = {}
    for name in FIELDS:
        parsed, unparsable = parse_numbers(frame[names[name]])
        if unparsable.any():
            first = int(np.flatnonzero(unparsable)[0])
            raw = frame[names[name]].iloc[first]
            option = "on_bad_volume" if name == "volume" else "on_bad_price"
            policy = getattr(config, option)
            if policy == "error":
                raise v.fail(
                    first, f"cannot parse {raw!r} as a number in column {names[name]!r}", option
                )
        cols[name] = parsed
    keep = np.ones(len(ts), dtype=bool)

    # Prices: NaN or infinite.
    prices = np.vstack([cols[name] for name in PRICE_FIELDS])
    bad_price = ~np.isfinite(prices).all(axis=0) | (prices <= 0).any(axis=0)

    def describe_price(i: int) -> str:
        for name in PRICE_FIELDS:
            value = float(cols[name][i])
            if not math.isfinite(value):
                return f"{name} is {'NaN' if math.isnan(value) else 'infinite'}"
            if value <= 0:
                return f"{name} is {value!r}, prices must be positive"
        return "bad price"

    policy = v.apply(bad_price, "on_bad_price", "bad price", describe_price)
    if bad_price.any():
        if policy == "drop":
            keep &= ~bad_price
        else:
            _fill_flat(cols, bad_price, v)

    volume = cols["volume"]
    bad_volume = ~np.isfinite(volume) | (volume < 0)
    policy = v.apply(
        bad_volume & keep,
        "on_bad_volume",
        "bad volume",
        lambda i: f"volume is {float(volume[i])!r}, it must be a finite number >= 0",
    )
    if (bad_volume & keep).any():
        if policy == "drop":
            keep &= ~bad_volume
        else:
            volume[bad_volume] = 0.0

    o, h, lo, c = (cols[name] for name in PRICE_FIELDS)
    with np.errstate(invalid="ignore"):
        bad_range = (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (lo > h)

    def describe_range(i: int) -> str:
        top, bottom = float(max(o[i], c[i])), float(min(o[i], c[i]))
        if h[i] < top:
            return f"high {float(h[i])!r} is below max(open, close) = {top!r}"
        return f"low {float(lo[i])!r} is above min(open, close) = {bottom!r}"

    policy = v.apply(bad_range & keep, "on_bad_range", "inconsistent high/low", describe_range)
    if (bad_range & keep).any():
        if policy == "drop":
            keep &= ~bad_range
        else:
            fix = bad_range & keep
            h[fix] = np.maximum.reduce([o[fix], h[fix], lo[fix], c[fix]])
            lo[fix] = np.minimum.reduce([o[fix], h[fix], lo[fix], c[fix]])

    idx = np.flatnonzero(keep)
    ts = ts[idx]
    cols = {name: cols[name][idx] for name in FIELDS}
    v.rows = v.rows[idx]

    # Order and duplicates.
    diffs = np.diff(ts)
    backwards = np.concatenate([[False], diffs < 0])
    if backwards.any():
        option = "on_out_of_order"
        policy = config.on_out_of_order
        if policy == "error":
            i = int(np.flatnonzero(backwards)[0])
            raise v.fail(
                i,
                f"timestamp {_fmt(ts[i])} is earlier than the previous row's {_fmt(ts[i - 1])}",
                option,
            )
        if policy == "sort":
            order = np.argsort(ts, kind="stable")
            v.report.sorted_rows += int(backwards.sum())
        else:
            running = np.maximum.accumulate(ts)
            order = np.flatnonzero(ts >= np.concatenate([[ts[0]], running[:-1]]))
            v.report.note("drop", "out of order", len(ts) - len(order))
        ts = ts[order]
        cols = {name: cols[name][order] for name in FIELDS}
        v.rows = v.rows[order]
    duplicate = np.concatenate([[False], np.diff(ts) == 0])
    v.apply(
        duplicate,
        "on_duplicate",
        "duplicate timestamp",
        lambda i: f"duplicate timestamp {_fmt(ts[i])} (also on row {v.rows[i - 1]})",
    )
    if duplicate.any():
        keep2 = ~duplicate
        ts = ts[keep2]
        cols = {name: cols[name][keep2] for name in FIELDS}
        v.rows = v.rows[keep2]
    if len(ts) == 0:
        raise DataError(f"{source}: no valid rows left after validation")
    ts, cols = apply_limits(ts, cols, v, config)  # data.max_price and the like
    if len(ts) == 0:
        raise DataError(f"{source}: no valid rows left after validation")

    # The grid: the source bar length (given, or inferred from the data), then alignment.
    source_minutes = _source_minutes(ts, config, source)
    step = source_minutes * NS_PER_MINUTE
    if config.timestamp_label == "start":
        ts = ts + step  # a source bar ends one *source* bar length after it starts
    offset = _local_offsets(ts, config.timezone)
    shift = config.grid_offset_minutes * NS_PER_MINUTE
    off_grid = ((ts + offset - shift) % step) != 0

    def describe_off_grid(i: int) -> str:
        after = ""
        if i > 0:
            gap = (int(ts[i]) - int(ts[i - 1])) / NS_PER_MINUTE
            after = f"; {gap:g} minutes after row {v.rows[i - 1]}"
        return (
            f"timestamp {_fmt(ts[i])} is not on the {source_minutes}-minute grid "
            f"(local time in {config.timezone}, offset {config.grid_offset_minutes} min"
            f"{after})"
        )

    v.apply(off_grid, "on_off_grid", "off the bar grid", describe_off_grid)
    if off_grid.any():
        if config.on_off_grid == "drop":
            on = ~off_grid
            ts = ts[on]
            cols = {name: cols[name][on] for name in FIELDS}
        else:  # fill: merge each stray bar into the grid bar that contains it
            ts, cols = resample_bars(
                ts, cols, source_minutes, config.timezone, config.grid_offset_minutes
            )
    v.report.resampled_from_minutes = (
        source_minutes if source_minutes != config.bar_minutes else None
    )
    return ts, cols, v.report, source_minutes


def _fill_flat(cols: dict[str, np.ndarray], bad: np.ndarray, v: Validator) -> None:
    """Replace bad-price rows by a flat bar at the previous good close, volume 0."""
    close = cols["close"]
    for i in np.flatnonzero(bad):
        if i == 0:
            raise v.fail(
                0, "bad price on the first row cannot be filled (no previous close)", "on_bad_price"
            )
        previous = close[i - 1]
        for name in PRICE_FIELDS:
            cols[name][i] = previous
        cols["volume"][i] = 0.0


def _fmt(ns: Any) -> str:
    return str(pd.Timestamp(int(ns), tz="UTC"))


def _source_minutes(ts: np.ndarray, config: DataConfig, source: str) -> int:
    """The data's own bar length in minutes: ``data.source_bar_minutes`` when given, else
    the most common spacing of consecutive rows (ties go to a spacing that divides
    ``bar_minutes``, then to the longer one). One spacing is no evidence: with fewer
    than three rows the bars are taken to be ``bar_minutes`` long.

    Data coarser than ``bar_minutes``, or whose bar length does not divide it, cannot
    be resampled to it and is refused with the spacing found.
    """
    bar_minutes = config.bar_minutes
    if config.source_bar_minutes:
        minutes, how = config.source_bar_minutes, "data.source_bar_minutes"
    elif len(ts) < 3:
        return bar_minutes
    else:
        values, counts = np.unique(np.diff(ts), return_counts=True)
        divides = (values % NS_PER_MINUTE == 0) & ((bar_minutes * NS_PER_MINUTE) % values == 0)
        best = np.lexsort((values, divides, counts))[-1]
        spacing = int(values[best])
        if spacing % NS_PER_MINUTE:
            raise DataError(
                f"{source}: the rows are most often {spacing / 1e9:g} seconds apart, not a "
                "whole number of minutes; emarl needs bars of whole minutes "
                "(set data.source_bar_minutes if the spacing misleads)"
            )
        minutes = spacing // NS_PER_MINUTE
        how = f"the most common spacing ({int(counts[best]):,} of {len(ts) - 1:,} steps)"
    if minutes > bar_minutes:
        raise DataError(
            f"{source}: the bars are {minutes} minutes long ({how}), coarser than "
            f"data.bar_minutes = {bar_minutes}; bars cannot be split, so set "
            f"data.bar_minutes to {minutes} or a multiple of it"
        )
    if bar_minutes % minutes:
        raise DataError(
            f"{source}: the bars are {minutes} minutes long ({how}), which does not divide "
            f"data.bar_minutes = {bar_minutes}; choose a bar_minutes that is a multiple "
            f"of {minutes}"
        )
    return int(minutes)


def _local_offsets(ts: np.ndarray, timezone: str) -> np.ndarray:
    """UTC offset in ns of each stamp in ``timezone`` (daylight saving aware)."""
    if timezone == "UTC":
        return np.zeros(len(ts), dtype=np.int64)
    index = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).tz_convert(timezone)
    local = np.asarray(index.tz_localize(None).as_unit("ns").asi8, dtype=np.int64)
    offsets: np.ndarray = local - ts
    return offsets


def resample_bars(
    ts: np.ndarray,
    cols: dict[str, np.ndarray],
    bar_minutes: int,
    timezone: str,
    offset_minutes: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aggregate finer bars (stamped with their end) into ``bar_minutes`` bars.

    Right-closed and right-labelled: a bar ending at 10:00 holds the finer bars
    ending in (09:30, 10:00]. Open first, high max, low min, close last, volume
    sum; bins with no bar are dropped. The grid is aligned to local midnight
    (plus ``offset_minutes``) in ``timezone``.
    """
    step = bar_minutes * NS_PER_MINUTE
    local = ts + _local_offsets(ts, timezone) - offset_minutes * NS_PER_MINUTE
    label_local = -((-local) // step) * step  # ceil to the grid: right-closed
    change = np.flatnonzero(np.diff(label_local)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(ts)]])
    out = {
        "open": cols["open"][starts],
        "high": np.maximum.reduceat(cols["high"], starts),
        "low": np.minimum.reduceat(cols["low"], starts),
        "close": cols["close"][ends - 1],
        "volume": np.add.reduceat(cols["volume"], starts),
    }
    new_ts = ts[ends - 1] + (label_local[starts] - local[ends - 1])
    return new_ts, out


def count_gaps(ts: np.ndarray, timezone: str) -> int:
    """Missing bars inside trading days, against the session template (module docstring)."""
    if len(ts) < 2:
        return 0
    local = ts + _local_offsets(ts, timezone)
    day_ns = 86_400_000_000_000
    day = local // day_ns
    time_of_day = local - day * day_ns
    days = np.unique(day)
    slots, counts = np.unique(time_of_day, return_counts=True)
    template = slots[counts * 2 >= len(days)]
    if len(template) == 0:
        return 0
    # Per day: template slots between its first and last bar, minus bars present there.
    first = np.full(len(days), np.iinfo(np.int64).max)
    last = np.full(len(days), np.iinfo(np.int64).min)
    day_index = np.searchsorted(days, day)
    np.minimum.at(first, day_index, time_of_day)
    np.maximum.at(last, day_index, time_of_day)
    expected = np.searchsorted(template, last, side="right") - np.searchsorted(
        template, first, side="left"
    )
    in_template = np.isin(time_of_day, template)
    present = np.bincount(day_index[in_template], minlength=len(days))
    return int(np.maximum(expected - present, 0).sum())


def load_bars(
    config: DataConfig,
    symbol: str,
    *,
    path: Path | None = None,
    seed: int = 0,
    complexity: float = 1.0,
) -> BarData:
    """Load, validate, resample and window the bars a scenario asks for.

    ``complexity`` (the training curriculum's, in (0, 1]) scales the synthetic market's
    noise (:func:`engine.feeds.synthetic.generate_market`); real bars cannot be rescaled, so
    anything but 1 is an error for a file source.
    """
    if config.source == "synthetic":
        data = generate_market(
            config.synthetic,
            symbol=symbol,
            seed=seed,
            bar_minutes=config.bar_minutes,
            complexity=complexity,
        )
        return window(data, config)
    if complexity != 1.0:
        raise ConfigError(
            f"complexity {complexity} scales the noise of the synthetic market only; "
            f"{config.path!r} holds real bars"
        )
    if path is None:
        path = Path(config.path)
    frame = read_frame(path, config.format)
    return bars_from_frame(frame, config, symbol, str(path), first_row(path, config))


def first_row(path: Path, config: DataConfig) -> int:
    """The row number an error gives the file's first data row (a CSV's header is row 1)."""
    is_csv = not (config.format == "parquet" or path.suffix.lower() in (".parquet", ".pq"))
    return 2 if is_csv else 1


def bars_from_frame(
    frame: pd.DataFrame,
    config: DataConfig,
    symbol: str,
    source: str,
    row_base: int = 1,
    rows: np.ndarray | None = None,
) -> BarData:
    """Validate, resample and window the bars of one symbol read into ``frame``; errors name
    ``source`` and the row (``rows``: each frame row's number in the file, when the frame
    is a part of it; by default ``row_base`` onwards)."""
    ts, cols, report, source_minutes = _validate(frame, config, source, row_base, rows)
    if source_minutes != config.bar_minutes:
        ts, cols = resample_bars(
            ts, cols, config.bar_minutes, config.timezone, config.grid_offset_minutes
        )
    o, h, lo, c, v = (np.ascontiguousarray(cols[name], dtype=np.float64) for name in FIELDS)
    data = BarData(symbol, ts, o, h, lo, c, v, config.bar_minutes * NS_PER_MINUTE, report)
    return window(data, config)


def window(data: BarData, config: DataConfig) -> BarData:
    """``data`` cut to ``data.start`` / ``data.end``, with its bar and gap counts."""
    lo, hi = 0, len(data)
    if config.start:
        lo = int(np.searchsorted(data.ts, bound_ns(config.start, config.timezone, "start")))
    if config.end:
        hi = int(
            np.searchsorted(data.ts, bound_ns(config.end, config.timezone, "end"), side="right")
        )
    if lo or hi != len(data):
        data = data.slice(lo, hi)
    if len(data) == 0:
        raise DataError(
            f"{data.report.source}: no bars between data.start={config.start!r} "
            f"and data.end={config.end!r}"
        )
    data.report.bars = len(data)
    data.report.gaps = count_gaps(data.ts, config.timezone)
    return data


def bound_ns(text: str, timezone: str, name: str) -> int:
    """``data.start`` / ``data.end`` as int ns UTC (naive times in ``timezone``).

    Bars are kept when their end lies in ``[start, end]``. A date without a time means
    the whole day: ``end = "2020-06-30"`` keeps the bars that end on June 30 (as pandas'
    ``.loc[:"2020-06-30"]`` does), ``start = "2020-06-30"`` starts at its midnight.
    """
    try:
        stamp = pd.Timestamp(text)
    except Exception as exc:
        raise DataError(f"data.{name}: cannot parse {text!r} as a date or time") from exc
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(timezone)
    if name == "end" and _DATE_ONLY.fullmatch(text.strip()):
        stamp = (stamp + pd.Timedelta(days=1)).normalize() - pd.Timedelta(1, "ns")
    return int(stamp.tz_convert("UTC").value)


def bars_fingerprint(data: BarData) -> str:
    """SHA-256 of the bars: end times (int64) and open, high, low, close, volume (float64),
    little-endian, in that order. Equal bars give equal fingerprints on any machine."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data.ts, dtype="<i8").tobytes())
    for name in FIELDS:
        digest.update(np.ascontiguousarray(getattr(data, name), dtype="<f8").tobytes())
    return digest.hexdigest()

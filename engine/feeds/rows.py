"""A data file's rows as read, and its cells parsed: the first part of loading bars
(:mod:`engine.feeds.bars` validates, repairs and resamples what this gives).

:func:`read_frame` reads a CSV (its separator found in its header line; a UTF-8
byte-order mark skipped) or a Parquet file untouched. :func:`parse_timestamps` reads
dates and times (naive ones in ``data.timezone``) or whole-number Unix times, and
:func:`parse_numbers` prices and volumes; :class:`Validator` names the file and row of
each problem and counts what a policy repaired.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core.errors import DataError
from engine.feeds.bardata import DataReport
from engine.feeds.config import DataConfig

__all__ = ["EPOCH_UNITS", "Validator", "parse_numbers", "parse_timestamps", "read_frame"]


def _separator(path: Path) -> str:
    """The CSV file's separator: a comma, or else the first of ``;``, tab and ``|`` that
    its header line holds (spreadsheets in many locales write ``;``)."""
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    if "," in header:
        return ","
    return next((sep for sep in (";", "\t", "|") if sep in header), ",")


def read_frame(path: Path, fmt: str = "auto") -> pd.DataFrame:
    """Read a CSV or Parquet file as strings-or-numbers, untouched."""
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file (give a CSV or Parquet file)")
    kind = fmt
    if kind == "auto":
        suffix = path.suffix.lower()
        kind = "parquet" if suffix in (".parquet", ".pq") else "csv"
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
        else:
            frame = pd.read_csv(
                path,
                sep=_separator(path),
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                encoding="utf-8-sig",  # a byte-order mark is not part of the first name
            )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (no header, no rows)") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot read as {kind}: {exc}") from exc
    if len(frame) == 0:
        raise DataError(f"{path}: file has a header but no rows")
    return frame


class Validator:
    def __init__(
        self,
        frame: pd.DataFrame,
        config: DataConfig,
        source: str,
        row_base: int,
        rows: np.ndarray | None = None,
    ):
        self.config = config
        self.source = source
        self.row_base = row_base
        self.report = DataReport(source=source, rows_read=len(frame))
        self.rows = np.arange(len(frame)) + row_base if rows is None else rows

    def fail(self, position: int, problem: str, option: str | None = None) -> DataError:
        hint = ""
        if option is not None:
            allowed = {"on_duplicate": "'drop'"}.get(
                option, "'drop' or 'fill'" if option != "on_out_of_order" else "'drop' or 'sort'"
            )
            hint = f" (set data.{option} = {allowed} to repair)"
        return DataError(f"{self.source}: row {self.rows[position]}: {problem}{hint}")

    def apply(
        self,
        bad: np.ndarray,
        option: str,
        problem: str,
        describe: Callable[[int], str],
    ) -> str:
        """Return the policy to apply to ``bad`` rows, raising for 'error'."""
        policy: str = getattr(self.config, option)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            if policy == "error":
                raise self.fail(first, describe(first), option)
            self.report.note(policy if policy != "sort" else "drop", problem, int(bad.sum()))
        return policy


def parse_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Floats and a mask of entries that were present but not numbers."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True), np.zeros(
            len(values), bool
        )
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text.where(text != "", None), errors="coerce")
    parsed = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    lowered = text.str.lower()
    nan_words = lowered.isin(["", "nan", "na", "n/a", "null", "none", "inf", "-inf", "+inf"])
    unparsable = np.isnan(parsed) & ~nan_words.to_numpy()
    inf = lowered.isin(["inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()
    parsed[inf] = np.where(lowered[inf].str.startswith("-"), -np.inf, np.inf)
    return parsed, unparsable


#: Unix times by unit: the range of whole numbers read in that unit (dates from 1973 to
#: 2262, the last that int64 nanoseconds hold); the ranges do not overlap, so the unit is
#: never a guess
EPOCH_UNITS = (
    ("s", 10**8, 2**63 // 10**9),
    ("ms", 10**11, 2**63 // 10**6),
    ("us", 10**14, 2**63 // 10**3),
    ("ns", 10**17, 2**63),
)


def _epoch_stamps(values: pd.Series, v: Validator) -> pd.DatetimeIndex | None:
    """Whole numbers that no date format reads: Unix times (UTC), in the one unit whose
    range holds them all (:data:`EPOCH_UNITS`); None when they are not whole numbers."""
    if pd.api.types.is_integer_dtype(values):
        numbers = values.to_numpy(dtype=np.int64)
    else:
        text = values.astype(str).str.strip()
        if not text.str.fullmatch(r"\d{1,19}").all():
            return None
        numbers = text.astype(np.uint64).to_numpy()
    first = int(numbers[0])
    unit = next((u for u, start, stop in EPOCH_UNITS if start <= first < stop), None)
    if unit is None:
        raise v.fail(
            0,
            f"timestamp {first} is a whole number, but no Unix time (seconds, milliseconds, "
            "microseconds or nanoseconds of a date from 1973 to 2262); write timestamps as "
            "dates and times",
        )
    _, start, stop = next(band for band in EPOCH_UNITS if band[0] == unit)
    outside = np.flatnonzero((numbers < start) | (numbers >= stop))
    if len(outside):
        raise v.fail(
            int(outside[0]),
            f"timestamp {int(numbers[outside[0]])} is not a Unix time in {unit}, the unit "
            f"of the first row's {first}; write timestamps in one unit",
        )
    v.report.epoch_unit = unit
    return pd.DatetimeIndex(pd.to_datetime(numbers.astype(np.int64), unit=unit, utc=True))


def _parse_text(text: pd.Series, v: Validator) -> pd.DatetimeIndex:
    """Dates and times as written (unparsable ones NaT). Offsets that differ from row to
    row (local times through a change of summer time) are one instant each, read in UTC;
    rows with an offset beside rows without one are an error naming the first without."""
    try:
        return pd.DatetimeIndex(pd.to_datetime(text, errors="coerce", format="mixed"))
    except ValueError:  # pandas: "Mixed timezones detected"
        aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).to_numpy()
        if not aware.all():
            first = int(np.flatnonzero(~aware)[0])
            raise v.fail(
                first,
                f"timestamp {text.iloc[first]!r} has no UTC offset, while other rows have "
                "one; give every row its offset, or none",
            ) from None
        return pd.DatetimeIndex(pd.to_datetime(text, errors="coerce", format="mixed", utc=True))


def _localize(stamps: pd.DatetimeIndex, timezone: str, v: Validator) -> pd.DatetimeIndex:
    """Naive local times in ``timezone``. Where daylight saving time ends, the hour that
    occurs twice is told apart by the rows' order (the first pass is summer time); a time
    that does not exist (the hour skipped where it starts), or one that occurs twice with
    no second pass in the rows, is an error naming its row."""
    try:
        return stamps.tz_localize(timezone, ambiguous="infer", nonexistent="raise")
    except Exception as exc:
        marked = stamps.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        bad = np.flatnonzero(marked.isna())
        if not len(bad):
            raise DataError(
                f"{v.source}: timestamps are not valid local times in {timezone}: {exc}"
            ) from exc
        i = int(bad[0])
        shifted = stamps[i : i + 1].tz_localize(
            timezone, ambiguous="NaT", nonexistent="shift_forward"
        )
        if shifted.isna().all():
            problem = (
                f"{stamps[i]} occurs twice in {timezone} (daylight saving time ends) and the "
                "rows do not pass it twice in order"
            )
        else:
            problem = f"{stamps[i]} does not exist in {timezone} (daylight saving time starts)"
        raise v.fail(i, f"{problem}; give timestamps with their UTC offset, or in UTC") from None


def parse_timestamps(values: pd.Series, config: DataConfig, v: Validator) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.DatetimeIndex(values)
    elif pd.api.types.is_integer_dtype(values):
        stamps = _epoch_stamps(values, v)
    else:
        text = values.astype(str).str.strip()
        stamps = _parse_text(text, v)
        bad = stamps.isna() & True
        epoch = _epoch_stamps(values, v) if bad.all() else None  # no date format reads any
        if epoch is not None:
            stamps, bad = epoch, np.zeros(len(epoch), bool)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise v.fail(first, f"cannot parse timestamp {text.iloc[first]!r}")
    if stamps.isna().any():
        raise v.fail(int(np.flatnonzero(stamps.isna())[0]), "missing timestamp")
    if stamps.tz is None:
        stamps = _localize(stamps, config.timezone, v)
    ns: np.ndarray = np.array(stamps.tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)
    return ns  # a start label is moved to the bar's end once the source bar length is known

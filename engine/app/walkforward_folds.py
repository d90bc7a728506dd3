"""Walk-forward folds: rolling train and test windows over the data's time range.

Folds are laid from the local midnight ``a`` of the first bar: fold ``k`` trains on
``[a + k*step, a + train + k*step)`` and tests on the ``test`` period right after it (cut
at the next fold's test start); windows are half-open on bar end times. The scenario
overrides of :func:`train_window_overrides` and :func:`oos_window_overrides` cut a fold's
runs to them (see :mod:`engine.app.walkforward`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.core.errors import ConfigError

__all__ = [
    "Fold",
    "Period",
    "iso_time",
    "make_folds",
    "oos_window_overrides",
    "parse_period",
    "train_window_overrides",
]

_PERIOD = re.compile(r"^\s*(\d+)\s*([DWMY])\s*$", re.IGNORECASE)
_UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 30.44, "Y": 365.25}


@dataclass(frozen=True)
class Period:
    """A calendar length: ``count`` days, weeks, months or years."""

    count: int
    unit: str

    def offset(self, times: int = 1) -> Any:

        n = self.count * times
        return {
            "D": pd.DateOffset(days=n),
            "W": pd.DateOffset(weeks=n),
            "M": pd.DateOffset(months=n),
            "Y": pd.DateOffset(years=n),
        }[self.unit]

    @property
    def approx_days(self) -> float:
        return self.count * _UNIT_DAYS[self.unit]

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_period(text: str, option: str) -> Period:
    """``"24M"`` -> 24 months; units D, W, M, Y."""
    match = _PERIOD.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            f"{option}: {text!r} is not a period; use a positive count and a unit, "
            "D (days), W (weeks), M (months) or Y (years), e.g. 24M"
        )
    return Period(int(match.group(1)), match.group(2).upper())


@dataclass(frozen=True)
class Fold:
    """One fold: windows as int ns UTC ``[start, end)`` on bar end times, and the
    bars in them as index ranges ``[lo, hi)`` into the scenario's bars."""

    index: int
    train_start_ns: int
    train_end_ns: int
    test_start_ns: int
    test_end_ns: int
    train_lo: int
    train_hi: int
    test_lo: int
    test_hi: int

    @property
    def train_bars(self) -> int:
        return self.train_hi - self.train_lo

    @property
    def test_bars(self) -> int:
        return self.test_hi - self.test_lo


def make_folds(
    ts: np.ndarray, timezone: str, train: Period, test: Period, step: Period
) -> list[Fold]:
    """Rolling folds over bar end times ``ts`` (int ns UTC, ascending)."""

    if step.approx_days < test.approx_days:
        raise ConfigError(
            f"--step {step} is shorter than --test {test}: test windows would overlap "
            "and could not be stitched into one out-of-sample curve"
        )
    if len(ts) == 0:
        raise ConfigError("the scenario has no bars to lay folds over")
    first = pd.Timestamp(int(ts[0]), tz="UTC").tz_convert(timezone)
    last = pd.Timestamp(int(ts[-1]), tz="UTC").tz_convert(timezone)
    anchor = first.normalize()
    limit = last.normalize() + pd.DateOffset(days=1)
    folds: list[Fold] = []
    k = 0
    first_test = anchor + train.offset()
    while True:
        # Test windows are laid from one origin so that they meet exactly (calendar
        # offsets do not add up: Jan 31 + 1M + 1M is not Jan 31 + 2M).
        train_start = anchor + step.offset(k)
        train_end = first_test + step.offset(k)
        next_test = first_test + step.offset(k + 1)
        test_end = next_test if step == test else min(train_end + test.offset(), next_test)
        if test_end > limit:
            break
        bounds = [int(t.tz_convert("UTC").value) for t in (train_start, train_end, test_end)]
        lo, mid, hi = (int(i) for i in np.searchsorted(ts, bounds, side="left"))
        if mid > lo and hi > mid:
            folds.append(
                Fold(
                    index=len(folds),
                    train_start_ns=bounds[0],
                    train_end_ns=bounds[1],
                    test_start_ns=bounds[1],
                    test_end_ns=bounds[2],
                    train_lo=lo,
                    train_hi=mid,
                    test_lo=mid,
                    test_hi=hi,
                )
            )
        k += 1
    if not folds:
        raise ConfigError(
            f"the data covers {first.date()} to {last.date()}: too short for one fold of "
            f"--train {train} then --test {test}"
        )
    return folds


def iso_time(ns: int) -> str:
    """A bar time (ns since the epoch) as an ISO 8601 UTC time."""

    return str(pd.Timestamp(ns, tz="UTC").isoformat())


def train_window_overrides(fold: Fold, ts: np.ndarray) -> dict[str, Any]:
    """The scenario cut to the train window's bars (``ts``: the scenario's bar times)."""
    return {
        "data.start": iso_time(fold.train_start_ns),
        "data.end": iso_time(int(ts[fold.train_hi - 1])),
        "run.trade_start": "",
    }


def oos_window_overrides(fold: Fold, ts: np.ndarray) -> dict[str, Any]:
    """The out-of-sample run: bars from the train window's start warm up, trading and
    metrics start with the test window and end with its last bar."""
    return {
        "data.start": iso_time(fold.train_start_ns),
        "data.end": iso_time(int(ts[fold.test_hi - 1])),
        "run.trade_start": iso_time(fold.test_start_ns),
    }

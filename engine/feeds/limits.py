"""Limits on prices and volumes that no real market reaches (``data.max_*``).

A number can be finite and still wreck the accounting: one bar at 1e308 overflows
every product it enters. :func:`apply_limits` runs after the other checks of
:mod:`engine.feeds.bars` (on sorted, unique bars) and treats as a bad price any bar with
a price above ``data.max_price``, a high/low ratio or an open, high, low or close
further than ``data.max_abs_log_return`` (natural log) from the previous bar's
close; and as a bad volume a volume above ``data.max_volume``. The data policies
apply: ``error`` names the file, row and problem; ``drop`` removes the bar;
``fill`` makes it a flat bar at the previous close with volume 0 (a bad volume
becomes 0). A jump is measured from the last bar kept, so after a dropped or
filled bar the next one is compared with the close before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from engine.feeds.config import DataConfig

__all__ = ["apply_limits"]

PRICE_FIELDS = ("open", "high", "low", "close")


class Validator(Protocol):
    rows: np.ndarray

    def fail(self, position: int, problem: str, option: str | None = None) -> Exception: ...

    def apply(
        self, bad: np.ndarray, option: str, problem: str, describe: Callable[[int], str]
    ) -> str: ...


def _log_distance(cols: dict[str, np.ndarray], reference: np.ndarray) -> np.ndarray:
    """Per bar, the largest |log(price / reference)| over open, high, low, close."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.max([np.abs(np.log(cols[name] / reference)) for name in PRICE_FIELDS], axis=0)  # type: ignore[no-any-return]


def apply_limits(
    ts: np.ndarray, cols: dict[str, np.ndarray], v: Validator, config: DataConfig
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Check the limits of the module docstring; returns the bars kept (``v.rows`` too)."""
    n = len(ts)
    if n == 0:
        return ts, cols
    keep = np.ones(n, dtype=bool)
    close = cols["close"]

    # volume above the limit
    volume = cols["volume"]
    bad_volume = volume > config.max_volume
    policy = v.apply(
        bad_volume,
        "on_bad_volume",
        "volume above data.max_volume",
        lambda i: f"volume {float(volume[i])!r} is above data.max_volume = {config.max_volume:g}",
    )
    if bad_volume.any():
        if policy == "drop":
            keep &= ~bad_volume
        else:
            volume[bad_volume] = 0.0

    # price above the limit, range or jump too wide: measured from the last bar kept
    top = np.max([cols[name] for name in PRICE_FIELDS], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.log(cols["high"] / cols["low"])
    limit = config.max_abs_log_return
    jump = np.zeros(n)
    jump[1:] = _log_distance({k: c[1:] for k, c in cols.items()}, close[:-1])
    suspect = (top > config.max_price) | (width > limit) | (jump > limit) | ~keep

    def problem(i: int, previous: float | None) -> str | None:
        if top[i] > config.max_price:
            name = next(f for f in PRICE_FIELDS if cols[f][i] > config.max_price)
            return f"{name} {float(cols[name][i])!r} is above data.max_price = {config.max_price:g}"
        if width[i] > limit:
            return (
                f"high {float(cols['high'][i])!r} and low {float(cols['low'][i])!r} lie "
                f"{width[i]:.3g} apart in log (data.max_abs_log_return = {limit:g})"
            )
        if previous is not None:
            for name in PRICE_FIELDS:
                distance = abs(math.log(float(cols[name][i]) / previous))
                if distance > limit:
                    return (
                        f"{name} {float(cols[name][i])!r} is {distance:.3g} in log from the "
                        f"previous close {previous!r} (data.max_abs_log_return = {limit:g})"
                    )
        return None

    if not suspect.any():
        return ts, cols
    # Walk from the first suspect bar, comparing with the last bar kept.
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    first = int(np.flatnonzero(suspect)[0])
    kept = np.flatnonzero(keep[:first])
    previous: float | None = float(close[kept[-1]]) if len(kept) else None
    for i in range(first, n):
        if not keep[i]:
            continue
        reason = problem(i, previous)
        if reason is None:
            previous = float(close[i])
            continue
        bad[i] = True
        reasons[i] = reason
        if config.on_bad_price == "error":
            break
        if config.on_bad_price == "fill":
            if previous is None:
                reasons[i] = (
                    f"{reason}; a bad price on the first row cannot be filled (no previous close)"
                )
                break
            for name in PRICE_FIELDS:
                cols[name][i] = previous
            volume[i] = 0.0
    if bad.any():
        first_bad = int(np.flatnonzero(bad)[0])
        if config.on_bad_price == "error" or "cannot be filled" in reasons[first_bad]:
            raise v.fail(first_bad, reasons[first_bad], "on_bad_price")
        v.apply(bad, "on_bad_price", "price beyond the data limits", lambda i: reasons[i])
    if config.on_bad_price == "drop":
        keep &= ~bad
    if keep.all():
        return ts, cols
    index = np.flatnonzero(keep)
    v.rows = v.rows[index]
    return ts[index], {name: column[index] for name, column in cols.items()}

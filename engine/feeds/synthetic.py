"""A seeded synthetic market with known regimes, the ground truth for learning tests.

Four regimes switch as a Markov chain (stay with ``stay_probability``,
otherwise move to one of the other three uniformly):

=====  ===============  ===================================================
code   regime           log return of a bar
=====  ===============  ===================================================
0      trending up      +drift + sigma * z
1      trending down    -drift + sigma * z
2      mean-reverting   -kappa * (log price - anchor) + sigma * z, where the
                        anchor is the log price when the regime began
3      high volatility  3 * sigma * z
=====  ===============  ===================================================

with ``drift = 0.25 * sigma`` and ``kappa = 0.05``. ``complexity`` (the curriculum's,
SPEC 1) scales the noise: every ``sigma * z`` term above, and the gaps and wicks below,
use ``complexity * sigma`` while the drift and kappa stay, so at complexity 0.3 a
trending bar moves with its regime Φ(0.25 / 0.3) ≈ 80% of the time instead of
Φ(0.25) ≈ 60%. Complexity 1 (the default) is the full-noise market. Open is the previous close
moved by a small gap; high and low extend beyond open and close by half-normal
wicks; volume is log-normal and rises with the size of the move. Bars are on a
continuous ``bar_minutes`` grid (a market that trades around the clock), each
stamped with its end. The same config and seed always give the same bars.
"""

from __future__ import annotations

import msgspec
import numpy as np
import pandas as pd

from engine.feeds.bardata import NS_PER_MINUTE, BarData, DataReport
from engine.feeds.config import SyntheticConfig

__all__ = ["REGIME_NAMES", "generate_market", "generate_universe"]

REGIME_NAMES = ("trending_up", "trending_down", "mean_reverting", "high_volatility")


def _regimes(rng: np.random.Generator, n: int, stay_probability: float) -> np.ndarray:
    """A path of ``n`` regimes (the Markov chain of the module docstring)."""
    switch = rng.random(n) >= stay_probability
    jumps = rng.integers(1, 4, size=n)
    regime = np.empty(n, dtype=np.int8)
    state = int(rng.integers(0, 4))
    for i in range(n):
        if switch[i]:
            state = (state + int(jumps[i])) % 4
        regime[i] = state
    return regime


def generate_market(
    config: SyntheticConfig,
    *,
    symbol: str = "SYNTH",
    seed: int = 0,
    bar_minutes: int = 30,
    complexity: float = 1.0,
    regime: np.ndarray | None = None,
    shocks: np.ndarray | None = None,
) -> BarData:
    """Generate ``config.bars`` bars; ``BarData.regime`` holds each bar's true regime.
    ``regime`` and ``shocks`` (a universe's shared regime path and correlated shocks,
    :func:`generate_universe`) replace the ones this seed would draw."""
    if not 0.0 < complexity <= 1.0:
        raise ValueError(f"complexity must be in (0, 1], got {complexity}")
    rng = np.random.default_rng(seed)
    n = config.bars
    drift = 0.25 * config.base_volatility
    sigma = complexity * config.base_volatility
    kappa = 0.05
    if regime is None:
        regime = _regimes(rng, n, config.stay_probability)
    if shocks is None:
        shocks = rng.standard_normal(n)
    log_close = np.empty(n)
    level = float(np.log(config.start_price))
    anchor = level
    for i in range(n):
        r = regime[i]
        if i and regime[i - 1] != r:
            anchor = level
        if r == 0:
            step = drift + sigma * shocks[i]
        elif r == 1:
            step = -drift + sigma * shocks[i]
        elif r == 2:
            step = -kappa * (level - anchor) + sigma * shocks[i]
        else:
            step = 3.0 * sigma * shocks[i]
        level += step
        log_close[i] = level
    close = np.exp(log_close)
    previous = np.concatenate([[config.start_price], close[:-1]])
    bar_sigma = np.where(regime == 3, 3.0 * sigma, sigma)
    open_ = previous * np.exp(0.1 * bar_sigma * rng.standard_normal(n))
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * np.exp(np.abs(rng.standard_normal(n)) * 0.5 * bar_sigma)
    low = bottom * np.exp(-np.abs(rng.standard_normal(n)) * 0.5 * bar_sigma)
    move = np.abs(np.log(close / open_)) / sigma
    volume = np.round(1_000.0 * np.exp(0.4 * rng.standard_normal(n)) * (1.0 + move))

    start = pd.Timestamp(config.start)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    step_ns = bar_minutes * NS_PER_MINUTE
    first = -(-int(start.value) // step_ns) * step_ns
    ts = first + step_ns * np.arange(n, dtype=np.int64)
    report = DataReport(source=f"synthetic(seed={seed})", rows_read=n, bars=n)
    return BarData(symbol, ts, open_, high, low, close, volume, step_ns, report, regime)


def generate_universe(
    config: SyntheticConfig,
    symbols: list[str],
    *,
    seed: int = 0,
    bar_minutes: int = 30,
) -> list[BarData]:
    """A correlated multi-asset market on one clock: every symbol shares the market's
    regime path, and its shocks load on one market factor,
    ``z_s = sqrt(ρ) m + sqrt(1 - ρ) e_s`` with ``ρ = config.correlation`` (so any two
    symbols' shocks correlate by ρ); each symbol's volatility is ``base_volatility``
    times a log-normal factor (σ 0.3) of its own. Symbol ``i`` draws from the seed
    ``[seed, i + 1]``, the market from ``[seed, 0]``; the same config and seed give the
    same bars."""
    market = np.random.default_rng([seed, 0])
    n = config.bars
    regime = _regimes(market, n, config.stay_probability)
    common = market.standard_normal(n)
    rho = config.correlation
    out = []
    for i, symbol in enumerate(symbols):
        own = np.random.default_rng([seed, i + 1])
        scale = float(np.exp(0.3 * own.standard_normal()))
        shocks = np.sqrt(rho) * common + np.sqrt(1.0 - rho) * own.standard_normal(n)
        symbol_config = msgspec.structs.replace(
            config, base_volatility=config.base_volatility * scale
        )
        data = generate_market(
            symbol_config,
            symbol=symbol,
            seed=int(own.integers(2**31)),
            bar_minutes=bar_minutes,
            regime=regime,
            shocks=shocks,
        )
        data.report.source = f"synthetic(seed={seed}, symbol {i})"
        out.append(data)
    return out

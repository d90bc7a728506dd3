"""Is a backtest's edge real? Bootstrap intervals, probabilistic and deflated Sharpe ratios.

Every function takes the per-bar simple returns of an equity curve,
``r_t = equity_t / equity_{t-1} - 1`` (a 1-D float array of ``n`` values), and, where a
figure is annualised, ``P = periods_per_year``: bars per year as the run summary computes
it (number of returns divided by the years spanned, see :mod:`engine.app.metrics`).

Moments of the returns (``n`` of them)
--------------------------------------
* mean ``μ̂ = Σ r_t / n``; standard deviation ``σ̂ = sqrt(Σ (r_t − μ̂)² / (n − 1))``, taken as
  0 when all returns are equal (not the 1e-17 that rounding in ``μ̂`` would leave);
* per-period Sharpe ratio ``SR̂ = μ̂ / σ̂`` (risk-free rate 0); annualised ``SR̂ · sqrt(P)``,
  the summary's Sharpe;
* skewness ``γ3 = m3 / m2^(3/2)`` and kurtosis ``γ4 = m4 / m2²`` (not excess: 3 for a
  normal distribution), with the population central moments ``m_k = Σ (r_t − μ̂)^k / n``.

Stationary bootstrap intervals (Politis & Romano 1994)
------------------------------------------------------
A resample of the whole series is built from blocks: each block starts at a uniformly
drawn bar and its length is geometric with mean ``b`` (a new block starts at each position
with probability ``1/b``); a block running off the end wraps around to the first bar. The
indices come from :class:`arch.bootstrap.StationaryBootstrap`. On each resample ``r*``
(``replications`` of them) two statistics are computed:

* annualised Sharpe ``mean(r*) / std(r*, ddof=1) · sqrt(P)``;
* total return ``Π (1 + r*_t) − 1``.

The interval at confidence ``c`` is the percentile interval: the ``(1 − c)/2`` and
``(1 + c)/2`` quantiles of the resampled statistic (linear interpolation). A resample whose
variance is 0 (below ``1e-9 σ̂²``, rounding) has no Sharpe; it is left out of the Sharpe
quantiles and counted in ``degenerate_replications``.

The resamples are drawn and reduced by arch's own loop (``StationaryBootstrap.apply``):
drawing the indices takes most of the time, so computing the two statistics for many
resamples at once would gain little.

Default block length: the automatic choice of Politis & White (2004), corrected by Patton,
Politis & White (2009), for the stationary bootstrap, as computed by
:func:`arch.bootstrap.optimal_block_length`:
``b = (2 G² / D)^(1/3) · n^(1/3)`` with ``G = Σ_{|k| ≤ M} λ(k/M) |k| R̂(k)``,
``D = 2 (Σ_{|k| ≤ M} λ(k/M) R̂(k))²``, ``R̂(k)`` the sample autocovariance at lag ``k``,
``λ(t) = 1`` for ``|t| ≤ 1/2`` and ``2 (1 − |t|)`` above, ``M = 2 m̂`` where ``m̂`` is the
first lag after which ``max(5, ⌊log10 n⌋)`` consecutive autocorrelations lie inside
``± 2 sqrt(log10(n) / n)``, and ``b ≤ min(3 sqrt(n), n / 3)``. It is computed on the
returns themselves. Because a block cannot be shorter than one bar, a smaller value
(typical of serially independent returns) is raised to ``b = 1``: the i.i.d. bootstrap.

Fewer than :data:`MIN_BOOTSTRAP_RETURNS` returns, a non-finite return or a zero standard
deviation give NaN intervals, ``block_length`` NaN and ``replications`` 0; the point
estimates are still given where they are defined. A ``periods_per_year`` that is not
finite and positive makes the Sharpe figures NaN. Nothing raises for such data; invalid
arguments (a confidence outside (0, 1), no replications) raise ``ValueError``.

Probabilistic Sharpe ratio (Bailey & López de Prado 2012)
---------------------------------------------------------
The probability that the true Sharpe ratio exceeds a benchmark ``SR*``::

    PSR(SR*) = Φ( (SR̂ − SR*) · sqrt(n − 1) / sqrt(1 − γ3 · SR̂ + (γ4 − 1) / 4 · SR̂²) )

with ``Φ`` the standard normal distribution function. ``SR̂`` and ``SR*`` are per period,
never annualised: an annual benchmark converts as ``SR*_period = SR*_annual / sqrt(P)``
(:func:`per_period_sharpe`). The term under the root is never negative, since any
distribution has ``γ4 ≥ 1 + γ3²``, so it is at least ``(1 − γ3 · SR̂ / 2)²``; where it is 0
the statistic is ±∞ and PSR is 1 or 0 (NaN when ``SR̂ = SR*``). Fewer than 2 returns, a
non-finite return or a zero standard deviation give NaN.

:func:`psr_against` takes ``SR*`` = the per-period Sharpe ratio of a benchmark's returns
over the same bars (buy-and-hold of the account, say). The benchmark's Sharpe ratio is
treated as known: its own estimation error is not part of the probability.

Deflated Sharpe ratio (Bailey & López de Prado 2014)
----------------------------------------------------
When the strategy is the best of ``N`` trials, the benchmark is the Sharpe ratio that the
best of ``N`` skill-less trials would be expected to show::

    SR*_0 = sqrt(V) · ((1 − γ) · Φ⁻¹(1 − 1/N) + γ · Φ⁻¹(1 − 1/(N e)))
    DSR   = PSR(SR*_0), computed on the selected trial's returns

with ``γ ≈ 0.5772156649`` the Euler–Mascheroni constant, ``e`` Euler's number and ``V``
the sample variance (``ddof=1``) of the trials' per-period Sharpe ratios (non-finite ones
left out of ``V``; every trial still counts in ``N``). ``N = 1`` (no selection) gives
``SR*_0 = 0`` and ``DSR = PSR(0)``; so does ``V = 0``. Fewer than two finite trial Sharpe
ratios with ``N > 1`` leave ``V`` undefined: NaN.

For a summary
-------------
:func:`edge_figures` gathers the intervals, PSR(0), PSR against a benchmark's returns and
the DSR of one run in one dict of plain floats and ints (NaN where undefined), ready for
JSON. Randomness enters only through the bootstrap's ``seed``: an int or a
:class:`numpy.random.Generator`; the same returns, arguments and seed give the same figures.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import TypedDict, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "EULER_MASCHERONI",
    "MIN_BOOTSTRAP_RETURNS",
    "BootstrapIntervals",
    "EdgeFigures",
    "automatic_block_length",
    "deflated_sharpe_ratio",
    "edge_figures",
    "expected_max_sharpe",
    "per_period_sharpe",
    "probabilistic_sharpe_ratio",
    "psr_against",
    "psr_from_moments",
    "sharpe_ratio",
    "stationary_bootstrap_intervals",
]

EULER_MASCHERONI = 0.5772156649015329
"""γ in the expected maximum of ``N`` normal draws."""

MIN_BOOTSTRAP_RETURNS = 30
"""Fewer returns than this give NaN bootstrap intervals."""

_NAN = float("nan")
_STANDARD_NORMAL = NormalDist()

FloatArray = npt.NDArray[np.float64]


class BootstrapIntervals(TypedDict):
    """What :func:`stationary_bootstrap_intervals` returns (plain floats and ints)."""

    observations: int
    replications: int
    degenerate_replications: int
    block_length: float
    confidence: float
    sharpe: float
    sharpe_low: float
    sharpe_high: float
    total_return: float
    total_return_low: float
    total_return_high: float


class EdgeFigures(BootstrapIntervals):
    """What :func:`edge_figures` returns: the intervals plus PSR, DSR and the moments."""

    skewness: float
    kurtosis: float
    psr: float
    benchmark_sharpe: float
    psr_benchmark: float
    trials: int
    dsr: float


def _returns_array(returns: npt.ArrayLike, name: str = "returns") -> FloatArray:
    array = np.asarray(returns, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _moments(r: FloatArray) -> tuple[float, float, float, float]:
    """(mean, std with ddof=1, skewness, kurtosis); NaN where undefined.

    Returns that are all equal have no standard deviation (rounding in the mean would
    otherwise leave one of about 1e-17)."""
    n = len(r)
    if n < 2 or not np.all(np.isfinite(r)):
        return _NAN, _NAN, _NAN, _NAN
    with np.errstate(all="ignore"):
        mean = float(np.mean(r))
        if not np.ptp(r) > 0.0:
            return mean, _NAN, _NAN, _NAN
        std = float(np.std(r, ddof=1))  # as the run summary computes it
        deviation = r - mean
        m2 = np.mean(deviation**2)
        skewness = float(np.mean(deviation**3) / m2**1.5)
        kurtosis = float(np.mean(deviation**4) / m2**2)
    if not (std > 0.0 and math.isfinite(std) and math.isfinite(mean)):
        return mean, _NAN, _NAN, _NAN
    if not (math.isfinite(skewness) and math.isfinite(kurtosis)):
        return mean, std, _NAN, _NAN
    return mean, std, skewness, kurtosis


def sharpe_ratio(returns: npt.ArrayLike) -> float:
    """Per-period Sharpe ratio ``mean / std(ddof=1)``; NaN where undefined."""
    mean, std, _, _ = _moments(_returns_array(returns))
    return _NAN if math.isnan(std) else mean / std


@overload
def per_period_sharpe(annual_sharpe: float, periods_per_year: float) -> float: ...


@overload
def per_period_sharpe(annual_sharpe: FloatArray, periods_per_year: float) -> FloatArray: ...


def per_period_sharpe(
    annual_sharpe: float | FloatArray, periods_per_year: float
) -> float | FloatArray:
    """An annualised Sharpe ratio (or an array of them) per bar: ``SR / sqrt(P)``."""
    if isinstance(annual_sharpe, np.ndarray):
        return annual_sharpe / math.sqrt(periods_per_year)
    return float(annual_sharpe) / math.sqrt(periods_per_year)


def psr_from_moments(
    sharpe: float,
    observations: int,
    skewness: float = 0.0,
    kurtosis: float = 3.0,
    benchmark_sharpe: float = 0.0,
) -> float:
    """PSR from summary figures: per-period ``sharpe`` over ``observations`` returns with
    the given skewness and (non-excess) kurtosis, against a per-period ``benchmark_sharpe``.
    """
    figures = (sharpe, skewness, kurtosis, benchmark_sharpe)
    if observations < 2 or not all(math.isfinite(value) for value in figures):
        return _NAN
    difference = sharpe - benchmark_sharpe
    variance = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance <= 0.0:
        if difference == 0.0:
            return _NAN
        return 1.0 if difference > 0.0 else 0.0
    z = difference * math.sqrt(observations - 1) / math.sqrt(variance)
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """P(true Sharpe ratio > ``benchmark_sharpe``), both per period (see the module docstring).

    For an annual benchmark pass ``per_period_sharpe(annual, periods_per_year)``.
    """
    r = _returns_array(returns)
    mean, std, skewness, kurtosis = _moments(r)
    if math.isnan(std):
        return _NAN
    return psr_from_moments(mean / std, len(r), skewness, kurtosis, benchmark_sharpe)


def psr_against(returns: npt.ArrayLike, benchmark_returns: npt.ArrayLike) -> float:
    """PSR of ``returns`` against the per-period Sharpe ratio of ``benchmark_returns``.

    Both series cover the same bars (equal lengths); NaN where either Sharpe ratio is
    undefined.
    """
    r = _returns_array(returns)
    benchmark = _returns_array(benchmark_returns, "benchmark_returns")
    if len(benchmark) != len(r):
        raise ValueError(
            f"benchmark_returns must cover the same bars as returns: "
            f"got {len(benchmark)} benchmark returns for {len(r)} returns"
        )
    return probabilistic_sharpe_ratio(r, sharpe_ratio(benchmark))


def expected_max_sharpe(trials: int, variance: float) -> float:
    """``SR*_0``: the expected best per-period Sharpe ratio of ``trials`` skill-less trials
    whose Sharpe ratios have variance ``variance``; 0 for a single trial."""
    if isinstance(trials, bool) or not isinstance(trials, int | np.integer) or trials < 1:
        raise ValueError(f"trials must be a whole number of at least 1, got {trials!r}")
    if math.isnan(variance):
        return _NAN
    if variance < 0.0:
        raise ValueError(f"variance must not be negative, got {variance!r}")
    if trials == 1 or variance == 0.0:
        return 0.0
    inverse = _STANDARD_NORMAL.inv_cdf
    return math.sqrt(variance) * (
        (1.0 - EULER_MASCHERONI) * inverse(1.0 - 1.0 / trials)
        + EULER_MASCHERONI * inverse(1.0 - 1.0 / (trials * math.e))
    )


def deflated_sharpe_ratio(
    returns: npt.ArrayLike, trial_sharpes: npt.ArrayLike, *, trials: int | None = None
) -> float:
    """DSR of the selected trial's ``returns`` (see the module docstring).

    ``trial_sharpes``: the per-period Sharpe ratios of every trial, the selected one
    included (annualised ones convert with :func:`per_period_sharpe`). ``trials``: the
    number of trials ``N`` when more were run than ``trial_sharpes`` holds; by default
    ``len(trial_sharpes)``.
    """
    sharpes = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    if len(sharpes) == 0:
        raise ValueError("trial_sharpes is empty: pass the Sharpe ratio of every trial")
    count = len(sharpes) if trials is None else trials
    finite = sharpes[np.isfinite(sharpes)]
    if count == 1:
        variance = 0.0
    elif len(finite) >= 2:
        variance = float(np.var(finite, ddof=1))
    else:
        variance = _NAN
    benchmark = expected_max_sharpe(count, variance)
    if math.isnan(benchmark):
        return _NAN
    return probabilistic_sharpe_ratio(returns, benchmark)


def automatic_block_length(returns: npt.ArrayLike) -> float:
    """Mean block length for the stationary bootstrap: Politis & White (2004, corrected
    2009) by :func:`arch.bootstrap.optimal_block_length`, raised to at least 1.

    NaN for fewer than :data:`MIN_BOOTSTRAP_RETURNS` returns, non-finite returns or
    constant returns."""
    r = _returns_array(returns)
    if len(r) < MIN_BOOTSTRAP_RETURNS or not np.all(np.isfinite(r)) or not np.ptp(r) > 0.0:
        return _NAN
    # arch costs about 0.3 s to import; only the bootstrap needs it.
    from arch.bootstrap import optimal_block_length

    with np.errstate(divide="ignore", invalid="ignore"):
        length = float(optimal_block_length(r)["stationary"].iloc[0])
    return _NAN if math.isnan(length) else max(length, 1.0)


def _check_bootstrap_arguments(
    confidence: float, replications: int, block_length: float | None
) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if isinstance(replications, bool) or not isinstance(replications, int | np.integer):
        raise ValueError(f"replications must be a whole number, got {replications!r}")
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    if block_length is not None and not (math.isfinite(block_length) and block_length >= 1.0):
        raise ValueError(
            f"block_length must be a finite mean block length of at least 1 bar, "
            f"got {block_length!r}; pass None for the automatic choice"
        )


def _resample_statistics(sample: FloatArray, floor: float) -> FloatArray:
    """(per-period Sharpe ratio, total return) of one resample; the Sharpe ratio is NaN
    where the variance is at most ``floor``."""
    variance = float(np.var(sample, ddof=1))
    sharpe = float(np.mean(sample)) / math.sqrt(variance) if variance > floor else _NAN
    return np.array([sharpe, np.prod(1.0 + sample) - 1.0])


def _percentile_interval(values: FloatArray, confidence: float) -> tuple[float, float]:
    if len(values) == 0:
        return _NAN, _NAN
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore"):  # infinite values (overflowing total returns)
        low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def stationary_bootstrap_intervals(
    returns: npt.ArrayLike,
    periods_per_year: float,
    *,
    confidence: float = 0.95,
    replications: int = 1000,
    block_length: float | None = None,
    seed: int | np.random.Generator = 0,
) -> BootstrapIntervals:
    """Percentile intervals of the annualised Sharpe ratio and the total return over
    stationary-bootstrap resamples of the whole series (see the module docstring).

    ``block_length``: mean block length ``b`` in bars (at least 1); None for the automatic
    choice. ``seed``: an int, or a :class:`numpy.random.Generator` that the draws advance.
    The same returns, arguments and seed give the same intervals.
    """
    _check_bootstrap_arguments(confidence, replications, block_length)
    r = _returns_array(returns)
    n = len(r)
    annualiser = (
        math.sqrt(periods_per_year)
        if math.isfinite(periods_per_year) and periods_per_year > 0
        else _NAN
    )
    mean, std, _, _ = _moments(r)
    with np.errstate(over="ignore", invalid="ignore"):
        total_return = float(np.prod(1.0 + r)) - 1.0 if n else 0.0
    result = BootstrapIntervals(
        observations=n,
        replications=0,
        degenerate_replications=0,
        block_length=_NAN,
        confidence=float(confidence),
        sharpe=_NAN if math.isnan(std) else mean / std * annualiser,
        sharpe_low=_NAN,
        sharpe_high=_NAN,
        total_return=total_return,
        total_return_low=_NAN,
        total_return_high=_NAN,
    )
    if n < MIN_BOOTSTRAP_RETURNS or math.isnan(std):
        return result

    length = automatic_block_length(r) if block_length is None else float(block_length)
    from arch.bootstrap import StationaryBootstrap  # arch (scipy) loads on the first bootstrap

    generator = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    # arch types the block size as int; the stationary bootstrap only uses 1/b, so a
    # fractional mean block length is what the Politis-White choice asks for.
    bootstrap = StationaryBootstrap(length, r, seed=generator)  # type: ignore[arg-type]

    # A variance that is 0 up to rounding (every draw equal) has no Sharpe ratio.
    floor = 1e-9 * std**2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        statistics = bootstrap.apply(
            lambda sample: _resample_statistics(sample, floor), replications
        )
    sharpes, totals = statistics[:, 0], statistics[:, 1]
    defined = ~np.isnan(sharpes)
    sharpe_values = sharpes[defined] * annualiser
    result["replications"] = int(replications)
    result["degenerate_replications"] = int(replications - np.count_nonzero(defined))
    result["block_length"] = length
    if not math.isnan(annualiser):
        result["sharpe_low"], result["sharpe_high"] = _percentile_interval(
            sharpe_values, confidence
        )
    result["total_return_low"], result["total_return_high"] = _percentile_interval(
        totals[~np.isnan(totals)], confidence
    )
    return result


def edge_figures(
    returns: npt.ArrayLike,
    periods_per_year: float,
    benchmark_returns: npt.ArrayLike | None = None,
    seed: int | np.random.Generator = 0,
    *,
    trial_sharpes: npt.ArrayLike | None = None,
    trials: int | None = None,
    confidence: float = 0.95,
    replications: int = 1000,
) -> EdgeFigures:
    """Every figure of this module for one run, as plain floats and ints (JSON-ready).

    * the bootstrap intervals of :func:`stationary_bootstrap_intervals`;
    * ``skewness``, ``kurtosis`` of the returns;
    * ``psr``: PSR(0);
    * ``benchmark_sharpe`` (annualised) and ``psr_benchmark``: PSR against it, when
      ``benchmark_returns`` are given (NaN otherwise);
    * ``trials`` and ``dsr``: the deflated Sharpe ratio, when the Sharpe ratios of the
      trials this run was selected from are given (per period; ``trials`` 1 and ``dsr``
      NaN otherwise).
    """
    r = _returns_array(returns)
    intervals = stationary_bootstrap_intervals(
        r, periods_per_year, confidence=confidence, replications=replications, seed=seed
    )
    _, _, skewness, kurtosis = _moments(r)
    benchmark_sharpe = _NAN
    psr_benchmark = _NAN
    if benchmark_returns is not None:
        psr_benchmark = psr_against(r, benchmark_returns)
        periodic = sharpe_ratio(benchmark_returns)
        if math.isfinite(periods_per_year) and periods_per_year > 0:
            benchmark_sharpe = periodic * math.sqrt(periods_per_year)
    trial_count = 1
    dsr = _NAN
    if trial_sharpes is not None:
        trial_count = len(np.atleast_1d(np.asarray(trial_sharpes))) if trials is None else trials
        dsr = deflated_sharpe_ratio(r, trial_sharpes, trials=trials)
    return EdgeFigures(
        **intervals,
        skewness=skewness,
        kurtosis=kurtosis,
        psr=probabilistic_sharpe_ratio(r),
        benchmark_sharpe=benchmark_sharpe,
        psr_benchmark=psr_benchmark,
        trials=int(trial_count),
        dsr=dsr,
    )

"""Edge statistics against independent references, the papers' worked examples and arch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from arch import bootstrap as arch_bootstrap
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate, signal, stats

from engine.app.metrics import compute_summary
from engine.app.significance import (
    EULER_MASCHERONI,
    MIN_BOOTSTRAP_RETURNS,
    automatic_block_length,
    deflated_sharpe_ratio,
    edge_figures,
    expected_max_sharpe,
    per_period_sharpe,
    probabilistic_sharpe_ratio,
    psr_against,
    psr_from_moments,
    sharpe_ratio,
    stationary_bootstrap_intervals,
)

# ---------------------------------------------------------------- references


def reference_psr(returns: np.ndarray, benchmark: float) -> float:
    """PSR written out from scipy's moments: Φ(z) with z from the paper's formula."""
    n = len(returns)
    sharpe = np.mean(returns) / np.std(returns, ddof=1)
    skew = stats.skew(returns)  # biased: m3 / m2^1.5
    kurt = stats.kurtosis(returns, fisher=False)  # biased, not excess
    z = (sharpe - benchmark) * np.sqrt(n - 1)
    z /= np.sqrt(1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2)
    return float(stats.norm.cdf(z))


def reference_dsr(returns: np.ndarray, trial_sharpes: list[float]) -> float:
    """DSR by loops: mean and variance of the trials by hand, scipy's Φ⁻¹."""
    count = len(trial_sharpes)
    average = 0.0
    for value in trial_sharpes:
        average += value / count
    variance = 0.0
    for value in trial_sharpes:
        variance += (value - average) ** 2 / (count - 1)
    gamma = 0.5772156649
    expected_max = math.sqrt(variance) * (
        (1 - gamma) * stats.norm.ppf(1 - 1 / count)
        + gamma * stats.norm.ppf(1 - 1 / (count * math.e))
    )
    return reference_psr(returns, expected_max)


def skewed_returns(seed: int, n: int) -> np.ndarray:
    """Negatively skewed, fat-tailed returns: a small drift minus gamma-distributed losses."""
    rng = np.random.default_rng(seed)
    return 0.0065 + rng.normal(0.0, 0.01, n) - rng.gamma(0.3, 0.02, n)


def ar1(phi: float, n: int, seed: int) -> np.ndarray:
    """x_t = φ x_{t−1} + ε_t, after a burn-in of 500 steps."""
    noise = np.random.default_rng(seed).normal(0.0, 0.01, n + 500)
    return np.asarray(signal.lfilter([1.0], [1.0, -phi], noise))[500:]


# ---------------------------------------------------------------- PSR


def test_psr_from_moments_psr_paper_example_matches_published() -> None:
    """Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier" (Journal of
    Risk 15(2)), worked example: an annualised SR of 1.585 measured on 24 monthly returns
    with skewness -2.448 and kurtosis 10.164 has PSR(0) = 0.9132.

    The inputs and the result are those of the pypbo test suite, which cites this
    example; the section number and printed digits are not checked against the paper."""
    monthly = per_period_sharpe(1.585, 12)
    assert psr_from_moments(monthly, 24, -2.448, 10.164) == pytest.approx(0.9132, abs=5e-5)


def test_psr_from_moments_normal_returns_matches_normal_cdf() -> None:
    # Normal returns: the root is sqrt(1 + SR²/2).
    sharpe, n, benchmark = 0.1, 400, 0.02
    z = (sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(1 + sharpe**2 / 2)
    assert psr_from_moments(sharpe, n, 0.0, 3.0, benchmark) == pytest.approx(
        stats.norm.cdf(z), rel=1e-12
    )


def test_psr_from_moments_degenerate_variance_term_gives_certainty() -> None:
    # γ3 = 2/SR and γ4 = 1 + γ3² make 1 − γ3 SR + (γ4 − 1)/4 SR² exactly 0.
    sharpe = 0.5
    skew = 2 / sharpe
    kurt = 1 + skew**2
    assert psr_from_moments(sharpe, 50, skew, kurt, 0.1) == 1.0
    assert psr_from_moments(sharpe, 50, skew, kurt, 0.9) == 0.0


def test_probabilistic_sharpe_ratio_skewed_returns_matches_scipy_reference() -> None:
    returns = skewed_returns(1, 750)
    assert stats.skew(returns) < -0.5
    for benchmark in (0.0, 0.05, -0.03):
        assert probabilistic_sharpe_ratio(returns, benchmark) == pytest.approx(
            reference_psr(returns, benchmark), rel=1e-10
        )


def test_probabilistic_sharpe_ratio_annual_benchmark_converts_by_root_periods() -> None:
    returns = skewed_returns(2, 500)
    annual, periods = 1.0, 252.0
    expected = reference_psr(returns, annual / math.sqrt(periods))
    assert probabilistic_sharpe_ratio(returns, per_period_sharpe(annual, periods)) == pytest.approx(
        expected, rel=1e-10
    )
    converted = per_period_sharpe(np.array([annual, 2 * annual]), periods)
    np.testing.assert_allclose(converted, [1 / math.sqrt(252), 2 / math.sqrt(252)])


@pytest.mark.parametrize(
    "returns",
    [[], [0.01], [0.01] * 40, [0.1] * 1000, [0.01, float("nan"), 0.02], [0.01, np.inf]],
    ids=["empty", "one", "constant", "constant-inexact-mean", "nan", "inf"],
)
def test_probabilistic_sharpe_ratio_undefined_returns_nan(returns: list[float]) -> None:
    assert math.isnan(probabilistic_sharpe_ratio(np.array(returns)))
    assert math.isnan(sharpe_ratio(np.array(returns)))


def test_probabilistic_sharpe_ratio_two_dimensional_input_raises() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        probabilistic_sharpe_ratio(np.zeros((3, 2)))


def test_psr_against_benchmark_returns_uses_benchmark_sharpe() -> None:
    returns = skewed_returns(3, 600)
    benchmark = np.random.default_rng(4).normal(0.0002, 0.012, 600)
    benchmark_sharpe = np.mean(benchmark) / np.std(benchmark, ddof=1)
    assert psr_against(returns, benchmark) == pytest.approx(
        reference_psr(returns, benchmark_sharpe), rel=1e-10
    )
    assert psr_against(returns, returns) == pytest.approx(0.5)


def test_psr_against_different_lengths_raises() -> None:
    with pytest.raises(ValueError, match="same bars"):
        psr_against(np.ones(10), np.ones(9))


def test_psr_against_flat_benchmark_nan() -> None:
    assert math.isnan(psr_against(skewed_returns(5, 100), np.zeros(100)))


return_arrays = arrays(
    np.float64,
    st.integers(2, 120),
    elements=st.floats(-0.5, 0.5, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=150, deadline=None)
@given(returns=return_arrays, benchmark=st.floats(-1.0, 1.0))
def test_probabilistic_sharpe_ratio_any_returns_probability_or_nan(
    returns: np.ndarray, benchmark: float
) -> None:
    value = probabilistic_sharpe_ratio(returns, benchmark)
    assert math.isnan(value) or 0.0 <= value <= 1.0


@settings(max_examples=150, deadline=None)
@given(returns=return_arrays, low=st.floats(-1.0, 1.0), high=st.floats(-1.0, 1.0))
def test_probabilistic_sharpe_ratio_higher_benchmark_never_raises_psr(
    returns: np.ndarray, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    at_low = probabilistic_sharpe_ratio(returns, low)
    at_high = probabilistic_sharpe_ratio(returns, high)
    if not math.isnan(at_low):
        assert at_high <= at_low


# ---------------------------------------------------------------- DSR


def test_expected_max_sharpe_dsr_paper_example_matches_published() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for
    Selection Bias, Backtest Overfitting and Non-Normality" (Journal of Portfolio
    Management 40(5)), numerical example: N = 100 trials whose annualised Sharpe ratios
    have variance 1/2, daily data (250 a year): SR*_0 = 0.1132 per day. The selected
    trial, annualised SR 2.5 over T = 1,250 days with skewness -3 and kurtosis 10, has
    DSR = 0.9004.

    The inputs and the result are those of the pypbo test suite, which cites this
    example; the section number and printed digits are not checked against the paper."""
    threshold = expected_max_sharpe(100, 0.5 / 250)
    assert threshold == pytest.approx(0.1132, abs=5e-5)
    dsr = psr_from_moments(per_period_sharpe(2.5, 250), 1250, -3.0, 10.0, threshold)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


@pytest.mark.parametrize("trials", [10, 100, 1000])
def test_expected_max_sharpe_unit_variance_near_exact_expected_maximum(trials: int) -> None:
    # E[max of N standard normals] = ∫ x N φ(x) Φ(x)^(N−1) dx; the paper's closed form
    # approximates it to a few per cent.
    exact, _ = integrate.quad(
        lambda x: x * trials * stats.norm.pdf(x) * stats.norm.cdf(x) ** (trials - 1),
        -10,
        10,
    )
    assert expected_max_sharpe(trials, 1.0) == pytest.approx(exact, rel=0.03)


def test_expected_max_sharpe_single_trial_or_no_variance_zero() -> None:
    assert expected_max_sharpe(1, 0.3) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0
    assert math.isnan(expected_max_sharpe(50, float("nan")))


@pytest.mark.parametrize("trials", [0, -3, 2.5, True])
def test_expected_max_sharpe_invalid_trials_raises(trials: int) -> None:
    with pytest.raises(ValueError, match="trials"):
        expected_max_sharpe(trials, 1.0)


def test_expected_max_sharpe_uses_euler_mascheroni() -> None:
    assert pytest.approx(0.5772156649, abs=1e-10) == EULER_MASCHERONI


def test_deflated_sharpe_ratio_random_trials_matches_loop_reference() -> None:
    rng = np.random.default_rng(6)
    trials = [sharpe_ratio(rng.normal(0.0, 0.01, 400)) for _ in range(40)]
    returns = skewed_returns(7, 400)
    trials.append(sharpe_ratio(returns))
    assert deflated_sharpe_ratio(returns, trials) == pytest.approx(
        reference_dsr(returns, trials), rel=1e-9
    )


def test_deflated_sharpe_ratio_single_trial_equals_psr_zero() -> None:
    returns = skewed_returns(8, 300)
    assert deflated_sharpe_ratio(returns, [sharpe_ratio(returns)]) == pytest.approx(
        probabilistic_sharpe_ratio(returns)
    )


def test_deflated_sharpe_ratio_identical_trials_equals_psr_zero() -> None:
    returns = skewed_returns(9, 300)
    assert deflated_sharpe_ratio(returns, [0.05] * 20) == pytest.approx(
        probabilistic_sharpe_ratio(returns)
    )


def test_deflated_sharpe_ratio_more_trials_than_listed_lowers_dsr() -> None:
    returns = skewed_returns(10, 500)
    sharpes = list(np.random.default_rng(11).normal(0.0, 0.05, 20))
    listed = deflated_sharpe_ratio(returns, sharpes)
    assert deflated_sharpe_ratio(returns, sharpes, trials=1000) < listed
    assert deflated_sharpe_ratio(returns, sharpes, trials=1) == pytest.approx(
        probabilistic_sharpe_ratio(returns)
    )


def test_deflated_sharpe_ratio_undefined_trials_nan_and_empty_raises() -> None:
    returns = skewed_returns(12, 100)
    assert math.isnan(deflated_sharpe_ratio(returns, [0.1, float("nan")]))
    with pytest.raises(ValueError, match="empty"):
        deflated_sharpe_ratio(returns, [])


@settings(max_examples=150, deadline=None)
@given(
    returns=return_arrays,
    sharpes=st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=50),
)
def test_deflated_sharpe_ratio_selection_never_exceeds_psr_zero(
    returns: np.ndarray, sharpes: list[float]
) -> None:
    if np.var(sharpes) == 0.0:
        sharpes = [*sharpes, sharpes[0] + 0.1]
    dsr = deflated_sharpe_ratio(returns, sharpes)
    psr = probabilistic_sharpe_ratio(returns)
    if not math.isnan(psr):
        assert dsr <= psr


# ---------------------------------------------------------------- block length


def test_automatic_block_length_matches_arch() -> None:
    for returns in (ar1(0.4, 3_000, 1), np.random.default_rng(2).normal(0, 0.01, 5_000)):
        arch_value = arch_bootstrap.optimal_block_length(returns)["stationary"].iloc[0]
        assert automatic_block_length(returns) == pytest.approx(max(arch_value, 1.0), rel=1e-12)


@pytest.mark.parametrize("phi", [0.3, 0.5])
def test_automatic_block_length_ar1_near_theoretical_optimum(phi: float) -> None:
    # For AR(1), Σ|k|R(k) / ΣR(k) = 2φ / (1 − φ²): b = (2φ / (1 − φ²))^(2/3) n^(1/3).
    n = 20_000
    theory = (2 * phi / (1 - phi**2)) ** (2 / 3) * n ** (1 / 3)
    assert automatic_block_length(ar1(phi, n, 3)) == pytest.approx(theory, rel=0.25)


def test_automatic_block_length_ar1_longer_than_iid_noise() -> None:
    noise = np.random.default_rng(4).normal(0.0, 0.01, 2_000)
    assert automatic_block_length(ar1(0.5, 2_000, 4)) > 4 * automatic_block_length(noise)
    assert automatic_block_length(noise) >= 1.0


def test_automatic_block_length_constant_or_short_nan() -> None:
    assert math.isnan(automatic_block_length(np.full(100, 0.01)))
    short = np.random.default_rng(5).normal(0.0, 0.01, MIN_BOOTSTRAP_RETURNS - 1)
    assert math.isnan(automatic_block_length(short))


@pytest.mark.parametrize("n", range(MIN_BOOTSTRAP_RETURNS, MIN_BOOTSTRAP_RETURNS + 20))
def test_automatic_block_length_short_series_at_least_one(n: int) -> None:
    for seed in range(3):
        returns = np.random.default_rng(seed).normal(0.0, 0.01, n)
        assert automatic_block_length(returns) >= 1.0


# ---------------------------------------------------------------- bootstrap


def arch_resampled_statistics(
    returns: np.ndarray, periods: float, block_length: float, replications: int, seed: int
) -> np.ndarray:
    """arch's own bootstrap loop: the statistics computed on each resampled array."""
    bootstrap = arch_bootstrap.StationaryBootstrap(
        block_length, returns, seed=np.random.default_rng(seed)
    )

    def statistics(sample: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample of equal values
            sharpe = np.mean(sample) / np.std(sample, ddof=1) * np.sqrt(periods)
        return np.array([sharpe, np.prod(1 + sample) - 1])

    return np.asarray(bootstrap.apply(statistics, replications))


@pytest.mark.parametrize("block_length", [1.0, 7.5])
def test_stationary_bootstrap_intervals_matches_arch_resample_loop(block_length: float) -> None:
    returns = skewed_returns(13, 400)
    result = stationary_bootstrap_intervals(
        returns, 252.0, replications=300, block_length=block_length, seed=5
    )
    resampled = arch_resampled_statistics(returns, 252.0, block_length, 300, 5)
    sharpe_interval = np.quantile(resampled[:, 0], [0.025, 0.975])
    total_interval = np.quantile(resampled[:, 1], [0.025, 0.975])
    assert [result["sharpe_low"], result["sharpe_high"]] == pytest.approx(sharpe_interval, rel=1e-9)
    assert [result["total_return_low"], result["total_return_high"]] == pytest.approx(
        total_interval, rel=1e-9
    )
    assert result["block_length"] == block_length
    assert result["replications"] == 300
    assert result["degenerate_replications"] == 0


def test_stationary_bootstrap_intervals_wiped_and_negative_bars_match_arch() -> None:
    # 1 + r = 0 (the account wiped out) and 1 + r < 0 (negative equity) in the series.
    returns = np.random.default_rng(14).normal(0.001, 0.02, 60)
    returns[[10, 40]] = -1.0
    returns[[20, 30, 50]] = -1.5
    result = stationary_bootstrap_intervals(
        returns, 12.0, replications=200, block_length=3.0, seed=1, confidence=0.8
    )
    resampled = arch_resampled_statistics(returns, 12.0, 3.0, 200, 1)
    expected = np.quantile(resampled[:, 1], [0.1, 0.9])
    assert [result["total_return_low"], result["total_return_high"]] == pytest.approx(
        expected, rel=1e-9, abs=1e-12
    )
    assert result["total_return"] == pytest.approx(np.prod(1 + returns) - 1)


def test_stationary_bootstrap_intervals_mostly_flat_counts_degenerate_resamples() -> None:
    returns = np.zeros(40)
    returns[[5, 25]] = [0.02, -0.01]
    result = stationary_bootstrap_intervals(
        returns, 252.0, replications=300, block_length=2.0, seed=3
    )
    resampled = arch_resampled_statistics(returns, 252.0, 2.0, 300, 3)
    undefined = ~np.isfinite(resampled[:, 0])
    assert result["degenerate_replications"] == np.count_nonzero(undefined) > 0
    kept = np.quantile(resampled[~undefined, 0], [0.025, 0.975])
    assert [result["sharpe_low"], result["sharpe_high"]] == pytest.approx(kept, rel=1e-9)


def test_stationary_bootstrap_intervals_iid_normal_covers_true_sharpe() -> None:
    # 200 independent cases of 250 normal returns: the 95% interval should hold the
    # true annualised Sharpe about 95% of the time (binomial s.d. 1.5 points).
    mean, std, periods = 0.001, 0.01, 252.0
    true_sharpe = mean / std * math.sqrt(periods)
    covered = 0
    for case in range(200):
        returns = np.random.default_rng(1_000 + case).normal(mean, std, 250)
        result = stationary_bootstrap_intervals(returns, periods, replications=200, seed=case)
        covered += result["sharpe_low"] <= true_sharpe <= result["sharpe_high"]
    assert 0.90 <= covered / 200 <= 0.99


def test_stationary_bootstrap_intervals_same_seed_identical_other_seed_differs() -> None:
    returns = skewed_returns(15, 500)
    first = stationary_bootstrap_intervals(returns, 252.0, replications=200, seed=7)
    again = stationary_bootstrap_intervals(returns, 252.0, replications=200, seed=7)
    other = stationary_bootstrap_intervals(returns, 252.0, replications=200, seed=8)
    generator = stationary_bootstrap_intervals(
        returns, 252.0, replications=200, seed=np.random.default_rng(7)
    )
    assert first == again == generator
    assert first["sharpe_low"] != other["sharpe_low"]


def test_stationary_bootstrap_intervals_default_block_length_is_automatic() -> None:
    returns = ar1(0.5, 2_000, 16) + 0.001
    result = stationary_bootstrap_intervals(returns, 252.0, replications=50)
    assert result["block_length"] == automatic_block_length(returns)


def test_stationary_bootstrap_intervals_point_estimates_match_summary_formulas() -> None:
    returns = skewed_returns(17, 300)
    result = stationary_bootstrap_intervals(returns, 1_936.0, replications=100)
    # Bit for bit the formula of engine.app.metrics.compute_summary.
    expected_sharpe = float(np.mean(returns)) / float(np.std(returns, ddof=1))
    assert result["sharpe"] == expected_sharpe * math.sqrt(1_936.0)
    assert result["total_return"] == pytest.approx(np.prod(1 + returns) - 1)
    assert result["sharpe_low"] < result["sharpe"] < result["sharpe_high"]
    assert result["total_return_low"] < result["total_return"] < result["total_return_high"]
    assert result["observations"] == 300
    assert result["confidence"] == 0.95


def test_stationary_bootstrap_intervals_run_summary_returns_same_sharpe() -> None:
    # The returns and bars per year of a run summary give the summary's own Sharpe.
    n, initial = 2_000, 1_000.0
    ts = np.arange(n, dtype=np.int64) * 1_800 * 1_000_000_000
    equity = initial * np.cumprod(1 + skewed_returns(22, n))
    empty = np.array([])
    fills = {"side": empty.astype(object), "quantity": empty, "price": empty, "commission": empty}
    summary = compute_summary(ts, equity, np.ones(n), initial, fills, 0.0)
    returns = equity / np.concatenate([[initial], equity[:-1]]) - 1
    result = stationary_bootstrap_intervals(returns, summary.periods_per_year, replications=20)
    assert result["sharpe"] == summary.sharpe
    assert result["total_return"] == pytest.approx(summary.total_return, rel=1e-12)


@pytest.mark.parametrize(
    "returns",
    [
        np.array([]),
        np.full(MIN_BOOTSTRAP_RETURNS - 1, 0.01) + np.linspace(0, 0.01, 29),
        np.full(100, 0.001),
        np.r_[np.full(50, 0.001), np.nan],
    ],
    ids=["empty", "too-short", "constant", "nan"],
)
def test_stationary_bootstrap_intervals_degenerate_input_nan_intervals(
    returns: np.ndarray,
) -> None:
    result = stationary_bootstrap_intervals(returns, 252.0)
    for key in ("sharpe_low", "sharpe_high", "total_return_low", "total_return_high"):
        assert math.isnan(result[key])
    assert math.isnan(result["block_length"])
    assert result["replications"] == 0
    assert result["observations"] == len(returns)


def test_stationary_bootstrap_intervals_constant_returns_keep_total_return() -> None:
    result = stationary_bootstrap_intervals(np.full(100, 0.001), 252.0)
    assert result["total_return"] == pytest.approx(1.001**100 - 1)
    assert math.isnan(result["sharpe"])


def test_stationary_bootstrap_intervals_undefined_periods_nan_sharpe_only() -> None:
    result = stationary_bootstrap_intervals(skewed_returns(18, 100), float("nan"))
    assert math.isnan(result["sharpe"]) and math.isnan(result["sharpe_low"])
    assert result["total_return_low"] < result["total_return_high"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"replications": 0}, "replications"),
        ({"replications": 10.5}, "replications"),
        ({"block_length": 0.5}, "block_length"),
        ({"block_length": float("inf")}, "block_length"),
    ],
)
def test_stationary_bootstrap_intervals_invalid_arguments_raise(
    arguments: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        stationary_bootstrap_intervals(np.ones(50), 252.0, **arguments)


# ---------------------------------------------------------------- edge_figures


def test_edge_figures_all_figures_plain_and_consistent() -> None:
    returns = skewed_returns(19, 400)
    benchmark = np.random.default_rng(20).normal(0.0003, 0.012, 400)
    trials = [0.01, 0.03, -0.02, sharpe_ratio(returns)]
    figures = edge_figures(
        returns, 252.0, benchmark, seed=3, trial_sharpes=trials, replications=200
    )
    intervals = stationary_bootstrap_intervals(returns, 252.0, replications=200, seed=3)
    assert {key: figures[key] for key in intervals} == intervals
    assert figures["psr"] == pytest.approx(probabilistic_sharpe_ratio(returns))
    assert figures["psr_benchmark"] == pytest.approx(psr_against(returns, benchmark))
    assert figures["benchmark_sharpe"] == pytest.approx(
        np.mean(benchmark) / np.std(benchmark, ddof=1) * math.sqrt(252.0)
    )
    assert figures["dsr"] == pytest.approx(deflated_sharpe_ratio(returns, trials))
    assert figures["trials"] == 4
    assert figures["skewness"] == pytest.approx(stats.skew(returns))
    assert figures["kurtosis"] == pytest.approx(stats.kurtosis(returns, fisher=False))
    for value in figures.values():
        assert type(value) in (float, int)
    assert json.loads(json.dumps(figures)) == pytest.approx(figures)


def test_edge_figures_no_benchmark_or_trials_nan() -> None:
    figures = edge_figures(skewed_returns(21, 100), 252.0, replications=50)
    assert math.isnan(figures["psr_benchmark"]) and math.isnan(figures["benchmark_sharpe"])
    assert math.isnan(figures["dsr"]) and figures["trials"] == 1

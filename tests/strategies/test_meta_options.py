"""Option values of the meta-investor against QuantLib, finite differences and limits."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import QuantLib as ql  # noqa: N813 (the customary QuantLib alias)
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.meta.options import (
    binomial_call,
    black_scholes_call,
    black_scholes_call_array,
    black_scholes_greeks,
    crr_call,
    crr_up_probability,
)

SPOTS = [50.0, 80.0, 100.0, 120.0, 200.0]
STRIKES = [90.0, 100.0, 110.0]
VOLS = [0.05, 0.2, 0.8]
RATES = [0.0, 0.03, 0.1]


def _ql_black_calculator(S, K, T, sigma, r):
    discount = math.exp(-r * T)
    payoff = ql.PlainVanillaPayoff(ql.Option.Call, K)
    return ql.BlackCalculator(payoff, S / discount, sigma * math.sqrt(T), discount)


def _ql_option(S, K, days, sigma, r, engine_factory):
    """A European call priced by QuantLib with T = days / 365 (Actual/365 Fixed)."""
    today = ql.Date(15, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, day_count)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, day_count)),
        ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), sigma, day_count)
        ),
    )
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Call, K), ql.EuropeanExercise(today + days)
    )
    option.setPricingEngine(engine_factory(process))
    return option.NPV()


def _assert_close_to_quantlib(ours, theirs, S):
    """1e-10 relative; far out of the money (value < 1e-5 S) 1e-13 S absolute.

    There C = S Φ(d1) - K e^{-rT} Φ(d2) is a difference of two nearly equal
    tiny numbers and QuantLib's normal distribution, 0.5 (1 + erf(x/√2)),
    itself loses relative digits in the lower tail, so only the absolute
    agreement is meaningful.
    """
    if theirs >= 1e-5 * S:
        assert ours == pytest.approx(theirs, rel=1e-10, abs=0.0)
    else:
        assert abs(ours - theirs) <= 1e-13 * S


@pytest.mark.parametrize("T", [0.01, 0.5, 2.0])
def test_black_scholes_call_grid_matches_quantlib_black_calculator(T):
    for S, K, sigma, r in itertools.product(SPOTS, STRIKES, VOLS, RATES):
        theirs = _ql_black_calculator(S, K, T, sigma, r).value()
        _assert_close_to_quantlib(black_scholes_call(S, K, T, sigma, r), theirs, S)


@pytest.mark.parametrize("days", [7, 91, 365, 730])
def test_black_scholes_call_grid_matches_quantlib_analytic_engine(days):
    T = days / 365.0
    for S, K, sigma, r in itertools.product([80.0, 100.0, 120.0], STRIKES, VOLS, RATES):
        theirs = _ql_option(S, K, days, sigma, r, ql.AnalyticEuropeanEngine)
        _assert_close_to_quantlib(black_scholes_call(S, K, T, sigma, r), theirs, S)


def test_black_scholes_greeks_grid_matches_quantlib_black_calculator():
    for S, K, sigma, T, r in itertools.product(
        [80.0, 100.0, 120.0], STRIKES, [0.2, 0.8], [0.25, 1.0], RATES
    ):
        calculator = _ql_black_calculator(S, K, T, sigma, r)
        greeks = black_scholes_greeks(S, K, T, sigma, r)
        assert greeks.delta == pytest.approx(calculator.delta(S), rel=1e-9, abs=1e-12)
        assert greeks.gamma == pytest.approx(calculator.gamma(S), rel=1e-9, abs=1e-12)
        assert greeks.vega == pytest.approx(calculator.vega(T), rel=1e-9, abs=1e-12)
        assert greeks.theta == pytest.approx(calculator.theta(S, T), rel=1e-8, abs=1e-10)


@settings(max_examples=60, deadline=None)
@given(
    S=st.floats(50.0, 150.0),
    K=st.floats(60.0, 140.0),
    T=st.floats(0.1, 3.0),
    sigma=st.floats(0.1, 0.9),
    r=st.floats(-0.02, 0.1),
)
def test_black_scholes_greeks_random_inputs_match_central_differences(S, K, T, sigma, r):
    greeks = black_scholes_greeks(S, K, T, sigma, r)

    def price(s=S, t=T, v=sigma):
        return black_scholes_call(s, K, t, v, r)

    h_s, h_g, h_t, h_v = 1e-5 * S, 1e-4 * S, 1e-5, 1e-5
    delta = (price(s=S + h_s) - price(s=S - h_s)) / (2 * h_s)
    gamma = (price(s=S + h_g) - 2 * price() + price(s=S - h_g)) / h_g**2
    vega = (price(v=sigma + h_v) - price(v=sigma - h_v)) / (2 * h_v)
    theta = -(price(t=T + h_t) - price(t=T - h_t)) / (2 * h_t)
    assert greeks.delta == pytest.approx(delta, rel=1e-6, abs=1e-8)
    assert greeks.gamma == pytest.approx(gamma, rel=2e-5, abs=1e-8)
    assert greeks.vega == pytest.approx(vega, rel=1e-6, abs=1e-7)
    assert greeks.theta == pytest.approx(theta, rel=1e-5, abs=1e-7)


def _quantlib_crr_probability(T, sigma, r, steps):
    """QuantLib's CoxRossRubinstein tree: p = 1/2 + 1/2 (r - σ²/2) Δt / (σ √Δt)."""
    dt = T / steps
    return 0.5 + 0.5 * (r - 0.5 * sigma * sigma) * dt / (sigma * math.sqrt(dt))


def _ql_crr(S, K, days, sigma, r, steps):
    return _ql_option(S, K, days, sigma, r, lambda p: ql.BinomialVanillaEngine(p, "crr", steps))


@pytest.mark.parametrize("steps", [2, 3, 10, 101, 500, 1000])  # QuantLib needs >= 2
def test_crr_call_drift_matched_grid_equals_quantlib_crr_engine_at_same_steps(steps):
    """``crr_call(..., probability="drift_matched")`` is QuantLib's CRR engine to 1e-10.

    QuantLib's "crr" tree (BinomialVanillaEngine) has the same nodes
    S e^{(2j - i) σ√Δt}, Δt = T/steps, and the same discount e^{-rΔt} per step
    as the SPEC's CRR tree, but its up probability is the first-order drift
    match p = 1/2 + 1/2 (r - σ²/2) Δt / (σ√Δt) instead of the SPEC's exact
    risk-neutral p = (e^{rΔt} - d)/(u - d); the keyword selects that rule.
    """
    for S, K, sigma, r, days in itertools.product(
        [80.0, 100.0, 125.0], [90.0, 110.0], [0.15, 0.6], [0.0, 0.05], [73, 365]
    ):
        T = days / 365.0
        theirs = _ql_crr(S, K, days, sigma, r, steps)
        ours = crr_call(S, K, T, sigma, r, steps=steps, probability="drift_matched")
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-13 * S)
        p_up = crr_up_probability(T, sigma, r, steps=steps, probability="drift_matched")
        assert p_up == pytest.approx(_quantlib_crr_probability(T, sigma, r, steps), rel=1e-14)
        # The same lattice as binomial_call with QuantLib's probability passed in.
        assert ours == binomial_call(S, K, T, sigma, r, steps=steps, up_probability=p_up)


def test_crr_call_default_probability_differs_from_quantlib_crr_by_definition_only():
    S, K, T, sigma, r, steps = 100.0, 100.0, 1.0, 0.2, 0.05, 50
    theirs = _ql_crr(S, K, 365, sigma, r, steps)
    ours = crr_call(S, K, T, sigma, r, steps=steps)
    assert ours == crr_call(S, K, T, sigma, r, steps=steps, probability="risk_neutral")
    p_spec = crr_up_probability(T, sigma, r, steps=steps)
    assert p_spec != pytest.approx(_quantlib_crr_probability(T, sigma, r, steps), rel=1e-9)
    assert ours == pytest.approx(
        binomial_call(S, K, T, sigma, r, steps=steps, up_probability=p_spec)
    )
    # Different trees, the same limit: both within 0.05 of each other at 50 steps.
    assert ours != pytest.approx(theirs, rel=1e-6)
    assert abs(ours - theirs) < 0.05


def test_crr_call_drift_matched_edge_cases_and_bad_keyword():
    # T = 0 and σ = 0 are the same limits as under the default rule.
    assert crr_call(120.0, 100.0, 0.0, 0.3, 0.05, steps=10, probability="drift_matched") == 20.0
    expected = max(120.0 - 100.0 * math.exp(-0.05 * 0.75), 0.0)
    value = crr_call(120.0, 100.0, 0.75, 0.0, 0.05, steps=25, probability="drift_matched")
    assert value == pytest.approx(expected, rel=1e-15, abs=0.0)
    # |r - σ²/2| √Δt > σ: p > 1.
    with pytest.raises(ValueError, match=r"steps=1 is too few.*1/2 \(r - σ²/2\)"):
        crr_call(100.0, 100.0, 1.0, 0.1, 0.5, steps=1, probability="drift_matched")
    for function, args in (
        (crr_call, (100.0, 100.0, 1.0, 0.2)),
        (crr_up_probability, (1.0, 0.2)),
    ):
        with pytest.raises(ValueError, match=r"probability must be one of .*'quantlib'"):
            function(*args, steps=10, probability="quantlib")


def _binomial_sum_reference(S, K, T, sigma, r, steps):
    """Closed form of the SPEC tree: e^{-rT} Σ_j C(N, j) p^j (1-p)^{N-j} max(S u^{2j-N} - K, 0)."""
    dt = T / steps
    u = math.exp(sigma * math.sqrt(dt))
    d = 1.0 / u
    p = (math.exp(r * dt) - d) / (u - d)
    total = 0.0
    for j in range(steps + 1):
        payoff = max(S * u ** (2 * j - steps) - K, 0.0)
        total += math.comb(steps, j) * p**j * (1.0 - p) ** (steps - j) * payoff
    return math.exp(-r * T) * total


@pytest.mark.parametrize("steps", [1, 2, 5, 30, 80])
def test_crr_call_small_trees_match_binomial_sum(steps):
    for S, K, sigma, T, r in itertools.product(
        [80.0, 100.0, 130.0], [95.0, 105.0], [0.1, 0.5], [0.3, 1.5], [0.0, 0.04]
    ):
        reference = _binomial_sum_reference(S, K, T, sigma, r, steps)
        assert crr_call(S, K, T, sigma, r, steps=steps) == pytest.approx(
            reference, rel=1e-11, abs=1e-12
        )


@pytest.mark.parametrize(("S", "K"), [(1.0, 1.0), (100.0, 100.0)])
def test_crr_call_at_the_money_1000_steps_converges_to_black_scholes(S, K):
    for sigma, T, r in itertools.product([0.1, 0.3, 0.6], [0.5, 1.0, 5.0], [0.0, 0.05]):
        exact = black_scholes_call(S, K, T, sigma, r)
        tree = crr_call(S, K, T, sigma, r, steps=1000)
        assert abs(tree - exact) / exact < 1e-3
        if S == 1.0:
            assert abs(tree - exact) < 1e-3


def test_crr_call_error_shrinks_with_steps():
    exact = black_scholes_call(100.0, 100.0, 1.0, 0.3, 0.02)
    errors = [abs(crr_call(100.0, 100.0, 1.0, 0.3, 0.02, steps=s) - exact) for s in (50, 500)]
    assert errors[1] < errors[0] / 5


def test_crr_up_probability_matches_spec_formula():
    T, sigma, r, steps = 2.0, 0.25, 0.03, 40
    dt = T / steps
    u = math.exp(sigma * math.sqrt(dt))
    expected = (math.exp(r * dt) - 1.0 / u) / (u - 1.0 / u)
    assert crr_up_probability(T, sigma, r, steps=steps) == pytest.approx(expected, rel=1e-13)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(("S", "K", "expected"), [(120.0, 100.0, 20.0), (80.0, 100.0, 0.0)])
def test_black_scholes_call_zero_time_to_expiry_is_intrinsic(S, K, expected):
    assert black_scholes_call(S, K, 0.0, 0.3, 0.05) == expected
    assert crr_call(S, K, 0.0, 0.3, 0.05, steps=10) == expected
    greeks = black_scholes_greeks(S, K, 0.0, 0.3, 0.05)
    assert greeks.delta == (1.0 if S > K else 0.0)
    assert greeks.gamma == 0.0
    assert greeks.vega == 0.0


@pytest.mark.parametrize(("S", "K"), [(120.0, 100.0), (100.0, 103.0), (80.0, 100.0)])
def test_black_scholes_call_zero_volatility_is_discounted_intrinsic(S, K):
    T, r = 0.75, 0.05
    expected = max(S - K * math.exp(-r * T), 0.0)
    assert black_scholes_call(S, K, T, 0.0, r) == pytest.approx(expected, rel=1e-15, abs=0.0)
    assert crr_call(S, K, T, 0.0, r, steps=25) == pytest.approx(expected, rel=1e-15, abs=0.0)
    # The limit is continuous: a tiny volatility gives nearly the same value.
    assert black_scholes_call(S, K, T, 1e-9, r) == pytest.approx(expected, abs=1e-9)
    greeks = black_scholes_greeks(S, K, T, 0.0, r)
    in_the_money = K * math.exp(-r * T) < S
    assert greeks.delta == (1.0 if in_the_money else 0.0)
    assert greeks.theta == pytest.approx(-r * K * math.exp(-r * T) if in_the_money else 0.0)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("S", (0.0, 100.0, 1.0, 0.2)),
        ("S", (-5.0, 100.0, 1.0, 0.2)),
        ("K", (100.0, 0.0, 1.0, 0.2)),
        ("K", (100.0, -1.0, 1.0, 0.2)),
        ("T", (100.0, 100.0, -0.1, 0.2)),
        ("sigma", (100.0, 100.0, 1.0, -0.2)),
    ],
)
def test_option_functions_invalid_argument_raise_naming_it(name, args):
    value = args[("S", "K", "T", "sigma").index(name)]
    for function in (black_scholes_call, black_scholes_greeks, crr_call):
        with pytest.raises(ValueError, match=rf"^{name} must be .*{value!r}"):
            function(*args)


@pytest.mark.parametrize("position", range(5))
def test_option_functions_nan_input_raise(position):
    args = [100.0, 100.0, 1.0, 0.2, 0.01]
    args[position] = math.nan
    name = ("S", "K", "T", "sigma", "r")[position]
    for function in (black_scholes_call, black_scholes_greeks, crr_call):
        with pytest.raises(ValueError, match=rf"^{name} must be a finite number, got nan"):
            function(*args)


def test_crr_call_probability_outside_unit_interval_raises_naming_steps():
    # r Δt > σ √Δt: e^{rΔt} > u, so p > 1.
    with pytest.raises(ValueError, match="steps=2 is too few"):
        crr_call(100.0, 100.0, 1.0, 0.01, 0.5, steps=2)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        crr_call(100.0, 100.0, 1.0, 0.2, steps=0)


def test_black_scholes_call_array_equals_scalar_calls():
    rng = np.random.default_rng(7)
    S = rng.uniform(0.5, 2.0, 100)
    K = rng.uniform(0.5, 2.0, 100)
    sigma = rng.uniform(0.0, 1.0, 100)
    sigma[::10] = 0.0
    values = black_scholes_call_array(S, K, 3.0, sigma, 0.01)
    expected = [black_scholes_call(s, k, 3.0, v, 0.01) for s, k, v in zip(S, K, sigma, strict=True)]
    np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("S", -1.0, r"S\[3\] must be > 0"),
        ("K", math.nan, r"K\[3\] must be a finite number"),
        ("sigma", -0.5, r"sigma\[3\] must be >= 0"),
    ],
)
def test_black_scholes_call_array_invalid_element_raises_naming_index(field, value, pattern):
    arrays = {"S": np.ones(5), "K": np.ones(5), "sigma": np.full(5, 0.2)}
    arrays[field][3] = value
    with pytest.raises(ValueError, match=pattern):
        black_scholes_call_array(arrays["S"], arrays["K"], 1.0, arrays["sigma"])


@pytest.mark.parametrize("probability", ["risk_neutral", "drift_matched"])
def test_crr_call_volatility_below_float_resolution_is_the_zero_volatility_limit(probability):
    # σ√Δt = 1e-18: u = e^{σ√Δt} rounds to d = 1/u, the tree has no spread.
    for S, K, r in ((100.0, 100.0, 0.0), (120.0, 100.0, 0.05), (80.0, 100.0, 0.02)):
        value = crr_call(S, K, 4.0, 1e-18, r, steps=4, probability=probability)
        assert value == black_scholes_call(S, K, 4.0, 1e-18, r)
        assert value == pytest.approx(max(S - K * math.exp(-r * 4.0), 0.0), abs=1e-12)
    with pytest.raises(ValueError, match=r"sigma=1e-18 is too small"):
        crr_up_probability(4.0, 1e-18, steps=4)

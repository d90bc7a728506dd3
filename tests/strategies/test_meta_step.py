"""One whole meta-investor step against the composition of its public pieces."""

from __future__ import annotations

import json
import math

import msgspec
import numpy as np
import pytest

from strategies.meta.allocation import (
    bubble_coefficients,
    bubble_penalty,
    smooth_weights,
    target_weights,
)
from strategies.meta.options import black_scholes_call_array, crr_call
from strategies.meta.shapley import shapley_exact
from strategies.meta.share_price import rolling_log_volatility, update_share_prices
from strategies.meta.step import MetaInvestorParams, MetaInvestorState
from tests.reference.meta_trading import (
    ensemble_target,
    trading_coalition_values,
    unit_trading_cost,
)


def _random_values(n, rng):
    v = rng.normal(0.0, 1.0, 1 << n)
    v[0] = 0.0
    return v


def _reference_run(params, games, expiries):
    """The SPEC 5 pipeline from the public single-purpose functions, one step at a time."""
    n = params.n_agents
    prices = np.full(n, params.initial_share_price)
    history = [prices]
    weights = np.full(n, 1.0 / n)
    rows = []
    for v, T in zip(games, expiries, strict=True):
        phi = shapley_exact(v)
        prices = update_share_prices(
            prices,
            phi,
            form=params.share_price_form,
            alpha=params.alpha,
            floor=params.price_floor,
            rtol=params.price_rtol,
        )
        history.append(prices)
        path = np.array(history)
        sigma = rolling_log_volatility(
            path, params.volatility_window, params.periods_per_time_unit
        )[-1]
        strike = path[-params.strike_window :].mean(axis=0)
        if params.pricing == "crr":
            options = np.array(
                [
                    crr_call(s, k, T, vol, params.risk_free_rate, steps=params.crr_steps)
                    for s, k, vol in zip(prices, strike, sigma, strict=True)
                ]
            )
        else:
            options = black_scholes_call_array(prices, strike, T, sigma, params.risk_free_rate)
        targets = target_weights(options)
        weights = smooth_weights(weights, targets, params.smoothing)
        bubbles = bubble_coefficients(weights, targets, cap=params.bubble_cap)
        penalty = bubble_penalty(
            bubbles, beta=params.bubble_penalty_weight, threshold=params.bubble_threshold
        )
        rows.append((phi, prices, sigma, strike, options, targets, weights, bubbles, penalty))
    return rows


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"share_price_form": "compound", "price_floor": 1e-3},
        {"pricing": "crr", "crr_steps": 64, "risk_free_rate": 0.001},
        {"volatility_window": 3, "strike_window": 1, "periods_per_time_unit": 48.0},
    ],
)
def test_meta_investor_step_three_agents_matches_composed_functions(overrides):
    params = MetaInvestorParams.spec_literal(alpha=0.2, **overrides)
    rng = np.random.default_rng(5)
    games = [_random_values(3, rng) for _ in range(40)]
    expiries = [float(40 - t) for t in range(40)]
    state = MetaInvestorState(params)
    expected = _reference_run(params, games, expiries)
    for t, (v, T, row) in enumerate(zip(games, expiries, expected, strict=True)):
        result = state.step(v, T)
        phi, prices, sigma, strike, options, targets, weights, bubbles, penalty = row
        assert result.step == t + 1
        assert (result.method, result.coalition_count) == ("exact", 8)
        assert (result.value_full, result.value_empty) == (v[-1], v[0])
        np.testing.assert_allclose(result.phi, phi, rtol=1e-13, atol=1e-14)
        np.testing.assert_array_equal(result.stderr, 0.0)
        np.testing.assert_allclose(result.share_prices, prices, rtol=1e-13)
        np.testing.assert_allclose(result.volatilities, sigma, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(result.strikes, strike, rtol=1e-13)
        np.testing.assert_allclose(result.option_values, options, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(result.target_weights, targets, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(result.weights, weights, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(result.bubbles, bubbles, rtol=1e-8, atol=1e-12)
        assert result.bubble_penalty == pytest.approx(penalty, rel=1e-8, abs=1e-12)
    np.testing.assert_array_equal(state.weights, result.weights)


def test_meta_investor_step_nan_pnl_raises_naming_step_and_keeps_state():
    state = MetaInvestorState(MetaInvestorParams.spec_literal())
    rng = np.random.default_rng(0)
    for _ in range(4):
        state.step(_random_values(3, rng), 10.0)
    before = state.state_dict()
    v = _random_values(3, rng)
    v[6] = math.nan
    with pytest.raises(ValueError, match=r"meta-investor step 5: coalition value v\[6\]"):
        state.step(v, 10.0)
    assert state.state_dict() == before


def test_meta_investor_step_zero_time_to_expiry_values_options_at_intrinsic():
    state = MetaInvestorState(MetaInvestorParams(alpha=0.3))
    rng = np.random.default_rng(1)
    for _ in range(5):
        result = state.step(_random_values(3, rng), 0.0)
        intrinsic = np.maximum(result.share_prices - result.strikes, 0.0)
        np.testing.assert_array_equal(result.option_values, intrinsic)
    with pytest.raises(ValueError, match="step 6: time_to_expiry must be a finite number >= 0"):
        state.step(_random_values(3, rng), -1.0)
    with pytest.raises(ValueError, match="time_to_expiry"):
        state.step(_random_values(3, rng), math.nan)


def test_meta_investor_step_equal_shapley_values_give_zero_options_and_equal_weights():
    # Additive game with equal contributions: φ_i all equal, σ_φ = 0, prices never move,
    # so σ = 0, strike = price and every option is worth 0 -> equal target weights.
    state = MetaInvestorState(MetaInvestorParams.spec_literal(allocator="option"))
    v = np.array([bin(s).count("1") * 0.7 for s in range(8)])
    for _ in range(6):
        result = state.step(v, 20.0)
        np.testing.assert_allclose(result.phi, 0.7, rtol=1e-14)
        np.testing.assert_array_equal(result.share_prices, 1.0)
        np.testing.assert_array_equal(result.volatilities, 0.0)
        np.testing.assert_array_equal(result.option_values, 0.0)
        np.testing.assert_allclose(result.target_weights, 1.0 / 3.0, rtol=1e-15)
        np.testing.assert_allclose(result.weights, 1.0 / 3.0, rtol=1e-15)
        np.testing.assert_allclose(result.bubbles, 1.0, rtol=1e-14)
        assert result.bubble_penalty == 0.0


def test_meta_investor_step_single_agent_keeps_full_weight():
    state = MetaInvestorState(MetaInvestorParams.spec_literal(n_agents=1))
    for pnl in (1.5, -2.0, 0.25):
        result = state.step(np.array([0.0, pnl]), 5.0)
        np.testing.assert_array_equal(result.phi, [pnl])
        np.testing.assert_array_equal(result.share_prices, [1.0])
        np.testing.assert_array_equal(result.weights, [1.0])
        np.testing.assert_array_equal(result.bubbles, [1.0])


@pytest.mark.parametrize(
    ("allocator", "raw", "expected"),
    [
        ("equal", (), [0.25] * 4),
        ("softmax", (0.0, 0.0, math.log(2.0), math.log(4.0)), [1 / 8, 1 / 8, 2 / 8, 4 / 8]),
    ],
)
def test_meta_investor_step_fixed_allocators_keep_fixed_weights(allocator, raw, expected):
    state = MetaInvestorState(
        MetaInvestorParams(n_agents=4, allocator=allocator, softmax_raw_weights=raw)
    )
    np.testing.assert_allclose(state.weights, expected, rtol=1e-14)
    rng = np.random.default_rng(2)
    for _ in range(5):
        result = state.step(_random_values(4, rng), 10.0)
        np.testing.assert_allclose(result.target_weights, expected, rtol=1e-14)
        np.testing.assert_allclose(result.weights, expected, rtol=1e-14)
        assert (result.option_values >= 0.0).all()


def test_meta_investor_step_many_agents_uses_monte_carlo():
    n = 14
    own = np.linspace(-1.0, 2.0, n)

    def value(masks):
        return masks @ own + 0.3 * masks[:, 0] * masks[:, 1]

    params = MetaInvestorParams(n_agents=n, monte_carlo_permutations=40)
    with pytest.raises(ValueError, match=r"pass rng=numpy\.random\.Generator"):
        MetaInvestorState(params)
    state = MetaInvestorState(params, np.random.default_rng(8))
    result = state.step(value, 10.0)
    assert result.method == "monte_carlo"
    assert result.coalition_count == 2 + 40 * (n - 1)
    assert result.value_full == pytest.approx(own.sum() + 0.3)
    assert result.phi.sum() == pytest.approx(result.value_full, rel=1e-12)
    np.testing.assert_allclose(result.phi[2:], own[2:], atol=1e-12)
    assert (result.stderr[:2] > 0.0).all()
    with pytest.raises(ValueError, match=r"meta-investor step 2: .*finite"):
        state.step(lambda masks: np.full(masks.shape[0], math.nan), 10.0)


@pytest.mark.parametrize("n", [3, 13])
def test_meta_investor_state_dict_json_round_trip_continues_identically(n):
    params = MetaInvestorParams(
        n_agents=n, strike_window=4, volatility_window=5, monte_carlo_permutations=20
    )
    rng = np.random.default_rng(31)
    games = [_random_values(n, rng) for _ in range(12)]
    original = MetaInvestorState(params, np.random.default_rng(4))
    for v in games[:7]:
        original.step(v, 9.0)
    saved = json.loads(json.dumps(original.state_dict()))
    resumed = MetaInvestorState.from_state_dict(saved)
    assert resumed.step_count == 7
    for v in games[7:]:
        a = original.step(v, 3.0)
        b = resumed.step(v, 3.0)
        assert a.step == b.step
        np.testing.assert_array_equal(a.table, b.table)
        assert a.bubble_penalty == b.bubble_penalty


def test_meta_investor_steps_over_backtest_credit_agents_with_strategy_pnl():
    """Full loop: ensemble trades with the meta-investor's weights; Σ φ = strategy P&L."""
    rng = np.random.default_rng(17)
    steps, costs = 80, {"commission_bps": 1.0, "slippage_bps": 2.0, "commission_per_unit": 0.0}
    prices = 50.0 + np.cumsum(rng.normal(0.0, 0.5, steps + 1))
    state = MetaInvestorState(MetaInvestorParams(alpha=0.1))
    position, cash, credited = 0.0, 0.0, 0.0
    for t in range(steps):
        P = rng.dirichlet(np.full(3, 0.6), size=3)
        weights = state.weights
        rule = {"max_position": 5.0, "confidence_threshold": -0.3}
        v = trading_coalition_values(
            P,
            weights,
            **rule,
            previous_position=position,
            price=prices[t],
            price_change=prices[t + 1] - prices[t],
            **costs,
        )
        target = ensemble_target(P, weights, **rule, previous_position=position)
        cash -= (target - position) * prices[t]
        cash -= abs(target - position) * unit_trading_cost(prices[t], **costs)
        position = target
        credited += state.step(v, float(steps - t)).phi.sum()
    assert credited == pytest.approx(cash + position * prices[-1], rel=1e-10, abs=1e-10)


def test_meta_investor_step_wrong_value_count_raises():
    state = MetaInvestorState(MetaInvestorParams.spec_literal())
    with pytest.raises(ValueError, match="expected 8 coalition values"):
        state.step(np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="need the array of all 8 coalition values"):
        state.step(lambda masks: masks.sum(axis=1), 1.0)


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_agents", 0),
        ("alpha", -0.1),
        ("price_floor", 0.0),
        ("price_floor", 1.0),
        ("initial_share_price", -1.0),
        ("volatility_window", 1),
        ("periods_per_time_unit", 0.0),
        ("strike_window", 0),
        ("risk_free_rate", math.nan),
        ("crr_steps", 0),
        ("smoothing", 1.5),
        ("bubble_threshold", 0.0),
        ("bubble_penalty_weight", -1.0),
        ("bubble_cap", 0.5),
        ("exact_max_agents", 17),
        ("monte_carlo_permutations", 7),
        ("softmax_raw_weights", (1.0, 2.0)),
        ("share_price_form", "log"),
        ("allocator", "learned"),
    ],
)
def test_meta_investor_params_out_of_range_raises_naming_field(field, value):
    with pytest.raises(ValueError, match=rf"MetaInvestorParams\.{field} must be"):
        MetaInvestorParams(**{field: value})


def test_meta_investor_params_defaults_are_valid_and_decode_from_plain_data():
    params = MetaInvestorParams()
    params.validate()
    assert msgspec.convert(msgspec.to_builtins(params), MetaInvestorParams) == params
    with pytest.raises(msgspec.ValidationError, match="unknown field `smothing`"):
        msgspec.convert({"smothing": 0.2}, MetaInvestorParams)
    with pytest.raises(msgspec.ValidationError, match="smoothing must be in"):
        msgspec.convert({"smoothing": 2.0}, MetaInvestorParams)


def _normalised_reference(params, games, expiries):
    """The pipeline in plain numpy with every price divided by the current largest one
    after each step (a different normalisation from the engine's power-of-two rebase),
    and the unscaled log prices tracked on the side."""
    n = params.n_agents
    history = [np.full(n, params.initial_share_price)]
    log_scale = 0.0
    weights = np.full(n, 1.0 / n)
    rows = []
    for v, T in zip(games, expiries, strict=True):
        phi = shapley_exact(v)
        prices = update_share_prices(
            history[-1],
            phi,
            form=params.share_price_form,
            alpha=params.alpha,
            floor=params.price_floor,
            rtol=params.price_rtol,
        )
        top = prices.max()
        log_scale += math.log(top)
        history = [h / top for h in history] + [prices / top]
        path = np.array(history[-(params.volatility_window + 1) :])
        sigma = np.zeros(n)
        if len(path) > 2:
            sigma = np.log(path[1:] / path[:-1]).std(axis=0, ddof=1)
        strike = np.array(history[-params.strike_window :]).mean(axis=0)
        options = black_scholes_call_array(history[-1], strike, T, sigma, 0.0)
        targets = target_weights(options)
        weights = smooth_weights(weights, targets, params.smoothing)
        rows.append((np.log(history[-1]) + log_scale, sigma, targets, weights))
    return rows


def test_meta_investor_step_long_compound_run_rebases_exactly():
    # Compound form: the factors 1 + φ_i/φ̄ average 2, so every price roughly doubles
    # a step and would overflow after about 1,000 steps without the rebase.
    params = MetaInvestorParams.spec_literal(
        share_price_form="compound", alpha=1.0, volatility_window=10
    )
    rng = np.random.default_rng(3)
    games = []
    for _ in range(3_000):
        phi = rng.uniform(0.5, 1.5, 3)  # an additive game with these Shapley values
        games.append(np.array([phi[[i for i in range(3) if m >> i & 1]].sum() for m in range(8)]))
    expiries = [float(3_000 - t) for t in range(3_000)]
    state = MetaInvestorState(params)
    reference = _normalised_reference(params, games, expiries)
    for t, (v, T) in enumerate(zip(games, expiries, strict=True)):
        result = state.step(v, T)
        log_prices, sigma, targets, weights = reference[t]
        unscaled = np.log(result.share_prices) + state.price_scale_exponent * math.log(2.0)
        np.testing.assert_allclose(unscaled, log_prices, rtol=1e-9)
        np.testing.assert_allclose(result.volatilities, sigma, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(result.target_weights, targets, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(result.weights, weights, rtol=1e-6, atol=1e-12)
    assert state.price_scale_exponent > 2_000  # rebased several times
    assert np.isfinite(state.share_prices).all() and state.share_prices.max() <= 2.0**256
    # The exponent survives a save and restore.
    again = MetaInvestorState.from_state_dict(json.loads(json.dumps(state.state_dict())))
    assert again.price_scale_exponent == state.price_scale_exponent


def test_meta_investor_step_persistent_loser_is_held_at_relative_floor():
    params = MetaInvestorParams.spec_literal(n_agents=2, alpha=0.9)
    state = MetaInvestorState(params)
    v = np.array([0.0, 1.0, -1.0, 0.0])  # agent 0 earns, agent 1 loses, every step
    for t in range(3_000):
        result = state.step(v, float(3_000 - t))
    prices = result.share_prices
    assert np.isfinite(prices).all() and (prices > 0).all()
    assert prices[1] == math.ldexp(prices[0], -600)
    assert result.weights[0] > 0.999


def test_meta_investor_step_crr_probability_outside_unit_interval_is_recorded_and_valued_by_bs():
    # A tiny alpha moves the prices by ~1e-7 a step: σ√Δt ~ 1e-7 < rΔt = 0.125, so the
    # risk-neutral p exceeds 1 and the tree is undefined; the step values those agents
    # with Black-Scholes and lists them in crr_fallback_agents.
    params = MetaInvestorParams.spec_literal(
        pricing="crr", crr_steps=4, risk_free_rate=0.05, alpha=1e-7
    )
    state = MetaInvestorState(params)
    rng = np.random.default_rng(9)
    T = 10.0
    first = state.step(_random_values(3, rng), T)
    # One price change: σ = 0, the defined σ -> 0 limit, not a fallback.
    np.testing.assert_array_equal(first.volatilities, 0.0)
    assert first.crr_fallback_agents == ()
    for _ in range(5):
        result = state.step(_random_values(3, rng), T)
        assert result.crr_fallback_agents == (0, 1, 2)
        assert result.to_dict()["crr_fallback_agents"] == [0, 1, 2]
        assert (result.volatilities > 0.0).all()
        expected = black_scholes_call_array(
            result.share_prices, result.strikes, T, result.volatilities, params.risk_free_rate
        )
        np.testing.assert_array_equal(result.option_values, expected)
        for s, k, sigma in zip(
            result.share_prices, result.strikes, result.volatilities, strict=True
        ):
            with pytest.raises(ValueError, match="steps=4 is too few"):
                crr_call(s, k, T, sigma, params.risk_free_rate, steps=params.crr_steps)
    # A defined tree (ordinary volatility) records nothing; Black-Scholes pricing never does.
    for overrides in ({"pricing": "crr", "crr_steps": 64, "risk_free_rate": 0.001}, {}):
        state = MetaInvestorState(MetaInvestorParams(alpha=0.2, **overrides))
        for _ in range(10):
            assert state.step(_random_values(3, rng), T).crr_fallback_agents == ()

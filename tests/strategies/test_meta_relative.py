"""The default meta-investor: relative credit with forgetting, strikes at S(0), a weight
floor and an in-the-money exposure, against a plain reference written from the docstrings
of strategies.meta.share_price and strategies.meta.params."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from strategies.meta.options import black_scholes_call
from strategies.meta.step import MetaInvestorParams, MetaInvestorState


def _additive(phi: np.ndarray) -> np.ndarray:
    """v(S) = Σ_{i in S} φ_i: a game whose Shapley values are exactly φ."""
    n = len(phi)
    return np.array([sum(phi[i] for i in range(n) if s >> i & 1) for s in range(1 << n)])


class Reference:
    """The relative form, the strike at S(0), options, the floor, smoothing and exposure,
    one step at a time in plain Python."""

    def __init__(self, params: MetaInvestorParams) -> None:
        self.p = params
        n = params.n_agents
        self.log_price = [0.0] * n
        self.weights = [1.0 / n] * n
        self.exposure = 1.0
        self.scale_sum = 0.0
        self.scale_weight = 0.0
        self.changes: list[list[float]] = []

    def step(self, phi: np.ndarray, expiry: float) -> dict[str, list[float]]:
        p = self.p
        n = p.n_agents
        decay = 0.5 ** (1.0 / p.credit_half_life)
        scale_decay = 0.5 ** (1.0 / (p.scale_half_life or p.credit_half_life))
        if p.credit == "per_weight":
            credit = [phi[i] / (self.weights[i] * self.exposure) for i in range(n)]
        else:
            credit = list(phi)
        bench = 0.0 if p.benchmark == "cash" else sum(credit) / n
        spread = sum((x - bench) ** 2 for x in credit) / n
        z = [0.0] * n
        if spread > 0 and math.sqrt(spread) > p.price_rtol * max(abs(x) for x in credit):
            self.scale_sum = scale_decay * self.scale_sum + (1 - scale_decay) * spread
            self.scale_weight = scale_decay * self.scale_weight + (1 - scale_decay)
            unit = math.sqrt(self.scale_sum / self.scale_weight)
            z = [min(max((x - bench) / unit, -p.credit_clip), p.credit_clip) for x in credit]
        new = [
            decay * ell + p.sensitivity * (1 - decay) * zi
            for ell, zi in zip(self.log_price, z, strict=True)
        ]
        self.changes.append([b - a for a, b in zip(self.log_price, new, strict=True)])
        self.log_price = new
        prices = [p.initial_share_price * math.exp(ell) for ell in new]
        window = self.changes[-p.volatility_window :]
        vols = [
            float(np.std([c[i] for c in window], ddof=1)) * math.sqrt(p.periods_per_time_unit)
            if len(window) >= 2
            else 0.0
            for i in range(n)
        ]
        strike = p.initial_share_price
        options = [
            black_scholes_call(prices[i], strike, expiry, vols[i], p.risk_free_rate)
            for i in range(n)
        ]
        total = sum(options)
        floor = p.weight_floor / n
        # option values that sum to a billionth of the prices or less are rounding noise
        # (strategies.meta.allocation.option_target_weights_nb): equal weights
        negligible = 1e-9 * sum(prices)
        targets = (
            [floor + (1 - n * floor) * c / total for c in options]
            if total > negligible
            else [1 / n] * n
        )
        smoothed = [
            (1 - p.smoothing) * w + p.smoothing * t
            for w, t in zip(self.weights, targets, strict=True)
        ]
        self.weights = [w / sum(smoothed) for w in smoothed]
        if p.exposure == "in_the_money":
            probability = 0.0
            for i in range(n):
                spread_t = vols[i] * math.sqrt(expiry)
                if spread_t > 0:
                    d2 = (math.log(prices[i] / strike) + p.risk_free_rate * expiry) / spread_t
                    probability += self.weights[i] * norm.cdf(d2 - 0.5 * spread_t)
                else:
                    probability += self.weights[i] * (
                        1.0 if prices[i] > strike else 0.5 if prices[i] == strike else 0.0
                    )
            self.exposure = min(max(probability, p.min_exposure), 1.0)
        return {"prices": prices, "options": options, "weights": self.weights}


@settings(max_examples=25, deadline=None)
# deep out of the money (prices 0.04 and 0.25 against a strike of 1): options of 2e-10 in all
@example(seed=10, credit="per_weight", benchmark="cash", n=2, half_life=29.0)
@given(
    seed=st.integers(0, 10_000),
    credit=st.sampled_from(["per_weight", "shapley"]),
    benchmark=st.sampled_from(["cash", "panel"]),
    n=st.integers(2, 5),
    half_life=st.floats(2.0, 60.0),
)
def test_relative_form_equals_the_reference(seed, credit, benchmark, n, half_life) -> None:
    params = MetaInvestorParams(
        n_agents=n,
        credit=credit,
        benchmark=benchmark,
        credit_half_life=half_life,
        volatility_window=6,
    )
    state = MetaInvestorState(params)
    reference = Reference(params)
    rng = np.random.default_rng(seed)
    edge = rng.normal(0, 0.3, n)
    for step in range(120):
        phi = edge + rng.standard_normal(n) * (3.0 if step % 40 < 10 else 1.0)
        if step % 17 == 0:
            phi[:] = 0.0  # a step that credits nobody: only forgetting
        result = state.step(_additive(phi), float(params.expiry_bars))
        expected = reference.step(phi, float(params.expiry_bars))
        np.testing.assert_allclose(result.share_prices, expected["prices"], rtol=1e-9)
        np.testing.assert_allclose(result.option_values, expected["options"], rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(result.weights, expected["weights"], rtol=1e-9)
        assert state.exposure == pytest.approx(reference.exposure, rel=1e-9)
        assert result.weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.isfinite(result.table).all()


def test_prices_stay_in_their_band_and_forget_with_the_half_life() -> None:
    params = MetaInvestorParams(n_agents=2, credit="shapley", benchmark="panel")
    state = MetaInvestorState(params)
    bound = math.exp(params.sensitivity * params.credit_clip)
    for _ in range(2_000):  # agent 0 beats agent 1 by as much as can be credited
        result = state.step(_additive(np.array([1e9, -1e9])), 96.0)
        assert 1 / bound <= result.share_prices.min() <= result.share_prices.max() <= bound
    log_price = math.log(state.share_prices[0])
    steps = int(params.credit_half_life)
    for _ in range(steps):  # nobody is credited: the log price halves every half-life
        state.step(_additive(np.zeros(2)), 96.0)
    assert math.log(state.share_prices[0]) == pytest.approx(log_price / 2, rel=1e-9)


def test_weight_moves_back_when_the_evidence_turns() -> None:
    state = MetaInvestorState(MetaInvestorParams(n_agents=3))
    rng = np.random.default_rng(4)
    first, later = [], []
    for step in range(800):
        good = 0 if step < 400 else 1  # agent 0 earns, then agent 1; agent 2 never
        phi = rng.normal(0, 1, 3) * state.weights * state.exposure
        phi[good] += 0.8 * state.weights[good] * state.exposure
        result = state.step(_additive(phi), 96.0)
        (first if step < 400 else later).append(result.weights.copy())
    assert np.mean(first[200:], axis=0)[0] > 0.5
    assert np.mean(later[200:], axis=0)[1] > 0.5  # the weight came back to agent 1
    assert min(w.min() for w in first + later) >= MetaInvestorParams().weight_floor / 3 - 1e-12


def test_spec_literal_params_are_the_spec_forms() -> None:
    literal = MetaInvestorParams.spec_literal(alpha=0.2)
    assert (literal.share_price_form, literal.strike, literal.exposure) == (
        "simple",
        "moving_average",
        "full",
    )
    assert literal.expiry_bars == 0 and literal.weight_floor == 0.0 and literal.alpha == 0.2
    with pytest.raises(ValueError, match="weight_floor must be in"):
        MetaInvestorParams(weight_floor=1.0)
    with pytest.raises(ValueError, match="min_exposure must be in"):
        MetaInvestorParams(min_exposure=0.0)

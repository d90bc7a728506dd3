"""The meta-investor's configuration (``[strategy.meta]`` of a scenario).

The defaults are the allocation dynamics that stay informative at bar frequency
(derived in :mod:`strategies.meta.share_price`): relative credit with forgetting, strikes
at the initial price, a rolling option horizon, a weight floor and an exposure that
follows how far the agents' calls are in the money. :meth:`MetaInvestorParams.spec_literal`
gives SPEC 5's literal forms (simple share prices compounding every step, strikes at the
moving average, the backtest's remaining bars as time to expiry, full exposure), kept as
an option and as the reference the regime scenario compares against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from engine.core.errors import ConfigError

__all__ = ["MAX_EXACT_AGENTS", "SPEC_LITERAL", "MetaInvestorParams", "check_panel"]

#: the most agents exact Shapley values are computed for (2^16 coalitions)
MAX_EXACT_AGENTS = 16

#: the fields that turn the defaults into SPEC 5's literal meta-investor
SPEC_LITERAL: dict[str, Any] = {
    "share_price_form": "simple",
    "strike": "moving_average",
    "expiry_bars": 0,
    "weight_floor": 0.0,
    "exposure": "full",
}


class MetaInvestorParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the meta-investor; defaults in brackets.

    Share prices (SPEC 5.3; :mod:`strategies.meta.share_price`):

    * ``n_agents`` [3]: number of agents, ≥ 1.
    * ``share_price_form`` ["relative"]: "relative" (relative credit with forgetting),
      or SPEC 5.3's literal "simple" or "compound" form.
    * ``credit_half_life`` [32.0]: h, the bars over which the relative form forgets half
      of an agent's credit, > 0.
    * ``sensitivity`` [8.0]: κ of the relative form, the log share price an agent settles
      at when its credit beats the benchmark by one typical unit every bar, in (0, 10].
    * ``credit_clip`` [4.0]: c, the largest |z| one step credits (relative form), in
      (0, 10]; prices stay within S(0) e^(±κ c).
    * ``scale_half_life`` [0.0]: half-life, in credited steps, of the typical unit s of
      the relative form; 0 = ``credit_half_life``.
    * ``credit`` ["per_weight"]: what the relative form credits, "per_weight" (φ_i over
      the agent's stake w_i × exposure: its P&L per unit of the capital it was given,
      so an agent with a small weight still earns a track record) or "shapley" (φ_i).
    * ``benchmark`` ["cash"]: what the relative form compares a credit with, "cash"
      (zero: a share price rises when the agent makes money) or "panel" (the panel's
      mean credit: it rises when the agent beats the others).
    * ``alpha`` [0.05]: step size α of the simple form, ≥ 0.
    * ``price_floor`` [1e-6]: smallest factor S(t+1)/S(t) of the literal forms, in (0, 1).
    * ``price_rtol`` [1e-9]: a credit spread (relative, simple) or |φ̄| (compound) at or
      below ``price_rtol`` · max|credit| credits nobody; in [0, 1).
    * ``initial_share_price`` [1.0]: S_i(0), > 0.

    Options (SPEC 5.4, 5.5):

    * ``volatility_window`` [20]: log price changes in the volatility, ≥ 2.
    * ``periods_per_time_unit`` [1.0]: steps per unit of the option's time,
      > 0 (1 when the time to expiry is counted in steps).
    * ``strike`` ["initial"]: "initial" (K = S(0): the call is in the money by how far
      the agent beats its benchmark) or "moving_average" (SPEC 5.5: the mean of the last
      ``strike_window`` prices).
    * ``strike_window`` [20]: prices in the strike's moving average, ≥ 1.
    * ``risk_free_rate`` [0.0]: r per unit of the option's time, finite.
    * ``pricing`` ["black_scholes"]: "black_scholes" or "crr".
    * ``crr_steps`` [200]: tree steps when pricing is "crr", in [1, 100000].
    * ``expiry_bars`` [96]: the options' time to expiry T - t, in bars. N > 0: a rolling,
      constant-maturity horizon of N bars, the same in backtests and paper trading (so
      that both make the same decisions on the same bars); 0: SPEC 5.5's bars left in the
      backtest, which needs a known end (a backtest only).

    Allocation (SPEC 5.6, 5.7):

    * ``allocator`` [unset]: "option", "equal" or "softmax"; unset is "option", or for a
      learned ensemble whose checkpoint learned an allocator, "softmax" over its raw
      weights (:attr:`allocation`).
    * ``softmax_raw_weights`` [()]: raw weights of "softmax" mode, empty (all
      zero) or one finite number per agent.
    * ``weight_floor`` [0.06]: the share of an equal weight every agent keeps in "option"
      mode, w* = ``weight_floor``/n + (1 - ``weight_floor``) C / ΣC, in [0, 1); a floor
      keeps every agent trading a little, so its weight can come back.
    * ``smoothing`` [0.1]: η of w ← (1 - η) w + η w*, in [0, 1].
    * ``exposure`` ["in_the_money"]: the share of ``max_position`` a decision may take:
      "full" (SPEC 3), or "in_the_money": Σ_i w_i N(d2_i), the weighted risk-neutral
      probability that the agents' calls end in the money (with the default strike and
      benchmark: that the agents keep making money), at least ``min_exposure``.
    * ``min_exposure`` [0.2]: the smallest exposure of "in_the_money", in (0, 1]; above 0
      so that the agents keep trading, and earning credit, when none is in the money.
    * ``bubble_threshold`` [1.2]: θ of the bubble penalty, > 0.
    * ``bubble_penalty_weight`` [1.0]: β of the bubble penalty, ≥ 0.
    * ``bubble_cap`` [100.0]: largest bubble coefficient, ≥ 1.

    Credit (SPEC 5.2):

    * ``exact_max_agents`` [12]: exact Shapley up to this n, in [1, 16].
    * ``monte_carlo_permutations`` [0]: permutations per Monte Carlo step;
      0 means the default 2 ⌈max(50, 5 n ln n)⌉, otherwise even and ≥ 4.
    """

    n_agents: int = 3
    share_price_form: Literal["relative", "simple", "compound"] = "relative"
    credit_half_life: float = 32.0
    sensitivity: float = 8.0
    credit_clip: float = 4.0
    scale_half_life: float = 0.0
    credit: Literal["per_weight", "shapley"] = "per_weight"
    benchmark: Literal["cash", "panel"] = "cash"
    alpha: float = 0.05
    price_floor: float = 1e-6
    price_rtol: float = 1e-9
    initial_share_price: float = 1.0
    volatility_window: int = 20
    periods_per_time_unit: float = 1.0
    strike: Literal["initial", "moving_average"] = "initial"
    strike_window: int = 20
    risk_free_rate: float = 0.0
    pricing: Literal["black_scholes", "crr"] = "black_scholes"
    crr_steps: int = 200
    expiry_bars: int = 96
    allocator: Literal["option", "equal", "softmax"] | None = None
    softmax_raw_weights: tuple[float, ...] = ()
    weight_floor: float = 0.06
    smoothing: float = 0.1
    exposure: Literal["in_the_money", "full"] = "in_the_money"
    min_exposure: float = 0.2
    bubble_threshold: float = 1.2
    bubble_penalty_weight: float = 1.0
    bubble_cap: float = 100.0
    exact_max_agents: int = 12
    monte_carlo_permutations: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def spec_literal(cls, **fields: Any) -> MetaInvestorParams:
        """SPEC 5's literal meta-investor (``SPEC_LITERAL``), with ``fields`` on top."""
        return cls(**{**SPEC_LITERAL, **fields})

    @property
    def allocation(self) -> str:
        """The allocator in use ("option" when ``allocator`` is unset)."""
        return self.allocator or "option"

    def with_fields(self, **fields: Any) -> MetaInvestorParams:
        """A copy with ``fields`` replaced (and checked)."""
        return msgspec.structs.replace(self, **fields)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field outside its valid range."""

        def fail(field: str, valid: str) -> None:
            raise ValueError(
                f"MetaInvestorParams.{field} must be {valid}, got {getattr(self, field)!r}"
            )

        def integer(field: str, low: int, high: int | None = None) -> None:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                fail(field, "an integer")
            if value < low or (high is not None and value > high):
                fail(field, f"in [{low}, {high}]" if high is not None else f">= {low}")

        def real(field: str, check: Callable[[float], bool], valid: str) -> None:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                fail(field, "a number")
            if not (math.isfinite(value) and check(value)):
                fail(field, valid)

        def choice(field: str, options: tuple[str, ...]) -> None:
            if getattr(self, field) not in options:
                fail(field, f"one of {options}")

        integer("n_agents", 1)
        choice("share_price_form", ("relative", "simple", "compound"))
        real("credit_half_life", lambda x: x > 0.0, "a finite number > 0")
        real("sensitivity", lambda x: 0.0 < x <= 10.0, "in (0, 10]")
        real("credit_clip", lambda x: 0.0 < x <= 10.0, "in (0, 10]")
        real("scale_half_life", lambda x: x >= 0.0, "a finite number >= 0 (0: credit_half_life)")
        choice("credit", ("per_weight", "shapley"))
        choice("benchmark", ("cash", "panel"))
        real("alpha", lambda x: x >= 0.0, "a finite number >= 0")
        real("price_floor", lambda x: 0.0 < x < 1.0, "in (0, 1)")
        real("price_rtol", lambda x: 0.0 <= x < 1.0, "in [0, 1)")
        real("initial_share_price", lambda x: x > 0.0, "a finite number > 0")
        integer("volatility_window", 2)
        real("periods_per_time_unit", lambda x: x > 0.0, "a finite number > 0")
        choice("strike", ("initial", "moving_average"))
        integer("strike_window", 1)
        real("risk_free_rate", lambda x: True, "a finite number")
        choice("pricing", ("black_scholes", "crr"))
        integer("crr_steps", 1, 100_000)
        integer("expiry_bars", 0)
        if self.allocator is not None:
            choice("allocator", ("option", "equal", "softmax"))
        raw = self.softmax_raw_weights
        if not isinstance(raw, tuple) or (raw and len(raw) != self.n_agents):
            fail("softmax_raw_weights", f"empty or a tuple of {self.n_agents} numbers")
        if not all(isinstance(x, int | float) and math.isfinite(x) for x in raw):
            fail("softmax_raw_weights", "finite numbers")
        real("weight_floor", lambda x: 0.0 <= x < 1.0, "in [0, 1)")
        real("smoothing", lambda x: 0.0 <= x <= 1.0, "in [0, 1]")
        choice("exposure", ("in_the_money", "full"))
        real("min_exposure", lambda x: 0.0 < x <= 1.0, "in (0, 1]")
        real("bubble_threshold", lambda x: x > 0.0, "a finite number > 0")
        real("bubble_penalty_weight", lambda x: x >= 0.0, "a finite number >= 0")
        real("bubble_cap", lambda x: x >= 1.0, "a finite number >= 1")
        integer("exact_max_agents", 1, MAX_EXACT_AGENTS)
        integer("monte_carlo_permutations", 0)
        count = self.monte_carlo_permutations
        if count != 0 and (count < 4 or count % 2):
            fail("monte_carlo_permutations", "0 (default) or an even integer >= 4")


def check_panel(params: MetaInvestorParams, agents: int, what: str) -> None:
    """A strategy's ``[strategy.meta]`` is for its ``agents`` agents (``what`` says which)."""
    if params.n_agents != agents:
        raise ConfigError(
            f"strategy.meta.n_agents is {params.n_agents}, but the panel has {agents} agents "
            f"({what}); leave n_agents out, the scenario sets it"
        )

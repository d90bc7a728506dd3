"""The meta-investor of Equity-MARL (SPEC section 5): pure functions, no bus, no SQL.

Agents are treated as stocks: each step's P&L is split by Shapley value
(:mod:`.shapley`, with the trading characteristic function of :mod:`.trading`),
turned into share prices and volatilities (:mod:`.share_price`), valued as
call options (:mod:`.options`) and allocated ensemble weight
(:mod:`.allocation`); :mod:`.step` runs one whole step and can be saved and
resumed.
"""

from strategies.meta.allocation import (
    ALLOCATOR_MODES,
    bubble_coefficients,
    bubble_penalty,
    smooth_weights,
    softmax_weights,
    target_weights,
)
from strategies.meta.options import (
    BlackScholesGreeks,
    binomial_call,
    black_scholes_call,
    black_scholes_call_array,
    black_scholes_greeks,
    crr_call,
    crr_up_probability,
)
from strategies.meta.shapley import (
    MAX_EXACT_AGENTS,
    coalition_masks,
    default_permutations,
    shapley_exact,
    shapley_monte_carlo,
    shapley_monte_carlo_details,
    shapley_size_weights,
)
from strategies.meta.share_price import (
    RollingVolatility,
    compound_share_price_factors,
    rolling_log_volatility,
    simple_share_price_factors,
    update_share_prices,
)
from strategies.meta.step import MetaInvestorParams, MetaInvestorState, MetaStepResult
from strategies.meta.trading import (
    ensemble_confidence,
    ensemble_probabilities,
    ensemble_target,
    trading_coalition_values,
    trading_value_function,
    unit_trading_cost,
)

__all__ = [
    "ALLOCATOR_MODES",
    "MAX_EXACT_AGENTS",
    "BlackScholesGreeks",
    "MetaInvestorParams",
    "MetaInvestorState",
    "MetaStepResult",
    "RollingVolatility",
    "binomial_call",
    "black_scholes_call",
    "black_scholes_call_array",
    "black_scholes_greeks",
    "bubble_coefficients",
    "bubble_penalty",
    "coalition_masks",
    "compound_share_price_factors",
    "crr_call",
    "crr_up_probability",
    "default_permutations",
    "ensemble_confidence",
    "ensemble_probabilities",
    "ensemble_target",
    "rolling_log_volatility",
    "shapley_exact",
    "shapley_monte_carlo",
    "shapley_monte_carlo_details",
    "shapley_size_weights",
    "simple_share_price_factors",
    "smooth_weights",
    "softmax_weights",
    "target_weights",
    "trading_coalition_values",
    "trading_value_function",
    "unit_trading_cost",
    "update_share_prices",
]

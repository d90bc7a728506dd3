"""One whole meta-investor step (SPEC sections 5 and 6), pure and resumable.

Per step, after the step's coalition values v(S) are known:

1. Shapley values φ: exact when n ≤ ``exact_max_agents``, else Monte Carlo
   (:mod:`strategies.meta.shapley`).
2. Share prices: the relative form with forgetting (the default), or SPEC 5.3's
   literal simple or compound form (:mod:`strategies.meta.share_price`, whose docstring
   derives the default and says what a share price means), the literal forms kept in
   the float range on long runs by an exact power-of-two rebase and a relative floor
   (:func:`rebase_nb`).
3. Volatility σ_i: sample standard deviation of the last
   ``volatility_window`` log price changes, times √``periods_per_time_unit``.
4. Strike K_i: with ``strike = "initial"`` (the default) the initial price S(0), which
   in the relative form is the price of an agent as good as the panel's average, so a
   call is in the money by how much the agent beats the panel; with
   ``strike = "moving_average"`` (SPEC 5.5) the mean of the last ``strike_window`` share
   prices, the new price included (the initial price counts as the first of them).
5. Option values C_i: Black-Scholes (or CRR with ``crr_steps`` steps) with the
   caller's time to expiry and ``risk_free_rate``.
6. Target weights w* (allocator mode), smoothed weights
   w ← (1 - η) w + η w*, bubbles and the bubble penalty
   (:mod:`strategies.meta.allocation`).

The initial weights are equal in "option" mode and the fixed targets in the
"equal" and "softmax" modes (where smoothing then leaves them unchanged). The
smoothed weights returned by a step are the ensemble weights for the next
decision. Non-finite coalition values raise ``ValueError`` naming the step
(numbered from 1) and the coalition, before any state changes.

CRR pricing: the tree's risk-neutral probability p = (e^{rΔt} - d)/(u - d)
falls outside [0, 1] when σ√Δt < |r|Δt, which a run can reach legitimately
(a nonzero ``risk_free_rate`` and an agent whose share price has barely moved
over the volatility window, so that its σ is tiny but not 0). The step does
not stop there: that agent is valued with Black-Scholes, the tree's limit, and
the step records it: ``MetaStepResult.crr_fallback_agents`` lists the agents
so valued (empty when none, and always with ``pricing="black_scholes"``), and
:class:`~strategies.meta.investor.MetaInvestor` counts them per agent.

The hot path is one numba kernel over a flat state array, so a 3-agent step
costs a few microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from strategies.meta import step_kernels as kern
from strategies.meta.allocation import (
    softmax_weights,
)
from strategies.meta.params import MetaInvestorParams
from strategies.meta.shapley import (
    default_permutations,
    shapley_monte_carlo_details,
    shapley_size_weights,
)

__all__ = [  # MetaInvestorParams re-exported
    "MetaInvestorBatch",
    "MetaInvestorParams",
    "MetaInvestorState",
    "MetaStepResult",
]

_STATE_FORMAT = "emarl.meta_investor/3"
_STATE_FORMATS = ("emarl.meta_investor/2", _STATE_FORMAT)  # 2: no relative-credit scale


@dataclass(slots=True, eq=False, repr=False)
class MetaStepResult:
    """Outcome of one step; arrays are (n,) rows of one table owned by this result.

    ``phi`` Shapley values, ``stderr`` their standard errors (0 when exact),
    ``value_full`` v(N), ``value_empty`` v(∅), ``coalition_count`` the number of
    coalition values used (2^n exact; 2 + M (n - 1) evaluations Monte Carlo),
    ``method`` "exact" or "monte_carlo", then ``share_prices``,
    ``volatilities``, ``strikes``, ``option_values``, ``target_weights`` (w*),
    ``weights`` (smoothed, for the next decision), ``bubbles``,
    ``bubble_penalty`` and ``crr_fallback_agents`` (indices of the agents
    valued with Black-Scholes because the CRR probability fell outside [0, 1];
    see the module docstring).
    """

    step: int
    method: str
    coalition_count: int
    value_full: float
    value_empty: float
    bubble_penalty: float
    table: np.ndarray
    crr_fallback_agents: tuple[int, ...] = ()

    phi = property(lambda self: self.table[kern.PHI])
    stderr = property(lambda self: self.table[kern.STDERR])
    share_prices = property(lambda self: self.table[kern.PRICES])
    volatilities = property(lambda self: self.table[kern.VOLS])
    strikes = property(lambda self: self.table[kern.STRIKES])
    option_values = property(lambda self: self.table[kern.OPTIONS])
    target_weights = property(lambda self: self.table[kern.TARGETS])
    weights = property(lambda self: self.table[kern.WEIGHTS])
    bubbles = property(lambda self: self.table[kern.BUBBLES])

    def lists(self) -> list[list[float]]:
        """The rows as lists: phi, stderr, share_prices, volatilities, strikes,
        option_values, target_weights, weights, bubbles (one conversion for all)."""
        rows: list[list[float]] = self.table.tolist()
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain Python data (lists and numbers), e.g. for a record or a log line."""
        return {
            "step": self.step,
            "method": self.method,
            "coalition_count": self.coalition_count,
            "value_full": self.value_full,
            "value_empty": self.value_empty,
            "bubble_penalty": self.bubble_penalty,
            "phi": self.phi.tolist(),
            "stderr": self.stderr.tolist(),
            "share_prices": self.share_prices.tolist(),
            "volatilities": self.volatilities.tolist(),
            "strikes": self.strikes.tolist(),
            "option_values": self.option_values.tolist(),
            "target_weights": self.target_weights.tolist(),
            "weights": self.weights.tolist(),
            "bubbles": self.bubbles.tolist(),
            "crr_fallback_agents": list(self.crr_fallback_agents),
        }

    def __repr__(self) -> str:
        return f"MetaStepResult({self.to_dict()!r})"


# --------------------------------------------------------------------------- state


class MetaInvestorState:
    """Streaming meta-investor for ``params.n_agents`` agents; see the module docstring.

    ``rng`` (a ``numpy.random.Generator`` built from the scenario seed) is
    required when Monte Carlo is used (n > ``exact_max_agents``).
    """

    __slots__ = (
        "_coalitions",
        "_counters",
        "_crr",
        "_exact",
        "_fparams",
        "_n",
        "_permutations",
        "_scratch",
        "_size_weights",
        "_state",
        "_step",
        "params",
        "rng",
    )

    def __init__(self, params: MetaInvestorParams, rng: np.random.Generator | None = None) -> None:
        if not isinstance(params, MetaInvestorParams):
            raise ValueError(f"params must be MetaInvestorParams, got {type(params).__name__}")
        params.validate()
        n = params.n_agents
        self.params = params
        self._n = n
        self._exact = n <= params.exact_max_agents
        if not self._exact and not isinstance(rng, np.random.Generator):
            raise ValueError(
                f"n_agents={n} > exact_max_agents={params.exact_max_agents} uses Monte Carlo "
                f"Shapley values: pass rng=numpy.random.Generator built from the scenario seed"
            )
        self.rng = rng
        self._coalitions = 1 << n if self._exact else 0
        self._crr = params.pricing == "crr"
        self._size_weights = shapley_size_weights(n) if self._exact else np.zeros(1)
        self._permutations = params.monte_carlo_permutations or default_permutations(n)
        vw, sw = params.volatility_window, params.strike_window

        fparams = np.zeros(kern.N_FLOAT_PARAMS)
        fparams[kern.P_ALPHA] = params.alpha
        fparams[kern.P_FLOOR] = params.price_floor
        fparams[kern.P_RTOL] = params.price_rtol
        fparams[kern.P_FORM] = kern.FORMS[params.share_price_form]
        decay = 2.0 ** (-1.0 / params.credit_half_life)
        fparams[kern.P_DECAY] = decay
        fparams[kern.P_GAIN] = params.sensitivity * (1.0 - decay)
        fparams[kern.P_CLIP] = params.credit_clip
        fparams[kern.P_SCALE_DECAY] = 2.0 ** (
            -1.0 / (params.scale_half_life or params.credit_half_life)
        )
        fparams[kern.P_INITIAL] = params.initial_share_price
        fparams[kern.P_STRIKE_INITIAL] = 1.0 if params.strike == "initial" else 0.0
        fparams[kern.P_PER_WEIGHT] = 1.0 if params.credit == "per_weight" else 0.0
        fparams[kern.P_MIN_WEIGHT] = params.weight_floor / n
        fparams[kern.P_ABSOLUTE] = 1.0 if params.benchmark == "cash" else 0.0
        # the smallest exposure of "in_the_money"; 0: "full" (the exposure stays 1)
        fparams[kern.P_EXPOSURE] = params.min_exposure if params.exposure == "in_the_money" else 0.0
        fparams[kern.P_VOL_SCALE] = math.sqrt(params.periods_per_time_unit)
        fparams[kern.P_RATE] = params.risk_free_rate
        fparams[kern.P_CRR] = 1.0 if params.pricing == "crr" else 0.0
        fparams[kern.P_ETA] = params.smoothing
        fparams[kern.P_THETA] = params.bubble_threshold
        fparams[kern.P_BETA] = params.bubble_penalty_weight
        fparams[kern.P_CAP] = params.bubble_cap
        fparams[kern.P_FIXED_TARGETS] = 0.0 if params.allocation == "option" else 1.0
        self._fparams = fparams

        # scratch = [volatility window, strike window, CRR tree values ..., n ones]
        tree = params.crr_steps + 1 if params.pricing == "crr" else 1
        self._scratch = np.zeros(2 + tree + n)
        self._scratch[0] = vw
        self._scratch[1] = sw
        self._scratch[-n:] = 1.0

        if params.allocation == "softmax":
            raw = np.array(params.softmax_raw_weights or (0.0,) * n, dtype=np.float64)
            fixed = softmax_weights(raw)
        else:
            fixed = np.full(n, 1.0 / n)
        self._state = np.zeros(3 * n + (vw + sw) * n + 3)
        self._state[-1] = 1.0  # the exposure of the first decision
        self._state[0:n] = params.initial_share_price
        self._state[n : 2 * n] = fixed if params.allocation != "option" else 1.0 / n
        self._state[2 * n : 3 * n] = fixed
        self._counters = np.zeros(kern.N_COUNTERS, dtype=np.int64)
        # S_i(0) is the first price of the strike's moving average.
        self._recent_view()[0] = params.initial_share_price
        self._counters[kern.PRICE_COUNT] = 1
        self._counters[kern.PRICE_SLOT] = 1 % sw
        self._step = 0

    # -- views into the flat state ------------------------------------------------

    def _changes_view(self) -> np.ndarray:
        n, vw = self._n, self.params.volatility_window
        return self._state[3 * n : 3 * n + vw * n].reshape(vw, n)

    def _recent_view(self) -> np.ndarray:
        n, vw, sw = self._n, self.params.volatility_window, self.params.strike_window
        return self._state[3 * n + vw * n : 3 * n + (vw + sw) * n].reshape(sw, n)

    def _scale_view(self) -> np.ndarray:
        """The relative form's typical unit: [EW variance sum, EW weight]."""
        return self._state[-3:-1]

    @property
    def exposure(self) -> float:
        """The share of ``max_position`` the next decision may take (``params.exposure``)."""
        return float(self._state[-1])

    @property
    def n_agents(self) -> int:
        return self._n

    @property
    def step_count(self) -> int:
        """Steps completed so far."""
        return self._step

    @property
    def share_prices(self) -> np.ndarray:
        """Current share prices, rebased by ``2**price_scale_exponent`` (see rebase_nb)."""
        return self._state[0 : self._n].copy()

    @property
    def price_scale_exponent(self) -> int:
        """Unscaled share price = ``share_prices * 2**price_scale_exponent``."""
        return int(self._counters[kern.REBASE])

    @property
    def weights(self) -> np.ndarray:
        """Current ensemble weights (the smoothed weights of the last step)."""
        return self._state[self._n : 2 * self._n].copy()

    # -- the step -----------------------------------------------------------------

    def step(
        self,
        values: np.ndarray | Callable[[np.ndarray], np.ndarray],
        time_to_expiry: float,
    ) -> MetaStepResult:
        """Run one step with this step's coalition values; see the module docstring.

        ``values`` is the length-2^n array of v(S) indexed by bitmask, or (Monte
        Carlo only) a vectorised callable as in
        :func:`strategies.meta.shapley.shapley_monte_carlo`. ``time_to_expiry``
        is T - t in the option's time unit, finite and ≥ 0.
        """
        T = float(time_to_expiry)
        if not (math.isfinite(T) and T >= 0.0):
            raise ValueError(
                f"meta-investor step {self._step + 1}: time_to_expiry must be a finite "
                f"number >= 0, got {time_to_expiry!r}"
            )
        n = self._n
        table = np.empty((kern.ROWS, n))
        crr_steps = self.params.crr_steps
        if self._exact:
            v = values
            if (
                type(v) is not np.ndarray
                or v.dtype != np.float64
                or v.shape != (self._coalitions,)
                or not v.flags.c_contiguous
            ):
                v = self._coerce_values(values)
            bad, penalty = kern.exact_step_nb(
                v,
                self._size_weights,
                self._state,
                self._counters,
                self._fparams,
                crr_steps,
                T,
                table,
                self._scratch,
            )
            if bad >= 0:
                raise ValueError(
                    f"meta-investor step {self._step + 1}: coalition value v[{bad}] "
                    f"(coalition bitmask {bad:#b}) is {v[bad]!r}; the step's P&L must be "
                    f"finite"
                )
            self._step += 1
            return MetaStepResult(
                self._step,
                "exact",
                self._coalitions,
                float(v[-1]),
                float(v[0]),
                penalty,
                table,
                self._crr_fallbacks(table, T) if self._crr else (),
            )

        try:
            phi, stderr, empty_value, full_value, evaluations = shapley_monte_carlo_details(
                values, n, self._permutations, self.rng
            )
        except ValueError as exc:
            raise ValueError(f"meta-investor step {self._step + 1}: {exc}") from exc
        table[kern.PHI] = phi
        table[kern.STDERR] = stderr
        penalty = kern.update_nb(
            self._state, self._counters, self._fparams, crr_steps, T, table, self._scratch
        )
        self._step += 1
        return MetaStepResult(
            self._step,
            "monte_carlo",
            evaluations,
            full_value,
            empty_value,
            penalty,
            table,
            self._crr_fallbacks(table, T) if self._crr else (),
        )

    def _crr_fallbacks(self, table: np.ndarray, time_to_expiry: float) -> tuple[int, ...]:
        flags = np.zeros(self._n, dtype=np.int64)
        count = kern.crr_fallbacks_nb(
            table[kern.VOLS],
            time_to_expiry,
            self.params.risk_free_rate,
            self.params.crr_steps,
            flags,
        )
        return tuple(np.flatnonzero(flags).tolist()) if count else ()

    def _coerce_values(self, values: Any) -> np.ndarray:
        if callable(values):
            raise ValueError(
                f"meta-investor step {self._step + 1}: exact Shapley values need the array "
                f"of all {self._coalitions} coalition values, got a callable"
            )
        v = np.ascontiguousarray(values, dtype=np.float64)
        if v.shape != (self._coalitions,):
            raise ValueError(
                f"meta-investor step {self._step + 1}: expected {self._coalitions} coalition "
                f"values (2^{self._n}, indexed by bitmask), got shape {v.shape}"
            )
        return v

    # -- persistence ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-able lists, numbers and strings."""
        rng_state = None
        if self.rng is not None:
            rng_state = _jsonable(self.rng.bit_generator.state)
        return {
            "format": _STATE_FORMAT,
            "params": msgspec.to_builtins(self.params),
            "step": self._step,
            "share_prices": self._state[0 : self._n].tolist(),
            "weights": self._state[self._n : 2 * self._n].tolist(),
            "price_changes": self._changes_view().tolist(),
            "recent_prices": self._recent_view().tolist(),
            "credit_scale": self._scale_view().tolist(),
            "exposure": self.exposure,
            "counters": self._counters.tolist(),
            "rng_state": rng_state,
        }

    @classmethod
    def from_state_dict(
        cls, data: dict[str, Any], rng: np.random.Generator | None = None
    ) -> MetaInvestorState:
        """Rebuild a state saved by :meth:`state_dict`; continuing gives identical steps.

        The saved generator state, if any, is restored into ``rng`` when given,
        else into a new generator of the saved bit generator type.
        """
        if not isinstance(data, dict) or data.get("format") not in _STATE_FORMATS:
            raise ValueError(f"not a meta-investor state of format {_STATE_FORMAT!r}")
        params = msgspec.convert(data["params"], MetaInvestorParams)
        rng_state = data.get("rng_state")
        if rng_state is not None:
            if rng is None:
                bit_generator = getattr(np.random, rng_state["bit_generator"])
                rng = np.random.Generator(bit_generator())
            rng.bit_generator.state = rng_state
        state = cls(params, rng)
        n = params.n_agents
        pieces = {
            "share_prices": (n,),
            "weights": (n,),
            "price_changes": (params.volatility_window, n),
            "recent_prices": (params.strike_window, n),
            "counters": (kern.N_COUNTERS,),
        }
        arrays = {}
        for key, shape in pieces.items():
            array = np.array(data[key], dtype=np.int64 if key == "counters" else np.float64)
            if array.shape != shape:
                raise ValueError(f"state field {key!r} must have shape {shape}, got {array.shape}")
            arrays[key] = array
        state._state[0:n] = arrays["share_prices"]
        state._state[n : 2 * n] = arrays["weights"]
        state._changes_view()[:] = arrays["price_changes"]
        state._recent_view()[:] = arrays["recent_prices"]
        scale = np.array(data.get("credit_scale", (0.0, 0.0)), dtype=np.float64)
        if scale.shape != (2,):
            raise ValueError(f"state field 'credit_scale' must have shape (2,), got {scale.shape}")
        state._scale_view()[:] = scale
        state._state[-1] = float(data.get("exposure", 1.0))
        state._counters[:] = arrays["counters"]
        state._step = int(data["step"])
        return state


class MetaInvestorBatch:
    """The meta-investor of ``count`` independent panels, stepped together (the training
    market's environments): the same step as :class:`MetaInvestorState` on exact
    Shapley values already computed, without records."""

    def __init__(self, params: MetaInvestorParams, count: int) -> None:
        template = MetaInvestorState(params)
        self.params = params
        self._n = params.n_agents
        self._template = (template._state.copy(), template._counters.copy())
        self._fparams = template._fparams
        self._scratch = template._scratch
        self._state = np.tile(template._state, (count, 1))
        self._counters = np.tile(template._counters, (count, 1))
        self._tables = np.zeros((count, kern.ROWS, self._n))

    @property
    def weights(self) -> np.ndarray:
        """The panels' weights (count, n) for their next decisions: a view (assigning to
        it fixes them, as an equal-weight ablation does)."""
        return self._state[:, self._n : 2 * self._n]

    @property
    def exposure(self) -> np.ndarray:
        """The panels' exposures (count, 1) for their next decisions: a view."""
        return self._state[:, -1:]

    @property
    def target_weights(self) -> np.ndarray:
        """The panels' target weights w* of their last step (count, n): a view."""
        return self._tables[:, kern.TARGETS, :]

    def reset(self, mask: np.ndarray) -> None:
        """Start the panels where ``mask`` is set afresh."""
        self._state[mask] = self._template[0]
        self._counters[mask] = self._template[1]

    def step(self, phi: np.ndarray, time_to_expiry: np.ndarray) -> np.ndarray:
        """Credit every panel with its Shapley values ``phi`` (count, n) and value its
        agents' options ``time_to_expiry`` (count,) steps out; returns the bubble
        penalties (count,)."""
        return kern.update_batch_nb(
            phi,
            self._state,
            self._counters,
            self._fparams,
            self.params.crr_steps,
            time_to_expiry,
            self._tables,
            self._scratch,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value

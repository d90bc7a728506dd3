"""The meta-investor on the bus: ensemble decisions, Shapley credit, valuations, weights.

Per bar t (the close of bar t is when agents vote):

1. ``on_bar(t)`` runs first among the strategy handlers. If a decision was
   made on bar t-1, its step P&L is now known (the portfolio snapshot of bar t
   arrived just before): the coalition values of that step are computed, the
   :class:`~strategies.meta.step.MetaInvestorState` turns them into Shapley
   values, share prices, option values and new weights, and one
   :class:`ShapleyRecord` and one :class:`Valuation` per agent are published.
2. When every agent's :class:`AgentAction` for bar t has arrived, the ensemble
   decides with the current weights and publishes a :class:`TargetPosition`.

The coalition values follow the broker's rules exactly. For coalition S,
agents outside S vote neutral with unchanged weights; the ensemble P(S), its
confidence max P - H(P) and target (``max_position`` x (P_bull - P_bear),
rounded to the lot, or the previous position when the confidence is below the
threshold, when the change is inside the no-trade band or while the position is younger
than the minimum holding time) give the traded quantity d = target - previous, filled
at the next
open o moved by the slippage, with the broker's commission c(d) (including its
minimum). With the previous close p0 and the next close p1::

    pnl(S) = previous (o - p0) + d (o - fill) + target (p1 - o) - c(d)

which is the change of equity over the step. v(∅) = 0 by definition, and
v(N) is set to the equity change the portfolio actually recorded, so the
Shapley values of every step add up to the step's P&L and, over a run, to the
strategy's P&L. ``value_model`` records the model's own v(N); the two agree
to rounding unless the volume cap split the fill.

Credit: exact Shapley values over all 2^n coalitions when n ≤
``exact_max_agents`` (``method="exact"``, standard errors 0); above that,
Monte Carlo over ``monte_carlo_permutations`` random orderings in antithetic
pairs (:mod:`strategies.meta.shapley`, ``method="monte_carlo"``, with the
estimates' standard errors). Monte Carlo evaluates the same characteristic
function, :func:`~strategies.meta.decision.coalition_pnl_nb` on the coalitions (prefixes of the
orderings) it visits, with v(∅) = 0 and v(N) the realised P&L as above, and
draws the orderings from the ``rng`` passed in (a ``numpy.random.Generator``
built from the scenario seed: the same seed gives the same records). Every
ordering's marginal contributions telescope to v(N), so efficiency holds per
step for Monte Carlo exactly as for exact values.

Tolerance of the efficiency: per step, Σ_i φ_i equals the realised P&L up to
floating-point rounding of the Shapley sums (within 1e-12 relative plus 1e-9
in account currency, tested for exact and Monte Carlo credit); over a whole
backtest Σ_t Σ_i φ_i(t)
equals the strategy's equity change from the first decision to the last
settled step, commissions and slippage included (they are in the equity),
within 1e-9 relative plus 1e-6 in account currency (tested). The last
decision of a run has no next bar, so its step is never settled. With the
broker's volume cap binding (``max_participation``), a split fill leaves part
of the order working into later bars: the realised v(N) (``value_full``) then
differs from the model's one-bar counterfactual (``value_model``) on those
steps, the coalitions below N keep the model's values, and the Shapley values
still add up to the realised P&L.

In a universe each symbol has its own meta-investor, and the equity change above is the
symbol's own P&L: the change of its realised plus unrealised P&L less its commissions and
borrow fees (``symbol_costs``, the portfolio's count), which the other symbols' prices
do not move. Over a run the credit of every symbol then adds up to the account's P&L
less the financing of a margin debit, which belongs to the account, not to a symbol.
Sized by the account (``account``, :mod:`strategies.sizing`), ``max_position`` is the
units the sizing gives at the decision bar's close; the model uses the same size.

Warm-up: before ``run.trade_start`` (``trade_start_ns``) no order goes out. The
decisions then build a shadow position, and each step is credited with the P&L that
shadow position would have made (v(N) the model's), so that credit, share prices, weights
and exposure are warm when trading starts, as the indicators are. Those steps publish no
record and count in no total: only traded steps are credited.

Errors name the bar: a non-finite step P&L, a non-finite coalition value (a
bar with a NaN price) or share price raise ``ValueError`` with the
``ts_event`` of the bar at which the step settled. CRR valuations whose tree
probability falls outside [0, 1] are valued with Black-Scholes (see
:mod:`strategies.meta.step`), counted per agent in ``crr_fallbacks`` and stored
with ``pricing="black_scholes_fallback"`` in their Valuation (else the
scenario's ``pricing``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import add as _add

import numpy as np

from brokers.config import BrokerConfig
from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.errors import ConfigError
from engine.core.events import (
    AgentAction,
    Bar,
    PortfolioSnapshot,
    ShapleyRecord,
    TargetPosition,
    Valuation,
)
from strategies.meta.decision import (
    PnlArguments,
    coalition_pnl_nb,
    decision_nb,
    sampled_coalition_values,
)
from strategies.meta.shapley import coalition_masks
from strategies.meta.step import MetaInvestorParams, MetaInvestorState, MetaStepResult
from strategies.sizing import AccountView

__all__ = ["MetaInvestor"]


class MetaInvestor:
    """Weights the agents by option value; publishes decisions, credit and valuations.

    See the module docstring for the coalition values, the choice between
    exact and Monte Carlo credit, and the efficiency's tolerance: per step the
    agents' Shapley values add up to the realised P&L to rounding; over a
    whole backtest they add up to the strategy's P&L, costs included, within
    1e-9 relative plus 1e-6 in account currency. ``rng`` (a
    ``numpy.random.Generator`` from the scenario seed) is required when
    ``params.n_agents > params.exact_max_agents`` (Monte Carlo credit).
    """

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        symbol: str,
        agent_ids: Sequence[str],
        params: MetaInvestorParams,
        broker: BrokerConfig,
        *,
        max_position: float,
        confidence_threshold: float = 0.0,
        lot_size: float = 1.0,
        horizon_bars: int = 0,
        strategy_id: str = "meta",
        rng: np.random.Generator | None = None,
        no_trade_band: float = 0.0,
        min_hold_bars: int = 0,
        trade_start_ns: int | None = None,
        account: AccountView | None = None,
        symbol_costs: Callable[[], float] | None = None,
    ) -> None:
        if len(agent_ids) != params.n_agents:
            raise ValueError(
                f"{len(agent_ids)} agent ids for MetaInvestorParams.n_agents={params.n_agents}"
            )
        if not (max_position > 0 and math.isfinite(max_position)):
            raise ValueError(f"max_position must be a positive number, got {max_position!r}")
        self._bus = bus
        self._clock = clock
        self.symbol = symbol
        #: sizes ``max_position`` by the account ([strategy.sizing]); None: units
        self._account = None if account is None or account.sizing.method == "units" else account
        #: a universe's: the symbol's commissions and borrow fees so far (module docstring)
        self._symbol_costs = symbol_costs
        self.agent_ids = tuple(agent_ids)
        self.state = MetaInvestorState(params, rng)
        self._broker = broker
        self.max_position = max_position
        self.threshold = confidence_threshold
        self.lot_size = lot_size
        if not (0.0 <= no_trade_band < 1.0) or min_hold_bars < 0:
            raise ValueError(
                f"no_trade_band must be in [0, 1) and min_hold_bars >= 0, got "
                f"{no_trade_band!r} and {min_hold_bars!r}"
            )
        #: changes of the target smaller than this share of max_position are not traded
        self.no_trade_band = no_trade_band
        #: a position is held at least this many bars before it changes again
        self.min_hold_bars = min_hold_bars
        self._changed_at = -(10**9)  # the bar at which the position last changed
        #: decisions before this time only warm up (run.trade_start): see _decide
        self.trade_start_ns = trade_start_ns
        self._shadow = 0.0  # the position the warm-up decisions would hold
        if params.expiry_bars == 0 and horizon_bars <= 0:
            raise ConfigError(
                "the meta-investor's options need a time to expiry: the run's length is not "
                "known in advance (paper trading), so set [strategy.meta] expiry_bars > 0, "
                "a rolling horizon in bars"
            )
        self.horizon = horizon_bars
        self.expiry_bars = params.expiry_bars
        self.strategy_id = strategy_id
        n = params.n_agents
        self._masks = (
            coalition_masks(n).astype(np.float64) if n <= params.exact_max_agents else None
        )
        self._full_mask = np.ones((1, n))
        # the broker's cost rules, the last arguments of _coalition_pnl_nb
        self._costs = (
            broker.slippage_bps / 1e4,
            broker.commission_bps / 1e4,
            broker.commission_per_unit,
            broker.commission_minimum,
        )
        self._votes = np.zeros((n, 3))
        self._seen = 0  # bit i set: agent i has voted on the bar of self._vote_ts
        self._all_seen = (1 << n) - 1
        self._vote_ts = -1
        self._decision = np.empty(5)  # [target, confidence, P_bear, P_neutral, P_bull]
        self._pnl = np.empty(len(self._masks) if self._masks is not None else 0)
        self._bars = 0
        self._equity = math.nan
        self._position = 0.0
        self._last_close = math.nan
        self._pending: (
            tuple[np.ndarray, np.ndarray, float, float, float, int, tuple[float, float, float]]
            | None
        ) = None

        self._cumulative_phi = [0.0] * n
        self.steps = 0
        # running figures of the panel (panel_summary)
        self._effective_sum = 0.0
        self._exposure_sum = 0.0
        self._price_low = math.inf
        self._price_high = -math.inf
        #: Per agent: steps whose CRR value fell back to Black-Scholes (p outside [0, 1]).
        self.crr_fallbacks = np.zeros(n, dtype=np.int64)
        self._pricing: list[str] = [params.pricing] * n  # each Valuation's ``pricing``

    def subscribe(self) -> None:
        """Subscribe; call before the agents subscribe to bars."""
        bus = self._bus
        bus.subscribe(PortfolioSnapshot, self.on_portfolio_snapshot, self.symbol)
        bus.subscribe(Bar, self.on_bar, self.symbol)
        bus.subscribe(AgentAction, self.on_agent_action, self.symbol)

    @property
    def cumulative_phi(self) -> np.ndarray:
        """Per agent: the sum of its Shapley values over the steps settled so far."""
        return np.array(self._cumulative_phi)

    def on_portfolio_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        costs = self._symbol_costs
        if costs is None:
            self._equity = snapshot.equity
        else:  # a universe: the symbol's own P&L stands for the equity (module docstring)
            self._equity = snapshot.realised_pnl + snapshot.unrealised_pnl - costs()
        if snapshot.position != self._position:
            self._changed_at = self._bars
        self._position = snapshot.position

    def on_bar(self, bar: Bar) -> None:
        self._bars += 1
        if self._pending is not None:
            self._settle(bar)
        self._last_close = bar.close

    def on_agent_action(self, action: AgentAction) -> None:
        index = action.agent_index
        if not 0 <= index < len(self.agent_ids) or self.agent_ids[index] != action.agent_id:
            raise ValueError(
                f"agent {action.agent_id!r} with index {index} is not one of {self.agent_ids}"
            )
        if action.ts_event != self._vote_ts:
            self._seen = 0
            self._vote_ts = action.ts_event
        bearish, neutral, bullish = action.bearish, action.neutral, action.bullish
        # finite and >= 0 (NaN fails every comparison)
        if not (
            0.0 <= bearish < math.inf and 0.0 <= neutral < math.inf and 0.0 <= bullish < math.inf
        ):
            probabilities = (bearish, neutral, bullish)
            raise ValueError(f"agent {action.agent_id}: probabilities {probabilities} are invalid")
        votes = self._votes
        votes[index, 0] = bearish
        votes[index, 1] = neutral
        votes[index, 2] = bullish
        self._seen |= 1 << index
        if self._seen == self._all_seen:
            self._decide(action.ts_event)

    def _decide(self, ts: int) -> None:
        weights = self.state.weights  # a copy
        votes = self._votes.copy()
        out = self._decision
        cap = self.max_position
        if self._account is not None:  # sized by the account at the decision bar's close
            cap = self._account.units(self.symbol, self._last_close, self.lot_size, cap)
        size = cap * self.state.exposure
        band = self.no_trade_band * size
        # a position younger than min_hold_bars holds whatever the votes (every coalition too)
        young = self._bars - self._changed_at < self.min_hold_bars
        threshold = math.inf if young else self.threshold
        # Before run.trade_start no order goes out (engine.app.warmup): the decisions build a
        # shadow position, and the steps are credited with the P&L it would have made, so
        # the credit, prices and weights are warm when trading starts.
        warming = self.trade_start_ns is not None and ts < self.trade_start_ns
        previous = self._shadow if warming else self._position
        decision_nb(votes, weights, size, threshold, self.lot_size, previous, band, out)
        target, confidence, bearish, neutral, bullish = out.tolist()
        if warming:
            if target != self._shadow:  # as a fill at the next open would (on_portfolio_snapshot)
                self._changed_at = self._bars
            self._shadow = target
        self._pending = (
            votes,
            weights,
            previous,
            math.nan if warming else self._equity,
            self._last_close,
            ts,
            (size, threshold, band),
        )
        bus = self._bus
        bus.publish(
            TargetPosition(
                ts_event=ts,
                ts_init=self._clock.now_ns(),
                seq=bus.next_seq(),
                symbol=self.symbol,
                strategy_id=self.strategy_id,
                target=target,
                confidence=confidence,
                bearish=bearish,
                neutral=neutral,
                bullish=bullish,
            )
        )
        self._seen = 0

    def _settle(self, bar: Bar) -> None:
        votes, weights, previous, equity_before, previous_close, decision_ts, rule = self._pending  # type: ignore[misc]
        size, threshold, band = rule
        self._pending = None
        warming = equity_before != equity_before  # NaN: a warm-up decision (see _decide)
        actual = 0.0 if warming else self._equity - equity_before
        if not math.isfinite(actual):
            if not math.isfinite(equity_before):
                hint = (
                    "no portfolio snapshot before the decision (subscribe the portfolio "
                    "before the meta-investor)"
                )
            else:
                hint = f"the portfolio's equity went from {equity_before!r} to {self._equity!r}"
            raise ValueError(
                f"step P&L at bar {bar.ts_event} (decision at bar {decision_ts}) is "
                f"{actual!r}: {hint}"
            )
        pnl_args: PnlArguments = (
            size,
            threshold,
            self.lot_size,
            band,
            previous,
            previous_close,
            bar.open,
            bar.close,
            *self._costs,
        )
        masks = self._masks
        values: np.ndarray | Callable[[np.ndarray], np.ndarray]
        if masks is not None:
            values = self._pnl  # the step copies what it keeps
            coalition_pnl_nb(votes, weights, masks, *pnl_args, values)
            model_full = float(values[-1])
            if warming:
                actual = model_full
            values[0] = 0.0
            values[-1] = actual
        else:
            full = np.empty(1)
            coalition_pnl_nb(votes, weights, self._full_mask, *pnl_args, full)
            model_full = float(full[0])
            if warming:
                actual = model_full
            values = sampled_coalition_values(votes, weights, pnl_args, actual)
        if self.expiry_bars:
            remaining = float(self.expiry_bars)
        else:
            remaining = float(max(self.horizon - self._bars, 0))
        try:
            result = self.state.step(values, remaining)
        except ValueError as exc:
            raise ValueError(
                f"the step settled at bar {bar.ts_event} (decision at bar {decision_ts}): {exc}"
            ) from exc
        pricing = self._pricing
        if result.crr_fallback_agents:
            self.crr_fallbacks[list(result.crr_fallback_agents)] += 1
            pricing = list(pricing)
            for i in result.crr_fallback_agents:
                pricing[i] = "black_scholes_fallback"
        (
            phi,
            stderr,
            prices,
            volatilities,
            strikes,
            option_values,
            target_weights,
            weights_now,
            bubbles,
        ) = result.lists()
        if not all(map(math.isfinite, prices + option_values + weights_now)):
            self._raise_non_finite(result, bar)
        if warming:  # the state is warm; nothing was traded, so nothing is credited or stored
            return
        self._cumulative_phi = list(map(_add, self._cumulative_phi, phi))
        self.steps += 1
        self._effective_sum += 1.0 / sum(w * w for w in weights_now)
        self._exposure_sum += size / self.max_position
        exponent = self.state.price_scale_exponent  # literal forms rebase by powers of 2
        self._price_low = min(self._price_low, _unscaled(min(prices), exponent))
        self._price_high = max(self._price_high, _unscaled(max(prices), exponent))
        coalitions = result.coalition_count
        method = result.method
        symbol = self.symbol
        bus = self._bus
        next_seq = bus.next_seq
        publish = bus.publish
        ts = bar.ts_event
        now = self._clock.now_ns()
        for i, agent_id in enumerate(self.agent_ids):
            publish(
                ShapleyRecord(
                    ts_event=ts,
                    ts_init=now,
                    seq=next_seq(),
                    symbol=symbol,
                    agent_id=agent_id,
                    agent_index=i,
                    decision_ts=decision_ts,
                    phi=phi[i],
                    value_full=actual,
                    value_model=model_full,
                    coalitions=coalitions,
                    method=method,
                    stderr=stderr[i],
                )
            )
        for i, agent_id in enumerate(self.agent_ids):
            publish(
                Valuation(
                    ts_event=ts,
                    ts_init=now,
                    seq=next_seq(),
                    symbol=symbol,
                    agent_id=agent_id,
                    agent_index=i,
                    share_price=prices[i],
                    volatility=volatilities[i],
                    strike=strikes[i],
                    time_to_expiry=remaining,
                    option_value=option_values[i],
                    target_weight=target_weights[i],
                    weight=weights_now[i],
                    bubble=bubbles[i],
                    pricing=pricing[i],
                )
            )

    def _raise_non_finite(self, result: MetaStepResult, bar: Bar) -> None:
        """Name the first agent whose share price, option value or weight is not finite."""
        for name, values in (
            ("share price", result.share_prices),
            ("option value", result.option_values),
            ("weight", result.weights),
        ):
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                agent = self.agent_ids[int(bad[0])]
                raise ValueError(
                    f"the {name} of agent {agent} is {float(values[bad[0]])!r} after the step "
                    f"settled at bar {bar.ts_event}: the agents' share prices drifted more than "
                    f"the float range apart (lower [strategy.meta] alpha)"
                )

    def panel_summary(self) -> dict[str, float | int]:
        """Over the settled steps: the time-average effective number of agents 1 / Σ w²
        (n for equal weights, 1 when one agent holds all), the lowest and highest share
        price (unscaled) and the mean exposure (share of ``max_position``); and the bubble
        threshold θ the panel was penalised at (the report draws it)."""
        steps = self.steps
        return {
            "steps": steps,
            "effective_agents": self._effective_sum / steps if steps else math.nan,
            "share_price_min": self._price_low if steps else math.nan,
            "share_price_max": self._price_high if steps else math.nan,
            "exposure_mean": self._exposure_sum / steps if steps else math.nan,
            "bubble_threshold": self.state.params.bubble_threshold,
        }

    def agent_summary(self) -> list[dict[str, float | str]]:
        """Per agent: cumulative Shapley P&L, final share price and weight."""
        prices = self.state.share_prices
        weights = self.state.weights
        return [
            {
                "agent": agent_id,
                "shapley_pnl": float(self.cumulative_phi[i]),
                "share_price": float(prices[i]),
                "weight": float(weights[i]),
            }
            for i, agent_id in enumerate(self.agent_ids)
        ]


def _unscaled(price: float, exponent: int) -> float:
    """``price * 2**exponent``; inf beyond the float range (a literal-form price can be)."""
    try:
        return math.ldexp(price, exponent)
    except OverflowError:
        return math.inf

"""The meta-investor on the bus, driven by scripted agents on the synthetic market."""

from __future__ import annotations

import csv
import io
import itertools
import re

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from engine.app.backtest import run_backtest
from engine.core.events import PortfolioSnapshot, ShapleyRecord, TargetPosition, Valuation
from engine.feeds.bars import load_bars
from storage.db import connect
from storage.models import ShapleyValueRow, ValuationRow
from strategies.execution import TargetExecution
from strategies.meta.investor import MetaInvestor
from strategies.meta.params import SPEC_LITERAL
from strategies.meta.step import MetaInvestorParams
from strategies.scripted import ScriptedAgent
from tests.conftest import synthetic_scenario

COSTS = "commission_bps = 1.0\ncommission_minimum = 0.5\nslippage_bps = 0.5"


def factory(
    data, events: list, rules=("oracle", "contrarian", "random"), on_meta=None, **meta_options
):
    def build(config, bus, clock):
        bus.subscribe("*", events.append)
        symbol = config.instrument.symbol
        ids = [f"{rule}-{i}" for i, rule in enumerate(rules)]
        options = {"smoothing": 0.2, "alpha": 0.05, **meta_options}
        params = MetaInvestorParams(n_agents=len(rules), **options)
        meta = MetaInvestor(
            bus,
            clock,
            symbol,
            ids,
            params,
            config.broker,
            max_position=100.0,
            confidence_threshold=-10.0,
            lot_size=1.0,
            horizon_bars=len(data),
            rng=np.random.default_rng([config.run.seed, 1]),  # Monte Carlo orderings
        )
        rng = np.random.default_rng(config.run.seed)
        agents = [
            ScriptedAgent(bus, clock, symbol, ids[i], i, rule, data=data, rng=rng)
            for i, rule in enumerate(rules)
        ]
        if on_meta is not None:
            on_meta(meta)
        return [meta, *agents, TargetExecution(bus, clock, symbol)]

    return build


def run(bars: int = 3_000, broker: str = COSTS, **kwargs):
    config = synthetic_scenario(bars, broker=broker)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    events: list = []
    result = run_backtest(
        config, data=data, persist=False, strategy_factory=factory(data, events, **kwargs)
    )
    return config, result, events


def test_meta_investor_oracle_rises_contrarian_falls() -> None:
    _config, result, events = run()
    valuations = [e for e in events if isinstance(e, Valuation)]
    last = {v.agent_index: v for v in valuations[-3:]}
    assert last[0].share_price > 1.0 > last[1].share_price
    assert last[0].weight > last[2].weight > last[1].weight
    shapley = [e for e in events if isinstance(e, ShapleyRecord)]
    by_agent = np.zeros(3)
    for record in shapley:
        by_agent[record.agent_index] += record.phi
    assert by_agent[0] > 0 > by_agent[1]
    assert result.fills > 100
    # Bubbles are recorded when the smoothed weight lags the option-value weight.
    assert any(v.bubble > 1.2 for v in valuations)
    assert any(v.bubble < 1.0 for v in valuations)


def test_meta_investor_shapley_adds_up_to_strategy_pnl_with_costs() -> None:
    config, result, events = run()
    shapley = [e for e in events if isinstance(e, ShapleyRecord)]
    total_phi = sum(r.phi for r in shapley)
    snapshots = [e for e in events if isinstance(e, PortfolioSnapshot)]
    first_decision = next(e for e in events if isinstance(e, TargetPosition))
    # Credit starts with the first decision; equity before it is the initial cash.
    before = next(s.equity for s in snapshots if s.ts_event == first_decision.ts_event)
    # The last decision's step has no next bar, so it is never settled.
    last_settled = shapley[-1].ts_event
    after = next(s.equity for s in snapshots if s.ts_event == last_settled)
    assert before == pytest.approx(config.broker.initial_cash)
    assert total_phi == pytest.approx(after - before, rel=1e-9, abs=1e-6)
    assert result.summary.fees > 0
    # Without a volume cap the counterfactual model reproduces each step's P&L.
    for record in shapley[::3]:
        assert record.value_model == pytest.approx(record.value_full, rel=1e-9, abs=1e-7)


def test_meta_investor_one_agent_gets_the_whole_pnl() -> None:
    _config, _result, events = run(1_000, rules=("oracle",))
    shapley = [e for e in events if isinstance(e, ShapleyRecord)]
    for record in shapley:
        assert record.phi == pytest.approx(record.value_full, rel=1e-12, abs=1e-9)
        assert record.coalitions == 2


def test_meta_investor_records_persist(sqlite_url: str) -> None:
    config = synthetic_scenario(800, broker=COSTS)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    events: list = []
    result = run_backtest(
        config, data=data, db_url=sqlite_url, strategy_factory=factory(data, events)
    )
    with connect(sqlite_url).connect() as connection:
        shapley = connection.execute(select(func.count()).select_from(ShapleyValueRow)).scalar()
        valuations = connection.execute(select(func.count()).select_from(ValuationRow)).scalar()
        pricing = connection.execute(select(ValuationRow.pricing).distinct()).scalars().all()
    assert pricing == ["black_scholes"]
    settled = sum(isinstance(e, ShapleyRecord) for e in events)
    assert shapley == valuations == settled > 3 * 700
    assert result.agents is not None
    assert [a["agent"] for a in result.agents] == ["oracle-0", "contrarian-1", "random-2"]


def test_shapley_query_per_bar_and_aggregated(sqlite_url: str) -> None:
    from storage.query import shapley_rows

    config = synthetic_scenario(600, broker=COSTS)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    result = run_backtest(config, data=data, db_url=sqlite_url, strategy_factory=factory(data, []))
    engine = connect(sqlite_url)
    rows = shapley_rows(engine, "latest")
    assert len(rows) == 3 * 599
    totals = shapley_rows(engine, "latest", aggregate=True)
    assert [t["agent_id"] for t in totals] == ["oracle-0", "contrarian-1", "random-2"]
    for total, agent in zip(totals, result.agents, strict=True):
        assert total["shapley_pnl"] == pytest.approx(agent["shapley_pnl"], rel=1e-9)
        assert total["weight"] == pytest.approx(agent["weight"])
    from typer.testing import CliRunner

    from engine.app.cli import app

    out = CliRunner().invoke(
        app, ["shapley", "--db", sqlite_url, "--aggregate", "--format", "json"]
    )
    assert out.exit_code == 0
    import json

    assert len(json.loads(out.output)) == 3
    assert shapley_rows(engine, "latest", limit=7) == rows[-7:]
    last = CliRunner().invoke(app, ["shapley", "--db", sqlite_url, "--limit", "7", "--format",
                                    "json"])  # fmt: skip
    assert [r["phi"] for r in json.loads(last.stdout)] == [r["phi"] for r in rows[-7:]]
    assert f"showing the last 7 of {len(rows):,} rows" in last.stderr
    table = CliRunner().invoke(app, ["shapley", "--db", sqlite_url])  # the last 1,000 rows
    assert f"showing the last 1,000 of {len(rows):,} rows" in table.stderr
    everything = CliRunner().invoke(app, ["shapley", "--db", sqlite_url, "--format", "csv"])
    assert len(everything.stdout.splitlines()) == len(rows) + 1 and everything.stderr == ""
    # every row to CSV is streamed: the same values as the rows read whole, to the digit, and
    # the same text as the listing of the last len(rows) rows (read whole, by another query)
    streamed = list(csv.DictReader(io.StringIO(everything.stdout)))
    for key in ("phi", "value_full", "stderr", "share_price", "option_value", "weight", "bubble"):
        assert [float(r[key]) for r in streamed] == [r[key] for r in rows], key
    assert [(r["agent_id"], r["method"]) for r in streamed] == [
        (r["agent_id"], r["method"]) for r in rows
    ]
    assert [r["time"] for r in streamed] == [
        pd.Timestamp(r["ts_event"], unit="ns").strftime("%Y-%m-%d %H:%M:%S") for r in rows
    ]
    listed = CliRunner().invoke(
        app, ["shapley", "--db", sqlite_url, "--format", "csv", "--limit", str(len(rows))]
    )
    assert listed.stdout == everything.stdout


def test_scripted_ensemble_scenario_runs_and_reports_agents() -> None:
    from engine.app.scenario import parse_scenario

    config = parse_scenario(
        '[data]\nsource = "synthetic"\n[data.synthetic]\nbars = 1500\n'
        '[strategy]\nkind = "scripted_ensemble"\nagents = ["oracle", "random"]\n'
        "max_position = 100\nconfidence_threshold = -2.0\n[strategy.meta]\nsmoothing = 0.3\n"
    )
    result = run_backtest(config, persist=False)
    assert [a["agent"] for a in result.agents] == ["oracle-0", "random-1"]
    assert result.agents[0]["weight"] > result.agents[1]["weight"]


def test_scripted_ensemble_bad_meta_key_names_section() -> None:
    """[strategy.meta] is decoded with the scenario: a misspelt key, a value out of range
    and an n_agents that is not the panel's are refused before anything runs."""
    from engine.app.scenario import parse_scenario
    from engine.core.errors import ConfigError

    head = '[data]\nsource = "synthetic"\n[strategy]\nkind = "scripted_ensemble"\n'
    with pytest.raises(ConfigError, match=r"'smoothin' in \[strategy.meta\]; did you mean"):
        parse_scenario(head + "[strategy.meta]\nsmoothin = 0.3\n")
    with pytest.raises(ConfigError, match=r"smoothing must be in \[0, 1\].*strategy.meta"):
        parse_scenario(head + "[strategy.meta]\nsmoothing = 3.0\n")
    with pytest.raises(ConfigError, match=r"n_agents = 2, but the panel has 3 agents"):
        parse_scenario(head + "[strategy.meta]\nn_agents = 2\n")
    two = parse_scenario(head + 'agents = ["trend", "random"]\n')
    assert two.strategy.meta.n_agents == 2  # type: ignore[union-attr]


def test_meta_investor_long_run_with_strong_alpha_stays_in_float_range() -> None:
    # alpha 0.9: the oracle's price multiplies by ~1.9 a step and the contrarian's
    # shrinks; unrebased they would leave the float range within a few hundred steps.
    _config, _result, events = run(2_500, rules=("oracle", "contrarian"), alpha=0.9, **SPEC_LITERAL)
    valuations = [e for e in events if isinstance(e, Valuation)]
    oracle = np.array([v.share_price for v in valuations if v.agent_index == 0])
    contrarian = np.array([v.share_price for v in valuations if v.agent_index == 1])
    assert np.isfinite(oracle).all() and (oracle > 0).all() and (contrarian > 0).all()
    assert oracle.max() <= 2.0**256
    rebases = np.flatnonzero(oracle[1:] / oracle[:-1] < 2.0**-200)
    assert len(rebases) >= 3  # the price was rebased, not clipped
    assert (contrarian / oracle).min() >= 2.0**-601  # the relative floor
    last = {v.agent_index: v for v in valuations[-2:]}
    assert last[0].weight > 0.99 and last[1].weight < 0.01


def test_meta_investor_rolling_expiry_is_constant_and_remaining_bars_count_down() -> None:
    _config, _result, events = run(600, expiry_bars=37)
    expiries = {v.time_to_expiry for v in events if isinstance(v, Valuation)}
    assert expiries == {37.0}
    _config, _result, events = run(600, expiry_bars=0)
    countdown = [v.time_to_expiry for v in events if isinstance(v, Valuation)][::3]
    assert countdown[0] > countdown[-1] >= 0.0
    assert all(a - b == 1.0 for a, b in itertools.pairwise(countdown))


def test_meta_investor_without_known_end_needs_a_rolling_expiry() -> None:
    from brokers.config import BrokerConfig
    from engine.core.bus import MessageBus
    from engine.core.clock import SimulatedClock
    from engine.core.errors import ConfigError

    def build(params: MetaInvestorParams) -> MetaInvestor:
        return MetaInvestor(
            MessageBus(), SimulatedClock(), "X", ["a"], params, BrokerConfig(), max_position=1.0
        )

    with pytest.raises(ConfigError, match=r"expiry_bars > 0"):
        build(MetaInvestorParams(n_agents=1, expiry_bars=0))
    assert build(MetaInvestorParams(n_agents=1, expiry_bars=48)).expiry_bars == 48


# --------------------------------------------------------------------------- Monte Carlo credit

FOURTEEN = ("oracle", "contrarian", "random", "neutral") * 3 + ("oracle", "random")


def _step_sums(shapley: list[ShapleyRecord]) -> dict[int, float]:
    sums: dict[int, float] = {}
    for record in shapley:
        sums[record.ts_event] = sums.get(record.ts_event, 0.0) + record.phi
    return sums


def test_meta_investor_fourteen_agents_monte_carlo_adds_up_and_is_deterministic() -> None:
    from strategies.meta.shapley import default_permutations

    n = len(FOURTEEN)
    _config, result, events = run(400, rules=FOURTEEN)
    shapley = [e for e in events if isinstance(e, ShapleyRecord)]
    assert len(shapley) == n * 399
    assert {r.method for r in shapley} == {"monte_carlo"}
    assert {r.coalitions for r in shapley} == {2 + default_permutations(n) * (n - 1)}
    assert all(r.stderr >= 0.0 for r in shapley)
    assert any(r.stderr > 0.0 for r in shapley)
    # Efficiency per step: every ordering's marginal contributions telescope to v(N).
    full = {r.ts_event: r.value_full for r in shapley}
    for ts, total in _step_sums(shapley).items():
        assert total == pytest.approx(full[ts], rel=1e-12, abs=1e-9)
    # ... and over the run, to the strategy's P&L with its costs.
    snapshots = {e.ts_event: e.equity for e in events if isinstance(e, PortfolioSnapshot)}
    first_decision = next(e for e in events if isinstance(e, TargetPosition))
    change = snapshots[shapley[-1].ts_event] - snapshots[first_decision.ts_event]
    assert sum(r.phi for r in shapley) == pytest.approx(change, rel=1e-9, abs=1e-6)
    assert result.summary.fees > 0
    # The oracles earn the most credit, the contrarians the least.
    totals = np.zeros(n)
    for record in shapley:
        totals[record.agent_index] += record.phi
    oracles = [i for i, rule in enumerate(FOURTEEN) if rule == "oracle"]
    contrarians = [i for i, rule in enumerate(FOURTEEN) if rule == "contrarian"]
    assert totals[oracles].min() > 0 > totals[contrarians].max()
    # Determinism: the same seed gives the same records, field for field.
    _config, _result, again = run(400, rules=FOURTEEN)
    assert [e for e in again if isinstance(e, ShapleyRecord | Valuation)] == [
        e for e in events if isinstance(e, ShapleyRecord | Valuation)
    ]


class _ExactAlongside:
    """The meta-investor's state, also computing exact Shapley values of each step's game."""

    def __init__(self, state) -> None:
        self._state = state
        self.pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __getattr__(self, name):
        return getattr(self._state, name)

    def step(self, values, time_to_expiry):
        from strategies.meta.shapley import coalition_masks, shapley_exact

        assert callable(values)  # the Monte Carlo path hands the characteristic function
        game = values(coalition_masks(self._state.n_agents))
        result = self._state.step(values, time_to_expiry)
        self.pairs.append((shapley_exact(game), result.phi.copy(), result.stderr.copy()))
        return result


def test_meta_investor_forced_monte_carlo_estimates_lie_within_standard_errors_of_exact() -> None:
    rules = ("oracle", "contrarian", "random", "random", "oracle")
    wrapped: list[_ExactAlongside] = []

    def wrap(meta: MetaInvestor) -> None:
        meta.state = _ExactAlongside(meta.state)  # type: ignore[assignment]
        wrapped.append(meta.state)  # type: ignore[arg-type]

    _config, _result, events = run(
        800, rules=rules, on_meta=wrap, exact_max_agents=4, monte_carlo_permutations=200
    )
    shapley = [e for e in events if isinstance(e, ShapleyRecord)]
    assert {r.method for r in shapley} == {"monte_carlo"}
    assert {r.coalitions for r in shapley} == {2 + 200 * 4}
    exact = np.array([p[0] for p in wrapped[0].pairs])
    estimate = np.array([p[1] for p in wrapped[0].pairs])
    stderr = np.array([p[2] for p in wrapped[0].pairs])
    assert exact.shape == (799, 5)
    np.testing.assert_array_equal(estimate.ravel(), [r.phi for r in shapley])
    # Both satisfy efficiency against the same v(N), the realised P&L.
    np.testing.assert_allclose(estimate.sum(axis=1), exact.sum(axis=1), rtol=1e-12, atol=1e-9)
    error = np.abs(estimate - exact)
    scale = np.abs(exact).max()
    assert error.max() > 1e-6 * scale  # estimates, not the exact values
    within_3 = error <= 3.0 * stderr + 1e-9 * scale
    within_5 = error <= 5.0 * stderr + 1e-9 * scale
    assert within_3.mean() >= 0.97
    assert within_5.mean() >= 0.995


# --------------------------------------------------------------------------- errors name the bar


def _bus_meta(exact_max_agents: int = 12):
    from brokers.config import BrokerConfig
    from engine.core.bus import MessageBus
    from engine.core.clock import SimulatedClock

    bus = MessageBus()
    clock = SimulatedClock()
    params = MetaInvestorParams(n_agents=2, exact_max_agents=exact_max_agents)
    meta = MetaInvestor(
        bus,
        clock,
        "X",
        ["a", "b"],
        params,
        BrokerConfig(),
        max_position=10.0,
        horizon_bars=100,
        rng=np.random.default_rng(3),
    )
    meta.subscribe()
    return bus, meta


def _publish_bar(bus, ts: int, *, open_price: float = 100.0, equity: float = 1e6) -> None:
    from engine.core.events import Bar

    bus.publish(
        PortfolioSnapshot(
            ts_event=ts,
            ts_init=ts,
            seq=bus.next_seq(),
            symbol="X",
            position=0.0,
            avg_price=0.0,
            mark_price=100.0,
            cash=equity,
            realised_pnl=0.0,
            unrealised_pnl=0.0,
            equity=equity,
            exposure=0.0,
            fees=0.0,
            turnover=0.0,
        )
    )
    bus.publish(
        Bar(
            ts_event=ts,
            ts_init=ts,
            seq=bus.next_seq(),
            symbol="X",
            open=open_price,
            high=101.0,
            low=99.0,
            close=100.0,
            volume=1e4,
        )
    )


def _publish_votes(bus, ts: int) -> None:
    from engine.core.events import AgentAction

    for index, agent_id in enumerate(["a", "b"]):
        bus.publish(
            AgentAction(
                ts_event=ts,
                ts_init=ts,
                seq=bus.next_seq(),
                symbol="X",
                agent_id=agent_id,
                agent_index=index,
                bearish=0.05,
                neutral=0.05,
                bullish=0.9,
                action=2,
                confidence=0.5,
            )
        )


@pytest.mark.parametrize("equity", [float("nan"), float("inf")])
def test_meta_investor_non_finite_step_pnl_raises_naming_the_bar(equity: float) -> None:
    from engine.core.errors import HandlerError

    bus, meta = _bus_meta()
    _publish_bar(bus, 1_000)
    _publish_votes(bus, 1_000)
    _publish_bar(bus, 2_000)  # settles the first step
    assert meta.steps == 1
    _publish_votes(bus, 2_000)
    with pytest.raises(HandlerError) as caught:
        _publish_bar(bus, 3_000, equity=equity)
    cause = caught.value.__cause__
    assert isinstance(cause, ValueError)
    assert str(cause).startswith(f"step P&L at bar 3000 (decision at bar 2000) is {equity - 1e6!r}")
    assert "equity went from 1000000.0" in str(cause)


@pytest.mark.parametrize(
    ("exact_max_agents", "detail"),
    [(12, r"coalition value v\[1\]"), (1, r"coalition values must be finite")],
)
def test_meta_investor_nan_coalition_value_raises_naming_the_bar(
    exact_max_agents: int, detail: str
) -> None:
    from engine.core.errors import HandlerError

    bus, meta = _bus_meta(exact_max_agents)
    _publish_bar(bus, 1_000)
    _publish_votes(bus, 1_000)
    with pytest.raises(HandlerError) as caught:
        _publish_bar(bus, 2_000, open_price=float("nan"))  # the step's fill price is NaN
    cause = caught.value.__cause__
    assert isinstance(cause, ValueError)
    assert re.match(
        rf"the step settled at bar 2000 \(decision at bar 1000\): meta-investor step 1: .*{detail}",
        str(cause),
    )
    assert meta.steps == 0


# --------------------------------------------------------------------------- volume cap


def test_meta_investor_volume_cap_shapley_adds_up_to_realised_pnl_value_model_differs() -> None:
    # max_participation = 0.02 caps a fill at ~35 units a bar against trades of up to
    # 200: split fills keep working into later bars, which the one-bar counterfactual
    # model does not see.
    _config, _result, events = run(1_500, broker=COSTS + "\nmax_participation = 0.02")
    shapley = [e for e in events if isinstance(e, ShapleyRecord)]
    snapshots = {e.ts_event: e.equity for e in events if isinstance(e, PortfolioSnapshot)}
    first_decision = next(e for e in events if isinstance(e, TargetPosition))
    change = snapshots[shapley[-1].ts_event] - snapshots[first_decision.ts_event]
    # The defined behaviour: value_full is the realised P&L of the step, and the
    # Shapley values add up to it per step and over the run.
    assert sum(r.phi for r in shapley) == pytest.approx(change, rel=1e-9, abs=1e-6)
    full = {r.ts_event: r.value_full for r in shapley}
    for ts, total in _step_sums(shapley).items():
        assert total == pytest.approx(full[ts], rel=1e-12, abs=1e-9)
    steps = shapley[::3]
    for record in steps:
        assert record.value_full == pytest.approx(
            snapshots[record.ts_event] - snapshots[record.decision_ts], rel=1e-12, abs=1e-9
        )
    # value_model (the model's v(N), a full fill at the next open) differs on the
    # steps where the cap split the fill, and only by what the cap changed.
    differs = [r for r in steps if abs(r.value_model - r.value_full) > 1e-6]
    assert len(differs) > len(steps) // 10
    assert len(differs) < len(steps)
    uncapped = run(1_500)[2]
    uncapped_steps = [e for e in uncapped if isinstance(e, ShapleyRecord)][::3]
    assert all(
        r.value_model == pytest.approx(r.value_full, rel=1e-9, abs=1e-7) for r in uncapped_steps
    )


def test_meta_investor_counts_crr_fallbacks_per_agent_and_values_them_by_black_scholes() -> None:
    from strategies.meta.options import black_scholes_call

    captured: list[MetaInvestor] = []
    # Prices moving by ~1e-7 a step: σ√Δt < rΔt, the CRR tree is undefined.
    _config, _result, events = run(
        300,
        on_meta=captured.append,
        pricing="crr",
        crr_steps=4,
        risk_free_rate=0.05,
        alpha=1e-7,
        **SPEC_LITERAL,
    )
    meta = captured[0]
    assert meta.steps == 299
    # Every step but the first (one price change: σ = 0) and the last (T - t = 0), which
    # are the defined limits of the tree, not fallbacks.
    np.testing.assert_array_equal(meta.crr_fallbacks, meta.steps - 2)
    valuations = [e for e in events if isinstance(e, Valuation)]
    fallbacks = [v for v in valuations if v.pricing == "black_scholes_fallback"]
    assert len(fallbacks) == int(meta.crr_fallbacks.sum())
    assert {v.pricing for v in valuations} == {"crr", "black_scholes_fallback"}
    for valuation in valuations[-30:]:
        # the last step (T - t = 0) is the tree's defined limit, not a fallback
        expected = "black_scholes_fallback" if valuation.time_to_expiry > 0 else "crr"
        assert valuation.pricing == expected
        assert valuation.option_value == black_scholes_call(
            valuation.share_price,
            valuation.strike,
            valuation.time_to_expiry,
            valuation.volatility,
            0.05,
        )
    _config, _result, events = run(
        300, on_meta=captured.append, pricing="crr", crr_steps=64, **SPEC_LITERAL
    )
    assert (captured[1].crr_fallbacks == 0).all()
    assert {e.pricing for e in events if isinstance(e, Valuation)} == {"crr"}

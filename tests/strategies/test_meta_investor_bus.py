"""The meta-investor on the bus, driven by scripted agents on the synthetic market."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sqlalchemy import func, select

from engine.data import load_bars
from engine.events import PortfolioSnapshot, ShapleyRecord, TargetPosition, Valuation
from engine.runner import run_backtest
from storage.db import connect
from storage.models import ShapleyValueRow, ValuationRow
from strategies.ensemble import Ensemble
from strategies.execution import TargetExecution
from strategies.meta.investor import MetaInvestor
from strategies.meta.step import MetaInvestorParams
from strategies.scripted import ScriptedAgent
from tests.conftest import synthetic_scenario

COSTS = "commission_bps = 1.0\ncommission_minimum = 0.5\nslippage_bps = 0.5"


def factory(data, events: list, rules=("oracle", "contrarian", "random"), **meta_options):
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
        )
        rng = np.random.default_rng(config.run.seed)
        agents = [
            ScriptedAgent(bus, clock, symbol, ids[i], i, rule, data=data, rng=rng)
            for i, rule in enumerate(rules)
        ]
        return Ensemble(meta, agents, TargetExecution(bus, clock, symbol))

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

    from engine.cli import app

    out = CliRunner().invoke(
        app, ["shapley", "--db", sqlite_url, "--aggregate", "--format", "json"]
    )
    assert out.exit_code == 0
    import json

    assert len(json.loads(out.output)) == 3


def test_scripted_ensemble_scenario_runs_and_reports_agents() -> None:
    from engine.config import parse_scenario

    config = parse_scenario(
        '[data]\nsource = "synthetic"\n[data.synthetic]\nbars = 1500\n'
        '[strategy]\nkind = "scripted_ensemble"\nagents = ["oracle", "random"]\n'
        "max_position = 100\nconfidence_threshold = -2.0\n[strategy.meta]\nsmoothing = 0.3\n"
    )
    result = run_backtest(config, persist=False)
    assert [a["agent"] for a in result.agents] == ["oracle-0", "random-1"]
    assert result.agents[0]["weight"] > result.agents[1]["weight"]


def test_scripted_ensemble_bad_meta_key_names_section() -> None:
    from engine.config import parse_scenario
    from engine.errors import ConfigError

    config = parse_scenario(
        '[data]\nsource = "synthetic"\n[strategy]\nkind = "scripted_ensemble"\n'
        "[strategy.meta]\nsmoothin = 0.3\n"
    )
    with pytest.raises(ConfigError, match=r"\[strategy.meta\]: .*smoothin"):
        run_backtest(config, persist=False)


def test_meta_investor_long_run_with_strong_alpha_stays_in_float_range() -> None:
    # alpha 0.9: the oracle's price multiplies by ~1.9 a step and the contrarian's
    # shrinks; unrebased they would leave the float range within a few hundred steps.
    _config, _result, events = run(2_500, rules=("oracle", "contrarian"), alpha=0.9)
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
    _config, _result, events = run(600)
    countdown = [v.time_to_expiry for v in events if isinstance(v, Valuation)][::3]
    assert countdown[0] > countdown[-1] >= 0.0
    assert all(a - b == 1.0 for a, b in itertools.pairwise(countdown))


def test_meta_investor_without_known_end_needs_a_rolling_expiry() -> None:
    from engine.bus import MessageBus
    from engine.clock import SimulatedClock
    from engine.config import BrokerConfig
    from engine.errors import ConfigError

    def build(params: MetaInvestorParams) -> MetaInvestor:
        return MetaInvestor(
            MessageBus(), SimulatedClock(), "X", ["a"], params, BrokerConfig(), max_position=1.0
        )

    with pytest.raises(ConfigError, match=r"expiry_bars > 0"):
        build(MetaInvestorParams(n_agents=1))
    assert build(MetaInvestorParams(n_agents=1, expiry_bars=48)).expiry_bars == 48

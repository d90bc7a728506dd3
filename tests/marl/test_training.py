"""Training determinism, checkpoints, ``emarl train`` and the learned agents on the bus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from brokers.costs import CostRates
from engine.app.scenario import load_scenario
from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.errors import ConfigError
from engine.core.events import AgentAction, Features
from indicators.params import IndicatorParams
from strategies.marl.agents import LearnedAgent, NumpyPolicy
from strategies.marl.checkpoint import feature_signature, load_checkpoint, save_checkpoint
from strategies.marl.config import MappoEnsembleConfig, TrainConfig
from strategies.marl.env import MarketData, TradingTerms
from strategies.marl.mappo import train
from strategies.meta.step import MetaInvestorParams

torch.set_num_threads(1)

TINY = TrainConfig(
    updates=2,
    n_envs=4,
    episode_length=12,
    rollout_steps=8,
    epochs=2,
    minibatch_size=16,
    threads=1,
    stage_episodes=(4, 4, 4),
)


def _market(n: int = 300, seed: int = 0) -> MarketData:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    inputs = rng.normal(size=(n, 11))
    inputs[:, 9] = np.abs(inputs[:, 9]) * 0.01 + 0.001  # volatility_30 > 0
    return MarketData(inputs, close, close, np.ones(n, dtype=bool))


def _train(seed: int, allocator: str = "option"):
    import msgspec

    hp = msgspec.structs.replace(TINY, allocator=allocator)
    return train(
        _market(),
        hp,
        seed=seed,
        terms=TradingTerms(
            CostRates(2.5, 0.0, 1.0, 1.0), 100.0, initial_cash=1e5, meta=MetaInvestorParams()
        ),
    )


def _flat(result) -> torch.Tensor:
    tensors = [t.flatten() for p in result.policies for t in p.state_dict().values()]
    tensors += [t.flatten() for t in result.critic.state_dict().values()]
    return torch.cat([t.double() for t in tensors])


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = _train(1), _train(1), _train(2)
    assert torch.equal(_flat(a), _flat(b))
    assert not torch.equal(_flat(a), _flat(c))
    assert len(a.metrics) == 2
    m = a.metrics[-1]
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert np.isfinite(getattr(m, name)), name


def test_learned_allocator_moves_the_weights():
    result = _train(3, allocator="learned")
    assert result.allocator_raw is not None
    assert any(abs(x) > 1e-6 for x in result.allocator_raw)
    assert all(abs(sum(m.weights) - 1.0) < 1e-9 for m in result.metrics)


def test_checkpoint_round_trip_and_feature_mismatch(tmp_path: Path):
    result = _train(4)
    signature = feature_signature(IndicatorParams())
    weights, meta = save_checkpoint(
        tmp_path / "ck.pt",
        result.policies,
        result.critic,
        signature=signature,
        extra={"hyperparameters": {"dropout": 0.1}},
    )
    state = torch.load(weights, weights_only=True)
    assert set(state) == {"mlmi", "nwrqk", "regime", "critic"}
    assert "norm.mean" in state["mlmi"]
    loaded = load_checkpoint(weights, signature)
    x = torch.randn(5, 4)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.policies[0](x).numpy(), result.policies[0](x).numpy())
    stats = json.loads(meta.read_text())["normalisation"]["mlmi"]
    np.testing.assert_allclose(stats["mean"], result.policies[0].norm.mean.numpy())
    other = feature_signature(IndicatorParams(mlmi_k=100))
    with pytest.raises(ConfigError, match="different features"):
        load_checkpoint(weights, other)
    with pytest.raises(ConfigError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt", signature)


def _features(ts: int, warm: bool, mlmi=(0.1, 1.0, 0.01, 0.02)) -> Features:
    return Features(
        ts_event=ts,
        ts_init=ts,
        seq=0,
        symbol="S",
        values=(0.0,) * 13,
        mlmi=mlmi,
        nwrqk=(0.0, 0.1, 50.0, 0.0),
        regime=(0.1, 0.005, 0.0),
        warm=warm,
    )


def test_learned_agent_publishes_only_on_warm_features():
    result = _train(5)
    bus = MessageBus()
    clock = SimulatedClock()
    seen: list[AgentAction] = []
    bus.subscribe(AgentAction, seen.append, "S")
    policy = NumpyPolicy(result.policies[0])
    agent = LearnedAgent(bus, clock, "S", 0, policy)
    agent.subscribe()
    bus.publish(_features(1, warm=False))
    assert seen == []
    bus.publish(_features(2, warm=True))
    assert len(seen) == 1
    action = seen[0]
    p = policy.probabilities(np.array([0.1, 1.0, 0.01, 0.02]))
    assert action.action == int(p.argmax())
    vote = [action.bearish, action.neutral, action.bullish]
    assert vote == [float(i == action.action) for i in range(3)]
    entropy = -sum(q * np.log(q) for q in p if q > 0)
    assert action.confidence == pytest.approx(p.max() - entropy)


SCENARIO = """
[run]
name = "tiny-mappo"
seed = 3

[data]
source = "synthetic"
synthetic = {{ bars = 700 }}

[instrument]
symbol = "SYN"

[broker]
commission_bps = 2.5
commission_minimum = 1.0
slippage_bps = 1.0

[strategy]
kind = "mappo_ensemble"
checkpoint = "ck/agents.pt"
max_position = 100
{extra}

[train]
updates = 1
n_envs = 4
episode_length = 16
rollout_steps = 8
epochs = 1
minibatch_size = 16
threads = 1

[storage]
url = "sqlite:///{db}"
"""


def test_train_command_then_backtest_with_the_checkpoint(tmp_path: Path):
    from engine.app.cli import app

    db = tmp_path / "runs.db"
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(db=db, extra=""))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(scenario), "--updates", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ck" / "agents.pt").is_file()
    assert (tmp_path / "ck" / "agents.json").is_file()
    log = (tmp_path / "ck" / "agents.csv").read_text().splitlines()
    assert log[0].startswith("update,stage,complexity") and len(log) == 3
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        run = conn.execute(text("select status, updates, checkpoint from training_runs")).one()
        rows = conn.execute(text("select count(*) from training_metrics")).scalar_one()
    assert run[0] == "finished" and run[1] == 2 and run[2].endswith("agents.pt")
    assert rows == 2
    # the per-update lines: an update in which no episode ended shows "return -", not nan
    again = tmp_path / "again" / "agents.pt"
    shown = runner.invoke(app, ["train", str(scenario), "--updates", "2", "--out", str(again)])
    assert shown.exit_code == 0, shown.output
    assert "update 1/2" in shown.output and "update 2/2" in shown.output
    assert "nan" not in shown.output.lower()

    backtest = runner.invoke(app, ["backtest", str(scenario), "--json", "-q"])
    assert backtest.exit_code == 0, backtest.output
    with engine.connect() as conn:
        actions = conn.execute(text("select count(*) from agent_actions")).scalar_one()
    assert isinstance(load_scenario(scenario).strategy, MappoEnsembleConfig)
    # three agents vote on every warm bar, none before the warm-up ends
    warmup = IndicatorParams().warmup
    assert 0 < actions <= 3 * (700 - warmup)
    assert actions % 3 == 0


def test_backtest_refuses_a_checkpoint_with_other_features(tmp_path: Path):
    from engine.app.cli import app

    db = tmp_path / "runs.db"
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(db=db, extra=""))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(scenario), "--updates", "1", "-q"]).exit_code == 0
    changed = tmp_path / "changed.toml"
    changed.write_text(SCENARIO.format(db=db, extra="") + "\n[indicators]\nmlmi_k = 100\n")
    result = runner.invoke(app, ["backtest", str(changed), "-q"])
    assert result.exit_code == 2
    assert "different features" in result.output


def _train_on(market, hp, stage_markets=None, updates=None):
    return train(
        market,
        hp,
        seed=4,
        terms=TradingTerms(
            CostRates(2.5, 0.0, 1.0, 1.0), 100.0, initial_cash=1e5, meta=MetaInvestorParams()
        ),
        updates=updates,
        stage_markets=stage_markets,
    )


def test_stage_markets_take_over_when_their_stage_begins():
    import msgspec

    # 4 environments, 12-bar episodes, 8-step rollouts: stage 1 begins on update 3
    hp = msgspec.structs.replace(TINY, updates=4, stage_episodes=(8, 8, 8))
    basic, later = _market(seed=0), _market(seed=1)
    markets = [basic, later, later]
    first = _train_on(basic, hp, updates=2)
    staged_first = _train_on(later, hp, stage_markets=markets, updates=2)
    # stage 0 trades the first stage market (not ``market``) ...
    assert torch.equal(_flat(first), _flat(staged_first))
    assert [m.stage for m in staged_first.metrics] == [0, 0]
    # ... and the next stage's market takes over with its stage
    whole = _train_on(basic, hp)
    staged = _train_on(basic, hp, stage_markets=markets)
    assert [m.stage for m in staged.metrics] == [0, 0, 1, 1]
    assert not torch.equal(_flat(whole), _flat(staged))
    with pytest.raises(ValueError, match="2 stage markets for 3 curriculum stages"):
        _train_on(basic, hp, stage_markets=markets[:2])


def test_synthetic_training_scenario_scales_the_noise_per_stage(tmp_path: Path):
    from engine.app.train import prepare_market, prepare_stage_markets

    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(db=tmp_path / "runs.db", extra=""))
    config = load_scenario(scenario)
    hp = config.train
    _data, _features, _warm, full = prepare_market(config)
    markets = prepare_stage_markets(config, hp)
    assert markets is not None and len(markets) == len(hp.stage_complexity)
    noise = []
    for market, complexity in zip(markets, hp.stage_complexity, strict=True):
        assert len(market.close) == len(full.close)
        assert np.array_equal(market.hard, full.hard)  # the same regimes
        noise.append(np.diff(np.log(market.close)).std())
        if complexity == 1.0:
            np.testing.assert_array_equal(market.close, full.close)
    # returns' spread grows with the stage's complexity (drift and regimes stay)
    assert noise == sorted(noise) and noise[0] < 0.6 * noise[-1]
    # real bars cannot be rescaled: no stage markets, complexity scales costs only
    real = msgspec_replace_source(config)
    assert prepare_stage_markets(real, hp) is None


def msgspec_replace_source(config):
    import msgspec

    return msgspec.structs.replace(
        config, data=msgspec.structs.replace(config.data, source="file", path="bars.parquet")
    )

"""Timings of the learned agents and of MAPPO training (prints figures, asserts nothing).

Run: ``.venv/bin/python benchmarks/bench_marl.py``. Needs the shipped checkpoint
(checkpoints/weichai_mappo.pt) and the Weichai bars (data/weichai_30m.parquet).

* decision latency: one bar in to the TargetPosition out, inside the engine (broker,
  portfolio, feature engine, three policies, ensemble, meta-investor, executor), per
  warm bar: median and p99;
* policy decisions/s: one agent's numpy policy on one feature vector, and the torch
  policies batched (inference_mode, dropout off);
* training: MAPPO updates/s and agent-steps/s on the training scenario's settings;
* a full backtest of scenarios/demo.toml with persistence: bars/s, against backtrader's
  bare SMA(10/30) crossover on the same bars, timed in the same run (the goal's yardstick:
  it differs several-fold between machines).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.app.backtest import run_backtest  # noqa: E402
from engine.app.kernel import build_kernel  # noqa: E402
from engine.app.scenario import load_scenario  # noqa: E402
from engine.core.bus import MessageBus  # noqa: E402
from engine.core.clock import SimulatedClock  # noqa: E402
from engine.core.events import TargetPosition  # noqa: E402
from engine.feeds.bars import BarData, load_bars  # noqa: E402

SCENARIO = ROOT / "scenarios" / "demo.toml"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_decision_latency(bars: int = 4000) -> None:
    config = load_scenario(SCENARIO)
    data = load_bars(config.data, config.instrument.symbol, path=config.data_path())
    data = data.slice(0, min(bars, len(data)))
    bus = MessageBus()
    clock = SimulatedClock()
    kernel = build_kernel(config, bus, clock, bars=data)
    kernel.start()
    decided: list[int] = []
    bus.subscribe(TargetPosition, lambda t: decided.append(1), config.instrument.symbol)
    timings = []
    columns = zip(
        data.ts.tolist(),
        data.open.tolist(),
        data.high.tolist(),
        data.low.tolist(),
        data.close.tolist(),
        data.volume.tolist(),
        strict=True,
    )
    for bar in columns:
        before = len(decided)
        start = time.perf_counter()
        kernel.drive(*bar)
        elapsed = time.perf_counter() - start
        if len(decided) > before:
            timings.append(elapsed)
    median = statistics.median(timings) * 1e6
    p99 = percentile(timings, 99) * 1e6
    print(
        f"decision latency, bar in -> TargetPosition out ({len(timings)} warm bars): "
        f"median {median:8.1f} µs   p99 {p99:8.1f} µs   (goal p99 < 250 µs; source: < 5 ms)"
    )


def bench_policies() -> None:
    from strategies.marl.agents import NumpyPolicy
    from strategies.marl.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(ROOT / "checkpoints" / "weichai_mappo.pt")
    fast = NumpyPolicy(checkpoint.policies[0])
    x = np.array([0.1, 1.0, 0.01, 0.02])
    for _ in range(1000):
        fast.probabilities(x)
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(1000):
            fast.probabilities(x)
        samples.append((time.perf_counter() - start) / 1000)
    single = statistics.median(samples)
    print(
        f"one agent, numpy policy, one decision:             {single * 1e6:8.2f} µs"
        f"   ({1 / single:,.0f} decisions/s; source goal > 100/s)"
    )
    torch.set_num_threads(1)
    rows = 4096
    inputs = [torch.randn(rows, k) for k in (4, 4, 3)]
    with torch.inference_mode():
        for policy, x_batch in zip(checkpoint.policies, inputs, strict=True):
            policy(x_batch)
        start = time.perf_counter()
        repeats = 20
        for _ in range(repeats):
            for policy, x_batch in zip(checkpoint.policies, inputs, strict=True):
                torch.softmax(policy(x_batch), -1).argmax(-1)
        seconds = (time.perf_counter() - start) / repeats
    print(
        f"three torch policies batched ({rows} rows, 1 thread): {seconds * 1e3:8.2f} ms"
        f"   ({rows / seconds:,.0f} ensemble decisions/s)"
    )


def bench_training(updates: int = 3) -> None:
    import msgspec

    from brokers.costs import CostRates
    from strategies.marl.config import TrainConfig
    from strategies.marl.env import MarketData, TradingTerms
    from strategies.marl.mappo import train

    config = load_scenario(ROOT / "scenarios" / "train_weichai.toml")
    hp = msgspec.structs.replace(config.train or TrainConfig(), updates=updates)
    rng = np.random.default_rng(0)
    n = 6000
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.005, n)))
    inputs = rng.normal(size=(n, 11))
    inputs[:, 9] = np.abs(inputs[:, 9]) * 0.01 + 0.001
    market = MarketData(inputs, close, close, np.ones(n, dtype=bool))
    result = train(
        market,
        hp,
        seed=0,
        terms=TradingTerms(CostRates(2.5, 0.0, 5.0, 1.0), 100_000, lot_size=100, initial_cash=1e6),
    )
    steady = result.metrics[1:] or result.metrics
    per_update = statistics.median(m.seconds for m in steady)
    steps = hp.n_envs * hp.rollout_steps * 3
    print(
        f"MAPPO update ({hp.n_envs} envs x {hp.rollout_steps} steps, {hp.epochs} epochs): "
        f"{per_update:6.2f} s   ({1 / per_update:.2f} updates/s, "
        f"{steps / per_update:,.0f} agent-steps/s)"
    )


def bench_backtest(repeats: int = 3) -> None:
    """Best of ``repeats`` runs after a warm-up (the machine is shared, so timings are noisy)."""
    config = load_scenario(SCENARIO)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        run_backtest(config, db_url=url, scenario_path=str(SCENARIO))  # warm-up (JIT, caches)
        results = [
            run_backtest(config, db_url=url, scenario_path=str(SCENARIO)) for _ in range(repeats)
        ]
        bare = max(
            (run_backtest(config, persist=False) for _ in range(repeats)),
            key=lambda r: r.bars_per_second,
        )
    result = max(results, key=lambda r: r.bars_per_second)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_backtest import backtrader_rate

    bars = result.data
    assert isinstance(bars, BarData)  # the demo scenario trades one instrument
    backtrader = max(backtrader_rate(bars) for _ in range(repeats))
    print(
        f"full backtest, learned ensemble, persistence on:   {result.bars_per_second:10,.0f} bars/s"
        f"   ({len(result.data):,} bars in {result.wall_seconds:.2f} s, best of {repeats}; "
        f"goal >= 10,000)"
    )
    print(
        f"the same without persistence:                      {bare.bars_per_second:10,.0f} bars/s"
        f"   ({result.rows_written:,} rows cost "
        f"{(1 / result.bars_per_second - 1 / bare.bars_per_second) * 1e6:.0f} µs per bar)"
    )
    print(
        f"backtrader, bare SMA(10/30) crossover, same bars:  {backtrader:10,.0f} bars/s"
        f"   (best of {repeats}; the learned ensemble with persistence is "
        f"{result.bars_per_second / backtrader:.2f}x)"
    )


if __name__ == "__main__":
    bench_policies()
    bench_decision_latency()
    bench_training()
    bench_backtest()

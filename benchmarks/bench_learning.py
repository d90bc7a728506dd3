"""Episodes the basic curriculum stage needs to pass the learning test (prints figures).

Run: ``.venv/bin/python benchmarks/bench_learning.py``. The setting is the learning test's
(tests/marl/test_learning.py): MAPPO on a 6,000-bar basic-stage synthetic market
(complexity 0.3) and its mirror image, the ensemble measured after every update on a
5,000-bar basic-stage market of another seed. It passes when its strategic accuracy
(k = 1) over more than 100 non-neutral decisions is at least 65% and its Sharpe beats
buy-and-hold and a uniformly random policy on those bars. Printed per seed: the first
update and episode count (episodes started, 16 run in parallel) at which it passes,
whether it still passes at the end of the test's 30 updates, and the final figures.
The first row is the test's own seeds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from brokers.costs import CostRates  # noqa: E402
from engine.feeds.config import SyntheticConfig  # noqa: E402
from engine.feeds.synthetic import generate_market  # noqa: E402
from indicators.features import build_features, warm_mask  # noqa: E402
from strategies.marl.config import TrainConfig  # noqa: E402
from strategies.marl.env import TradingTerms  # noqa: E402
from strategies.marl.evaluate import held_out_figures  # noqa: E402
from strategies.marl.mappo import (  # noqa: E402
    join_markets,
    market_from_bars,
    mirrored_bars,
    train,
)
from strategies.meta.step import MetaInvestorParams  # noqa: E402

COMPLEXITY = 0.3  # the basic stage (SPEC 1)
HP = TrainConfig(
    updates=30,
    n_envs=16,
    episode_length=64,
    rollout_steps=64,
    epochs=4,
    minibatch_size=256,
    threads=1,
    allocator="equal",
    reward_synergy=0.0,
    gamma=0.5,
    gae_lambda=0.5,
    entropy_coef=0.1,
)
# (torch seed, training market seed, held-out market seed)
RUNS = ((5, 11, 12), (6, 11, 12), (7, 11, 12), (5, 21, 22), (9, 31, 32))


def _market(data):
    features = build_features(data.open, data.high, data.low, data.close, data.volume, data.ts)
    return market_from_bars(data, features, warm_mask(features))


def _passes(f: dict[str, float]) -> bool:
    return bool(
        f["decisions"] > 100
        and f["accuracy_k1"] >= 0.65
        and f["sharpe"] > f["sharpe_buy_and_hold"]
        and f["sharpe"] > f["sharpe_random"]
    )


def run(seed: int, train_seed: int, test_seed: int) -> None:
    data = generate_market(SyntheticConfig(bars=6000), seed=train_seed, complexity=COMPLEXITY)
    training = join_markets([_market(data), _market(mirrored_bars(data))])
    test = generate_market(SyntheticConfig(bars=5000), seed=test_seed, complexity=COMPLEXITY)
    held = _market(test)
    rows = np.flatnonzero(held.warm)
    span = slice(rows[0], rows[-1] + 1)
    first: list[tuple[int, int]] = []

    def inspect(metrics, policies) -> None:
        figures = held_out_figures(
            policies,
            held.inputs[span],
            test.close[span],
            confidence_threshold=0.0,
            rng=np.random.default_rng(0),
            max_position=100.0,
        )
        if not first and _passes(figures):
            first.append((metrics.update, metrics.episodes))

    started = time.perf_counter()
    result = train(
        training,
        HP,
        seed=seed,
        terms=TradingTerms(
            CostRates(0.5, 0.0, 0.0, 0.5),
            max_position=100.0,
            lot_size=1.0,
            confidence_threshold=0.0,
            initial_cash=1e6,
            meta=MetaInvestorParams(allocator="equal"),
        ),
        inspect=inspect,
    )
    seconds = time.perf_counter() - started
    final = held_out_figures(
        result.policies,
        held.inputs[span],
        test.close[span],
        confidence_threshold=0.0,
        rng=np.random.default_rng(0),
        max_position=100.0,
    )
    reached = f"update {first[0][0]}, {first[0][1]} episodes" if first else "not reached"
    print(
        f"seed {seed} markets {train_seed}/{test_seed}: threshold at {reached}; after "
        f"{result.episodes} episodes ({seconds:.1f} s): "
        f"{'passes' if _passes(final) else 'FAILS'}, k1 {final['accuracy_k1']:.3f} "
        f"k8 {final['accuracy_k8']:.3f} on {final['decisions']:.0f} decisions, Sharpe "
        f"{final['sharpe']:.4f} (buy-and-hold {final['sharpe_buy_and_hold']:.4f}, random "
        f"{final['sharpe_random']:.4f})",
        flush=True,
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    print("learning test, basic stage: episodes to the threshold (source target: < 1,000)")
    for seed, train_seed, test_seed in RUNS:
        run(seed, train_seed, test_seed)

"""Timings of the meta-investor's mathematics (prints figures, asserts nothing).

Run: ``.venv/bin/python benchmarks/bench_meta.py``. Every kernel is called
once before timing so that JIT compilation (or loading the numba cache) is
not counted. Each line prints the median and the 99th percentile of the
timing samples; a sample is one call, or the mean of ``inner`` calls where a
single call is too short to time on its own.

The headline step figure is what the bus handler does per bar for 3 agents:
the 8 coalition P&Ls with ``coalition_pnl_nb`` (the handler's kernel), then
the state's step (exact Shapley values, share prices, 3 Black-Scholes values,
allocation). The handler line adds the rest of ``MetaInvestor`` settling a
step: its checks and building and publishing the 3 ``ShapleyRecord`` and 3
``Valuation`` events, on a bus without subscribers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from brokers.config import BrokerConfig
from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.events import Bar
from strategies.meta.decision import coalition_pnl_nb, sampled_coalition_values
from strategies.meta.investor import MetaInvestor
from strategies.meta.options import black_scholes_call_array, crr_call
from strategies.meta.shapley import (
    coalition_masks,
    default_permutations,
    shapley_exact,
    shapley_monte_carlo,
)
from strategies.meta.step import MetaInvestorParams, MetaInvestorState


def samples_seconds(function: Callable[[], object], repeats: int, inner: int = 1) -> np.ndarray:
    """Seconds per call: ``repeats`` samples, each the mean over ``inner`` calls."""
    function()  # warm-up: JIT compilation or cache load
    samples = np.empty(repeats)
    clock = time.perf_counter_ns
    for k in range(repeats):
        start = clock()
        for _ in range(inner):
            function()
        samples[k] = (clock() - start) / inner
    return samples * 1e-9


def _figure(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:9.2f} µs"
    return f"{seconds * 1e3:9.3f} ms"


def report(name: str, samples: np.ndarray, goal: str) -> None:
    median = float(np.median(samples))
    p99 = float(np.percentile(samples, 99))
    print(f"{name:<58s} median {_figure(median)}  p99 {_figure(p99)}   (goal {goal})")


BROKER = BrokerConfig(commission_bps=1.0, commission_minimum=0.5, slippage_bps=0.5)


def _random_steps(
    rng: np.random.Generator, n: int, count: int
) -> list[tuple[np.ndarray, float, float, float, float]]:
    """(votes, previous position, previous close, open, close) of ``count`` steps."""
    steps = []
    for _ in range(count):
        votes = rng.dirichlet(np.ones(3), size=n)
        previous = float(rng.choice([0.0, 40.0, -60.0]))
        previous_close = 100.0 + float(rng.normal())
        open_price = previous_close + 0.1 * float(rng.normal())
        close_price = open_price + float(rng.normal())
        steps.append((votes, previous, previous_close, open_price, close_price))
    return steps


def bench_step() -> None:
    rng = np.random.default_rng(0)
    state = MetaInvestorState(MetaInvestorParams())
    masks = coalition_masks(3).astype(np.float64)
    steps = _random_steps(rng, 3, 256)
    pnl = np.empty(8)
    counter = iter(range(1 << 62))
    slippage = BROKER.slippage_bps / 1e4
    commission_rate = BROKER.commission_bps / 1e4

    def coalitions_and_step() -> None:
        votes, previous, previous_close, open_price, close_price = steps[next(counter) % 256]
        coalition_pnl_nb(
            votes,
            state.weights,
            masks,
            100.0,
            0.0,
            1.0,
            0.0,
            previous,
            previous_close,
            open_price,
            close_price,
            slippage,
            commission_rate,
            BROKER.commission_per_unit,
            BROKER.commission_minimum,
            pnl,
        )
        pnl[0] = 0.0
        state.step(pnl, 100.0)

    report(
        "meta-investor step, 3 agents (8 coalition P&Ls + step)",
        samples_seconds(coalitions_and_step, 20_000),
        "< 15 µs",
    )

    games = [rng.normal(size=8) for _ in range(256)]
    for game in games:
        game[0] = 0.0

    def step_only() -> None:
        state.step(games[next(counter) % 256], 100.0)

    report("  the step alone, coalition values given", samples_seconds(step_only, 20_000), "-")

    bench_handler_settle(3)
    bench_handler_settle(14)


def bench_handler_settle(n: int) -> None:
    """``MetaInvestor.on_bar`` settling a pending step, on a bus without subscribers."""
    rng = np.random.default_rng(4)
    bus = MessageBus()
    meta = MetaInvestor(
        bus,
        SimulatedClock(),
        "X",
        [f"agent-{i}" for i in range(n)],
        MetaInvestorParams(n_agents=n),
        BROKER,
        max_position=100.0,
        horizon_bars=10**9,
        rng=np.random.default_rng(5),
    )
    steps = _random_steps(rng, n, 256)
    bars = [
        Bar(
            ts_event=k + 2,
            ts_init=k + 2,
            seq=k,
            symbol="X",
            open=step[3],
            high=max(step[3], step[4]) + 0.5,
            low=min(step[3], step[4]) - 0.5,
            close=step[4],
            volume=1e4,
        )
        for k, step in enumerate(steps)
    ]
    pending = [
        # the decision's rule: (position size, confidence threshold, no-trade band)
        (votes, np.full(n, 1.0 / n), previous, 1e6, previous_close, k + 1, (100.0, 0.0, 0.0))
        for k, (votes, previous, previous_close, _o, _c) in enumerate(steps)
    ]
    pnl = rng.normal(size=256)
    repeats = 20_000 if n <= 12 else 2_000
    samples = np.empty(repeats)
    clock = time.perf_counter_ns
    for k in range(-1, repeats):  # k = -1: warm-up
        j = k % 256
        meta._pending = pending[j]
        meta._equity = 1e6 + pnl[j]
        start = clock()
        meta.on_bar(bars[j])
        samples[k] = clock() - start
    if n <= meta.state.params.exact_max_agents:
        name = f"  handler settle, {n} agents: {1 << n} coalitions, step, {2 * n} events"
    else:
        permutations = default_permutations(n)
        name = f"  handler settle, {n} agents: Monte Carlo, {permutations} permutations"
    report(name, samples * 1e-9, "-")


def bench_shapley() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=1 << 12)
    report("exact Shapley, n = 12", samples_seconds(lambda: shapley_exact(v), 200), "< 2 ms")

    n = 50
    # the meta-investor's characteristic function: max_position, threshold, lot, band,
    # previous position, previous close, open, close, slippage and commission rates
    value = sampled_coalition_values(
        rng.dirichlet(np.ones(3), size=n),
        rng.dirichlet(np.ones(n)),
        (10.0, 0.0, 1.0, 0.0, 1.0, 100.0, 100.2, 100.5, 1e-4, 1e-4, 0.0, 0.0),
        0.5,
    )
    generator = np.random.default_rng(2)
    report(
        "Monte Carlo Shapley, n = 50, 1000 permutations",
        samples_seconds(lambda: shapley_monte_carlo(value, n, 1000, generator), 30),
        "< 20 ms",
    )
    games = rng.normal(size=1 << 20)
    report(
        "  the same on a 2^20 array game (n = 20)",
        samples_seconds(lambda: shapley_monte_carlo(games, 20, 1000, generator), 30),
        "-",
    )


def bench_options() -> None:
    rng = np.random.default_rng(3)
    S = rng.uniform(0.5, 2.0, 100)
    K = rng.uniform(0.5, 2.0, 100)
    sigma = rng.uniform(0.05, 1.0, 100)
    out = np.empty(100)
    report(
        "Black-Scholes, 100 agents",
        samples_seconds(lambda: black_scholes_call_array(S, K, 50.0, sigma, 0.0, out), 2000, 10),
        "< 20 µs",
    )
    scratch = np.empty(1001)
    report(
        "CRR binomial call, 1000 steps",
        samples_seconds(
            lambda: crr_call(1.0, 1.0, 50.0, 0.3, 0.001, steps=1000, scratch=scratch), 300
        ),
        "< 1 ms",
    )


def main() -> None:
    bench_step()
    bench_shapley()
    bench_options()


if __name__ == "__main__":
    main()

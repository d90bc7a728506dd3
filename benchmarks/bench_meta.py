"""Timings of the meta-investor's mathematics (prints figures, asserts nothing).

Run: ``.venv/bin/python benchmarks/bench_meta.py``. Every kernel is called
once before timing so that JIT compilation (or loading the numba cache) is
not counted. Figures are medians over repeated calls.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from strategies.meta import (
    MetaInvestorParams,
    MetaInvestorState,
    black_scholes_call_array,
    crr_call,
    shapley_exact,
    shapley_monte_carlo,
    trading_coalition_values,
    trading_value_function,
)


def median_seconds(function, repeats: int, inner: int = 1) -> float:
    function()  # warm-up: JIT compilation or cache load
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            function()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def report(name: str, seconds: float, goal: str) -> None:
    if seconds < 1e-3:
        figure = f"{seconds * 1e6:10.2f} µs"
    else:
        figure = f"{seconds * 1e3:10.3f} ms"
    print(f"{name:<52s} {figure}   (goal {goal})")


def bench_step() -> None:
    rng = np.random.default_rng(0)
    state = MetaInvestorState(MetaInvestorParams())
    games = []
    for _ in range(256):
        v = trading_coalition_values(
            rng.dirichlet(np.ones(3), size=3),
            state.weights,
            max_position=10.0,
            confidence_threshold=0.0,
            previous_position=0.0,
            price=100.0,
            price_change=float(rng.normal()),
            commission_bps=1.0,
            slippage_bps=1.0,
        )
        games.append(v)
    counter = iter(range(1 << 62))

    def one_step():
        state.step(games[next(counter) % 256], 100.0)

    # One step per timing sample: the median of single-step timings.
    one_step()
    samples = []
    for _ in range(20_000):
        start = time.perf_counter_ns()
        one_step()
        samples.append(time.perf_counter_ns() - start)
    report(
        "meta-investor step, 3 agents (exact Shapley)", statistics.median(samples) * 1e-9, "< 15 µs"
    )

    probabilities = rng.dirichlet(np.ones(3), size=3)
    weights = np.full(3, 1.0 / 3.0)
    out = np.empty(8)

    def values_and_step():
        trading_coalition_values(
            probabilities,
            weights,
            max_position=10.0,
            confidence_threshold=0.0,
            previous_position=0.0,
            price=100.0,
            price_change=0.5,
            out=out,
        )
        state.step(out, 100.0)

    report(
        "  the same, with trading_coalition_values first",
        median_seconds(values_and_step, 2000, 10),
        "-",
    )


def bench_shapley() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=1 << 12)
    report("exact Shapley, n = 12", median_seconds(lambda: shapley_exact(v), 200), "< 2 ms")

    n = 50
    value = trading_value_function(
        rng.dirichlet(np.ones(3), size=n),
        rng.dirichlet(np.ones(n)),
        max_position=10.0,
        confidence_threshold=0.0,
        previous_position=1.0,
        price=100.0,
        price_change=0.5,
        commission_bps=1.0,
    )
    generator = np.random.default_rng(2)
    report(
        "Monte Carlo Shapley, n = 50, 1000 permutations",
        median_seconds(lambda: shapley_monte_carlo(value, n, 1000, generator), 30),
        "< 20 ms",
    )
    games = rng.normal(size=1 << 20)
    report(
        "  the same on a 2^20 array game (n = 20)",
        median_seconds(lambda: shapley_monte_carlo(games, 20, 1000, generator), 30),
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
        median_seconds(lambda: black_scholes_call_array(S, K, 50.0, sigma, 0.0, out), 2000, 10),
        "< 20 µs",
    )
    scratch = np.empty(1001)
    report(
        "CRR binomial call, 1000 steps",
        median_seconds(
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

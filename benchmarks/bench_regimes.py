"""The meta-investor's acceptance figures on the synthetic regime market (prints, asserts
nothing): scenarios/regimes_meta.toml over the held-out seeds 100..109 (the defaults were
chosen on seeds 0..5), beside SPEC 5's literal meta-investor. See engine/acceptance.py.

Run: ``.venv/bin/python benchmarks/bench_regimes.py [SEEDS]`` (e.g. ``100-109``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from engine.app.acceptance import regime_acceptance
from engine.app.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "regimes_meta.toml"


def main() -> None:
    first, _, last = (sys.argv[1] if len(sys.argv) > 1 else "100-109").partition("-")
    seeds = range(int(first), int(last or first) + 1)
    started = time.perf_counter()
    rows = regime_acceptance(load_scenario(SCENARIO), seeds)
    print(
        f"{'seed':>5} {'meta':>7} {'literal':>8} {'equal':>7} {'trend':>7} {'mean_rev':>8} "
        f"{'noise':>7}  beats  {'lag trend':>9} {'lag MR':>7} {'>1/2 MR':>8} {'N_eff':>6} "
        f"{'prices':>18}"
    )
    for r in rows:
        s = r.singles
        lag_trend, _ = r.lags["trend"]
        lag_mr, share_mr = r.lags["mean_revert"]
        print(
            f"{r.seed:>5} {r.meta:7.2f} {r.literal:8.2f} {r.equal:7.2f} {s['trend']:7.2f} "
            f"{s['mean_revert']:8.2f} {s['random']:7.2f}  {'yes' if r.wins else 'no':>5}  "
            f"{lag_trend:9.0f} {lag_mr:7.0f} {share_mr:8.0%} {r.effective_agents:6.2f} "
            f"{r.share_price_min:8.2g}..{r.share_price_max:<8.3g}"
        )

    def median(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return float(np.median(finite)) if finite else math.nan

    for name, wins, lags, eff in (
        (
            "meta-investor (defaults)",
            [r.wins for r in rows],
            [r.lags for r in rows],
            [r.effective_agents for r in rows],
        ),
        (
            "SPEC-literal meta-investor",
            [r.literal_wins for r in rows],
            [r.literal_lags for r in rows],
            [r.literal_effective_agents for r in rows],
        ),
    ):
        print(
            f"{name}: beats equal weights and the best single agent on {sum(wins)} of "
            f"{len(rows)} seeds; median lag after a regime change: trend follower "
            f"{median([lag['trend'][0] for lag in lags]):.0f} bars, mean-reverter "
            f"{median([lag['mean_revert'][0] for lag in lags]):.0f} bars; mean effective "
            f"number of agents {np.mean(eff):.2f}"
        )
    print(f"({len(rows)} seeds x 6 backtests in {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

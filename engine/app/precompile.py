"""Fill numba's on-disk cache before the first run (``make`` runs it once, at set-up).

The indicators, the learned agents and the meta-investor are numba kernels compiled on
first use and cached beside their sources (``cache=True``). In a fresh clone the first
backtest would compile them all (some 30 s); this module runs the shipped scenarios'
strategies once on a short synthetic market instead, and builds the feature matrix that
training and ``emarl features`` use, so that the first real run loads compiled code.
Kernels are compiled per argument type, and every run passes the same types (float64
arrays, Python floats and ints), so the synthetic bars compile what the real bars need.

Run it as ``python -m engine.app.precompile``; it prints how long it took.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.app.backtest import run_backtest
from engine.app.scenario import ScenarioConfig, load_scenario
from engine.app.sweep_grid import with_overrides
from engine.feeds.bars import load_bars
from indicators.features import build_features

__all__ = ["SCENARIOS", "precompile"]

ROOT = Path(__file__).resolve().parents[2]
#: the shipped scenarios whose strategies are compiled: the learned ensemble (the demo)
#: and the scripted one (the same meta-investor kernels with other agents)
SCENARIOS = ("scenarios/demo.toml", "scenarios/scripted_meta.toml")


def _on_synthetic_bars(config: ScenarioConfig, bars: int) -> ScenarioConfig:
    """``config`` on ``bars`` bars of the synthetic market of its bar length (a learned
    ensemble's checkpoint is used there as a declared transfer)."""
    overrides: dict[str, object] = {
        "data.source": "synthetic",
        "data.path": "",
        "data.start": "",
        "data.end": "",
        "data.synthetic.bars": bars,
        "run.trade_start": "",
    }
    if config.strategy.__struct_config__.tag == "mappo_ensemble":
        overrides["strategy.allow_transfer"] = True
    return with_overrides(config, overrides, source="precompile")


def precompile(bars: int = 3_000) -> float:
    """Run every kernel the shipped scenarios and the feature matrix use; the seconds it
    took."""
    started = time.perf_counter()
    for name in SCENARIOS:
        config = _on_synthetic_bars(load_scenario(ROOT / name), bars)
        run_backtest(config, persist=False)
        data = load_bars(config.data, config.universe[0].symbol, seed=config.run.seed)
        build_features(
            data.open, data.high, data.low, data.close, data.volume, data.ts, config.indicators
        )
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"numba's cache is filled ({precompile():.1f} s)")

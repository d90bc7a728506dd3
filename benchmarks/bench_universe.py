"""A universe's throughput and memory: many symbols on one clock, a strategy per symbol.

Workload: ``--symbols`` synthetic symbols (30-minute bars, each its own regime market),
``--bars`` bars each, every symbol on every time slice; an SMA(10)/SMA(30) crossover per
symbol, market orders, 1 bp commission; SQLite persistence of orders, fills and one
snapshot per bar per symbol on. Then the learned ensemble on ``--learned-symbols``
symbols x ``--learned-bars`` bars: the shipped checkpoint's three agents (weights shared)
with a feature engine and a meta-investor per symbol, persistence on (Shapley values and
valuations included), with the demo's execution rule (a target change under a tenth of
the position untraded, a position held at least 8 bars): up to ``max_position`` units a
symbol, then sized by equity with the account split by the meta-investors' confidence.
A bar-event is one symbol's bar. Each figure comes from a fresh process (peak RSS is the
process's); the rate is over the whole run (start-up included), the replay's over its
bars alone. Figures are printed, not asserted.

    python benchmarks/bench_universe.py [--symbols 100] [--bars 20000]
        [--learned-symbols 20] [--learned-bars 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


LEARNED = f"""
kind = "mappo_ensemble"
checkpoint = "{ROOT / "checkpoints" / "weichai_mappo.pt"}"
allow_transfer = true
max_position = 1000
no_trade_band = 0.1
min_hold_bars = 8
"""
BY_CONFIDENCE = """
allocation = "confidence"
[strategy.sizing]
method = "equity_fraction"
fraction = 0.5
"""
SMA = "fast = 10\nslow = 30\nquantity = 100"


def scenario_text(symbols: int, bars: int, url: str, learned: int = 0) -> str:
    """The workload: SMA (``learned`` 0), the learned ensemble (1), or it sized by the
    meta-investors' confidence (2)."""
    strategy = SMA if not learned else LEARNED + (BY_CONFIDENCE if learned == 2 else "")
    instruments = "".join(f'[[instruments]]\nsymbol = "S{i:03d}"\n' for i in range(symbols))
    return f"""
[run]
name = "bench-universe"
seed = 11
[data]
source = "synthetic"
bar_minutes = 30
[data.synthetic]
bars = {bars}
{instruments}
[broker]
initial_cash = 100_000_000.0
commission_bps = 1.0
[storage]
url = "{url}"
[strategy]
{strategy}
"""


def child(symbols: int, bars: int, persist: bool, learned: int) -> None:
    from engine.app.backtest import load_data, run_backtest
    from engine.app.scenario import parse_scenario

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/u.db"
        config = parse_scenario(scenario_text(symbols, bars, url, learned))
        data = load_data(config)
        started = time.perf_counter()
        result = run_backtest(config, data=data, persist=persist)
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "events": len(data),
                "wall": wall,
                "rate": len(data) / wall,
                "replay_rate": result.replay_bars_per_second,
                "rows": result.rows_written,
                "fills": result.fills,
                "peak_mb": peak,
                "return": result.summary.total_return,
            }
        )
    )


def measure(symbols: int, bars: int, persist: bool, learned: int = 0) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            *map(str, (symbols, bars, int(persist), int(learned))),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def report(what: str, symbols: int, bars: int, persist: bool, figures: dict[str, float]) -> None:
    print(
        f"universe {symbols} symbols x {bars:,} bars, {what}, persistence "
        f"{'on ' if persist else 'off'}: {figures['events']:,} bar-events in "
        f"{figures['wall']:.1f} s = {figures['rate']:,.0f} bar-events/s "
        f"(replay {figures['replay_rate']:,.0f}/s), {figures['fills']:,} fills, "
        f"{figures['rows']:,} rows, peak RSS {figures['peak_mb']:,.0f} MB, "
        f"return {figures['return']:+.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--learned-symbols", type=int, default=20)
    parser.add_argument("--learned-bars", type=int, default=10_000)
    parser.add_argument("--child", nargs=4, type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], bool(args.child[2]), args.child[3])
        return
    for persist in (True, False):
        figures = measure(args.symbols, args.bars, persist)
        report("SMA", args.symbols, args.bars, persist, figures)
    symbols, bars = args.learned_symbols, args.learned_bars
    for learned, what in ((1, "learned ensemble"), (2, "learned ensemble by confidence")):
        report(what, symbols, bars, True, measure(symbols, bars, True, learned))


if __name__ == "__main__":
    main()

"""A universe's throughput and memory: many symbols on one clock, SMA per symbol.

Workload: ``--symbols`` synthetic symbols (30-minute bars, each its own regime market),
``--bars`` bars each, every symbol on every time slice; an SMA(10)/SMA(30) crossover per
symbol, market orders, 1 bp commission; SQLite persistence of orders, fills and one
snapshot per bar per symbol on. A bar-event is one symbol's bar. Each figure comes from
a fresh process (peak RSS is the process's). Figures are printed, not asserted.

    python benchmarks/bench_universe.py [--symbols 100] [--bars 20000]
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


def scenario_text(symbols: int, bars: int, url: str) -> str:
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
[strategy]
fast = 10
slow = 30
quantity = 100
[storage]
url = "{url}"
"""


def child(symbols: int, bars: int, persist: bool) -> None:
    from engine.app.backtest import load_data, run_backtest
    from engine.app.scenario import parse_scenario

    with tempfile.TemporaryDirectory() as folder:
        config = parse_scenario(scenario_text(symbols, bars, f"sqlite:///{folder}/u.db"))
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
            }
        )
    )


def measure(symbols: int, bars: int, persist: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(symbols), str(bars), str(int(persist))],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--child", nargs=3, type=int, metavar=("SYMBOLS", "BARS", "PERSIST"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], bool(args.child[2]))
        return
    for persist in (True, False):
        figures = measure(args.symbols, args.bars, persist)
        print(
            f"universe {args.symbols} symbols x {args.bars:,} bars, SMA, persistence "
            f"{'on ' if persist else 'off'}: {figures['events']:,} bar-events in "
            f"{figures['wall']:.1f} s = {figures['rate']:,.0f} bar-events/s "
            f"(replay {figures['replay_rate']:,.0f}/s), {figures['fills']:,} fills, "
            f"{figures['rows']:,} rows, peak RSS {figures['peak_mb']:,.0f} MB"
        )


if __name__ == "__main__":
    main()

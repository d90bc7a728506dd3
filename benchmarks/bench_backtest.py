"""Backtest throughput and memory: emarl against backtrader and backtesting.py.

Workload (the same for every engine): synthetic 30-minute bars, SMA(10)/SMA(30)
long/short crossover, market orders, zero costs. emarl runs with the bus,
broker, portfolio and SQLite persistence of orders, fills and per-bar
snapshots all on. Peak memory is measured for 1,000,000 bars in a separate
process. Figures are printed, not asserted.

    python benchmarks/bench_backtest.py [--bars 200000] [--memory-bars 1000000] [--skip-others]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.app.backtest import run_backtest  # noqa: E402
from engine.app.scenario import parse_scenario  # noqa: E402
from engine.feeds.bars import BarData  # noqa: E402
from engine.feeds.config import SyntheticConfig  # noqa: E402
from engine.feeds.synthetic import generate_market  # noqa: E402

QUANTITY = 100


def scenario(url: str):
    return parse_scenario(
        f"""
[data]
source = "synthetic"
[strategy]
fast = 10
slow = 30
quantity = {QUANTITY}
[storage]
url = "{url}"
"""
    )


def emarl_rate(data: BarData, persist: bool) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as folder:
        config = scenario(f"sqlite:///{folder}/bench.db")
        result = run_backtest(config, data=data, persist=persist)
    return len(data) / result.wall_seconds, result.fills


def frame(data: BarData):
    import pandas as pd

    return pd.DataFrame(
        {
            "Open": data.open,
            "High": data.high,
            "Low": data.low,
            "Close": data.close,
            "Volume": data.volume,
        },
        index=pd.to_datetime(data.ts, utc=True).tz_localize(None),
    )


def backtrader_rate(data: BarData) -> float:
    import backtrader as bt

    class Cross(bt.Strategy):
        def __init__(self) -> None:
            self.fast = bt.indicators.SMA(self.data.close, period=10)
            self.slow = bt.indicators.SMA(self.data.close, period=30)

        def next(self) -> None:
            target = QUANTITY if self.fast[0] > self.slow[0] else -QUANTITY
            if self.fast[0] != self.slow[0] and self.position.size != target:
                self.order_target_size(target=target)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame(data)))
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(1e9)
    start = time.perf_counter()
    cerebro.run()
    return len(data) / (time.perf_counter() - start)


def backtesting_rate(data: BarData) -> float | None:
    try:
        from backtesting import Backtest, Strategy
    except ImportError:
        return None

    def sma(values, n):
        import pandas as pd

        return pd.Series(values).rolling(n).mean().to_numpy()

    class Cross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 30)

        def next(self) -> None:
            if self.fast[-1] > self.slow[-1] and self.position.size <= 0:
                self.position.close()
                self.buy(size=QUANTITY)
            elif self.fast[-1] < self.slow[-1] and self.position.size >= 0:
                self.position.close()
                self.sell(size=QUANTITY)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = Backtest(frame(data), Cross, cash=1e9, commission=0.0, finalize_trades=True)
        start = time.perf_counter()
        test.run()
    return len(data) / (time.perf_counter() - start)


def bare_loop_rate(data: BarData) -> float:
    closes = data.close.tolist()
    start = time.perf_counter()
    fast_sum = slow_sum = 0.0
    for i, close in enumerate(closes):
        fast_sum += close - (closes[i - 10] if i >= 10 else 0.0)
        slow_sum += close - (closes[i - 30] if i >= 30 else 0.0)
    return len(closes) / (time.perf_counter() - start)


def memory_child(bars: int) -> None:
    data = generate_market(SyntheticConfig(bars=bars), seed=1)
    with tempfile.TemporaryDirectory() as folder:
        result = run_backtest(scenario(f"sqlite:///{folder}/bench.db"), data=data)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak_mb:.0f} {len(data) / result.wall_seconds:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--memory-bars", type=int, default=1_000_000)
    parser.add_argument("--skip-others", action="store_true")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return

    data = generate_market(SyntheticConfig(bars=args.bars), seed=1)
    print(
        f"backtest throughput, {args.bars:,} synthetic 30-minute bars, SMA(10/30) long/short, "
        "market orders, zero costs"
    )
    emarl_rate(data.slice(0, 20_000), True)  # warm-up: imports, migrations
    persisted, fills = max(emarl_rate(data, True) for _ in range(3))
    in_memory, _ = max(emarl_rate(data, False) for _ in range(3))
    print(
        f"  emarl, persistence on (SQLite)  {persisted:>10,.0f} bars/s   ({fills:,} fills)"
        "   goal >= 100,000"
    )
    print(f"  emarl, persistence off          {in_memory:>10,.0f} bars/s")
    print(f"  bare loop over closes, 2 sums   {bare_loop_rate(data):>10,.0f} bars/s")
    if not args.skip_others:
        bt_rate = backtrader_rate(data)
        print(
            f"  backtrader                      {bt_rate:>10,.0f} bars/s"
            f"   emarl is {persisted / bt_rate:.1f}x (goal > 13x)"
        )
        bp_rate = backtesting_rate(data)
        if bp_rate is not None:
            print(
                f"  backtesting.py                  {bp_rate:>10,.0f} bars/s"
                f"   emarl is {persisted / bp_rate:.2f}x"
            )
    child = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(args.memory_bars)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, rate = child.stdout.split()
    print(
        f"  peak memory, {args.memory_bars:,} bars with persistence: {float(peak):,.0f} MB"
        f" (goal < 1,024 MB), {float(rate):,.0f} bars/s"
    )


if __name__ == "__main__":
    main()

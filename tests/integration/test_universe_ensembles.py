"""Ensembles across a universe: one meta-investor, feature engine and panel per symbol.

* a symbol of a learned ensemble (the shipped checkpoint's agents, their weights shared)
  trades and is credited the same to the last digit whatever the other symbols are and
  in whichever order they are listed: nothing passes between the symbols;
* with costs and borrow fees, every symbol's credit adds up to its own P&L (realised plus
  unrealised less its commissions and borrow fees, counted independently from the fills
  and the snapshots here), and all symbols' together to the account's P&L;
* the ``confidence`` allocation splits the account by the latest published confidences
  (brute force over the stored decisions).
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from engine.app.backtest import run_backtest
from engine.app.cli import app
from engine.app.scenario import parse_scenario
from engine.core.errors import ConfigError
from engine.core.events import (
    BUY,
    OrderFilled,
    PortfolioSnapshot,
    ShapleyRecord,
    TargetPosition,
)
from reporting import build_report
from storage.db import connect
from storage.models import ShapleyValueRow
from storage.query import shapley_rows
from tests.integration.conftest import universe_scenario

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "checkpoints" / "weichai_mappo.pt"
CASH = 10_000_000.0


def _learned(folder: Path, symbols: list[str], broker: str = "", strategy: str = "") -> Any:
    learned = (
        f'kind = "mappo_ensemble"\ncheckpoint = "{CHECKPOINT}"\nallow_transfer = true\n'
        f"max_position = 1000\n{strategy}"
    )
    return universe_scenario(folder, symbols, CASH, learned, broker=broker)


def _tap(messages: list[Any]) -> Any:
    def tap(bus: Any) -> None:
        for kind in (OrderFilled, PortfolioSnapshot, TargetPosition, ShapleyRecord):
            bus.subscribe(kind, messages.append)

    return tap


def _run(config: Any, **options: Any) -> tuple[Any, list[Any]]:
    messages: list[Any] = []
    return run_backtest(config, persist=False, tap=_tap(messages), **options), messages


def _fills(messages: list[Any]) -> dict[str, list[tuple[int, str, float, float]]]:
    out: dict[str, list[tuple[int, str, float, float]]] = {}
    for f in messages:
        if isinstance(f, OrderFilled):
            out.setdefault(f.symbol, []).append((f.ts_event, f.side, f.quantity, f.price))
    return out


def _credit(messages: list[Any]) -> dict[str, dict[str, float]]:
    """Per symbol, per agent: the sum of its stored Shapley values."""
    out: dict[str, dict[str, float]] = {}
    for r in messages:
        if isinstance(r, ShapleyRecord):
            agents = out.setdefault(r.symbol, {})
            agents[r.agent_id] = agents.get(r.agent_id, 0.0) + r.phi
    return out


def test_a_symbols_trades_and_credit_do_not_depend_on_the_rest_of_the_universe(
    two_symbols: Path, tmp_path: Path
) -> None:
    # C: B's bars at twice the price, on the same calendar
    frame = pd.read_csv(two_symbols / "B.csv")
    for column in ("open", "high", "low", "close"):
        frame[column] *= 2.0
    frame.to_csv(tmp_path / "C.csv", index=False)
    shutil.copy(two_symbols / "A.csv", tmp_path / "A.csv")
    shutil.copy(two_symbols / "B.csv", tmp_path / "B.csv")
    universe, messages = _run(_learned(tmp_path, ["A", "B"]))
    fills, credit = _fills(messages), _credit(messages)
    assert set(fills) == {"A", "B"} and set(credit) == {"A", "B"}, "both symbols trade"
    _, reversed_order = _run(_learned(tmp_path, ["B", "A"]))
    _, other = _run(_learned(tmp_path, ["A", "C"]))
    # the same fills and the same credit to the last digit: nothing passes between symbols
    assert _fills(reversed_order) == fills
    assert _credit(reversed_order) == credit
    assert _fills(other)["A"] == fills["A"] and _credit(other)["A"] == credit["A"]
    assert _fills(other)["C"] != fills["B"]
    # the summary's agents: each agent's credit summed over the symbols
    agents = {row["agent"]: row["shapley_pnl"] for row in universe.agents or []}
    for agent, phi in credit["A"].items():
        assert agents[agent] == pytest.approx(phi + credit["B"][agent], rel=1e-9)
    assert universe.panel["steps"] == sum(
        1 for m in messages if isinstance(m, ShapleyRecord) and m.agent_index == 0
    )


def test_each_symbols_credit_adds_up_to_its_own_pnl_with_costs_and_borrow_fees(
    two_symbols: Path,
) -> None:
    config = _learned(
        two_symbols,
        ["A", "B"],
        broker="commission_bps = 3\nslippage_bps = 2\nborrow_fee_bps = 500",
    )
    result, messages = _run(config)
    fills = [m for m in messages if isinstance(m, OrderFilled)]
    snapshots = [m for m in messages if isinstance(m, PortfolioSnapshot)]
    assert any(f.side != BUY for f in fills) and result.outcome.summary.fees > 0
    total_credit = 0.0
    credits = _credit(messages)
    for symbol in ("A", "B"):
        own = [s for s in snapshots if s.symbol == symbol]
        # the symbol's borrow fees: the account's count moves on this symbol's bars only
        borrowed, before = 0.0, 0.0
        for s in snapshots:
            if s.symbol == symbol:
                borrowed += s.borrow_fees - before
            before = s.borrow_fees
        commissions = sum(f.commission for f in fills if f.symbol == symbol)
        last = own[-1]
        pnl = last.realised_pnl + last.unrealised_pnl - commissions - borrowed
        # the credit runs from the first decision to the last settled step: before the
        # first fill nothing is held, and the last step (one bar) is the rest
        first_pnl = 0.0
        credit = sum(credits[symbol].values())
        tail = pnl - credit - first_pnl
        assert borrowed > 0, f"{symbol} was short at some point and paid a borrow fee"
        assert abs(tail) < 1e-6 + 1e-9 * abs(pnl) + _last_step(own, fills, symbol), symbol
        total_credit += credit
    equity = snapshots[-1].equity
    assert snapshots[-1].financing == 0.0
    account = equity - CASH
    assert math.isfinite(total_credit)
    assert abs(account - total_credit) < 1e-6 + 1e-9 * abs(account) + sum(
        _last_step([s for s in snapshots if s.symbol == symbol], fills, symbol)
        for symbol in ("A", "B")
    )


def _last_step(own: list[PortfolioSnapshot], fills: list[OrderFilled], symbol: str) -> float:
    """What the unsettled last step may hold: the last bar's P&L of the symbol, with the
    costs of a fill at it (its decision has no next bar to settle on)."""
    if len(own) < 2:
        return 0.0
    a, b = own[-2], own[-1]
    move = abs((b.realised_pnl + b.unrealised_pnl) - (a.realised_pnl + a.unrealised_pnl))
    late = sum(f.commission for f in fills if f.symbol == symbol and f.ts_event >= b.ts_event)
    return move + late + 1e-6


def test_confidence_allocation_splits_the_account_by_the_latest_confidences(
    two_symbols: Path,
) -> None:
    config = _learned(
        two_symbols,
        ["A", "B"],
        strategy=(
            'allocation = "confidence"\n'
            '[strategy.sizing]\nmethod = "equity_fraction"\nfraction = 0.5'
        ),
    )
    result, messages = _run(config)
    assert result.fills > 0
    # brute force: before each decision, the weight its symbol had is its previous
    # confidence over the sum of every symbol's latest; a new target has |target| <=
    # fraction x weight x equity / close (the exposure and the vote scale it down, never
    # up); a decision below the confidence threshold holds the previous target
    latest = {"A": 0.0, "B": 0.0}
    held = {"A": 0.0, "B": 0.0}
    equity = CASH
    close = {"A": math.nan, "B": math.nan}
    checked = 0
    for m in messages:
        if isinstance(m, PortfolioSnapshot):
            equity, close[m.symbol] = m.equity, m.mark_price
        elif isinstance(m, TargetPosition):
            total = sum(latest.values())
            weight = latest[m.symbol] / total if total > 0 else 0.5
            cap = math.floor(0.5 * weight * equity / close[m.symbol] + 1e-9)
            if m.target != held[m.symbol]:
                assert abs(m.target) <= cap + 1e-9, (m, weight, cap)
                checked += 1
            held[m.symbol] = m.target
            latest[m.symbol] = max(m.confidence, 0.0)
    assert checked > 50
    assert any(abs(m.target) > 0 for m in messages if isinstance(m, TargetPosition))


def test_confidence_allocation_is_an_ensembles(two_symbols: Path) -> None:
    with pytest.raises(ConfigError, match="meta-investors' confidence"):
        parse_scenario(
            '[data]\nsource = "synthetic"\n[strategy]\nallocation = "confidence"\n'
            '[strategy.sizing]\nmethod = "equity_fraction"\n'
        )


def test_a_scripted_ensemble_runs_per_symbol_and_stores_each_symbols_credit(
    two_symbols: Path, tmp_path: Path
) -> None:
    config = parse_scenario(
        f"""
[data]
path = "{two_symbols}/{{symbol}}.csv"
timezone = "UTC"
on_off_grid = "drop"
[[instruments]]
symbol = "A"
[[instruments]]
symbol = "B"
[broker]
initial_cash = {CASH}
[strategy]
kind = "scripted_ensemble"
agents = ["trend", "mean_revert", "random"]
max_position = 100
[storage]
url = "sqlite:///{tmp_path}/runs.db"
"""
    )
    messages: list[Any] = []
    result = run_backtest(config, tap=_tap(messages))
    with connect(config.storage.url).connect() as connection:
        stored = dict(
            connection.execute(
                select(ShapleyValueRow.symbol, func.sum(ShapleyValueRow.phi))
                .where(ShapleyValueRow.run_id == result.run_id)
                .group_by(ShapleyValueRow.symbol)
            ).all()
        )
    credit = _credit(messages)
    assert set(stored) == {"A", "B"}
    for symbol, phi in stored.items():
        assert phi == pytest.approx(sum(credit[symbol].values()), rel=1e-9, abs=1e-6)
    # emarl shapley: each value with its own symbol's valuation, totals per symbol and agent
    engine = connect(config.storage.url)
    rows = shapley_rows(engine, result.run_id)
    assert len(rows) == sum(1 for m in messages if isinstance(m, ShapleyRecord))
    totals = shapley_rows(engine, result.run_id, aggregate=True)
    assert len(totals) == 6
    streamed = CliRunner().invoke(
        app, ["shapley", "--run", str(result.run_id), "--db", config.storage.url, "--format", "csv"]
    )
    lines = list(csv.DictReader(io.StringIO(streamed.stdout)))
    assert [(r["symbol"], r["agent_id"], float(r["phi"])) for r in lines] == [
        (r["symbol"], r["agent_id"], r["phi"]) for r in rows
    ]
    for row in totals:
        assert row["shapley_pnl"] == pytest.approx(credit[row["symbol"]][row["agent_id"]])
    # the report draws the meta-investors together and says so under each figure
    page = build_report(connect(config.storage.url), str(result.run_id))
    assert "credit summed over the 2 symbols" in page and "panels together" in page
    assert page.count("The mean over the 2 symbols&#x27; meta-investors at each time.") == 3

"""Strategic accuracy and the equity statistics against loops."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from strategies.marl.evaluate import equity_statistics, strategic_accuracy


@pytest.mark.parametrize("k", [1, 3, 8])
def test_strategic_accuracy_matches_loop(k):
    rng = np.random.default_rng(k)
    close = 10 + np.cumsum(rng.choice([-0.1, 0.0, 0.1], size=200))
    direction = rng.choice([-1.0, 0.0, 1.0], size=200)
    hits = total = 0
    for t in range(200):
        if t + k >= 200 or direction[t] == 0:
            continue
        total += 1
        move = close[t + k] - close[t]
        if (move > 0 and direction[t] > 0) or (move < 0 and direction[t] < 0):
            hits += 1
    accuracy, count = strategic_accuracy(direction, close, k)
    assert count == total
    assert accuracy == pytest.approx(hits / total)


def test_strategic_accuracy_without_decisions_is_nan():
    accuracy, count = strategic_accuracy(np.zeros(10), np.arange(10.0), 1)
    assert math.isnan(accuracy) and count == 0


def test_equity_statistics():
    day = 86_400 * 10**9
    ts = np.arange(5) * day
    equity = np.array([100.0, 110.0, 99.0, 120.0, 108.0])
    position = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    stats = equity_statistics(ts, equity, position)
    assert stats["total_return"] == pytest.approx(0.08)
    assert stats["max_drawdown"] == pytest.approx(99 / 110 - 1)
    # held on bars 0, 1, 3: P&L +10, -11, -12
    assert stats["hit_rate"] == pytest.approx(1 / 3)
    r = np.diff(equity) / equity[:-1]
    per_year = 4 / (4 / 365.25)
    assert stats["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(per_year))


def test_evaluate_command_scenario_and_stored_run_agree_with_the_ledger(tmp_path):
    """``emarl evaluate``: on a scenario file and on its stored run the same figures; the
    learned ensemble's equity statistics equal those of the stored snapshots after
    ``--trade-start``, and buy-and-hold those of a loop over the closes."""
    import json

    from sqlalchemy import create_engine
    from typer.testing import CliRunner

    from engine.app.cli import app
    from engine.app.scenario import load_scenario
    from engine.feeds.bars import load_bars
    from storage.frames import snapshots_frame
    from tests.marl.test_training import SCENARIO

    db = tmp_path / "runs.db"
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO.format(db=db, extra=""))
    config = load_scenario(scenario)
    data = load_bars(
        config.data, config.instrument.symbol, path=config.data_path(), seed=config.run.seed
    )
    start = int(data.ts[450])
    start_iso = np.datetime64(start, "ns").astype(str) + "Z"
    # the checkpoint learns on the bars before the trading start; the stored run trades
    # from the same bar as the evaluation
    text = scenario.read_text().replace("seed = 3", f'seed = 3\ntrade_start = "{start_iso}"')
    scenario.write_text(text)
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(scenario), "--updates", "1", "-q"]).exit_code == 0
    backtest = runner.invoke(app, ["backtest", str(scenario), "-q", "--json"])
    assert backtest.exit_code == 0, backtest.output

    by_file = runner.invoke(app, ["evaluate", str(scenario), "--json"])
    assert by_file.exit_code == 0, by_file.output
    by_run = runner.invoke(app, ["evaluate", "latest", "--db", f"sqlite:///{db}", "--json"])
    assert by_run.exit_code == 0, by_run.output
    figures = json.loads(by_file.output)
    assert json.loads(by_run.output) == figures
    assert figures["first_bar_ns"] == start and figures["bars"] == len(data) - 450

    snapshots = snapshots_frame(create_engine(f"sqlite:///{db}"), 1)
    after = snapshots[snapshots.ts_event >= start]
    expected = equity_statistics(
        after.ts_event.to_numpy(), after.equity.to_numpy(), after.position.to_numpy()
    )
    learned = figures["learned"]
    for key, value in expected.items():
        assert learned[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    assert learned["decisions_k1"] > 0
    assert 0.0 <= learned["strategic_accuracy_k1"] <= 1.0

    close = data.close[450:]
    cash = config.broker.initial_cash
    hold = [cash + 100 * (c - close[0]) for c in close]
    peak, worst = hold[0], 0.0
    for value in hold:
        peak = max(peak, value)
        worst = min(worst, value / peak - 1)
    assert figures["buy_and_hold"]["total_return"] == pytest.approx(hold[-1] / hold[0] - 1)
    assert figures["buy_and_hold"]["max_drawdown"] == pytest.approx(worst)
    ups = sum(close[t + 1] > close[t] for t in range(len(close) - 1))
    assert figures["buy_and_hold"]["strategic_accuracy_k1"] == pytest.approx(ups / (len(close) - 1))


def test_evaluate_command_bad_targets_exit_with_a_message(tmp_path):
    from typer.testing import CliRunner

    from engine.app.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    db = f"sqlite:///{tmp_path / 'none.db'}"
    no_run = runner.invoke(app, ["evaluate", "7", "--db", db])
    assert no_run.exit_code in (3, 4) and "error" in no_run.output
    # a scenario, or a stored run, of another strategy: one line, not a traceback
    scenarios = Path(__file__).resolve().parents[2] / "scenarios"
    sma = runner.invoke(app, ["evaluate", str(scenarios / "synthetic.toml")])
    assert sma.exit_code == 2, sma.output
    assert sma.stderr.strip() == (
        "error: emarl evaluate scores a learned ensemble ([strategy] kind = 'mappo_ensemble'), "
        "not 'sma_cross'; compare other strategies' runs with emarl compare"
    )

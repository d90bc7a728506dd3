"""No silent wrong numbers: training windows, in-sample labels, denied orders, warm-ups and
provenance, each on bars the test generates (a seeded synthetic market)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from engine.app.cli import app
from engine.app.metrics import compute_summary
from engine.app.scenario import load_scenario
from engine.feeds.bars import load_bars
from storage.frames import fills_frame, snapshots_frame

# 700 synthetic 30-minute bars; the checkpoint learns on the bars before bar TRADE_BAR.
BARS = 700
TRADE_BAR = 450
SCENARIO = """
[run]
name = "integrity"
seed = 3
{run}

[data]
source = "synthetic"
synthetic = {{ bars = {bars} }}
{data}

[instrument]
symbol = "SYN"

[broker]
commission_bps = 2.5
commission_minimum = 1.0
slippage_bps = 1.0

[strategy]
kind = "mappo_ensemble"
checkpoint = "{checkpoint}"
max_position = 100
{strategy}

[train]
updates = 1
n_envs = 4
episode_length = 16
rollout_steps = 8
epochs = 1
minibatch_size = 16
threads = 1

[storage]
url = "sqlite:///{db}"
"""


def scenario_text(
    folder: Path,
    *,
    run: str = "",
    data: str = "",
    strategy: str = "",
    bars: int = BARS,
    checkpoint: str = "ck/agents.pt",
) -> str:
    return SCENARIO.format(
        run=run,
        data=data,
        strategy=strategy,
        bars=bars,
        checkpoint=checkpoint,
        db=folder / "runs.db",
    )


def _bar_times(bars: int = BARS) -> np.ndarray:
    config = load_scenario_text(scenario_text(Path("."), bars=bars))
    return load_bars(config.data, "SYN", seed=config.run.seed).ts


def load_scenario_text(body: str) -> Any:
    from engine.app.scenario import parse_scenario

    return parse_scenario(body)


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose ``train.toml`` (run.trade_start at bar TRADE_BAR) was trained with
    ``emarl train``: the checkpoint must hold only the bars before the trading start."""
    folder = tmp_path_factory.mktemp("integrity")
    start = _iso(_bar_times()[TRADE_BAR])
    (folder / "train.toml").write_text(scenario_text(folder, run=f'trade_start = "{start}"'))
    result = CliRunner().invoke(app, ["train", str(folder / "train.toml"), "-q"])
    assert result.exit_code == 0, result.output
    return folder


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


# -- finding 3: training windows --------------------------------------------------------


def test_train_stops_before_trade_start_and_records_its_bars(trained: Path) -> None:
    ts = _bar_times()
    meta = json.loads((trained / "ck" / "agents.json").read_text())
    data = meta["data"]
    # trained on bars 0..TRADE_BAR-1 only (main used to train on every bar to data.end)
    assert data["last_bar_ns"] == int(ts[TRADE_BAR - 1])
    assert data["first_bar_ns"] == int(ts[0])
    assert data["bars"] == TRADE_BAR
    assert (data["symbol"], data["bar_minutes"], data["timezone"]) == ("SYN", 30, "UTC")
    config = load_scenario(trained / "train.toml")
    bars = load_bars(config.data, "SYN", seed=config.run.seed).slice(0, TRADE_BAR)
    digest = hashlib.sha256()
    digest.update(bars.ts.astype("<i8").tobytes())
    for column in ("open", "high", "low", "close", "volume"):
        digest.update(getattr(bars, column).astype("<f8").tobytes())
    assert data["fingerprint"] == digest.hexdigest()


def test_sweeps_walk_forward_and_train_cut_training_bars_by_one_rule() -> None:
    from engine.app.sweep import training_window
    from engine.app.warmup import trade_start_ns, training_config

    ts = _bar_times()
    body = scenario_text(Path("."), run=f'trade_start = "{_iso(ts[TRADE_BAR])}"')
    config = load_scenario_text(body)
    cut = training_config(config)
    assert cut.run.trade_start == "" and trade_start_ns(cut) is None
    assert training_window(config) == cut
    kept = load_bars(cut.data, "SYN", seed=3)
    assert int(kept.ts[-1]) == int(ts[TRADE_BAR - 1])
    # an earlier data.end wins over the trading start; a date-only end keeps its whole day
    early = load_scenario_text(
        scenario_text(
            Path("."), run=f'trade_start = "{_iso(ts[TRADE_BAR])}"', data='end = "2020-01-05"'
        )
    )
    kept_early = load_bars(training_config(early).data, "SYN", seed=3)
    assert pd.Timestamp(int(kept_early.ts[-1]), tz="UTC") == pd.Timestamp(
        "2020-01-05 23:30", tz="UTC"
    )
    plain = load_scenario_text(scenario_text(Path(".")))
    assert training_config(plain) is plain


# -- finding 4: checkpoints on another bar length, zone or market ----------------------


def test_checkpoint_on_another_bar_length_or_zone_needs_allow_transfer(
    trained: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = str(trained / "ck" / "agents.pt")
    other = trained / "hourly.toml"
    other.write_text(
        scenario_text(trained, data="bar_minutes = 60", checkpoint=checkpoint, bars=900)
    )
    refused = _invoke("backtest", str(other), "-q")
    assert refused.exit_code == 2
    assert "30-minute bars, the scenario has 60-minute bars" in refused.output
    assert "allow_transfer" in refused.output
    zone = trained / "zone.toml"
    zone.write_text(scenario_text(trained, data='timezone = "Asia/Tokyo"', checkpoint=checkpoint))
    refused_zone = _invoke("backtest", str(zone), "-q")
    assert refused_zone.exit_code == 2 and "time zone UTC" in refused_zone.output
    allowed = trained / "allowed.toml"
    allowed.write_text(
        scenario_text(
            trained,
            data="bar_minutes = 60",
            strategy="allow_transfer = true",
            checkpoint=checkpoint,
            bars=900,
        )
    )
    assert _invoke("backtest", str(allowed), "-q").exit_code == 0
    symbol = trained / "symbol.toml"
    symbol.write_text(
        scenario_text(trained, checkpoint=checkpoint).replace('symbol = "SYN"', 'symbol = "ABC"')
    )
    with caplog.at_level(logging.WARNING, logger="emarl.agents"):
        assert _invoke("backtest", str(symbol), "-q").exit_code == 0
    warnings = [r.getMessage() for r in caplog.records if "trained on SYN" in r.getMessage()]
    assert len(warnings) == 1 and "not ABC" in warnings[0]


# -- finding 5: in sample is always labelled ---------------------------------------------


def test_backtest_splits_figures_at_the_checkpoint_training_window(trained: Path) -> None:
    scenario = trained / "backtest.toml"
    scenario.write_text(scenario_text(trained))
    result = _invoke("backtest", str(scenario), "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    ts = _bar_times()
    training = summary["training"]
    assert training["last_bar_ns"] == int(ts[TRADE_BAR - 1])
    windows = training["windows"]
    assert set(windows) == {"in_sample", "out_of_sample"}
    assert windows["in_sample"]["end_ns"] == int(ts[TRADE_BAR - 1])
    assert windows["out_of_sample"]["start_ns"] == int(ts[TRADE_BAR])
    assert windows["in_sample"]["bars"] + windows["out_of_sample"]["bars"] == BARS
    # each part equals the statistics of its stored snapshots, recomputed here
    engine = create_engine(f"sqlite:///{trained / 'runs.db'}")
    snapshots = snapshots_frame(engine, summary["run_id"])
    fills = fills_frame(engine, summary["run_id"])
    after = snapshots[snapshots.ts_event >= ts[TRADE_BAR]]
    before = snapshots[snapshots.ts_event < ts[TRADE_BAR]]
    own = fills[fills.ts_event >= ts[TRADE_BAR]]
    expected = compute_summary(
        after.ts_event.to_numpy(),
        after.equity.to_numpy(),
        after.position.to_numpy(),
        float(before.equity.iloc[-1]),
        {
            "side": own.side.to_numpy(),
            "quantity": own.quantity.to_numpy(),
            "price": own.price.to_numpy(),
            "commission": own.commission.to_numpy(),
        },
        float(own.commission.sum()),
    ).to_dict()
    out = windows["out_of_sample"]
    for key in ("total_return", "sharpe", "max_drawdown", "final_equity", "fees", "turnover"):
        assert out[key] == pytest.approx(expected[key], rel=1e-12, nan_ok=True), key
    table = _invoke("backtest", str(scenario), "-q", env={"COLUMNS": "200"})
    assert "IN SAMPLE (trained on)" in table.output and "out of sample" in table.output


def test_evaluate_refuses_an_in_sample_window_unless_allowed(trained: Path) -> None:
    ts = _bar_times()
    scenario = trained / "evaluate.toml"
    scenario.write_text(scenario_text(trained))
    start = _iso(ts[400])
    refused = _invoke("evaluate", str(scenario), "--trade-start", start)
    assert refused.exit_code == 2
    line = refused.output.strip()
    assert len(line.splitlines()) == 1
    assert "overlaps the bars checkpoint agents.pt was trained on" in line
    assert "--allow-in-sample" in line
    allowed = _invoke(
        "evaluate", str(scenario), "--trade-start", start, "--allow-in-sample", "--json"
    )
    assert allowed.exit_code == 0, allowed.output
    figures = json.loads(allowed.output)
    parts = figures["windows"]
    assert parts["in_sample"]["bars"] == TRADE_BAR - 400
    assert parts["out_of_sample"]["first_bar_ns"] == int(ts[TRADE_BAR])
    assert figures["buy_and_hold_units"] == 100
    # after training: out of sample, no flag needed, and no windows to split
    clean = _invoke("evaluate", str(scenario), "--trade-start", _iso(ts[TRADE_BAR]), "--json")
    assert clean.exit_code == 0 and "windows" not in json.loads(clean.output)
    shown = _invoke("evaluate", str(scenario), "--trade-start", _iso(ts[TRADE_BAR]))
    assert "buy-and-hold 100 units" in shown.output


def test_report_shades_the_training_window_and_shows_provenance(trained: Path) -> None:
    from reporting.figures import TRAINING_FILL
    from reporting.report import build_report, run_sections

    scenario = trained / "report.toml"
    scenario.write_text(scenario_text(trained))
    result = _invoke("backtest", str(scenario), "-q", "--json")
    run_id = json.loads(result.output)["run_id"]
    engine = create_engine(f"sqlite:///{trained / 'runs.db'}")
    _info, sections = run_sections(engine, run_id)
    charts = [s for s in sections if s.figure is not None and s.title != "Monthly returns"]
    assert len(charts) >= 6
    ts = _bar_times()
    for section in charts:
        shaded = [s for s in section.figure.layout.shapes if s.fillcolor == TRAINING_FILL]
        assert shaded, section.title
        for shape in shaded:  # one per panel
            assert shape.x0 == pytest.approx(int(ts[0]) / 1e6, abs=1), section.title
            assert shape.x1 == pytest.approx(int(ts[TRADE_BAR - 1]) / 1e6, abs=1)
    page = build_report(engine, run_id)
    with engine.connect() as connection:
        row = connection.execute(
            text(f"select data_fingerprint, checkpoint_fingerprint from runs where id={run_id}")
        ).one()
    assert f"sha256:{row[0][:12]}" in page and f"sha256:{row[1][:12]}" in page
    assert "IN SAMPLE (trained on)" in page


# -- finding 6: denied orders -------------------------------------------------------------

SMA = """
[run]
name = "denied"
[data]
source = "synthetic"
synthetic = {{ bars = 600 }}
[broker]
initial_cash = 1000.0
[strategy]
kind = "sma_cross"
quantity = {quantity}
[storage]
url = "sqlite:///{db}"
"""


def test_denied_orders_are_counted_by_reason_everywhere(tmp_path: Path) -> None:
    from reporting.report import run_sections

    db = tmp_path / "runs.db"
    scenario = tmp_path / "denied.toml"
    scenario.write_text(SMA.format(quantity=1_000_000, db=db))
    result = _invoke("backtest", str(scenario), "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        stored = connection.execute(
            text("select count(*) from order_events where event = 'denied'")
        ).scalar_one()
        margin = connection.execute(
            text("select count(*) from order_events where reason like 'margin:%'")
        ).scalar_one()
    assert stored > 0 and margin == stored
    orders = summary["orders"]
    assert orders["denied"] == {"margin": stored} and orders["sent"] == stored
    assert "every one of the" in orders["no_fills"]
    table = _invoke("backtest", str(scenario), "-q")
    assert f"denied {stored:,} (margin {stored:,})" in table.output
    assert "no fills because" in table.output
    runs = json.loads(_invoke("runs", "--db", f"sqlite:///{db}", "--format", "json").output)
    assert runs[0]["denied"] == stored and runs[0]["refused_by_kind"] == f"margin {stored}"
    compared = json.loads(
        _invoke("compare", "1", "2", "--db", f"sqlite:///{db}", "--format", "json").output
    )
    assert [row["denied"] for row in compared] == [stored, stored]
    _info, sections = run_sections(engine, 1)
    section = next(s for s in sections if s.title == "Denied and rejected orders")
    assert f"<th>denied</th><td>{stored:,}</td>" in section.body
    price = next(s for s in sections if s.title == "Price, entries and exits").figure
    markers = [trace for trace in price.data if trace.name == "order denied"]
    assert len(markers) == 1 and len(markers[0].x) == stored


# -- finding 7: a warm-up longer than the data -------------------------------------------


def test_warmup_longer_than_the_data_is_refused_at_load(trained: Path) -> None:
    scenario = trained / "short.toml"
    scenario.write_text(scenario_text(trained, bars=80))
    engine = create_engine(f"sqlite:///{trained / 'runs.db'}")
    with engine.connect() as connection:
        before = connection.execute(text("select count(*) from runs")).scalar_one()
    for command in (["backtest", str(scenario), "-q"], ["evaluate", str(scenario)]):
        result = _invoke(*command)
        assert result.exit_code == 2, result.output
        assert "reads 288 bars before its first decision" in result.output
        assert "the data has 80 bars" in result.output
    with engine.connect() as connection:  # nothing was stored for the short data
        assert connection.execute(text("select count(*) from runs")).scalar_one() == before


# -- provenance ----------------------------------------------------------------------------


def test_same_bars_config_and_seed_give_same_fingerprints_and_fills(trained: Path) -> None:
    scenario = trained / "twice.toml"
    scenario.write_text(scenario_text(trained))
    ids = [
        json.loads(_invoke("backtest", str(scenario), "-q", "--json").output)["run_id"]
        for _ in range(2)
    ]
    db = f"sqlite:///{trained / 'runs.db'}"
    runs = {
        row["id"]: row for row in json.loads(_invoke("runs", "--db", db, "--format", "json").output)
    }
    first, second = (runs[i] for i in ids)
    from engine.feeds.bars import bars_fingerprint

    config = load_scenario(scenario)
    data = load_bars(config.data, "SYN", seed=config.run.seed)
    assert first["data_fingerprint"] == bars_fingerprint(data) == second["data_fingerprint"]
    weights = (trained / "ck" / "agents.pt").read_bytes()
    assert first["checkpoint_fingerprint"] == hashlib.sha256(weights).hexdigest()
    assert second["checkpoint_fingerprint"] == first["checkpoint_fingerprint"]
    assert first["code_version"] and first["code_version"] == second["code_version"]
    engine = create_engine(db)
    columns = ["ts_event", "side", "quantity", "price", "commission"]
    a, b = (fills_frame(engine, i)[columns] for i in ids)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)


# -- is the edge real --------------------------------------------------------------------


def test_backtest_edge_figures_equal_the_significance_module_on_stored_rows(
    trained: Path,
) -> None:
    from engine.app.significance import edge_figures

    scenario = trained / "edge.toml"
    scenario.write_text(scenario_text(trained))
    summary = json.loads(_invoke("backtest", str(scenario), "-q", "--json").output)
    edge = summary["edge"]
    engine = create_engine(f"sqlite:///{trained / 'runs.db'}")
    equity = snapshots_frame(engine, summary["run_id"]).equity.to_numpy()
    config = load_scenario(scenario)
    data = load_bars(config.data, "SYN", seed=config.run.seed)
    returns = np.diff(np.concatenate([[config.broker.initial_cash], equity])) / np.concatenate(
        [[config.broker.initial_cash], equity[:-1]]
    )
    marks = np.concatenate([[data.open[0]], data.close])
    expected = edge_figures(
        returns, summary["periods_per_year"], np.diff(marks) / marks[:-1], seed=3
    )
    for key in ("sharpe_low", "sharpe_high", "total_return_low", "psr", "psr_benchmark"):
        assert edge[key] == pytest.approx(expected[key], rel=1e-12, nan_ok=True), key
    assert edge["sharpe_low"] <= summary["sharpe"] <= edge["sharpe_high"]
    for window in summary["training"]["windows"].values():
        assert window["edge"]["observations"] == window["bars"]
    table = _invoke("backtest", str(scenario), "-q", env={"COLUMNS": "220"}).output
    assert "Sharpe, 95% interval (block bootstrap)" in table and "P(true Sharpe > 0)" in table
    compared = json.loads(
        _invoke(
            "compare",
            "latest",
            "1",
            "--db",
            f"sqlite:///{trained / 'runs.db'}",
            "--format",
            "json",
        ).output
    )
    assert compared[0]["psr"] == pytest.approx(edge["psr"])


def test_evaluate_ablation_rows_cover_the_panel_and_both_buy_and_holds(trained: Path) -> None:
    ts = _bar_times()
    scenario = trained / "ablation.toml"
    scenario.write_text(scenario_text(trained))
    result = _invoke("evaluate", str(scenario), "--trade-start", _iso(ts[TRADE_BAR]), "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    rows = (
        "learned",
        "equal_weights",
        "mlmi_alone",
        "nwrqk_alone",
        "regime_alone",
        "sma_10_30",
        "buy_and_hold_account",
        "buy_and_hold",
    )
    assert all(name in figures for name in rows)
    config = load_scenario(scenario)
    close = load_bars(config.data, "SYN", seed=3).close[TRADE_BAR:]
    units = figures["buy_and_hold_account_units"]
    assert units == int(config.broker.initial_cash / close[0])  # lot size 1
    cash = config.broker.initial_cash
    expected = (cash + units * (close[-1] - close[0])) / cash - 1
    assert figures["buy_and_hold_account"]["total_return"] == pytest.approx(expected)
    for name in rows:
        assert "psr" in figures[name] and "sharpe_low" in figures[name]

"""The report, compare and trade-aggregate commands: files, formats and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from storage.query import pnl, trades
from tests.reporting.conftest import SMA_SCENARIO, figures_of

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_report_command_writes_a_report(report_db: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "agents.html"
    result = invoke("report", "1", "-o", str(target), "--db", report_db)
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    assert "Agent actions" in figures_of(target.read_text())


def test_report_command_latest_goes_to_runs_folder(
    report_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "latest", "--db", report_db)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "runs" / "report-2.html").read_text()
    assert "report-sma" in page


@pytest.mark.parametrize(("run", "code"), [("7", 3), ("seven", 3)])
def test_report_command_bad_run_exit_code(report_db: str, run: str, code: int) -> None:
    result = invoke("report", run, "--db", report_db)
    assert result.exit_code == code
    assert result.output.count("\n") <= 2 and "error:" in result.output


def test_report_command_unwritable_target_is_bad_input(report_db: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("report", "2", "-o", str(blocker / "r.html"), "--db", report_db)
    assert result.exit_code == 2 and "cannot write the report" in result.output


def test_backtest_report_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scenario = tmp_path / "s.toml"
    scenario.write_text(SMA_SCENARIO.format(bars=800))
    db = f"sqlite:///{tmp_path / 'bt.db'}"
    result = invoke(
        "backtest", str(scenario), "--quiet", "--db", db, "--json", "--report-file", "r/x.html"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["report"] == "r/x.html"
    assert "Equity and drawdown" in figures_of((tmp_path / "r" / "x.html").read_text())
    plain = invoke("backtest", str(scenario), "--quiet", "--db", db, "--report")
    assert plain.exit_code == 0, plain.output
    assert (tmp_path / "runs" / "report-2.html").exists()
    assert "report written to runs/report-2.html" in plain.output


def test_compare_puts_runs_side_by_side(report_db: str) -> None:
    table = invoke("compare", "1", "latest", "--db", report_db)
    assert table.exit_code == 0, table.output
    assert "run 1" in table.output and "run 2" in table.output and "sharpe" in table.output
    rows = json.loads(invoke("compare", "2", "1", "--format", "json", "--db", report_db).output)
    assert [row["id"] for row in rows] == [2, 1]
    assert [row["name"] for row in rows] == ["report-sma", "report-agents"]
    summaries = pd.DataFrame(rows).set_index("id")
    assert {"sharpe", "max_drawdown", "total_return", "trades", "start"} <= set(summaries)


@pytest.mark.parametrize(
    ("args", "code"),
    [(["1"], 2), (["1", "9"], 3), (["1", "x"], 3)],
)
def test_compare_bad_runs(report_db: str, args: list[str], code: int) -> None:
    result = invoke("compare", *args, "--db", report_db)
    assert result.exit_code == code, result.output


@pytest.mark.parametrize("by", ["day", "week", "month", "side", "agent"])
@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_trades_by_exports_round_trip(report_db: str, tmp_path: Path, by: str, fmt: str) -> None:
    target = tmp_path / f"pnl.{fmt}"
    result = invoke(
        "trades", "--run", "1", "--by", by, "--format", fmt, "-o", str(target), "--db", report_db
    )
    assert result.exit_code == 0, result.output
    read = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt]
    got = read(target)
    expected = pnl(report_db, 1, by)
    if fmt == "csv" and by != "agent" and by != "side":
        got[by] = got[by].astype(str)
    if fmt == "json" and by in ("day", "week"):
        got[by] = pd.to_datetime(got[by]).dt.strftime("%Y-%m-%d")
    if fmt == "json" and by == "month":
        got[by] = pd.to_datetime(got[by]).dt.strftime("%Y-%m")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-12)


def test_trades_by_month_on_the_terminal(report_db: str) -> None:
    result = invoke("trades", "--run", "2", "--by", "month", "--db", report_db)
    assert result.exit_code == 0, result.output
    first = pnl(report_db, 2, "month")["month"].iloc[0]
    assert "realised_pnl" in result.output and first in result.output


def test_trades_listing_exports_round_trip(report_db: str, tmp_path: Path) -> None:
    expected = trades(report_db, 2)
    target = tmp_path / "fills.parquet"
    result = invoke(
        "trades", "--run", "2", "--format", "parquet", "-o", str(target), "--db", report_db
    )
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(target), expected, check_dtype=False)
    as_csv = tmp_path / "fills.csv"
    invoke("trades", "--run", "2", "--format", "csv", "-o", str(as_csv), "--db", report_db)
    read = pd.read_csv(as_csv)
    assert len(read) == len(expected)
    assert read["fill_id"].tolist() == expected["fill_id"].tolist()
    assert (pd.to_datetime(read["time"], utc=True) == expected["time"].dt.floor("s")).all()
    as_json = tmp_path / "fills.json"
    invoke("trades", "--run", "2", "--format", "json", "-o", str(as_json), "--db", report_db)
    records = json.loads(as_json.read_text())
    assert [r["price"] for r in records] == expected["price"].tolist()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--format", "parquet"], 2, "--format parquet writes a file"),
        (["--by", "day", "-o", "x.csv"], 2, "--out writes csv, json or parquet"),
        (["--by", "hour"], 2, "hour"),
        (["--by", "agent", "--side", "buy"], 2, "--side does not apply"),
        (["--by", "month", "--run", "12"], 3, "no run with id 12"),
        (["--by", "agent", "--run", "2"], 1, "no Shapley values"),
    ],
)
def test_trades_by_bad_options(report_db: str, args: list[str], code: int, message: str) -> None:
    result = invoke("trades", *args, "--db", report_db)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_shapley_of_a_run_without_agents_names_its_strategy(report_db: str) -> None:
    result = invoke("shapley", "--run", "2", "--db", report_db)
    assert result.exit_code == 1
    assert "run 2 has no Shapley values: its strategy (sma_cross) credited no agents" in (
        result.output
    )


def test_new_verbs_have_help_with_an_example() -> None:
    listing = invoke("--help").output
    for verb in ("report", "compare"):
        assert verb in listing
        sub = invoke(verb, "--help")
        assert sub.exit_code == 0 and "Example:" in sub.output
    assert "--by" in invoke("trades", "--help").output
    assert "--report-file" in invoke("backtest", "--help").output

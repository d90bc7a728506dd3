"""The command line: verbs, formats, one-line errors and exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()
ROOT = Path(__file__).parents[2]


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        '[run]\nname = "cli"\n[data]\nsource = "synthetic"\n[data.synthetic]\nbars = 1500\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n'
    )
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_backtest_then_runs_and_trades(scenario: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = invoke("backtest", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    for label in (
        "total return",
        "CAGR",
        "Sharpe",
        "Sortino",
        "max drawdown",
        "Calmar",
        "win rate",
        "exposure",
        "turnover",
        "fees",
        "bars",
        "run id",
        "bars/s after",
        "s of setup",
    ):
        assert label in result.output
    as_json = invoke("backtest", str(scenario), "--json", "--seed", "3")
    summary = json.loads(as_json.output)
    assert summary["run_id"] == 2 and summary["bars"] == 1500
    # the whole run's rate counts the setup; the replay's does not
    assert 0 < summary["setup_seconds"] < summary["wall_seconds"]
    assert summary["bars_per_second"] == pytest.approx(1500 / summary["wall_seconds"])
    replay = summary["wall_seconds"] - summary["setup_seconds"]
    assert summary["replay_bars_per_second"] == pytest.approx(1500 / replay)
    runs = invoke("runs", "--db", db, "--format", "json")
    assert [r["id"] for r in json.loads(runs.output)] == [2, 1]
    table = invoke("trades", "--db", db, "--run", "1")
    assert table.exit_code == 0 and "order_id" in table.output
    sells = invoke("trades", "--db", db, "--run", "1", "--side", "sell", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(sells.output)))
    assert rows and {r["side"] for r in rows} == {"sell"}
    assert set(rows[0]) >= {"time", "price", "quantity", "commission", "order_id"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["trades", "--run", "42"], 3, "error: no run with id 42"),
        (["trades", "--since", "yesterday-ish"], 2, "error: --since: cannot read"),
        (["trades", "--since", "2200-01-01"], 1, "no trades match these filters"),
        (["trades", "--since", "2999-01-01"], 2, "error: --since: '2999-01-01' is outside"),
        (["trades", "--run", "x1"], 3, "error: no run with id or name 'x1'"),
    ],
)
def test_trades_bad_queries_exit_with_one_line(
    scenario: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    invoke("backtest", str(scenario), "--quiet")
    result = invoke(*args, "--db", f"sqlite:///{tmp_path / 'cli.db'}")
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_backtest_bad_scenario_exits_2_with_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker]\ncomission_bps = 1\n")
    result = invoke("backtest", str(bad))
    assert result.exit_code == 2
    assert "did you mean 'commission_bps'?" in result.output
    missing = invoke("backtest", str(tmp_path / "none.toml"))
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_runs_without_database_exits_4(tmp_path: Path) -> None:
    result = invoke("runs", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 4 and "no database at" in result.output


def test_help_lists_every_verb() -> None:
    result = invoke("--help")
    for verb in ("backtest", "runs", "trades", "data"):
        assert verb in result.output
    for verb in ("backtest", "runs", "trades", "data weichai", "data synthetic"):
        sub = invoke(*verb.split(), "--help")
        assert sub.exit_code == 0 and "Example:" in sub.output


def test_query_commands_do_not_import_heavy_packages(scenario: Path, tmp_path: Path) -> None:
    invoke("backtest", str(scenario), "--quiet")
    code = (
        "import sys; from engine.cli import app\n"
        f"sys.argv = ['emarl', 'trades', '--db', 'sqlite:///{tmp_path / 'cli.db'}', "
        "'--format', 'csv']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'numba', 'pandas', 'numpy') if m in sys.modules),"
        " file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_trades_and_status_take_a_run_name_the_newest_of_that_name(
    scenario: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    for _ in range(2):
        assert invoke("backtest", str(scenario), "--quiet").exit_code == 0
    by_name = invoke("trades", "--db", db, "--run", "cli", "--format", "json")
    assert by_name.exit_code == 0, by_name.output
    assert {row["run_id"] for row in json.loads(by_name.stdout)} == {2}
    by_id = invoke("trades", "--db", db, "--run", "2", "--format", "json")
    assert by_name.stdout == by_id.stdout
    status = invoke("status", "cli", "--db", db, "--format", "json")
    assert json.loads(status.stdout)["run_id"] == 2
    unknown = invoke("trades", "--db", db, "--run", "other-name")
    assert unknown.exit_code == 3 and "no run with id or name 'other-name'" in unknown.output


def test_trades_table_shows_the_last_rows_and_says_so(scenario: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert invoke("backtest", str(scenario), "--quiet").exit_code == 0
    every = json.loads(invoke("trades", "--db", db, "--format", "json").stdout)
    assert len(every) > 5
    last = invoke("trades", "--db", db, "--limit", "3")
    assert last.exit_code == 0
    assert f"showing the last 3 of {len(every):,} fills" in last.stderr
    assert every[-1]["time"] in last.stdout and every[0]["time"] not in last.stdout
    whole = invoke("trades", "--db", db, "--limit", "0", "--format", "csv")
    assert len(whole.stdout.splitlines()) == len(every) + 1 and whole.stderr == ""
    assert invoke("trades", "--db", db, "--limit", "-1").exit_code == 2

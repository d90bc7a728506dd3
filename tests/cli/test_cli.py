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

from engine.app.cli import app

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
        "import sys; from engine.app.cli import app\n"
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


def _help_texts(command) -> list[str]:
    texts = [command.help or ""]
    texts += [getattr(param, "help", None) or "" for param in command.params]
    return texts


def test_help_keeps_every_scenario_section_name() -> None:
    """``--help`` used to read "(default:  updates)": rich markup ate "[train]"."""
    import re

    import typer.main

    group = typer.main.get_command(app)
    checked = 0
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        commands = getattr(command, "commands", {name: command})
        for sub, leaf in commands.items():
            words = [w for t in _help_texts(leaf) for w in re.findall(r"\[[a-z_.]+\]", t)]
            if not words:
                continue
            args = [name] if sub == name else [name, sub]
            shown = " ".join(invoke(*args, "--help").output.split())
            for word in words:
                assert word in shown, f"emarl {' '.join(args)} --help lost {word}"
                checked += 1
    assert checked >= 4  # train, features, sweep and walkforward name sections
    train = " ".join(invoke("train", "--help").output.split())
    assert "(default: [train] updates)" in train


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1.14813e-127, "1.15e-127"),
        (4.10251e-12, "4.10e-12"),
        (1.3675812e61, "1.37e+61"),
        (5071929.4, "5,071,929"),
        (1281.4412, "1,281.44"),
        (17800.0, "17,800"),
        (0.45231, "0.4523"),
        (-0.0012, "-0.0012"),
        (0.0, "0"),
        (float("nan"), "n/a"),
    ],
)
def test_tables_print_numbers_for_a_person(value: float, shown: str) -> None:
    from engine.app.cli import human_number

    assert human_number(value) == shown


def test_agent_table_has_no_long_exponents(tmp_path: Path) -> None:
    import re

    path = ROOT / "scenarios" / "scripted_meta.toml"  # synthetic bars, three scripted agents
    result = invoke("backtest", str(path), "-q", "--db", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.exit_code == 0, result.output
    agents = result.output[result.output.index("agents:") :]
    assert not re.search(r"\d\.\d{4,}e[+-]\d", agents), agents


def test_read_commands_take_the_database_from_emarl_db(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert invoke("backtest", str(scenario), "-q").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no runs/emarl.db here
    env = {"EMARL_DB": db}
    for args in (
        ["runs"],
        ["trades", "--run", "latest"],
        ["trades", "--by", "month"],
        ["compare", "1", "latest"],
        ["report", "latest", "-o", str(tmp_path / "r.html")],
    ):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
    assert not (elsewhere / "runs").exists()
    # --db still wins over the variable
    other = runner.invoke(app, ["runs", "--db", f"sqlite:///{tmp_path / 'none.db'}"], env=env)
    assert other.exit_code == 4


def test_walk_forward_table_fits_120_to_200_columns() -> None:
    from rich.console import Console

    from engine.app.cli import walk_forward_table

    note = (
        "trained 20 updates on 7,744 bars to 2011-04-29T07:00:00+00:00: "
        "runs/walkforward-3/fold-0.pt"
    )
    folds = [
        {
            "fold": k,
            "train_start": "2007-04-30T00:00:00+08:00",
            "test_start": "2011-04-30T00:00:00+08:00",
            "test_end": "2012-04-29T00:00:00+08:00",
            "test_bars": 1_936,
            "status": "completed",
            "params": {"strategy.fast": 10, "strategy.slow": 30},
            "total_return": -0.123456,
            "sharpe": 0.5678,
            "max_drawdown": -0.2345,
            "trades": 123,
            "run_id": 40 + k,
            "error": None,
            "train_note": note,
        }
        for k in range(3)
    ]
    for width in (120, 160, 200):
        console = Console(width=width, record=True, color_system=None)
        console.print(walk_forward_table(folds, "Asia/Shanghai", "walk-forward 3"))
        shown = console.export_text()
        assert "…" not in shown
        assert all(len(line) <= width for line in shown.splitlines())
        assert "-12.35%" in shown and "2011-04-30" in shown
        assert all(f"fold {k}: {note}" in shown for k in range(3))


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


def test_the_rows_loading_dropped_sorted_or_resampled_are_in_the_summary_and_report(
    tmp_path: Path,
) -> None:
    """A file of 5-minute bars with NaN prices dropped (data.on_bad_price = 'drop') and
    rows out of order sorted: the summary, the stored run and its report say what loading
    did, counted here from the file with pandas. These rows used to show only as missing
    bars."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import create_engine, text

    rng = np.random.default_rng(3)
    times = pd.date_range("2021-01-04 09:05", periods=2_400, freq="5min")
    close = 10 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(times))))
    frame = pd.DataFrame(
        {"timestamp": times, "open": close, "high": close * 1.001, "low": close * 0.999}
    )
    frame["close"], frame["volume"] = close, 1_000.0
    frame.loc[[40, 41, 900], "open"] = np.nan
    frame.loc[[1500, 1501]] = frame.loc[[1501, 1500]].to_numpy()  # two rows swapped
    frame.to_csv(tmp_path / "bars.csv", index=False)
    db = tmp_path / "runs.db"
    (tmp_path / "s.toml").write_text(
        '[run]\nname = "repaired"\n[data]\npath = "bars.csv"\non_bad_price = "drop"\n'
        'on_out_of_order = "sort"\nsource_bar_minutes = 5\n'
        f'[storage]\nurl = "sqlite:///{db}"\n'
    )
    nan_rows = int(frame["open"].isna().sum())
    swapped = int((frame["timestamp"].diff() < pd.Timedelta(0)).sum())
    assert (nan_rows, swapped) == (3, 1)

    result = invoke("backtest", str(tmp_path / "s.toml"), "--report-file", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert (
        f"data as loaded │ dropped {nan_rows} rows (bad price {nan_rows}); sorted {swapped} row "
        "out of time order; resampled from 5-minute bars" in said
    ), said
    with create_engine(f"sqlite:///{db}").connect() as connection:
        stored = json.loads(connection.execute(text("SELECT summary_json FROM runs")).scalar_one())
    assert stored["data"] == {
        "dropped": {"bad price": nan_rows},
        "sorted_rows": swapped,
        "resampled_from_minutes": 5,
    }
    report = (tmp_path / "r.html").read_text()
    assert f"<th>rows dropped as loaded: bad price</th><td>{nan_rows}</td>" in report
    assert "<th>resampled from bars of (minutes)</th><td>5</td>" in report


def test_runs_limit_zero_lists_all_and_a_negative_one_is_refused(
    scenario: Path, tmp_path: Path
) -> None:
    """``--limit 0`` lists every run, as it does for trades and shapley; a negative limit
    is a one-line error (it listed every run on SQLite and failed as a storage error,
    exit 4, on PostgreSQL: "LIMIT must not be negative")."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    for _ in range(3):
        assert invoke("backtest", str(scenario), "--quiet").exit_code == 0
    listed = {n: invoke("runs", "--limit", str(n), "--format", "json", "--db", db) for n in (0, 2)}
    assert [len(json.loads(r.stdout)) for r in listed.values()] == [3, 2]
    refused = invoke("runs", "--limit", "-1", "--db", db)
    assert refused.exit_code == 2
    assert "--limit must be 0 (all) or more, got -1" in refused.output

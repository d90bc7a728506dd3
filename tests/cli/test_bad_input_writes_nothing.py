"""A checkpoint that is missing, corrupt or malicious stops a run before it stores anything.

The strategy and every component are built and checked before the run row exists:
``emarl backtest`` and ``emarl paper`` exit 2 with one line and leave no run behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from engine.app.cli import app
from storage.db import connect
from storage.models import Run
from tests.paper.broker import free_port

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


class Payload:
    """Unpickling this would run ``print``; ``weights_only`` loading must refuse it."""

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("payload ran",))


def missing(folder: Path) -> Path:
    return folder / "absent.pt"


def corrupt(folder: Path) -> Path:
    shutil.copy(CHECKPOINTS / "weichai_mappo.json", folder / "corrupt.json")
    (folder / "corrupt.pt").write_bytes(b"not a torch file" * 64)
    return folder / "corrupt.pt"


def malicious(folder: Path) -> Path:
    import torch

    shutil.copy(CHECKPOINTS / "weichai_mappo.json", folder / "evil.json")
    torch.save({"policies": Payload()}, folder / "evil.pt")
    return folder / "evil.pt"


def scenario(folder: Path, checkpoint: Path, db: str) -> Path:
    path = folder / "learned.toml"
    path.write_text(
        '[run]\nname = "bad-checkpoint"\n[data]\nsource = "synthetic"\n[data.synthetic]\n'
        f'bars = 400\n[strategy]\nkind = "mappo_ensemble"\ncheckpoint = "{checkpoint}"\n'
        f'[strategy.meta]\nexpiry_bars = 48\n[storage]\nurl = "{db}"\n'
    )
    return path


def stored_runs(db: str, path: Path) -> int:
    if not path.exists():
        return 0
    engine = connect(db, create=False)
    if not inspect(engine).has_table("runs"):
        return 0
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Run)).scalar_one())


@pytest.mark.parametrize("make", [missing, corrupt, malicious])
@pytest.mark.parametrize("verb", ["backtest", "paper"])
def test_bad_checkpoint_exits_2_and_stores_no_run(
    tmp_path: Path, make: Callable[[Path], Path], verb: str, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.db"
    db = f"sqlite:///{path}"
    target = scenario(tmp_path, make(tmp_path), db)
    # the paper run would read a closed loopback port: it never gets that far
    extra = ["--bus", f"mqtt://127.0.0.1:{free_port()}"] if verb == "paper" else ["--quiet"]
    result = CliRunner().invoke(app, [verb, str(target), *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert target.parent.name in lines[0] and ".pt" in lines[0], lines  # names the file
    assert "payload ran" not in capfd.readouterr().out
    assert stored_runs(db, path) == 0


def test_a_paper_run_of_agents_that_read_the_next_bar_exits_2_and_stores_no_run(
    tmp_path: Path,
) -> None:
    """The scripted ``oracle`` and ``contrarian`` read the next bar, which a live feed does
    not have: ``emarl paper`` of the shipped scripted_meta scenario says so (it crashed
    with a traceback), and a backtest of it still runs them."""
    path = tmp_path / "runs.db"
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "scripted_meta.toml"
    bus = f"mqtt://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["paper", str(scenario), "--db", f"sqlite:///{path}", "--bus", bus]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: strategy.agents: 'contrarian' and 'oracle' read the next bar, which a paper "
        "run does not have: they are for backtests; choose from random, neutral, trend, "
        "mean_revert"
    ]
    assert stored_runs(f"sqlite:///{path}", path) == 0


def test_a_new_paper_run_whose_broker_refuses_the_first_connection_leaves_no_run(
    tmp_path: Path,
) -> None:
    """A wrong --bus ends ``emarl paper`` with one line, and the new run's row goes with
    it: it was stored only to name the run's persistent session (it used to stay,
    ``failed``, with no bar)."""
    path = tmp_path / "runs.db"
    db = f"sqlite:///{path}"
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "synthetic.toml"
    bus = f"mqtt://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["paper", str(scenario), "--db", db, "--bus", bus])
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: cannot connect to {bus}: ")
    assert stored_runs(db, path) == 0


@pytest.mark.parametrize("name", ["synthetic.toml", "scripted_meta.toml"])
def test_training_a_strategy_without_a_checkpoint_exits_2_with_one_line(
    tmp_path: Path, name: str
) -> None:
    """``emarl train`` of an SMA or scripted scenario says that only the learned ensemble
    trains (it raised an AttributeError traceback), and stores no training run."""
    path = tmp_path / "runs.db"
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / name
    result = CliRunner().invoke(app, ["train", str(scenario), "--db", f"sqlite:///{path}"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: [strategy] kind = '") and "has no checkpoint" in line
    assert "kind = 'mappo_ensemble'" in line
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["backtest", "synthetic.toml", "--seed", "-1"], "--seed must be a whole number"),
        (["backtest", "synthetic.toml", "--seed", str(2**63)], "--seed must be a whole number"),
        (["data", "synthetic", "--seed", "-1"], "--seed must be a whole number"),
        (
            ["sweep", "synthetic.toml", "--grid", "run.seed=-1,2"],
            "--grid run.seed=-1: run.seed must be a whole number from 0 to 2**63 - 1, got -1",
        ),
        (
            ["sweep", "synthetic.toml", "--grid", "strategy.fast=5,10", "--retries", "-1"],
            "--retries must be zero or more, got -1",
        ),
        (
            ["walkforward", "synthetic.toml", "--train", "12M", "--test", "6M", "--retries", "-2"],
            "--retries must be zero or more, got -2",
        ),
    ],
)
def test_out_of_range_seeds_and_retries_exit_2_with_one_line(
    tmp_path: Path, args: list[str], said: str
) -> None:
    """A negative or too large seed raised numpy's ValueError (a traceback), a negative
    --retries went to Dask; now each is one line, and nothing is written."""
    path = tmp_path / "runs.db"
    scenarios = Path(__file__).resolve().parents[2] / "scenarios"
    args = [str(scenarios / a) if a.endswith(".toml") else a for a in args]
    extra = ["--out", str(tmp_path / "s.parquet")] if args[0] == "data" else []
    db = [] if args[0] == "data" else ["--db", f"sqlite:///{path}"]
    result = CliRunner().invoke(app, [*args, *extra, *db])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and said in line
    assert not path.exists() and not (tmp_path / "s.parquet").exists()


def test_training_with_no_updates_exits_2_and_stores_no_training_run(tmp_path: Path) -> None:
    """``--updates 0`` is refused before the training run's row is stored (it was stored,
    then marked failed)."""
    path = tmp_path / "runs.db"
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "train_weichai.toml"
    result = CliRunner().invoke(
        app, ["train", str(scenario), "--updates", "0", "--db", f"sqlite:///{path}"]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == ["error: --updates must be >= 1, got 0"]
    assert not path.exists()

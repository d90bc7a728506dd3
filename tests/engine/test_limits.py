"""Prices and volumes beyond the data limits are bad input, never a database error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from engine.app.cli import app
from engine.core.errors import DataError
from engine.feeds.bars import load_bars
from engine.feeds.config import DataConfig
from storage.db import connect
from storage.models import PortfolioSnapshotRow, Run

BARS = 60


def write_bars(path: Path, closes: list[float], volumes: list[float] | None = None) -> Path:
    """30-minute bars (UTC) with the given closes; each opens at the previous close."""
    stamps = pd.date_range("2024-01-02 00:30", periods=len(closes), freq="30min")
    opens = [closes[0], *closes[:-1]]
    frame = pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"),
            "open": opens,
            "high": np.maximum(opens, closes),
            "low": np.minimum(opens, closes),
            "close": closes,
            "volume": volumes or [1_000.0] * len(closes),
        }
    )
    frame.to_csv(path, index=False)
    return path


def walk(n: int = BARS, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(3.9 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))


def load(path: Path, **options: object):
    return load_bars(DataConfig(path=str(path), **options), "X", path=path)  # type: ignore[arg-type]


def test_a_price_of_1e308_is_bad_input_naming_file_row_and_limit(tmp_path: Path) -> None:
    closes = walk()
    closes[40] = 1e308
    path = write_bars(tmp_path / "huge.csv", closes)
    # the row after the header line is row 2: bar 40 is row 42
    with pytest.raises(DataError, match=r"huge\.csv: row 42: high 1e\+308 is above data\.max_pri"):
        load(path)
    # bar 41 opens at bar 40's close: both go
    dropped = load(path, on_bad_price="drop")
    assert len(dropped) == BARS - 2 and dropped.high.max() < 10
    assert dropped.report.dropped == {"price beyond the data limits": 2}
    filled = load(path, on_bad_price="fill")
    assert filled.close[40] == filled.open[40] == filled.close[41] == filled.close[39]
    assert filled.volume[40] == filled.volume[41] == 0 and filled.high.max() < 10


def test_a_jump_from_the_previous_close_is_measured_from_the_last_bar_kept(
    tmp_path: Path,
) -> None:
    closes = walk()
    closes[20] = 1000.0  # about 5.5 in log from 3.9
    closes[21] = 1001.0  # close to the bad bar, far from the last good one
    path = write_bars(tmp_path / "jump.csv", closes)
    frame = pd.read_csv(path)
    frame.loc[20, ["open", "low"]] = 1000.0  # a gap up: the bar itself is narrow
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 22: open 1000\.0 is 5\.\d+ in log from the previous"):
        load(path, max_abs_log_return=2.0)
    dropped = load(path, max_abs_log_return=2.0, on_bad_price="drop")
    # bars 21 and 22 (which opens at 1001) are judged against bar 19's close too
    assert len(dropped) == BARS - 3
    assert np.abs(np.diff(np.log(dropped.close))).max() < 2.0
    assert len(load(path)) == BARS  # the default limit (10) passes it


def test_a_volume_above_the_limit_is_a_bad_volume(tmp_path: Path) -> None:
    volumes = [1_000.0] * BARS
    volumes[7] = 1e300
    path = write_bars(tmp_path / "volume.csv", walk(), volumes)
    with pytest.raises(DataError, match=r"row 9: volume 1e\+300 is above data\.max_volume"):
        load(path)
    assert load(path, on_bad_volume="fill").volume[7] == 0.0
    assert len(load(path, on_bad_volume="drop")) == BARS - 1


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=40),
    spike=st.floats(3.0, 200.0),
    where=st.integers(1, 38),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_dropping_one_spike_keeps_every_other_bar(
    tmp_path_factory: pytest.TempPathFactory, steps: list[float], spike: float, where: int,
    sign: float,
) -> None:  # fmt: skip
    closes = list(10.0 * np.exp(np.cumsum(steps)))
    where = min(where, len(closes) - 1)
    closes[where] = closes[where - 1] * math.exp(sign * spike)
    # the bar after the spike opens at the spike: make it open at the bar before instead
    path = tmp_path_factory.mktemp("spike") / "bars.csv"
    write_bars(path, closes)
    frame = pd.read_csv(path)
    if where + 1 < len(closes):
        frame.loc[where + 1, "open"] = closes[where - 1]
        frame.loc[where + 1, "high"] = max(closes[where - 1], closes[where + 1])
        frame.loc[where + 1, "low"] = min(closes[where - 1], closes[where + 1])
    frame.to_csv(path, index=False)
    kept = load(path, max_abs_log_return=2.5, on_bad_price="drop")
    assert len(kept) == len(closes) - 1
    assert closes[where] not in kept.close.tolist()


def scenario(folder: Path, data: Path, db: str, data_lines: str = "") -> Path:
    path = folder / "s.toml"
    path.write_text(
        f'[run]\nname = "limits"\n[data]\npath = "{data}"\n{data_lines}'
        "[strategy]\nfast = 2\nslow = 5\nquantity = 100\n"
        f'[storage]\nurl = "{db}"\n'
    )
    return path


def runs(db: str) -> int:
    engine = connect(db)
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Run)).scalar_one())


def test_backtest_of_a_bar_at_1e308_exits_2_and_stores_no_run(tmp_path: Path) -> None:
    closes = walk()
    closes[40] = 1e308
    data = write_bars(tmp_path / "huge.csv", closes)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = CliRunner().invoke(app, ["backtest", str(scenario(tmp_path, data, db)), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "row 42: high 1e+308 is above data.max_price" in result.stderr
    assert "NOT NULL" not in result.output
    assert runs(db) == 0


def test_accounting_that_overflows_fails_the_run_naming_the_bar(tmp_path: Path) -> None:
    """With the limits lifted, the bar reaches the portfolio: the run fails there, and
    no snapshot of that bar (or a later one) is stored."""
    closes = walk()
    closes[40] = 1e308
    data = write_bars(tmp_path / "huge.csv", closes)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    lifted = "max_price = 1.7e308\nmax_abs_log_return = 1000.0\n"
    result = CliRunner().invoke(
        app, ["backtest", str(scenario(tmp_path, data, db, lifted)), "--quiet"]
    )
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    # bar 40 (0-based) ends 40 bar lengths after the first, at 00:30
    assert "bar 2024-01-02T20:30:00+00:00" in line and "the accounting overflowed" in line
    engine = connect(db)
    with engine.connect() as connection:
        run = connection.execute(select(Run.status, Run.error, Run.bars_stored)).one()
        snapshots = connection.execute(
            select(PortfolioSnapshotRow.equity, PortfolioSnapshotRow.exposure)
        ).all()
    assert run.status == "failed" and "accounting overflowed" in run.error
    assert run.bars_stored == len(snapshots) == 40
    assert all(math.isfinite(equity) and exposure == exposure for equity, exposure in snapshots)


def test_a_one_bar_run_of_a_strategy_without_warm_up_is_refused_in_plain_words() -> None:
    """A scripted panel decides on its first bar: one bar is still too few (its decision
    fills at the next open), and the message says so without an empty reason."""
    from engine.app.warmup import check_warmup
    from tests.conftest import synthetic_scenario

    config = synthetic_scenario(
        1, strategy='kind = "scripted_ensemble"\nagents = ["random", "neutral"]'
    )
    with pytest.raises(DataError) as raised:
        check_warmup(config, 1)
    assert str(raised.value) == (
        "the strategy decides on the first bar and needs one more to fill it, but the data "
        "has 1 bar; give it at least 2 bars"
    )
    check_warmup(config, 2)

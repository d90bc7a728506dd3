"""The shipped scenarios' ledgers equal the committed golden ones (tests/golden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.app.backtest import run_backtest
from engine.app.scenario import load_scenario
from tests import golden

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("name", ["weichai_sma", "demo", "scripted_meta"])
def test_shipped_scenario_ledger_is_golden(name: str, tmp_path: Path, weichai_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'golden.db'}"
    result = run_backtest(load_scenario(SCENARIOS / f"{name}.toml"), db_url=url)
    assert result.run_id is not None
    golden.check(name, golden.ledger(url, result.run_id))

"""Scenario decoding: unknown keys, types, ranges, shipped scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.app.scenario import ScenarioConfig, config_hash, load_scenario, parse_scenario
from engine.core.errors import ConfigError

SCENARIOS = Path(__file__).parents[2] / "scenarios"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[broker]\ncomission_bps = 1\n",
            r"unknown key 'comission_bps' in \[broker\]; did you mean 'commission_bps'\?",
        ),
        (
            "[strategie]\nfast = 1\n",
            r"unknown key 'strategie' in the top level; did you mean 'strategy'\?",
        ),
        (
            "[data.synthetic]\nbarz = 5\n",
            r"unknown key 'barz' in \[data.synthetic\]; did you mean 'bars'\?",
        ),
        ("[strategy]\nkind = 'rsi'\n", r"kind = 'rsi' is not known; choose one of 'sma_cross'"),
        ("[strategy]\nfast = 'ten'\n", r"Expected `int`, got `str` \(key strategy.fast\)"),
        (
            "[strategy]\nfast = 40\n",
            r"strategy.fast \(40\) must be smaller than strategy.slow \(30\)",
        ),
        ("[broker]\nmax_participation = 2.0\n", r"broker.max_participation must be in \[0, 1\]"),
        ("[broker]\ncommission_bps = -1\n", r"broker.commission_bps must be zero or positive"),
        (
            "[data]\npath = 'x.csv'\non_bad_price = 'fix'\n",
            r"Invalid enum value 'fix' \(key data.on_bad_price\)",
        ),
        ("[data]\npath = 'x.csv'\ntimezone = 'Mars/Base'\n", r"unknown time zone 'Mars/Base'"),
        ("[data]\nsource = 'file'\n", r"data.path is required"),
        (
            "[instrument]\nsymbol = 'a/b'\n[data]\nsource='synthetic'\n",
            r"instrument.symbol must be",
        ),
        ("[run\n", r"not valid TOML"),
    ],
)
def test_parse_scenario_bad_input_names_key_and_fix(text: str, message: str) -> None:
    if "[data" not in text and "[run" not in text:
        text += "[data]\nsource = 'synthetic'\n"
    with pytest.raises(ConfigError, match=message):
        parse_scenario(text, source="s.toml")


def test_load_scenario_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")


def test_shipped_scenarios_decode_and_resolve_paths() -> None:
    demo = load_scenario(SCENARIOS / "demo.toml")
    assert demo.data.timezone == "Asia/Shanghai"
    assert demo.data_path() == (SCENARIOS.parent / "data" / "weichai_30m.parquet").resolve()
    synthetic = load_scenario(SCENARIOS / "synthetic.toml")
    assert synthetic.data.source == "synthetic"


def test_config_is_frozen_and_hash_tracks_content() -> None:
    a = parse_scenario("[data]\nsource = 'synthetic'\n")
    b = parse_scenario("[data]\nsource = 'synthetic'\n", base_dir="/elsewhere")
    c = parse_scenario("[data]\nsource = 'synthetic'\n[broker]\nslippage_bps = 1\n")
    assert isinstance(a, ScenarioConfig)
    with pytest.raises(AttributeError):
        a.run = None  # type: ignore[misc]
    assert config_hash(a) == config_hash(b) != config_hash(c)

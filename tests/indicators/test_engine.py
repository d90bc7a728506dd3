"""The FeatureEngine on the bus, scenario parameters and ``emarl features``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.app.scenario import parse_scenario
from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.errors import ConfigError
from engine.core.events import Bar, Features, decode, encode
from indicators.engine import FeatureEngine
from indicators.features import (
    FEATURE_NAMES,
    agent_inputs,
    build_features,
    warm_mask,
)
from indicators.params import IndicatorParams
from tests.indicators._data import HALF_HOUR_NS, gbm_bars

SMALL = IndicatorParams(mmd_reference_window=20, mmd_test_window=8, mmd_refresh=5)


def _feed(params: IndicatorParams, bars) -> list[Features]:
    o, h, lw, c, v, ts = bars
    bus = MessageBus()
    clock = SimulatedClock()
    engine = FeatureEngine(bus, clock, "X", params)
    engine.subscribe()
    seen: list[Features] = []
    bus.subscribe(Features, seen.append)
    for i in range(len(c)):
        clock.set(int(ts[i]))
        bus.publish(
            Bar(
                ts_event=int(ts[i]),
                ts_init=int(ts[i]),
                seq=bus.next_seq(),
                symbol="X",
                open=o[i],
                high=h[i],
                low=lw[i],
                close=c[i],
                volume=v[i],
            )
        )
    return seen


@pytest.mark.parametrize("params", [SMALL, IndicatorParams()], ids=["small", "defaults"])
def test_feature_engine_publishes_batch_rows_slices_and_warm_flag(params):
    bars = gbm_bars(700, seed=3)
    # A zero-volume stretch removes the LVN (distance NaN, strength 0) on some bars.
    c, v = bars[3], bars[4]
    v[400:460] = 0.0
    seen = _feed(params, bars)
    expected = build_features(*bars, params)
    warm = warm_mask(expected, params)
    assert len(seen) == len(c)
    got = np.array([f.values for f in seen])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
    for name in ("mlmi", "nwrqk", "regime"):
        slices = np.array([getattr(f, name) for f in seen])
        np.testing.assert_allclose(
            slices, agent_inputs(expected, name), rtol=1e-9, atol=1e-12, equal_nan=True
        )
    flags = np.array([f.warm for f in seen])
    np.testing.assert_array_equal(flags, warm)
    assert not flags[: params.warmup].any()
    assert flags[params.warmup :].any()
    # A warm bar never hands an agent a NaN; a bar that is not warm after the warm-up has one.
    for f in seen:
        inputs = np.array(f.mlmi + f.nwrqk + f.regime)
        if f.warm:
            assert np.isfinite(inputs).all()
    late_cold = [f for f in seen[params.warmup :] if not f.warm]
    for f in late_cold:
        assert not np.isfinite(np.array(f.mlmi + f.nwrqk + f.regime)).all()


def test_feature_engine_messages_round_trip_through_msgpack():
    seen = _feed(SMALL, gbm_bars(60, seed=1))
    for message in seen[-3:]:
        again = decode(encode(message))
        assert isinstance(again, Features)
        assert encode(again) == encode(message)
        np.testing.assert_array_equal(np.array(again.values), np.array(message.values))


def test_warm_mask_is_false_before_warmup_and_on_nan_inputs():
    features = np.zeros((80, len(FEATURE_NAMES)))
    params = IndicatorParams(mmd_reference_window=3, mmd_test_window=2)
    features[70, 0] = np.nan  # MLMI input missing
    features[71, 6] = np.nan  # hour_sin: no agent reads it
    features[72, 11] = np.inf  # volatility_30, a Regime input
    features[73, 4] = np.nan  # no LVN (strength 0): encoded, still warm
    mask = warm_mask(features, params)
    assert 0 < params.warmup < 70
    expected = np.arange(80) >= params.warmup
    expected[[70, 72]] = False
    np.testing.assert_array_equal(mask, expected)


def test_scenario_indicator_parameters_reach_the_params():
    config = parse_scenario(
        "[data]\nsource = 'synthetic'\ntimezone = 'Asia/Shanghai'\n"
        "[indicators]\nnwrqk_h = 10.0\nmlmi_k = 50\nheikin_ashi = true\n"
    )
    p = config.indicators
    assert (p.nwrqk_h, p.mlmi_k, p.heikin_ashi) == (10.0, 50, True)
    assert p.timezone == "Asia/Shanghai"  # the market's clock unless set
    synthetic = "[data]\nsource = 'synthetic'\n"
    utc = parse_scenario(synthetic + "timezone = 'Asia/Shanghai'\n[indicators]\ntimezone = 'UTC'\n")
    assert utc.indicators.timezone == "UTC"
    assert parse_scenario(synthetic).indicators == IndicatorParams()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("nwrqk_h = 2.0\nnwrqk_lag = 2", ["nwrqk_h", "nwrqk_lag"]),
        ("mlmi_k = 0", ["mlmi_k", ">= 1"]),
        ("lvn_window = 1", ["lvn_window", ">= 2"]),
        ("mmd_test_window = 1", ["mmd_test_window", ">= 2"]),
        ("lvn_bin_width = -0.5", ["lvn_bin_width", ">= 0"]),
        ("lvn_threshold = 1.5", ["lvn_threshold", "(0, 1]"]),
        ("mlmi_kk = 3", ["unknown key 'mlmi_kk'", "did you mean 'mlmi_k'"]),
        ("mlmi_k = 'many'", ["int", "indicators.mlmi_k"]),
    ],
)
def test_scenario_bad_indicator_parameter_names_it_and_its_range(body, words):
    with pytest.raises(ConfigError) as info:
        parse_scenario(f"[data]\nsource = 'synthetic'\n[indicators]\n{body}\n", source="s.toml")
    message = str(info.value)
    assert message.startswith("s.toml: ")
    for word in words:
        assert word in message, message


def test_features_command_writes_matrix_of_scenario_and_of_file(tmp_path: Path):
    o, h, lw, c, v, ts = gbm_bars(400, seed=5)
    ts = ts - ts[0] % HALF_HOUR_NS  # on the 30-minute grid
    bars_file = tmp_path / "bars.csv"
    pd.DataFrame(
        {
            "timestamp": pd.to_datetime(ts, utc=True).strftime("%Y-%m-%d %H:%M:%S"),
            "open": o,
            "high": h,
            "low": lw,
            "close": c,
            "volume": v,
        }
    ).to_csv(bars_file, index=False)
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        "[data]\npath = 'bars.csv'\n[indicators]\nmmd_reference_window = 20\n"
        "mmd_test_window = 8\nheikin_ashi = true\n"
    )
    runner = CliRunner()
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["features", str(scenario), "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    params = parse_scenario(scenario.read_text()).indicators
    expected = build_features(o, h, lw, c, v, ts, params)
    assert list(frame.columns) == [*FEATURE_NAMES, "warm"]
    np.testing.assert_allclose(frame[list(FEATURE_NAMES)].to_numpy(), expected, equal_nan=True)
    np.testing.assert_array_equal(frame["warm"].to_numpy(), warm_mask(expected, params))
    assert (frame.index.asi8 == ts).all()
    assert "Heikin-Ashi" in result.output and "400 rows" in result.output

    plain = tmp_path / "plain.parquet"
    result = runner.invoke(app, ["features", str(bars_file), "-o", str(plain)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(
        pd.read_parquet(plain)[list(FEATURE_NAMES)].to_numpy(),
        build_features(o, h, lw, c, v, ts),
        equal_nan=True,
    )


def test_features_command_bad_inputs_exit_2_with_message(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["features", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2
    assert "missing.csv" in result.output and "does not exist" in result.output
    scenario = tmp_path / "s.toml"
    scenario.write_text("[data]\nsource = 'synthetic'\n[indicators]\nmlmi_k = 0\n")
    result = runner.invoke(app, ["features", str(scenario)])
    assert result.exit_code == 2
    assert "mlmi_k" in result.output

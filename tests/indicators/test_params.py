"""IndicatorParams: documented defaults, validation messages, unknown fields."""

from __future__ import annotations

import msgspec
import pytest

from indicators.features import FEATURE_NAMES
from indicators.params import IndicatorParams


def test_params_defaults_follow_public_indicators():
    p = IndicatorParams()
    assert (p.mlmi_k, p.mlmi_momentum_window, p.mlmi_store_then_predict) == (200, 20, True)
    assert (p.nwrqk_h, p.nwrqk_r, p.nwrqk_x0, p.nwrqk_lag) == (8.0, 8.0, 25, 2)
    assert (p.lvn_window, p.mmd_reference_window, p.mmd_test_window) == (48, 240, 48)
    assert p.mmd_refresh == 240 and p.heikin_ashi is False and p.timezone == "UTC"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("nwrqk_h", 2.0, "nwrqk_h.*nwrqk_lag"),
        ("nwrqk_h", 0.0, "nwrqk_h.*> 0"),
        ("nwrqk_r", -1.0, "nwrqk_r"),
        ("mlmi_k", 0, "mlmi_k.*>= 1"),
        ("lvn_window", 1, "lvn_window.*>= 2"),
        ("mmd_test_window", 1, "mmd_test_window.*>= 2"),
        ("mmd_reference_window", 0, "mmd_reference_window"),
        ("volatility_window", 1, "volatility_window"),
        ("lvn_bin_width", -0.25, "lvn_bin_width.*>= 0"),
        ("lvn_threshold", 1.5, "lvn_threshold.*\\(0, 1\\]"),
        ("mmd_refresh", 0, "mmd_refresh"),
        ("timezone", "Mars/Olympus", "timezone"),
        ("nwrqk_r", float("nan"), "nwrqk_r.*finite"),
        ("momentum_short_window", 1, "momentum_short_window = 1 .*>= 2"),
        ("momentum_long_window", 1, "momentum_long_window = 1 .*>= 2"),
        ("momentum_short_window", 0, "momentum_short_window.*>= 2"),
        ("nwrqk_x0", 0, "nwrqk_x0 = 0 .*>= 1"),
        ("nwrqk_x0", -3, "nwrqk_x0 = -3 .*>= 1"),
        ("mlmi_momentum_window", 1, "mlmi_momentum_window.*>= 2"),
        ("atr_length", 1, "atr_length.*>= 2"),
        ("skew_window", 1, "skew_window.*>= 2"),
        ("mmd_reference_window", 1, "mmd_reference_window.*>= 2"),
    ],
)
def test_params_invalid_value_raises_value_error_naming_parameter(field, value, message):
    with pytest.raises(ValueError, match=message):
        IndicatorParams(**{field: value})


def test_params_decode_unknown_field_is_rejected():
    with pytest.raises(msgspec.ValidationError, match="mlmi_kk"):
        msgspec.convert({"mlmi_kk": 5}, IndicatorParams)


def test_params_decode_invalid_value_is_rejected_with_name():
    with pytest.raises(msgspec.ValidationError, match="nwrqk_h"):
        msgspec.convert({"nwrqk_h": 2.0, "nwrqk_lag": 2}, IndicatorParams)


def test_params_are_frozen():
    with pytest.raises(AttributeError):
        IndicatorParams().mlmi_k = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "field",
    [
        "mlmi_momentum_window",
        "atr_length",
        "lvn_window",
        "mmd_reference_window",
        "mmd_test_window",
        "momentum_short_window",
        "momentum_long_window",
        "volatility_window",
        "skew_window",
    ],
)
def test_params_window_of_two_is_accepted_and_one_rejected(field):
    assert getattr(IndicatorParams(**{field: 2}), field) == 2
    with pytest.raises(ValueError, match=f"IndicatorParams.{field} = 1 is invalid: must be >= 2"):
        IndicatorParams(**{field: 1})


def test_params_nwrqk_x0_of_one_is_accepted_giving_three_taps():
    assert IndicatorParams(nwrqk_x0=1).first_valid["nwrqk_value"] == 2


def test_params_first_valid_defaults_match_feature_table_and_warmup():
    p = IndicatorParams()
    assert tuple(p.first_valid) == FEATURE_NAMES
    assert p.first_valid["mlmi_value"] == 39 and p.first_valid["mlmi_signal"] == 58
    assert p.first_valid["nwrqk_value"] == 26 and p.first_valid["nwrqk_slope"] == 27
    assert p.first_valid["mmd_score"] == 288
    assert p.warmup == max(p.first_valid.values()) == 288

"""IndicatorParams: documented defaults, validation messages, unknown fields."""

from __future__ import annotations

import msgspec
import pytest

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

"""Indicator parameters: one frozen, validated struct with the documented defaults."""

from __future__ import annotations

import math
import zoneinfo

import msgspec

__all__ = ["IndicatorParams"]


class IndicatorParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Parameters of the 13-column feature matrix (defaults as in INDICATORS.md).

    MLMI: ``mlmi_k`` neighbours (200), ``mlmi_momentum_window`` (20, the WMA length
    over the RSIs), ``mlmi_store_then_predict`` (True: on an event bar the new row is
    stored before predicting).
    NWRQK: ``nwrqk_h`` (8), ``nwrqk_r`` (8), ``nwrqk_x0`` (25, giving x0 + 2 = 27 taps),
    ``nwrqk_lag`` (2, yhat2 uses h - lag). ``atr_length`` (14) scales the slope and the
    LVN distance.
    LVN: ``lvn_window`` bars (48); ``lvn_bin_width`` in price units (0 = automatic:
    ``ATR_14 * lvn_bin_atr_fraction``, 0.1); ``lvn_max_bins`` (200); Gaussian smoothing
    ``lvn_smoothing_bins`` (1.0, 0 = none); ``lvn_threshold`` share of the profile
    maximum (0.30); ``lvn_min_prominence`` (0.25); ``lvn_edge_bins`` (2).
    MMD: ``mmd_reference_window`` (240), ``mmd_test_window`` (48), ``mmd_refresh`` bars
    between bandwidth / scale refreshes (240; 1 = every bar; see :mod:`indicators.mmd`).
    Others: ``momentum_short_window`` (20), ``momentum_long_window`` (50),
    ``volatility_window`` (30, log returns, ddof 1), ``skew_window`` (48),
    ``heikin_ashi`` (False: indicators run on plain bars), ``timezone`` ("UTC", used for
    the hour of the bar's close).

    Validation: every window length (RSI/WMA/ATR lengths, LVN, MMD, momentum,
    volatility and skew windows) must be an integer >= 2, ``nwrqk_x0`` >= 1 (at least
    3 filter taps), ``mlmi_k`` >= 1, ``mmd_refresh`` >= 1, ``nwrqk_h > nwrqk_lag``; a
    violation raises ``ValueError`` naming the parameter and its valid range.
    """

    mlmi_k: int = 200
    mlmi_momentum_window: int = 20
    mlmi_store_then_predict: bool = True
    nwrqk_h: float = 8.0
    nwrqk_r: float = 8.0
    nwrqk_x0: int = 25
    nwrqk_lag: int = 2
    atr_length: int = 14
    lvn_window: int = 48
    lvn_bin_width: float = 0.0
    lvn_bin_atr_fraction: float = 0.1
    lvn_max_bins: int = 200
    lvn_smoothing_bins: float = 1.0
    lvn_threshold: float = 0.30
    lvn_min_prominence: float = 0.25
    lvn_edge_bins: int = 2
    mmd_reference_window: int = 240
    mmd_test_window: int = 48
    mmd_refresh: int = 240
    momentum_short_window: int = 20
    momentum_long_window: int = 50
    volatility_window: int = 30
    skew_window: int = 48
    heikin_ashi: bool = False
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid parameter and its valid range."""

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"IndicatorParams.{name} = {value!r} is invalid: {rule}")

        def finite(name: str) -> bool:
            value = getattr(self, name)
            return isinstance(value, int | float) and math.isfinite(value)

        for name in (
            "mlmi_k",
            "mlmi_momentum_window",
            "nwrqk_x0",
            "nwrqk_lag",
            "atr_length",
            "lvn_window",
            "lvn_max_bins",
            "lvn_edge_bins",
            "mmd_reference_window",
            "mmd_test_window",
            "mmd_refresh",
            "momentum_short_window",
            "momentum_long_window",
            "volatility_window",
            "skew_window",
        ):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool),
                name,
                "must be an integer",
            )
        for name in (
            "nwrqk_h",
            "nwrqk_r",
            "lvn_bin_width",
            "lvn_bin_atr_fraction",
            "lvn_smoothing_bins",
            "lvn_threshold",
            "lvn_min_prominence",
        ):
            need(finite(name), name, "must be a finite number")
        need(self.mlmi_k >= 1, "mlmi_k", "must be >= 1")
        need(self.mlmi_momentum_window >= 2, "mlmi_momentum_window", "must be >= 2")
        need(self.nwrqk_h > 0, "nwrqk_h", "must be > 0")
        need(self.nwrqk_r > 0, "nwrqk_r", "must be > 0")
        need(
            self.nwrqk_x0 >= 1,
            "nwrqk_x0",
            "must be >= 1 (the kernel filter has nwrqk_x0 + 2 >= 3 taps; 25 by default)",
        )
        need(self.nwrqk_lag >= 0, "nwrqk_lag", "must be >= 0")
        need(
            self.nwrqk_h > self.nwrqk_lag,
            "nwrqk_h",
            f"must be > nwrqk_lag ({self.nwrqk_lag}) so that h - lag > 0",
        )
        need(self.atr_length >= 2, "atr_length", "must be >= 2")
        need(self.lvn_window >= 2, "lvn_window", "must be >= 2")
        need(self.lvn_bin_width >= 0, "lvn_bin_width", "must be >= 0 (0 = ATR-based)")
        need(self.lvn_bin_atr_fraction > 0, "lvn_bin_atr_fraction", "must be > 0")
        need(self.lvn_edge_bins >= 0, "lvn_edge_bins", "must be >= 0")
        need(
            self.lvn_max_bins >= 2 * self.lvn_edge_bins + 3,
            "lvn_max_bins",
            f"must be >= 2 * lvn_edge_bins + 3 = {2 * self.lvn_edge_bins + 3}",
        )
        need(self.lvn_smoothing_bins >= 0, "lvn_smoothing_bins", "must be >= 0")
        need(0 < self.lvn_threshold <= 1, "lvn_threshold", "must be in (0, 1]")
        need(0 <= self.lvn_min_prominence <= 1, "lvn_min_prominence", "must be in [0, 1]")
        need(self.mmd_reference_window >= 2, "mmd_reference_window", "must be >= 2")
        need(self.mmd_test_window >= 2, "mmd_test_window", "must be >= 2")
        need(self.mmd_refresh >= 1, "mmd_refresh", "must be >= 1")
        need(self.momentum_short_window >= 2, "momentum_short_window", "must be >= 2")
        need(self.momentum_long_window >= 2, "momentum_long_window", "must be >= 2")
        need(self.volatility_window >= 2, "volatility_window", "must be >= 2")
        need(self.skew_window >= 2, "skew_window", "must be >= 2")
        need(isinstance(self.heikin_ashi, bool), "heikin_ashi", "must be true or false")
        ok_tz = isinstance(self.timezone, str) and bool(self.timezone)
        if ok_tz:
            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                ok_tz = False
        need(ok_tz, "timezone", "must be an IANA time zone name such as 'UTC'")

    @property
    def first_valid(self) -> dict[str, int]:
        """First bar index of each feature column that can be valid on a clean series.

        Keys are the column names of :data:`indicators.features.FEATURE_NAMES`, in order.
        Before its index a column is NaN on any series; NaN bars, constant prices or
        zero volume can keep it NaN longer.
        """
        mlmi_value = 20 + self.mlmi_momentum_window - 1  # WMA_m(RSI_20)
        lvn = max(self.lvn_window - 1, self.atr_length)
        return {
            "mlmi_value": mlmi_value,
            "mlmi_signal": mlmi_value + 19,  # WMA_20 of the prediction
            "nwrqk_value": self.nwrqk_x0 + 1,
            "nwrqk_slope": max(self.nwrqk_x0 + 2, self.atr_length),
            "lvn_distance": lvn,
            "lvn_strength": self.lvn_window - 1,
            "hour_sin": 0,
            "hour_cos": 0,
            "mmd_score": self.mmd_reference_window + self.mmd_test_window,
            "momentum_20": self.momentum_short_window,
            "momentum_50": self.momentum_long_window,
            "volatility_30": self.volatility_window,
            "volume_profile_skew": self.skew_window - 1,
        }

    @property
    def warmup(self) -> int:
        """First bar index at which all 13 features can be valid on a clean series."""
        return max(self.first_valid.values())

"""Scenario files: one TOML file decoded once, at the edge, into a frozen config.

Each component receives its own section (``DataConfig``, ``BrokerConfig``...)
through its constructor; nothing below the CLI reads files, environment
variables or globals. Unknown keys are errors with a "did you mean" hint, and
type errors name the section and key::

    [run]        name, seed
    [data]       where the bars come from and how to validate them
    [instrument] symbol, lot size
    [broker]     cash, costs, fill rules, margin
    [strategy]   kind = "sma_cross" | ... and the strategy's parameters
    [indicators] the 13 features' parameters (indicators.params.IndicatorParams)
    [storage]    database URL and flush interval

Relative data paths are resolved against the scenario file's folder.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from engine.errors import ConfigError
from indicators.params import IndicatorParams

__all__ = [
    "BrokerConfig",
    "DataConfig",
    "InstrumentConfig",
    "MappoEnsembleConfig",
    "RunConfig",
    "ScenarioConfig",
    "ScriptedEnsembleConfig",
    "SmaCrossConfig",
    "StorageConfig",
    "StrategyConfig",
    "SyntheticConfig",
    "TrainConfig",
    "config_hash",
    "load_scenario",
    "parse_scenario",
    "scenario_from_dict",
]

Policy = Literal["error", "drop", "fill"]
OrderPolicy = Literal["error", "drop", "sort"]
DropPolicy = Literal["error", "drop"]


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def check(self) -> None:
        """Raise ``ConfigError`` for values of the right type but outside their range."""


class RunConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``trade_start`` (a date or time, naive = ``data.timezone``; empty = the first bar)
    starts trading: bars before it only warm up indicators and strategy state (no order
    goes out), and the summary covers the bars from it on."""

    name: str = "backtest"
    seed: int = 0
    trade_start: str = ""

    def check(self) -> None:
        if self.trade_start:
            from datetime import datetime

            try:
                datetime.fromisoformat(self.trade_start.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(
                    f"run.trade_start: cannot read {self.trade_start!r} as a date or time "
                    "(use e.g. 2020-01-31 or 2020-01-31T09:30:00+08:00)"
                ) from None


class SyntheticConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A seeded regime-switching market (see :mod:`engine.synthetic`)."""

    bars: int = 20_000
    start: str = "2020-01-01T00:30:00Z"
    start_price: float = 100.0
    stay_probability: float = 0.995
    base_volatility: float = 0.004

    def check(self) -> None:
        _positive("data.synthetic.bars", self.bars)
        _positive("data.synthetic.start_price", self.start_price)
        _positive("data.synthetic.base_volatility", self.base_volatility)
        if not 0.0 <= self.stay_probability < 1.0:
            raise ConfigError(
                f"data.synthetic.stay_probability must be in [0, 1), got {self.stay_probability}"
            )


class DataConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where bars come from and how they are validated.

    ``source`` is ``"file"`` (``path`` to a CSV or Parquet file) or ``"synthetic"``.
    Timestamps without a zone are read in ``timezone``; ``timestamp_label`` says
    whether a timestamp marks the bar's start or its end (emarl stamps bars with
    their end). The file's own bar length is ``source_bar_minutes``, or, when 0, the
    most common spacing of its rows; a start-stamped bar ends one *source* bar length
    after its start. Finer bars are resampled to ``bar_minutes`` (right-closed,
    right-labelled); bars coarser than ``bar_minutes``, or whose length does not divide
    it, are refused. The ``on_*`` policies say what to do with a repairable
    problem: ``error`` (default) stops with the file, row and problem;
    ``drop`` removes the row; ``fill`` repairs it (a flat bar at the previous
    close for a bad price, volume 0 for a bad volume, a widened range for an
    inconsistent high/low, and for a bar off the grid a merge into the grid
    bar that contains it). Duplicates can only be dropped; out-of-order rows
    can be dropped or sorted.

    Limits that no real market reaches keep absurd numbers out of the accounting:
    a price above ``max_price`` or a bar whose open, high, low or close lies more
    than ``max_abs_log_return`` (natural log) from the previous bar's close, or
    whose high and low lie further apart, is a bad price (``on_bad_price``); a
    volume above ``max_volume`` is a bad volume (``on_bad_volume``).
    """

    source: Literal["file", "synthetic"] = "file"
    path: str = ""
    format: Literal["auto", "csv", "parquet"] = "auto"
    timestamp_column: str = "timestamp"
    open_column: str = "open"
    high_column: str = "high"
    low_column: str = "low"
    close_column: str = "close"
    volume_column: str = "volume"
    timezone: str = "UTC"
    timestamp_label: Literal["start", "end"] = "end"
    bar_minutes: int = 30
    source_bar_minutes: int = 0
    grid_offset_minutes: int = 0
    start: str = ""
    end: str = ""
    on_bad_price: Policy = "error"
    on_bad_volume: Policy = "error"
    on_bad_range: Policy = "error"
    on_duplicate: DropPolicy = "error"
    on_out_of_order: OrderPolicy = "error"
    on_off_grid: Policy = "error"
    max_price: float = 1e15
    max_volume: float = 1e18
    max_abs_log_return: float = 10.0  # a factor of about 22,000 in one bar
    synthetic: SyntheticConfig = msgspec.field(default_factory=SyntheticConfig)

    def check(self) -> None:
        if self.source == "file" and not self.path:
            raise ConfigError("data.path is required when data.source = 'file'")
        _positive("data.bar_minutes", self.bar_minutes)
        if self.source_bar_minutes < 0 or (
            self.source_bar_minutes and self.bar_minutes % self.source_bar_minutes
        ):
            raise ConfigError(
                f"data.source_bar_minutes must divide data.bar_minutes={self.bar_minutes} "
                f"(0 = infer it from the data), got {self.source_bar_minutes}"
            )
        for name in ("max_price", "max_volume", "max_abs_log_return"):
            _positive(f"data.{name}", getattr(self, name))
        if not 0 <= self.grid_offset_minutes < self.bar_minutes:
            raise ConfigError(
                f"data.grid_offset_minutes must be in [0, bar_minutes={self.bar_minutes}), "
                f"got {self.grid_offset_minutes}"
            )
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.timezone)
        except Exception as exc:
            raise ConfigError(
                f"data.timezone: unknown time zone {self.timezone!r} "
                "(use an IANA name such as 'UTC' or 'Asia/Shanghai')"
            ) from exc
        self.synthetic.check()


class InstrumentConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str = "SYNTH"
    lot_size: float = 1.0

    def check(self) -> None:
        if not self.symbol or "/" in self.symbol or "+" in self.symbol or "#" in self.symbol:
            raise ConfigError(
                f"instrument.symbol must be non-empty without '/', '+', '#', got {self.symbol!r}"
            )
        _positive("instrument.lot_size", self.lot_size)


class BrokerConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The simulated broker's account and cost rules (see :mod:`brokers.simulated`).

    Commission per fill = max(``commission_minimum``, notional x
    ``commission_bps`` / 1e4 + quantity x ``commission_per_unit``).
    ``slippage_bps`` moves market and stop fills against the order.
    ``max_participation`` caps a fill at that share of the bar's volume
    (0 disables the cap). An order is denied when the position it would leave,
    valued at the last close, needs more than the equity under ``margin_rate``
    (1.0: no leverage; 0.5: 2x).
    """

    initial_cash: float = 1_000_000.0
    commission_bps: float = 0.0
    commission_per_unit: float = 0.0
    commission_minimum: float = 0.0
    slippage_bps: float = 0.0
    max_participation: float = 0.0
    margin_rate: float = 1.0
    allow_short: bool = True

    def check(self) -> None:
        _positive("broker.initial_cash", self.initial_cash)
        for name in ("commission_bps", "commission_per_unit", "commission_minimum", "slippage_bps"):
            _non_negative(f"broker.{name}", getattr(self, name))
        if not 0.0 <= self.max_participation <= 1.0:
            raise ConfigError(
                f"broker.max_participation must be in [0, 1] (0 = no cap), "
                f"got {self.max_participation}"
            )
        _positive("broker.margin_rate", self.margin_rate)


class SmaCrossConfig(
    _Config,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="sma_cross",
    tag_field="kind",
):
    """Long when SMA(fast) > SMA(slow), short when below (flat when ``long_only``)."""

    fast: int = 10
    slow: int = 30
    quantity: float = 100.0
    long_only: bool = False

    def check(self) -> None:
        if self.fast < 1 or self.slow < 2:
            raise ConfigError(
                f"strategy.fast must be >= 1 and strategy.slow >= 2, got {self.fast}, {self.slow}"
            )
        if self.fast >= self.slow:
            raise ConfigError(
                f"strategy.fast ({self.fast}) must be smaller than strategy.slow ({self.slow})"
            )
        _positive("strategy.quantity", self.quantity)


class ScriptedEnsembleConfig(
    _Config,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="scripted_ensemble",
    tag_field="kind",
):
    """Scripted agents (``oracle``, ``contrarian``, ``random``, ``neutral``, ``trend``,
    ``mean_revert``; see :mod:`strategies.scripted`) weighted by the meta-investor;
    ``lookback`` is the bars the ``trend`` and ``mean_revert`` rules read;
    ``no_trade_band`` and ``min_hold_bars`` as for ``mappo_ensemble``; ``meta`` holds
    :class:`strategies.meta.step.MetaInvestorParams` fields (``n_agents`` is set from
    ``agents``). ``oracle`` and ``contrarian`` read the next bar on purpose: they exist to
    show and test the meta-investor, not to trade."""

    agents: tuple[str, ...] = ("oracle", "contrarian", "random")
    max_position: float = 1_000.0
    confidence_threshold: float = 0.0
    lookback: int = 20
    no_trade_band: float = 0.0
    min_hold_bars: int = 0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)

    def check(self) -> None:
        _check_execution(self)
        if self.lookback < 1:
            raise ConfigError(f"strategy.lookback must be >= 1, got {self.lookback}")
        known = ("oracle", "contrarian", "random", "neutral", "trend", "mean_revert")
        for rule in self.agents:
            if rule not in known:
                raise ConfigError(
                    f"strategy.agents: unknown rule {rule!r}; choose from {', '.join(known)}"
                )
        if not self.agents:
            raise ConfigError("strategy.agents must name at least one agent")
        _positive("strategy.max_position", self.max_position)


class MappoEnsembleConfig(
    _Config,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag="mappo_ensemble",
    tag_field="kind",
):
    """The three learned agents (MLMI, NWRQK, Regime) of a checkpoint, weighted by the
    meta-investor. ``checkpoint`` is relative to the scenario file; ``vote`` is what each
    agent hands the ensemble: ``"action"`` (one-hot of its action, as in training) or
    ``"probabilities"`` (its policy's distribution); ``deterministic`` acts by argmax
    (else samples with the run's seed from SPEC 3's temperature-scaled distribution,
    τ_adaptive = ``sampling_temperature`` (1 + ``uncertainty_bonus`` · H(π) / log 3); see
    :mod:`strategies.marl.agents`). A checkpoint trained on another bar length or time
    zone is refused unless ``allow_transfer`` (see :mod:`strategies.marl.provenance`).
    Execution: a target that differs from the position by less than ``no_trade_band``
    (a share of ``max_position``) is not traded, and a position is held at least
    ``min_hold_bars`` bars before it changes again (both 0: off); the meta-investor's
    credit models the same rule. ``meta`` holds
    :class:`strategies.meta.step.MetaInvestorParams` fields."""

    checkpoint: str = ""
    max_position: float = 10_000.0
    confidence_threshold: float = 0.0
    deterministic: bool = True
    sampling_temperature: float = 1.0
    uncertainty_bonus: float = 0.0
    vote: Literal["action", "probabilities"] = "action"
    allow_transfer: bool = False
    no_trade_band: float = 0.0
    min_hold_bars: int = 0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)

    def check(self) -> None:
        _check_execution(self)
        if not self.checkpoint:
            raise ConfigError("strategy.checkpoint is required for kind = 'mappo_ensemble'")
        _positive("strategy.max_position", self.max_position)
        _positive("strategy.sampling_temperature", self.sampling_temperature)
        _non_negative("strategy.uncertainty_bonus", self.uncertainty_bonus)
        if not -1.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(
                f"strategy.confidence_threshold must be in [-1, 1], got {self.confidence_threshold}"
            )


def _check_execution(strategy: Any) -> None:
    """The ensembles' execution keys: ``no_trade_band`` in [0, 1), ``min_hold_bars`` >= 0."""
    if not 0.0 <= strategy.no_trade_band < 1.0:
        raise ConfigError(
            f"strategy.no_trade_band must be in [0, 1) (a share of max_position), "
            f"got {strategy.no_trade_band}"
        )
    if strategy.min_hold_bars < 0:
        raise ConfigError(f"strategy.min_hold_bars must be >= 0, got {strategy.min_hold_bars}")


StrategyConfig = SmaCrossConfig | ScriptedEnsembleConfig | MappoEnsembleConfig
# Keys added after scenarios were stored, per section (strategies by kind): to_dict leaves
# them out at their defaults, so the config hash of a scenario that does not use them stays.
_LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {
        "source_bar_minutes": 0,
        "max_price": 1e15,
        "max_volume": 1e18,
        "max_abs_log_return": 10.0,
    },
    "mappo_ensemble": {
        "sampling_temperature": 1.0,
        "uncertainty_bonus": 0.0,
        "allow_transfer": False,
        "no_trade_band": 0.0,
        "min_hold_bars": 0,
    },
    "scripted_ensemble": {"lookback": 20, "no_trade_band": 0.0, "min_hold_bars": 0},
    "train": {"reward_turnover": 0.0, "validation_end": "", "validate_every": 5, "patience": 0},
}


class TrainConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """MAPPO hyperparameters (SPEC 1, 4 and 5) for ``emarl train``; see
    :mod:`strategies.marl.mappo`. The strategy section must be ``mappo_ensemble``; its
    ``checkpoint`` is where training writes unless ``emarl train --out`` says otherwise.

    ``stage_episodes`` / ``stage_complexity``: the curriculum (basic, intermediate,
    advanced); training stays in the last stage once its episodes are used up.
    ``allocator``: ``"option"`` (the meta-investor's option weights), ``"equal"`` or
    ``"learned"`` (SPEC 5.8: raw weights trained on Σ w φ - λ wᵀΣw - L_bubble).
    ``reward_turnover``: ε of the turnover term (:mod:`strategies.marl.rewards`).
    ``validation_end``: a date or time; the bars after the training window up to it are
    held out to choose the checkpoint, scored every ``validate_every`` updates, with early
    stopping after ``patience`` scores without improvement (0: never); empty: no
    validation, the last update is kept (:mod:`strategies.marl.validation`).
    """

    updates: int = 200
    n_envs: int = 32
    episode_length: int = 128
    rollout_steps: int = 128
    epochs: int = 10
    minibatch_size: int = 256
    learning_rate: float = 3e-4
    regime_learning_rate: float = 2e-4
    critic_learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    dropout: float = 0.1
    curriculum: bool = True
    stage_episodes: tuple[int, ...] = (1000, 2000, 3000)
    stage_complexity: tuple[float, ...] = (0.3, 0.6, 1.0)
    hard_share: float = 0.5
    allocator: Literal["option", "equal", "learned"] = "option"
    allocator_learning_rate: float = 0.05
    risk_aversion: float = 1.0
    reward_pnl: float = 1.0
    reward_synergy: float = 0.1
    reward_risk: float = 0.5
    reward_exploration: float = 0.1
    reward_turnover: float = 0.0
    validation_end: str = ""
    validate_every: int = 5
    patience: int = 0
    drawdown_threshold: float = 0.05
    exploration_beta: float = 0.1
    stop_loss: float = 0.5
    threads: int = 1
    log_csv: str = ""

    def check(self) -> None:
        for name in ("updates", "n_envs", "episode_length", "rollout_steps", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.minibatch_size < 2:
            raise ConfigError(f"train.minibatch_size must be >= 2, got {self.minibatch_size}")
        if len(self.stage_episodes) != len(self.stage_complexity) or not self.stage_episodes:
            raise ConfigError(
                "train.stage_episodes and train.stage_complexity must have the same, "
                "non-zero length"
            )
        for c in self.stage_complexity:
            if not 0.0 <= c <= 1.0:
                raise ConfigError(f"train.stage_complexity values must be in [0, 1], got {c}")
        for name in ("learning_rate", "regime_learning_rate", "critic_learning_rate"):
            _positive(f"train.{name}", getattr(self, name))
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ConfigError("train.gamma must be in (0, 1] and train.gae_lambda in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout}")
        if self.threads < 1:
            raise ConfigError(f"train.threads must be >= 1, got {self.threads}")
        if self.validate_every < 1 or self.patience < 0:
            raise ConfigError(
                f"train.validate_every must be >= 1 and train.patience >= 0, got "
                f"{self.validate_every} and {self.patience}"
            )
        _non_negative("train.reward_turnover", self.reward_turnover)


class StorageConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "sqlite:///runs/emarl.db"
    flush_every_bars: int = 10_000

    def check(self) -> None:
        _positive("storage.flush_every_bars", self.flush_every_bars)


class ScenarioConfig(_Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole scenario. ``base_dir`` is the folder relative paths are read from."""

    run: RunConfig = msgspec.field(default_factory=RunConfig)
    data: DataConfig = msgspec.field(default_factory=DataConfig)
    instrument: InstrumentConfig = msgspec.field(default_factory=InstrumentConfig)
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    strategy: StrategyConfig = msgspec.field(default_factory=SmaCrossConfig)
    indicators: IndicatorParams = msgspec.field(default_factory=IndicatorParams)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    train: TrainConfig | None = None
    base_dir: str = "."

    def check(self) -> None:
        for section in (self.run, self.data, self.instrument, self.broker, self.strategy):
            section.check()
        self.storage.check()
        if self.train is not None:
            self.train.check()

    def data_path(self) -> Path:
        path = Path(self.data.path)
        return path if path.is_absolute() else (Path(self.base_dir) / path).resolve()

    def to_dict(self) -> dict[str, Any]:
        """The effective config as plain data (``base_dir`` left out)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.pop("base_dir", None)
        if out.get("train") is None:  # scenarios without [train] keep their hash
            out.pop("train", None)
        sections = [("data", out["data"])]
        if isinstance(out.get("train"), dict):
            sections.append(("train", out["train"]))
        strategy = out.get("strategy")
        if isinstance(strategy, dict):
            sections.append((str(strategy.get("kind")), strategy))
        for name, section in sections:
            for key, default in _LATER_DEFAULTS.get(name, {}).items():
                if key in section and section[key] == default:
                    del section[key]
        return out


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be zero or positive, got {value!r}")


def config_hash(config: ScenarioConfig) -> str:
    """SHA-256 of the effective config's canonical JSON (first 16 hex digits)."""
    payload = msgspec.json.encode(config.to_dict(), order="sorted")
    return hashlib.sha256(payload).hexdigest()[:16]


def _struct_types(annotation: Any) -> list[type[msgspec.Struct]]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, _Config)]
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return [annotation]
    return []


def _check_keys(data: dict[str, Any], struct: type[msgspec.Struct], where: str) -> None:
    import typing

    hints = typing.get_type_hints(struct)
    info = msgspec.structs.fields(struct)
    names = [f.encode_name for f in info]
    config = struct.__struct_config__
    tag_field = config.tag_field if config.tag else None
    allowed = set(names) | ({tag_field} if tag_field else set())
    allowed.discard("base_dir")
    for key, value in data.items():
        if key not in allowed:
            section = f"[{where}]" if where else "the top level"
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; known keys: {', '.join(sorted(allowed))}"
            )
            raise ConfigError(f"unknown key {key!r} in {section}{hint}")
        candidates = _struct_types(hints.get(key))
        if candidates and isinstance(value, dict):
            target = candidates[0]
            kinds = {c.__struct_config__.tag: c for c in candidates if c.__struct_config__.tag}
            if kinds:
                kind = value.get("kind", next(iter(kinds)))
                if kind not in kinds:
                    raise ConfigError(
                        f"[{where + '.' if where else ''}{key}] kind = {kind!r} is not known; "
                        f"choose one of {', '.join(map(repr, kinds))}"
                    )
                target = kinds[kind]
            _check_keys(value, target, f"{where}.{key}" if where else key)


_PATH = re.compile(r"at `\$\.?(.*)`")


def parse_scenario(text: str, *, source: str = "<scenario>", base_dir: str = ".") -> ScenarioConfig:
    """Decode scenario TOML text; every problem raises ``ConfigError`` naming ``source``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return scenario_from_dict(raw, source=source, base_dir=base_dir)


def scenario_from_dict(
    raw: dict[str, Any], *, source: str = "<scenario>", base_dir: str = "."
) -> ScenarioConfig:
    """Validate scenario data (the TOML tables as dicts, changed in place) into a config.

    Every problem raises ``ConfigError`` naming ``source``; parameter sweeps build
    each combination through here from ``ScenarioConfig.to_dict()`` plus overrides.
    """
    try:
        _check_keys(raw, ScenarioConfig, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    strategy = raw.get("strategy")
    if isinstance(strategy, dict) and "kind" not in strategy:
        strategy["kind"] = "sma_cross"
    # The hour features use the market's clock unless [indicators] names another zone.
    indicators = raw.setdefault("indicators", {})
    data = raw.get("data", {})
    if isinstance(indicators, dict) and "timezone" not in indicators and isinstance(data, dict):
        zone = data.get("timezone", DataConfig().timezone)
        if _known_zone(zone):  # an unknown one is reported as data.timezone below
            indicators["timezone"] = zone
    raw["base_dir"] = base_dir
    try:
        config = msgspec.convert(raw, ScenarioConfig)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        where = f" (key {match.group(1)})" if match and match.group(1) else ""
        raise ConfigError(f"{source}: {_PATH.sub('', message).rstrip(' -')}{where}") from None
    try:
        config.check()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


def _known_zone(name: object) -> bool:
    import zoneinfo

    if not isinstance(name, str) or not name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def load_scenario(path: str | Path) -> ScenarioConfig:
    """Read and validate a scenario file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"scenario file {str(file)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read scenario file {str(file)!r}: {exc}") from exc
    return parse_scenario(text, source=str(file), base_dir=str(file.resolve().parent))

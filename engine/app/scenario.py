"""Scenario files: one TOML file decoded once, at the edge, into a frozen config.

Each component receives its own section (``DataConfig``, ``BrokerConfig``...)
through its constructor; nothing below the CLI reads files, environment
variables or globals. Unknown keys are errors with a "did you mean" hint, and
type errors name the section and key::

    [run]        name, seed
    [data]       where the bars come from and how to validate them
    [instrument] symbol, lot size (or a universe: [[instruments]], one table each)
    [broker]     cash, costs, fill rules, margin, borrow fee and financing
    [strategy]   kind = "sma_cross" | ... and the strategy's parameters
    [indicators] the 13 features' parameters (indicators.params.IndicatorParams)
    [storage]    database URL and flush interval

Relative data paths are resolved against the scenario file's folder.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
import types
import typing
import zoneinfo
from datetime import datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from brokers.config import BrokerConfig
from engine.core.configs import ConfigStruct, check_seed, non_negative, positive
from engine.core.errors import ConfigError
from engine.feeds.config import DataConfig, SyntheticConfig
from indicators.params import IndicatorParams
from storage.config import StorageConfig
from strategies.marl.config import AGENTS, MappoEnsembleConfig, TrainConfig
from strategies.meta.params import MetaInvestorParams
from strategies.scripted import ScriptedEnsembleConfig
from strategies.sizing import SizingConfig
from strategies.sma_cross import SmaCrossConfig

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


class RunConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``trade_start`` (a date or time, naive = ``data.timezone``; empty = the first bar)
    starts trading: bars before it only warm up indicators and strategy state (no order
    goes out), and the summary covers the bars from it on."""

    name: str = "backtest"
    seed: int = 0
    trade_start: str = ""

    def check(self) -> None:
        check_seed("run.seed", self.seed)
        if self.trade_start:
            try:
                datetime.fromisoformat(self.trade_start.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(
                    f"run.trade_start: cannot read {self.trade_start!r} as a date or time "
                    "(use e.g. 2020-01-31 or 2020-01-31T09:30:00+08:00)"
                ) from None


class InstrumentConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One instrument: its symbol and lot size and, in a universe (``[[instruments]]``),
    optionally its own bar file (``path``, relative to the scenario) and its own costs
    (``commission_bps`` and ``slippage_bps`` in place of the broker's)."""

    symbol: str = "SYNTH"
    lot_size: float = 1.0
    path: str = ""
    commission_bps: float | None = None
    slippage_bps: float | None = None

    def check(self, where: str = "instrument") -> None:
        if not self.symbol or "/" in self.symbol or "+" in self.symbol or "#" in self.symbol:
            raise ConfigError(
                f"{where}.symbol must be non-empty without '/', '+', '#', got {self.symbol!r}"
            )
        positive(f"{where}.lot_size", self.lot_size)
        for name in ("commission_bps", "slippage_bps"):
            value = getattr(self, name)
            if value is not None:
                non_negative(f"{where}.{name}", value)


StrategyConfig = SmaCrossConfig | ScriptedEnsembleConfig | MappoEnsembleConfig
# Keys added after scenarios were stored, per section (strategies by kind): to_dict leaves
# them out at their defaults, so the config hash of a scenario that does not use them stays.
_LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "broker": {"borrow_fee_bps": 0.0, "financing_rate_bps": 0.0},
    "data": {
        "source_bar_minutes": 0,
        "max_price": 1e15,
        "max_volume": 1e18,
        "max_abs_log_return": 10.0,
        "symbol_column": "",
    },
    "mappo_ensemble": {
        "sampling_temperature": 1.0,
        "uncertainty_bonus": 0.0,
        "allow_transfer": False,
        "no_trade_band": 0.0,
        "min_hold_bars": 0,
        "sizing": msgspec.to_builtins(SizingConfig()),
        "allocation": "equal",
    },
    "scripted_ensemble": {
        "lookback": 20,
        "no_trade_band": 0.0,
        "min_hold_bars": 0,
        "sizing": msgspec.to_builtins(SizingConfig()),
        "allocation": "equal",
    },
    "instrument": {"path": "", "commission_bps": None, "slippage_bps": None},
    "synthetic": {"correlation": 0.3},
    "sma_cross": {
        "sizing": msgspec.to_builtins(SizingConfig()),
        "allocation": "equal",
        "stop_loss": 0.0,
        "take_profit": 0.0,
    },
    "train": {"reward_turnover": 0.0, "validation_end": "", "validate_every": 5, "patience": 0},
}


class ScenarioConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole scenario. ``base_dir`` is the folder relative paths are read from."""

    run: RunConfig = msgspec.field(default_factory=RunConfig)
    data: DataConfig = msgspec.field(default_factory=DataConfig)
    instrument: InstrumentConfig = msgspec.field(default_factory=InstrumentConfig)
    #: a universe: the instruments in their dispatch order (empty: ``instrument`` alone)
    instruments: tuple[InstrumentConfig, ...] = ()
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    strategy: StrategyConfig = msgspec.field(default_factory=SmaCrossConfig)
    indicators: IndicatorParams = msgspec.field(default_factory=IndicatorParams)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    train: TrainConfig | None = None
    base_dir: str = "."

    def check(self) -> None:
        universe = self.universe
        for section in (self.run, self.broker, self.strategy):
            section.check()
        self.data.check(paths_given=all(i.path for i in universe))
        if not self.instruments:
            self.instrument.check()
            if self.instrument.path or self.instrument.commission_bps is not None:
                raise ConfigError(
                    "instrument.path and per-instrument costs belong to a universe "
                    "([[instruments]]); for one instrument use data.path and [broker]"
                )
        for i, instrument in enumerate(self.instruments):
            instrument.check(f"instruments[{i}]")
        symbols = [i.symbol for i in universe]
        repeated = sorted({s for s in symbols if symbols.count(s) > 1})
        if repeated:
            raise ConfigError(f"[[instruments]] lists {', '.join(repeated)} more than once")
        self.storage.check()
        if self.train is not None:
            self.train.check()

    @property
    def universe(self) -> tuple[InstrumentConfig, ...]:
        """The instruments traded: ``[[instruments]]``, or ``[instrument]`` alone."""
        return self.instruments or (self.instrument,)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(i.symbol for i in self.universe)

    def single(self, what: str) -> InstrumentConfig:
        """The one instrument of a scenario that ``what`` needs; a universe is refused."""
        if len(self.universe) > 1:
            raise ConfigError(
                f"{what} runs on one instrument; this scenario has {len(self.universe)} "
                "([[instruments]]): give it one [instrument]"
            )
        return self.universe[0]

    def data_path(self, path: str = "") -> Path:
        """``path`` (by default ``data.path``) resolved against the scenario's folder."""
        resolved = Path(path or self.data.path)
        return resolved if resolved.is_absolute() else (Path(self.base_dir) / resolved).resolve()

    def to_dict(self) -> dict[str, Any]:
        """The effective config as plain data (``base_dir`` left out)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out.pop("base_dir", None)
        if out.get("train") is None:  # scenarios without [train] keep their hash
            out.pop("train", None)
        data = [("data", out["data"]), ("synthetic", out["data"]["synthetic"])]
        sections = [("broker", out["broker"]), *data, ("instrument", out["instrument"])]
        if out["instruments"]:
            out.pop("instrument")  # a universe's instruments are its [[instruments]]
            sections = [("broker", out["broker"]), *data]
            sections += [("instrument", item) for item in out["instruments"]]
        else:
            out.pop("instruments")
        if isinstance(out.get("train"), dict):
            sections.append(("train", out["train"]))
        strategy = out.get("strategy")
        if isinstance(strategy, dict):
            sections.append((str(strategy.get("kind")), strategy))
            if isinstance(strategy.get("meta"), dict):
                # the meta-investor's keys a scenario set (n_agents follows the panel)
                defaults = msgspec.to_builtins(MetaInvestorParams())
                strategy["meta"] = {
                    key: value
                    for key, value in strategy["meta"].items()
                    if key != "n_agents" and value != defaults[key]
                }
        for name, section in sections:
            for key, default in _LATER_DEFAULTS.get(name, {}).items():
                if key in section and section[key] == default:
                    del section[key]
        return out


def config_hash(config: ScenarioConfig | dict[str, Any]) -> str:
    """SHA-256 of the effective config's canonical JSON (first 16 hex digits); a dict is
    a config as a run row stores it."""
    stored = config if isinstance(config, dict) else config.to_dict()
    payload = msgspec.json.encode(stored, order="sorted")
    return hashlib.sha256(payload).hexdigest()[:16]


def _struct_types(annotation: Any) -> list[type[msgspec.Struct]]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [
            a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, ConfigStruct)
        ]
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return [annotation]
    return []


def _check_keys(data: dict[str, Any], struct: type[msgspec.Struct], where: str) -> None:

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
        annotation = hints.get(key)
        if get_origin(annotation) is tuple and isinstance(value, list):
            items = [a for a in get_args(annotation) if a is not Ellipsis]
            if len(items) == 1 and _struct_types(items[0]):
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        _check_keys(item, items[0], f"{key}[{i}]")
            continue
        candidates = _struct_types(annotation)
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
    if "instrument" in raw and "instruments" in raw:
        raise ConfigError(
            f"{source}: give one [instrument] or a universe of [[instruments]], not both"
        )
    strategy = raw.get("strategy")
    if isinstance(strategy, dict) and "kind" not in strategy:
        strategy["kind"] = "sma_cross"
    if isinstance(strategy, dict):
        _panel_size(strategy, source)
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


def _panel_size(strategy: dict[str, Any], source: str) -> None:
    """An ensemble's ``[strategy.meta] n_agents`` is its panel's size: one agent per
    scripted rule, three learned agents."""
    kind = strategy.get("kind")
    if kind == "scripted_ensemble":
        agents = strategy.get("agents", ScriptedEnsembleConfig().agents)
        if not isinstance(agents, list | tuple):
            return  # the type error is reported when the section is decoded
        size = len(agents)
    elif kind == "mappo_ensemble":
        size = len(AGENTS)
    else:
        return
    meta = strategy.setdefault("meta", {})
    if not isinstance(meta, dict):
        return
    given = meta.setdefault("n_agents", size)
    if given != size:
        raise ConfigError(
            f"{source}: [strategy.meta] n_agents = {given!r}, but the panel has {size} agents; "
            "leave n_agents out, it follows the strategy's agents"
        )


def _known_zone(name: object) -> bool:

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

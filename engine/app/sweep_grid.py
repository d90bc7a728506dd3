"""A sweep's grid: scenario fields by their dotted path, every combination a task.

``parse_grid`` reads ``--grid`` items (``broker.commission_bps=0,1,2``), ``with_overrides``
applies them to a scenario through :func:`engine.app.scenario.scenario_from_dict` (so a
bad path or value is a ``ConfigError`` with a "did you mean"), and ``build_tasks`` builds
every combination, times the seeds, into a :class:`TaskSpec` before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import difflib
import itertools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.app.metrics import Summary
from engine.app.scenario import ScenarioConfig, config_hash, scenario_from_dict
from engine.core.errors import ConfigError

__all__ = [
    "METRICS",
    "SMALLER_IS_BETTER",
    "TaskSpec",
    "build_tasks",
    "check_metric",
    "parse_grid",
    "set_path",
    "with_overrides",
]

#: Metrics a sweep can be sorted by (the fields of the run summary).
METRICS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Summary) if f.name not in ("start_ns", "end_ns")
)
#: Metrics where smaller is better; everything else sorts largest first.
SMALLER_IS_BETTER = frozenset(
    {"annual_volatility", "fees", "borrow_fees", "financing", "turnover", "bar_gaps"}
)


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return parts


def _parse_value(text: str) -> Any:
    """A TOML value (number, boolean, quoted string, array), else the text as a string."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, datetime.date | datetime.time):
        return text  # scenario dates and times are strings
    return value


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["broker.commission_bps=0,1,2", "strategy.fast=5,10"]`` -> path -> values."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"--grid {item!r}: expected PATH=V1,V2,... (e.g. broker.commission_bps=0,1,2)"
            )
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values once")
        parts = _split_values(values)
        if any(part == "" for part in parts):
            raise ConfigError(f"--grid {item!r}: an empty value (check the commas)")
        parsed = [_parse_value(part) for part in parts]
        if len({repr(v) for v in parsed}) != len(parsed):
            raise ConfigError(f"--grid {item!r}: a value is listed twice")
        grid[key] = parsed
    return grid


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``path = "a.b.c"`` (sections made as needed)."""
    parts = path.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"{path!r} is not a dotted path such as broker.commission_bps")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            above = ".".join(parts[: depth + 1])
            raise ConfigError(f"{path}: {above} is a value, not a section")
        node = child
    if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
        raise ConfigError(f"{path} is a section ([{path}]); name one of its keys")
    node[parts[-1]] = value


def _describe(overrides: dict[str, Any]) -> str:
    return " ".join(f"{key}={value!r}" for key, value in overrides.items())


def with_overrides(
    config: ScenarioConfig, overrides: dict[str, Any], *, source: str = "--grid"
) -> ScenarioConfig:
    """``config`` with dotted-path overrides applied, validated like a scenario file."""
    raw = copy.deepcopy(config.to_dict())
    for key, value in overrides.items():
        try:
            set_path(raw, key, value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return scenario_from_dict(
        raw, source=f"{source} {_describe(overrides)}".strip(), base_dir=config.base_dir
    )


@dataclass(frozen=True)
class TaskSpec:
    """What a worker needs to run one task: plain data, cheap to send."""

    task: int
    overrides: dict[str, Any]
    seed: int
    config: dict[str, Any]
    base_dir: str
    scenario: str
    config_hash: str
    kind: str = "sweep"
    sweep_id: int | None = None
    train: bool = False
    train_updates: int | None = None
    checkpoint: str = ""


def build_tasks(
    config: ScenarioConfig,
    grid: dict[str, list[Any]],
    seeds: int = 1,
    *,
    scenario: str = "",
    kind: str = "sweep",
) -> list[TaskSpec]:
    """Every combination of the grid, times ``seeds`` consecutive seeds, validated."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    keys = list(grid)
    for key in keys:  # a bad path is reported alone, before any combination
        with_overrides(config, {key: grid[key][0]})
    tasks: list[TaskSpec] = []
    for combination in itertools.product(*(grid[key] for key in keys)):
        overrides = dict(zip(keys, combination, strict=True))
        built = with_overrides(config, overrides)
        for offset in range(seeds):
            seed = built.run.seed + offset
            final = msgspec.structs.replace(
                built, run=msgspec.structs.replace(built.run, seed=seed)
            )
            tasks.append(
                TaskSpec(
                    task=len(tasks),
                    overrides=overrides,
                    seed=seed,
                    config=final.to_dict(),
                    base_dir=final.base_dir,
                    scenario=scenario,
                    config_hash=config_hash(final),
                    kind=kind,
                )
            )
    return tasks


def check_metric(metric: str) -> str:
    """``metric`` if it is a summary metric, else a ``ConfigError`` with a suggestion."""
    if metric in METRICS:
        return metric
    close = difflib.get_close_matches(metric, METRICS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {', '.join(METRICS)}"
    raise ConfigError(f"--sort: unknown metric {metric!r}{hint}")

"""Walk-forward train steps: what a fold does on its train window before the test.

A train step (a :data:`Trainer`) gets the scenario cut to the train window and returns
scenario overrides for the test window: :class:`NothingToTrain`, :class:`GridSelection`
(the best of an ``--optimize`` grid), :class:`MappoTraining` (train the agents on the
window) or :class:`KeepCheckpoint` (the scenario's own checkpoint, asked for); see
:mod:`engine.app.walkforward`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.app.backtest import run_backtest
from engine.app.provenance import checkpoint_path, read_training_record
from engine.app.scenario import ScenarioConfig
from engine.app.sweep import deflated_best, sort_rows
from engine.app.sweep_grid import build_tasks, with_overrides
from engine.app.sweep_task import train_checkpoint

__all__ = [
    "GridSelection",
    "KeepCheckpoint",
    "MappoTraining",
    "NothingToTrain",
    "TrainResult",
    "TrainWindow",
    "Trainer",
]


@dataclass(frozen=True)
class TrainWindow:
    """What a train step may see: the bars of ``[start_ns, end_ns)``, no later."""

    fold: int
    start_ns: int
    end_ns: int
    bars: int


@dataclass
class TrainResult:
    """Scenario overrides for the test window, a line saying what was done, and what
    was tried (for the record)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)


Trainer = Callable[[ScenarioConfig, TrainWindow], TrainResult]


@dataclass(frozen=True)
class NothingToTrain:
    """The train step of a strategy with nothing to learn: test as configured."""

    def __call__(self, config: ScenarioConfig, window: TrainWindow) -> TrainResult:
        return TrainResult(note="nothing to train")


@dataclass(frozen=True)
class GridSelection:
    """Backtest every combination of ``grid`` on the train window; keep the best by
    ``metric`` (ties: the first combination)."""

    grid: dict[str, list[Any]]
    metric: str = "sharpe"

    def __call__(self, config: ScenarioConfig, window: TrainWindow) -> TrainResult:
        rows = []
        for spec in build_tasks(config, self.grid):
            tried = with_overrides(config, spec.overrides, source=f"fold {window.fold}")
            result = run_backtest(tried, persist=False)
            summary = {**result.summary.to_dict(), "edge": result.edge}
            rows.append({"task": spec.task, "status": "completed", **spec.overrides, **summary})
        best = sort_rows(rows, self.metric)[0]
        value = best.get(self.metric)
        if value is None or value != value:
            chosen: dict[str, Any] = {}
            note = f"no combination has a {self.metric} on the train window; testing as configured"
        else:
            chosen = {key: best[key] for key in self.grid}
            described = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
            deflated = deflated_best(rows, self.metric)["dsr"]
            note = (
                f"best of {len(rows)} by {self.metric} ({value:.4g}): {described}; deflated "
                f"Sharpe ratio {deflated:.2f} given {len(rows)} trials"
            )
        candidates = [
            {"overrides": {k: r[k] for k in self.grid}, self.metric: r.get(self.metric)}
            for r in rows
        ]
        return TrainResult(overrides=chosen, note=note, candidates=candidates)


@dataclass(frozen=True)
class MappoTraining:
    """Train the ``mappo_ensemble`` agents on the fold's train window and test with that
    checkpoint, written to ``folder/fold-<k>.pt`` (+ ``.json``, which records the
    training data's window)."""

    folder: str
    updates: int | None = None

    def __call__(self, config: ScenarioConfig, window: TrainWindow) -> TrainResult:
        path = Path(self.folder) / f"fold-{window.fold}.pt"
        trained = train_checkpoint(config, path, updates=self.updates)
        note = (
            f"trained {trained['updates']} updates on {trained['bars']} bars to "
            f"{trained['data_end']}: {trained['checkpoint']}"
        )
        return TrainResult(
            overrides={"strategy.checkpoint": trained["checkpoint"]},
            note=note,
            candidates=[trained],
        )


@dataclass(frozen=True)
class KeepCheckpoint:
    """Test with the scenario's own checkpoint (asked for with ``--keep-checkpoint``); the
    note says which bars it was trained on."""

    def __call__(self, config: ScenarioConfig, window: TrainWindow) -> TrainResult:
        path = checkpoint_path(config)
        trained_on = read_training_record(path).describe()
        return TrainResult(note=f"kept the scenario's checkpoint {path} (trained on {trained_on})")

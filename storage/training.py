"""Training runs and their per-update metrics (``emarl train``)."""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.core.errors import ConfigError, RunNotFoundError, StorageError
from storage.jobs import end_job, insert_job
from storage.models import TrainingMetric, TrainingRun

__all__ = [
    "LEARNING_CURVES",
    "add_training_metric",
    "create_training_run",
    "finish_training_run",
    "training_metrics",
]

#: the per-update figures a learning curve plots (reporting.figures.learning_curves_figure)
LEARNING_CURVES = (
    "episode_return",
    "episode_pnl",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
)
_METRIC_FIELDS = (
    "update",
    "stage",
    "complexity",
    "episodes",
    "agent_steps",
    *LEARNING_CURVES,
    "weights",
    "seconds",
)


def create_training_run(
    engine: Engine,
    *,
    name: str,
    scenario: str,
    config: dict[str, Any],
    config_hash: str,
    seed: int,
    code_version: str,
) -> int:
    try:
        with engine.begin() as conn:
            return insert_job(
                conn,
                TrainingRun,
                name=name,
                scenario=scenario,
                config_json=json.dumps(config, sort_keys=True, default=str),
                config_hash=config_hash,
                seed=seed,
                code_version=code_version,
                updates=0,
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot store the training run: {exc}") from exc


def add_training_metric(engine: Engine, training_run_id: int, metrics: dict[str, Any]) -> None:
    """One update's metrics; NaN becomes NULL."""
    row: dict[str, Any] = {"training_run_id": training_run_id}
    for name in _METRIC_FIELDS:
        value = metrics[name]
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        row[name] = value
    try:
        with engine.begin() as conn:
            conn.execute(insert(TrainingMetric), [row])
            conn.execute(
                update(TrainingRun)
                .where(TrainingRun.id == training_run_id)
                .values(updates=int(metrics["update"]))
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot store training metrics: {exc}") from exc


def finish_training_run(
    engine: Engine,
    training_run_id: int,
    *,
    status: str,
    wall_seconds: float,
    checkpoint: str | None = None,
    error: str | None = None,
) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                end_job(
                    TrainingRun,
                    training_run_id,
                    status=status,
                    wall_seconds=wall_seconds,
                    checkpoint=checkpoint,
                    error=error,
                )
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot finish the training run: {exc}") from exc


def training_metrics(engine: Engine, training_run: int | str | None) -> tuple[int, str, Any]:
    """(id, name, per-update metrics as a pandas DataFrame) of a training run (an id, or
    ``"latest"`` / None for the newest)."""
    import pandas as pd  # only for a DataFrame of the metrics

    try:
        with engine.connect() as conn:
            if training_run is None or training_run == "latest":
                run_id = conn.execute(select(func.max(TrainingRun.id))).scalar()
                if run_id is None:
                    raise RunNotFoundError("the database holds no training runs yet")
            else:
                try:
                    run_id = int(training_run)
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{training_run!r} is not a training run id (a number, or 'latest')"
                    ) from None
            name = conn.execute(select(TrainingRun.name).where(TrainingRun.id == run_id)).scalar()
            if name is None:
                raise RunNotFoundError(f"no training run with id {run_id}")
            rows = conn.execute(
                select(*(getattr(TrainingMetric, f) for f in _METRIC_FIELDS))
                .where(TrainingMetric.training_run_id == run_id)
                .order_by(TrainingMetric.update)
            ).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the training run: {exc}") from exc
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(_METRIC_FIELDS))
    return int(run_id), str(name), frame

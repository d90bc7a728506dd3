"""Reading sweeps and walk-forwards back: their rows, tasks, folds and stitched curve.

Re-exported by :mod:`storage.query`; :mod:`storage.sweeps` writes these rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, RowMapping, func, select

from engine.core.errors import ConfigError, RunNotFoundError
from storage.db import engine_of, read_rows, storage_errors
from storage.jobs import newest_jobs
from storage.models import Sweep, SweepTask, WalkForwardEquity, WalkForwardFold

if TYPE_CHECKING:
    import pandas as pd  # only for a DataFrame: the query commands print without pandas

__all__ = [
    "FOLD_COLUMNS",
    "SWEEP_COLUMNS",
    "SWEEP_TASK_COLUMNS",
    "list_sweeps",
    "resolve_sweep",
    "sweep_info",
    "sweep_task_rows",
    "walk_forward_equity",
    "walk_forward_rows",
]

_SWEEP = (
    Sweep.id,
    Sweep.kind,
    Sweep.name,
    Sweep.scenario,
    Sweep.scheduler,
    Sweep.status,
    Sweep.tasks,
    Sweep.started_ns,
    Sweep.wall_seconds,
    Sweep.config_json,
    Sweep.spec_json,
    Sweep.summary_json,
)
_TASK = (
    SweepTask.sweep_id,
    SweepTask.task,
    SweepTask.overrides_json,
    SweepTask.seed,
    SweepTask.config_hash,
    SweepTask.status,
    SweepTask.run_id,
    SweepTask.error,
    SweepTask.summary_json,
    SweepTask.fills,
    SweepTask.fills_hash,
    SweepTask.wall_seconds,
    SweepTask.worker,
)
_FOLD = (
    WalkForwardFold.sweep_id,
    WalkForwardFold.fold,
    WalkForwardFold.train_start_ns,
    WalkForwardFold.train_end_ns,
    WalkForwardFold.test_start_ns,
    WalkForwardFold.test_end_ns,
    WalkForwardFold.train_bars,
    WalkForwardFold.test_bars,
    WalkForwardFold.status,
    WalkForwardFold.train_note,
    WalkForwardFold.train_json,
    WalkForwardFold.params_json,
    WalkForwardFold.run_id,
    WalkForwardFold.error,
    WalkForwardFold.summary_json,
)
#: the columns read of a sweep, a sweep task and a walk-forward fold, in order
SWEEP_COLUMNS = tuple(column.key for column in _SWEEP)
SWEEP_TASK_COLUMNS = tuple(column.key for column in _TASK)
FOLD_COLUMNS = tuple(column.key for column in _FOLD)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _plain(row: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    """A row's columns but its JSON ones, in order."""
    return {name: row[name] for name in columns if not name.endswith("_json")}


def _entries(
    rows: Sequence[RowMapping],
    columns: tuple[str, ...],
    decoded: dict[str, str],
    *,
    figures: bool = False,
) -> list[dict[str, Any]]:
    """Each row's plain columns (:func:`_plain`), then its JSON columns decoded, each under
    its key in ``decoded`` (key: column), and with ``figures`` its summary's figures
    (the summary flattened: its values but lists and dicts)."""
    out = []
    for row in rows:
        entry = _plain(row, columns)
        for key, column in decoded.items():
            entry[key] = _loads(row[column])
        if figures:
            summary = _loads(row["summary_json"]) or {}
            entry.update({k: v for k, v in summary.items() if not isinstance(v, list | dict)})
        out.append(entry)
    return out


def resolve_sweep(engine: Engine, sweep: int | str | None, kind: str | None = None) -> int:
    """A sweep id from an id, ``"latest"`` or None (the latest of ``kind``, if given)."""
    with storage_errors("looking up the sweep"), engine.connect() as connection:
        if sweep is None or sweep == "latest":
            query = select(func.max(Sweep.id))
            if kind is not None:
                query = query.where(Sweep.kind == kind)
            latest = connection.execute(query).scalar()
            if latest is None:
                raise RunNotFoundError(f"the database holds no {kind or 'sweep'} yet")
            return int(latest)
        try:
            sweep_id = int(sweep)
        except (TypeError, ValueError):
            raise ConfigError(f"{sweep!r} is not a sweep id (a number, or 'latest')") from None
        found = connection.execute(select(Sweep.kind).where(Sweep.id == sweep_id)).scalar()
        if found is None or (kind is not None and found != kind):
            raise RunNotFoundError(f"no {kind or 'sweep'} with id {sweep_id}")
        return sweep_id


def list_sweeps(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """Sweeps and walk-forwards, newest first, with their spec and summary decoded."""
    rows = newest_jobs(engine, Sweep, _SWEEP, limit, "listing sweeps")
    return _entries(rows, SWEEP_COLUMNS, {"spec": "spec_json", "summary": "summary_json"})


def sweep_info(engine: Engine, sweep: int | str | None, kind: str | None = None) -> dict[str, Any]:
    """One sweep or walk-forward row (id, ``"latest"`` or None), its config, spec and
    summary decoded."""
    sweep_id = resolve_sweep(engine, sweep, kind)
    query = select(*_SWEEP).where(Sweep.id == sweep_id)
    with storage_errors(f"reading sweep {sweep_id}"), engine.connect() as connection:
        row = connection.execute(query).mappings().one()
    entry = _plain(row, SWEEP_COLUMNS)
    entry["config"] = _loads(row["config_json"]) or {}
    entry["spec"] = _loads(row["spec_json"]) or {}
    entry["summary"] = _loads(row["summary_json"]) or {}
    return entry


def sweep_task_rows(engine: Engine, sweep: int | str | None = "latest") -> list[dict[str, Any]]:
    """A sweep's tasks in task order: overrides, seed, status, run id, error and the
    run's summary metrics (flattened)."""
    sweep_id = resolve_sweep(engine, sweep)
    query = select(*_TASK).where(SweepTask.sweep_id == sweep_id).order_by(SweepTask.task)
    rows = read_rows(engine, query, f"reading the tasks of sweep {sweep_id}")
    # overrides_json always holds a JSON object (the task's overrides; never NULL)
    return _entries(rows, SWEEP_TASK_COLUMNS, {"overrides": "overrides_json"}, figures=True)


def walk_forward_rows(engine: Engine, sweep: int | str | None = "latest") -> list[dict[str, Any]]:
    """A walk-forward's folds in order: windows (int ns UTC), what the train step chose,
    the test run and its metrics (flattened)."""
    sweep_id = resolve_sweep(engine, sweep, "walkforward")
    query = (
        select(*_FOLD).where(WalkForwardFold.sweep_id == sweep_id).order_by(WalkForwardFold.fold)
    )
    rows = read_rows(engine, query, f"reading the folds of walk-forward {sweep_id}")
    decoded = {"params": "params_json", "candidates": "train_json"}
    return _entries(rows, FOLD_COLUMNS, decoded, figures=True)


def walk_forward_equity(engine: Engine | str, sweep: int | str | None = "latest") -> pd.DataFrame:
    """The stitched out-of-sample equity curve of a walk-forward as a DataFrame:
    ``time`` (UTC), ``fold``, ``equity`` (stitched, starting at the scenario's cash)
    and ``fold_equity`` (that fold's own run). ``engine`` may be a database URL."""
    import pandas as pd  # only for a DataFrame: the query commands print without pandas

    engine = engine_of(engine)
    sweep_id = resolve_sweep(engine, sweep, "walkforward")
    curve = WalkForwardEquity
    query = (
        select(curve.ts_event, curve.fold, curve.equity, curve.fold_equity)
        .where(curve.sweep_id == sweep_id)
        .order_by(curve.ts_event)
    )
    with storage_errors(f"reading the equity of walk-forward {sweep_id}"), engine.connect() as c:
        rows = c.execute(query).all()
    frame = pd.DataFrame(rows, columns=["time", "fold", "equity", "fold_equity"])
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), utc=True)
    return frame

"""Sweep and walk-forward rows, and runs executed elsewhere stored by the client.

A sweep task runs on a Dask worker. With SQLite the worker keeps the run's
messages in memory and returns them; the client stores them here
(:func:`store_run`), so SQLite only ever has one writer. With PostgreSQL the
worker writes its run itself (:func:`store_task_run`) and the client only records
the task.

A worker can die after its run is committed but before the client hears back;
Dask then runs the task again. :func:`store_task_run` links the run to its task
row (``sweep_tasks`` or ``walk_forward_folds``) in the transaction that creates the
run row, so the retry finds it: a completed run is reused, an unfinished one
(the worker died while writing it) is deleted with its rows and written again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, insert, select, update

from engine.core.events import Message
from storage.db import storage_errors
from storage.jobs import create_job, end_job, insert_job
from storage.models import (
    Run,
    RunStatus,
    Sweep,
    SweepTask,
    TaskRow,
    WalkForwardEquity,
    WalkForwardFold,
)
from storage.recorder import write_messages
from storage.runs import create_run, finish_run, process_identity

__all__ = [
    "create_sweep",
    "finish_sweep",
    "record_fold",
    "record_task",
    "store_equity",
    "store_run",
    "store_task_run",
]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def create_sweep(
    engine: Engine,
    *,
    kind: str,
    name: str,
    scenario: str,
    config: dict[str, Any],
    spec: dict[str, Any],
    code_version: str,
    scheduler: str,
    tasks: int,
) -> int:
    """Insert a ``running`` sweep row and return its id."""
    return create_job(
        engine,
        Sweep,
        "creating the sweep row",
        kind=kind,
        name=name,
        scenario=scenario,
        config_json=json.dumps(config, sort_keys=True),
        spec_json=json.dumps(spec, sort_keys=True, default=str),
        code_version=code_version,
        scheduler=scheduler,
        tasks=tasks,
    )


def finish_sweep(
    engine: Engine,
    sweep_id: int,
    *,
    status: str,
    wall_seconds: float,
    summary: dict[str, Any] | None = None,
) -> None:
    with storage_errors(f"finishing sweep {sweep_id}"), engine.begin() as connection:
        connection.execute(
            end_job(
                Sweep,
                sweep_id,
                status=status,
                wall_seconds=wall_seconds,
                summary_json=_json(summary),
            )
        )


@dataclass(frozen=True)
class _TaskTable:
    """The rows of a sweep's tasks or of a walk-forward's folds."""

    model: type[TaskRow]
    #: the task's number within its sweep (the second part of the key)
    number: str
    #: what the sweep is called in messages
    owner: str
    #: the row's values stored as JSON, each in the column ``<key>_json``
    json_keys: tuple[str, ...]

    def where(self, sweep_id: int, task: int) -> tuple[ColumnElement[bool], ...]:
        """The conditions that select task ``task`` of sweep ``sweep_id``."""
        return (self.model.sweep_id == sweep_id, getattr(self.model, self.number) == task)


_TASKS = _TaskTable(SweepTask, "task", "sweep", ("overrides", "summary"))
_FOLDS = _TaskTable(WalkForwardFold, "fold", "walk-forward", ("train", "params", "summary"))


def _record(
    engine: Engine, table: _TaskTable, sweep_id: int, row: dict[str, Any], new: bool
) -> None:
    """Insert (``new``) or update one row of ``table``, its ``json_keys`` stored as JSON."""
    values = dict(row)
    for key in table.json_keys:
        if key in values:
            values[f"{key}_json"] = _json(values.pop(key))
    task = values.pop(table.number)
    statement = (
        insert(table.model).values(sweep_id=sweep_id, **{table.number: task}, **values)
        if new
        else update(table.model).where(*table.where(sweep_id, task)).values(**values)
    )
    what = f"{table.owner} {sweep_id}: recording {table.number} {task}"
    with storage_errors(what), engine.begin() as connection:
        connection.execute(statement)


def record_task(engine: Engine, sweep_id: int, row: dict[str, Any], *, new: bool) -> None:
    """Insert (``new``) or update one task row; dict values are stored as JSON."""
    _record(engine, _TASKS, sweep_id, row, new)


def record_fold(engine: Engine, sweep_id: int, row: dict[str, Any], *, new: bool) -> None:
    """Insert (``new``) or update one walk-forward fold row."""
    _record(engine, _FOLDS, sweep_id, row, new)


def store_equity(
    engine: Engine,
    sweep_id: int,
    ts: Sequence[int],
    fold: Sequence[int],
    equity: Sequence[float],
    fold_equity: Sequence[float],
) -> None:
    """Write the stitched out-of-sample curve (replacing nothing: call once per sweep)."""
    rows = [
        {"sweep_id": sweep_id, "ts_event": t, "fold": f, "equity": e, "fold_equity": fe}
        for t, f, e, fe in zip(ts, fold, equity, fold_equity, strict=True)
    ]
    if not rows:
        return
    with storage_errors(f"walk-forward {sweep_id}: writing the equity curve"), engine.begin() as c:
        c.execute(insert(WalkForwardEquity), rows)


def store_run(
    engine: Engine,
    *,
    run: dict[str, Any],
    messages: Iterable[Message] | None,
    summary: dict[str, Any],
    wall_seconds: float,
) -> int:
    """Store a run executed elsewhere: its row, its recorded messages, its summary.

    ``run`` holds :func:`storage.runs.create_run`'s arguments. The messages are
    written in one transaction by :func:`storage.recorder.write_messages` (the same
    tables and rows as a local backtest).
    """
    run_id = create_run(engine, **run)
    if messages is not None:
        write_messages(engine, run_id, messages)
    finish_run(
        engine, run_id, status=RunStatus.COMPLETED, wall_seconds=wall_seconds, summary=summary
    )
    return run_id


def _claim_run(
    connection: Connection, table: _TaskTable, sweep_id: int, task: int, run: dict[str, Any]
) -> tuple[int, bool]:
    """Inside one transaction: the task's stored run if it is complete, else a new run
    row linked to the task (an unfinished earlier attempt is deleted first)."""
    where = table.where(sweep_id, task)
    query = select(table.model.run_id).where(*where)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()  # two attempts at one task take turns
    earlier = connection.execute(query).scalar()
    if earlier is not None:
        status = connection.execute(select(Run.status).where(Run.id == earlier)).scalar()
        if status == RunStatus.COMPLETED:
            return int(earlier), True
        # Its rows go with it (ON DELETE CASCADE); the task row's run_id is set below.
        connection.execute(delete(Run).where(Run.id == earlier))
    values = dict(run)
    run_id = insert_job(
        connection,
        Run,
        name=values.pop("name"),
        kind=values.pop("kind"),
        scenario=values.pop("scenario"),
        symbol=values.pop("symbol"),
        config_json=json.dumps(values.pop("config"), sort_keys=True),
        bars_stored=0,
        **process_identity(),
        **values,
    )
    connection.execute(
        update(table.model).where(*where).values(run_id=run_id, status=RunStatus.RUNNING)
    )
    return run_id, False


def store_task_run(
    engine: Engine,
    *,
    sweep_id: int,
    task: int,
    fold: bool = False,
    run: dict[str, Any],
    messages: Iterable[Message] | None,
    summary: dict[str, Any],
    wall_seconds: float,
) -> tuple[int, bool]:
    """Store the run of task ``task`` of sweep ``sweep_id`` (a walk-forward fold when
    ``fold``) at most once; return ``(run_id, reused)``.

    ``reused`` is true when an earlier attempt at the same task had already stored
    its run completely: that run is kept and nothing is written.
    """
    table = _FOLDS if fold else _TASKS
    with (
        storage_errors(f"{table.owner} {sweep_id}: storing the run of task {task}"),
        engine.begin() as connection,
    ):
        run_id, reused = _claim_run(connection, table, sweep_id, task, run)
    if reused:
        return run_id, True
    if messages is not None:
        write_messages(engine, run_id, messages)
    finish_run(
        engine, run_id, status=RunStatus.COMPLETED, wall_seconds=wall_seconds, summary=summary
    )
    return run_id, False

"""Job rows: runs, sweeps and training runs (:class:`storage.models.Job`).

A job row is inserted ``running``, started now, and ended with a status, its end time
and its wall-clock seconds; each kind adds its own columns. Listings read them newest
first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, Update, insert, select, update
from sqlalchemy.orm import InstrumentedAttribute

from storage.db import read_rows, storage_errors
from storage.models import Job, RunStatus

__all__ = ["create_job", "end_job", "insert_job", "newest_jobs"]


def insert_job(connection: Connection, model: type[Job], **values: Any) -> int:
    """Insert a ``running`` row of ``model``, started now, with ``values``; return its id."""
    result = connection.execute(
        insert(model).values(status=RunStatus.RUNNING, started_ns=time.time_ns(), **values)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def create_job(engine: Engine, model: type[Job], what: str, **values: Any) -> int:
    """:func:`insert_job` in a transaction of its own; a failure is a
    :class:`StorageError` naming ``what``."""
    with storage_errors(what), engine.begin() as connection:
        return insert_job(connection, model, **values)


def end_job(
    model: type[Job], job_id: int, *, status: str, wall_seconds: float, **values: Any
) -> Update:
    """The statement that ends job ``job_id``: its status, its end time (now, unless
    ``values`` hold ``ended_ns``), its wall-clock seconds and any other ``values``."""
    values.setdefault("ended_ns", time.time_ns())
    return (
        update(model)
        .where(model.id == job_id)
        .values(status=status, wall_seconds=wall_seconds, **values)
    )


def newest_jobs(
    engine: Engine,
    model: type[Job],
    columns: Sequence[InstrumentedAttribute[Any]],
    limit: int | None,
    what: str,
) -> Sequence[RowMapping]:
    """``columns`` of the rows of ``model``, newest first, at most ``limit`` (None or 0:
    all); a failure is a :class:`StorageError` naming ``what``."""
    query = select(*columns).order_by(model.id.desc())
    if limit:
        query = query.limit(limit)
    return read_rows(engine, query, what)

"""Run rows: created when a run starts, completed or failed when it ends, and who writes them.

A run row records the process that writes it: ``host`` (the host name, with the
process-id namespace where Linux shows one, so two containers that share a host
name are told apart), ``pid``, a ``heartbeat_ns`` refreshed in the transaction of
every flush (and at least every :data:`HEARTBEAT_SECONDS` while the run waits),
and ``bars_stored``, the bars whose rows are committed.

A run that died (SIGKILL, power loss, a lost container) cannot say so. Readers
therefore judge every ``running`` row (:func:`mark_interrupted`): a run written
on this host is ``interrupted`` when its process is gone (or is another process
that took over the id since); a run written on another host (or by a process
that recorded none) when its heartbeat is older than :data:`STALE_AFTER_SECONDS`.
The judgement is stored with a conditional update (only if the row is still
``running`` with the same heartbeat), so a run that just wrote a heartbeat is
never marked.

The statuses are :class:`storage.models.RunStatus`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, select, update

from engine.core.errors import StorageError
from storage.db import storage_errors, write_statement
from storage.jobs import create_job, end_job
from storage.models import Run, RunStatus

__all__ = [
    "HEARTBEAT_SECONDS",
    "STALE_AFTER_SECONDS",
    "create_run",
    "finish_run",
    "heartbeat_statement",
    "incomplete_note",
    "mark_interrupted",
    "process_identity",
    "prune_interrupted",
    "touch_run",
]

#: a running process refreshes its heartbeat at least this often (seconds)
HEARTBEAT_SECONDS = 10.0
#: a ``running`` row whose heartbeat is older than this is ``interrupted`` (seconds)
STALE_AFTER_SECONDS = 120.0


def _host() -> str:
    name = socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return name
    return f"{name} {namespace}"


def process_identity() -> dict[str, Any]:
    """The columns that name this process as a run's writer, with a fresh heartbeat."""
    return {"host": _host(), "pid": os.getpid(), "heartbeat_ns": time.time_ns()}


def create_run(
    engine: Engine,
    *,
    name: str,
    kind: str,
    scenario: str,
    symbol: str,
    config: dict[str, Any],
    config_hash: str,
    seed: int,
    code_version: str,
    bars: int,
    bar_gaps: int,
    first_bar_ns: int | None,
    last_bar_ns: int | None,
    data_fingerprint: str | None = None,
    checkpoint_fingerprint: str | None = None,
    trained_first_ns: int | None = None,
    trained_last_ns: int | None = None,
) -> int:
    """Insert a ``running`` run row, written by this process, and return its id (with the
    run's provenance: the fingerprints of its bars and checkpoint, the checkpoint's
    training window)."""
    return create_job(
        engine,
        Run,
        "creating the run row",
        name=name,
        kind=kind,
        scenario=scenario,
        symbol=symbol,
        config_json=json.dumps(config, sort_keys=True),
        config_hash=config_hash,
        seed=seed,
        code_version=code_version,
        bars=bars,
        bar_gaps=bar_gaps,
        first_bar_ns=first_bar_ns,
        last_bar_ns=last_bar_ns,
        data_fingerprint=data_fingerprint,
        checkpoint_fingerprint=checkpoint_fingerprint,
        trained_first_ns=trained_first_ns,
        trained_last_ns=trained_last_ns,
        bars_stored=0,
        **process_identity(),
    )


def finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: RunStatus,
    wall_seconds: float,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
    **columns: Any,
) -> None:
    """Mark a run ``completed`` (every bar stored) or ``failed`` with its summary or error
    (and any other column given, as a paper run's ``bars``)."""
    now = time.time_ns()
    values: dict[str, Any] = {
        "ended_ns": now,
        "heartbeat_ns": now,
        "summary_json": None if summary is None else json.dumps(summary, sort_keys=True),
        "error": error,
        **columns,
    }
    if status == RunStatus.COMPLETED:
        values["bars_stored"] = columns.get("bars", Run.bars)
    write_statement(
        engine,
        f"finishing run {run_id}",
        end_job(Run, run_id, status=status, wall_seconds=wall_seconds, **values),
    )


def heartbeat_statement(engine: Engine, run_id: int) -> str:
    """Driver-level SQL that sets a run's heartbeat and bars stored (two parameters, in
    that order): the Recorder runs it in the transaction of every flush."""
    dialect = engine.dialect
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    table = dialect.identifier_preparer.format_table(Run.__table__)
    return (
        f"UPDATE {table} SET heartbeat_ns = {marker}, bars_stored = {marker} "
        f"WHERE id = {int(run_id)}"
    )


def heartbeat_query(engine: Engine, run_id: int) -> str:
    """Driver-level SQL that reads a run's heartbeat. Every flush sets a new one, so a
    flush whose connection was lost was committed if this reads the heartbeat it set."""
    table = engine.dialect.identifier_preparer.format_table(Run.__table__)
    return f"SELECT heartbeat_ns FROM {table} WHERE id = {int(run_id)}"


def touch_run(engine: Engine, run_id: int) -> None:
    """Refresh a run's heartbeat (a paper run waiting for its next bar). Tried once: the
    next comes seconds later, and waiting out an outage here would hold up the feed."""
    with storage_errors(f"run {run_id}: refreshing its heartbeat"), engine.begin() as connection:
        connection.execute(update(Run).where(Run.id == run_id).values(heartbeat_ns=time.time_ns()))


# -- judging running rows ---------------------------------------------------------


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _process_alive(pid: int, started_ns: int) -> bool:
    """Whether the process ``pid`` that started a run at ``started_ns`` still runs here.

    A zombie (killed, not yet reaped) is gone; so is a process that started after the
    run did (the id was given to another process since). Without ``/proc`` only the id
    is checked.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return True  # no /proc: the id exists
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return False
    boot = _boot_time()
    if boot is not None and len(fields) > 19:
        began = boot + int(fields[19]) / _clock_ticks()
        if began > started_ns / 1e9 + 2.0:  # /proc times are rounded to ticks and seconds
            return False
    return True


@dataclass(frozen=True)
class _Running:
    run_id: int
    host: str | None
    pid: int | None
    started_ns: int
    heartbeat_ns: int | None


def _is_interrupted(row: _Running, now_ns: int, stale_after: float, host: str) -> bool:
    if row.host == host and row.pid is not None:
        # on this host the process itself says it (a slow but live run is not stale)
        return not _process_alive(row.pid, row.started_ns)
    heartbeat = row.heartbeat_ns if row.heartbeat_ns is not None else row.started_ns
    return now_ns - heartbeat > stale_after * 1e9


def mark_interrupted(
    engine: Engine,
    *,
    now_ns: int | None = None,
    stale_after: float = STALE_AFTER_SECONDS,
) -> set[int]:
    """Judge every ``running`` row (module docstring); store and return those interrupted.

    A database that cannot be written (a read-only file) still gets the judgement
    returned; it is stored by the next reader that can write.
    """
    now = time.time_ns() if now_ns is None else now_ns
    query = select(Run.id, Run.host, Run.pid, Run.started_ns, Run.heartbeat_ns).where(
        Run.status == RunStatus.RUNNING
    )
    with storage_errors("checking running runs"), engine.connect() as connection:
        rows = [_Running(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in connection.execute(query)]
    host = _host()
    found = {row.run_id for row in rows if _is_interrupted(row, now, stale_after, host)}
    if not found:
        return found
    try:
        with storage_errors("marking interrupted runs"), engine.begin() as connection:
            for row in rows:
                if row.run_id not in found:
                    continue
                same = (
                    Run.heartbeat_ns.is_(None)
                    if row.heartbeat_ns is None
                    else Run.heartbeat_ns == row.heartbeat_ns
                )
                result = connection.execute(
                    update(Run)
                    .where(and_(Run.id == row.run_id, Run.status == RunStatus.RUNNING, same))
                    .values(status=RunStatus.INTERRUPTED)
                )
                if result.rowcount != 1:  # it wrote a heartbeat meanwhile: alive
                    found.discard(row.run_id)
    except StorageError:
        pass  # read-only: the judgement stands for this reader
    return found


def incomplete_note(engine: Engine, run_id: int) -> str | None:
    """One line saying why a run's rows may be partial, or None for a completed run."""
    query = select(Run.status, Run.kind, Run.bars, Run.bars_stored, Run.error).where(
        Run.id == run_id
    )
    with storage_errors(f"reading run {run_id}"), engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None or row.status == RunStatus.COMPLETED:
        return None
    stored = row.bars_stored
    if row.kind == "paper":
        where = f"{stored:,} bars stored so far" if stored is not None else "bars stored unknown"
    else:
        where = (
            f"{stored:,} of {row.bars:,} bars stored"
            if stored is not None
            else f"of {row.bars:,} bars, how many are stored is unknown"
        )
    text = {
        RunStatus.RUNNING: "is still running",
        RunStatus.INTERRUPTED: "was interrupted (its process died)",
        RunStatus.FAILED: "failed",
        RunStatus.STOPPED: "was stopped",
        RunStatus.HALTED: "was halted by its feed guard",
    }.get(row.status, f"is {row.status}")
    error = f": {row.error.splitlines()[0]}" if row.status == RunStatus.FAILED and row.error else ""
    return f"run {run_id} {text} ({where}); its rows are partial{error}"


def delete_run(engine: Engine, run_id: int) -> None:
    """Delete a run with its rows (ON DELETE CASCADE): a run that never began (its paper
    feed's broker refused the first connection) leaves nothing behind."""
    with storage_errors(f"deleting run {run_id}"), engine.begin() as connection:
        connection.execute(delete(Run).where(Run.id == run_id))


def prune_interrupted(engine: Engine) -> list[dict[str, Any]]:
    """Delete every ``interrupted`` run with its rows; the runs deleted (id, name, kind,
    bars, bars_stored)."""
    mark_interrupted(engine)
    query = select(Run.id, Run.name, Run.kind, Run.bars, Run.bars_stored).where(
        Run.status == RunStatus.INTERRUPTED
    )
    with storage_errors("deleting interrupted runs"), engine.begin() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
        if rows:
            # child rows go with them (ON DELETE CASCADE); sweep tasks keep a NULL run id
            connection.execute(
                delete(Run).where(
                    Run.id.in_([r["id"] for r in rows]), Run.status == RunStatus.INTERRUPTED
                )
            )
    return rows

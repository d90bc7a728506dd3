"""Run rows: created when a run starts, completed or failed when it ends."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Engine, insert, update

from storage.db import storage_errors
from storage.models import Run

__all__ = ["COMPLETED", "FAILED", "RUNNING", "create_run", "finish_run"]

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"


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
    """Insert a ``running`` run row and return its id (with the run's provenance: the
    fingerprints of its bars and checkpoint, the checkpoint's training window)."""
    with storage_errors("creating the run row"), engine.begin() as connection:
        result = connection.execute(
            insert(Run).values(
                name=name,
                kind=kind,
                scenario=scenario,
                symbol=symbol,
                config_json=json.dumps(config, sort_keys=True),
                config_hash=config_hash,
                seed=seed,
                code_version=code_version,
                status=RUNNING,
                started_ns=time.time_ns(),
                bars=bars,
                bar_gaps=bar_gaps,
                first_bar_ns=first_bar_ns,
                last_bar_ns=last_bar_ns,
                data_fingerprint=data_fingerprint,
                checkpoint_fingerprint=checkpoint_fingerprint,
                trained_first_ns=trained_first_ns,
                trained_last_ns=trained_last_ns,
            )
        )
        run_id = result.inserted_primary_key[0]  # type: ignore[index]
    return int(run_id)


def finish_run(
    engine: Engine,
    run_id: int,
    *,
    status: str,
    wall_seconds: float,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Mark a run ``completed`` or ``failed`` with its summary or error."""
    with storage_errors(f"finishing run {run_id}"), engine.begin() as connection:
        connection.execute(
            update(Run)
            .where(Run.id == run_id)
            .values(
                status=status,
                ended_ns=time.time_ns(),
                wall_seconds=wall_seconds,
                summary_json=None if summary is None else json.dumps(summary, sort_keys=True),
                error=error,
            )
        )

"""Finding runs and reading their rows: ``emarl runs`` and ``emarl compare``.

Re-exported by :mod:`storage.query`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from engine.core.errors import ConfigError, RunNotFoundError
from storage.db import storage_errors
from storage.jobs import newest_jobs
from storage.models import Run, RunStatus
from storage.runs import mark_interrupted

__all__ = [
    "COMPARE_METRICS",
    "EDGE_METRICS",
    "RUN_COLUMNS",
    "TRAINING_WINDOWS",
    "WINDOW_METRICS",
    "compare_rows",
    "list_runs",
    "parse_time",
    "refusal_counts",
    "resolve_run",
    "strategy_label",
]

# what list_runs reads of each run
_LISTED = (
    Run.id,
    Run.name,
    Run.kind,
    Run.status,
    Run.symbol,
    Run.bars,
    Run.bars_stored,
    Run.started_ns,
    Run.wall_seconds,
    Run.seed,
    Run.config_hash,
    Run.error,
    Run.summary_json,
    Run.code_version,
    Run.data_fingerprint,
    Run.checkpoint_fingerprint,
    Run.trained_first_ns,
    Run.trained_last_ns,
    Run.config_json,
)
#: the run columns :func:`list_runs` reads, in order
RUN_COLUMNS = tuple(column.key for column in _LISTED)


def parse_time(text: str | None, name: str) -> int | None:
    """A date or time (ISO 8601; naive means UTC) as int ns UTC; ConfigError when unparsable."""
    if text is None or text == "":
        return None

    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{name}: cannot read {text!r} as a date or time (use e.g. 2020-01-31 or "
            "2020-01-31T09:30:00+08:00)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    ns = int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000
    if not -(2**63) <= ns < 2**63:
        raise ConfigError(f"{name}: {text!r} is outside the years 1678-2262 that emarl can store")
    return ns


def resolve_run(engine: Engine, run: int | str | None, *, include_incomplete: bool = False) -> int:
    """A run id from an id, a run name (the newest run of that name), ``"latest"`` or None.

    ``latest`` is the newest *completed* run, or with ``include_incomplete`` the newest
    run of any status. A name made only of digits is read as an id. Running rows whose
    process is gone are marked ``interrupted`` first (:func:`storage.runs.mark_interrupted`).
    """
    mark_interrupted(engine)
    with storage_errors("looking up the run"), engine.connect() as connection:
        if run is None or run == "latest":
            query = select(func.max(Run.id))
            if not include_incomplete:
                query = query.where(Run.status == RunStatus.COMPLETED)
            latest = connection.execute(query).scalar()
            if latest is not None:
                return int(latest)
            newest = connection.execute(
                select(Run.id, Run.status).order_by(Run.id.desc()).limit(1)
            ).first()
            if newest is None:
                raise RunNotFoundError("the database holds no runs yet")
            raise RunNotFoundError(
                f"no completed run in the database (the newest, run {newest.id}, is "
                f"{newest.status}); name it by id, or pass --include-incomplete"
            )
        if isinstance(run, int) or str(run).strip().isdigit():
            run_id = int(run)
            found = connection.execute(select(Run.id).where(Run.id == run_id)).scalar()
            if found is None:
                raise RunNotFoundError(f"no run with id {run_id} (see 'emarl runs')")
            return run_id
        name = str(run)
        found = connection.execute(select(func.max(Run.id)).where(Run.name == name)).scalar()
        if found is None:
            raise RunNotFoundError(
                f"no run with id or name {name!r} (see 'emarl runs'; 'latest' is the newest "
                "completed run)"
            )
        return int(found)


def list_runs(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, with their headline figures (``bars``: planned, or processed
    by a paper run; ``bars_stored``: committed)."""
    interrupted = mark_interrupted(engine)
    rows = newest_jobs(engine, Run, _LISTED, limit, "listing runs")
    out = []
    for row in rows:
        summary = json.loads(row["summary_json"]) if row["summary_json"] else {}
        out.append(
            {
                "id": row["id"],
                "name": row["name"],
                "kind": row["kind"],
                # (stored by mark_interrupted, unless the database is read-only)
                "status": (
                    RunStatus.INTERRUPTED.value if row["id"] in interrupted else row["status"]
                ),
                "symbol": row["symbol"],
                "strategy": strategy_label(row["config_json"]),
                "bars": row["bars"],
                "bars_stored": row["bars_stored"],
                "started_ns": row["started_ns"],
                "wall_seconds": row["wall_seconds"],
                "total_return": summary.get("total_return"),
                "sharpe": summary.get("sharpe"),
                "trades": summary.get("trades"),
                **refusal_counts(summary),
                "seed": row["seed"],
                "config_hash": row["config_hash"],
                "code_version": row["code_version"],
                "data_fingerprint": row["data_fingerprint"],
                "checkpoint_fingerprint": row["checkpoint_fingerprint"],
                "trained_first_ns": row["trained_first_ns"],
                "trained_last_ns": row["trained_last_ns"],
                "error": row["error"],
            }
        )
    return out


def strategy_label(config_json: str | None) -> str:
    """What a run ran, from its stored config: the ``[strategy]`` kind (``sma_cross``), or
    for a strategy of the user's its import path and parameters
    (``examples/breakout.py:Breakout(lookback=40, stop=0.03)``)."""
    strategy = (json.loads(config_json) if config_json else {}).get("strategy") or {}
    if strategy.get("kind") != "custom":
        return str(strategy.get("kind", ""))
    params = ", ".join(f"{key}={value!r}" for key, value in strategy.get("params", {}).items())
    return f"{strategy.get('import_path', '?')}({params})"


def refusal_counts(summary: dict[str, Any]) -> dict[str, Any]:
    """``denied`` and ``rejected`` totals of a stored summary, and ``refused_by_kind``
    (``"margin 12, short 3"``); None for a run that stored no order counts."""
    orders = summary.get("orders")
    if not isinstance(orders, dict):
        return {"denied": None, "rejected": None, "refused_by_kind": None}
    kinds: dict[str, int] = {}
    for what in ("denied", "rejected"):
        for kind, count in (orders.get(what) or {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
    return {
        "denied": sum((orders.get("denied") or {}).values()),
        "rejected": sum((orders.get("rejected") or {}).values()),
        "refused_by_kind": ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())),
    }


COMPARE_METRICS = (
    "bars",
    "start_ns",
    "end_ns",
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "trades",
    "win_rate",
    "exposure",
    "turnover",
    "fees",
    "final_equity",
)
#: the edge figures of a stored summary (engine.app.significance), by their compare names
EDGE_METRICS = {
    "sharpe_low": "sharpe_95_low",
    "sharpe_high": "sharpe_95_high",
    "total_return_low": "total_return_95_low",
    "total_return_high": "total_return_95_high",
    "psr": "psr",
    "psr_benchmark": "psr_vs_buy_and_hold",
    "benchmark_sharpe": "buy_and_hold_sharpe",
}
#: the parts of a run relative to its checkpoint's training bars (outcome.training_windows)
TRAINING_WINDOWS = ("in_sample", "out_of_sample")
WINDOW_METRICS = ("bars", "total_return", "sharpe", "max_drawdown", "trades")


def compare_rows(
    engine: Engine, runs: Sequence[int | str], *, include_incomplete: bool = False
) -> list[dict[str, Any]]:
    """One dict per run, in the order given: id, name, status, symbol, the summary's
    ``COMPARE_METRICS`` (None where the run stored no summary), its edge figures
    (``EDGE_METRICS``: bootstrap intervals, probabilistic Sharpe ratios), the refused orders
    (:func:`refusal_counts`) and, for a run that traded with a checkpoint, the
    ``WINDOW_METRICS`` of its in-sample and out-of-sample parts (``in_sample.sharpe``...)."""
    out = []
    for run in runs:
        run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
        query = select(
            Run.name, Run.status, Run.symbol, Run.summary_json, Run.trained_last_ns, Run.config_json
        ).where(Run.id == run_id)
        with storage_errors(f"reading run {run_id}"), engine.connect() as connection:
            row = connection.execute(query).one()
        summary = json.loads(row.summary_json) if row.summary_json else {}
        entry: dict[str, Any] = {
            "id": run_id,
            "name": row.name,
            "status": row.status,
            "symbol": row.symbol,
            "strategy": strategy_label(row.config_json),
        }
        for key in COMPARE_METRICS:
            entry[key] = summary.get(key)
        edge = summary.get("edge") or {}
        for key, name in EDGE_METRICS.items():
            entry[name] = edge.get(key)
        entry.update(refusal_counts(summary))
        windows = (summary.get("training") or {}).get("windows") or {}
        entry["trained_last_ns"] = row.trained_last_ns
        for window in TRAINING_WINDOWS:
            for key in WINDOW_METRICS:
                entry[f"{window}.{key}"] = (windows.get(window) or {}).get(key)
        out.append(entry)
    return out

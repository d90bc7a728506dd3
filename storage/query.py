"""Reading trade history back: the Python API behind ``emarl runs`` and ``emarl trades``.

Queries use lightweight Core clauses (``sqlalchemy.table``/``column``) over the
columns they read, so the command line does not import the ORM; a test checks
that every column named here exists in :mod:`storage.models`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, column, func, select, table

from engine.errors import ConfigError, RunNotFoundError
from storage.db import storage_errors

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = (
    "id",
    "name",
    "kind",
    "status",
    "symbol",
    "bars",
    "started_ns",
    "wall_seconds",
    "seed",
    "config_hash",
    "error",
    "summary_json",
)
FILL_COLUMNS = (
    "run_id",
    "seq",
    "ts_event",
    "symbol",
    "side",
    "quantity",
    "price",
    "commission",
    "slippage",
    "order_id",
    "fill_id",
    "strategy_id",
)
SHAPLEY_COLUMNS = (
    "run_id",
    "seq",
    "ts_event",
    "agent_id",
    "agent_index",
    "decision_ts",
    "phi",
    "value_full",
    "value_model",
    "coalitions",
    "method",
    "stderr",
)
VALUATION_COLUMNS = (
    "run_id",
    "ts_event",
    "agent_index",
    "share_price",
    "volatility",
    "strike",
    "time_to_expiry",
    "option_value",
    "target_weight",
    "weight",
    "bubble",
)
Run = table("runs", *(column(name) for name in RUN_COLUMNS))
Shapley = table("shapley_values", *(column(name) for name in SHAPLEY_COLUMNS))
ValuationTable = table("valuations", *(column(name) for name in VALUATION_COLUMNS))
Fill = table("fills", *(column(name) for name in FILL_COLUMNS))

__all__ = [
    "TRADE_COLUMNS",
    "list_runs",
    "parse_time",
    "resolve_run",
    "shapley_rows",
    "trade_rows",
    "trades",
]

TRADE_COLUMNS = (
    "run_id",
    "seq",
    "time",
    "symbol",
    "side",
    "quantity",
    "price",
    "commission",
    "slippage",
    "order_id",
    "fill_id",
    "strategy_id",
)


def parse_time(text: str | None, name: str) -> int | None:
    """A date or time (ISO 8601; naive means UTC) as int ns UTC; ConfigError when unparsable."""
    if text is None or text == "":
        return None
    from datetime import UTC, datetime

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


def resolve_run(engine: Engine, run: int | str | None) -> int:
    """A run id from an id, ``"latest"`` or None (latest)."""
    with storage_errors("looking up the run"), engine.connect() as connection:
        if run is None or run == "latest":
            latest = connection.execute(select(func.max(Run.c.id))).scalar()
            if latest is None:
                raise RunNotFoundError("the database holds no runs yet")
            return int(latest)
        try:
            run_id = int(run)
        except (TypeError, ValueError):
            raise ConfigError(f"--run: {run!r} is not a run id (a number, or 'latest')") from None
        found = connection.execute(select(Run.c.id).where(Run.c.id == run_id)).scalar()
        if found is None:
            raise RunNotFoundError(f"no run with id {run_id} (see 'emarl runs')")
        return run_id


def list_runs(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, with their headline figures."""
    query = select(Run).order_by(Run.c.id.desc())
    if limit:
        query = query.limit(limit)
    with storage_errors("listing runs"), engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    out = []
    for row in rows:
        summary = json.loads(row["summary_json"]) if row["summary_json"] else {}
        out.append(
            {
                "id": row["id"],
                "name": row["name"],
                "kind": row["kind"],
                "status": row["status"],
                "symbol": row["symbol"],
                "bars": row["bars"],
                "started_ns": row["started_ns"],
                "wall_seconds": row["wall_seconds"],
                "total_return": summary.get("total_return"),
                "sharpe": summary.get("sharpe"),
                "trades": summary.get("trades"),
                "seed": row["seed"],
                "config_hash": row["config_hash"],
                "error": row["error"],
            }
        )
    return out


def trade_rows(
    engine: Engine,
    run: int | str | None = "latest",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
) -> list[dict[str, Any]]:
    """Fills of a run matching the filters, oldest first, as plain dicts (no pandas needed)."""
    if side is not None and side not in ("buy", "sell"):
        raise ConfigError(f"--side must be 'buy' or 'sell', got {side!r}")
    start = parse_time(since, "--since")
    stop = parse_time(until, "--until")
    if start is not None and stop is not None and stop < start:
        raise ConfigError(f"--until ({until}) is before --since ({since})")
    run_id = resolve_run(engine, run)
    query = select(Fill).where(Fill.c.run_id == run_id).order_by(Fill.c.seq)
    if symbol:
        query = query.where(Fill.c.symbol == symbol)
    if side:
        query = query.where(Fill.c.side == side)
    if start is not None:
        query = query.where(Fill.c.ts_event >= start)
    if stop is not None:
        query = query.where(Fill.c.ts_event <= stop)
    with storage_errors(f"reading the trades of run {run_id}"), engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        {
            "run_id": row["run_id"],
            "seq": row["seq"],
            "time": row["ts_event"],
            "symbol": row["symbol"],
            "side": row["side"],
            "quantity": row["quantity"],
            "price": row["price"],
            "commission": row["commission"],
            "slippage": row["slippage"],
            "order_id": row["order_id"],
            "fill_id": row["fill_id"],
            "strategy_id": row["strategy_id"],
        }
        for row in rows
    ]


def trades(
    engine: Engine | str,
    run: int | str | None = "latest",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
) -> pd.DataFrame:
    """A run's fills as a DataFrame (``time`` in UTC), filtered like ``emarl trades``.

    ``engine`` is an SQLAlchemy engine or a database URL.
    """
    import pandas as pd

    if isinstance(engine, str):
        from storage.db import connect

        engine = connect(engine, create=False)
    rows = trade_rows(engine, run, symbol=symbol, since=since, until=until, side=side)
    frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), utc=True)
    return frame


def shapley_rows(
    engine: Engine, run: int | str | None = "latest", *, aggregate: bool = False
) -> list[dict[str, Any]]:
    """Per bar and agent: Shapley credit with the agent's valuation after that step.

    With ``aggregate``, one row per agent: steps, total and mean credit, and the
    last share price, option value, weight and bubble.
    """
    run_id = resolve_run(engine, run)
    joined = Shapley.join(
        ValuationTable,
        (ValuationTable.c.run_id == Shapley.c.run_id)
        & (ValuationTable.c.ts_event == Shapley.c.ts_event)
        & (ValuationTable.c.agent_index == Shapley.c.agent_index),
    )
    query = (
        select(
            Shapley.c.ts_event,
            Shapley.c.agent_id,
            Shapley.c.agent_index,
            Shapley.c.phi,
            Shapley.c.value_full,
            Shapley.c.method,
            Shapley.c.stderr,
            ValuationTable.c.share_price,
            ValuationTable.c.option_value,
            ValuationTable.c.weight,
            ValuationTable.c.bubble,
        )
        .select_from(joined)
        .where(Shapley.c.run_id == run_id)
        .order_by(Shapley.c.seq)
    )
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        rows = [dict(row) for row in c.execute(query).mappings().all()]
    if not aggregate:
        return rows
    agents: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = agents.setdefault(
            row["agent_index"], {"agent_id": row["agent_id"], "steps": 0, "shapley_pnl": 0.0}
        )
        entry["steps"] += 1
        entry["shapley_pnl"] += row["phi"]
        for key in ("share_price", "option_value", "weight", "bubble"):
            entry[key] = row[key]
    out = []
    for index in sorted(agents):
        entry = agents[index]
        entry["mean_phi"] = entry["shapley_pnl"] / entry["steps"]
        out.append({"agent_index": index, **entry})
    return out

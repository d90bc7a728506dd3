"""Shapley credit with each agent's valuation: ``emarl shapley``.

Re-exported by :mod:`storage.query`. The statements are SQL text, tuned by hand: on
SQLite they name the index the join must use (below).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, TextClause, text

from storage._query_runs import resolve_run
from storage.db import storage_errors
from storage.models import ShapleyValueRow, ValuationRow

__all__ = [
    "SHAPLEY_ROW_KEYS",
    "iter_shapley_rows",
    "shapley_count",
    "shapley_rows",
    "shapley_symbols",
]

_SHAPLEY = ShapleyValueRow.__tablename__
_VALUATIONS = ValuationRow.__tablename__

# Each Shapley value joined to its agent's valuation at the same bar (of the same symbol:
# a universe has a meta-investor per symbol), through the index on valuations (run_id,
# ts_event, agent_index). Without statistics SQLite's planner
# prefers the primary key (run_id, seq), which scans the run's valuations for every
# Shapley value (quadratic), so the index is named there, and the join order is fixed
# (see _shapley_sql).
_SHAPLEY_FROM = (
    f"FROM {_SHAPLEY} AS s {{join}} {_VALUATIONS} AS v{{hint}} "
    "ON v.run_id = s.run_id AND v.ts_event = s.ts_event AND v.agent_index = s.agent_index "
    "AND v.symbol = s.symbol WHERE s.run_id = :run_id"
)
_FROM_SHAPLEY = ("ts_event", "symbol", "agent_id", "agent_index", "phi", "value_full", "method",
                 "stderr")  # fmt: skip
_FROM_VALUATION = ("share_price", "option_value", "weight", "bubble")
#: the fields of a row of :func:`shapley_rows`, in the order of :func:`iter_shapley_rows`
SHAPLEY_ROW_KEYS = _FROM_SHAPLEY + _FROM_VALUATION
_COLUMNS = (
    "SELECT "
    + ", ".join([f"s.{key}" for key in _FROM_SHAPLEY] + [f"v.{key}" for key in _FROM_VALUATION])
    + " "
)
_SHAPLEY_ROWS = _COLUMNS + _SHAPLEY_FROM + " ORDER BY s.seq"
# the last rows only: the run's last Shapley values first (its primary key, backwards)
_SHAPLEY_LAST = (
    _COLUMNS + f"FROM (SELECT * FROM {_SHAPLEY} "
    f"WHERE run_id = :run_id ORDER BY seq DESC LIMIT :limit) AS s {{join}} {_VALUATIONS} AS v"
    "{hint} ON v.run_id = s.run_id AND v.ts_event = s.ts_event "
    "AND v.agent_index = s.agent_index AND v.symbol = s.symbol ORDER BY s.seq"
)
# per agent (and symbol): steps, total credit and the last step, then that step's valuation.
# The totals read the Shapley values alone: each is stored with its valuation, in the same
# transaction (as shapley_count counts them), and joining the run's valuations only to count
# them made PostgreSQL sort both tables (1.6 s against 0.17 s on 600,000 rows).
_SHAPLEY_TOTALS = (
    "SELECT t.symbol, t.agent_index, l.agent_id, t.steps, t.shapley_pnl, w.share_price, "
    "w.option_value, w.weight, w.bubble FROM (SELECT symbol, agent_index, count(*) AS steps, "
    f"sum(phi) AS shapley_pnl, max(seq) AS last_seq FROM {_SHAPLEY} WHERE run_id = :run_id "
    f"GROUP BY symbol, agent_index) AS t JOIN {_SHAPLEY} AS l ON l.run_id = :run_id "
    f"AND l.seq = t.last_seq {{join}} {_VALUATIONS} AS w{{hint}} ON w.run_id = l.run_id "
    "AND w.ts_event = l.ts_event AND w.agent_index = l.agent_index AND w.symbol = l.symbol "
    "ORDER BY t.symbol, t.agent_index"
)


def _shapley_sql(engine: Engine, sql: str) -> TextClause:
    if engine.dialect.name == "sqlite":
        # CROSS JOIN fixes the order of the loops (SQLite's rule): the Shapley values
        # outside, each looking up its valuation by the index. Left to itself, the planner
        # may put the valuations outside and scan the run's Shapley values for each one.
        hint, join = " INDEXED BY ix_valuations_run_ts_agent", "CROSS JOIN"
    else:
        hint, join = "", "JOIN"
    return text(sql.replace("{hint}", hint).replace("{join}", join))


def shapley_rows(
    engine: Engine,
    run: int | str | None = "latest",
    *,
    aggregate: bool = False,
    include_incomplete: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Per bar, symbol and agent: Shapley credit with the agent's valuation after that step.

    With ``aggregate``, one row per agent (in a universe, per symbol and agent), computed
    in SQL: steps, total and mean
    credit, and the share price, option value, weight and bubble of its last step.
    ``limit``: only the last ``limit`` rows (still oldest first).
    """
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    if aggregate:
        return _shapley_totals(engine, run_id)
    query = _shapley_sql(engine, _SHAPLEY_ROWS if limit is None else _SHAPLEY_LAST)
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        result = c.execute(query, {"run_id": run_id, "limit": limit})
        keys = list(result.keys())
        return [dict(zip(keys, row, strict=True)) for row in result.all()]


def iter_shapley_rows(
    engine: Engine, run_id: int, *, batch: int = 20_000
) -> Iterator[Sequence[Any]]:
    """Every row :func:`shapley_rows` gives for a run (oldest first), as a sequence of
    :data:`SHAPLEY_ROW_KEYS`, read ``batch`` rows at a time (on PostgreSQL through a
    server-side cursor): the memory it takes does not grow with the run."""
    query = _shapley_sql(engine, _SHAPLEY_ROWS)
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        yield from c.execution_options(yield_per=batch).execute(
            query, {"run_id": run_id, "limit": None}
        )


def shapley_symbols(engine: Engine, run_id: int) -> list[str]:
    """The symbols a run's Shapley values are of (a universe has a meta-investor each)."""
    query = text(f"SELECT DISTINCT symbol FROM {_SHAPLEY} WHERE run_id = :run_id ORDER BY 1")
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        return [str(symbol) for symbol in c.execute(query, {"run_id": run_id}).scalars()]


def shapley_count(engine: Engine, run_id: int) -> int:
    """How many rows :func:`shapley_rows` gives for a run: its Shapley values (each is
    stored with its valuation, in the same transaction), counted on their primary key."""
    query = text(f"SELECT count(*) FROM {_SHAPLEY} WHERE run_id = :run_id")
    with storage_errors(f"counting the Shapley values of run {run_id}"), engine.connect() as c:
        return int(c.execute(query, {"run_id": run_id}).scalar_one())


def _shapley_totals(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    query = _shapley_sql(engine, _SHAPLEY_TOTALS)
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        rows = [dict(row) for row in c.execute(query, {"run_id": run_id}).mappings().all()]
    out = []
    for row in rows:
        steps = int(row["steps"])
        total = float(row["shapley_pnl"])
        out.append(
            {
                "symbol": row["symbol"],
                "agent_index": row["agent_index"],
                "agent_id": row["agent_id"],
                "steps": steps,
                "shapley_pnl": total,
                "share_price": row["share_price"],
                "option_value": row["option_value"],
                "weight": row["weight"],
                "bubble": row["bubble"],
                "mean_phi": total / steps,
            }
        )
    return out

"""Reading trade history back: the Python API behind ``emarl runs`` and ``emarl trades``.

Queries use lightweight Core clauses (``sqlalchemy.table``/``column``) over the
columns they read, so the command line does not import the ORM; a test checks
that every column named here exists in :mod:`storage.models`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    "bars_stored",
    "started_ns",
    "wall_seconds",
    "seed",
    "config_hash",
    "error",
    "summary_json",
    "code_version",
    "data_fingerprint",
    "checkpoint_fingerprint",
    "trained_first_ns",
    "trained_last_ns",
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
    "symbol",
    "decision_ts",
    "phi",
    "value_full",
    "value_model",
    "coalitions",
    "method",
    "stderr",
)
Run = table("runs", *(column(name) for name in RUN_COLUMNS))
Shapley = table("shapley_values", *(column(name) for name in SHAPLEY_COLUMNS))
Fill = table("fills", *(column(name) for name in FILL_COLUMNS))

__all__ = [
    "COMPARE_METRICS",
    "EDGE_METRICS",
    "PNL_GROUPS",
    "TRADE_COLUMNS",
    "compare_rows",
    "list_runs",
    "list_sweeps",
    "parse_time",
    "pnl",
    "pnl_rows",
    "refusal_counts",
    "resolve_run",
    "resolve_sweep",
    "shapley_count",
    "shapley_rows",
    "sweep_info",
    "sweep_task_rows",
    "trade_rows",
    "trades",
    "walk_forward_equity",
    "walk_forward_rows",
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


def resolve_run(engine: Engine, run: int | str | None, *, include_incomplete: bool = False) -> int:
    """A run id from an id, a run name (the newest run of that name), ``"latest"`` or None.

    ``latest`` is the newest *completed* run, or with ``include_incomplete`` the newest
    run of any status. A name made only of digits is read as an id. Running rows whose
    process is gone are marked ``interrupted`` first (:func:`storage.runs.mark_interrupted`).
    """
    from storage.models import RunStatus
    from storage.runs import mark_interrupted

    mark_interrupted(engine)
    with storage_errors("looking up the run"), engine.connect() as connection:
        if run is None or run == "latest":
            query = select(func.max(Run.c.id))
            if not include_incomplete:
                query = query.where(Run.c.status == RunStatus.COMPLETED)
            latest = connection.execute(query).scalar()
            if latest is not None:
                return int(latest)
            newest = connection.execute(
                select(Run.c.id, Run.c.status).order_by(Run.c.id.desc()).limit(1)
            ).first()
            if newest is None:
                raise RunNotFoundError("the database holds no runs yet")
            raise RunNotFoundError(
                f"no completed run in the database (the newest, run {newest.id}, is "
                f"{newest.status}); name it by id, or pass --include-incomplete"
            )
        if isinstance(run, int) or str(run).strip().isdigit():
            run_id = int(run)
            found = connection.execute(select(Run.c.id).where(Run.c.id == run_id)).scalar()
            if found is None:
                raise RunNotFoundError(f"no run with id {run_id} (see 'emarl runs')")
            return run_id
        name = str(run)
        found = connection.execute(select(func.max(Run.c.id)).where(Run.c.name == name)).scalar()
        if found is None:
            raise RunNotFoundError(
                f"no run with id or name {name!r} (see 'emarl runs'; 'latest' is the newest "
                "completed run)"
            )
        return int(found)


def list_runs(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """Runs, newest first, with their headline figures (``bars``: planned, or processed
    by a paper run; ``bars_stored``: committed)."""
    from storage.models import RunStatus
    from storage.runs import mark_interrupted

    interrupted = mark_interrupted(engine)
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
                # (stored by mark_interrupted, unless the database is read-only)
                "status": (
                    RunStatus.INTERRUPTED.value if row["id"] in interrupted else row["status"]
                ),
                "symbol": row["symbol"],
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


def trade_rows(
    engine: Engine,
    run: int | str | None = "latest",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> list[dict[str, Any]]:
    """Fills of a run matching the filters, oldest first, as plain dicts (no pandas needed).

    ``run``: an id, a name or ``latest`` (see :func:`resolve_run`)."""
    if side is not None and side not in ("buy", "sell"):
        raise ConfigError(f"--side must be 'buy' or 'sell', got {side!r}")
    start = parse_time(since, "--since")
    stop = parse_time(until, "--until")
    if start is not None and stop is not None and stop < start:
        raise ConfigError(f"--until ({until}) is before --since ({since})")
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
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
    include_incomplete: bool = False,
) -> pd.DataFrame:
    """A run's fills as a DataFrame (``time`` in UTC), filtered like ``emarl trades``.

    ``engine`` is an SQLAlchemy engine or a database URL.
    """
    import pandas as pd

    if isinstance(engine, str):
        from storage.db import connect

        engine = connect(engine, create=False)
    rows = trade_rows(
        engine,
        run,
        symbol=symbol,
        since=since,
        until=until,
        side=side,
        include_incomplete=include_incomplete,
    )
    frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), utc=True)
    return frame


# Each Shapley value joined to its agent's valuation at the same bar, through the index
# on valuations (run_id, ts_event, agent_index). Without statistics SQLite's planner
# prefers the primary key (run_id, seq), which scans the run's valuations for every
# Shapley value (quadratic), so the index is named there.
_SHAPLEY_FROM = (
    "FROM shapley_values AS s JOIN valuations AS v{hint} "
    "ON v.run_id = s.run_id AND v.ts_event = s.ts_event AND v.agent_index = s.agent_index "
    "WHERE s.run_id = :run_id"
)
_SHAPLEY_ROWS = (
    "SELECT s.ts_event, s.agent_id, s.agent_index, s.phi, s.value_full, s.method, s.stderr, "
    "v.share_price, v.option_value, v.weight, v.bubble " + _SHAPLEY_FROM + " ORDER BY s.seq"
)
# the last rows only: the run's last Shapley values first (its primary key, backwards)
_SHAPLEY_LAST = (
    "SELECT s.ts_event, s.agent_id, s.agent_index, s.phi, s.value_full, s.method, s.stderr, "
    "v.share_price, v.option_value, v.weight, v.bubble FROM (SELECT * FROM shapley_values "
    "WHERE run_id = :run_id ORDER BY seq DESC LIMIT :limit) AS s JOIN valuations AS v{hint} "
    "ON v.run_id = s.run_id AND v.ts_event = s.ts_event AND v.agent_index = s.agent_index "
    "ORDER BY s.seq"
)
# per agent: steps, total credit and the last step, then that step's valuation
_SHAPLEY_TOTALS = (
    "SELECT t.agent_index, l.agent_id, t.steps, t.shapley_pnl, w.share_price, "
    "w.option_value, w.weight, w.bubble FROM (SELECT s.agent_index AS agent_index, "
    "count(*) AS steps, sum(s.phi) AS shapley_pnl, max(s.seq) AS last_seq "
    + _SHAPLEY_FROM
    + " GROUP BY s.agent_index) AS t "
    "JOIN shapley_values AS l ON l.run_id = :run_id AND l.seq = t.last_seq "
    "JOIN valuations AS w{hint} ON w.run_id = l.run_id AND w.ts_event = l.ts_event "
    "AND w.agent_index = l.agent_index ORDER BY t.agent_index"
)


def _shapley_sql(engine: Engine, sql: str) -> Any:
    from sqlalchemy import text

    hint = " INDEXED BY ix_valuations_run_ts_agent" if engine.dialect.name == "sqlite" else ""
    return text(sql.replace("{hint}", hint))


def shapley_rows(
    engine: Engine,
    run: int | str | None = "latest",
    *,
    aggregate: bool = False,
    include_incomplete: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Per bar and agent: Shapley credit with the agent's valuation after that step.

    With ``aggregate``, one row per agent, computed in SQL: steps, total and mean
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


def shapley_count(engine: Engine, run_id: int) -> int:
    """How many rows :func:`shapley_rows` gives for a run (its Shapley values that have
    their valuation)."""
    query = _shapley_sql(engine, "SELECT count(*) " + _SHAPLEY_FROM)
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


PNL_GROUPS = ("day", "week", "month", "side", "agent")
PNL_COLUMNS = (
    "fills",
    "quantity",
    "notional",
    "commission",
    "slippage",
    "realised_pnl",
    "net_pnl",
)
AGENT_PNL_COLUMNS = ("agent_index", "agent_id", "steps", "shapley_pnl", "share", "mean_phi")


def _fill_realised_pnl(rows: list[dict[str, Any]]) -> list[float]:
    """Realised P&L of each fill (before commission), average-cost accounting per symbol.

    The same rule as the portfolio: a fill that reduces or reverses a position
    realises ``(price - average price) x closed quantity`` in the position's
    direction; the rest opens at the fill price.
    """
    books: dict[str, tuple[float, float]] = {}
    out = []
    for row in rows:
        position, average = books.get(row["symbol"], (0.0, 0.0))
        signed = row["quantity"] if row["side"] == "buy" else -row["quantity"]
        price = row["price"]
        realised = 0.0
        if position == 0.0 or (position > 0) == (signed > 0):
            total = abs(position) + abs(signed)
            average = (average * abs(position) + price * abs(signed)) / total
        else:
            closed = min(abs(signed), abs(position))
            realised = (price - average) * closed * (1.0 if position > 0 else -1.0)
            if abs(signed) > abs(position):
                average = price
        position += signed
        if abs(position) < 1e-12:
            position, average = 0.0, 0.0
        books[row["symbol"]] = (position, average)
        out.append(realised)
    return out


def _period(ns: int, by: str) -> str:
    from datetime import UTC, datetime, timedelta

    day = datetime.fromtimestamp(ns // 1_000_000_000, UTC).date()
    if by == "day":
        return day.isoformat()
    if by == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return f"{day.year:04d}-{day.month:02d}"


def pnl_rows(
    engine: Engine,
    run: int | str | None = "latest",
    by: str = "month",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> list[dict[str, Any]]:
    """A run's trade P&L aggregated ``by`` day, week, month, side or agent (plain dicts).

    Periods are UTC: ``day`` is the date, ``week`` the date of its Monday (ISO
    weeks), ``month`` ``YYYY-MM``. Per group: fills, quantity, notional,
    commission, slippage, ``realised_pnl`` (average-cost, before commission, as
    the portfolio books it) and ``net_pnl`` (realised minus commission). P&L is
    booked on the fill that closes, so filters select fills but the average
    price comes from the whole history. ``agent`` gives each agent's Shapley
    attribution instead: steps, ``shapley_pnl`` (sum of its credit), its
    ``share`` of the total and ``mean_phi``; ``side`` does not apply there.
    """
    if by not in PNL_GROUPS:
        raise ConfigError(f"--by must be one of {', '.join(PNL_GROUPS)}, got {by!r}")
    if by == "agent":
        if side is not None:
            raise ConfigError("--side does not apply to --by agent (Shapley credit has no side)")
        return _agent_pnl_rows(
            engine,
            run,
            symbol=symbol,
            since=since,
            until=until,
            include_incomplete=include_incomplete,
        )
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    everything = trade_rows(engine, run_id)
    realised = _fill_realised_pnl(everything)
    # Validates the filters the same way as the plain listing.
    kept = trade_rows(engine, run_id, symbol=symbol, since=since, until=until, side=side)
    wanted = {row["seq"] for row in kept}
    groups: dict[str, dict[str, Any]] = {}
    for row, pnl in zip(everything, realised, strict=True):
        if row["seq"] not in wanted:
            continue
        key = row["side"] if by == "side" else _period(row["time"], by)
        entry = groups.setdefault(key, {by: key, **dict.fromkeys(PNL_COLUMNS, 0.0)})
        entry["fills"] += 1
        entry["quantity"] += row["quantity"]
        entry["notional"] += row["quantity"] * row["price"]
        entry["commission"] += row["commission"]
        entry["slippage"] += row["slippage"]
        entry["realised_pnl"] += pnl
        entry["net_pnl"] += pnl - row["commission"]
    out = [groups[key] for key in sorted(groups)]
    for entry in out:
        entry["fills"] = int(entry["fills"])
    return out


def _agent_pnl_rows(
    engine: Engine,
    run: int | str | None,
    *,
    symbol: str | None,
    since: str | None,
    until: str | None,
    include_incomplete: bool = False,
) -> list[dict[str, Any]]:
    start = parse_time(since, "--since")
    stop = parse_time(until, "--until")
    if start is not None and stop is not None and stop < start:
        raise ConfigError(f"--until ({until}) is before --since ({since})")
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    table = Shapley
    query = (
        select(
            table.c.agent_index,
            func.max(table.c.agent_id).label("agent_id"),
            func.count().label("steps"),
            func.sum(table.c.phi).label("shapley_pnl"),
        )
        .where(table.c.run_id == run_id)
        .group_by(table.c.agent_index)
        .order_by(table.c.agent_index)
    )
    if symbol:
        query = query.where(table.c.symbol == symbol)
    if start is not None:
        query = query.where(table.c.ts_event >= start)
    if stop is not None:
        query = query.where(table.c.ts_event <= stop)
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        rows = c.execute(query).all()
    total = sum(float(row.shapley_pnl) for row in rows)
    out = []
    for index, agent_id, steps, pnl_sum in rows:
        credit = float(pnl_sum)
        out.append(
            {
                "agent_index": index,
                "agent_id": agent_id,
                "steps": int(steps),
                "shapley_pnl": credit,
                "share": credit / total if total else float("nan"),
                "mean_phi": credit / int(steps),
            }
        )
    return out


def pnl(
    engine: Engine | str,
    run: int | str | None = "latest",
    by: str = "month",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> pd.DataFrame:
    """:func:`pnl_rows` as a DataFrame, one row per group (``engine`` may be a URL)."""
    import pandas as pd

    if isinstance(engine, str):
        from storage.db import connect

        engine = connect(engine, create=False)
    rows = pnl_rows(
        engine,
        run,
        by,
        symbol=symbol,
        since=since,
        until=until,
        side=side,
        include_incomplete=include_incomplete,
    )
    columns = list(AGENT_PNL_COLUMNS) if by == "agent" else [by, *PNL_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


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
        with storage_errors(f"reading run {run_id}"), engine.connect() as connection:
            row = connection.execute(select(Run).where(Run.c.id == run_id)).mappings().one()
        summary = json.loads(row["summary_json"]) if row["summary_json"] else {}
        entry: dict[str, Any] = {
            "id": run_id,
            "name": row["name"],
            "status": row["status"],
            "symbol": row["symbol"],
        }
        for key in COMPARE_METRICS:
            entry[key] = summary.get(key)
        edge = summary.get("edge") or {}
        for key, name in EDGE_METRICS.items():
            entry[name] = edge.get(key)
        entry.update(refusal_counts(summary))
        windows = (summary.get("training") or {}).get("windows") or {}
        entry["trained_last_ns"] = row["trained_last_ns"]
        for window in TRAINING_WINDOWS:
            for key in WINDOW_METRICS:
                entry[f"{window}.{key}"] = (windows.get(window) or {}).get(key)
        out.append(entry)
    return out


#: the edge figures of a stored summary (engine.significance), by their compare names
EDGE_METRICS = {
    "sharpe_low": "sharpe_95_low",
    "sharpe_high": "sharpe_95_high",
    "total_return_low": "total_return_95_low",
    "total_return_high": "total_return_95_high",
    "psr": "psr",
    "psr_benchmark": "psr_vs_buy_and_hold",
    "benchmark_sharpe": "buy_and_hold_sharpe",
}
#: the parts of a run relative to its checkpoint's training bars (engine.runner)
TRAINING_WINDOWS = ("in_sample", "out_of_sample")
WINDOW_METRICS = ("bars", "total_return", "sharpe", "max_drawdown", "trades")


SWEEP_COLUMNS = (
    "id",
    "kind",
    "name",
    "scenario",
    "scheduler",
    "status",
    "tasks",
    "started_ns",
    "wall_seconds",
    "config_json",
    "spec_json",
    "summary_json",
)
SWEEP_TASK_COLUMNS = (
    "sweep_id",
    "task",
    "overrides_json",
    "seed",
    "config_hash",
    "status",
    "run_id",
    "error",
    "summary_json",
    "fills",
    "fills_hash",
    "wall_seconds",
    "worker",
)
FOLD_COLUMNS = (
    "sweep_id",
    "fold",
    "train_start_ns",
    "train_end_ns",
    "test_start_ns",
    "test_end_ns",
    "train_bars",
    "test_bars",
    "status",
    "train_note",
    "train_json",
    "params_json",
    "run_id",
    "error",
    "summary_json",
)
WALK_FORWARD_EQUITY_COLUMNS = ("sweep_id", "ts_event", "fold", "equity", "fold_equity")
SweepTable = table("sweeps", *(column(name) for name in SWEEP_COLUMNS))
SweepTaskTable = table("sweep_tasks", *(column(name) for name in SWEEP_TASK_COLUMNS))
FoldTable = table("walk_forward_folds", *(column(name) for name in FOLD_COLUMNS))
EquityTable = table("walk_forward_equity", *(column(name) for name in WALK_FORWARD_EQUITY_COLUMNS))


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def resolve_sweep(engine: Engine, sweep: int | str | None, kind: str | None = None) -> int:
    """A sweep id from an id, ``"latest"`` or None (the latest of ``kind``, if given)."""
    with storage_errors("looking up the sweep"), engine.connect() as connection:
        if sweep is None or sweep == "latest":
            query = select(func.max(SweepTable.c.id))
            if kind is not None:
                query = query.where(SweepTable.c.kind == kind)
            latest = connection.execute(query).scalar()
            if latest is None:
                raise RunNotFoundError(f"the database holds no {kind or 'sweep'} yet")
            return int(latest)
        try:
            sweep_id = int(sweep)
        except (TypeError, ValueError):
            raise ConfigError(f"{sweep!r} is not a sweep id (a number, or 'latest')") from None
        found = connection.execute(
            select(SweepTable.c.kind).where(SweepTable.c.id == sweep_id)
        ).scalar()
        if found is None or (kind is not None and found != kind):
            raise RunNotFoundError(f"no {kind or 'sweep'} with id {sweep_id}")
        return sweep_id


def list_sweeps(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """Sweeps and walk-forwards, newest first, with their spec and summary decoded."""
    query = select(SweepTable).order_by(SweepTable.c.id.desc())
    if limit:
        query = query.limit(limit)
    with storage_errors("listing sweeps"), engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    out = []
    for row in rows:
        entry = {c: row[c] for c in SWEEP_COLUMNS if not c.endswith("_json")}
        entry["spec"] = _loads(row["spec_json"])
        entry["summary"] = _loads(row["summary_json"])
        out.append(entry)
    return out


def sweep_info(engine: Engine, sweep: int | str | None, kind: str | None = None) -> dict[str, Any]:
    """One sweep or walk-forward row (id, ``"latest"`` or None), its config, spec and
    summary decoded."""
    sweep_id = resolve_sweep(engine, sweep, kind)
    query = select(SweepTable).where(SweepTable.c.id == sweep_id)
    with storage_errors(f"reading sweep {sweep_id}"), engine.connect() as connection:
        row = connection.execute(query).mappings().one()
    entry = {c: row[c] for c in SWEEP_COLUMNS if not c.endswith("_json")}
    entry["config"] = _loads(row["config_json"]) or {}
    entry["spec"] = _loads(row["spec_json"]) or {}
    entry["summary"] = _loads(row["summary_json"]) or {}
    return entry


def sweep_task_rows(engine: Engine, sweep: int | str | None = "latest") -> list[dict[str, Any]]:
    """A sweep's tasks in task order: overrides, seed, status, run id, error and the
    run's summary metrics (flattened)."""
    sweep_id = resolve_sweep(engine, sweep)
    query = (
        select(SweepTaskTable)
        .where(SweepTaskTable.c.sweep_id == sweep_id)
        .order_by(SweepTaskTable.c.task)
    )
    with storage_errors(f"reading the tasks of sweep {sweep_id}"), engine.connect() as c:
        rows = c.execute(query).mappings().all()
    out = []
    for row in rows:
        entry = {k: row[k] for k in SWEEP_TASK_COLUMNS if not k.endswith("_json")}
        entry["overrides"] = _loads(row["overrides_json"]) or {}
        summary = _loads(row["summary_json"]) or {}
        entry.update({k: v for k, v in summary.items() if not isinstance(v, list | dict)})
        out.append(entry)
    return out


def walk_forward_rows(engine: Engine, sweep: int | str | None = "latest") -> list[dict[str, Any]]:
    """A walk-forward's folds in order: windows (int ns UTC), what the train step chose,
    the test run and its metrics (flattened)."""
    sweep_id = resolve_sweep(engine, sweep, "walkforward")
    query = select(FoldTable).where(FoldTable.c.sweep_id == sweep_id).order_by(FoldTable.c.fold)
    with storage_errors(f"reading the folds of walk-forward {sweep_id}"), engine.connect() as c:
        rows = c.execute(query).mappings().all()
    out = []
    for row in rows:
        entry = {k: row[k] for k in FOLD_COLUMNS if not k.endswith("_json")}
        entry["params"] = _loads(row["params_json"])
        entry["candidates"] = _loads(row["train_json"])
        summary = _loads(row["summary_json"]) or {}
        entry.update({k: v for k, v in summary.items() if not isinstance(v, list | dict)})
        out.append(entry)
    return out


def walk_forward_equity(engine: Engine | str, sweep: int | str | None = "latest") -> pd.DataFrame:
    """The stitched out-of-sample equity curve of a walk-forward as a DataFrame:
    ``time`` (UTC), ``fold``, ``equity`` (stitched, starting at the scenario's cash)
    and ``fold_equity`` (that fold's own run). ``engine`` may be a database URL."""
    import pandas as pd

    if isinstance(engine, str):
        from storage.db import connect

        engine = connect(engine, create=False)
    sweep_id = resolve_sweep(engine, sweep, "walkforward")
    query = (
        select(
            EquityTable.c.ts_event,
            EquityTable.c.fold,
            EquityTable.c.equity,
            EquityTable.c.fold_equity,
        )
        .where(EquityTable.c.sweep_id == sweep_id)
        .order_by(EquityTable.c.ts_event)
    )
    with storage_errors(f"reading the equity of walk-forward {sweep_id}"), engine.connect() as c:
        rows = c.execute(query).all()
    frame = pd.DataFrame(rows, columns=["time", "fold", "equity", "fold_equity"])
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), utc=True)
    return frame

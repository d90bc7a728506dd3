"""Reading trade history back: the Python API behind ``emarl runs``, ``trades``,
``shapley``, ``compare`` and the sweep and walk-forward listings.

Queries select the columns they read from the models of :mod:`storage.models`. The
code lives in private modules by subject, re-exported here:

* :mod:`storage._query_runs`: finding a run (id, name, ``latest``), listing and
  comparing runs;
* :mod:`storage._query_trades`: a run's fills and their P&L by period, side or agent;
* :mod:`storage._query_shapley`: Shapley credit with each agent's valuation;
* :mod:`storage._query_sweeps`: sweeps, their tasks, walk-forward folds and curves.

Nothing here imports pandas until a function returns a DataFrame, so the command line
starts quickly.
"""

from __future__ import annotations

from storage._query_runs import (
    COMPARE_METRICS,
    EDGE_METRICS,
    RUN_COLUMNS,
    TRAINING_WINDOWS,
    WINDOW_METRICS,
    compare_rows,
    list_runs,
    parse_time,
    refusal_counts,
    resolve_run,
    strategy_label,
)
from storage._query_shapley import (
    SHAPLEY_ROW_KEYS,
    iter_shapley_rows,
    shapley_count,
    shapley_rows,
    shapley_symbols,
)
from storage._query_sweeps import (
    FOLD_COLUMNS,
    SWEEP_COLUMNS,
    SWEEP_TASK_COLUMNS,
    list_sweeps,
    resolve_sweep,
    sweep_info,
    sweep_task_rows,
    walk_forward_equity,
    walk_forward_rows,
)
from storage._query_trades import (
    AGENT_PNL_COLUMNS,
    FILL_COLUMNS,
    FILL_DETAILS,
    PNL_COLUMNS,
    PNL_GROUPS,
    TRADE_COLUMNS,
    pnl,
    pnl_rows,
    trade_rows,
    trades,
)

__all__ = [
    "AGENT_PNL_COLUMNS",
    "COMPARE_METRICS",
    "EDGE_METRICS",
    "FILL_COLUMNS",
    "FILL_DETAILS",
    "FOLD_COLUMNS",
    "PNL_COLUMNS",
    "PNL_GROUPS",
    "RUN_COLUMNS",
    "SHAPLEY_ROW_KEYS",
    "SWEEP_COLUMNS",
    "SWEEP_TASK_COLUMNS",
    "TRADE_COLUMNS",
    "TRAINING_WINDOWS",
    "WINDOW_METRICS",
    "compare_rows",
    "iter_shapley_rows",
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
    "shapley_symbols",
    "strategy_label",
    "sweep_info",
    "sweep_task_rows",
    "trade_rows",
    "trades",
    "walk_forward_equity",
    "walk_forward_rows",
]

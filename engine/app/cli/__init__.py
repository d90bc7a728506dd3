"""The ``emarl`` command line.

Heavy imports (numpy, pandas, numba, SQLAlchemy, torch) happen inside the
commands that need them, so ``emarl --help``, ``emarl runs`` and
``emarl trades`` start quickly. Every emarl error ends the command with a
one-line message and an exit code, never a traceback:

==  =====================================================================
0   success
1   the run failed (a handler raised), or a query matched nothing
2   bad input: scenario, option, data file
3   the run id is not in the database
4   the database refused a read or a write
==  =====================================================================

The commands live in modules by what they do: ``run_commands`` (backtest, train,
evaluate), ``query_commands`` (runs, trades, shapley, compare), ``report_commands``
(report), ``data_commands`` (features, data), ``paper_commands`` (paper, publish,
status) and ``sweep_commands`` (sweep, walkforward); ``common`` holds what they share
and ``summary`` the table ``emarl backtest`` prints.
This module builds the ``app`` and registers them in the order ``emarl --help`` lists.
"""

from __future__ import annotations

import typer

from engine.app.cli.common import human_number
from engine.app.cli.data_commands import data_app, features
from engine.app.cli.paper_commands import paper, publish, status
from engine.app.cli.query_commands import compare, runs, shapley, trades
from engine.app.cli.report_commands import report
from engine.app.cli.run_commands import backtest, evaluate, train
from engine.app.cli.sweep_commands import sweep, walk_forward_table, walkforward

__all__ = ["app", "human_number", "main", "walk_forward_table"]

app = typer.Typer(
    name="emarl",
    help="emarl: event-driven backtesting and paper trading for learning agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help texts name scenario sections such as [train]: plain text, not rich markup
    rich_markup_mode=None,
)
app.command()(backtest)
app.command()(train)
app.command()(evaluate)
app.command()(runs)
app.command()(trades)
app.command()(shapley)
app.command()(report)
app.command()(compare)
app.command()(features)
app.command()(paper)
app.command()(publish)
app.command()(status)
app.command()(sweep)
app.command()(walkforward)
app.add_typer(data_app, name="data")


def main() -> None:
    app()

"""The ``report`` command and the report writers: a run's HTML report (also written by
``emarl backtest --report``), a training run's learning curves (``--training``) and a
walk-forward's folds and stitched curve (``--walkforward``), each one self-contained
HTML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.app.cli.common import (
    DbOption,
    IncompleteOption,
    _bad_option,
    _db_url,
    _fail,
    _resolve,
)
from engine.core.errors import EmarlError, RunNotFoundError


def _write_report(
    db_url: str, run: int | str, out: Path | None, include_incomplete: bool = False
) -> Path:
    """Build a run's HTML report and write it (default runs/report-<id>.html)."""
    # reporting loads numpy, storage SQLAlchemy: only when a report is written
    from reporting.report import default_path, write_report
    from storage.db import connect

    try:
        engine = connect(db_url, create=False)
        run_id = _resolve(engine, str(run), include_incomplete)
        target = out if out is not None else default_path(run_id)
        return write_report(engine, run_id, target)
    except EmarlError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _bad_option(f"cannot write the report: {exc.strerror or exc}") from None


def _write_training_report(db_url: str, run: str, out: Path | None) -> Path:
    """Learning curves of a training run (default runs/training-report-<id>.html)."""
    # reporting loads numpy, storage SQLAlchemy: only when a report is written
    from reporting.report import training_report
    from storage.db import connect
    from storage.training import training_metrics

    try:
        run_id, name, frame = training_metrics(connect(db_url, create=False), run)
        if frame.empty:
            raise RunNotFoundError(f"training run {run_id} has no updates stored yet")
        text = training_report(frame, title=f"Training run {run_id}: {name}")
    except EmarlError as exc:
        raise _fail(exc) from None
    return _write_html(text, out or Path("runs") / f"training-report-{run_id}.html")


def _write_html(text: str, target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _bad_option(f"cannot write the report: {exc.strerror or exc}") from None
    return target


def _write_walk_forward_report(db_url: str, sweep: str, out: Path | None) -> Path:
    """Folds and stitched curve of a walk-forward (default runs/walkforward-report-<id>.html)."""
    # reporting loads numpy, storage SQLAlchemy: only when a report is written
    from reporting.report import walk_forward_report
    from storage.db import connect
    from storage.query import resolve_sweep

    try:
        engine = connect(db_url, create=False)
        sweep_id = resolve_sweep(engine, sweep, "walkforward")
        text = walk_forward_report(engine, sweep_id)
    except EmarlError as exc:
        raise _fail(exc) from None
    return _write_html(text, out or Path("runs") / f"walkforward-report-{sweep_id}.html")


def report(
    run: Annotated[
        str, typer.Argument(help="Run id, run name (the newest of that name), or 'latest'.")
    ] = "latest",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: runs/report-<id>.html)."),
    ] = None,
    db: DbOption = None,
    training: Annotated[
        bool,
        typer.Option(
            "--training", help="RUN is a training run (emarl train): write its learning curves."
        ),
    ] = False,
    walkforward: Annotated[
        bool,
        typer.Option(
            "--walkforward",
            help="RUN is a walk-forward id (emarl walkforward): its folds and stitched curve.",
        ),
    ] = False,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Write a run's report: one self-contained HTML file with its charts and trade list.

    Opens with no network (plotly.js is inside). Example: emarl report latest -o report.html
    """
    if training and walkforward:
        raise _bad_option("--training and --walkforward: RUN is one or the other")
    if walkforward:
        written = _write_walk_forward_report(_db_url(db), run, out)
    elif training:
        written = _write_training_report(_db_url(db), run, out)
    else:
        written = _write_report(_db_url(db), run, out, include_incomplete)
    size = written.stat().st_size
    typer.echo(f"wrote {written} ({size / 1e6:.1f} MB)")

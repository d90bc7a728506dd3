"""Every read verb on a 200,000-bar learned run, on SQLite and PostgreSQL.

The run is a real backtest: the three learned agents of the shipped checkpoint,
weighted by the meta-investor, on 200,000 bars of the seeded synthetic market,
every row stored (a snapshot, three votes, three Shapley values and three
valuations per bar, and its orders and fills). A second, small run gives
``compare`` a partner. Each verb then runs as its own ``emarl`` process, as a user
runs it, with its output piped (tables print in full); the wall time includes
starting Python. The goal is under 2 s each, the report under 10 s. Figures are
printed, not asserted. PostgreSQL (``EMARL_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``) gets a database of its own,
dropped at the end; it is skipped with a note when unreachable.

    python benchmarks/bench_queries.py [--bars 200000] [--repeat 3] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get("EMARL_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCENARIO = """
[run]
name = "{name}"
seed = 7
[data]
source = "synthetic"
[data.synthetic]
bars = {bars}
[instrument]
symbol = "SYNTH"
lot_size = 100
[broker]
commission_bps = 2.5
slippage_bps = 1.0
[strategy]
kind = "mappo_ensemble"
checkpoint = "{checkpoint}"
max_position = 10000
# the Weichai checkpoint on the synthetic market: a transfer, for the rows it writes
allow_transfer = true
no_trade_band = 0.1
min_hold_bars = 8
[storage]
url = "{url}"
"""
GOAL = {"report": 10.0}


def emarl(*args: str) -> tuple[float, float]:
    """Seconds one ``emarl`` command takes, its output piped away, and its peak resident
    memory in MB; raises if it fails."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    _pid, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not all children's
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"emarl {' '.join(args)} exited {process.returncode}: {errors}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def store_runs(url: str, folder: Path, bars: int) -> tuple[str, str, float]:
    """The big learned run and a small one; their ids and the big one's backtest time."""
    ids = []
    seconds = 0.0
    for name, count in (("bench-queries-small", 2_000), ("bench-queries", bars)):
        scenario = folder / f"{name}.toml"
        scenario.write_text(
            SCENARIO.format(
                name=name,
                bars=count,
                url=url,
                checkpoint=ROOT / "checkpoints" / "weichai_mappo.pt",
            )
        )
        seconds, _peak = emarl("backtest", str(scenario), "--quiet")
        from storage.db import connect, dispose_all
        from storage.query import resolve_run

        ids.append(str(resolve_run(connect(url, create=False), "latest")))
        dispose_all()
    return ids[1], ids[0], seconds


def row_counts(url: str, run_id: str) -> dict[str, int]:
    from sqlalchemy import text

    from storage.db import connect, dispose_all

    counts = {}
    with connect(url, create=False).connect() as connection:
        for table in ("portfolio_snapshots", "fills", "agent_actions", "shapley_values",
                      "valuations"):  # fmt: skip
            counts[table] = int(
                connection.execute(
                    text(f"SELECT count(*) FROM {table} WHERE run_id = :r"), {"r": int(run_id)}
                ).scalar_one()
            )
    dispose_all()
    return counts


def verbs(url: str, run_id: str, other: str, folder: Path) -> list[tuple[str, list[str]]]:
    db = ["--db", url]
    return [
        ("runs", ["runs", *db]),
        ("trades", ["trades", "--run", run_id, *db]),
        ("trades --by month", ["trades", "--run", run_id, "--by", "month", *db]),
        ("trades --by agent", ["trades", "--run", run_id, "--by", "agent", *db]),
        ("shapley", ["shapley", "--run", run_id, *db]),
        ("shapley --format csv", ["shapley", "--run", run_id, "--format", "csv", *db]),
        ("shapley --aggregate", ["shapley", "--run", run_id, "--aggregate", *db]),
        ("status", ["status", run_id, *db]),
        ("compare", ["compare", run_id, other, *db]),
        ("report", ["report", run_id, "-o", str(folder / "report.html"), *db]),
    ]


def bench(
    url: str, bars: int, repeat: int, folder: Path
) -> tuple[dict[str, tuple[float, float]], str]:
    """Per verb: the median seconds and the largest peak memory (MB) of ``repeat`` runs."""
    run_id, other, backtest = store_runs(url, folder, bars)
    counts = row_counts(url, run_id)
    note = f"run {run_id}: {bars:,} bars backtested in {backtest:.1f} s; rows: " + ", ".join(
        f"{table} {count:,}" for table, count in counts.items()
    )
    emarl("runs", "--db", url)  # the compiled-code cache and the file system warm up
    timings = {}
    for label, args in verbs(url, run_id, other, folder):
        runs = [emarl(*args) for _ in range(repeat)]
        timings[label] = (statistics.median(s for s, _ in runs), max(mb for _, mb in runs))
    return timings, note


def postgres_database() -> tuple[str, object] | None:
    """A new database on the local PostgreSQL and its admin engine, or None."""
    import sqlalchemy as sa

    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"emarl_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # reported, the SQLite figures still print
        print(f"PostgreSQL skipped: not reachable at {POSTGRES_URL} ({type(exc).__name__})")
        admin.dispose()
        return None
    return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}", admin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="emarl-bench-queries-") as temp:
        folder = Path(temp)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                timings, note = bench(f"sqlite:///{folder / 'q.db'}", args.bars, args.repeat,
                                      folder)  # fmt: skip
            else:
                made = postgres_database()
                if made is None:
                    continue
                url, admin = made
                try:
                    timings, note = bench(url, args.bars, args.repeat, folder)
                finally:
                    import sqlalchemy as sa

                    name = url.rsplit("/", 1)[1]
                    with admin.connect() as connection:  # type: ignore[attr-defined]
                        connection.execute(
                            sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        )
                    admin.dispose()  # type: ignore[attr-defined]
            results[backend] = timings
            print(f"{backend}: {note}")
    if not results:
        return
    backends = list(results)
    print(
        f"\nread verbs, median of {args.repeat} (s, each a fresh process; goal in brackets) "
        "and peak memory (MB)"
    )
    print(f"{'verb':<24}" + "".join(f"{b:>13}{'MB':>7}" for b in backends) + "   goal")
    for label in next(iter(results.values())):
        goal = GOAL.get(label, 2.0)
        cells = "".join(
            f"{results[b][label][0]:>13.2f}{results[b][label][1]:>7.0f}" for b in backends
        )
        flag = "" if all(results[b][label][0] < goal for b in backends) else "   over"
        print(f"{label:<24}{cells}   < {goal:g}{flag}")


if __name__ == "__main__":
    main()

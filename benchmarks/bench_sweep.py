"""Parameter sweep on Dask: 16 tasks on a 2-worker local cluster against the same 16 run
one after the other in this process.

Each task is a persisted backtest of synthetic 30-minute bars (SMA crossover, one grid
combination of fast period x commission). Sequentially every run writes to its SQLite
file itself; in the sweep the workers run in memory and send their messages back, and
the client stores every run in one SQLite file as results arrive (one writer).

Figures (printed, not asserted):

* speed-up = sequential wall time / sweep wall time (ideal: the number of workers,
  when nothing else competes for the cores);
* per-task overhead = (sweep wall time x workers - backtest time measured inside the
  tasks) / tasks: worker time spent on anything but the backtest (scheduling,
  serialisation, waiting for the client to store results);
* fixed per-task cost: the same measure for 16 tiny tasks (200 bars), where the
  backtest is negligible;
* cluster start-up (processes and the first imports), paid once per sweep.

    python benchmarks/bench_sweep.py [--bars 50000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.app.backtest import run_backtest  # noqa: E402
from engine.app.scenario import parse_scenario  # noqa: E402
from engine.app.sweep import (  # noqa: E402
    Batch,
    build_tasks,
    dask_client,
    parse_grid,
    run_sweep,
    with_overrides,
)

GRID = ["strategy.fast=3,5,8,12", "broker.commission_bps=0,1,2,5"]  # 16 combinations


def scenario(bars: int, url: str):
    return parse_scenario(
        f"""
[run]
name = "bench-sweep"
seed = 1
[data]
source = "synthetic"
[data.synthetic]
bars = {bars}
[strategy]
fast = 10
slow = 30
quantity = 100
[broker]
slippage_bps = 0.5
[storage]
url = "{url}"
"""
    )


def sequential(bars: int, folder: str, persist: bool) -> tuple[float, int]:
    config = scenario(bars, f"sqlite:///{folder}/sequential.db")
    tasks = build_tasks(config, parse_grid(GRID))
    started = time.perf_counter()
    fills = 0
    for task in tasks:
        fills += run_backtest(with_overrides(config, task.overrides), persist=persist).fills
    return time.perf_counter() - started, fills


def swept(bars: int, folder: str, client, name: str, keep_messages: bool = True):
    config = scenario(bars, f"sqlite:///{folder}/{name}.db")
    started = time.perf_counter()
    result = run_sweep(
        config, parse_grid(GRID), batch=Batch(client=client, keep_messages=keep_messages)
    )
    wall = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"{result.failed} sweep tasks failed: {result.rows[-1]['error']}")
    inside = sum(row["wall_seconds"] for row in result.rows)
    return wall, inside, sum(row["fills"] for row in result.rows)


def report(label: str, seq_wall: float, wall: float, inside: float, workers: int) -> None:
    tasks = 16
    overhead = (wall * workers - inside) / tasks
    print(f"  {label}")
    print(
        f"    one process, one run after another {seq_wall:7.2f} s"
        f" ({seq_wall / tasks:.3f} s a task)"
    )
    print(
        f"    sweep on {workers} workers               {wall:7.2f} s"
        f"   speed-up {seq_wall / wall:.2f}x"
    )
    print(f"    backtest time inside the tasks     {inside:7.2f} s ({inside / tasks:.3f} s a task)")
    print(f"    per-task overhead                  {overhead * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(
        f"parameter sweep, 16 tasks x {args.bars:,} synthetic bars (SMA crossover), "
        f"{args.workers} local Dask workers vs one process; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    with tempfile.TemporaryDirectory() as folder:
        run_backtest(scenario(2_000, f"sqlite:///{folder}/warm.db"))  # imports, numba cache
        seq_full, seq_fills = sequential(args.bars, folder, persist=True)
        seq_memory, _ = sequential(args.bars, folder, persist=False)
        started = time.perf_counter()
        with dask_client(None, args.workers) as client:
            client.wait_for_workers(args.workers)
            swept(200, folder, client, "warm")  # first imports on the workers
            startup = time.perf_counter() - started
            full = swept(args.bars, folder, client, "sweep")
            summary_only = swept(args.bars, folder, client, "summary", keep_messages=False)
            tiny_wall, tiny_inside, _ = swept(200, folder, client, "tiny")
    for name, (_, _, fills) in (("full", full), ("summary-only", summary_only)):
        if fills != seq_fills:
            raise SystemExit(
                f"the {name} sweep made {fills} fills, the sequential runs {seq_fills}"
            )
    report(
        "every run stored whole (SQLite: the client writes all rows, as the runs arrive)",
        seq_full,
        full[0],
        full[1],
        args.workers,
    )
    report(
        "--summary-only (run rows and summaries; one process runs in memory)",
        seq_memory,
        summary_only[0],
        summary_only[1],
        args.workers,
    )
    tiny_overhead = (tiny_wall * args.workers - tiny_inside) / 16
    print(
        f"  fixed per-task cost, 16 tasks of 200 bars: {tiny_overhead * 1000:.0f} ms "
        f"(sweep {tiny_wall:.2f} s)"
    )
    print(f"  cluster start-up and first imports: {startup:.2f} s, once per sweep")


if __name__ == "__main__":
    main()

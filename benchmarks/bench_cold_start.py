"""The first demo backtest in a fresh clone, with and without the set-up step's
precompilation (python -m engine.app.precompile, which `make` runs once).

Each figure is the wall time of a whole `emarl backtest scenarios/demo.toml` process
(start-up, imports, loading the bars and the checkpoint, the replay and the stored
summary). numba's cache is redirected to an empty folder (NUMBA_CACHE_DIR) to stand for
a fresh clone:

* cold: the first backtest with an empty cache (it compiles every kernel);
* precompiled, first and second: the backtests after the set-up step filled the cache.

Goal: the first backtest after set-up within 1.5x of the second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMARL = Path(sys.executable).with_name("emarl")


def _timed(command: list[str], cache: Path, db: Path) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "runs.db"
        backtest = [str(EMARL), "backtest", "scenarios/demo.toml", "-q", "--db", f"sqlite:///{db}"]
        (folder / "cold").mkdir()
        cold = _timed(backtest, folder / "cold", db)
        cache = folder / "precompiled"
        cache.mkdir()
        setup = _timed([sys.executable, "-m", "engine.app.precompile"], cache, db)
        first = _timed(backtest, cache, db)
        second = _timed(backtest, cache, db)
    print(f"first demo backtest, empty numba cache:        {cold:7.2f} s")
    print(f"set-up step (python -m engine.app.precompile): {setup:7.2f} s")
    print(f"first demo backtest after the set-up step:     {first:7.2f} s")
    print(f"second demo backtest:                          {second:7.2f} s")
    print(f"first / second: {first / second:.2f}x (goal: within 1.5x)")


if __name__ == "__main__":
    main()

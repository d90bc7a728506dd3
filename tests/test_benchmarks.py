"""``make bench`` runs outside the suite, so nothing here would notice a benchmark that
calls the code in a way it no longer takes (a renamed keyword fails only when the
benchmark runs). Type-checking the scripts, the bodies of unannotated functions
included, catches that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the project's strict settings, loosened as for the numerical packages: the scripts need
#: not annotate their helpers, but every call they make is checked
LOOSER = (
    "--allow-untyped-defs",
    "--allow-incomplete-defs",
    "--allow-untyped-calls",
    "--allow-subclassing-any",
    "--no-warn-unused-ignores",
    "--check-untyped-defs",
)


def test_every_benchmark_calls_the_code_as_it_is() -> None:
    scripts = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) > 10
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *LOOSER, *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

"""Numba's on-disk cache is dropped when a package's sources change, so that a kernel that
calls a kernel of another module never runs a stale compiled copy of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INIT = (
    "from engine.core.numba_cache import drop_stale_numba_cache\ndrop_stale_numba_cache(__file__)\n"
)
INNER = "from numba import njit\n\n@njit(cache=True)\ndef inner():\n    return {value}\n"
OUTER = (
    "from numba import njit\nfrom kernels.inner import inner\n\n"
    "@njit(cache=True)\ndef outer():\n    return inner()\n"
)


def _outer(root: Path) -> int:
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{Path.cwd()}"}
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", "from kernels.outer import outer; print(outer())"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.parametrize("guarded", [True, False])
def test_edit_of_a_called_kernel_reaches_its_callers_cache(tmp_path: Path, guarded: bool) -> None:
    package = tmp_path / "kernels"
    package.mkdir()
    (package / "__init__.py").write_text(INIT if guarded else "")
    (package / "inner.py").write_text(INNER.format(value=1))
    (package / "outer.py").write_text(OUTER)
    assert _outer(tmp_path) == 1
    assert list((package / "__pycache__").glob("outer*.nbi"))  # the callers' cache exists
    (package / "inner.py").write_text(INNER.format(value=2))
    # numba alone keeps outer's stale copy of inner; the guard drops it
    assert _outer(tmp_path) == (2 if guarded else 1)

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


RULE = "def rule():\n    return {value}\n"
COMPILED = (
    "from numba import njit\nfrom rules import rule\n\n_rule = njit(cache=True)(rule)\n\n"
    "@njit(cache=True)\ndef outer():\n    return _rule()\n"
)


@pytest.mark.parametrize("named", [True, False])
def test_edit_of_a_rule_compiled_from_another_package_reaches_the_cache(
    tmp_path: Path, named: bool
) -> None:
    """The strategies compile the broker's cost rule (brokers/costs.py) into their kernels:
    a change of it drops their cache when the package names the file in ``also``."""
    package = tmp_path / "kernels"
    package.mkdir()
    also = '("rules.py",)' if named else "()"
    (package / "__init__.py").write_text(
        "from engine.core.numba_cache import drop_stale_numba_cache\n"
        f"drop_stale_numba_cache(__file__, also={also})\n"
    )
    (tmp_path / "rules.py").write_text(RULE.format(value=1))
    (package / "outer.py").write_text(COMPILED)
    assert _outer(tmp_path) == 1
    (tmp_path / "rules.py").write_text(RULE.format(value=2))
    assert _outer(tmp_path) == (2 if named else 1)

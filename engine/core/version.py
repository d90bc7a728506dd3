"""The code version recorded with every run: package version plus git commit when known."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["code_version"]

ROOT = Path(__file__).resolve().parents[2]


def _git(*arguments: str) -> str:
    """What ``git -C <project> arguments`` prints (stripped)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), *arguments],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return done.stdout.strip()


@cache
def code_version() -> str:
    """``<package version>+g<commit>`` (``.dirty`` with uncommitted changes to tracked
    files); the package version alone outside a git checkout."""
    try:
        base = version("emarl")
    except PackageNotFoundError:
        base = "0+unknown"
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return base
    if not commit:
        return base
    return f"{base}+g{commit}{'.dirty' if dirty else ''}"

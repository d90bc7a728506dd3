"""The architecture holds (ARCHITECTURE.md): the import contracts between the layers, no
production module over 600 lines, and imports inside functions only where start-up time
needs them, each saying why."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("emarl", "engine", "brokers", "strategies", "storage", "reporting", "indicators")
MAX_LINES = 600


def _modules() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_the_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(linter)], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" in done.stdout and " 0 broken" in done.stdout


def test_no_production_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in _modules()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _reasonless_inner_imports(path: Path) -> list[str]:
    """Imports inside functions with no comment on their lines nor on the line above
    the run of imports they belong to."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for function in ast.walk(ast.parse(text)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        imports = sorted(
            (node for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom)),
            key=lambda node: node.lineno,
        )
        ends = {node.end_lineno: node for node in imports}
        for node in imports:
            if any("#" in lines[k] for k in range(node.lineno - 1, node.end_lineno or node.lineno)):
                continue
            above_line = node.lineno - 1  # 1-based number of the line above the run
            while True:
                while above_line >= 1 and not lines[above_line - 1].strip():
                    above_line -= 1  # blank lines between import groups
                if above_line not in ends:
                    break
                above_line = ends[above_line].lineno - 1  # an import of the same run
            above = lines[above_line - 1].strip() if above_line >= 1 else ""
            if not above.startswith("#"):
                found.append(
                    f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
                )
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_inside_functions_say_why(package: str) -> None:
    found = [
        line
        for path in _modules()
        if path.relative_to(ROOT).parts[0] == package
        for line in _reasonless_inner_imports(path)
    ]
    assert not found, "imports inside functions without a reason:\n" + "\n".join(found)

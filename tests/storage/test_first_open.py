"""Processes that open a new database at the same moment all succeed (the schema lock).

Four worker processes, each with emarl's storage imported, are told a database URL
and a moment a fraction of a second ahead; at that moment all four open it (which
creates its schema). Ten new databases in a row, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from storage.db import HEAD_REVISION, connect, dispose_all
from tests.conftest import postgres_database

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
TRIES = 10

WORKER = """
import sys, time
import alembic.command  # imported ahead, so the four open at the same moment
from storage.db import connect, dispose_all
print("ready", flush=True)
for line in sys.stdin:
    url, start = line.split()
    time.sleep(max(0.0, float(start) - time.time()))
    try:
        connect(url)
        print("ok", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}".replace(chr(10), " "), flush=True)
    dispose_all()
"""


@contextmanager
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        yield processes
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in processes:
            process.wait(timeout=30)
            assert process.stdout is not None
            process.stdout.close()


def open_at_once(processes: list[subprocess.Popen[str]], url: str) -> list[str]:
    start = time.time() + 0.3
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{url} {start}\n")
        process.stdin.flush()
    answers = []
    for process in processes:
        assert process.stdout is not None
        answers.append(process.stdout.readline().strip())
    return answers


def sqlite_database(folder: Path) -> Callable[[int], AbstractContextManager[str]]:
    @contextmanager
    def make(attempt: int) -> Iterator[str]:
        yield f"sqlite:///{folder / f'new-{attempt}.db'}"

    return make


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_first_open_by_four_processes_at_once_all_succeed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        request.node.add_marker(pytest.mark.service)
        with postgres_database():  # skips (or fails under EMARL_REQUIRE_SERVICES) if absent
            pass
    make = sqlite_database(tmp_path) if backend == "sqlite" else lambda _: postgres_database()
    with workers() as processes:
        for attempt in range(TRIES):
            with make(attempt) as url:
                answers = open_at_once(processes, url)
                assert answers == ["ok"] * WORKERS, f"attempt {attempt}: {answers}"
                engine = connect(url, create=False)
                with engine.connect() as connection:
                    version = connection.execute(text("SELECT version_num FROM alembic_version"))
                    assert version.scalars().all() == [HEAD_REVISION]
                assert "runs" in inspect(engine).get_table_names()
                dispose_all()

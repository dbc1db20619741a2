"""SQLite's writer: one thread that runs each live batch's transaction as one call.

A live batch is some twenty statements in one transaction (its keys, its
events, its end users, seven rollups, the latest days, the account's data
version). Through SQLAlchemy's aiosqlite adapter each statement is four
hand-offs between the event loop and the driver's thread (cursor, execute,
fetch, close): measured in-process on the 1M-event tenant, a batch of one
event took 8.7 ms and one of 100 events 13-16 ms, most of it those hand-offs.

Here, as in Datasette's ``execute_write_fn``, the whole transaction is one
call on a thread of its own, which runs it start to end on its own
``sqlite3`` connection: the statements are the same SQLAlchemy ones, through
the same session and adapter, but the adapter's driver is
:class:`InlineConnection`, aiosqlite's asyncio interface answered at once
in the calling thread. The thread runs an event loop of its own, so the
write code stays the one coroutine both backends share; nothing in it waits
on anything but the database, so that loop never waits either. One batch of
one event: 4.1 ms; of 100: 9.0-9.5 ms. The request's event loop is free
meanwhile, as it was while aiosqlite's thread ran the statements, though
the writer's Python now takes the interpreter's lock from it: under the
load test's mix, reads' medians rose (the summary's 2.4 to 4.5 ms) while
the process answered about 40% more requests.

Only live batches come this way (``Database.run_write``); other writes
(imports, tokens, budgets, webhooks) are rare and keep the engine's own
connections. All of them queue for one write slot first
(``Database.write``), and each opens with ``BEGIN IMMEDIATE``, so two of
them never interleave on the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

T = TypeVar("T")


class InlineCursor:
    """aiosqlite's ``Cursor`` interface over a ``sqlite3`` cursor, run in the calling thread."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[Any]:
        for row in self._cursor:
            yield row

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Made:
    """What ``InlineConnection.cursor()`` returns: awaitable, or entered with ``async with``,
    as aiosqlite's own result of ``cursor()`` is."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: InlineCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        return self._cursor.__aenter__().__await__()

    async def __aenter__(self) -> InlineCursor:
        return self._cursor

    async def __aexit__(self, *_exc: object) -> None:
        await self._cursor.close()


class InlineConnection:
    """aiosqlite's ``Connection`` interface, what SQLAlchemy's adapter asks of it, over a
    ``sqlite3`` connection used in the calling thread: every await is already done.

    Opened in autocommit mode (``isolation_level=None``): the engine's hooks
    begin each transaction themselves (``db/engine.py``).
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        # aiosqlite's name: SQLAlchemy's adapter reads it to tell an open
        # connection from a closed one (None).
        self._connection: sqlite3.Connection | None = connection

    def cursor(self) -> _Made:
        return _Made(InlineCursor(self._open().cursor()))

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("Connection closed")
        return self._connection

    async def commit(self) -> None:
        self._open().commit()

    async def rollback(self) -> None:
        self._open().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level


def inline_creator(database: str, **options: Any) -> Callable[[], Awaitable[InlineConnection]]:
    """An engine's ``async_creator``: a new ``sqlite3`` connection to ``database``, inline.

    ``check_same_thread`` is off because SQLAlchemy may close a connection
    from whichever thread collects it; the writer's thread is the only one
    that runs statements on it.
    """

    async def connect() -> InlineConnection:
        return InlineConnection(sqlite3.connect(
            database, isolation_level=None, check_same_thread=False, **options))

    return connect


class Writer:
    """The thread that runs SQLite write transactions, one call each, on ``engine``.

    ``engine`` is made over :func:`inline_creator` connections, and used in
    this thread alone. The thread starts with the first call and ends with
    :meth:`close`.
    """

    def __init__(self, engine: AsyncEngine, write_options: dict[str, Any]) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(
            engine.execution_options(**write_options), expire_on_commit=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._starting:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="meterql-sqlite-writer", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work(session)`` in one transaction, in the writer's thread: its result or error.

        Cancelled here, the transaction is cancelled there and rolls back,
        as it would have on the event loop's own connection.
        """
        done: Future[T] = asyncio.run_coroutine_threadsafe(
            self._transact(work), self._running())
        return await asyncio.wrap_future(done)

    async def _transact(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self._sessions() as session, session.begin():
            return await work(session)

    async def close(self) -> None:
        """Close the writer's connection and end its thread (if it ever started)."""
        with self._starting:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            await self.engine.dispose()
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.engine.dispose(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()


__all__ = ["InlineConnection", "InlineCursor", "Writer", "inline_creator"]

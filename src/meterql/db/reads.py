"""The read path: statements compiled once per dialect, run on the driver itself.

Every read statement is SQLAlchemy Core, built once at import (or once per
shape, for the ``usage`` series). What SQLAlchemy's asyncio layer adds per
statement (a compile cache lookup, a cursor, four thread hops through its
aiosqlite adapter, a transaction begun and rolled back around a pool
checkout) cost ten times the query behind a ``/v1`` route. Here a statement
is compiled once per dialect to its SQL text and parameter order, with the
bind and result processors of its column types, and each read is one call
on the driver:

- SQLite: ``sqlite3`` in the event loop's own thread, under a time budget,
  else ``aiosqlite``'s ``execute_fetchall``, one hop to the thread of one of
  a few read-only connections (WAL lets them read beside the writer); each
  statement reads its own snapshot, as on PostgreSQL.
- PostgreSQL: ``asyncpg``'s ``fetch``, a prepared statement (asyncpg keeps
  them per connection) on a connection of a small pool this module owns,
  taken for one statement and given back at once: a request holds no
  connection between its statements, and none while it waits on a client.

A failure to reach the store is :class:`meterql.errors.DatabaseUnavailable`
(503), as on the write path. ``trips`` counts the calls made, for the tests
that hold each route to its number of round trips.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import aiosqlite
import asyncpg
from sqlalchemy import literal, select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from meterql.config import Settings
from meterql.errors import DatabaseUnavailable, said

logger = logging.getLogger("meterql.db")

Row = tuple[Any, ...]
Processor = Callable[[Any], Any] | None


class Reader(Protocol):
    """What a read function of ``meterql.db`` runs its statements on."""

    @property
    def dialect(self) -> str: ...

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]: ...


# Read-only parameters whose arguments a statement keeps, at most.
_KEPT_ARGUMENTS = 512


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement as its dialect runs it: SQL text, where each value goes, how it converts."""

    sql: str
    # For each bind name, once: its default (a literal the statement holds
    # itself) and the column type's bind processor.
    params: tuple[tuple[str, Any, Processor], ...]
    # For each positional parameter, the index of its bind name in ``params``:
    # a name a statement uses in several places (the account, a range's
    # ends) is converted once per call, not once per place.
    positions: tuple[int, ...]
    # One result processor per column (None: the driver's value as is).
    results: tuple[Processor, ...]
    # Arguments made from read-only parameters (``arguments``), by the
    # mapping's identity, each beside the mapping that keeps it alive.
    kept: dict[int, tuple[Mapping[str, Any], tuple[Any, ...]]] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> Compiled:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if "POSTCOMPILE" in compiled.string:
            # An expanding IN list would make the text depend on its length:
            # bind a list as one parameter instead (``db/dialect.py``).
            raise ValueError("a read statement takes no expanding parameter")
        binds = compiled.binds
        names = list(dict.fromkeys(compiled.positiontup or ()))
        params = tuple(
            (name, binds[name].effective_value,
             binds[name].type._cached_bind_processor(dialect))
            for name in names
        )
        positions = tuple(names.index(name) for name in compiled.positiontup or ())
        columns = getattr(statement, "selected_columns", ())
        results = tuple(
            column.type._cached_result_processor(dialect, None) for column in columns
        )
        return cls(compiled.string, params, positions, results)

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's positional arguments for ``values`` (a tuple: a kept one is
        handed to every call that has the same parameters, and nothing may change it).

        Read-only parameters (a ``MappingProxyType``, which a caller keeps for
        calls whose parameters are the same, such as a billing period's) are
        converted once per statement: they cannot change after that.
        """
        if values.__class__ is not MappingProxyType:
            return self._arguments(values)
        found = self.kept.get(id(values))
        if found is None or found[0] is not values:
            if len(self.kept) >= _KEPT_ARGUMENTS:
                self.kept.clear()
            found = self.kept[id(values)] = (values, self._arguments(values))
        return found[1]

    def _arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        converted = []
        for name, default, process in self.params:
            value = values.get(name, default)
            converted.append(value if process is None or value is None else process(value))
        return tuple([converted[n] for n in self.positions])

    def rows(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """The driver's rows, with the columns that need it converted (only those)."""
        converting = [(n, process) for n, process in enumerate(self.results) if process]
        if not converting:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for n, process in converting:
                if values[n] is not None:
                    values[n] = process(values[n])
            converted.append(values)
        return converted


class _Driver(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def in_use(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def overruns(self) -> int: ...

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]: ...

    async def close(self) -> None: ...


_PING = select(literal(1))


class Reads:
    """The app's reads: compiled statements and the driver connections they run on."""

    def __init__(self, driver: _Driver) -> None:
        self._driver = driver
        self._compiled: dict[int, tuple[ClauseElement, Compiled]] = {}
        # Driver calls made ("round trips"), and who wants to see each one's
        # SQL: what tests hold routes and pages to.
        self.trips = 0
        self.listeners: list[Callable[[str], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> Reads:
        url = settings.database_url
        if url.startswith("sqlite"):
            return cls(_Sqlite(settings))
        return cls(_Postgres(settings))

    @property
    def dialect(self) -> str:
        return str(self._driver.dialect.name)

    def compiled(self, statement: ClauseElement) -> Compiled:
        """The statement compiled for this dialect, once for the life of the app.

        Statements are kept by identity: they are module constants (or made
        once per shape and kept), never built per call.
        """
        found = self._compiled.get(id(statement))
        if found is None or found[0] is not statement:
            found = self._compiled[id(statement)] = (
                statement, Compiled.of(statement, self._driver.dialect)
            )
        return found[1]

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """The statement's rows (tuples, or the driver's records: index them)."""
        assert isinstance(statement, ClauseElement)
        compiled = self.compiled(statement)
        self.trips += 1
        for listener in self.listeners:
            listener(compiled.sql)
        rows = await self._driver.fetch(compiled.sql, compiled.arguments(params))
        return compiled.rows(rows)

    async def ping(self) -> None:
        """One trivial statement: :class:`DatabaseUnavailable` if the store is away."""
        await self.fetch(_PING, {})

    @property
    def in_use(self) -> int:
        """Connections running a statement now."""
        return self._driver.in_use

    @property
    def size(self) -> int:
        """Connections open now."""
        return self._driver.size

    @property
    def overruns(self) -> int:
        """SQLite: statements stopped at the event loop's budget (a thread then ran them)."""
        return self._driver.overruns

    async def close(self) -> None:
        await self._driver.close()


# --- SQLite: in the event loop's thread within a budget, else a connection's thread ----------


class _Sqlite:
    """Read-only SQLite connections: one in the event loop's thread, a few in their own.

    A statement first runs in the event loop's own thread, on a connection
    that never waits for a lock, within a budget of CPU time
    (``sqlite_inline_budget_ms``, 3 ms): SQLite's progress handler stops it
    past that. Nearly every read fits: the token's lookup takes about 15 µs,
    a ``days=N`` summary or a billing period's totals 0.1–0.3 ms, the
    instance list, a page's totals per instance or model and a local-time
    series 1–3 ms at 1M events. Handing one to a thread and back costs more
    than the hop: while the thread turns its rows into Python objects it
    needs the interpreter's lock, which the event loop holds for up to a
    switch interval at a time. One worker's requests per second on
    ``/v1/billing`` rose by 30–40% when its 0.3 ms statement stopped going to
    a thread (``wrk -c16``), and the pages' when the budget went from 0.5 ms
    to 3 (``docs/decisions.md``). Another request waits at most the budget
    behind a statement here.

    The budget counts the thread's CPU time, not the clock's: waiting for the
    GIL or for a core is not the statement's cost, and counting it made
    statements well within the budget overrun on a busy machine. The clock
    still stops a statement at four budgets, for what CPU time does not
    count: waiting for the disk.

    A statement that overruns, or cannot read at once (locked, or the file
    is away), runs again on the least busy of a few aiosqlite connections,
    each its own thread, where it may take as long as it needs and waits for
    locks as every read does. So the event loop never runs one statement for
    much longer than the budget. An overrun statement (by its SQL text) then
    goes straight to the threads for its next few calls, twice as many after
    each overrun in a row, up to a thousand: the lists summing thousands of
    rollup rows, the local-time series and the pages' larger statements cost
    the loop a budget now and then, not on every call.

    ``query_only`` makes each connection refuse to write, whatever it is
    given. WAL (set by the writer's connections) lets all of them read beside
    one writer; each statement reads its own snapshot.
    """

    CONNECTIONS = 4
    # SQLite calls the progress handler every this many virtual machine
    # instructions: some 0.1 ms of a typical read here.
    STEPS = 4_000
    # The clock may run this many budgets before a statement is stopped: time
    # spent waiting (for the disk, a cold page cache) is not CPU time, and the
    # event loop must not wait on it either.
    WALL_FACTOR = 4
    # Calls of an overrun statement sent straight to the threads: first, and at most.
    FIRST_SKIP = 8
    MOST_SKIP = 1_024

    def __init__(self, settings: Settings) -> None:
        from sqlalchemy.dialects.sqlite.aiosqlite import dialect

        self.dialect: Dialect = dialect()
        self._path = make_url(settings.database_url).database or ""
        self._busy_timeout_ms = settings.sqlite_busy_timeout_ms
        self._budget = settings.sqlite_inline_budget_ms / 1000
        self._connections: list[aiosqlite.Connection] = []
        self._busy: list[int] = []
        self._opening: asyncio.Lock | None = None
        self._inline: sqlite3.Connection | None = None
        self._deadline = 0.0
        self._wall_deadline = 0.0
        # SQL text of an overrun statement: (calls left to send to the threads,
        # how many to send after its next overrun).
        self._skips: dict[str, tuple[int, int]] = {}
        self.in_use = 0
        self.overruns = 0

    @property
    def size(self) -> int:
        return len(self._connections) + (self._inline is not None)

    def _overran(self) -> bool:
        return (time.thread_time() > self._deadline
                or time.perf_counter() > self._wall_deadline)

    def _run_inline(self, sql: str, arguments: Sequence[Any]) -> list[Any] | None:
        """The statement's rows, read in this thread; None if not within the budget."""
        skip = self._skips.get(sql)
        if skip is not None and skip[0] > 0:
            self._skips[sql] = (skip[0] - 1, skip[1])
            return None
        try:
            if self._inline is None:
                # ``timeout=0``: a lock is reported at once, never waited for.
                # Any thread may use it: only the event loop's does, one
                # statement at a time, but that thread may change under one
                # app (a test client's portal), and SQLite serializes calls.
                inline = sqlite3.connect(self._path, isolation_level=None, timeout=0,
                                         check_same_thread=False)
                inline.execute("PRAGMA query_only=ON")
                inline.set_progress_handler(self._overran, self.STEPS)
                self._inline = inline
            self._deadline = time.thread_time() + self._budget
            self._wall_deadline = time.perf_counter() + self._budget * self.WALL_FACTOR
            rows = self._inline.execute(sql, arguments).fetchall()
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_INTERRUPT:
                self._close_inline()
                return None
            self.overruns += 1
            penalty = self.FIRST_SKIP if skip is None else min(skip[1] * 2, self.MOST_SKIP)
            self._skips[sql] = (penalty, penalty)
            return None
        except sqlite3.Error:
            self._close_inline()
            return None
        if skip is not None:
            del self._skips[sql]
        return rows

    def _close_inline(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()

    async def _open(self) -> None:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._connections:
                return
            opened = []
            try:
                for _ in range(self.CONNECTIONS):
                    connection = await aiosqlite.connect(
                        self._path, isolation_level=None,
                        timeout=self._busy_timeout_ms / 1000,
                    )
                    opened.append(connection)
                    # The busy timeout is sqlite3's ``timeout`` above.
                    await connection.execute("PRAGMA query_only=ON")
            except (sqlite3.Error, OSError) as error:
                for connection in opened:
                    await connection.close()
                logger.warning("database unavailable: %s", said(error))
                raise DatabaseUnavailable() from error
            self._busy = [0] * len(opened)
            self._connections = opened

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        if self._budget > 0:
            found = self._run_inline(sql, arguments)
            if found is not None:
                return found
        if not self._connections:
            await self._open()
        busy = self._busy
        n = min(range(len(busy)), key=busy.__getitem__)
        busy[n] += 1
        self.in_use += 1
        try:
            return list(await self._connections[n].execute_fetchall(sql, arguments))
        except sqlite3.OperationalError as error:
            # Locked past the busy timeout, or the file is gone: not a bug.
            logger.warning("database unavailable: %s", said(error))
            raise DatabaseUnavailable() from error
        finally:
            busy[n] -= 1
            self.in_use -= 1

    async def close(self) -> None:
        self._close_inline()
        connections, self._connections = self._connections, []
        for connection in connections:
            await connection.close()


# --- PostgreSQL: a small pool of asyncpg connections -----------------------------------------


# One plan per statement, made once per connection. Read statements have one
# text each, their lists bound as arrays and their spans read through LATERAL
# index ranges, so a generic plan is as good as a fitted one. Left to choose
# (``auto``), PostgreSQL kept planning the statements that read raw events
# afresh on every call: over a table partitioned by month, a generic plan's
# estimate counts every partition (they are pruned when it runs), so it never
# looked cheaper. Side by side on 300k events, in-process: the billing
# period's statement 2.05 → 1.28 ms, the 90-day local series 2.2 → 1.8 ms,
# no statement slower. (Statements written per call, with their spans as
# VALUES, once made generic plans read whole rollups; none is left on the
# read path.)
PLAN_CACHE_MODE = "force_generic_plan"

# What each read connection sets. Besides the plan cache: no JIT. A read
# answers in a millisecond or two, and PostgreSQL decides to compile by the
# plan's estimated cost, which counts branches that never run: the billing
# statement's fallback count of end users over raw events (taken only when
# the account's newest event is in the future) is estimated as a scan of
# every event, so once an account has a few million, every billing answer
# spent 57 ms compiling 127 functions to run 1.5 ms of plan (measured after
# ten minutes of live ingest).
SERVER_SETTINGS = {"plan_cache_mode": PLAN_CACHE_MODE, "jit": "off"}

# How long a connection beyond ``pool_size`` stays open with nothing to do
# (seconds). Closing it the moment it came back, as SQLAlchemy's pool does
# with its overflow, turned every burst past the pool size into connections
# made and dropped: under 16 concurrent clients a worker opened about 18 a
# second, and each one costs PostgreSQL a process and the worker a fresh
# set of prepared statements. asyncpg's own pool waits 300 s; a minute is
# enough to carry a burst over to the next.
IDLE_LIFETIME_S = 60.0


class _Postgres:
    """asyncpg connections, made on demand up to ``pool_size + max_overflow``.

    A statement takes a connection, runs, and gives it back: a request never
    holds one between statements. Waiting for a free one is bounded by
    ``db_pool_timeout_s``, connecting by ``db_connect_timeout_s`` and each
    statement by ``db_statement_timeout_s``; past any bound, or when the
    server is away, the answer is 503. A connection that failed is dropped,
    never given back, so the next statement connects afresh. Those beyond
    ``pool_size`` are closed once idle for ``IDLE_LIFETIME_S``.
    """

    def __init__(self, settings: Settings) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        self.dialect: Dialect = dialect()  # type: ignore[no-untyped-call]
        url = make_url(settings.database_url)
        query = dict(url.query)
        # SQLAlchemy's URL option for a PgBouncer that cannot route prepared
        # statements (docs/deployment.md): asyncpg's own name for it.
        cache = query.pop("prepared_statement_cache_size", None)
        self._statement_cache_size = int(str(cache)) if cache is not None else 1_000
        self._dsn = url.set(drivername="postgresql", query=query).render_as_string(
            hide_password=False)
        self._limit = settings.pool_size + settings.max_overflow
        self._keep = settings.pool_size
        self._connect_timeout = settings.db_connect_timeout_s
        self._statement_timeout = settings.db_statement_timeout_s
        self._wait = settings.db_pool_timeout_s
        # Idle connections with the moment each came back, most recent last:
        # a statement takes the most recent (warm), the oldest are closed.
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._prune_at: asyncio.TimerHandle | None = None
        self._open = 0
        self._freed = asyncio.Condition()
        self.in_use = 0
        self.overruns = 0  # (a SQLite measure: never here)

    @property
    def size(self) -> int:
        return self._open

    async def _connect(self) -> asyncpg.Connection:
        self._open += 1
        try:
            return await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout,
                command_timeout=self._statement_timeout,
                statement_cache_size=self._statement_cache_size,
                server_settings=SERVER_SETTINGS,
            )
        except BaseException:
            self._open -= 1
            raise

    async def _take(self) -> asyncpg.Connection:
        if self._idle:
            return self._idle.pop()[0]
        if self._open < self._limit:
            return await self._connect()
        async with self._freed:
            await asyncio.wait_for(
                self._freed.wait_for(lambda: bool(self._idle) or self._open < self._limit),
                self._wait,
            )
        return self._idle.pop()[0] if self._idle else await self._connect()

    async def _give(self, connection: asyncpg.Connection, broken: bool) -> None:
        if broken or connection.is_closed():
            self._open -= 1
            connection.terminate()
        else:
            self._idle.append((connection, time.monotonic()))
            if len(self._idle) > self._keep and self._prune_at is None:
                self._prune_at = asyncio.get_running_loop().call_later(
                    IDLE_LIFETIME_S, self._prune)
        async with self._freed:
            self._freed.notify()

    def _prune(self) -> None:
        """Close the connections beyond ``pool_size`` idle for ``IDLE_LIFETIME_S``."""
        self._prune_at = None
        stale = time.monotonic() - IDLE_LIFETIME_S
        while len(self._idle) > self._keep and self._idle[0][1] <= stale:
            self._open -= 1
            self._idle.pop(0)[0].terminate()
        if len(self._idle) > self._keep:
            wait = self._idle[0][1] + IDLE_LIFETIME_S - time.monotonic()
            self._prune_at = asyncio.get_running_loop().call_later(max(wait, 0.0), self._prune)

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        try:
            connection = await self._take()
        except (TimeoutError, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as error:
            logger.warning("database unavailable: %s", said(error))
            raise DatabaseUnavailable() from error
        self.in_use += 1
        broken = True
        try:
            rows: list[Sequence[Any]] = await connection.fetch(sql, *arguments)
            broken = False
            return rows
        except (TimeoutError, OSError, asyncpg.InterfaceError,
                asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                asyncpg.QueryCanceledError, asyncpg.AdminShutdownError) as error:
            logger.warning("database unavailable: %s", said(error))
            raise DatabaseUnavailable() from error
        except asyncpg.PostgresError:
            broken = False  # the statement failed, the connection is fine
            raise
        finally:
            self.in_use -= 1
            await self._give(connection, broken)

    async def close(self) -> None:
        if self._prune_at is not None:
            self._prune_at.cancel()
            self._prune_at = None
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            self._open -= 1
            await connection.close()


__all__ = ["Compiled", "Reader", "Reads", "Row"]

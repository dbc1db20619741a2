"""Many rows into one table, at the speed each backend allows.

SQLAlchemy's ``execute(stmt, [dict, ...])`` spends several microseconds per
row building and checking parameters, and on PostgreSQL an ``executemany``
still runs the statement once per row on the server. At tens of thousands
of events a second both costs dominate, so a :class:`BulkInsert` (built with
SQLAlchemy constructs, never by hand) takes the fastest path each has:

- SQLite: the statement compiled once, each value run through its column
  type's own bind processor, the rows handed to the driver's ``executemany``
  (an in-process library: one call per row costs microseconds);
- PostgreSQL: one statement for the whole batch, ``INSERT ... SELECT`` from
  ``unnest`` of one array parameter per column, so the server plans and runs
  it once, and ``RETURNING`` works as for a single row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Dialect,
    Insert,
    Select,
    Table,
    bindparam,
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

Row = Mapping[str, Any]
Processor = Callable[[Any], Any] | None
# Adds ON CONFLICT (and anything else) to a dialect's INSERT.
Finish = Callable[[postgresql.Insert | sqlite.Insert], Insert]


class BulkInsert:
    """``INSERT`` rows (mappings holding at least ``columns``) into ``table``."""

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        finish: Finish = lambda stmt: stmt,
        returning: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.returning = tuple(returning)
        self.finish = finish
        self._sqlite: tuple[str, tuple[str, ...], tuple[Processor, ...]] | None = None
        self._postgresql: Insert | None = None

    async def run(self, session: AsyncSession, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
        """Write ``rows``; the ``returning`` columns of each row written (PostgreSQL only)."""
        if not rows:
            return []
        connection = await session.connection()
        if connection.dialect.name == "postgresql":
            arrays = {name: [row[name] for row in rows] for name in self.columns}
            result = await connection.execute(self._postgresql_statement(), arrays)
            return [tuple(r) for r in result] if self.returning else []
        if self.returning:
            raise NotImplementedError("RETURNING is only offered on PostgreSQL")
        sql, order, processors = self._sqlite_statement(connection.dialect)
        parameters = []
        for row in rows:
            values = [row[name] for name in order]
            for position, process in enumerate(processors):
                if process is not None:
                    values[position] = process(values[position])
            parameters.append(tuple(values))
        await connection.exec_driver_sql(sql, parameters)
        return []

    def _sqlite_statement(
        self, dialect: Dialect
    ) -> tuple[str, tuple[str, ...], tuple[Processor, ...]]:
        if self._sqlite is None:
            stmt = self.finish(sqlite.insert(self.table))
            compiled = stmt.compile(
                dialect=dialect, column_keys=list(self.columns), for_executemany=True
            )
            # qmark parameters come in the order the SQL names them (the
            # table's column order).
            order = tuple(compiled.positiontup or ())
            if sorted(order) != sorted(self.columns):
                raise ValueError(f"unexpected parameters in {compiled}")
            processors = tuple(
                self.table.c[name].type._cached_bind_processor(dialect) for name in order
            )
            self._sqlite = (str(compiled), order, processors)
        return self._sqlite

    def _postgresql_statement(self) -> Insert:
        if self._postgresql is None:
            rows = select(
                *(
                    func.unnest(
                        bindparam(name, type_=postgresql.ARRAY(self.table.c[name].type))
                    ).label(name)
                    for name in self.columns
                )
            )
            stmt = self.finish(
                postgresql.insert(self.table).from_select(list(self.columns), rows)
            )
            if self.returning:
                stmt = stmt.returning(*(self.table.c[name] for name in self.returning))
            self._postgresql = stmt
        return self._postgresql


def by_account(
    keys: Iterable[tuple[str, str]], chunk: int = 1_000
) -> Iterator[tuple[str, list[str]]]:
    """``(account, ids)`` pairs of at most ``chunk`` ids, for lookups by key.

    One account and a plain ``IN`` list per query: the ``(account_id, ...)``
    key answers it directly, and it compiles far faster than row values.
    """
    grouped: dict[str, list[str]] = {}
    for account, key in keys:
        grouped.setdefault(account, []).append(key)
    for account, ids in grouped.items():
        for start in range(0, len(ids), chunk):
            yield account, ids[start : start + chunk]


async def pages(
    session: AsyncSession, query: Select[Any], key: Sequence[ColumnElement[Any]], size: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of ``query`` (which selects ``key``), ``size`` at a time, in ``key`` order.

    Each page starts after the last key of the one before (keyset paging),
    so a page costs one index range however far the walk has gone, and rows
    the caller writes meanwhile elsewhere do not shift it.
    """
    last: tuple[Any, ...] | None = None
    while True:
        page = query.order_by(*key).limit(size)
        if last is not None:
            page = page.where(tuple_(*key) > tuple_(*last))
        rows = [dict(row) for row in (await session.execute(page)).mappings()]
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][column.name] for column in key)

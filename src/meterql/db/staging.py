"""Bulk import through a staging table: events in as fast as the store takes rows.

``meterql load`` does not write events the way ingest does (a lookup, an
insert and an upsert per rollup for every batch, with Python summing each).
It streams the file's events into a temporary *stage* table, by PostgreSQL's
``COPY`` (asyncpg's ``copy_records_to_table``) or SQLite's ``executemany``,
with every key the rollups need computed once in Python (UTC day, hour,
quarter hour, cost); each batch is sent while the next is parsed. Then, still
in the import's one transaction, a few set-based statements finish it:

1. later copies of an event the file repeats leave the stage (the first counts);
2. the instances that new events name are registered;
3. their keys are claimed in key order, whatever was stored before leaves
   the stage, and the rest are inserted;
4. one ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`` per
   rollup adds the stage's sums: each rollup row is written once per import,
   not once per batch, so a load leaves no trail of dead row versions;
5. end users move forward in chunks, through the same code as ingest, each
   once with its latest instant.

On PostgreSQL, claiming the keys and dropping the events whose key was not
claimed are one statement (the keys' ``INSERT ... RETURNING``, in a
``WITH``), so an event a live gateway stores at the same moment is counted
once, by whoever wrote it. On SQLite the import is the one writer: the
events already stored leave the stage first, then the rest are claimed.

Rows are written in key order everywhere, as ingest writes them, so an
import and live gateways lock shared rows in the same order and cannot
deadlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    MetaData,
    String,
    Table,
    and_,
    delete,
    exists,
    func,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from meterql.db import partitions, rollups
from meterql.db.bulk import pages
from meterql.db.tables import EventKey, Instance, ModelPrice, UsageEvent
from meterql.db.types import UTCDateTime, sqlite_instant
from meterql.money import NANOS_PER_USD, event_cost_nanos, usd_to_nanos
from meterql.records import EventRecord
from meterql.windows import epoch_hour, epoch_quarter

_METADATA = MetaData()
# Created per import, in its transaction: PostgreSQL drops them at commit;
# SQLite keeps temporary tables for the connection's life, so they are
# dropped by hand before the commit (a rollback undoes their creation).
_STAGE = Table(
    "meterql_import_stage",
    _METADATA,
    Column("seq", BigInteger, nullable=False),  # the event's place in the file
    Column("account_id", String, nullable=False),
    Column("event_id", String, nullable=False),
    Column("instance_id", String, nullable=False),
    Column("model", String, nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("day", Date, nullable=False),
    Column("hour", BigInteger, nullable=False),
    Column("quarter", BigInteger, nullable=False),
    Column("tokens_in", BigInteger, nullable=False),
    Column("tokens_out", BigInteger, nullable=False),
    Column("end_user_id", String),
    Column("conversation_id", String),
    Column("cost_nanos", BigInteger, nullable=False),
    Column("unpriced", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_S = _STAGE.c
_COLUMNS = tuple(column.name for column in _STAGE.columns)
# The end users the stage saw, each with its latest instant; paged by key.
_SEEN = Table(
    "meterql_import_seen",
    _METADATA,
    Column("account_id", String, primary_key=True),
    Column("end_user_id", String, primary_key=True),
    Column("occurred_at", UTCDateTime(), nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_EVENTS: Table = UsageEvent.__table__  # type: ignore[assignment]
_KEYS: Table = EventKey.__table__  # type: ignore[assignment]
_INSTANCES: Table = Instance.__table__  # type: ignore[assignment]
_EVENT_COLUMNS = (
    "account_id", "event_id", "instance_id", "model", "occurred_at", "day", "tokens_in",
    "tokens_out", "end_user_id", "conversation_id", "cost_nanos",
)
_NANOS = literal(NANOS_PER_USD)
SEEN_CHUNK = 5_000  # end users moved per call of the ingest code
# For the import's transaction alone (SET LOCAL). Its statements sort and
# join the whole stage: in memory rather than in temporary files; and they run
# once, so compiling them to machine code (JIT) costs more than it saves.
_POSTGRESQL_SETTINGS = {"work_mem": "256MB", "jit": "off"}


class StagedEvents:
    """One import's stage: :meth:`open`, :meth:`add` batches, then :meth:`finish` once."""

    def __init__(self, session: AsyncSession, engine: AsyncEngine) -> None:
        self.session = session
        self.engine = engine  # for what must not wait for the import's commit
        self.postgresql = session.get_bind().dialect.name == "postgresql"
        self.prices: dict[str, tuple[int, int]] = {}
        self.staged = 0  # events staged so far (the next one's seq)
        self.accepted = 0  # events written
        self.unpriced = 0  # events written without a price
        self._unpriced_staged = 0  # events staged without a price, written or not
        # (year, month) of every event staged: a tuple costs a tenth of
        # ``partitions.month_of`` per event, and the months are few.
        self._months: set[tuple[int, int]] = set()
        self._writing: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Create the stage and read the prices (the file's models are already applied)."""
        connection = await self.session.connection()
        await connection.run_sync(_METADATA.create_all, tables=[_STAGE, _SEEN])
        for row in await self.session.execute(
            select(ModelPrice.model, ModelPrice.input_nanos_per_mtok,
                   ModelPrice.output_nanos_per_mtok)
        ):
            self.prices[row.model] = (row.input_nanos_per_mtok, row.output_nanos_per_mtok)

    async def add(self, events: Sequence[EventRecord]) -> None:
        """Stage ``events``; they are sent while the caller parses the next batch.

        At most one batch is in flight: this waits for the previous one.
        """
        rows = self._rows(events)
        await self.flush()
        self._writing = asyncio.ensure_future(self._stage(rows))

    async def flush(self) -> None:
        """Wait for the batch in flight, if any (its error, if any, is raised here)."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def settle(self) -> None:
        """Let the batch in flight end, its outcome unread: for leaving on an error.

        The transaction must not end under a statement still running on its
        connection; the error that made the caller leave is the one to report.
        """
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await asyncio.wait([writing])
            if not writing.cancelled():
                writing.exception()  # read, so asyncio does not log it as lost

    def _rows(self, events: Sequence[EventRecord]) -> list[tuple[Any, ...]]:
        prices, rows, seq, months = self.prices, [], self.staged, self._months
        sqlite_text = not self.postgresql
        for e in events:
            unpriced = False
            if e.cost_usd is not None:
                cost = usd_to_nanos(e.cost_usd, exact=False)
            elif e.model in prices:
                cost = event_cost_nanos(e.tokens_in, e.tokens_out, *prices[e.model])
            else:
                cost, unpriced = 0, True
                self._unpriced_staged += 1
            at = e.timestamp if e.timestamp.tzinfo is UTC else e.timestamp.astimezone(UTC)
            months.add((at.year, at.month))
            day: date | str = at.date()
            stored: datetime | str = at
            if sqlite_text:
                # The stage's rows go to the driver as they are: SQLite's
                # stored forms, as the columns' types would write them.
                stored, day = sqlite_instant(at), at.date().isoformat()
            rows.append((
                seq, e.account_id, e.event_id, e.instance_id, e.model, stored, day,
                epoch_hour(at), epoch_quarter(at), e.tokens_in, e.tokens_out,
                e.end_user_id, e.conversation_id, cost, unpriced,
            ))
            seq += 1
        self.staged = seq
        return rows

    async def _stage(self, rows: list[tuple[Any, ...]]) -> None:
        connection = await self.session.connection()
        if self.postgresql:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.copy_records_to_table(_STAGE.name, records=rows, columns=_COLUMNS)
        else:
            await connection.exec_driver_sql(_SQLITE_STAGE_INSERT, rows)

    async def _write(self) -> None:
        """Steps 1 to 4: the new events and their sums."""
        session = self.session
        if self.postgresql:
            for name, value in _POSTGRESQL_SETTINGS.items():
                await session.execute(select(func.set_config(name, value, True)))
            await session.execute(_ANALYZE_STAGE)  # a temporary table has no statistics
        await session.execute(_DROP_REPEATS)
        if not self.postgresql:
            await session.execute(_DROP_STORED)
        await session.execute(self._register_instances)
        await session.execute(self._keep_written if self.postgresql else self._insert_keys)
        self.accepted = await session.scalar(_COUNT) or 0
        if not self.accepted:
            return
        if self.postgresql:
            await self._make_months(
                [datetime(year, month, 1, tzinfo=UTC) for year, month in sorted(self._months)]
            )
        await session.execute(self._insert_events)
        if self._unpriced_staged:
            self.unpriced = await session.scalar(_COUNT.where(_S.unpriced)) or 0
        for statement in self._rollups:
            await session.execute(statement)
        await session.execute(self._keep_seen)

    async def finish(self) -> tuple[int, int]:
        """Write the stage's new events and their sums; ``(accepted, unpriced)`` events."""
        await self.flush()
        if self.staged:
            await self._write()
        session = self.session
        seen = _SEEN.c
        async for users in pages(
            session, select(seen.account_id, seen.end_user_id, seen.occurred_at),
            (seen.account_id, seen.end_user_id), SEEN_CHUNK,
        ):
            # Each end user once, with its latest instant: exactly what the
            # ingest code concludes from every one of its events.
            await rollups.see_end_users(session, users)
        if not self.postgresql:
            connection = await session.connection()
            await connection.run_sync(_METADATA.drop_all, tables=[_STAGE, _SEEN])
        return self.accepted, self.unpriced

    def _insert(self, table: Table, rows: Any, *, on_conflict: tuple[str, ...]) -> Any:
        stmt = self._dialect_insert(table)
        return stmt.from_select(list(rows.selected_columns.keys()), rows).on_conflict_do_nothing(
            index_elements=list(on_conflict)
        )

    def _dialect_insert(self, table: Table) -> Any:
        return postgresql.insert(table) if self.postgresql else sqlite.insert(table)

    @cached_property
    def _register_instances(self) -> Any:
        return self._insert(_INSTANCES, _REGISTER_INSTANCES,
                            on_conflict=("account_id", "instance_id"))

    async def _make_months(self, months: Sequence[datetime]) -> None:
        """The months the events fall in, made in a transaction of their own.

        Made inside the import's, a new month would keep every other writer
        that needs one waiting (for the lock that lets one creator at a time)
        until the import ends. An import that fails leaves its months empty.
        """
        async with self.engine.begin() as connection:
            await connection.execute(partitions.ENSURE, {"months": list(months)})

    @cached_property
    def _insert_keys(self) -> Any:
        return self._insert(_KEYS, _NEW_KEYS, on_conflict=("account_id", "event_id"))

    @cached_property
    def _insert_events(self) -> Any:
        return self._dialect_insert(_EVENTS).from_select(
            list(_EVENT_COLUMNS), _NEW_EVENTS
        )

    @cached_property
    def _keep_written(self) -> Any:
        """PostgreSQL: claim the stage's keys; the events whose key was not ours leave."""
        written = self._insert_keys.returning(_K.account_id, _K.event_id).cte("written")
        return delete(_STAGE).where(
            ~exists().where(written.c.account_id == _S.account_id,
                            written.c.event_id == _S.event_id)
        ).add_cte(written)

    @cached_property
    def _rollups(self) -> list[Any]:
        statements = []
        for statement in rollups.ACCUMULATING:
            keys = [_S[name] for name in statement.columns[1 : -len(rollups.MEASURES)]]
            sums = (
                select(
                    _S.account_id,
                    *keys,
                    func.count(),
                    func.sum(_S.tokens_in),
                    func.sum(_S.tokens_out),
                    func.sum(_S.cost_nanos // _NANOS),
                    func.sum(_S.cost_nanos % _NANOS),
                )
                .where(true())  # SQLite: an upsert's SELECT needs a WHERE to parse
                .group_by(_S.account_id, *keys)
                .order_by(_S.account_id, *keys)  # rows locked in key order
            )
            statements.append(
                statement.finish(self._dialect_insert(statement.table))
                .from_select(list(statement.columns), sums)
            )
        return statements

    @cached_property
    def _keep_seen(self) -> Any:
        """Each end user of the stage with its latest instant, into ``_SEEN``."""
        stmt = self._dialect_insert(_SEEN).from_select(
            ["account_id", "end_user_id", "occurred_at"],
            select(_S.account_id, _S.end_user_id, func.max(_S.occurred_at))
            .where(_S.end_user_id.is_not(None), _S.end_user_id != "")
            .group_by(_S.account_id, _S.end_user_id),
        )
        return stmt.on_conflict_do_update(
            index_elements=["account_id", "end_user_id"],
            set_={"occurred_at": stmt.excluded.occurred_at},
            where=stmt.excluded.occurred_at > _SEEN.c.occurred_at,
        )


_SQLITE_STAGE_INSERT = str(
    sqlite.insert(_STAGE).compile(dialect=sqlite.dialect(), column_keys=list(_COLUMNS))
)

# Later copies of an event the file repeats: the first one (lowest seq) counts.
_REPEATED = (
    select(_S.account_id, _S.event_id, func.min(_S.seq).label("first"))
    .group_by(_S.account_id, _S.event_id)
    .having(func.count() > 1)
    .subquery("repeated")
)
_DROP_REPEATS = delete(_STAGE).where(
    _S.seq.in_(
        select(_STAGE.c.seq)
        .join(
            _REPEATED,
            and_(_S.account_id == _REPEATED.c.account_id, _S.event_id == _REPEATED.c.event_id),
        )
        .where(_S.seq > _REPEATED.c.first)
    )
)
_COUNT = select(func.count()).select_from(_STAGE)
# A fixed statement, written out: ANALYZE has no SQLAlchemy construct.
_ANALYZE_STAGE = text("ANALYZE meterql_import_stage")
# Events stored before (their keys are) are duplicates and change nothing.
_K = _KEYS.c
_STORED = exists().where(_K.account_id == _S.account_id, _K.event_id == _S.event_id)
_DROP_STORED = delete(_STAGE).where(_STORED)
# The unknown instances of events not stored (a duplicate registers nothing),
# then the events, in key order.
_I = _INSTANCES.c
_REGISTER_INSTANCES = (
    select(_S.account_id, _S.instance_id, literal("").label("hostname"),
           literal("unknown").label("status"))
    .where(
        ~exists().where(_I.account_id == _S.account_id, _I.instance_id == _S.instance_id),
        ~_STORED,
    )
    .distinct()
    .order_by(_S.account_id, _S.instance_id)
)
_NEW_KEYS = select(_S.account_id, _S.event_id).where(true()).order_by(_S.account_id, _S.event_id)
_NEW_EVENTS = select(*(_S[name] for name in _EVENT_COLUMNS)).order_by(
    _S.account_id, _S.occurred_at, _S.event_id
)

__all__ = ["StagedEvents"]

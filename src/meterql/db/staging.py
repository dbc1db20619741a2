"""Writing events through a staging table: in as fast as the store takes rows.

``meterql load`` streams the file's events into a temporary *stage* table,
by PostgreSQL's ``COPY`` (asyncpg's ``copy_records_to_table``) or SQLite's
``executemany``, with every key the rollups need computed once in Python
(UTC day, hour, quarter hour, cost); on PostgreSQL each batch is sent
while the next is parsed. Then, still in the import's one transaction, a
few set-based statements finish it:

1. later copies of an event the file repeats leave the stage (the first counts);
2. the instances that new events name are registered;
3. their keys are claimed in key order, whatever was stored before leaves
   the stage, and the rest are inserted;
4. end users move forward, each once with its latest instant (an import's
   in chunks, a live batch's where its stage holds them);
5. one ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE`` per
   rollup adds the stage's sums: each rollup row is written once per import,
   not once per batch, so a load leaves no trail of dead row versions. (On
   SQLite an import sums the stage once per hour, instance and model, and
   each coarser rollup sums those sums.)
6. two more move each instance's and model's latest day forward.

On PostgreSQL a live batch (:func:`write_batches`: the batches of an account
that waited for each other, ``db/groups.py``) takes the same way through a
stage its connection keeps, steps 2 to 6: its events are distinct already,
and Python summing each rollup and sending the sums cost more than the
database grouping them.

On PostgreSQL, claiming the keys and dropping the events whose key was not
claimed are one statement (the keys' ``INSERT ... RETURNING``, in a
``WITH``), so an event a live gateway stores at the same moment is counted
once, by whoever wrote it. On SQLite the import is the one writer: the
events already stored leave the stage first, then the rest are claimed.

Rows are written in key order everywhere, table after table in one order,
so an import and live gateways lock shared rows in the same order and cannot
deadlock. The rollups come last (then the latest days, a few rows per
account): every batch of an account adds to its day, its quarter hours and
most of its hours, so a batch holding them makes the account's next batch
wait until it commits, and the less work comes after them, the shorter that
wait (``docs/decisions.md``, "Writes").
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache, cached_property
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
    bindparam,
    case,
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
from sqlalchemy.schema import CreateTable

from meterql.db import partitions, rollups
from meterql.db.bulk import pages
from meterql.db.tables import EndUser, EventKey, Instance, ModelPrice, UsageEvent
from meterql.db.types import UTCDateTime, sqlite_instant
from meterql.money import NANOS_PER_USD, charged_nanos
from meterql.records import EventRecord, UsageEventRecord
from meterql.windows import epoch_hour_and_quarter

_METADATA = MetaData()


def _stage_table(name: str, on_commit: str) -> Table:
    """A stage: events with every key the rollups need, computed once in Python."""
    return Table(
        name,
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
        postgresql_on_commit=on_commit,
    )


# An import's tables are created in its transaction: PostgreSQL drops them
# at commit; SQLite keeps temporary tables for the connection's life, so
# they are dropped by hand before the commit (a rollback undoes their
# creation).
_STAGE = _stage_table("meterql_import_stage", "DROP")
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


def _sums_table(name: str, *keys: tuple[str, Any]) -> Table:
    """An import's sums at one grain: ``account_id``, ``keys``, then the rollups' measures."""
    return Table(
        name,
        _METADATA,
        Column("account_id", String, nullable=False),
        *(Column(key, kind, nullable=False) for key, kind in keys),
        *(Column(measure, BigInteger, nullable=False) for measure in rollups.MEASURES),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


# SQLite, an import's sums per hour, instance and model (the finest grain a
# rollup keeps), and from them per hour and instance, and per hour and
# model: each coarser rollup sums the grain below it instead of the whole
# stage again (the day a row's hour falls in comes along as a key of its own).
_HOUR_SUMS = _sums_table("meterql_import_hour_sums", ("day", Date), ("hour", BigInteger),
                         ("instance_id", String), ("model", String))
_INSTANCE_HOUR_SUMS = _sums_table("meterql_import_instance_hour_sums", ("day", Date),
                                  ("hour", BigInteger), ("instance_id", String))
_MODEL_HOUR_SUMS = _sums_table("meterql_import_model_hour_sums", ("day", Date),
                               ("hour", BigInteger), ("model", String))
_SUMS = (_HOUR_SUMS, _INSTANCE_HOUR_SUMS, _MODEL_HOUR_SUMS)
# A live batch's stage (PostgreSQL): made once per connection, when the
# pool opens it (``db/engine.py``), and emptied by every commit. Creating a
# table per batch would cost a millisecond and a trail of catalogue rows.
BATCH_STAGE = _stage_table("meterql_batch_stage", "DELETE ROWS")
CREATE_BATCH_STAGE = str(
    CreateTable(BATCH_STAGE).compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
)
_COLUMNS = tuple(column.name for column in _STAGE.columns)
_EVENTS: Table = UsageEvent.__table__  # type: ignore[assignment]
_KEYS: Table = EventKey.__table__  # type: ignore[assignment]
_INSTANCES: Table = Instance.__table__  # type: ignore[assignment]
_USERS: Table = EndUser.__table__  # type: ignore[assignment]
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
# An import's finest rollup (an hour of an instance and a model) has nearly a
# row per event: 801,728 for 1M events. PostgreSQL groups them by hashing (it
# expects a tenth as many), which took 3.5 s to sum them and 7.0 s with the
# upsert; sorting the stage and summing runs of equal keys took 1.5 s and 3.8
# s, and leaves the rows in the key order the upsert wants. That statement
# alone: the other groupings are a few thousand rows, which hashing does best
# (sorting the stage for the instances' days took 2.3 s, not 0.35).
_GROUP_BY_SORTING = "enable_hashagg"


def stage_rows(
    events: Sequence[UsageEventRecord],
    prices: Mapping[str, tuple[int, int]],
    *,
    seq: int = 0,
    account_id: str | None = None,
    sqlite_text: bool = False,
) -> tuple[list[tuple[Any, ...]], set[tuple[int, int]]]:
    """The stage's rows for ``events``, and the ``(year, month)`` of each.

    Events belong to ``account_id`` or, without it, each to its own (an
    import file's :class:`EventRecord`). The price at this moment is kept
    with each event, so later price changes never rewrite history.
    """
    rows: list[tuple[Any, ...]] = []
    # (year, month) of every event: a tuple costs a tenth of
    # ``partitions.month_of`` per event, and the months are few.
    months: set[tuple[int, int]] = set()
    for e in events:
        cost = charged_nanos(e.cost_usd, e.tokens_in, e.tokens_out, prices.get(e.model))
        at = e.timestamp if e.timestamp.tzinfo is UTC else e.timestamp.astimezone(UTC)
        months.add((at.year, at.month))
        day: date | str = at.date()
        stored: datetime | str = at
        if sqlite_text:
            # The stage's rows go to the driver as they are: SQLite's
            # stored forms, as the columns' types would write them.
            stored = sqlite_instant(at)
            day = stored[:10]
        hour, quarter = epoch_hour_and_quarter(at)
        rows.append((
            seq, account_id or e.account_id, e.event_id, e.instance_id, e.model, stored, day,  # type: ignore[attr-defined]
            hour, quarter, e.tokens_in, e.tokens_out,
            e.end_user_id, e.conversation_id, cost or 0, cost is None,
        ))
        seq += 1
    return rows, months


async def read_prices(
    session: AsyncSession, models: Iterable[str] | None = None
) -> dict[str, tuple[int, int]]:
    """Each model's ``(input, output)`` nano-USD per million tokens (all, or ``models``)."""
    query = select(ModelPrice.model, ModelPrice.input_nanos_per_mtok,
                   ModelPrice.output_nanos_per_mtok)
    if models is not None:
        query = query.where(ModelPrice.model.in_(sorted(set(models))))
    return {model: (per_input, per_output)
            for model, per_input, per_output in await session.execute(query)}


def _month_starts(months: Iterable[tuple[int, int]]) -> list[datetime]:
    return [datetime(year, month, 1, tzinfo=UTC) for year, month in sorted(months)]


async def write_batches(
    session: AsyncSession, batches: Sequence[Sequence[UsageEventRecord]], account_id: str | None
) -> list[tuple[int, int]]:
    """PostgreSQL: write live batches through the connection's stage, as one.

    Returns ``(accepted, unpriced)`` per batch. No key is in two of the
    batches, nor twice in one (the caller keeps the first of each). The same
    statements as an import's finish them, in the same order, so batches
    and an import lock shared rows alike. Python computes each event's keys
    and cost once; the sums per rollup row are the database's, one grouped
    statement each, so a group of batches (``db/groups.py``) writes each
    rollup row it shares once; and the events cross the wire once, by
    ``COPY``, each batch's after the one before it, which tells them apart.
    """
    statements = _statements(BATCH_STAGE, True)
    events = [event for batch in batches for event in batch]
    prices = await read_prices(session, (e.model for e in events))
    rows, months = stage_rows(events, prices, account_id=account_id)
    # The months these events fall in exist before anything is locked.
    await session.execute(partitions.ENSURE, {"months": _month_starts(months)})
    await _copy(session, BATCH_STAGE, rows)
    await session.execute(statements.register_instances)
    await session.execute(statements.keep_written)
    # Where each batch after the first starts in the stage.
    starts = list(itertools.accumulate(len(batch) for batch in batches[:-1]))
    counted = {n: (accepted, unpriced) for n, accepted, unpriced in await session.execute(
        statements.counts_by_batch, {"starts": starts})}
    if counted:
        await session.execute(statements.insert_events)
        await _see_end_users(session, statements)
        for statement in statements.summing:
            await session.execute(statement)
    return [counted.get(n, (0, 0)) for n in range(len(batches))]


async def _see_end_users(session: AsyncSession, statements: _Statements) -> None:
    """PostgreSQL, a live batch: its end users' last-seen instants, from its stage.

    The stage's new events hold each user's latest instant: the users are
    claimed (:attr:`_Statements.claim_users`), then the others locked and
    moved (:attr:`_Statements.move_earlier_users`) where they are, and only
    the moves come back to be counted (``rollups.see_moves``). Reading the
    users out and sending them back as arrays, three times, took a gateway a
    tenth of its time.

    Whoever inserts a new end user counts it; another gateway adding the same
    one meanwhile makes the claim wait for it to commit, and the user is then
    one of the others. Of those, only the users whose stored instant is
    earlier than the batch's are locked and moved: most end users of a busy
    account were seen later already, and locking each one every batch (a
    write per row) was most of a batch's time.
    """
    claimed: list[rollups.Move] = [
        (account, None, seen) for account, seen in await session.execute(statements.claim_users)
    ]
    moved: list[rollups.Move] = [
        (account, previous, seen)
        for account, previous, seen in await session.execute(statements.move_earlier_users)
    ]
    await rollups.see_moves(session, claimed + moved)


async def _copy(session: AsyncSession, stage: Table, rows: list[tuple[Any, ...]]) -> None:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(stage.name, records=rows, columns=_COLUMNS)


class StagedEvents:
    """One import's stage: :meth:`open`, :meth:`add` batches, then :meth:`finish` once."""

    def __init__(self, session: AsyncSession, engine: AsyncEngine) -> None:
        self.session = session
        self.engine = engine  # for what must not wait for the import's commit
        self.postgresql = session.get_bind().dialect.name == "postgresql"
        self.statements = _statements(_STAGE, self.postgresql)
        self.prices: dict[str, tuple[int, int]] = {}
        self.staged = 0  # events staged so far (the next one's seq)
        self.accepted = 0  # events written
        self.unpriced = 0  # events written without a price
        self.unpriced_models: list[str] = []  # their models
        self._months: set[tuple[int, int]] = set()
        self._writing: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Create the stage and read the prices (the file's models are already applied)."""
        connection = await self.session.connection()
        tables = [_STAGE, _SEEN] if self.postgresql else [_STAGE, _SEEN, *_SUMS]
        await connection.run_sync(_METADATA.create_all, tables=tables)
        self.prices = await read_prices(self.session)

    async def add(self, events: Sequence[EventRecord]) -> None:
        """Stage ``events``: on PostgreSQL they are sent while the caller parses the next batch.

        At most one batch is in flight: this first waits for the previous
        one. On SQLite the batch is written before this returns. The driver's
        thread needs the interpreter's lock for every row it binds, and the
        parser in this thread holds it for up to a switch interval at a
        time, so the batch crawled while the next was parsed: the overlap
        bought nothing and handing the lock back and forth cost the write
        pass of a 1M-event import 12.6 s instead of 11.0 s. PostgreSQL's
        COPY runs in the server's process, beside the parser.
        """
        rows, months = stage_rows(
            events, self.prices, seq=self.staged, sqlite_text=not self.postgresql
        )
        self.staged += len(rows)
        self._months |= months
        await self.flush()
        if self.postgresql:
            self._writing = asyncio.ensure_future(self._stage(rows))
        else:
            await self._stage(rows)

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

    async def _stage(self, rows: list[tuple[Any, ...]]) -> None:
        if self.postgresql:
            await _copy(self.session, _STAGE, rows)
        else:
            connection = await self.session.connection()
            await connection.exec_driver_sql(_SQLITE_STAGE_INSERT, rows)

    async def _write(self) -> None:
        """Steps 1 to 3: the new events, and their end users into ``_SEEN``."""
        session, statements = self.session, self.statements
        if self.postgresql:
            for name, value in _POSTGRESQL_SETTINGS.items():
                await session.execute(select(func.set_config(name, value, True)))
            await session.execute(_ANALYZE_STAGE)  # a temporary table has no statistics
        await session.execute(statements.drop_repeats)
        if not self.postgresql:
            await session.execute(statements.drop_stored)
        await session.execute(statements.register_instances)
        if self.postgresql:
            await self._claim()
        else:
            await session.execute(statements.insert_keys)
        self.accepted, self.unpriced = (await session.execute(statements.counts)).one()
        if not self.accepted:
            return
        if self.unpriced:
            self.unpriced_models = list(await session.scalars(statements.unpriced_models))
        if self.postgresql:
            await self._make_months(_month_starts(self._months))
        await session.execute(statements.insert_events)
        await session.execute(statements.keep_seen)

    async def _claim(self) -> None:
        """PostgreSQL: claim the stage's keys; the events whose key was not ours leave it.

        An import's keys are usually all new: then nothing leaves the stage,
        and matching a million claimed keys against the stage's to find so
        (two sorts and a merge) is skipped: 1M events loaded in 30.0-31.1 s
        before, 28.5 s this way. The keys are claimed under a savepoint and
        counted; if any was not ours, the savepoint is rolled back and they
        are claimed again by :attr:`_Statements.keep_written`, which finds
        which.
        """
        session, statements = self.session, self.statements
        savepoint = await session.begin_nested()
        claimed, staged = (await session.execute(statements.claim_counted)).one()
        if claimed == staged:
            await savepoint.commit()
            return
        await savepoint.rollback()
        await session.execute(statements.keep_written)

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
        if self.accepted:
            for statement in self.statements.summing:
                if self.postgresql and statement is self.statements.finest:
                    await self._sorting(statement)
                else:
                    await session.execute(statement)
        if not self.postgresql:
            connection = await session.connection()
            await connection.run_sync(_METADATA.drop_all, tables=[_STAGE, _SEEN, *_SUMS])
        return self.accepted, self.unpriced

    async def _sorting(self, statement: Any) -> None:
        """PostgreSQL: run ``statement`` grouping by sorting, not hashing (``_GROUP_BY_SORTING``).

        Set for the transaction (``SET LOCAL``), then put back as it was, so
        the statements after it plan as they would have.
        """
        session = self.session
        before = await session.scalar(select(func.current_setting(_GROUP_BY_SORTING)))
        await session.execute(select(func.set_config(_GROUP_BY_SORTING, "off", True)))
        await session.execute(statement)
        await session.execute(select(func.set_config(_GROUP_BY_SORTING, before, True)))

    async def _make_months(self, months: Sequence[datetime]) -> None:
        """The months the events fall in, made in a transaction of their own.

        Made inside the import's, a new month would keep every other writer
        that needs one waiting (for the lock that lets one creator at a time)
        until the import ends. An import that fails leaves its months empty.
        """
        async with self.engine.begin() as connection:
            await connection.execute(partitions.ENSURE, {"months": list(months)})


class _Statements:
    """The set-based statements that finish a stage, for one dialect."""

    def __init__(self, stage: Table, postgresql: bool) -> None:
        self.stage = stage
        self.postgresql = postgresql
        s = self.s = stage.c
        # Events stored before (their keys are) are duplicates and change nothing.
        self.stored = exists().where(_K.account_id == s.account_id, _K.event_id == s.event_id)

    def _insert(self, table: Table) -> Any:
        return postgresql.insert(table) if self.postgresql else sqlite.insert(table)

    def _insert_from(self, table: Table, rows: Any, *, on_conflict: tuple[str, ...]) -> Any:
        return self._insert(table).from_select(
            list(rows.selected_columns.keys()), rows
        ).on_conflict_do_nothing(index_elements=list(on_conflict))

    @cached_property
    def drop_repeats(self) -> Any:
        """Later copies of an event the file repeats: the first one (lowest seq) counts."""
        s = self.s
        repeated = (
            select(s.account_id, s.event_id, func.min(s.seq).label("first"))
            .group_by(s.account_id, s.event_id)
            .having(func.count() > 1)
            .subquery("repeated")
        )
        return delete(self.stage).where(
            s.seq.in_(
                select(s.seq)
                .join(repeated, and_(s.account_id == repeated.c.account_id,
                                     s.event_id == repeated.c.event_id))
                .where(s.seq > repeated.c.first)
            )
        )

    @cached_property
    def drop_stored(self) -> Any:
        return delete(self.stage).where(self.stored)

    @cached_property
    def register_instances(self) -> Any:
        """The unknown instances of events not stored (a duplicate registers nothing)."""
        s = self.s
        rows = (
            select(s.account_id, s.instance_id, literal("").label("hostname"),
                   literal("unknown").label("status"))
            .where(
                ~exists().where(_I.account_id == s.account_id, _I.instance_id == s.instance_id),
                ~self.stored,
            )
            .distinct()
            .order_by(s.account_id, s.instance_id)
        )
        return self._insert_from(_INSTANCES, rows, on_conflict=("account_id", "instance_id"))

    @cached_property
    def insert_keys(self) -> Any:
        s = self.s
        rows = select(s.account_id, s.event_id).where(true()).order_by(s.account_id, s.event_id)
        return self._insert_from(_KEYS, rows, on_conflict=("account_id", "event_id"))

    @cached_property
    def keep_written(self) -> Any:
        """PostgreSQL: claim the stage's keys; the events whose key was not ours leave."""
        s = self.s
        written = self.insert_keys.returning(_K.account_id, _K.event_id).cte("written")
        return delete(self.stage).where(
            ~exists().where(written.c.account_id == s.account_id,
                            written.c.event_id == s.event_id)
        ).add_cte(written)

    @cached_property
    def claim_counted(self) -> Any:
        """PostgreSQL: claim the stage's keys; how many were claimed, and how many staged."""
        written = self.insert_keys.returning(_K.event_id).cte("written")
        return select(
            select(func.count()).select_from(written).scalar_subquery(),
            select(func.count()).select_from(self.stage).scalar_subquery(),
        )

    @cached_property
    def counts(self) -> Any:
        """The stage's events, and those of them without a price."""
        return select(*_counted(self.s)).select_from(self.stage)

    @cached_property
    def counts_by_batch(self) -> Any:
        """PostgreSQL, live batches: :attr:`counts` per batch, by where each starts.

        ``starts`` holds the ``seq`` each batch after the first starts at: a
        row's batch is how many of them it has reached (``width_bucket``).
        """
        s = self.s
        batch = func.width_bucket(
            s.seq, bindparam("starts", type_=postgresql.ARRAY(BigInteger))
        )
        return select(batch, *_counted(s)).group_by(batch)

    @cached_property
    def unpriced_models(self) -> Any:
        s = self.s
        return select(s.model).where(s.unpriced).distinct().order_by(s.model)

    @cached_property
    def insert_events(self) -> Any:
        s = self.s
        rows = select(*(s[name] for name in _EVENT_COLUMNS)).order_by(
            s.account_id, s.occurred_at, s.event_id
        )
        return self._insert(_EVENTS).from_select(list(_EVENT_COLUMNS), rows)

    @cached_property
    def rollups(self) -> list[Any]:
        s, statements = self.s, []
        for statement in rollups.ACCUMULATING:
            keys = [s[name] for name in statement.columns[1 : -len(rollups.MEASURES)]]
            sums = (
                select(s.account_id, *keys, *_event_sums(s))
                .where(true())  # SQLite: an upsert's SELECT needs a WHERE to parse
                .group_by(s.account_id, *keys)
                .order_by(s.account_id, *keys)  # rows locked in key order
            )
            statements.append(
                statement.finish(self._insert(statement.table))
                .from_select(list(statement.columns), sums)
            )
        return statements

    @cached_property
    def finest(self) -> Any:
        """Of :attr:`rollups`, the one with the most keys: the most rows to group."""
        pairs = zip(rollups.ACCUMULATING, self.rollups, strict=True)
        return max(pairs, key=lambda pair: len(pair[0].columns))[1]

    @cached_property
    def sqlite_rollups(self) -> list[Any]:
        """SQLite, an import: its sums at the finest grain first, then each rollup.

        The same rollups in the same order as :attr:`rollups`, rows in key
        order, but only the finest sums and the quarter hours read the
        whole stage; every other rollup sums the grain below it. At 1M
        events, grouping the stage by each rollup's keys took 7.1 s and
        these groupings take 3.6 s; the import went from 24.8-25.7 s to
        22.9-23.9 s. Not on PostgreSQL: there the grouping is not what the
        rollups cost (the upserts' writes are), and the sums' 800,000 rows
        overflow a session's temporary buffers (8 MB by default) to disk:
        29.5-30.0 s before, 30.4-30.5 s this way.
        """
        s = self.s
        by_hour = [s.account_id, s.day, s.hour, s.instance_id, s.model]
        statements: list[Any] = [
            self._insert(_HOUR_SUMS).from_select(
                [c.name for c in _HOUR_SUMS.columns],
                select(*by_hour, *_event_sums(s)).where(true()).group_by(*by_hour),
            ),
            *(self._insert(table).from_select(
                [c.name for c in table.columns],
                _summed(_HOUR_SUMS, _keys_of(table), ordered=False))
              for table in (_INSTANCE_HOUR_SUMS, _MODEL_HOUR_SUMS)),
        ]
        sources = {
            "usage_days": _INSTANCE_HOUR_SUMS, "usage_instance_days": _INSTANCE_HOUR_SUMS,
            "usage_instance_hours": _INSTANCE_HOUR_SUMS, "usage_model_days": _MODEL_HOUR_SUMS,
            "usage_instance_model_hours": _HOUR_SUMS, "usage_model_hours": _MODEL_HOUR_SUMS,
        }
        for statement, per_event in zip(rollups.ACCUMULATING, self.rollups, strict=True):
            source = sources.get(statement.table.name)
            if source is None:  # the quarter hours: from the stage, as a batch's
                statements.append(per_event)
                continue
            keys = statement.columns[: -len(rollups.MEASURES)]
            statements.append(statement.finish(self._insert(statement.table)).from_select(
                list(statement.columns), _summed(source, keys)))
        return statements

    @cached_property
    def summing(self) -> list[Any]:
        """What adds the stage's new events to the rollups, then to the latest days, in order."""
        if self.postgresql:
            return [*self.rollups, *self.last_days]
        return [*self.sqlite_rollups, *self.sqlite_last_days]

    @cached_property
    def last_days(self) -> list[Any]:
        """Each instance's and model's latest day in the stage, stored if later."""
        return self._last_days({"instance_id": self.stage, "model": self.stage})

    @cached_property
    def sqlite_last_days(self) -> list[Any]:
        """SQLite, an import: :attr:`last_days` from its hourly sums, not the whole stage."""
        return self._last_days({"instance_id": _INSTANCE_HOUR_SUMS, "model": _MODEL_HOUR_SUMS})

    def _last_days(self, sources: Mapping[str, Table]) -> list[Any]:
        statements = []
        for statement in rollups.LAST_DAYS:
            key = statement.columns[1]
            c = sources[key].c
            latest = (
                select(c.account_id, c[key], func.max(c.day))
                .where(true())  # SQLite: an upsert's SELECT needs a WHERE to parse
                .group_by(c.account_id, c[key])
                .order_by(c.account_id, c[key])  # rows locked in key order
            )
            statements.append(statement.finish(self._insert(statement.table))
                              .from_select(list(statement.columns), latest))
        return statements

    @cached_property
    def latest_seen(self) -> Any:
        """Each end user of the stage with its latest instant."""
        s = self.s
        return (
            select(s.account_id, s.end_user_id, func.max(s.occurred_at).label("occurred_at"))
            .where(s.end_user_id.is_not(None), s.end_user_id != "")
            .group_by(s.account_id, s.end_user_id)
        )

    def _wanted_users(self, *, ordered: bool) -> Any:
        """:attr:`latest_seen` as a subquery, in key order if ``ordered``."""
        s = self.s
        rows = self.latest_seen
        if ordered:
            rows = rows.order_by(s.account_id, s.end_user_id)
        return rows.subquery("wanted")

    @cached_property
    def claim_users(self) -> Any:
        """PostgreSQL, a live batch: insert the stage's end users not stored yet.

        Returns each one it inserted (account, instant). Users already stored
        are left out before the insert, so a claim never waits for a batch
        moving one of them, only for one inserting the same user.
        """
        wanted = self._wanted_users(ordered=False)  # ordered below, once filtered
        w = wanted.c
        # Asked as a value, not as NOT EXISTS: PostgreSQL turns NOT EXISTS
        # into a join, and hashed every end user of the account (20,000
        # rows: 10.8 ms against 7.6 for a batch of 1,000 users); a value is
        # a probe of the key per user.
        stored = (
            select(literal(True))
            .where(_U.account_id == w.account_id, _U.end_user_id == w.end_user_id)
            .scalar_subquery()
        )
        rows = (
            select(w.account_id, w.end_user_id, w.occurred_at)
            .where(stored.is_(None))
            .order_by(w.account_id, w.end_user_id)  # rows are written in key order
        )
        return (
            postgresql.insert(_USERS)
            .from_select(["account_id", "end_user_id", "last_seen_at"], rows)
            .on_conflict_do_nothing(index_elements=["account_id", "end_user_id"])
            .returning(_U.account_id, _U.last_seen_at)
        )

    @cached_property
    def move_earlier_users(self) -> Any:
        """PostgreSQL, a live batch: move the stored end users seen earlier than the stage says.

        Returns each one it moved (account, stored instant before, the
        stage's instant). The users are probed and locked one by one, in key
        order: a locking subquery is never merged into its outer query, so
        PostgreSQL runs it once per user, an index probe, in the order the
        users come. A row another batch moves past ours while this one waits
        for it no longer qualifies once the wait is over, and is left alone
        (PostgreSQL checks the condition again on the row's newest version).
        The locked rows are then written through the key's index (``ON
        CONFLICT``): as an ``UPDATE ... FROM`` joined to them, PostgreSQL
        hashed every end user of the account instead.
        """
        wanted = self._wanted_users(ordered=True)
        w = wanted.c
        stored = (
            select(_U.last_seen_at)
            .where(_U.account_id == w.account_id, _U.end_user_id == w.end_user_id,
                   _U.last_seen_at < w.occurred_at)
            .with_for_update()
            .lateral("stored")
        )
        earlier = (
            select(w.account_id, w.end_user_id, stored.c.last_seen_at.label("previous"),
                   w.occurred_at)
            .select_from(wanted.join(stored, true()))
            .cte("earlier")
        )
        e = earlier.c
        move = postgresql.insert(_USERS).from_select(
            ["account_id", "end_user_id", "last_seen_at"],
            select(e.account_id, e.end_user_id, e.occurred_at),
        )
        move = move.on_conflict_do_update(
            index_elements=["account_id", "end_user_id"],
            set_={"last_seen_at": move.excluded.last_seen_at},
        )
        return select(e.account_id, e.previous, e.occurred_at).add_cte(move.cte("moved"))

    @cached_property
    def keep_seen(self) -> Any:
        """The import's end users with their latest instants, into its ``_SEEN``."""
        stmt = self._insert(_SEEN).from_select(
            ["account_id", "end_user_id", "occurred_at"], self.latest_seen
        )
        return stmt.on_conflict_do_update(
            index_elements=["account_id", "end_user_id"],
            set_={"occurred_at": stmt.excluded.occurred_at},
            where=stmt.excluded.occurred_at > _SEEN.c.occurred_at,
        )


def _counted(s: Any) -> tuple[Any, Any]:
    """Stage rows, and those of them without a price."""
    return func.count(), func.coalesce(func.sum(case((s.unpriced, 1), else_=0)), 0)


def _event_sums(s: Any) -> list[Any]:
    """The rollups' measures over stage rows: events, tokens, and cost in its two parts."""
    return [func.count(), func.sum(s.tokens_in), func.sum(s.tokens_out),
            func.sum(s.cost_nanos // _NANOS), func.sum(s.cost_nanos % _NANOS)]


def _keys_of(table: Table) -> list[str]:
    """A sums table's keys: its columns but the measures, in order."""
    return [c.name for c in table.columns if c.name not in rollups.MEASURES]


def _summed(source: Table, keys: Sequence[str], *, ordered: bool = True) -> Any:
    """``source``'s sums per ``keys``, in key order when ``ordered`` (for locking).

    Grouped by the source's own grain (the day follows from the hour), its
    rows are already the sums: they are read as they are.
    """
    c = source.c
    columns = [c[key] for key in keys]
    measures = [c[m] for m in rollups.MEASURES]
    if set(_keys_of(source)) - {"day"} <= set(keys):
        rows = select(*columns, *measures)
    else:
        rows = select(*columns, *(func.sum(m) for m in measures)).group_by(*columns)
    rows = rows.where(true())  # SQLite: an upsert's SELECT needs a WHERE to parse
    return rows.order_by(*columns) if ordered else rows


@cache
def _statements(stage: Table, postgresql: bool) -> _Statements:
    return _Statements(stage, postgresql)


_SQLITE_STAGE_INSERT = str(
    sqlite.insert(_STAGE).compile(dialect=sqlite.dialect(), column_keys=list(_COLUMNS))
)
# A fixed statement, written out: ANALYZE has no SQLAlchemy construct.
_ANALYZE_STAGE = text("ANALYZE meterql_import_stage")
_K = _KEYS.c
_I = _INSTANCES.c
_U = _USERS.c

__all__ = ["BATCH_STAGE", "CREATE_BATCH_STAGE", "StagedEvents", "stage_rows", "write_batches"]

"""Raw events by UTC month: each write makes the months it needs; retention lets them go.

The table is partitioned by UTC month of ``occurred_at`` (migration 0007), so
that raw events past a retention horizon leave as whole tables, not as
millions of deleted rows. A month's partition is made by the first write
that needs it, at the start of that write's transaction, by the database
function ``meterql_event_partitions`` (one creator at a time, under the lock
that attaching a month takes, which lets reads and other writes go on). A write
whose months all exist pays one cheap statement. SQLite keeps one table.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import DateTime, bindparam, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from meterql.db.tables import Account, UsageEvent


def month_of(instant: datetime) -> datetime:
    """The first instant of the UTC month of an aware UTC instant."""
    return instant.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


_MONTHS = bindparam("months", type_=postgresql.ARRAY(DateTime(timezone=True)))
# Takes the months as ``months``: any instants, each standing for its UTC month.
ENSURE = select(func.meterql_event_partitions(_MONTHS))


async def ensure_months(session: AsyncSession, instants: Iterable[datetime]) -> None:
    """Make the monthly partitions these (aware, UTC) instants fall in, if missing."""
    if session.get_bind().dialect.name != "postgresql":
        return
    months = sorted({month_of(instant) for instant in instants})
    if months:
        await session.execute(ENSURE, {"months": months})


_E = UsageEvent.__table__.c
RETENTION_CHUNK = 10_000  # SQLite: events deleted per transaction


async def drop_months_before(engine: AsyncEngine, before: datetime) -> tuple[int, int]:
    """Let go of the raw events before ``before`` (a UTC month's start).

    ``(months, events)``: PostgreSQL drops the months' partitions, each at
    once; SQLite deletes the events in chunks of :data:`RETENTION_CHUNK`, a
    transaction each, so that live writers get their turn between two.
    """
    if engine.dialect.name == "postgresql":
        async with engine.begin() as connection:
            dropped = await connection.scalar(
                select(func.meterql_drop_event_partitions(before))
            )
        return int(dropped or 0), 0
    key = tuple_(_E.account_id, _E.occurred_at, _E.event_id)
    deleted = 0
    async with engine.connect() as connection:
        accounts = (await connection.scalars(select(Account.account_id))).all()
    for account in accounts:
        # One account at a time: its old events are one range of the key.
        chunk = (
            select(_E.account_id, _E.occurred_at, _E.event_id)
            .where(_E.account_id == account, _E.occurred_at < before)
            .limit(RETENTION_CHUNK)
        )
        while True:
            async with engine.begin() as connection:
                result = await connection.execute(delete(UsageEvent).where(key.in_(chunk)))
            deleted += result.rowcount
            if result.rowcount < RETENTION_CHUNK:
                break
    return 0, deleted

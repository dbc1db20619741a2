"""How long raw events are kept: the horizon, and the months it lets go.

With ``METERQL_RAW_EVENT_RETENTION_DAYS`` set, raw events older than that many
days leave the store by whole UTC months (``meterql retention apply``): on
PostgreSQL a month is a partition, dropped at once; SQLite deletes its rows
in chunks. The rollups keep every sum and the event keys stay, so every
route and every ``usage`` series built from whole quarter hours answers as
before (the months of billing periods still running are kept), and a
re-sent event is still known. An event older than the horizon
is refused (live ingest: 422; import: the file), since it could never be
kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from meterql.db.accounts import earliest_live_period_start
from meterql.db.engine import Database
from meterql.db.partitions import drop_months_before, month_of


def horizon(days: int | None, now: datetime) -> datetime | None:
    """The oldest instant an event may have, or ``None`` when events are kept forever."""
    return None if days is None else now - timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Applied:
    before: datetime  # raw events before this instant (a UTC month's start) are gone
    months: int  # PostgreSQL: monthly partitions dropped
    events: int  # SQLite: events deleted (PostgreSQL does not count a dropped table's rows)


async def apply(db: Database, days: int, now: datetime) -> Applied:
    """Let go of the whole UTC months of raw events that end at or before the horizon.

    Never the months of a billing period still running: its answer counts
    the period's end users, and its first and last minutes, from its raw
    events (a yearly plan's period can start before any horizon).
    """
    edge = horizon(days, now)
    assert edge is not None
    period = await earliest_live_period_start(db.engine)
    before = month_of(edge if period is None else min(edge, period.astimezone(UTC)))
    months, events = await drop_months_before(db.engine, before)
    return Applied(before=before, months=months, events=events)

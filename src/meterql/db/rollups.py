"""Rollups: the sums of usage events kept beside them, written with them.

Every event inserted into ``usage_events`` is added, in the same transaction,
to its account's day, its instance's day and hour, and its model's day, and
moves its end user's last-seen instant forward. Duplicates are never added:
the caller passes only the rows its insert actually wrote. Reads then sum a
few hundred rollup rows instead of every event in a window.

Rows are written in key order, table after table, so two batches touching
the same rollup rows lock them in the same order and cannot deadlock on
PostgreSQL; concurrent first writes of one key meet in ``ON CONFLICT``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.db.bulk import BulkInsert
from meterql.db.tables import (
    EndUser,
    UsageDay,
    UsageEvent,
    UsageInstanceDay,
    UsageInstanceHour,
    UsageModelDay,
)
from meterql.money import NANOS_PER_USD
from meterql.windows import epoch_hour

MEASURES = ("requests", "tokens_in", "tokens_out", "cost_usd", "cost_nanos")

Row = Mapping[str, Any]
Sums = list[int]


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _accumulating(table: Table, keys: tuple[str, ...]) -> BulkInsert:
    """Insert a key's sums, or add them to the sums already stored for it."""

    def on_conflict(stmt: Any) -> Any:
        return stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={m: table.c[m] + stmt.excluded[m] for m in MEASURES},
        )

    return BulkInsert(table, (*keys, *MEASURES), on_conflict)


def _rollup(
    model: type[Any], keys: tuple[str, ...], key_of: Callable[[Row], tuple[Hashable, ...]]
) -> tuple[BulkInsert, Callable[[Row], tuple[Hashable, ...]]]:
    return _accumulating(_table(model), ("account_id", *keys)), key_of


# Each rollup: its statement, and how an event row gives its key after the account.
_ROLLUPS = (
    _rollup(UsageDay, ("day",), lambda r: (r["day"],)),
    _rollup(UsageInstanceDay, ("instance_id", "day"), lambda r: (r["instance_id"], r["day"])),
    _rollup(UsageInstanceHour, ("hour", "instance_id"),
            lambda r: (epoch_hour(r["occurred_at"]), r["instance_id"])),
    _rollup(UsageModelDay, ("day", "model"), lambda r: (r["day"], r["model"])),
)


def _add(sums: dict[tuple[Hashable, ...], Sums], key: tuple[Hashable, ...], row: Row) -> None:
    cost_usd, cost_nanos = divmod(row["cost_nanos"], NANOS_PER_USD)
    found = sums.get(key)
    if found is None:
        sums[key] = [1, row["tokens_in"], row["tokens_out"], cost_usd, cost_nanos]
    else:
        found[0] += 1
        found[1] += row["tokens_in"]
        found[2] += row["tokens_out"]
        found[3] += cost_usd
        found[4] += cost_nanos


async def add_events(session: AsyncSession, rows: Sequence[Row]) -> None:
    """Add newly inserted event rows (``usage_events`` column dicts) to every rollup."""
    if not rows:
        return
    for statement, key_of in _ROLLUPS:
        sums: dict[tuple[Hashable, ...], Sums] = {}
        for row in rows:
            _add(sums, (row["account_id"], *key_of(row)), row)
        await statement.run(
            session,
            [
                dict(zip(statement.columns, (*key, *sums[key]), strict=True))
                for key in sorted(sums)
            ],
        )
    await _see_end_users(session, rows)


def _last_seen() -> BulkInsert:
    table = _table(EndUser)

    def on_conflict(stmt: Any) -> Any:
        return stmt.on_conflict_do_update(
            index_elements=["account_id", "end_user_id"],
            set_={"last_seen_at": stmt.excluded.last_seen_at},
            where=stmt.excluded.last_seen_at > table.c.last_seen_at,
        )

    return BulkInsert(table, ("account_id", "end_user_id", "last_seen_at"), on_conflict)


_LAST_SEEN = _last_seen()


async def _see_end_users(session: AsyncSession, rows: Iterable[Row]) -> None:
    latest: dict[tuple[str, str], datetime] = {}
    for row in rows:
        user = row["end_user_id"]
        if not user:  # None and "" both mean "no end user"
            continue
        key = (row["account_id"], user)
        moment = row["occurred_at"]
        if key not in latest or moment > latest[key]:
            latest[key] = moment
    await _LAST_SEEN.run(
        session,
        [
            {"account_id": a, "end_user_id": u, "last_seen_at": latest[(a, u)]}
            for a, u in sorted(latest)
        ],
    )


REBUILD_CHUNK = 5_000


async def rebuild(session: AsyncSession) -> int:
    """Empty the rollups and add every stored event again; returns the events read.

    For operators: after events reached ``usage_events`` without their sums
    (a gateway still running code from before the rollups while the schema
    moved on, say), this makes the rollups exact again. It goes through the
    same ``add_events`` as ingest, in chunks paged by event id, in the
    caller's transaction: readers see the old sums until it commits.
    """
    for model in (UsageDay, UsageInstanceDay, UsageInstanceHour, UsageModelDay, EndUser):
        await session.execute(delete(_table(model)))
    events = _table(UsageEvent).c
    columns = [events[name] for name in _EVENT_FIELDS]
    last_id, count = None, 0
    while True:
        page = select(events.id, *columns).order_by(events.id).limit(REBUILD_CHUNK)
        if last_id is not None:
            page = page.where(events.id > last_id)
        rows = (await session.execute(page)).mappings().all()
        if not rows:
            return count
        await add_events(session, [dict(row) for row in rows])
        last_id, count = rows[-1]["id"], count + len(rows)


# What add_events reads of an event row.
_EVENT_FIELDS = (
    "account_id", "instance_id", "model", "occurred_at", "day", "tokens_in", "tokens_out",
    "cost_nanos", "end_user_id",
)

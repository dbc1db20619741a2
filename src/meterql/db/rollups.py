"""Rollups: the sums of usage events kept beside them, written with them.

Every event inserted into ``usage_events`` is added, in the same transaction,
to its account's day, its instance's day and hour, its model's day, and its
instance and model's hour, and moves its end user's last-seen instant forward
(and that user from one day's and hour's count of last-seen end users to
another's), and moves the latest day of its instance and of its model
forward. Duplicates are never added: the caller passes only the rows its
insert actually wrote. Reads then sum a few hundred rollup rows instead of
every event in a window.

Rows are written in key order, table after table, so two batches touching
the same rollup rows lock them in the same order and cannot deadlock on
PostgreSQL; concurrent first writes of one key meet in ``ON CONFLICT``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    String,
    Table,
    bindparam,
    delete,
    exists,
    func,
    select,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.db.bulk import BulkInsert, by_account, pages
from meterql.db.tables import (
    EndUser,
    EndUsersLastSeenDay,
    EndUsersLastSeenHour,
    InstanceLastDay,
    ModelLastDay,
    UsageDay,
    UsageEvent,
    UsageInstanceDay,
    UsageInstanceHour,
    UsageInstanceModelHour,
    UsageModelDay,
    UsageModelHour,
    UsageQuarterHour,
)
from meterql.money import NANOS_PER_USD
from meterql.windows import epoch_hour, epoch_quarter

MEASURES = ("requests", "tokens_in", "tokens_out", "cost_usd", "cost_nanos")

Row = Mapping[str, Any]
Sums = list[int]
# An end user's move: its account, the instant it was last seen at before
# (None: a new end user), and the instant it is last seen at now.
Move = tuple[str, datetime | None, datetime]


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
    _rollup(UsageInstanceModelHour, ("hour", "instance_id", "model"),
            lambda r: (epoch_hour(r["occurred_at"]), r["instance_id"], r["model"])),
    _rollup(UsageQuarterHour, ("quarter",), lambda r: (epoch_quarter(r["occurred_at"]),)),
    _rollup(UsageModelHour, ("hour", "model"),
            lambda r: (epoch_hour(r["occurred_at"]), r["model"])),
)
# Each rollup's statement: columns ``account_id``, its keys, then MEASURES.
ACCUMULATING = tuple(statement for statement, _ in _ROLLUPS)


def _keeping_the_latest_day(model: type[Any], key: str) -> BulkInsert:
    """Insert a key's latest day with usage, or move the stored one forward."""
    table = _table(model)

    def on_conflict(stmt: Any) -> Any:
        return stmt.on_conflict_do_update(
            index_elements=["account_id", key],
            set_={"day": stmt.excluded.day},
            where=stmt.excluded.day > table.c.day,
        )

    return BulkInsert(table, ("account_id", key, "day"), on_conflict)


# The latest day of each instance and model: written after the rollups, in
# key order, by every writer (``db/staging.py`` too).
LAST_DAYS = (
    _keeping_the_latest_day(InstanceLastDay, "instance_id"),
    _keeping_the_latest_day(ModelLastDay, "model"),
)


def _latest(pairs: Iterable[tuple[tuple[str, str], Any]]) -> dict[tuple[str, str], Any]:
    """The greatest value given for each key."""
    latest: dict[tuple[str, str], Any] = {}
    for key, value in pairs:
        if key not in latest or value > latest[key]:
            latest[key] = value
    return latest


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
    # End users first and the rollups last, as every writer takes them
    # (``db/staging.py``).
    await see_end_users(session, rows)
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
    for statement in LAST_DAYS:
        key = statement.columns[1]
        latest = _latest(((row["account_id"], row[key]), row["day"]) for row in rows)
        await statement.run(
            session,
            [{"account_id": account, key: value, "day": latest[(account, value)]}
             for account, value in sorted(latest)],
        )


def _keeping_the_latest() -> BulkInsert:
    table = _table(EndUser)

    def on_conflict(stmt: Any) -> Any:
        return stmt.on_conflict_do_update(
            index_elements=["account_id", "end_user_id"],
            set_={"last_seen_at": stmt.excluded.last_seen_at},
            where=stmt.excluded.last_seen_at > table.c.last_seen_at,
        )

    return BulkInsert(table, ("account_id", "end_user_id", "last_seen_at"), on_conflict)


_LAST_SEEN = _keeping_the_latest()


def _counting(model: type[Any], bucket: str) -> BulkInsert:
    """Add to (or take from) the number of end users last seen in a bucket."""
    table = _table(model)

    def on_conflict(stmt: Any) -> Any:
        return stmt.on_conflict_do_update(
            index_elements=["account_id", bucket],
            set_={"users": table.c.users + stmt.excluded.users},
        )

    return BulkInsert(table, ("account_id", bucket, "users"), on_conflict)


_SEEN_DAYS = _counting(EndUsersLastSeenDay, "day")
_SEEN_HOURS = _counting(EndUsersLastSeenHour, "hour")
_USERS = _table(EndUser).c


async def see_end_users(session: AsyncSession, rows: Iterable[Row]) -> None:
    """Move each end user's last-seen instant forward, and its day and hour counts with it.

    ``rows`` are events (or anything with their ``account_id``, ``end_user_id``
    and ``occurred_at``).
    """
    await see_latest(session, _latest(
        ((row["account_id"], row["end_user_id"]), row["occurred_at"])
        for row in rows
        if row["end_user_id"]  # None and "" both mean "no end user"
    ))


async def see_latest(session: AsyncSession, latest: Mapping[tuple[str, str], datetime]) -> None:
    """:func:`see_end_users` given each end user's latest instant, keyed ``(account, user)``."""
    if not latest:
        return
    keys = sorted(latest)
    if session.get_bind().dialect.name == "postgresql":
        # Whoever inserts a new end user counts it; another gateway adding
        # the same one meanwhile makes the claim wait for it to commit, and
        # the user is then one of those below. Of the others, only the users
        # whose stored instant is earlier are locked and moved: most end
        # users of a busy account were seen later already, and locking each
        # one every batch (a write per row) was most of a batch's time.
        claimed = await _claim_new(session, keys, latest)
        earlier = await _seen_earlier(session, [k for k in keys if k not in claimed], latest)
        new, written = claimed, claimed
    else:
        # The one writer: every stored instant is read, and nobody else moves it.
        earlier = await _last_seen(session, keys)
        new, written = set(keys) - earlier.keys(), set()
    moves: list[Move] = []
    to_write = []
    for key in keys:
        seen = latest[key]
        previous = None
        if key not in new:
            previous = earlier.get(key)
            if previous is None or seen <= previous:
                continue  # seen again, but not later: nothing moves
        moves.append((key[0], previous, seen))
        if key not in written:
            to_write.append(_user_row(key, latest))
    await _LAST_SEEN.run(session, to_write)
    await see_moves(session, moves)


async def see_moves(session: AsyncSession, moves: Iterable[Move]) -> None:
    """Move each end user from the day's and hour's count of its previous instant to its new one's.

    The last-seen instants themselves are the caller's to write.
    """
    days: Counter[tuple[str, date]] = Counter()
    hours: Counter[tuple[str, int]] = Counter()
    for account, previous, seen in moves:
        if previous is not None:
            days[(account, previous.date())] -= 1
            hours[(account, epoch_hour(previous))] -= 1
        days[(account, seen.date())] += 1
        hours[(account, epoch_hour(seen))] += 1
    await _SEEN_DAYS.run(session, _counts(days, "day"))
    await _SEEN_HOURS.run(session, _counts(hours, "hour"))
    # A bucket its last user left is deleted, so the tables hold what a
    # recount would (the migration's, a rebuild's) and do not grow with churn.
    for model, bucket, changes in (
        (EndUsersLastSeenDay, "day", days),
        (EndUsersLastSeenHour, "hour", hours),
    ):
        emptied: dict[str, list[Any]] = {}
        for (account, value), change in sorted(changes.items()):
            if change < 0:
                emptied.setdefault(account, []).append(value)
        table = _table(model)
        for account, values in emptied.items():
            await session.execute(
                delete(table).where(
                    table.c.account_id == account, table.c[bucket].in_(values), table.c.users == 0
                )
            )


def _counts(changes: Counter[tuple[str, Any]], bucket: str) -> list[Row]:
    return [
        {"account_id": account, bucket: value, "users": change}
        for (account, value), change in sorted(changes.items())
        if change
    ]


def _user_row(key: tuple[str, str], latest: Mapping[tuple[str, str], datetime]) -> Row:
    return {"account_id": key[0], "end_user_id": key[1], "last_seen_at": latest[key]}


async def _last_seen(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], datetime]:
    """SQLite: the stored last-seen instants of these end users."""
    found: dict[tuple[str, str], datetime] = {}
    for account, users in by_account(keys):
        stmt = (
            select(_USERS.end_user_id, _USERS.last_seen_at)
            .where(_USERS.account_id == account, _USERS.end_user_id.in_(users))
        )
        for user, seen in await session.execute(stmt):
            found[(account, user)] = seen
    return found


async def _seen_earlier(
    session: AsyncSession, keys: Sequence[tuple[str, str]],
    latest: Mapping[tuple[str, str], datetime],
) -> dict[tuple[str, str], datetime]:
    """PostgreSQL: the stored instants earlier than ``latest``'s, locked until commit.

    Rows are locked in key order. A row another batch moves past ours while
    this one waits for it no longer qualifies once the wait is over, and is
    left alone (PostgreSQL checks the condition again on the row's newest
    version).
    """
    return {(account, user): seen
            for account, (user, seen) in await _per_account(session, _SEEN_EARLIER, keys, latest)}


async def _claim_new(
    session: AsyncSession, keys: Sequence[tuple[str, str]],
    latest: Mapping[tuple[str, str], datetime],
) -> set[tuple[str, str]]:
    """PostgreSQL: insert the end users not stored yet; the ones this batch inserted.

    Users already stored are left out before the insert, so a claim never
    waits for a batch that is moving one of them; only a user another batch
    is inserting at this moment makes it wait (and then it is not ours).
    """
    return {(account, user)
            for account, (user,) in await _per_account(session, _CLAIM_NEW, keys, latest)}


# PostgreSQL takes a batch's users and their instants as two arrays: one
# statement text whatever their number (an IN list is compiled anew per
# call), and an import's chunk of end users in one round trip.
_ARRAY_CHUNK = 10_000


async def _per_account(
    session: AsyncSession, statement: Any, keys: Sequence[tuple[str, str]],
    latest: Mapping[tuple[str, str], datetime],
) -> list[tuple[str, Any]]:
    """``statement``'s rows for these end users, each with its account.

    It runs once per account (and chunk), on the users and their instants
    (``_wanted``).
    """
    found: list[tuple[str, Any]] = []
    for account, users in by_account(keys, _ARRAY_CHUNK):
        parameters = {"account_id": account, "user_ids": users,
                      "instants": [latest[(account, user)] for user in users]}
        found.extend((account, row) for row in await session.execute(statement, parameters))
    return found


def _wanted() -> Any:
    """The users of one account and their instants, as two arrays."""
    return select(
        func.unnest(bindparam("user_ids", type_=postgresql.ARRAY(String))).label("user_id"),
        func.unnest(
            bindparam("instants", type_=postgresql.ARRAY(_USERS.last_seen_at.type))
        ).label("instant"),
    ).subquery("wanted")


def _claim_new_statement() -> Any:
    wanted = _wanted()
    account = bindparam("account_id", type_=String)
    rows = (
        select(account.label("account_id"), wanted.c.user_id, wanted.c.instant)
        .where(~exists().where(_USERS.account_id == account,
                               _USERS.end_user_id == wanted.c.user_id))
        .order_by(wanted.c.user_id)  # rows are written in key order
    )
    return (
        postgresql.insert(_table(EndUser))
        .from_select(["account_id", "end_user_id", "last_seen_at"], rows)
        .on_conflict_do_nothing(index_elements=["account_id", "end_user_id"])
        .returning(_USERS.end_user_id)
    )


def _seen_earlier_statement() -> Any:
    """Each wanted user, in the arrays' order (key order), looked up and locked by its key.

    A locking subquery is never merged into its outer query: PostgreSQL
    runs it once per wanted user, a probe of the key's index, in the order
    the users are unnested. Joined the plain way, it hashed every end user
    of the account at each batch (20,000 rows: 4.8 ms against 3.0 for 950
    probes).
    """
    wanted = _wanted()
    earlier = (
        select(_USERS.end_user_id, _USERS.last_seen_at)
        .where(_USERS.account_id == bindparam("account_id", type_=String),
               _USERS.end_user_id == wanted.c.user_id,
               _USERS.last_seen_at < wanted.c.instant)
        .with_for_update()
        .lateral("earlier")
    )
    return select(earlier.c.end_user_id, earlier.c.last_seen_at).select_from(
        wanted.join(earlier, true()))


_SEEN_EARLIER = _seen_earlier_statement()
_CLAIM_NEW = _claim_new_statement()


# Every table this module keeps from the events (and `rebuild` recomputes).
DERIVED_TABLES = (
    *(statement.table for statement, _ in _ROLLUPS),
    *(statement.table for statement in LAST_DAYS),
    _table(EndUser),
    _table(EndUsersLastSeenDay),
    _table(EndUsersLastSeenHour),
)
REBUILD_CHUNK = 5_000


async def rebuild(session: AsyncSession) -> int:
    """Empty the rollups and add every stored event again; returns the events read.

    For operators: after events reached ``usage_events`` without their sums
    (a gateway still running code from before the rollups while the schema
    moved on, say), this makes the rollups exact again. It goes through the
    same ``add_events`` as ingest, in chunks paged by the events' key, in the
    caller's transaction: readers see the old sums until it commits.
    """
    for table in DERIVED_TABLES:
        await session.execute(delete(table))
    events = _table(UsageEvent).c
    count = 0
    async for rows in pages(
        session, select(*(events[name] for name in _EVENT_FIELDS)),
        (events.account_id, events.occurred_at, events.event_id), REBUILD_CHUNK,
    ):
        await add_events(session, rows)
        count += len(rows)
    return count


# What add_events reads of an event row.
_EVENT_FIELDS = (
    "account_id", "event_id", "instance_id", "model", "occurred_at", "day", "tokens_in",
    "tokens_out", "cost_nanos", "end_user_id",
)

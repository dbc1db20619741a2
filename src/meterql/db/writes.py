"""Every write: catalogue and account upserts, token changes, usage events.

``record_events`` is the one function that turns usage records into rows; the
import file, the GraphQL mutation and ``POST /v1/usage/events`` all call it,
inside a transaction their caller owns, so a batch is all-or-nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from meterql.db import rollups, staging
from meterql.db.bulk import BulkInsert, by_account
from meterql.db.dialect import insert
from meterql.db.tables import (
    Account,
    ApiToken,
    Budget,
    EventKey,
    Instance,
    ModelPrice,
    Subscription,
    Tier,
    UsageEvent,
    WebhostNode,
)
from meterql.money import charged_nanos, usd_to_nanos
from meterql.records import AccountRecord, ModelRecord, TierRecord, UsageEventRecord

# Rows per INSERT: well under SQLite's 32,766 bound parameters at 12 columns.
EVENT_CHUNK = 1_000


def new_version() -> int:
    """A new data version: random, so that a database restored from a backup cannot
    hand out again a version it gave other data before; never the starting 0."""
    return secrets.randbits(62) + 1


async def touch_accounts(
    session: AsyncSession, account_ids: Iterable[str] | None
) -> frozenset[str]:
    """Give these accounts (None: every account) a new data version, in the caller's transaction.

    Called by every write that can change what an account's answers show,
    last, just before its commit: a batch holds its account's row for as
    short a time as it can. Answers' ETags are made of the version
    (``web/etags.py``), so the next conditional request gets the new answer.

    Returns which of the named accounts have a budget, read in the same
    statement once their rows are held: a batch checks budgets only then
    (``meterql.alerts``), so an account without one pays nothing for them.
    """
    statement = update(Account).values(data_version=new_version())
    if account_ids is None:
        await session.execute(statement)
        return frozenset()
    wanted = sorted(set(account_ids))
    if not wanted:
        return frozenset()
    budgeted = (
        select(Budget.account_id).where(Budget.account_id == Account.account_id).exists()
    )
    result = await session.execute(
        statement.where(Account.account_id.in_(wanted)).returning(Account.account_id, budgeted)
    )
    return frozenset(account for account, has_budgets in result.all() if has_budgets)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "mq_" + secrets.token_urlsafe(32)


async def _upsert(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """Insert rows, or on a key conflict update ``update`` (default: every non-key column).

    Columns left out of ``update`` (creation times, say) keep their first value,
    so applying the same data twice changes nothing.
    """
    if not rows:
        return
    stmt = insert(session, table)
    columns = [name for name in rows[0] if name not in keys] if update is None else update
    updates = {name: stmt.excluded[name] for name in columns}
    final = (
        stmt.on_conflict_do_update(index_elements=list(keys), set_=updates)
        if updates
        else stmt.on_conflict_do_nothing(index_elements=list(keys))
    )
    await session.execute(final, list(rows))


async def upsert_models(session: AsyncSession, records: Sequence[ModelRecord]) -> None:
    rows = [
        {
            "model": r.model,
            "provider": r.provider,
            "input_nanos_per_mtok": usd_to_nanos(r.input_usd_per_mtok),
            "output_nanos_per_mtok": usd_to_nanos(r.output_usd_per_mtok),
        }
        for r in records
    ]
    await _upsert(session, ModelPrice.__table__, rows, ["model"])  # type: ignore[arg-type]


async def upsert_tiers(session: AsyncSession, records: Sequence[TierRecord]) -> None:
    rows = [r.model_dump() for r in records]
    await _upsert(session, Tier.__table__, rows, ["tier_id"])  # type: ignore[arg-type]


async def ensure_accounts(session: AsyncSession, account_ids: Iterable[str]) -> None:
    now = datetime.now(UTC)
    rows = [{"account_id": a, "created_at": now} for a in sorted(set(account_ids))]
    await _upsert(
        session, Account.__table__, rows, ["account_id"], update=[]  # type: ignore[arg-type]
    )


async def upsert_account(session: AsyncSession, record: AccountRecord) -> None:
    """Apply an account with its tokens, instances, subscriptions and nodes."""
    account_id = record.account_id
    await ensure_accounts(session, [account_id])
    now = datetime.now(UTC)
    await _upsert(
        session,
        ApiToken.__table__,  # type: ignore[arg-type]
        [
            {
                "account_id": account_id,
                "token_hash": hash_token(t.token),
                "scopes": format_scopes(t.scopes),
                "created_at": now,
            }
            for t in record.tokens
        ],
        ["token_hash"],
        # A token keeps its account, creation time and revocation; only scopes change.
        update=["scopes"],
    )
    await _upsert(
        session,
        Instance.__table__,  # type: ignore[arg-type]
        [{"account_id": account_id, **i.model_dump()} for i in record.instances],
        ["account_id", "instance_id"],
    )
    await _upsert(
        session,
        Subscription.__table__,  # type: ignore[arg-type]
        [{"account_id": account_id, **s.model_dump()} for s in record.subscriptions],
        ["account_id", "tier_id"],
    )
    await _upsert(
        session,
        WebhostNode.__table__,  # type: ignore[arg-type]
        [{"account_id": account_id, **n.model_dump()} for n in record.webhost_nodes],
        ["account_id", "node_id"],
    )


async def known_accounts(session: AsyncSession, account_ids: Iterable[str]) -> set[str]:
    wanted = set(account_ids)
    if not wanted:
        return set()
    result = await session.scalars(
        select(Account.account_id).where(Account.account_id.in_(wanted))
    )
    return set(result)


async def known_tiers(session: AsyncSession, tier_ids: Iterable[str]) -> set[str]:
    wanted = set(tier_ids)
    if not wanted:
        return set()
    result = await session.scalars(select(Tier.tier_id).where(Tier.tier_id.in_(wanted)))
    return set(result)


def format_scopes(scopes: Iterable[str]) -> str:
    return ",".join(sorted(set(scopes)))


async def create_token(session: AsyncSession, account_id: str, scopes: Sequence[str]) -> str:
    """Create a token and return it in clear: the only time it is ever seen."""
    await ensure_accounts(session, [account_id])
    token = new_token()
    session.add(
        ApiToken(
            account_id=account_id,
            token_hash=hash_token(token),
            scopes=format_scopes(scopes),
            created_at=datetime.now(UTC),
        )
    )
    await session.flush()
    await touch_accounts(session, [account_id])
    return token


async def revoke_token(session: AsyncSession, token: str) -> bool:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(ApiToken.account_id)
    )
    revoked = list(result.scalars())
    await touch_accounts(session, revoked)
    return bool(revoked)


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    unpriced: int  # accepted events whose model had no price (cost 0)
    # The accounts of accepted events that have a budget to check.
    budgeted: frozenset[str] = frozenset()

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(
            self.accepted + other.accepted,
            self.duplicates + other.duplicates,
            self.unpriced + other.unpriced,
            self.budgeted | other.budgeted,
        )


EMPTY_RESULT = IngestResult(0, 0, 0)


async def record_events(
    session: AsyncSession,
    events: Sequence[UsageEventRecord],
    account_id: str | None = None,
) -> IngestResult:
    """Write validated events; an event already stored is counted as a duplicate.

    Events belong to ``account_id`` (live ingest: the token's account) or,
    without it, each to its own ``account_id``. Unknown instances are
    registered; the price at this moment is kept with each event, so later
    price changes never rewrite history.

    On PostgreSQL the batch goes through the connection's stage, by the
    import's statements (:func:`meterql.db.staging.write_batches`), where
    concurrent gateways meet in ``ON CONFLICT``. On SQLite, the one writer,
    the stored keys are looked up, and the rest inserted and summed here.
    """
    (result,) = await record_batches(session, [events], account_id)
    return result


async def record_batches(
    session: AsyncSession,
    batches: Sequence[Sequence[UsageEventRecord]],
    account_id: str | None = None,
) -> list[IngestResult]:
    """:func:`record_events` for each batch, in one transaction; a result per batch.

    An event repeated in the batches counts for the first batch that has
    it, as if they had come one after the other. On PostgreSQL they are
    written as one (``db/groups.py``: a gateway's batches that waited for
    each other); on SQLite one after the other.
    """
    if session.get_bind().dialect.name != "postgresql":
        return [await _record_sqlite(session, events, account_id) for events in batches]
    seen: set[tuple[str, str]] = set()
    kept: list[list[UsageEventRecord]] = []
    for events in batches:
        kept.append([])
        for event in events:
            key = (_owner(event, account_id), event.event_id)
            if key not in seen:
                seen.add(key)
                kept[-1].append(event)
    if not seen:
        return [EMPTY_RESULT for _ in batches]  # every batch was empty
    counts = await staging.write_batches(session, kept, account_id)
    owners = {owner for owner, _ in seen}
    budgeted = (await touch_accounts(session, owners)
                if any(accepted for accepted, _ in counts) else frozenset())
    return [
        IngestResult(accepted, len(events) - accepted, unpriced,
                     budgeted if accepted else frozenset())
        for events, (accepted, unpriced) in zip(batches, counts, strict=True)
    ]


def _owner(event: UsageEventRecord, account_id: str | None) -> str:
    owner = account_id or getattr(event, "account_id", None)
    if owner is None:
        raise ValueError("an event without an account_id needs the account_id argument")
    return owner


async def _record_sqlite(
    session: AsyncSession, events: Sequence[UsageEventRecord], account_id: str | None
) -> IngestResult:
    keyed: dict[tuple[str, str], UsageEventRecord] = {}
    for event in events:
        keyed.setdefault((_owner(event, account_id), event.event_id), event)
    if not keyed:
        return EMPTY_RESULT
    owners = {owner for owner, _ in keyed}
    known = await _stored_keys(session, list(keyed))
    # A duplicate changes nothing at all: it registers no instance either.
    ordered = sorted(((k, e) for k, e in keyed.items() if k not in known), key=lambda ke: ke[0])
    total = IngestResult(accepted=0, duplicates=len(events) - len(ordered), unpriced=0)
    if not ordered:
        return total
    await session.execute(
        insert(session, Instance.__table__).on_conflict_do_nothing(),  # type: ignore[arg-type]
        [
            {"account_id": a, "instance_id": i, "hostname": "", "status": "unknown"}
            for a, i in sorted({(owner, e.instance_id) for (owner, _), e in ordered})
        ],
    )
    prices = await staging.read_prices(session, (e.model for _, e in ordered))
    for start in range(0, len(ordered), EVENT_CHUNK):
        total += await _insert_events(
            session, ordered[start : start + EVENT_CHUNK], prices
        )
    budgeted = await touch_accounts(session, owners)
    return replace(total, budgeted=budgeted)


async def _stored_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which ``(account_id, event_id)`` keys are already stored."""
    found: set[tuple[str, str]] = set()
    for account, event_ids in by_account(keys, EVENT_CHUNK):
        rows = await session.scalars(
            select(EventKey.event_id).where(
                EventKey.account_id == account, EventKey.event_id.in_(event_ids)
            )
        )
        found.update((account, event) for event in rows)
    return found


_EVENT_COLUMNS = (
    "account_id", "event_id", "instance_id", "model", "occurred_at", "day", "tokens_in",
    "tokens_out", "end_user_id", "conversation_id", "cost_nanos",
)
_EVENTS_TABLE: Table = UsageEvent.__table__  # type: ignore[assignment]
_NEW_EVENTS = BulkInsert(_EVENTS_TABLE, _EVENT_COLUMNS)
_KEYS_TABLE: Table = EventKey.__table__  # type: ignore[assignment]
_KEY_COLUMNS = ("account_id", "event_id")
_NEW_KEYS = BulkInsert(_KEYS_TABLE, _KEY_COLUMNS)


async def _insert_events(
    session: AsyncSession,
    keyed: Sequence[tuple[tuple[str, str], UsageEventRecord]],
    prices: dict[str, tuple[int, int]],
) -> IngestResult:
    rows = []
    unpriced = 0
    for (owner, event_id), e in keyed:
        cost = charged_nanos(e.cost_usd, e.tokens_in, e.tokens_out, prices.get(e.model))
        unpriced += cost is None
        occurred_at = e.timestamp.astimezone(UTC)
        rows.append(
            {
                "account_id": owner,
                "event_id": event_id,
                "instance_id": e.instance_id,
                "model": e.model,
                "occurred_at": occurred_at,
                "day": occurred_at.date(),
                "tokens_in": e.tokens_in,
                "tokens_out": e.tokens_out,
                "end_user_id": e.end_user_id,
                "conversation_id": e.conversation_id,
                "cost_nanos": cost or 0,
            }
        )
    # SQLite has one writer at a time and this transaction holds the lock
    # (BEGIN IMMEDIATE): every key not found stored a moment ago is new, so
    # a plain INSERT writes them all, and a conflict would be a bug that
    # fails the batch rather than a duplicate to skip quietly.
    await _NEW_KEYS.run(session, rows)
    await _NEW_EVENTS.run(session, rows)
    await rollups.add_events(session, rows)
    return IngestResult(accepted=len(rows), duplicates=0, unpriced=unpriced)


# What a bulk load changes the shape of. VACUUM has no SQLAlchemy construct:
# fixed statements, written out, never assembled from input.
_VACUUM_LOADED_TABLES = tuple(
    text(statement)
    for statement in (
        "VACUUM (ANALYZE) usage_events",
        "VACUUM (ANALYZE) event_keys",
        "VACUUM (ANALYZE) usage_days",
        "VACUUM (ANALYZE) usage_instance_days",
        "VACUUM (ANALYZE) usage_model_days",
        "VACUUM (ANALYZE) usage_instance_hours",
        "VACUUM (ANALYZE) usage_instance_model_hours",
        "VACUUM (ANALYZE) usage_quarter_hours",
        "VACUUM (ANALYZE) usage_model_hours",
        "VACUUM (ANALYZE) end_users",
        "VACUUM (ANALYZE) end_users_last_seen_days",
        "VACUUM (ANALYZE) end_users_last_seen_hours",
        "VACUUM (ANALYZE) instance_last_days",
        "VACUUM (ANALYZE) model_last_days",
        "VACUUM (ANALYZE) instances",
    )
)


async def tidy_after_load(engine: AsyncEngine) -> None:
    """On PostgreSQL, VACUUM (ANALYZE) what a bulk load wrote; nothing on SQLite.

    A load adds to the same rollup rows batch after batch: each update
    leaves a dead version behind, and an index entry for it. Measured after a
    load of 300k events: 180 live rows of ``usage_days`` behind 25,416 index
    entries, and the route reading them three times slower until a vacuum.
    Its statistics, too, still describe the tables empty until autovacuum
    gets to them (the instance list once took 148 ms instead of 7). VACUUM
    cannot run in a transaction: this runs after the load's has committed.
    """
    if engine.dialect.name != "postgresql":
        return
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for statement in _VACUUM_LOADED_TABLES:
            await autocommit.execute(statement)

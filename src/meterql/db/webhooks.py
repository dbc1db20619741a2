"""Webhooks and their outbox of deliveries: every statement that reads or writes them.

The outbox is written in the transaction that records the alerts
(``enqueue``), so an alert and its deliveries are committed together or not
at all. The deliverer (``meterql.webhooks``) takes due rows a few at a time
(``claim``, which moves them a lease ahead), sends them, and writes each
outcome (``finish``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.db.dialect import insert
from meterql.db.reads import Reader
from meterql.db.tables import Webhook, WebhookDelivery
from meterql.db.writes import touch_accounts

WEBHOOKS = cast(Table, Webhook.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
W = WEBHOOKS.c
D = DELIVERIES.c
_ACCOUNT: BindParameter[str] = bindparam("account")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class WebhookRow:
    webhook_id: str
    url: str
    description: str
    created_at: datetime


_LIST = (
    select(W.webhook_id, W.url, W.description, W.created_at)
    .where(W.account_id == _ACCOUNT)
    .order_by(W.created_at, W.webhook_id)
)
_COUNT = select(func.count()).select_from(WEBHOOKS).where(W.account_id == _ACCOUNT)


async def listing(reader: Reader, account_id: str) -> list[WebhookRow]:
    return [WebhookRow(*row) for row in await reader.fetch(_LIST, {"account": account_id})]


async def count(session: AsyncSession, account_id: str) -> int:
    return int((await session.execute(_COUNT, {"account": account_id})).scalar_one())


async def add(session: AsyncSession, account_id: str, webhook: WebhookRow, secret: str) -> None:
    await session.execute(insert(session, WEBHOOKS).values(
        account_id=account_id, webhook_id=webhook.webhook_id, url=webhook.url,
        description=webhook.description, secret=secret, created_at=webhook.created_at,
    ))


async def remove(session: AsyncSession, account_id: str, webhook_id: str, now: datetime) -> bool:
    """Delete the webhook; what it had pending fails, said so. False if there was none."""
    result = await session.execute(
        delete(WEBHOOKS)
        .where(W.account_id == account_id, W.webhook_id == webhook_id)
        .returning(W.webhook_id)
    )
    if result.first() is None:
        return False
    await session.execute(
        update(DELIVERIES)
        .where(D.account_id == account_id, D.webhook_id == webhook_id, D.status == PENDING)
        .values(status=FAILED, last_error="the webhook was deleted", last_attempt_at=now)
    )
    return True


async def targets(session: AsyncSession, account_id: str) -> list[tuple[str, str]]:
    """The account's webhooks as (id, url), for the outbox."""
    result = await session.execute(
        select(W.webhook_id, W.url).where(W.account_id == account_id).order_by(W.webhook_id)
    )
    return [(row[0], row[1]) for row in result.all()]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A delivery to write: the alert's JSON for one webhook."""

    delivery_id: str
    webhook_id: str
    alert_id: str
    payload: str


async def enqueue(
    session: AsyncSession, account_id: str, rows: Sequence[Outgoing], now: datetime,
    retry_for: timedelta,
) -> None:
    if not rows:
        return
    await session.execute(insert(session, DELIVERIES).values([
        {"account_id": account_id, "delivery_id": r.delivery_id, "webhook_id": r.webhook_id,
         "alert_id": r.alert_id, "payload": r.payload, "status": PENDING, "attempts": 0,
         "next_attempt_at": now, "last_attempt_at": None, "last_status": None,
         "last_error": None, "retry_until": now + retry_for, "created_at": now}
        for r in rows
    ]))


@dataclass(frozen=True, slots=True)
class Claimed:
    account_id: str
    delivery_id: str
    attempts: int
    retry_until: datetime
    payload: str
    url: str
    secret: str


async def claim(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Up to ``limit`` due deliveries, oldest due first, each moved a lease ahead.

    Rows another transaction holds are skipped (PostgreSQL), so two
    deliverers never take the same row at once; the lease keeps a row a
    deliverer died with from being due again before then.

    Moving a delivery's next attempt changes what its account's deliveries
    show, so those accounts get a new data version (``writes.touch_accounts``)
    in this transaction: a conditional GET of them never answers 304 across
    a claim. The accounts are held before any delivery row, as every other
    writer of deliveries holds them (the mutations hold their account first):
    the due rows are looked up without a lock, their accounts are held, and
    only then are the rows taken. Taking the rows first would let a claim
    wait for an account while a mutation of that account waits for one of
    its rows.
    """
    due = (
        select(D.account_id, D.delivery_id, D.attempts, D.retry_until, D.payload, W.url,
               W.secret)
        .join(WEBHOOKS, (W.account_id == D.account_id) & (W.webhook_id == D.webhook_id))
        .where(D.status == PENDING, D.next_attempt_at <= now)
        .order_by(D.next_attempt_at, D.delivery_id)
        .limit(limit)
    )
    accounts = set((await session.scalars(due.with_only_columns(D.account_id))).all())
    if not accounts:
        return []
    await touch_accounts(session, accounts)
    due = due.where(D.account_id.in_(sorted(accounts)))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=DELIVERIES, skip_locked=True)
    found = [Claimed(*row) for row in (await session.execute(due)).all()]
    if found:
        await session.execute(
            update(DELIVERIES)
            .where(tuple_(D.account_id, D.delivery_id).in_(
                [(item.account_id, item.delivery_id) for item in found]))
            .values(next_attempt_at=now + lease)
        )
    return found


async def finish(
    session: AsyncSession, item: Claimed, *, now: datetime, delivered: bool,
    status_code: int | None, error: str | None, retry_at: datetime | None,
) -> None:
    """Write an attempt's outcome: delivered, due again at ``retry_at``, or failed (None).

    The account gets a new data version first (its deliveries show the
    outcome), held before the row as :func:`claim` explains.
    """
    status = DELIVERED if delivered else PENDING if retry_at is not None else FAILED
    await touch_accounts(session, [item.account_id])
    await session.execute(
        update(DELIVERIES)
        .where(D.account_id == item.account_id, D.delivery_id == item.delivery_id,
               D.status == PENDING)
        .values(status=status, attempts=D.attempts + 1, last_attempt_at=now,
                last_status=status_code, last_error=error,
                next_attempt_at=retry_at if retry_at is not None else now)
    )


async def redeliver(
    session: AsyncSession, account_id: str, delivery_id: str, now: datetime,
    retry_for: timedelta,
) -> bool:
    """Make a delivery due now, with a new day of retries. False if there is no such delivery,
    or its webhook is gone."""
    exists = (
        select(W.webhook_id)
        .where(W.account_id == D.account_id, W.webhook_id == D.webhook_id)
        .exists()
    )
    result = await session.execute(
        update(DELIVERIES)
        .where(D.account_id == account_id, D.delivery_id == delivery_id, exists)
        .values(status=PENDING, next_attempt_at=now, retry_until=now + retry_for)
        .returning(D.delivery_id)
    )
    return result.first() is not None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: str
    webhook_id: str
    alert_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    payload: str


_COLUMNS = (D.delivery_id, D.webhook_id, D.alert_id, D.status, D.attempts, D.next_attempt_at,
            D.last_attempt_at, D.last_status, D.last_error, D.created_at, D.payload)
_PAGE = (
    select(*_COLUMNS)
    .where(D.account_id == _ACCOUNT, D.delivery_id < bindparam("before"))
    .order_by(D.delivery_id.desc())
    .limit(bindparam("limit"))
)
_ONE = select(*_COLUMNS).where(D.account_id == _ACCOUNT, D.delivery_id == bindparam("delivery"))
_TOTAL = select(func.count()).select_from(DELIVERIES).where(D.account_id == _ACCOUNT)
# Above every delivery id ("dlv_" and digits): the first page starts here.
NEWEST = "dlv_~"


def _row(row: Sequence[Any]) -> DeliveryRow:
    return DeliveryRow(row[0], row[1], row[2], row[3], int(row[4]), row[5], row[6],
                       None if row[7] is None else int(row[7]), row[8], row[9], row[10])


async def page(reader: Reader, account_id: str, before: str, limit: int) -> list[DeliveryRow]:
    rows = await reader.fetch(_PAGE, {"account": account_id, "before": before, "limit": limit})
    return [_row(row) for row in rows]


async def total(reader: Reader, account_id: str) -> int:
    return int((await reader.fetch(_TOTAL, {"account": account_id}))[0][0])


async def one(reader: Reader, account_id: str, delivery_id: str) -> DeliveryRow | None:
    rows = await reader.fetch(_ONE, {"account": account_id, "delivery": delivery_id})
    return _row(rows[0]) if rows else None

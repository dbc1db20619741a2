"""Webhooks in the graph: ``viewer.webhooks``, ``viewer.webhookDeliveries``, and the
``manage``-scope mutations ``createWebhook``, ``deleteWebhook`` and ``redeliver``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import strawberry
from strawberry import Info

from meterql import cursors, webhooks
from meterql.budgets import parse_name
from meterql.context import Context
from meterql.db import webhooks as stored
from meterql.db import writes
from meterql.db.webhooks import NEWEST, DeliveryRow, WebhookRow
from meterql.errors import NotFound
from meterql.schema.paging import page_info
from meterql.schema.webhooks import (
    CreatedWebhook,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookDeliveryEdge,
)
from meterql.windows import DaysArgument

DELIVERY_PAGE = DaysArgument(minimum=1, maximum=100, default=20)
_DELIVERIES = "deliveries"


class DeliveryNotFound(NotFound):
    default_message = "Delivery not found"


def _webhook(row: WebhookRow) -> Webhook:
    return Webhook(id=strawberry.ID(row.webhook_id), url=row.url, description=row.description,
                   created_at=row.created_at)


def _delivery(row: DeliveryRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=strawberry.ID(row.delivery_id), webhook_id=strawberry.ID(row.webhook_id),
        alert_id=strawberry.ID(row.alert_id), status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == stored.PENDING else None,
        last_attempt_at=row.last_attempt_at, last_status_code=row.last_status,
        last_error=row.last_error, created_at=row.created_at, payload=row.payload,
    )


async def viewer_webhooks(info: Info[Context, None]) -> list[Webhook]:
    context = info.context.require("read")
    return [_webhook(row) for row in await stored.listing(context.reader, context.account_id)]


async def viewer_deliveries(
    info: Info[Context, None],
    first: Annotated[int, strawberry.argument(description="Page size, 1..100.")] = (
        DELIVERY_PAGE.default
    ),
    after: Annotated[
        str | None, strawberry.argument(description="An `endCursor` of this very list.")
    ] = None,
) -> WebhookDeliveryConnection:
    context = info.context.require("read")
    size = DELIVERY_PAGE.validate(first, ("first",))
    before = NEWEST if after is None else cursors.decode(after, _DELIVERIES, None)
    rows, count = await asyncio.gather(
        stored.page(context.reader, context.account_id, before, size + 1),
        stored.total(context.reader, context.account_id),
    )
    edges = [WebhookDeliveryEdge(cursor=cursors.encode(_DELIVERIES, None, r.delivery_id),
                                 node=_delivery(r)) for r in rows[:size]]
    return WebhookDeliveryConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], len(rows) > size, after),
        total_count=count,
    )


async def create_webhook(
    info: Info[Context, None], url: str, description: str | None = None
) -> CreatedWebhook:
    """A new webhook (manage scope): its URL checked, its secret made and shown once."""
    context = info.context.require("manage")
    try:
        checked = await webhooks.check_url(url, context.settings.webhook_allow_private)
    except webhooks.Refused as refused:
        raise webhooks.refusal(url, str(refused)) from None
    row = WebhookRow(webhooks.new_webhook_id(), checked,
                     parse_name(description, ("description",)), context.now)
    secret = webhooks.new_secret()
    account = context.account_id
    async with context.db.write(account) as session, session.begin():
        await writes.touch_accounts(session, [account])
        if await stored.count(session, account) >= webhooks.MAX_WEBHOOKS:
            raise webhooks.refusal(url, f"an account has at most {webhooks.MAX_WEBHOOKS} webhooks")
        await stored.add(session, account, row, secret)
    return CreatedWebhook(webhook=_webhook(row), secret=secret)


async def delete_webhook(info: Info[Context, None], id: strawberry.ID) -> bool:
    """Delete a webhook (manage scope); what it had pending fails. False if there was none."""
    context = info.context.require("manage")
    account = context.account_id
    async with context.db.write(account) as session, session.begin():
        await writes.touch_accounts(session, [account])
        return await stored.remove(session, account, str(id), context.now)


async def redeliver(info: Info[Context, None], id: strawberry.ID) -> WebhookDelivery:
    """Send a delivery again (manage scope): due now, with a new day of attempts."""
    context = info.context.require("manage")
    account = context.account_id
    async with context.db.write(account) as session, session.begin():
        await writes.touch_accounts(session, [account])
        if not await stored.redeliver(session, account, str(id), context.now,
                                      webhooks.RETRY_FOR):
            raise DeliveryNotFound()
    found = await stored.one(context.reader, account, str(id))
    assert found is not None
    return _delivery(found)

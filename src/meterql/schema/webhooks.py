"""Types of webhooks and their deliveries (``meterql.webhooks`` has the rules)."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from meterql.schema.paging import PageInfo


@strawberry.type(description="Where the account's budget alerts are sent, as signed JSON POSTs "
                 "(docs/webhooks.md).")
class Webhook:
    id: strawberry.ID
    url: str
    description: str
    created_at: datetime


@strawberry.type(description="A new webhook, and its signing secret: shown this once.")
class CreatedWebhook:
    webhook: Webhook
    secret: str = strawberry.field(
        description="HMAC-SHA256 key of the `Meterql-Signature` header. Kept by the server, "
        "never shown again."
    )


@strawberry.enum(description="PENDING until a receiver answers 2xx (DELIVERED), or a day of "
                 "attempts passes (FAILED).")
class DeliveryStatus(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@strawberry.type(description="One alert sent to one webhook, and how its attempts went.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(
        description="The `id` of the body and the `Meterql-Webhook-Id` header: the same on "
        "every attempt, for the receiver to drop repeats."
    )
    webhook_id: strawberry.ID
    alert_id: strawberry.ID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = strawberry.field(description="Null unless PENDING.")
    last_attempt_at: datetime | None
    last_status_code: int | None = strawberry.field(
        description="The receiver's HTTP status at the last attempt; null if it did not answer."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed, in words; null if it did not."
    )
    created_at: datetime
    payload: str = strawberry.field(description="The JSON body, as sent.")


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str = strawberry.field(description="Pass as `after` for the older deliveries.")
    node: WebhookDelivery


@strawberry.type(description="A page of the account's deliveries, newest first.")
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo
    total_count: int

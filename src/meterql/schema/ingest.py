"""Types of live ingestion: the event input and the mutation's result."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry

from meterql.schema.scalars import BigInt


@strawberry.input(description="One model request made by an instance.")
class UsageEventInput:
    event_id: str = strawberry.field(description="Idempotency key, unique per account.")
    instance_id: str = strawberry.field(description="Registered on first use.")
    model: str
    timestamp: datetime = strawberry.field(description="At most 5 minutes in the future.")
    tokens_in: BigInt
    tokens_out: BigInt
    end_user_id: str | None = None
    conversation_id: str | None = None
    cost_usd: Decimal | None = strawberry.field(
        default=None, description="Overrides the estimate from the model's price."
    )


@strawberry.type
class RecordUsageResult:
    accepted: int = strawberry.field(description="Events written now.")
    duplicates: int = strawberry.field(
        description="Events already known (by event id), counted once before."
    )

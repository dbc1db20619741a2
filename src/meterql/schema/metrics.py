"""Types of the metrics pages: summary, per instance, per model, daily series."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from meterql.schema.scalars import BigInt


@strawberry.type(description="Usage over the last `days` UTC days, today included.")
class MetricsSummary:
    active_instances: int = strawberry.field(
        description="Distinct instances with at least one request."
    )
    estimated_cost_usd: Decimal
    period_days: int
    total_requests: BigInt
    total_tokens: BigInt = strawberry.field(description="Input plus output tokens.")
    total_tokens_in: BigInt
    total_tokens_out: BigInt
    unique_models: int = strawberry.field(description="Distinct models used.")


@strawberry.type
class InstanceUsage:
    estimated_cost_usd: Decimal
    hostname: str
    instance_id: str
    request_count: BigInt
    status: str
    total_tokens: BigInt


@strawberry.type(description="Every instance of the account, idle ones included.")
class InstanceUsageList:
    instances: list[InstanceUsage] = strawberry.field(
        description="Ordered by request count desc, then instance id."
    )
    total_count: int


@strawberry.type
class ModelUsage:
    estimated_cost_usd: Decimal
    model: str
    pct_of_total: float = strawberry.field(
        description="100 * request_count / total_requests, rounded to 2 places."
    )
    provider: str = strawberry.field(description="Empty for a model without a price.")
    request_count: BigInt
    tokens_in: BigInt
    tokens_out: BigInt


@strawberry.type(description="Every model used in the window.")
class ModelBreakdown:
    models: list[ModelUsage] = strawberry.field(
        description="Ordered by request count desc, then model name."
    )
    total_requests: BigInt


@strawberry.type
class UsagePoint:
    date: date
    estimated_cost_usd: Decimal
    requests: BigInt
    tokens_in: BigInt
    tokens_out: BigInt


@strawberry.type(description="One point per UTC day, oldest first, zero-filled.")
class UsageTimeseries:
    period_days: int
    points: list[UsagePoint]

"""Types of the billing pages: plan, period usage, trial, chart."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import strawberry

from meterql.schema.scalars import BigInt


@strawberry.type(description="The primary subscription and its tier, or the free defaults.")
class Plan:
    api_call_limit: BigInt
    billing_cycle: str
    conversation_limit: BigInt
    current_period_end: datetime
    current_period_start: datetime
    instance_limit: BigInt
    max_sites_per_node: BigInt
    plan_name: str
    price_cents: BigInt
    product_name: str
    status: str = strawberry.field(
        description="trialing, active or past_due; none without a subscription."
    )
    tier_id: str
    tier_slug: str
    token_allowance: BigInt
    trial_days_remaining: int
    trial_ends_at: datetime | None


@strawberry.type(description="Usage over the billing period against the plan's limits.")
class BillingPeriodUsage:
    active_instances: int
    api_call_limit: BigInt
    conversation_limit: BigInt
    instance_limit: BigInt
    max_sites_per_node: BigInt
    platform_cost_usd: Decimal = strawberry.field(description="The plan's price.")
    token_allowance: BigInt
    total_cost_usd: Decimal = strawberry.field(
        description="Platform cost plus the estimated usage cost of the period."
    )
    total_hosted_sites: BigInt
    total_requests: BigInt
    total_tokens: BigInt
    unique_end_users: int
    webhost_nodes: int


@strawberry.type
class Billing:
    plan: Plan
    subscribed_tier_ids: list[str] = strawberry.field(
        description="Tier ids of every live subscription, sorted."
    )
    usage: BillingPeriodUsage


@strawberry.type
class TrialStatus:
    plan_name: str
    status: str
    trial_days_remaining: int = strawberry.field(
        description="Whole days left, rounded down, never below 0."
    )
    trial_ends_at: datetime | None
    trial_expired: bool = strawberry.field(
        description="A trial end exists and is not in the future."
    )
    upgrade_url: str


@strawberry.type
class InstanceBilling:
    cost_usd: Decimal
    hostname: str
    instance_id: str
    requests: BigInt
    tokens: BigInt


@strawberry.type
class BillingUsage:
    by_instance: list[InstanceBilling] = strawberry.field(
        description="Instances with usage in the period, by requests desc, then id."
    )
    period_end: datetime
    period_start: datetime
    platform_cost_usd: Decimal
    token_allowance_monthly: BigInt
    token_usage_pct: float = strawberry.field(
        description="100 * total_tokens / allowance, 2 places; 0 without an allowance."
    )
    total_cost_usd: Decimal
    total_requests: BigInt
    total_tokens: BigInt
    unique_end_users: int


@strawberry.type
class ChartPoint:
    cost_usd: Decimal
    date: date
    requests: BigInt
    tokens: BigInt


@strawberry.type
class UsageChart:
    period_label: str
    points: list[ChartPoint]

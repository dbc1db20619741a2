"""The nodes of the viewer graph: the account's subscriptions, instances, models, nodes.

Fields that need more data than their node was built with read it through
the request's loaders (``meterql.resolvers.batches``), never with a statement of
their own, so a list of N nodes costs the same as a list of one.

``Instance`` and ``Model`` have their own ``usage(...)``, resolved by a
loader keyed ``(arguments, self.id)`` or ``(arguments, self.name)``, as
``meterql.resolvers.batches`` describes: one statement per distinct arguments.
"""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import Info

from meterql.buckets import DEFAULT_ZONE, Granularity
from meterql.context import Context
from meterql.db.series import GroupBy
from meterql.resolvers.batches import (
    instance_counts,
    plan_of,
    tiers_by_id,
)
from meterql.resolvers.budgets import instance_budgets, model_budgets
from meterql.resolvers.selection import raw
from meterql.resolvers.usage import (
    INSTANCE_NODE,
    MODEL_NODE,
    UsageDays,
    UsageRange,
    UsageZone,
    answer,
    arguments_of,
)
from meterql.schema.budgets import Budget
from meterql.schema.catalogue import Tier
from meterql.schema.paging import PageInfo
from meterql.schema.scalars import BigInt, ExactDecimal
from meterql.schema.usage import Usage


@strawberry.type(description="A subscription of the account to a tier, of any status.")
class AccountSubscription:
    current_period_end: datetime
    current_period_start: datetime
    live: bool = strawberry.field(
        description="trialing, active or past_due: it counts towards the plan."
    )
    status: str = strawberry.field(
        description="trialing, active, past_due, canceled or expired."
    )
    tier_id: str
    trial_days_remaining: int = strawberry.field(
        description="Whole days left, rounded down, never below 0."
    )
    trial_ends_at: datetime | None

    @strawberry.field
    async def tier(self, info: Info[Context, None]) -> Tier:
        row = await info.context.loaders.load(tiers_by_id, self.tier_id)
        # A subscription's tier is a foreign key: it is always there.
        assert row is not None, self.tier_id
        return Tier.from_row(row)


async def _instance_usage(
    root: Instance,
    info: Info[Context, None],
    date_range: UsageRange = None,
    days: UsageDays = None,
    tz: UsageZone = DEFAULT_ZONE,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy | None = None,
) -> Usage:
    return await answer(raw(info), (INSTANCE_NODE, str(root.id)),
                        arguments_of(date_range, days, tz, granularity, group_by))


async def _instance_budgets(root: Instance, info: Info[Context, None]) -> list[Budget]:
    return await instance_budgets(str(root.id), info)


async def _model_budgets(root: Model, info: Info[Context, None]) -> list[Budget]:
    return await model_budgets(root.name, info)


@strawberry.type(description="An AI agent deployment of the account.")
class Instance:
    id: strawberry.ID = strawberry.field(description="The instance id.")
    hostname: str
    status: str

    budgets: list[Budget] = strawberry.field(
        resolver=_instance_budgets,
        description="The budgets of this instance (INSTANCE scope), oldest first.",
    )

    usage: Usage = strawberry.field(
        resolver=_instance_usage,
        description="This instance's usage: the account's `usage` with the same arguments, of "
        "this instance's events alone (`groupBy: INSTANCE` gives one group, itself, when it "
        "has usage). Zero-filled without usage.",
    )


@strawberry.type
class InstanceEdge:
    cursor: str = strawberry.field(description="Pass as `after` for the instances after this one.")
    node: Instance


async def _total_count(root: InstanceConnection, info: Info[Context, None]) -> int:
    if root.known_total is not None:
        return root.known_total
    return await info.context.loaders.load(instance_counts, root.status)


@strawberry.type(description="A page of the account's instances, in instance id order.")
class InstanceConnection:
    edges: list[InstanceEdge]
    page_info: PageInfo
    status: strawberry.Private[str | None]
    # Known without asking: a status filter no instance can have counts 0.
    known_total: strawberry.Private[int | None] = None

    total_count: int = strawberry.field(
        resolver=_total_count,
        description="Instances matching the filter, on every page together.",
    )


@strawberry.type(description="A model's current price, in USD per million tokens.")
class ModelPrice:
    input_usd_per_mtok: ExactDecimal
    output_usd_per_mtok: ExactDecimal


async def _model_usage(
    root: Model,
    info: Info[Context, None],
    date_range: UsageRange = None,
    days: UsageDays = None,
    tz: UsageZone = DEFAULT_ZONE,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy | None = None,
) -> Usage:
    return await answer(raw(info), (MODEL_NODE, root.name),
                        arguments_of(date_range, days, tz, granularity, group_by))


@strawberry.type(description="An LLM the account has used.")
class Model:
    name: str
    price: ModelPrice | None = strawberry.field(description="Null for a model without a price.")
    provider: str = strawberry.field(description="Empty for a model without a price.")

    budgets: list[Budget] = strawberry.field(
        resolver=_model_budgets,
        description="The budgets of this model (MODEL scope), oldest first.",
    )

    usage: Usage = strawberry.field(
        resolver=_model_usage,
        description="This model's usage: the account's `usage` with the same arguments, of "
        "this model's events alone (`groupBy: MODEL` gives one group, itself, when it has "
        "usage). Zero-filled without usage.",
    )


async def _site_limit(info: Info[Context, None]) -> BigInt:
    context = info.context
    plan = await plan_of(context)
    return BigInt(plan.tier.max_sites_per_node)


@strawberry.type(description="A node of the account's hosting product.")
class WebhostNode:
    hosted_sites: BigInt
    id: strawberry.ID = strawberry.field(description="The node id.")

    site_limit: BigInt = strawberry.field(
        resolver=_site_limit, description="Sites a node may host on the account's plan."
    )

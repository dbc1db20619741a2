"""``usage(range | days, tz, granularity, groupBy)``: arguments → bucket plan → one query → types.

Every one reads through the request's loaders: the root field (and
``viewer.usage``, the same) through ``usage_of_account``, ``instance.usage``
and ``model.usage`` through ``node_usage``, so a page of N nodes costs one
statement per distinct arguments. Each is charged to the request's point
budget before anything is read (``charge``). All of them take the very same
arguments (the ``Usage*`` aliases below), validate them alike and answer
with ``to_usage``.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

import strawberry
from strawberry import Info

from meterql import buckets
from meterql.buckets import BucketPlan, Granularity, LocalRange
from meterql.context import Context
from meterql.db import series
from meterql.db.series import Amounts, GroupBy
from meterql.loaders import BatchFn
from meterql.money import nanos_to_usd
from meterql.resolvers.batches import NodeUsage, UsageArgs, group_counts, usage_of_account
from meterql.schema.scalars import BigInt, OffsetDateTime
from meterql.schema.usage import DateRange, Usage, UsageBucket, UsageGroup, UsageTotals

# The arguments of every ``usage`` field (root, viewer, instance, model).
UsageRange: TypeAlias = Annotated[
    DateRange | None,
    strawberry.argument(name="range", description="Local dates; at most 366 days."),
]
UsageDays: TypeAlias = Annotated[
    int | None,
    strawberry.argument(description="The last N local days (1..366), today included; "
                        "30 without `range`. Not with `range`."),
]
UsageZone: TypeAlias = Annotated[
    str, strawberry.argument(description="An IANA time zone, e.g. Europe/Berlin.")
]


def _local_range(
    context: Context, date_range: DateRange | None, days: int | None, tz: str
) -> LocalRange:
    return buckets.local_range(
        tz,
        context.now,
        first=None if date_range is None else date_range.from_,
        last=None if date_range is None else date_range.to,
        days=days,
    )


def usage_args(
    context: Context,
    date_range: DateRange | None,
    days: int | None,
    tz: str,
    granularity: Granularity,
    group_by: GroupBy | None,
) -> UsageArgs:
    """The arguments, validated (``InvalidInput`` on any fault): a loader key."""
    return UsageArgs(_local_range(context, date_range, days, tz), granularity, group_by)


async def charge(context: Context, plan: BucketPlan, group_by: GroupBy | None) -> None:
    """Charge the request's budget with the most points an answer could have.

    The buckets alone are checked first: an answer too long even with one
    group is refused before anything is read. Grouped, the groups are
    bounded by the instances or models with usage around the range (one
    small count per request and span, shared by every node).
    """
    most = len(plan.buckets)
    if group_by is not None:
        context.points.check(most)
        counts = await context.loaders.load(group_counts, series.utc_days(plan))
        most *= max(1, counts.most(group_by))
    context.points.charge(most)


async def node_usage(
    context: Context,
    batch: BatchFn[Context, tuple[UsageArgs, str], NodeUsage],
    node: str,
    kind: GroupBy,
    date_range: DateRange | None,
    days: int | None,
    tz: str,
    granularity: Granularity,
    group_by: GroupBy | None,
) -> Usage:
    """``usage`` of one node (an instance id, a model name) through the request's ``batch``.

    Every node is charged before the batch reads anything (a page of 50
    instances asks for 50 series). Grouped by its own ``kind`` (or a model
    by provider), a node's one group is itself.
    """
    args = usage_args(context, date_range, days, tz, granularity, group_by)
    plan = context.bucket_plan(args.range, args.granularity)
    own = group_by is kind or (kind is GroupBy.MODEL and group_by is GroupBy.PROVIDER)
    await charge(context, plan, None if own else group_by)
    found = await context.loaders.load(batch, (args, node))
    return to_usage(found.plan, group_by, found.series)


def _sum(amounts: list[Amounts]) -> Amounts:
    return Amounts(
        sum(a.requests for a in amounts),
        sum(a.tokens_in for a in amounts),
        sum(a.tokens_out for a in amounts),
        sum(a.cost_nanos for a in amounts),
    )


def _group(key: str, amounts: Amounts) -> UsageGroup:
    return UsageGroup(
        key=key,
        requests=BigInt(amounts.requests),
        tokens_in=BigInt(amounts.tokens_in),
        tokens_out=BigInt(amounts.tokens_out),
        total_tokens=BigInt(amounts.tokens_in + amounts.tokens_out),
        estimated_cost_usd=nanos_to_usd(amounts.cost_nanos),
    )


def to_usage(plan: BucketPlan, group_by: GroupBy | None, found: series.Series) -> Usage:
    """The answer: range totals, each group's totals, and every bucket with every group."""
    per_bucket = [
        _sum([found.values[key][n] for key in found.keys]) for n in range(len(plan.buckets))
    ]
    grouped = group_by is not None
    totals = _sum(per_bucket)
    local = plan.range
    return Usage(
        from_=local.first,
        to=local.last,
        time_zone=local.zone.key,
        granularity=plan.granularity,
        group_by=group_by,
        start=OffsetDateTime(plan.buckets[0].start),
        end=OffsetDateTime(plan.buckets[-1].end),
        totals=UsageTotals(
            requests=BigInt(totals.requests),
            tokens_in=BigInt(totals.tokens_in),
            tokens_out=BigInt(totals.tokens_out),
            total_tokens=BigInt(totals.tokens_in + totals.tokens_out),
            estimated_cost_usd=nanos_to_usd(totals.cost_nanos),
        ),
        groups=[_group(key, _sum(found.values[key])) for key in found.keys] if grouped else [],
        series=[
            UsageBucket(
                start=OffsetDateTime(bucket.start),
                end=OffsetDateTime(bucket.end),
                date=bucket.date,
                label=bucket.label,
                requests=BigInt(amounts.requests),
                tokens_in=BigInt(amounts.tokens_in),
                tokens_out=BigInt(amounts.tokens_out),
                total_tokens=BigInt(amounts.tokens_in + amounts.tokens_out),
                estimated_cost_usd=nanos_to_usd(amounts.cost_nanos),
                groups=[_group(key, found.values[key][n]) for key in found.keys]
                if grouped
                else [],
            )
            for n, (bucket, amounts) in enumerate(zip(plan.buckets, per_bucket, strict=True))
        ],
    )


async def usage(
    info: Info[Context, None],
    date_range: UsageRange = None,
    days: UsageDays = None,
    tz: UsageZone = buckets.DEFAULT_ZONE,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy | None = None,
) -> Usage:
    context = info.context.require("read")
    args = usage_args(context, date_range, days, tz, granularity, group_by)
    plan = context.bucket_plan(args.range, args.granularity)
    await charge(context, plan, group_by)
    found = await context.loaders.load(usage_of_account, args)
    return to_usage(plan, group_by, found.series)

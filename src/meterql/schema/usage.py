"""Types of ``usage(...)``: usage at any grain, zone and range, totals and a zero-filled series.

Measures keep the metrics pages' names (``requests``, ``tokensIn``,
``tokensOut``, ``totalTokens``, ``estimatedCostUsd``), so a chart reads the
same fields from ``usageTimeseries`` and from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

import strawberry

from meterql.buckets import BucketPlan
from meterql.buckets import Granularity as GranularityValue
from meterql.db.series import Amounts, GroupBy, Series
from meterql.money import nanos_to_usd
from meterql.schema.scalars import BigInt, OffsetDateTime

Granularity = strawberry.enum(
    GranularityValue,
    name="Granularity",
    description="The length of a series bucket, in the query's time zone.",
)
UsageGroupBy = strawberry.enum(
    GroupBy,
    name="UsageGroupBy",
    description="What a usage answer is broken down by. A provider is that of the "
    "model's price; a model without a price has provider \"\".",
)


@strawberry.input(description="Local dates, both included, in the query's time zone.")
class DateRange:
    from_: date = strawberry.field(name="from")
    to: date


@strawberry.type(description="Usage of the whole range (or a bucket), all groups together.")
class UsageTotals:
    requests: BigInt
    tokens_in: BigInt
    tokens_out: BigInt
    total_tokens: BigInt = strawberry.field(description="Input plus output tokens.")
    estimated_cost_usd: Decimal


@strawberry.type(description="One group's usage, over the range or in one bucket.")
class UsageGroup:
    key: str = strawberry.field(
        description="The instance id, model name or provider (\"\" for unpriced models)."
    )
    requests: BigInt
    tokens_in: BigInt
    tokens_out: BigInt
    total_tokens: BigInt
    estimated_cost_usd: Decimal


@strawberry.type(description="One bucket of the series, `[start, end)`.")
class UsageBucket:
    start: OffsetDateTime
    end: OffsetDateTime
    date: date = strawberry.field(description="The local date of `start`.")
    label: str = strawberry.field(
        description="2026-03-29T02:00+01:00 (HOUR), 2026-03-29 (DAY), 2026-W13 (WEEK, "
        "ISO), 2026-03 (MONTH)."
    )
    requests: BigInt
    tokens_in: BigInt
    tokens_out: BigInt
    total_tokens: BigInt
    estimated_cost_usd: Decimal
    groups: list[UsageGroup] = strawberry.field(
        description="Every group of the answer, in the order of `Usage.groups`, zeros "
        "included; empty without `groupBy`."
    )


def _sum(amounts: Iterable[Amounts]) -> Amounts:
    requests = tokens_in = tokens_out = cost = 0
    for a in amounts:
        requests += a.requests
        tokens_in += a.tokens_in
        tokens_out += a.tokens_out
        cost += a.cost_nanos
    return Amounts(requests, tokens_in, tokens_out, cost)


def _group(key: str, amounts: Amounts) -> UsageGroup:
    return UsageGroup(
        key=key,
        requests=BigInt(amounts.requests),
        tokens_in=BigInt(amounts.tokens_in),
        tokens_out=BigInt(amounts.tokens_out),
        total_tokens=BigInt(amounts.tokens_in + amounts.tokens_out),
        estimated_cost_usd=nanos_to_usd(amounts.cost_nanos),
    )


@strawberry.type(description="Usage over a range of local dates, in total, per group and "
                 "per bucket.")
class Usage:
    """An answer of ``usage``: its buckets and the series read for them.

    Totals, groups and series are made when asked for, and only then: a page
    showing the totals of fifty instances builds no bucket of any of them.
    """

    from_: date = strawberry.field(name="from", description="First local date, included.")
    to: date = strawberry.field(description="Last local date, included.")
    time_zone: str
    granularity: Granularity  # type: ignore[valid-type]
    group_by: UsageGroupBy | None  # type: ignore[valid-type]
    start: OffsetDateTime
    end: OffsetDateTime
    plan: strawberry.Private[BucketPlan]
    found: strawberry.Private[Series]

    @classmethod
    def of(cls, plan: BucketPlan, group_by: GroupBy | None, found: Series) -> Usage:
        local = plan.range
        return cls(
            from_=local.first, to=local.last, time_zone=local.zone.key,
            granularity=plan.granularity, group_by=group_by,
            start=OffsetDateTime(plan.start), end=OffsetDateTime(plan.end),
            plan=plan, found=found,
        )

    def _totals(self) -> UsageTotals:
        found = self.found
        total = _sum(amounts for key in found.keys for amounts in found.values[key])
        return UsageTotals(
            requests=BigInt(total.requests),
            tokens_in=BigInt(total.tokens_in),
            tokens_out=BigInt(total.tokens_out),
            total_tokens=BigInt(total.tokens_in + total.tokens_out),
            estimated_cost_usd=nanos_to_usd(total.cost_nanos),
        )

    def _groups(self) -> list[UsageGroup]:
        if self.group_by is None:
            return []
        found = self.found
        return [_group(key, _sum(found.values[key])) for key in found.keys]

    def _series(self) -> list[UsageBucket]:
        found, grouped = self.found, self.group_by is not None
        columns = [found.values[key] for key in found.keys]
        # The resolver reads the series only when the query selects it.
        assert all(len(column) == self.plan.count for column in columns), "read whole"
        answer = []
        for n, bucket in enumerate(self.plan.buckets):
            cells = [column[n] for column in columns]
            amounts = _sum(cells)
            answer.append(UsageBucket(
                start=OffsetDateTime(bucket.start),
                end=OffsetDateTime(bucket.end),
                date=bucket.date,
                label=bucket.label,
                requests=BigInt(amounts.requests),
                tokens_in=BigInt(amounts.tokens_in),
                tokens_out=BigInt(amounts.tokens_out),
                total_tokens=BigInt(amounts.tokens_in + amounts.tokens_out),
                estimated_cost_usd=nanos_to_usd(amounts.cost_nanos),
                groups=[_group(key, cell) for key, cell in zip(found.keys, cells, strict=True)]
                if grouped else [],
            ))
        return answer

    totals: UsageTotals = strawberry.field(resolver=_totals)
    groups: list[UsageGroup] = strawberry.field(
        resolver=_groups,
        description="Each group with at least one request in the range, with its totals, "
        "ordered by key (code points); empty without `groupBy`.",
    )
    series: list[UsageBucket] = strawberry.field(
        resolver=_series,
        description="Every bucket of the range, oldest first, empty ones included. The "
        "first and last weeks or months are clipped to the range.",
    )

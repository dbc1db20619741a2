"""Types of ``usage(...)``: usage at any grain, zone and range, totals and a zero-filled series.

Measures keep the metrics pages' names (``requests``, ``tokensIn``,
``tokensOut``, ``totalTokens``, ``estimatedCostUsd``), so a chart reads the
same fields from ``usageTimeseries`` and from here.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import strawberry

from meterql.buckets import Granularity as GranularityValue
from meterql.db.series import GroupBy
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


@strawberry.type(description="Usage over a range of local dates, in total, per group and "
                 "per bucket.")
class Usage:
    from_: date = strawberry.field(name="from", description="First local date, included.")
    to: date = strawberry.field(description="Last local date, included.")
    time_zone: str
    granularity: Granularity  # type: ignore[valid-type]
    group_by: UsageGroupBy | None  # type: ignore[valid-type]
    start: OffsetDateTime
    end: OffsetDateTime
    totals: UsageTotals
    groups: list[UsageGroup] = strawberry.field(
        description="Each group with at least one request in the range, with its totals, "
        "ordered by key (code points); empty without `groupBy`."
    )
    series: list[UsageBucket] = strawberry.field(
        description="Every bucket of the range, oldest first, empty ones included. The "
        "first and last weeks or months are clipped to the range."
    )

"""Metrics root fields: ``days`` → window → one query → schema types."""

from __future__ import annotations

from strawberry import Info

from meterql.context import Context
from meterql.db import usage
from meterql.money import nanos_to_usd, percentage
from meterql.schema.metrics import (
    InstanceUsage,
    InstanceUsageList,
    MetricsSummary,
    ModelBreakdown,
    ModelUsage,
    UsagePoint,
    UsageTimeseries,
)
from meterql.schema.scalars import BigInt
from meterql.windows import METRICS_DAYS, DayWindow


def metrics_window(context: Context, days: int) -> DayWindow:
    return DayWindow.ending_today(context.now, METRICS_DAYS.validate(days))


async def metrics_summary(
    info: Info[Context, None], days: int = METRICS_DAYS.default
) -> MetricsSummary:
    context = info.context.require("read")
    window = metrics_window(context, days)
    totals = await usage.totals(context.reader, context.account_id, window)
    return MetricsSummary(
        active_instances=totals.instances,
        estimated_cost_usd=nanos_to_usd(totals.cost_nanos),
        period_days=days,
        total_requests=BigInt(totals.requests),
        total_tokens=BigInt(totals.tokens_in + totals.tokens_out),
        total_tokens_in=BigInt(totals.tokens_in),
        total_tokens_out=BigInt(totals.tokens_out),
        unique_models=totals.models,
    )


async def instance_usage(
    info: Info[Context, None], days: int = METRICS_DAYS.default
) -> InstanceUsageList:
    context = info.context.require("read")
    window = metrics_window(context, days)
    rows = await usage.per_instance(context.reader, context.account_id, window)
    return InstanceUsageList(
        instances=[
            InstanceUsage(
                estimated_cost_usd=nanos_to_usd(row.cost_nanos),
                hostname=row.hostname,
                instance_id=row.instance_id,
                request_count=BigInt(row.requests),
                status=row.status,
                total_tokens=BigInt(row.tokens_in + row.tokens_out),
            )
            for row in rows
        ],
        total_count=len(rows),
    )


async def model_breakdown(
    info: Info[Context, None], days: int = METRICS_DAYS.default
) -> ModelBreakdown:
    context = info.context.require("read")
    window = metrics_window(context, days)
    rows = await usage.per_model(context.reader, context.account_id, window)
    total_requests = sum(row.requests for row in rows)
    return ModelBreakdown(
        models=[
            ModelUsage(
                estimated_cost_usd=nanos_to_usd(row.cost_nanos),
                model=row.model,
                pct_of_total=percentage(row.requests, total_requests),
                provider=row.provider,
                request_count=BigInt(row.requests),
                tokens_in=BigInt(row.tokens_in),
                tokens_out=BigInt(row.tokens_out),
            )
            for row in rows
        ],
        total_requests=BigInt(total_requests),
    )


async def usage_timeseries(
    info: Info[Context, None], days: int = METRICS_DAYS.default
) -> UsageTimeseries:
    context = info.context.require("read")
    window = metrics_window(context, days)
    days_rows = await usage.per_day(context.reader, context.account_id, window)
    return UsageTimeseries(
        period_days=days,
        points=[
            UsagePoint(
                date=row.day,
                estimated_cost_usd=nanos_to_usd(row.cost_nanos),
                requests=BigInt(row.requests),
                tokens_in=BigInt(row.tokens_in),
                tokens_out=BigInt(row.tokens_out),
            )
            for row in days_rows
        ],
    )

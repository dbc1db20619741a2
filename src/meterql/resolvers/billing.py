"""Billing root fields: the plan, the billing period's usage, the trial, the chart."""

from __future__ import annotations

from dataclasses import dataclass

from strawberry import Info

from meterql.context import Context
from meterql.db import usage
from meterql.db.accounts import AccountState
from meterql.errors import InstanceNotFound
from meterql.money import cents_to_usd, nanos_to_usd, percentage
from meterql.plans import EffectivePlan, effective_plan, subscribed_tier_ids
from meterql.records import is_valid_id
from meterql.resolvers.batches import period_usages, plan_of, state_of
from meterql.resolvers.selection import raw, selects
from meterql.schema.billing import (
    Billing,
    BillingPeriodUsage,
    BillingUsage,
    ChartPoint,
    InstanceBilling,
    Plan,
    TrialStatus,
    UsageChart,
)
from meterql.schema.scalars import BigInt
from meterql.windows import CHART_DAYS, DayWindow, whole_days_until


def to_plan(plan: EffectivePlan, context: Context) -> Plan:
    """The ``Plan`` of ``billing`` and ``viewer`` alike."""
    tier = plan.tier
    return Plan(
        api_call_limit=BigInt(tier.api_call_limit),
        billing_cycle=tier.billing_cycle,
        conversation_limit=BigInt(tier.conversation_limit),
        current_period_end=plan.period_end,
        current_period_start=plan.period_start,
        instance_limit=BigInt(tier.instance_limit),
        max_sites_per_node=BigInt(tier.max_sites_per_node),
        plan_name=tier.plan_name,
        price_cents=BigInt(tier.price_cents),
        product_name=tier.product_name,
        status=plan.status,
        tier_id=tier.tier_id,
        tier_slug=tier.tier_slug,
        token_allowance=BigInt(tier.token_allowance),
        trial_days_remaining=whole_days_until(plan.trial_ends_at, context.now),
        trial_ends_at=plan.trial_ends_at,
    )


@dataclass(frozen=True, slots=True)
class _Period:
    """The account's state, the plan it gives, and its billing period's usage."""

    state: AccountState
    plan: EffectivePlan
    usage: usage.PeriodUsage | usage.PeriodTotals


async def _billing_period(context: Context, *, by_instance: bool = False) -> _Period:
    # The subscriptions came with the token: one statement, the period's usage
    # (one for all the fields of the request that ask for it), split by
    # instance only if one of them asks for that.
    state = await state_of(context)
    plan = effective_plan(state.subscriptions, context.settings.free_plan, context.now)
    period = await context.loaders.load(
        period_usages, (plan.period_start, plan.period_end, by_instance)
    )
    return _Period(state, plan, period)


async def billing(info: Info[Context, None]) -> Billing:
    context = info.context.require("read")
    period = await _billing_period(context)
    plan, totals, hosting = period.plan, period.usage.totals, period.state.hosting
    tier = plan.tier
    platform_cost = cents_to_usd(tier.price_cents)
    return Billing(
        plan=to_plan(plan, context),
        subscribed_tier_ids=subscribed_tier_ids(period.state.subscriptions),
        usage=BillingPeriodUsage(
            active_instances=totals.instances,
            api_call_limit=BigInt(tier.api_call_limit),
            conversation_limit=BigInt(tier.conversation_limit),
            instance_limit=BigInt(tier.instance_limit),
            max_sites_per_node=BigInt(tier.max_sites_per_node),
            platform_cost_usd=platform_cost,
            token_allowance=BigInt(tier.token_allowance),
            total_cost_usd=platform_cost + nanos_to_usd(totals.cost_nanos),
            total_hosted_sites=BigInt(hosting.sites),
            total_requests=BigInt(totals.requests),
            total_tokens=BigInt(totals.tokens_in + totals.tokens_out),
            unique_end_users=period.usage.end_users,
            webhost_nodes=hosting.nodes,
        ),
    )


async def trial_status(info: Info[Context, None]) -> TrialStatus:
    context = info.context.require("read")
    plan = await plan_of(context)
    ends = plan.trial_ends_at
    return TrialStatus(
        plan_name=plan.tier.plan_name,
        status=plan.status,
        trial_days_remaining=whole_days_until(ends, context.now),
        trial_ends_at=ends,
        trial_expired=ends is not None and ends <= context.now,
        upgrade_url=context.settings.upgrade_url,
    )


async def billing_usage(info: Info[Context, None]) -> BillingUsage:
    context = info.context.require("read")
    by_instance = selects(raw(info), "byInstance")
    period = await _billing_period(context, by_instance=by_instance)
    plan, totals = period.plan, period.usage.totals
    tier = plan.tier
    platform_cost = cents_to_usd(tier.price_cents)
    total_tokens = totals.tokens_in + totals.tokens_out
    # Not asked for, not read (and never shown).
    rows = period.usage.by_instance if isinstance(period.usage, usage.PeriodUsage) else []
    return BillingUsage(
        by_instance=[
            InstanceBilling(
                cost_usd=nanos_to_usd(row.cost_nanos),
                hostname=row.hostname,
                instance_id=row.instance_id,
                requests=BigInt(row.requests),
                tokens=BigInt(row.tokens_in + row.tokens_out),
            )
            for row in rows
        ],
        period_end=plan.period_end,
        period_start=plan.period_start,
        platform_cost_usd=platform_cost,
        token_allowance_monthly=BigInt(tier.token_allowance),
        token_usage_pct=percentage(total_tokens, tier.token_allowance),
        total_cost_usd=platform_cost + nanos_to_usd(totals.cost_nanos),
        total_requests=BigInt(totals.requests),
        total_tokens=BigInt(total_tokens),
        unique_end_users=period.usage.end_users,
    )


async def usage_chart(
    info: Info[Context, None],
    days: int = CHART_DAYS.default,
    instance_id: str | None = None,
) -> UsageChart:
    """Daily usage of the account, or of one of its instances.

    An empty ``instance_id`` means the whole account, as the old service's
    ``if instance_id:`` did. One that is no valid id at all (a NUL byte, a
    lone surrogate, too long) is not looked up: no instance has it, and
    PostgreSQL would refuse it as a parameter.
    """
    context = info.context.require("read")
    window = DayWindow.ending_today(context.now, CHART_DAYS.validate(days))
    instance = instance_id or None
    if instance is None:
        rows = await usage.per_day(context.reader, context.account_id, window)
    else:
        found = (
            await usage.instance_per_day(context.reader, context.account_id, window, instance)
            if is_valid_id(instance) else None
        )
        if found is None:
            # The same answer whether another account owns it or nobody does.
            raise InstanceNotFound()
        rows = found
    return UsageChart(
        period_label=f"Last {days} days",
        points=[
            ChartPoint(
                cost_usd=nanos_to_usd(row.cost_nanos),
                date=row.day,
                requests=BigInt(row.requests),
                tokens=BigInt(row.tokens_in + row.tokens_out),
            )
            for row in rows
        ],
    )

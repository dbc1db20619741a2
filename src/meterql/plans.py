"""Which plan an account is on: the primary subscription, or the free defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from meterql.config import FreePlan
from meterql.db.accounts import SubscriptionRow, TierRow
from meterql.windows import calendar_month

NO_PLAN_NAME = "No Plan"
NO_PLAN_STATUS = "none"


@dataclass(frozen=True, slots=True)
class EffectivePlan:
    tier: TierRow
    status: str
    period_start: datetime
    period_end: datetime
    trial_ends_at: datetime | None


def primary(subscriptions: Sequence[SubscriptionRow]) -> SubscriptionRow | None:
    """The live subscription with the latest period start.

    Ties go to the highest price, then the smallest tier id (code-point order).
    The caller passes live subscriptions only.
    """
    if not subscriptions:
        return None
    # Sort ascending by the tie-breaks first, then stably by the main keys.
    ordered = sorted(subscriptions, key=lambda s: s.tier.tier_id)
    ordered.sort(key=lambda s: (s.current_period_start, s.tier.price_cents), reverse=True)
    return ordered[0]


def free_tier(free: FreePlan) -> TierRow:
    return TierRow(
        tier_id="",
        tier_slug="",
        product_name="",
        plan_name=NO_PLAN_NAME,
        price_cents=0,
        billing_cycle="",
        api_call_limit=free.api_call_limit,
        conversation_limit=free.conversation_limit,
        instance_limit=free.instance_limit,
        max_sites_per_node=free.max_sites_per_node,
        token_allowance=free.token_allowance,
    )


def effective_plan(
    subscriptions: Sequence[SubscriptionRow], free: FreePlan, now: datetime
) -> EffectivePlan:
    chosen = primary(subscriptions)
    if chosen is None:
        start, end = calendar_month(now)
        return EffectivePlan(free_tier(free), NO_PLAN_STATUS, start, end, None)
    return EffectivePlan(
        tier=chosen.tier,
        status=chosen.status,
        period_start=chosen.current_period_start,
        period_end=chosen.current_period_end,
        trial_ends_at=chosen.trial_ends_at,
    )


def subscribed_tier_ids(subscriptions: Sequence[SubscriptionRow]) -> list[str]:
    return sorted({s.tier.tier_id for s in subscriptions})

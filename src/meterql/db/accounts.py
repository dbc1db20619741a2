"""Read queries about an account itself: its token, plans and hosting nodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.db.tables import ApiToken, Subscription, Tier, WebhostNode
from meterql.db.writes import hash_token
from meterql.records import LIVE_STATUSES


@dataclass(frozen=True, slots=True)
class TokenGrant:
    account_id: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class TierRow:
    tier_id: str
    tier_slug: str
    product_name: str
    plan_name: str
    price_cents: int
    billing_cycle: str
    api_call_limit: int
    conversation_limit: int
    instance_limit: int
    max_sites_per_node: int
    token_allowance: int


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    tier: TierRow
    status: str
    current_period_start: datetime
    current_period_end: datetime
    trial_ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class Hosting:
    nodes: int
    sites: int


async def grant_for_token(session: AsyncSession, token: str) -> TokenGrant | None:
    """The account and scopes of a live token; ``None`` if unknown or revoked."""
    row = (
        await session.execute(
            select(ApiToken.account_id, ApiToken.scopes).where(
                ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    return TokenGrant(row[0], frozenset(filter(None, row[1].split(","))))


async def live_subscriptions(session: AsyncSession, account_id: str) -> list[SubscriptionRow]:
    rows = await session.execute(
        select(Subscription, Tier)
        .join(Tier, Tier.tier_id == Subscription.tier_id)
        .where(Subscription.account_id == account_id, Subscription.status.in_(LIVE_STATUSES))
    )
    return [
        SubscriptionRow(
            tier=TierRow(
                tier_id=tier.tier_id,
                tier_slug=tier.tier_slug,
                product_name=tier.product_name,
                plan_name=tier.plan_name,
                price_cents=tier.price_cents,
                billing_cycle=tier.billing_cycle,
                api_call_limit=tier.api_call_limit,
                conversation_limit=tier.conversation_limit,
                instance_limit=tier.instance_limit,
                max_sites_per_node=tier.max_sites_per_node,
                token_allowance=tier.token_allowance,
            ),
            status=sub.status,
            current_period_start=sub.current_period_start,
            current_period_end=sub.current_period_end,
            trial_ends_at=sub.trial_ends_at,
        )
        for sub, tier in rows
    ]


async def hosting(session: AsyncSession, account_id: str) -> Hosting:
    row = (
        await session.execute(
            select(
                func.count(WebhostNode.node_id),
                func.coalesce(func.sum(WebhostNode.hosted_sites), 0),
            ).where(WebhostNode.account_id == account_id)
        )
    ).one()
    return Hosting(nodes=int(row[0]), sites=int(row[1]))

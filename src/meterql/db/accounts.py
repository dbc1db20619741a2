"""Read queries about an account itself: its token, plans and hosting nodes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import BindParameter, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from meterql.db.tables import ApiToken, Subscription, Tier, WebhostNode
from meterql.db.writes import hash_token
from meterql.records import LIVE_STATUSES


@dataclass(frozen=True, slots=True)
class TokenGrant:
    account_id: str
    scopes: frozenset[str]
    # The token it came from, hashed: to check again that it is still live.
    token_hash: str = ""


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


TOKENS = ApiToken.__table__.c
SUBSCRIPTIONS = Subscription.__table__.c
TIERS = Tier.__table__.c
NODES = WebhostNode.__table__.c
_ACCOUNT: BindParameter[str] = bindparam("account")

# Built once: the token lookup runs on every request.
_GRANT = select(TOKENS.account_id, TOKENS.scopes).where(
    TOKENS.token_hash == bindparam("token_hash"), TOKENS.revoked_at.is_(None)
)


async def grant_for_token(connection: AsyncConnection, token: str) -> TokenGrant | None:
    """The account and scopes of a live token; ``None`` if unknown or revoked."""
    return await grant_for_hash(connection, hash_token(token))


async def grant_for_hash(connection: AsyncConnection, token_hash: str) -> TokenGrant | None:
    """:func:`grant_for_token`, for a token known by its hash (a grant's, checked again)."""
    row = (await connection.execute(_GRANT, {"token_hash": token_hash})).first()
    if row is None:
        return None
    return TokenGrant(row[0], frozenset(filter(None, row[1].split(","))), token_hash)


_TIER_FIELDS = [f.name for f in fields(TierRow)]
_LIVE_SUBSCRIPTIONS = (
    select(
        *(TIERS[name] for name in _TIER_FIELDS),
        SUBSCRIPTIONS.status,
        SUBSCRIPTIONS.current_period_start,
        SUBSCRIPTIONS.current_period_end,
        SUBSCRIPTIONS.trial_ends_at,
    )
    .join_from(Subscription.__table__, Tier.__table__, TIERS.tier_id == SUBSCRIPTIONS.tier_id)
    .where(SUBSCRIPTIONS.account_id == _ACCOUNT, SUBSCRIPTIONS.status.in_(LIVE_STATUSES))
)


async def live_subscriptions(
    connection: AsyncConnection, account_id: str
) -> list[SubscriptionRow]:
    tiers = len(_TIER_FIELDS)
    return [
        SubscriptionRow(TierRow(*row[:tiers]), *row[tiers:])
        for row in await connection.execute(_LIVE_SUBSCRIPTIONS, {"account": account_id})
    ]


_HOSTING = select(func.count(NODES.node_id), func.coalesce(func.sum(NODES.hosted_sites), 0)).where(
    NODES.account_id == _ACCOUNT
)


async def hosting(connection: AsyncConnection, account_id: str) -> Hosting:
    row = (await connection.execute(_HOSTING, {"account": account_id})).one()
    return Hosting(nodes=int(row[0]), sites=int(row[1]))

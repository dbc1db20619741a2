"""Read queries about an account itself: its token, plans and hosting nodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    FromClause,
    Select,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from meterql.db.reads import Reader
from meterql.db.tables import Account, ApiToken, Subscription, Tier, WebhostNode
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


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the billing rules need of an account: its live subscriptions and hosting.

    With what an answer's ETag needs besides (``web/etags.py``): the data
    version, and the trial ends of all its subscriptions, live or not, whose
    countdowns answers show.
    """

    subscriptions: list[SubscriptionRow]
    hosting: Hosting
    # Replaced by every write that can change one of its answers (0: none yet).
    version: int = 0
    trial_ends: tuple[datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    """A live token's grant, and its account's state, read in one round trip."""

    grant: TokenGrant
    state: AccountState


ACCOUNTS = Account.__table__.c
TOKENS = ApiToken.__table__.c
SUBSCRIPTIONS = Subscription.__table__.c
TIERS = Tier.__table__.c
NODES = WebhostNode.__table__.c
_ACCOUNT: BindParameter[str] = bindparam("account")
_TOKEN_HASH: BindParameter[str] = bindparam("token_hash")


def is_live(status: Any) -> ColumnElement[bool]:
    """``status`` is one of the live statuses (comparisons, not an ``IN`` list, so that
    the statement holds its values and compiles once)."""
    return or_(*(status == live for live in LIVE_STATUSES))


_GRANT = select(TOKENS.account_id, TOKENS.scopes).where(
    TOKENS.token_hash == _TOKEN_HASH, TOKENS.revoked_at.is_(None)
)

_TIER_FIELDS = [f.name for f in fields(TierRow)]


def _with_state(base: FromClause, account: Any) -> Select[Any]:
    """``account``'s hosting sums, data version and subscriptions (one row each, live or
    not, or one row of NULLs without any), joined to ``base``, which names the account."""
    nodes = select(func.count(NODES.node_id)).where(NODES.account_id == account)
    sites = select(func.coalesce(func.sum(NODES.hosted_sites), 0)).where(
        NODES.account_id == account
    )
    # Its own name for the table: ``base`` may be ``accounts`` itself.
    owner = Account.__table__.alias("owner")
    version = select(owner.c.data_version).where(owner.c.account_id == account)
    # Two outer joins, not one to the join of subscriptions and tiers: SQLite
    # builds such a parenthesised join whole, every subscription of every
    # account, before it looks for this one's (25 ms a request with 20,000
    # accounts, against 15 µs). A subscription's tier always exists (a foreign
    # key), so the answer is the same.
    subscribed = base.outerjoin(
        Subscription.__table__, SUBSCRIPTIONS.account_id == account
    ).outerjoin(Tier.__table__, TIERS.tier_id == SUBSCRIPTIONS.tier_id)
    return select(
        nodes.scalar_subquery(),
        sites.scalar_subquery(),
        version.scalar_subquery(),
        SUBSCRIPTIONS.status,
        *(TIERS[name] for name in _TIER_FIELDS),
        SUBSCRIPTIONS.current_period_start,
        SUBSCRIPTIONS.current_period_end,
        SUBSCRIPTIONS.trial_ends_at,
    ).select_from(subscribed)


# The request's first round trip: the token, and, if it is live, its account's
# plan and hosting, which most answers need and every billing answer does.
_SESSION = (
    _with_state(ApiToken.__table__, TOKENS.account_id)
    .add_columns(TOKENS.account_id, TOKENS.scopes)
    .where(TOKENS.token_hash == _TOKEN_HASH, TOKENS.revoked_at.is_(None))
)
_STATE = _with_state(Account.__table__, ACCOUNTS.account_id).where(
    ACCOUNTS.account_id == _ACCOUNT
)


def _state(rows: Sequence[Sequence[Any]]) -> AccountState:
    tiers = len(_TIER_FIELDS)
    subscriptions = [
        SubscriptionRow(TierRow(*row[4:4 + tiers]), row[3], *row[4 + tiers:7 + tiers])
        for row in rows if row[3] in LIVE_STATUSES
    ]
    first = rows[0] if rows else (0, 0, 0)
    trial_ends = tuple(sorted(row[6 + tiers] for row in rows
                              if row[3] is not None and row[6 + tiers] is not None))
    return AccountState(subscriptions, Hosting(nodes=int(first[0]), sites=int(first[1])),
                        version=int(first[2] or 0), trial_ends=trial_ends)


def _grant(account_id: str, scopes: str, token_hash: str) -> TokenGrant:
    return TokenGrant(account_id, frozenset(filter(None, scopes.split(","))), token_hash)


async def session(reader: Reader, token: str) -> Session | None:
    """The token's grant and its account's state; ``None`` if unknown or revoked."""
    token_hash = hash_token(token)
    rows = await reader.fetch(_SESSION, {"token_hash": token_hash})
    if not rows:
        return None
    account_id, scopes = rows[0][-2:]
    return Session(_grant(account_id, scopes, token_hash), _state([row[:-2] for row in rows]))


async def grant_for_hash(reader: Reader, token_hash: str) -> TokenGrant | None:
    """The grant of a token known by its hash (a grant's, checked again): ``None`` if revoked."""
    rows = await reader.fetch(_GRANT, {"token_hash": token_hash})
    return _grant(rows[0][0], rows[0][1], token_hash) if rows else None


async def account_state(reader: Reader, account_id: str) -> AccountState:
    """The live subscriptions and hosting of an account (empty for an unknown one)."""
    return _state(await reader.fetch(_STATE, {"account": account_id}))


async def earliest_live_period_start(engine: AsyncEngine) -> datetime | None:
    """The start of the oldest billing period a live subscription is in now, if any.

    Raw-event retention keeps the events from there on: a billing answer
    counts its period's end users and its edge minutes from them.
    """
    async with engine.connect() as connection:
        start: datetime | None = await connection.scalar(
            select(func.min(SUBSCRIPTIONS.current_period_start)).where(
                is_live(SUBSCRIPTIONS.status)
            )
        )
    return start

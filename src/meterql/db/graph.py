"""Read queries behind the ``viewer`` graph: an account's subscriptions, instances,
models and hosting nodes, and the tier catalogue.

Each function is one ``SELECT`` whatever the number of rows, built once at
import with named parameters, and returns plain dataclasses. Lists are put
in code-point order here, in Python, where SQL would follow the server's
collation (``docs/decisions.md``, "Sorting ties") -- except the instance
page, whose keyset must be ordered and compared by the database itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Select, bindparam, func, select

from meterql.db.accounts import NODES, SUBSCRIPTIONS, TIERS, TierRow
from meterql.db.dialect import in_list
from meterql.db.reads import Reader
from meterql.db.tables import Instance, ModelPrice, UsageModelDay
from meterql.records import LIVE_STATUSES

INSTANCES = Instance.__table__.c
MODELS = ModelPrice.__table__.c
MODEL_DAYS = UsageModelDay.__table__.c

_ACCOUNT: BindParameter[str] = bindparam("account")


@dataclass(frozen=True, slots=True)
class AccountSubscriptionRow:
    """A subscription of any status; its tier is looked up by id (a DataLoader)."""

    tier_id: str
    status: str
    current_period_start: datetime
    current_period_end: datetime
    trial_ends_at: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceRow:
    instance_id: str
    hostname: str
    status: str


@dataclass(frozen=True, slots=True)
class ModelRow:
    """A model the account has used; prices are ``None`` for a model without one."""

    model: str
    provider: str
    input_nanos_per_mtok: int | None
    output_nanos_per_mtok: int | None


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    hosted_sites: int


# --- tiers: the catalogue, shared by every account -----------------------------------------

_TIER_COLUMNS = [TIERS[f.name] for f in fields(TierRow)]
_ALL_TIERS = select(*_TIER_COLUMNS)
_TIERS_BY_ID = select(*_TIER_COLUMNS).where(
    in_list(TIERS.tier_id, "tier_ids")
)


async def tiers_by_id(reader: Reader, tier_ids: Sequence[str]) -> dict[str, TierRow]:
    """The tiers among ``tier_ids`` that exist, by id."""
    if not tier_ids:
        return {}
    result = await reader.fetch(_TIERS_BY_ID, {"tier_ids": list(tier_ids)})
    return {row[0]: TierRow(*row) for row in result}


async def all_tiers(reader: Reader) -> list[TierRow]:
    """Every tier, cheapest first, then by tier id."""
    tiers = [TierRow(*row) for row in await reader.fetch(_ALL_TIERS, {})]
    tiers.sort(key=lambda t: (t.price_cents, t.tier_id))
    return tiers


# --- the account's own rows -----------------------------------------------------------------

_SUBSCRIPTIONS = select(
    SUBSCRIPTIONS.tier_id,
    SUBSCRIPTIONS.status,
    SUBSCRIPTIONS.current_period_start,
    SUBSCRIPTIONS.current_period_end,
    SUBSCRIPTIONS.trial_ends_at,
).where(SUBSCRIPTIONS.account_id == _ACCOUNT)


async def subscriptions(
    reader: Reader, account_id: str
) -> list[AccountSubscriptionRow]:
    """Every subscription of the account, whatever its status.

    Live ones first (what a billing page shows on top), then the latest
    period first, then by tier id.
    """
    rows = [
        AccountSubscriptionRow(*row)
        for row in await reader.fetch(_SUBSCRIPTIONS, {"account": account_id})
    ]
    # Stable sorts, the last key first.
    rows.sort(key=lambda s: s.tier_id)
    rows.sort(key=lambda s: s.current_period_start, reverse=True)
    rows.sort(key=lambda s: s.status not in LIVE_STATUSES)
    return rows


def _instance_filter(by_status: bool) -> list[Any]:
    where: list[Any] = [INSTANCES.account_id == _ACCOUNT]
    if by_status:
        where.append(INSTANCES.status == bindparam("status"))
    return where


@cache
def _instance_page(code_points: bool, by_status: bool) -> Select[Any]:
    """The account's instances after ``:after`` in id order, at most ``:limit`` of them.

    A keyset, not an offset: a page costs the same deep in the list, and an
    instance added meanwhile neither shifts nor repeats the pages after it.
    PostgreSQL compares and sorts under ``COLLATE "C"`` (code points, as
    SQLite's default BINARY collation does), so the cursors' order is the
    same on both backends whatever the server's collation.
    """
    key: Any = INSTANCES.instance_id.collate("C") if code_points else INSTANCES.instance_id
    return (
        select(INSTANCES.instance_id, INSTANCES.hostname, INSTANCES.status)
        .where(*_instance_filter(by_status), key > bindparam("after"))
        .order_by(key)
        .limit(bindparam("limit"))
    )


@cache
def _instance_count(by_status: bool) -> Select[Any]:
    return select(func.count()).select_from(Instance.__table__).where(*_instance_filter(by_status))


async def instance_page(
    reader: Reader, account_id: str, status: str | None, after: str, limit: int
) -> list[InstanceRow]:
    """Up to ``limit`` instances (of ``status``, if given) whose id sorts after ``after``.

    ``after=""`` starts at the beginning: no instance id is empty.
    """
    statement = _instance_page(reader.dialect == "postgresql", status is not None)
    params: dict[str, Any] = {"account": account_id, "after": after, "limit": limit}
    if status is not None:
        params["status"] = status
    return [InstanceRow(*row) for row in await reader.fetch(statement, params)]


async def instance_count(reader: Reader, account_id: str, status: str | None) -> int:
    params: dict[str, Any] = {"account": account_id}
    if status is not None:
        params["status"] = status
    (row,) = await reader.fetch(_instance_count(status is not None), params)
    return int(row[0])


# Every model with usage at any time, from the day rollup (a few rows per
# day), with its current price if it has one.
_USED = select(MODEL_DAYS.model).where(MODEL_DAYS.account_id == _ACCOUNT).distinct().subquery()
_MODELS = select(
    _USED.c.model,
    func.coalesce(MODELS.provider, ""),
    MODELS.input_nanos_per_mtok,
    MODELS.output_nanos_per_mtok,
).join_from(_USED, ModelPrice.__table__, MODELS.model == _USED.c.model, isouter=True)


async def used_models(reader: Reader, account_id: str) -> list[ModelRow]:
    """Every model the account has usage of, by name."""
    rows = [ModelRow(*row) for row in await reader.fetch(_MODELS, {"account": account_id})]
    rows.sort(key=lambda m: m.model)
    return rows


_NODES = select(NODES.node_id, NODES.hosted_sites).where(NODES.account_id == _ACCOUNT)


async def webhost_nodes(reader: Reader, account_id: str) -> list[NodeRow]:
    """The account's hosting nodes, by node id."""
    rows = [
        NodeRow(row[0], int(row[1]))
        for row in await reader.fetch(_NODES, {"account": account_id})
    ]
    rows.sort(key=lambda n: n.node_id)
    return rows


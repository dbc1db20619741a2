"""Read queries over usage events: totals, per instance, per model, per day.

Every function here is one ``SELECT`` whatever the number of instances,
models or days, takes a half-open ``[start, end)`` range of instants, and
returns plain dataclasses, never ORM rows. Sums come back as Python ints
(PostgreSQL answers ``SUM(bigint)`` as numeric, hence the ``int()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Subquery, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.db.tables import Instance, ModelPrice, UsageEvent
from meterql.money import NANOS_PER_USD
from meterql.windows import DayWindow

E = UsageEvent


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_nanos: int = 0
    models: int = 0
    instances: int = 0
    end_users: int = 0


@dataclass(frozen=True, slots=True)
class InstanceTotals:
    instance_id: str
    hostname: str
    status: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class ModelTotals:
    model: str
    provider: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    requests: int
    tokens_in: int
    tokens_out: int
    cost_nanos: int


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


def _in_range(
    account_id: str, start: datetime, end: datetime, instance_id: str | None = None
) -> list[ColumnElement[bool]]:
    conditions = [E.account_id == account_id, E.occurred_at >= start, E.occurred_at < end]
    if instance_id is not None:
        conditions.append(E.instance_id == instance_id)
    return conditions


_REQUESTS = func.count(E.id)
_TOKENS_IN = _sum(E.tokens_in)
_TOKENS_OUT = _sum(E.tokens_out)
# Cost is summed as whole dollars and leftover nano-dollars: SQLite's SUM()
# fails past 2**63 nano-USD (9.2 billion USD), which a few extreme events
# could reach; each half stays far below that. PostgreSQL would not mind.
_COST_USD = _sum(E.cost_nanos // NANOS_PER_USD)
_COST_NANOS = _sum(E.cost_nanos % NANOS_PER_USD)


def _cost(usd: Any, nanos: Any) -> int:
    return int(usd) * NANOS_PER_USD + int(nanos)

# Empty strings are "no end user", like NULL.
_END_USERS = func.count(distinct(case((E.end_user_id != "", E.end_user_id))))


def _grouped_by(column: Any, account_id: str, start: datetime, end: datetime) -> Subquery:
    """Requests, tokens and cost per value of ``column`` in the range, as a subquery."""
    return (
        select(
            column.label("key"),
            _REQUESTS.label("requests"),
            _TOKENS_IN.label("tokens_in"),
            _TOKENS_OUT.label("tokens_out"),
            _COST_USD.label("cost_usd"),
            _COST_NANOS.label("cost_nanos"),
        )
        .where(*_in_range(account_id, start, end))
        .group_by(column)
        .subquery()
    )


async def totals(
    session: AsyncSession, account_id: str, start: datetime, end: datetime
) -> Totals:
    row = (
        await session.execute(
            select(
                _REQUESTS,
                _TOKENS_IN,
                _TOKENS_OUT,
                _COST_USD,
                _COST_NANOS,
                func.count(distinct(E.model)),
                func.count(distinct(E.instance_id)),
                _END_USERS,
            ).where(*_in_range(account_id, start, end))
        )
    ).one()
    requests, tokens_in, tokens_out, usd, nanos, models, instances, end_users = row
    return Totals(
        requests=int(requests),
        tokens_in=int(tokens_in),
        tokens_out=int(tokens_out),
        cost_nanos=_cost(usd, nanos),
        models=int(models),
        instances=int(instances),
        end_users=int(end_users),
    )


async def per_instance(
    session: AsyncSession,
    account_id: str,
    start: datetime,
    end: datetime,
    *,
    include_idle: bool,
) -> list[InstanceTotals]:
    """Usage per registered instance; ``include_idle`` keeps instances with none.

    Ordered by requests desc, then instance id in code-point order (sorted
    here rather than in SQL, whose collation differs between backends).
    """
    usage = _grouped_by(E.instance_id, account_id, start, end)
    on = Instance.instance_id == usage.c.key
    stmt = (
        select(
            Instance.instance_id,
            Instance.hostname,
            Instance.status,
            func.coalesce(usage.c.requests, 0),
            func.coalesce(usage.c.tokens_in, 0),
            func.coalesce(usage.c.tokens_out, 0),
            func.coalesce(usage.c.cost_usd, 0),
            func.coalesce(usage.c.cost_nanos, 0),
        )
        .select_from(Instance)
        .join(usage, on, isouter=include_idle)
        .where(Instance.account_id == account_id)
    )
    rows = [
        InstanceTotals(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), _cost(r[6], r[7]))
        for r in await session.execute(stmt)
    ]
    rows.sort(key=lambda r: (-r.requests, r.instance_id))
    return rows


async def per_model(
    session: AsyncSession, account_id: str, start: datetime, end: datetime
) -> list[ModelTotals]:
    """Usage per model used in the range; a model without a price has provider ``""``."""
    usage = _grouped_by(E.model, account_id, start, end)
    stmt = select(
        usage.c.key,
        func.coalesce(ModelPrice.provider, ""),
        usage.c.requests,
        usage.c.tokens_in,
        usage.c.tokens_out,
        usage.c.cost_usd,
        usage.c.cost_nanos,
    ).join(ModelPrice, ModelPrice.model == usage.c.key, isouter=True)
    rows = [
        ModelTotals(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), _cost(r[5], r[6]))
        for r in await session.execute(stmt)
    ]
    rows.sort(key=lambda r: (-r.requests, r.model))
    return rows


async def per_day(
    session: AsyncSession, account_id: str, window: DayWindow, instance_id: str | None = None
) -> list[DayTotals]:
    """One row per UTC day of the window, oldest first; days without usage are zeros."""
    stmt = (
        select(E.day, _REQUESTS, _TOKENS_IN, _TOKENS_OUT, _COST_USD, _COST_NANOS)
        .where(*_in_range(account_id, window.start, window.end, instance_id))
        .group_by(E.day)
    )
    found = {
        r[0]: DayTotals(r[0], int(r[1]), int(r[2]), int(r[3]), _cost(r[4], r[5]))
        for r in await session.execute(stmt)
    }
    return [found.get(day) or DayTotals(day, 0, 0, 0, 0) for day in window.dates()]


async def instance_exists(session: AsyncSession, account_id: str, instance_id: str) -> bool:
    found = await session.scalar(
        select(Instance.instance_id).where(
            Instance.account_id == account_id, Instance.instance_id == instance_id
        )
    )
    return found is not None

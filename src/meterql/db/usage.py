"""Read queries over usage: totals, per instance, per model, per day, end users.

Every function here is one ``SELECT`` whatever the number of events,
instances, models or days, and returns plain dataclasses, never ORM rows.
They read the rollups (``db/rollups.py``), not the events: a ``days=N``
window is N day rows of a rollup; an arbitrary range such as a billing period
is its whole days, the whole hours at its ends, and only the minutes left
over from the events themselves. Sums come back as Python ints (PostgreSQL
answers ``SUM(bigint)`` as numeric, hence the ``int()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, distinct, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.db.tables import (
    EndUser,
    Instance,
    ModelPrice,
    UsageDay,
    UsageEvent,
    UsageInstanceDay,
    UsageInstanceHour,
    UsageModelDay,
)
from meterql.money import NANOS_PER_USD
from meterql.windows import DayWindow, split_range

E = UsageEvent


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_nanos: int = 0
    models: int = 0
    instances: int = 0


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


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """Usage in an arbitrary ``[start, end)``: each instance with some, and the totals."""

    by_instance: list[InstanceTotals]
    totals: Totals


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


def _cost(usd: Any, nanos: Any) -> int:
    return int(usd) * NANOS_PER_USD + int(nanos)


def _sums(
    rollup: Any,
) -> tuple[
    ColumnElement[Any], ColumnElement[Any], ColumnElement[Any], ColumnElement[Any],
    ColumnElement[Any],
]:
    """requests, tokens in, tokens out and the two cost parts, summed over rollup rows."""
    return (
        _sum(rollup.requests),
        _sum(rollup.tokens_in),
        _sum(rollup.tokens_out),
        _sum(rollup.cost_usd),
        _sum(rollup.cost_nanos),
    )


def _in_days(rollup: Any, account_id: str, first: date, last: date) -> list[ColumnElement[bool]]:
    return [rollup.account_id == account_id, rollup.day >= first, rollup.day <= last]


def _by_instance_sorted(rows: list[InstanceTotals]) -> list[InstanceTotals]:
    # Code-point order for ties, sorted here rather than in SQL, whose
    # collation differs between backends.
    rows.sort(key=lambda r: (-r.requests, r.instance_id))
    return rows


async def totals(session: AsyncSession, account_id: str, window: DayWindow) -> Totals:
    """Totals of a ``days=N`` window, with the models and instances that had usage in it."""
    first, last = window.first_day, window.last_day
    models = (
        select(func.count(distinct(UsageModelDay.model)))
        .where(*_in_days(UsageModelDay, account_id, first, last))
        .scalar_subquery()
    )
    instances = (
        select(func.count(distinct(UsageInstanceDay.instance_id)))
        .where(*_in_days(UsageInstanceDay, account_id, first, last))
        .scalar_subquery()
    )
    row = (
        await session.execute(
            select(*_sums(UsageDay), models, instances).where(
                *_in_days(UsageDay, account_id, first, last)
            )
        )
    ).one()
    requests, tokens_in, tokens_out, usd, nanos, model_count, instance_count = tuple(row)
    return Totals(
        requests=int(requests),
        tokens_in=int(tokens_in),
        tokens_out=int(tokens_out),
        cost_nanos=_cost(usd, nanos),
        models=int(model_count),
        instances=int(instance_count),
    )


async def per_instance(
    session: AsyncSession, account_id: str, window: DayWindow
) -> list[InstanceTotals]:
    """Every registered instance with its usage in the window, idle ones included.

    Ordered by requests desc, then instance id in code-point order.
    """
    R = UsageInstanceDay
    usage = (
        select(R.instance_id.label("key"), *_sums(R))
        .where(*_in_days(R, account_id, window.first_day, window.last_day))
        .group_by(R.instance_id)
        .subquery()
    )
    stmt = (
        select(
            Instance.instance_id,
            Instance.hostname,
            Instance.status,
            *(func.coalesce(c, 0) for c in list(usage.c)[1:]),
        )
        .select_from(Instance)
        .join(usage, Instance.instance_id == usage.c.key, isouter=True)
        .where(Instance.account_id == account_id)
    )
    return _by_instance_sorted(
        [
            InstanceTotals(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), _cost(r[6], r[7]))
            for r in await session.execute(stmt)
        ]
    )


async def per_model(session: AsyncSession, account_id: str, window: DayWindow) -> list[ModelTotals]:
    """Usage per model used in the window; a model without a price has provider ``""``."""
    R = UsageModelDay
    usage = (
        select(R.model.label("key"), *_sums(R))
        .where(*_in_days(R, account_id, window.first_day, window.last_day))
        .group_by(R.model)
        .subquery()
    )
    stmt = select(
        usage.c.key, func.coalesce(ModelPrice.provider, ""), *list(usage.c)[1:]
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
    R: Any = UsageDay if instance_id is None else UsageInstanceDay
    conditions = _in_days(R, account_id, window.first_day, window.last_day)
    if instance_id is not None:
        conditions.append(R.instance_id == instance_id)
    stmt = select(
        R.day, R.requests, R.tokens_in, R.tokens_out, R.cost_usd, R.cost_nanos
    ).where(*conditions)
    found = {
        r[0]: DayTotals(r[0], int(r[1]), int(r[2]), int(r[3]), _cost(r[4], r[5]))
        for r in await session.execute(stmt)
    }
    return [found.get(day) or DayTotals(day, 0, 0, 0, 0) for day in window.dates()]


def _range_sources(account_id: str, start: datetime, end: datetime) -> list[Select[Any]]:
    """Selects of (instance, sums...) that together cover ``[start, end)`` once."""
    parts = split_range(start, end)
    sources: list[Select[Any]] = []
    if parts.days is not None:
        D = UsageInstanceDay
        sources.append(
            select(D.instance_id.label("key"), *_sums(D))
            .where(*_in_days(D, account_id, *parts.days))
            .group_by(D.instance_id)
        )
    # One select per span, never an OR of spans: each must be an index range.
    H = UsageInstanceHour
    for first_hour, end_hour in parts.hours:
        sources.append(
            select(H.instance_id.label("key"), *_sums(H))
            .where(H.account_id == account_id, H.hour >= first_hour, H.hour < end_hour)
            .group_by(H.instance_id)
        )
    for span_start, span_end in parts.instants:
        sources.append(
            select(
                E.instance_id.label("key"),
                func.count(E.id),
                _sum(E.tokens_in),
                _sum(E.tokens_out),
                # The rollups' two cost parts, taken event by event.
                _sum(E.cost_nanos // NANOS_PER_USD),
                _sum(E.cost_nanos % NANOS_PER_USD),
            )
            .where(
                E.account_id == account_id,
                E.occurred_at >= span_start,
                E.occurred_at < span_end,
            )
            .group_by(E.instance_id)
        )
    return sources


async def period_usage(
    session: AsyncSession, account_id: str, start: datetime, end: datetime
) -> PeriodUsage:
    """Usage in ``[start, end)``, per instance that had some, ordered as the routes list it."""
    sources = _range_sources(account_id, start, end)
    if not sources:
        return PeriodUsage([], Totals())
    combined = union_all(*sources).subquery()
    usage = (
        select(combined.c.key, *(_sum(c) for c in list(combined.c)[1:]))
        .group_by(combined.c.key)
        .subquery()
    )
    stmt = (
        select(Instance.instance_id, Instance.hostname, Instance.status, *list(usage.c)[1:])
        .join(usage, Instance.instance_id == usage.c.key)
        .where(Instance.account_id == account_id)
    )
    rows = _by_instance_sorted(
        [
            InstanceTotals(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), _cost(r[6], r[7]))
            for r in await session.execute(stmt)
        ]
    )
    return PeriodUsage(
        by_instance=rows,
        totals=Totals(
            requests=sum(r.requests for r in rows),
            tokens_in=sum(r.tokens_in for r in rows),
            tokens_out=sum(r.tokens_out for r in rows),
            cost_nanos=sum(r.cost_nanos for r in rows),
            instances=sum(1 for r in rows if r.requests),
        ),
    )


async def end_users(session: AsyncSession, account_id: str, start: datetime, end: datetime) -> int:
    """Distinct non-empty end users with an event in ``[start, end)``, exactly.

    While the account has no event at or after ``end`` (a current billing
    period), that is the end users last seen at or after ``start``: an index
    range count. A range in the past falls back to counting over its events.
    """
    latest = select(func.max(E.occurred_at)).where(E.account_id == account_id).scalar_subquery()
    recent = (
        select(func.count())
        .select_from(EndUser)
        .where(EndUser.account_id == account_id, EndUser.last_seen_at >= start)
        .scalar_subquery()
    )
    counted = (
        select(func.count(distinct(E.end_user_id)))
        .where(
            E.account_id == account_id,
            E.occurred_at >= start,
            E.occurred_at < end,
            E.end_user_id != "",
        )
        .scalar_subquery()
    )
    found = await session.scalar(select(case((latest < end, recent), else_=counted)))
    return int(found or 0)


async def instance_exists(session: AsyncSession, account_id: str, instance_id: str) -> bool:
    found = await session.scalar(
        select(Instance.instance_id).where(
            Instance.account_id == account_id, Instance.instance_id == instance_id
        )
    )
    return found is not None

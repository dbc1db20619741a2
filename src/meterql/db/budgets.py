"""Budgets and their alerts: every statement that reads or writes them.

Reads take a :class:`~meterql.db.reads.Reader`: the request's (``db/reads.py``)
on the read path, or :class:`InTransaction` on a write session, so that a
batch's own events, not committed yet, count toward the spent it checks.
A budget's spent is read by ``usage``'s own statement (``db/series.py``) over
the period's local dates: it is ``usage``'s total by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from meterql import buckets
from meterql.buckets import Granularity, LocalRange
from meterql.budgets import (
    Measure,
    Period,
    Rule,
    Scope,
    amount_of,
    format_thresholds,
    read_thresholds,
)
from meterql.db import series
from meterql.db.dialect import insert
from meterql.db.reads import Reader
from meterql.db.tables import Budget, BudgetAlert, Instance


class InTransaction:
    """A :class:`Reader` over a write session: reads see the transaction's own writes."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @property
    def dialect(self) -> str:
        return self._session.get_bind().dialect.name

    async def fetch(
        self, statement: Executable, params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        result = await self._session.execute(statement, dict(params))
        return result.all()


BUDGETS = cast(Table, Budget.__table__)
ALERTS = cast(Table, BudgetAlert.__table__)
INSTANCES = cast(Table, Instance.__table__)
B = BUDGETS.c
A = ALERTS.c
_ACCOUNT: BindParameter[str] = bindparam("account")

_RULES = (
    select(B.budget_id, B.name, B.scope, B.scope_key, B.measure, B.limit_amount, B.period,
           B.time_zone, B.thresholds, B.revision, B.created_at, B.watched_from)
    .where(B.account_id == _ACCOUNT)
    .order_by(B.created_at, B.budget_id)
)
_COUNT = select(func.count()).select_from(BUDGETS).where(B.account_id == _ACCOUNT)


def _rule(row: Sequence[Any]) -> Rule:
    return Rule(
        budget_id=row[0], name=row[1], scope=Scope(row[2]), scope_key=row[3],
        measure=Measure(row[4]), limit=int(row[5]), period=Period(row[6]), time_zone=row[7],
        thresholds=read_thresholds(row[8]), revision=int(row[9]), created_at=row[10],
        watched_from=row[11],
    )


async def rules(reader: Reader, account_id: str) -> list[Rule]:
    """The account's budgets, oldest first."""
    return [_rule(row) for row in await reader.fetch(_RULES, {"account": account_id})]


async def count(reader: Reader, account_id: str) -> int:
    rows = await reader.fetch(_COUNT, {"account": account_id})
    return int(rows[0][0])


def _row(account_id: str, rule: Rule) -> dict[str, Any]:
    return {
        "account_id": account_id, "budget_id": rule.budget_id, "name": rule.name,
        "scope": rule.scope.value, "scope_key": rule.scope_key, "measure": rule.measure.value,
        "limit_amount": rule.limit, "period": rule.period.value, "time_zone": rule.time_zone,
        "thresholds": format_thresholds(rule.thresholds), "revision": rule.revision,
        "created_at": rule.created_at, "watched_from": rule.watched_from,
    }


async def add(session: AsyncSession, account_id: str, rule: Rule) -> None:
    await session.execute(insert(session, BUDGETS).values(**_row(account_id, rule)))


async def replace(session: AsyncSession, account_id: str, rule: Rule) -> None:
    """Store ``rule`` over the budget of the same id (its new revision)."""
    values = _row(account_id, rule)
    del values["account_id"], values["budget_id"]
    await session.execute(
        update(BUDGETS)
        .where(B.account_id == account_id, B.budget_id == rule.budget_id)
        .values(**values)
    )


async def remove(session: AsyncSession, account_id: str, budget_id: str) -> bool:
    """Delete the budget; its alerts stay, as history. False if there was none."""
    result = await session.execute(
        delete(BUDGETS)
        .where(B.account_id == account_id, B.budget_id == budget_id)
        .returning(B.budget_id)
    )
    return result.first() is not None


async def rule_for_update(session: AsyncSession, account_id: str, budget_id: str) -> Rule | None:
    """The budget, read in the write transaction (after the account's row is held)."""
    rows = await InTransaction(session).fetch(
        _RULES.where(B.budget_id == bindparam("budget")),
        {"account": account_id, "budget": budget_id},
    )
    return _rule(rows[0]) if rows else None


# --- spent ------------------------------------------------------------------------------------

_GRAINS = {Period.DAY: Granularity.DAY, Period.WEEK: Granularity.WEEK,
           Period.MONTH: Granularity.MONTH}
# Calendar periods read together, up to a year of them per statement.
_HULL_DAYS = buckets.MAX_RANGE_DAYS


async def spent(
    reader: Reader, account_id: str, rule: Rule, periods: Sequence[LocalRange]
) -> list[int]:
    """The budget's spent in each period: ``usage``'s sums of its scope over the period.

    Calendar periods of one budget are read together, as the buckets of one
    ``usage`` statement at the period's grain over the dates they span; a
    billing period as one bucket of its own.
    """
    found: dict[LocalRange, int] = {}
    pending = sorted(set(periods), key=lambda p: p.first)
    grain = _GRAINS.get(rule.period)
    while pending:
        head = pending[0]
        if grain is None:
            group = [head]
            plan = buckets.whole(head)
        else:
            group = [p for p in pending if (p.last - head.first).days < _HULL_DAYS]
            plan = buckets.plan(LocalRange(head.first, group[-1].last, head.zone), grain)
        amounts = await _read(reader, account_id, rule, plan)
        starts = {bucket.date: n for n, bucket in enumerate(plan.buckets)}
        for period in group:
            a = amounts[starts[period.first]]
            found[period] = amount_of(rule.measure, a.requests, a.tokens_in, a.tokens_out,
                                      a.cost_nanos)
        pending = pending[len(group):]
    return [found[p] for p in periods]


async def _read(
    reader: Reader, account_id: str, rule: Rule, plan: buckets.BucketPlan
) -> list[series.Amounts]:
    found = await series.usage_series(
        reader, account_id, plan, None,
        instance_ids=[rule.scope_key] if rule.scope is Scope.INSTANCE else None,
        models=[rule.scope_key] if rule.scope is Scope.MODEL else None,
    )
    return found.values.get("") or [series.Amounts() for _ in range(plan.count)]


# --- alerts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    budget_id: str
    revision: int
    period_start: datetime
    period_end: datetime
    threshold: int
    measure: Measure
    spent: int
    limit: int
    silent: bool
    created_at: datetime


_ALERT_COLUMNS = (A.alert_id, A.budget_id, A.revision, A.period_start, A.period_end,
                  A.threshold, A.measure, A.spent_amount, A.limit_amount, A.silent,
                  A.created_at)


def _alert(row: Sequence[Any]) -> AlertRow:
    return AlertRow(row[0], row[1], int(row[2]), row[3], row[4], int(row[5]), Measure(row[6]),
                    int(row[7]), int(row[8]), bool(row[9]), row[10])


async def record(
    session: AsyncSession, account_id: str, alerts: Sequence[AlertRow]
) -> list[AlertRow]:
    """Record each alert not recorded yet (by budget, revision, period, threshold): the new ones.

    ``ON CONFLICT DO NOTHING`` on the alerts' unique index: two gateways that
    both see a threshold crossed record it once, whichever commits first.
    """
    if not alerts:
        return []
    # One statement whatever the number of rows (SQLAlchemy's "insertmanyvalues"),
    # compiled once: a batch that finds its thresholds recorded already pays little.
    statement = insert(session, ALERTS).on_conflict_do_nothing().returning(*_ALERT_COLUMNS)
    result = await session.execute(statement, [
        {"account_id": account_id, "alert_id": a.alert_id, "budget_id": a.budget_id,
         "revision": a.revision, "period_start": a.period_start, "period_end": a.period_end,
         "threshold": a.threshold, "measure": a.measure.value, "spent_amount": a.spent,
         "limit_amount": a.limit, "silent": a.silent, "created_at": a.created_at}
        for a in alerts
    ])
    return sorted((_alert(row) for row in result.all()), key=lambda a: a.alert_id)


_ALERT_PAGE = (
    select(*_ALERT_COLUMNS, B.name, B.scope, B.scope_key)
    .select_from(ALERTS.outerjoin(
        BUDGETS, (B.account_id == A.account_id) & (B.budget_id == A.budget_id)))
    .where(A.account_id == _ACCOUNT, A.silent.is_(False), A.alert_id < bindparam("before"))
    .order_by(A.alert_id.desc())
    .limit(bindparam("limit"))
)
_ALERT_COUNT = (
    select(func.count()).select_from(ALERTS)
    .where(A.account_id == _ACCOUNT, A.silent.is_(False))
)
# Above every alert id ("alt_" and digits): the first page starts here.
NEWEST = "alt_~"


@dataclass(frozen=True, slots=True)
class ListedAlert:
    alert: AlertRow
    # The budget's, while it exists (None once deleted).
    name: str | None
    scope: Scope | None
    scope_key: str | None


async def alert_page(
    reader: Reader, account_id: str, before: str, limit: int
) -> list[ListedAlert]:
    """Up to ``limit`` alerts older than ``before`` (an alert id), newest first."""
    rows = await reader.fetch(
        _ALERT_PAGE, {"account": account_id, "before": before, "limit": limit}
    )
    return [
        ListedAlert(_alert(row), row[11], None if row[12] is None else Scope(row[12]), row[13])
        for row in rows
    ]


async def alert_count(reader: Reader, account_id: str) -> int:
    rows = await reader.fetch(_ALERT_COUNT, {"account": account_id})
    return int(rows[0][0])


_INSTANCE = select(INSTANCES.c.instance_id).where(
    INSTANCES.c.account_id == _ACCOUNT,
    INSTANCES.c.instance_id == bindparam("instance"),
)


async def instance_exists(reader: Reader, account_id: str, instance_id: str) -> bool:
    return bool(await reader.fetch(_INSTANCE, {"account": account_id, "instance": instance_id}))


async def accounts_with_budgets(session: AsyncSession, account_ids: Sequence[str]) -> set[str]:
    """Which of these accounts have a budget (an import checks only those)."""
    found: set[str] = set()
    wanted = sorted(set(account_ids))
    for start in range(0, len(wanted), 500):
        result = await session.execute(
            select(B.account_id).distinct().where(B.account_id.in_(wanted[start:start + 500]))
        )
        found.update(result.scalars())
    return found

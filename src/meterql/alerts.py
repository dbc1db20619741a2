"""Budget alerts: which thresholds a write makes a budget cross, recorded in the write itself.

Every accepted batch (REST, ``recordUsage``) and every import calls
:func:`after_batch` or :func:`after_import` in its own transaction, after the
account's row is held (``writes.touch_accounts``): on PostgreSQL the batches
of one account meet there one after the other, so each reads the spent
every batch committed before it, plus its own; on SQLite there is one writer.
A threshold is recorded by the first batch that finds it crossed, and the
alerts' unique index makes a second record impossible whatever happens.

Making or editing a budget calls :func:`silence_crossed`: the thresholds its
current period has already crossed are recorded as *silent*, so an edit fires
nothing itself (``meterql.budgets`` has the rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meterql import webhooks
from meterql.buckets import LocalRange
from meterql.budgets import (
    Period,
    Rule,
    alert_id,
    billing_period,
    bounds,
    calendar_period,
    crossed,
    current_period,
    watches,
)
from meterql.config import FreePlan
from meterql.db import accounts
from meterql.db import budgets as stored
from meterql.db import webhooks as stored_webhooks
from meterql.db.budgets import AlertRow, InTransaction
from meterql.plans import effective_plan
from meterql.windows import EPOCH, QUARTER, epoch_quarter

# (instant, instance id, model) of each event a batch wrote.
Touch = tuple[datetime, str, str]


async def after_batch(
    session: AsyncSession, account_id: str, touched: Sequence[Touch], now: datetime,
    free: FreePlan,
) -> list[AlertRow]:
    """Record the alerts the batch's events make the account's budgets cross: the new ones."""
    reader = InTransaction(session)
    rules = await stored.rules(reader, account_id)
    if not rules or not touched:
        return []
    billing = await _billing_period(reader, account_id, rules, now, free)
    # Every zone's day turns on a quarter hour, so two instants of one UTC
    # quarter hour are in the same period of any budget: a batch's distinct
    # quarters (with instance and model) stand for all its events.
    distinct = {(epoch_quarter(at), instance, model) for at, instance, model in touched}
    periods: dict[str, list[LocalRange]] = {}
    for rule in rules:
        quarters = {q for q, instance, model in distinct if rule.covers(instance, model)}
        periods[rule.budget_id] = _periods(rule, [EPOCH + q * QUARTER for q in quarters],
                                           billing)
    return await _record(session, account_id, rules, periods, now)


async def after_import(
    session: AsyncSession, account_id: str, first: datetime, last: datetime, now: datetime,
    free: FreePlan,
) -> list[AlertRow]:
    """The same after an import, whose events of the account span ``[first, last]``.

    Every period of every budget in that span is checked: one with nothing
    new crosses nothing new.
    """
    reader = InTransaction(session)
    rules = await stored.rules(reader, account_id)
    if not rules:
        return []
    billing = await _billing_period(reader, account_id, rules, now, free)
    periods = {rule.budget_id: _periods_between(rule, first, last, billing) for rule in rules}
    return await _record(session, account_id, rules, periods, now)


async def silence_crossed(
    session: AsyncSession, account_id: str, rule: Rule, now: datetime, free: FreePlan
) -> None:
    """Mark the thresholds the budget's current period has crossed already as silent."""
    reader = InTransaction(session)
    billing = await _billing_period(reader, account_id, [rule], now, free)
    period = current_period(rule, now, billing)
    (spent,) = await stored.spent(reader, account_id, rule, [period])
    await stored.record(session, account_id, _crossed(rule, period, spent, now, silent=True))


def _crossed(
    rule: Rule, period: LocalRange, spent: int, now: datetime, *, silent: bool
) -> list[AlertRow]:
    """An alert row for each threshold ``spent`` has reached in ``period``."""
    start, end = bounds(period)
    return [AlertRow(alert_id(now, t), rule.budget_id, rule.revision, start, end, t,
                     rule.measure, spent, rule.limit, silent, now)
            for t in crossed(rule, spent)]


async def _billing_period(
    reader: InTransaction, account_id: str, rules: Iterable[Rule], now: datetime, free: FreePlan
) -> tuple[datetime, datetime] | None:
    if not any(rule.period is Period.BILLING_PERIOD for rule in rules):
        return None
    state = await accounts.account_state(reader, account_id)
    plan = effective_plan(state.subscriptions, free, now)
    return plan.period_start, plan.period_end


def _periods(
    rule: Rule, instants: Iterable[datetime], billing: tuple[datetime, datetime] | None
) -> list[LocalRange]:
    """The budget's periods these instants fall in, that it watches.

    Billing periods other than the current one are not known (a subscription
    keeps its current period only): an event before it alerts no billing
    period budget.
    """
    found: dict[LocalRange, None] = {}
    if rule.period is Period.BILLING_PERIOD:
        assert billing is not None
        period = billing_period(rule, *billing)
        start, end = bounds(period)
        if any(start <= at < end for at in instants):
            found[period] = None
    else:
        for at in instants:
            found.setdefault(calendar_period(rule, at))
    return [p for p in found if watches(rule, p)]


def _periods_between(
    rule: Rule, first: datetime, last: datetime, billing: tuple[datetime, datetime] | None
) -> list[LocalRange]:
    if rule.period is Period.BILLING_PERIOD:
        assert billing is not None
        period = billing_period(rule, *billing)
        start, end = bounds(period)
        return [period] if start <= last and first < end and watches(rule, period) else []
    found = []
    period = calendar_period(rule, first)
    while bounds(period)[0] <= last:
        if watches(rule, period):
            found.append(period)
        period = calendar_period(rule, bounds(period)[1])
    return found


async def _record(
    session: AsyncSession, account_id: str, rules: Sequence[Rule],
    periods: dict[str, list[LocalRange]], now: datetime,
) -> list[AlertRow]:
    reader = InTransaction(session)
    alerts: list[AlertRow] = []
    for rule in rules:
        wanted = periods.get(rule.budget_id) or []
        if not wanted:
            continue
        for period, spent in zip(wanted, await stored.spent(reader, account_id, rule, wanted),
                                 strict=True):
            alerts.extend(_crossed(rule, period, spent, now, silent=False))
    recorded = await stored.record(session, account_id, alerts)
    await _enqueue(session, account_id, rules, recorded, now)
    return recorded


async def _enqueue(
    session: AsyncSession, account_id: str, rules: Sequence[Rule], recorded: Sequence[AlertRow],
    now: datetime,
) -> None:
    """The new alerts' deliveries to the account's webhooks, in the same transaction."""
    if not any(not alert.silent for alert in recorded):
        return
    targets = await stored_webhooks.targets(session, account_id)
    if targets:
        rows = webhooks.outgoing(account_id, recorded, {r.budget_id: r for r in rules},
                                 targets, now)
        await stored_webhooks.enqueue(session, account_id, rows, now, webhooks.RETRY_FOR)

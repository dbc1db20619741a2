"""Budgets in the graph: ``viewer.budgets``, ``Instance.budgets``, ``Model.budgets``,
``viewer.alerts``, and the ``manage``-scope mutations that make, change and delete them.

A budget's answer is made of its rule (one statement for all of the
account's budgets) and its current period's usage (one statement per period
and scope kind, through ``budget_usage``): a page of budgets costs a few
statements, whatever their number. Writes hold the account's row first
(``writes.touch_accounts``), as every batch of usage does, so an edit and a
batch never see each other half done.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated

import strawberry
from strawberry import Info

from meterql import alerts, cursors
from meterql.buckets import LocalRange, refusal
from meterql.budgets import (
    MAX_BUDGETS,
    Measure,
    Period,
    Rule,
    Scope,
    amount_of,
    bounds,
    check_zone,
    crossed,
    current_period,
    forecast,
    format_amount,
    new_budget_id,
    parse_limit,
    parse_name,
    parse_thresholds,
    percent_used,
    status,
)
from meterql.context import Context
from meterql.db import budgets as stored
from meterql.db import writes
from meterql.db.budgets import NEWEST, InTransaction, ListedAlert
from meterql.errors import InstanceNotFound, NotFound
from meterql.records import is_valid_id
from meterql.resolvers.batches import budget_rules, budget_usage, plan_of
from meterql.schema.budgets import (
    Budget,
    BudgetAlert,
    BudgetAlertConnection,
    BudgetAlertEdge,
    BudgetChanges,
    BudgetInput,
)
from meterql.schema.paging import page_info
from meterql.schema.scalars import BudgetAmount, OffsetDateTime
from meterql.windows import DaysArgument

ALERT_PAGE = DaysArgument(minimum=1, maximum=100, default=20)
_ALERTS = "alerts"


class BudgetNotFound(NotFound):
    default_message = "Budget not found"


# --- reading ----------------------------------------------------------------------------------


def _amount(measure: Measure, value: int) -> BudgetAmount:
    return BudgetAmount(format_amount(measure, value))


def _keys(scope: Scope | None, key: str | None) -> tuple[str | None, str | None]:
    """A scope's key as the graph shows it: (instanceId, model)."""
    return (key if scope is Scope.INSTANCE else None, key if scope is Scope.MODEL else None)


async def _period(context: Context, rule: Rule) -> LocalRange:
    billing = None
    if rule.period is Period.BILLING_PERIOD:
        plan = await plan_of(context)
        billing = plan.period_start, plan.period_end
    return current_period(rule, context.now, billing)


async def answer(context: Context, rule: Rule) -> Budget:
    """The budget as the graph shows it: its rule and where its current period stands."""
    period = await _period(context, rule)
    used = await context.loaders.load(budget_usage, (rule.scope, rule.scope_key, period))
    spent = amount_of(rule.measure, used.requests, used.tokens_in, used.tokens_out,
                      used.cost_nanos)
    start, end = bounds(period)
    instance_id, model = _keys(rule.scope, rule.scope_key)

    def amount(value: int) -> BudgetAmount:
        return _amount(rule.measure, value)

    return Budget(
        id=strawberry.ID(rule.budget_id),
        name=rule.name,
        scope=rule.scope,
        instance_id=instance_id,
        model=model,
        measure=rule.measure,
        limit=amount(rule.limit),
        period=rule.period,
        time_zone=rule.time_zone,
        thresholds=list(rule.thresholds),
        period_start=OffsetDateTime(start.astimezone(period.zone)),
        period_end=OffsetDateTime(end.astimezone(period.zone)),
        spent=amount(spent),
        remaining=amount(max(0, rule.limit - spent)),
        percent_used=percent_used(rule, spent),
        forecast=amount(forecast(spent, period, context.now)),
        status=status(rule, spent),
        thresholds_crossed=list(crossed(rule, spent)),
        created_at=rule.created_at,
    )


async def _answers(context: Context, keep: tuple[Scope, str] | None = None) -> list[Budget]:
    rules = await context.loaders.load(budget_rules, context.account_id)
    if keep is not None:
        rules = [r for r in rules if (r.scope, r.scope_key) == keep]
    return list(await asyncio.gather(*(answer(context, rule) for rule in rules)))


async def viewer_budgets(info: Info[Context, None]) -> list[Budget]:
    return await _answers(info.context.require("read"))


async def instance_budgets(instance_id: str, info: Info[Context, None]) -> list[Budget]:
    return await _answers(info.context.require("read"), (Scope.INSTANCE, instance_id))


async def model_budgets(model: str, info: Info[Context, None]) -> list[Budget]:
    return await _answers(info.context.require("read"), (Scope.MODEL, model))


def _listed(found: ListedAlert) -> BudgetAlert:
    alert = found.alert
    instance_id, model = _keys(found.scope, found.scope_key)
    return BudgetAlert(
        id=strawberry.ID(alert.alert_id),
        budget_id=strawberry.ID(alert.budget_id),
        budget_name=found.name,
        scope=found.scope,
        instance_id=instance_id,
        model=model,
        measure=alert.measure,
        threshold=alert.threshold,
        limit=_amount(alert.measure, alert.limit),
        spent=_amount(alert.measure, alert.spent),
        period_start=alert.period_start,
        period_end=alert.period_end,
        created_at=alert.created_at,
    )


async def viewer_alerts(
    info: Info[Context, None],
    first: Annotated[int, strawberry.argument(description="Page size, 1..100.")] = (
        ALERT_PAGE.default
    ),
    after: Annotated[
        str | None, strawberry.argument(description="An `endCursor` of this very list.")
    ] = None,
) -> BudgetAlertConnection:
    context = info.context.require("read")
    size = ALERT_PAGE.validate(first, ("first",))
    before = NEWEST if after is None else cursors.decode(after, _ALERTS, None)
    rows, total = await asyncio.gather(
        stored.alert_page(context.reader, context.account_id, before, size + 1),
        stored.alert_count(context.reader, context.account_id),
    )
    shown = rows[:size]
    edges = [BudgetAlertEdge(cursor=cursors.encode(_ALERTS, None, r.alert.alert_id),
                             node=_listed(r)) for r in shown]
    return BudgetAlertConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], len(rows) > size, after),
        total_count=total,
    )


# --- writing ----------------------------------------------------------------------------------


def _scope_key(value: BudgetInput) -> str:
    scope = Scope(value.scope)
    given = {"instanceId": value.instance_id, "model": value.model}
    wanted = {Scope.INSTANCE: "instanceId", Scope.MODEL: "model"}.get(scope)
    owners = {"instanceId": Scope.INSTANCE, "model": Scope.MODEL}
    for name, found in given.items():
        if name != wanted and found is not None:
            raise refusal(("input", name), f"Only with scope {owners[name].value}", found,
                          "extra_forbidden")
    if wanted is None:
        return ""
    key = given[wanted]
    if key is None or not key or not is_valid_id(key):
        raise refusal(("input", wanted), f"Required with scope {scope.value}: an id",
                      key, "missing")
    return key


async def create_budget(info: Info[Context, None], input: BudgetInput) -> Budget:
    """A new budget (manage scope). Thresholds its period has already crossed fire nothing."""
    context = info.context.require("manage")
    measure = Measure(input.measure)
    rule = Rule(
        budget_id=new_budget_id(),
        name=parse_name(input.name, ("input", "name")),
        scope=Scope(input.scope),
        scope_key=_scope_key(input),
        measure=measure,
        limit=parse_limit(measure, input.limit, ("input", "limit")),
        period=Period(input.period),
        time_zone=check_zone(input.time_zone, ("input", "timeZone")),
        thresholds=parse_thresholds(input.thresholds, ("input", "thresholds")),
        revision=1,
        created_at=context.now,
        watched_from=context.now,
    )
    account = context.account_id
    async with context.db.write(account) as session, session.begin():
        # The account's row first: batches of usage wait here, and this waits for them.
        await writes.touch_accounts(session, [account])
        reader = InTransaction(session)
        if rule.scope is Scope.INSTANCE and not await stored.instance_exists(
            reader, account, rule.scope_key
        ):
            raise InstanceNotFound()
        if await stored.count(reader, account) >= MAX_BUDGETS:
            raise refusal(("input",), f"An account has at most {MAX_BUDGETS} budgets", None,
                          "too_many")
        await stored.add(session, account, rule)
        await alerts.silence_crossed(session, account, rule, context.now,
                                     context.settings.free_plan)
    return await answer(context, rule)


async def update_budget(
    info: Info[Context, None], id: strawberry.ID, changes: BudgetChanges
) -> Budget:
    """Change a budget's limit, thresholds or name (manage scope)."""
    context = info.context.require("manage")
    account = context.account_id
    async with context.db.write(account) as session, session.begin():
        await writes.touch_accounts(session, [account])
        rule = await stored.rule_for_update(session, account, str(id))
        if rule is None:
            raise BudgetNotFound()
        limit = (rule.limit if changes.limit is None
                 else parse_limit(rule.measure, changes.limit, ("changes", "limit")))
        thresholds = (rule.thresholds if changes.thresholds is None
                      else parse_thresholds(changes.thresholds, ("changes", "thresholds")))
        name = rule.name if changes.name is None else parse_name(changes.name, ("changes", "name"))
        rearmed = (limit, thresholds) != (rule.limit, rule.thresholds)
        updated = replace(rule, name=name, limit=limit, thresholds=thresholds)
        if rearmed:
            updated = replace(updated, revision=rule.revision + 1, watched_from=context.now)
        await stored.replace(session, account, updated)
        if rearmed:
            await alerts.silence_crossed(session, account, updated, context.now,
                                         context.settings.free_plan)
    return await answer(context, updated)


async def delete_budget(info: Info[Context, None], id: strawberry.ID) -> bool:
    """Delete a budget (manage scope); its alerts stay. False if there was no such budget."""
    context = info.context.require("manage")
    account = context.account_id
    async with context.db.write(account) as session, session.begin():
        await writes.touch_accounts(session, [account])
        return await stored.remove(session, account, str(id))

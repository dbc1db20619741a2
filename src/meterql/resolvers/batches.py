"""The batch functions behind the graph's DataLoaders (``meterql.loaders``).

Adding one (``usage_by_instance`` below, behind ``Instance.usage``, is one):

1. Write a batch function ``async def usage_by_instance(context, keys) ->
   list[...]``, one result per key, in the keys' order. Key by everything the
   answer depends on besides the account: ``(args, instance_id)`` with
   ``args`` a frozen dataclass of the field's arguments. Group the keys by
   ``args`` and run one statement per distinct ``args`` (a query asking
   two ranges costs two statements, whatever the number of instances).
2. In the field: ``await info.context.loaders.load(usage_by_instance,
   (args, self.id))``.

A batch function reads through ``context.reader``, scoped to
``context.account_id``: the loaders belong to one request, hence one
account, and never cross it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from meterql.buckets import Granularity, LocalRange
from meterql.budgets import Rule, Scope
from meterql.context import Context
from meterql.db import accounts, graph, series, usage
from meterql.db import budgets as stored_budgets
from meterql.db.accounts import AccountState, TierRow
from meterql.db.series import Amounts, GroupBy, GroupCounts, Series
from meterql.db.usage import PeriodTotals, PeriodUsage
from meterql.plans import EffectivePlan, effective_plan

# --- the viewer graph ----------------------------------------------------------------------------


async def tiers_by_id(context: Context, tier_ids: list[str]) -> list[TierRow | None]:
    """Tiers by id (the catalogue: no account to scope); ``None`` for an unknown id."""
    found = await graph.tiers_by_id(context.reader, tier_ids)
    return [found.get(tier_id) for tier_id in tier_ids]


async def account_states(context: Context, account_ids: list[str]) -> list[AccountState]:
    """The account's live subscriptions and hosting, for a context made without them.

    Keyed by the account id only so that every field wanting them shares one
    statement; the only key ever asked is the request's own account.
    """
    if any(account_id != context.account_id for account_id in account_ids):
        raise ValueError("a request loads its own account's state only")
    state = await accounts.account_state(context.reader, context.account_id)
    return [state for _ in account_ids]


async def state_of(context: Context) -> AccountState:
    """The account's live subscriptions and hosting: read with the token, as a rule."""
    if context.state is not None:
        return context.state
    return await context.loaders.load(account_states, context.account_id)


async def plan_of(context: Context) -> EffectivePlan:
    """The account's plan, by the billing route's very rule (``meterql.plans``)."""
    state = await state_of(context)
    return effective_plan(state.subscriptions, context.settings.free_plan, context.now)


async def period_usages(
    context: Context, keys: list[tuple[datetime, datetime, bool]]
) -> list[PeriodUsage | PeriodTotals]:
    """The account's usage in each ``(start, end, by_instance)``: what billing fields share.

    One statement per period: its split by instance if any field of the
    batch asks for it (its totals then serve the others too), else the
    totals alone, which read a row a day rather than one per instance and day.
    """
    split = {(start, end) for start, end, by_instance in keys if by_instance}
    found: dict[tuple[datetime, datetime], PeriodUsage | PeriodTotals] = {}
    for start, end, _ in keys:
        if (start, end) not in found:
            read = usage.period_usage if (start, end) in split else usage.period_totals
            found[start, end] = await read(context.reader, context.account_id, start, end)
    return [found[start, end] for start, end, _ in keys]


async def group_counts(context: Context, spans: list[tuple[date, date]]) -> list[GroupCounts]:
    """Instances and models with usage in each span of UTC days: bounds of ``usage`` groups.

    One statement for the batch, over the span enclosing all of them: a
    count over a wider span is still a bound for each narrower one.
    """
    first = min(span[0] for span in spans)
    last = max(span[1] for span in spans)
    counts = await series.group_counts(context.reader, context.account_id, first, last)
    return [counts for _ in spans]


async def instance_counts(context: Context, statuses: list[str | None]) -> list[int]:
    """How many instances the account has of each status (``None``: all of them)."""
    counts = {
        status: await graph.instance_count(context.reader, context.account_id, status)
        for status in dict.fromkeys(statuses)
    }
    return [counts[status] for status in statuses]


# --- usage of the graph's nodes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageArgs:
    """A ``usage`` field's arguments, validated and resolved: the args half of a loader key.

    Resolved, so that ``days: 7`` and the ``range`` it means today, or a
    default spelled out, are one key and share one statement.
    """

    range: LocalRange
    granularity: Granularity
    group_by: GroupBy | None
    # The answer shows no series (only totals, groups): read the range as one
    # bucket, whatever its grain.
    whole: bool = False

    @property
    def read_grain(self) -> Granularity | None:
        """The grain to read at: None for the range as one bucket."""
        return None if self.whole else self.granularity


async def usage_of_account(context: Context, keys: list[UsageArgs]) -> list[Series]:
    """The account's usage for each arguments: one statement per distinct arguments.

    Through a loader, like the nodes' usage, so that every ``usage`` of the
    request (aliases of the root field, the viewer's) is charged before any
    of them is read, and the same arguments asked twice are read once.
    """
    if context.points.refused:
        raise context.points.refusal()
    plans = {args: context.bucket_plan(args.range, args.read_grain) for args in keys}
    found = {
        args: await series.usage_series(context.reader, context.account_id, plan, args.group_by)
        for args, plan in plans.items()
    }
    return [found[args] for args in keys]


async def usage_by_instance(
    context: Context, keys: list[tuple[UsageArgs, str]]
) -> list[Series]:
    """Each ``(arguments, instance id)``'s usage: one statement per distinct arguments."""
    return await _usage_split(context, keys, GroupBy.INSTANCE)


async def usage_by_model(context: Context, keys: list[tuple[UsageArgs, str]]) -> list[Series]:
    """Each ``(arguments, model name)``'s usage: one statement per distinct arguments."""
    return await _usage_split(context, keys, GroupBy.MODEL)


async def _usage_split(
    context: Context, keys: list[tuple[UsageArgs, str]], split_by: GroupBy
) -> list[Series]:
    # Every node asked with the same arguments is read in one call split by
    # node (and grouped as asked inside each): never a statement per node.
    if context.points.refused:
        # A node of this batch (or any usage of the request) was refused: the
        # answer is that error, and reading the others' usage would only cost.
        raise context.points.refusal()
    nodes: dict[UsageArgs, dict[str, None]] = {}
    for args, node in keys:
        nodes.setdefault(args, {})[node] = None
    # Cut once per arguments and request (the nodes' resolvers cut them first).
    plans = {args: context.bucket_plan(args.range, args.read_grain) for args in nodes}
    found: dict[UsageArgs, dict[str, Series]] = {}
    for args, named in nodes.items():
        ids = sorted(named)
        found[args] = await series.usage_series_by(
            context.reader, context.account_id, plans[args], split_by, args.group_by,
            instance_ids=ids if split_by is GroupBy.INSTANCE else None,
            models=ids if split_by is GroupBy.MODEL else None,
        )
    # A node without usage in the range is in no row: zeros, not missing.
    return [
        found[args].get(node) or series.no_usage(plans[args], args.group_by)
        for args, node in keys
    ]


# --- budgets ----------------------------------------------------------------------------------


async def budget_rules(context: Context, account_ids: list[str]) -> list[list[Rule]]:
    """The account's budgets: one statement however many fields want them."""
    if any(account_id != context.account_id for account_id in account_ids):
        raise ValueError("a request loads its own account's budgets only")
    found = await stored_budgets.rules(context.reader, context.account_id)
    return [found for _ in account_ids]


async def budget_usage(
    context: Context, keys: list[tuple[Scope, str, LocalRange]]
) -> list[Amounts]:
    """Each (scope, instance or model, period)'s usage: one statement per period and scope kind.

    ``usage``'s own statements over the period as one bucket, so a budget's
    spent is ``usage``'s total for the same scope and dates.
    """
    wanted: dict[tuple[Scope, LocalRange], dict[str, None]] = {}
    for scope, key, period in keys:
        wanted.setdefault((scope, period), {})[key] = None
    found: dict[tuple[Scope, str, LocalRange], Amounts] = {}
    for (scope, period), named in wanted.items():
        plan = context.bucket_plan(period, None)
        if scope is Scope.ACCOUNT:
            whole = await series.usage_series(context.reader, context.account_id, plan)
            found[(scope, "", period)] = whole.values[""][0]
            continue
        split = GroupBy.INSTANCE if scope is Scope.INSTANCE else GroupBy.MODEL
        ids = sorted(named)
        by_key = await series.usage_series_by(
            context.reader, context.account_id, plan, split,
            instance_ids=ids if split is GroupBy.INSTANCE else None,
            models=ids if split is GroupBy.MODEL else None,
        )
        for key in ids:
            one = by_key.get(key)
            found[(scope, key, period)] = one.values[""][0] if one else Amounts()
    return [found[key] for key in keys]

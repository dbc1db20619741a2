"""``usage(range | days, tz, granularity, groupBy)``: arguments → bucket plan → one query → types.

Every one reads through the request's loaders: the root field (and
``viewer.usage``, the same) through ``usage_of_account``, ``instance.usage``
and ``model.usage`` through ``node_usage``, so a page of N nodes costs one
statement per distinct arguments. Each is charged to the request's point
budget before anything is read (``charge``). All of them take the very same
arguments (the ``Usage*`` aliases below), validate them alike and answer
with ``to_usage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeAlias

import strawberry
from strawberry import Info
from strawberry.types.nodes import SelectedField

from meterql import buckets
from meterql.buckets import BucketPlan, Granularity, LocalRange
from meterql.context import Context
from meterql.db import series
from meterql.db.series import GroupBy
from meterql.loaders import BatchFn
from meterql.resolvers.batches import NodeUsage, UsageArgs, group_counts, usage_of_account
from meterql.schema.usage import DateRange, Usage

# The arguments of every ``usage`` field (root, viewer, instance, model).
UsageRange: TypeAlias = Annotated[
    DateRange | None,
    strawberry.argument(name="range", description="Local dates; at most 366 days."),
]
UsageDays: TypeAlias = Annotated[
    int | None,
    strawberry.argument(description="The last N local days (1..366), today included; "
                        "30 without `range`. Not with `range`."),
]
UsageZone: TypeAlias = Annotated[
    str, strawberry.argument(description="An IANA time zone, e.g. Europe/Berlin.")
]


def _local_range(
    context: Context, date_range: DateRange | None, days: int | None, tz: str
) -> LocalRange:
    return buckets.local_range(
        tz,
        context.now,
        first=None if date_range is None else date_range.from_,
        last=None if date_range is None else date_range.to,
        days=days,
    )


def usage_args(
    info: Info[Context, None],
    date_range: DateRange | None,
    days: int | None,
    tz: str,
    granularity: Granularity,
    group_by: GroupBy | None,
) -> UsageArgs:
    """The arguments, validated (``InvalidInput`` on any fault): a loader key.

    Whether the field selects its series is part of the key: without one,
    the range is read as a whole (``UsageArgs.whole``).
    """
    local = _local_range(info.context, date_range, days, tz)
    return UsageArgs(local, granularity, group_by, whole=not shows_series(info))


def shows_series(info: Info[Context, None]) -> bool:
    """Whether this ``usage`` field's selection includes ``series``.

    Asked once per field of the query, not per node: every node of a list
    shares its field's selection, and so its operation and response path
    without the list indices.
    """
    # The operation too: one request may run several (the CSV export's do).
    path: list[object] = [id(info.operation)]
    at: Any = info.path
    while at is not None:
        if isinstance(at.key, str):
            path.append(at.key)
        at = at.prev
    key = tuple(path)
    known = info.context.series_selected.get(key)
    if known is None:
        known = info.context.series_selected[key] = any(
            _selects(field.selections, "series") for field in info.selected_fields
        )
    return known


def _selects(selections: Sequence[Any], name: str) -> bool:
    """Whether ``name`` is among the selections (through fragments), at this level."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == name:
                return True
        elif _selects(selection.selections, name):
            return True
    return False


async def charge(context: Context, plan: BucketPlan, group_by: GroupBy | None) -> None:
    """Charge the request's budget with the most points an answer could have.

    The buckets alone are checked first: an answer too long even with one
    group is refused before anything is read. Grouped, the groups are
    bounded by the instances or models with usage around the range (one
    small count per request and span, shared by every node).
    """
    most = len(plan.buckets)
    if group_by is not None:
        context.points.check(most)
        counts = await context.loaders.load(group_counts, series.utc_days(plan))
        most *= max(1, counts.most(group_by))
    context.points.charge(most)


async def node_usage(
    info: Info[Context, None],
    batch: BatchFn[Context, tuple[UsageArgs, str], NodeUsage],
    node: str,
    kind: GroupBy,
    date_range: DateRange | None,
    days: int | None,
    tz: str,
    granularity: Granularity,
    group_by: GroupBy | None,
) -> Usage:
    """``usage`` of one node (an instance id, a model name) through the request's ``batch``.

    Every node is charged before the batch reads anything (a page of 50
    instances asks for 50 series). Grouped by its own ``kind`` (or a model
    by provider), a node's one group is itself.
    """
    context = info.context
    args = usage_args(info, date_range, days, tz, granularity, group_by)
    plan = context.bucket_plan(args.range, args.granularity)
    own = group_by is kind or (kind is GroupBy.MODEL and group_by is GroupBy.PROVIDER)
    await charge(context, plan, None if own else group_by)
    found = await context.loaders.load(batch, (args, node))
    return to_usage(plan, group_by, found.series)


def to_usage(plan: BucketPlan, group_by: GroupBy | None, found: series.Series) -> Usage:
    """The answer over ``plan``'s buckets: totals, groups and series made when selected.

    ``found`` is read at ``plan``'s grain, or, for an answer that shows no
    series, as one bucket (``UsageArgs.whole``).
    """
    return Usage.of(plan, group_by, found)


async def usage(
    info: Info[Context, None],
    date_range: UsageRange = None,
    days: UsageDays = None,
    tz: UsageZone = buckets.DEFAULT_ZONE,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy | None = None,
) -> Usage:
    context = info.context.require("read")
    args = usage_args(info, date_range, days, tz, granularity, group_by)
    plan = context.bucket_plan(args.range, args.granularity)
    await charge(context, plan, group_by)
    found = await context.loaders.load(usage_of_account, args)
    return to_usage(plan, group_by, found.series)

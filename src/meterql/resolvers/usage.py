"""``usage(range | days, tz, granularity, groupBy)``: arguments → bucket plan → one query → types.

Every one reads through the request's loaders: the root field (and
``viewer.usage``, the same) through ``usage_of_account``, ``instance.usage``
and ``model.usage`` through ``usage_by_instance`` / ``usage_by_model``, so a
page of N nodes costs one statement per distinct arguments. Each is charged
to the request's point budget before anything is read (in ``answer``). All of
them take the very same arguments (the ``Usage*`` aliases below), validate
them alike and answer the same way (``answer``).

graphql-core calls ``answer`` directly (``graphql_resolver``, installed by
``build_schema``): a page asks for seventy usages, and Strawberry's
per-call work (its ``Info``, converting each argument) cost more than the
answers. The Strawberry resolvers below declare the fields and their
arguments, and reach the same ``answer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeAlias, cast

import strawberry
from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    SelectionSetNode,
    get_argument_values,
)
from graphql.execution.values import VariableValues
from strawberry import Info

from meterql import buckets
from meterql.buckets import BucketPlan, Granularity
from meterql.context import Context
from meterql.db import series
from meterql.db.series import GroupBy, Series
from meterql.errors import MeterqlError
from meterql.loaders import BatchFn
from meterql.resolvers.batches import (
    UsageArgs,
    group_counts,
    usage_by_instance,
    usage_by_model,
    usage_of_account,
)
from meterql.resolvers.selection import raw, selects, selects_in
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



# The node a ``usage`` belongs to: how its batch reads it, and what it is.
Node = tuple[BatchFn[Context, tuple[UsageArgs, str], Series], GroupBy]
INSTANCE_NODE: Node = (usage_by_instance, GroupBy.INSTANCE)
MODEL_NODE: Node = (usage_by_model, GroupBy.MODEL)


def answer(
    info: GraphQLResolveInfo[Context],
    node: tuple[Node, str] | None,
    arguments: Mapping[str, Any],
) -> Awaitable[Usage]:
    """A ``usage`` field's answer: of the account (``node`` None) or of one node.

    ``arguments`` are the field's, by their GraphQL names, as graphql-core
    coerces them (``range`` a mapping of ``from`` and ``to``). Every answer
    is charged before anything is read: a page of 50 instances asks for 50
    series. Grouped by its own kind (or a model by provider), a node's one
    group is itself.

    What can be refused without reading (the scope, the arguments, the
    points of an ungrouped answer) is refused here, before any coroutine
    exists. graphql-core records such an error on the spot; one raised inside
    a coroutine makes it cancel the field's pending siblings, and a sibling
    cancelled before it ran leaves the coroutines it holds never awaited (a
    warning each in the server's log, for every node of a refused page).
    """
    context = info.context.require("read")
    args = _usage_args(arguments, context.now, whole=not shows_series(info))
    plan = context.bucket_plan(args.range, args.granularity)
    if node is None:
        batch: Any = usage_of_account
        key: Any = args
        grouped = args.group_by
    else:
        (batch, kind), node_key = node
        key = (args, node_key)
        grouped = None if _own(args.group_by, kind) else args.group_by
    if grouped is None:
        context.points.charge(plan.count)
    else:
        # Too long even with one group: refused before anything is read.
        context.points.check(plan.count)
    return _read(context, plan, args.group_by, grouped, batch, key)


async def _read(
    context: Context, plan: BucketPlan, group_by: GroupBy | None, grouped: GroupBy | None,
    batch: Any, key: Any,
) -> Usage:
    """Charge a grouped answer (``grouped``) for its groups, then read it through ``batch``.

    The groups are bounded by the instances or models with usage around the
    range: one small count per request and span, shared by every node.
    """
    if grouped is not None:
        counts = await context.loaders.load(group_counts, series.utc_days(plan))
        context.points.charge(plan.count * max(1, counts.most(grouped)))
    return Usage.of(plan, group_by, await context.loaders.load(batch, key))


def _usage_args(arguments: Mapping[str, Any], now: datetime, *, whole: bool) -> UsageArgs:
    """A ``usage`` field's arguments as graphql-core coerced them, resolved; refused if bad."""
    date_range = arguments.get("range")
    local = buckets.local_range(
        arguments.get("tz", buckets.DEFAULT_ZONE), now,
        first=None if date_range is None else date_range["from"],
        last=None if date_range is None else date_range["to"],
        days=arguments.get("days"),
    )
    return UsageArgs(local, arguments.get("granularity", Granularity.DAY),
                     arguments.get("groupBy"), whole=whole)


def _own(group_by: GroupBy | None, kind: GroupBy) -> bool:
    """Whether a node of ``kind`` grouped so is its own one group (a model by provider too)."""
    return group_by is kind or (kind is GroupBy.MODEL and group_by is GroupBy.PROVIDER)


def graphql_resolver(
    node_of: Callable[[Any], tuple[Node, str]] | None,
) -> Callable[..., Usage | Awaitable[Usage]]:
    """A ``usage`` field's resolver for graphql-core; ``node_of(source)`` names its node.

    A node whose answer was read ahead with its list's (:func:`read_ahead`)
    takes it, without a coroutine: graphql-core completes it at once.
    """

    def resolve_usage(
        source: Any, info: GraphQLResolveInfo[Context], **arguments: Any
    ) -> Usage | Awaitable[Usage]:
        node = None if node_of is None else node_of(source)
        if node is not None:
            ahead = info.context.read_ahead.pop((id(info.field_nodes[0]), node[1]), None)
            if isinstance(ahead, Usage):
                return ahead
        return answer(info, node, arguments)

    return resolve_usage


async def read_ahead(
    info: GraphQLResolveInfo[Context], node_type: str, node: Node, keys: Sequence[str],
    path: Sequence[str],
) -> None:
    """Answer the ``usage`` fields of a list's nodes together, before the list is returned.

    Left to graphql-core, each node's ``usage`` is resolved on its own (its
    arguments, a loader's future, a task, completion after the batch): about
    100 µs a node, more than the one statement they all share. Here the
    list's resolver (``path``: the field names from the list field to its
    nodes, e.g. ``edges``, ``node``) computes each distinct ``usage`` field's
    answer for all ``keys`` at once, with the same arguments, charge, batch
    and answer the nodes' own resolvers would give, and each node's resolver
    takes its own (:func:`graphql_resolver`).

    Only a plain selection is read ahead: no fragment and no directive on
    the way, nor on the ``usage`` field. Anything else (a grouping that needs
    counts first, an argument refused, points that would not cover every
    node, a batch that failed) leaves each node to its own resolver, which
    answers or refuses as it always does: reading ahead changes no answer and
    no error.
    """
    context = info.context
    if not keys or len(info.field_nodes) != 1 or "read" not in context.grant.scopes:
        return
    fields = _plain_fields(info.field_nodes[0], path)
    if not fields:
        return
    graphql_type = info.schema.type_map[node_type]
    assert isinstance(graphql_type, GraphQLObjectType)
    field_def = graphql_type.fields["usage"]
    # Strawberry hands resolvers the coerced variables alone; graphql-core
    # reads arguments from them (their sources only matter to variables
    # inside fragments, which are not read ahead).
    variables = VariableValues({}, cast(dict[str, Any], info.variable_values))
    (batch, kind) = node
    for same_key in fields:
        field = same_key[0]  # graphql-core resolves a response key with its first node
        try:
            args = _usage_args(get_argument_values(field_def, field, variables), context.now,
                               whole=not selects_in(same_key, info.fragments, "series"))
        except (GraphQLError, MeterqlError):
            continue  # each node's resolver refuses it, as ever
        group_by = args.group_by
        if group_by is not None and not _own(group_by, kind):
            continue  # its charge needs the groups' counts first: node by node
        plan = context.bucket_plan(args.range, args.granularity)
        if context.points.refused or plan.count * len(keys) > context.points.left:
            continue  # node by node: the one that runs out is refused, as ever
        # Each node's charge at once (checked just above: never a refusal).
        context.points.charge(plan.count * len(keys))
        try:
            found = await asyncio.gather(*(context.loaders.load(batch, (args, key))
                                           for key in keys))
        except Exception:
            # The nodes charge again, and fail on their own as they always would
            # (their loads are the same failed ones).
            context.points.left += plan.count * len(keys)
            continue
        for key, series_of_key in zip(keys, found, strict=True):
            context.read_ahead[id(field), key] = Usage.of(plan, group_by, series_of_key)


def _plain_fields(list_field: FieldNode, path: Sequence[str]) -> list[list[FieldNode]]:
    """The ``usage`` fields of a list's nodes, by response key; [] if not plain."""
    at = list_field
    for name in path:
        found = _plain_selections(at.selection_set)
        if found is None:
            return []
        steps = [f for f in found if f.name.value == name]
        if len(steps) != 1 or steps[0].alias is not None:
            return []
        at = steps[0]
    found = _plain_selections(at.selection_set)
    if found is None:
        return []
    by_key: dict[str, list[FieldNode]] = {}
    for field in found:
        if field.name.value == "usage":
            by_key.setdefault((field.alias or field.name).value, []).append(field)
    return list(by_key.values())


def _plain_selections(selection_set: SelectionSetNode | None) -> list[FieldNode] | None:
    """The fields of a selection set without fragments or directives; None if it has any."""
    if selection_set is None:
        return None
    fields = []
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        fields.append(selection)
    return fields


def arguments_of(
    date_range: DateRange | None, days: int | None, tz: str, granularity: Granularity,
    group_by: GroupBy | None,
) -> dict[str, Any]:
    """A Strawberry resolver's arguments as graphql-core hands them to ``answer``."""
    return {
        "range": None if date_range is None else {"from": date_range.from_, "to": date_range.to},
        "days": days, "tz": tz, "granularity": granularity, "groupBy": group_by,
    }


def shows_series(info: GraphQLResolveInfo[Context]) -> bool:
    """Whether this ``usage`` field's selection includes ``series`` (through fragments).

    Asked once per field of the query, not per node: every node of a list
    shares its field's selection, and so its operation and response path
    without the list indices. A ``series`` under ``@skip`` counts as shown:
    the answer is then read bucket by bucket, which is only slower.
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
        known = info.context.series_selected[key] = selects(info, "series")
    return known


async def usage(
    info: Info[Context, None],
    date_range: UsageRange = None,
    days: UsageDays = None,
    tz: UsageZone = buckets.DEFAULT_ZONE,
    granularity: Granularity = Granularity.DAY,
    group_by: GroupBy | None = None,
) -> Usage:
    return await answer(raw(info), None,
                        arguments_of(date_range, days, tz, granularity, group_by))

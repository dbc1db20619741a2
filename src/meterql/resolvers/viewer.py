"""The viewer's fields: the token's account, its plan, subscriptions, instances, models, nodes.

Every field here reads the request's own account only (``context.account_id``);
the root ``viewer`` field has already checked the ``read`` scope. Nested
fields go through loaders, so the whole graph costs a fixed number of
statements however many rows each list has.
"""

from __future__ import annotations

from typing import Annotated

import strawberry
from pydantic import StringConstraints, TypeAdapter, ValidationError
from strawberry import Info

from meterql import cursors
from meterql.context import Context
from meterql.db import graph
from meterql.money import nanos_to_usd
from meterql.records import LIVE_STATUSES
from meterql.resolvers.batches import plan_of
from meterql.resolvers.billing import to_plan
from meterql.resolvers.selection import raw
from meterql.resolvers.usage import INSTANCE_NODE, MODEL_NODE, read_ahead
from meterql.schema.billing import Plan
from meterql.schema.nodes import (
    AccountSubscription,
    Instance,
    InstanceConnection,
    InstanceEdge,
    Model,
    ModelPrice,
    WebhostNode,
)
from meterql.schema.paging import page_info
from meterql.schema.scalars import BigInt, ExactDecimal
from meterql.windows import DaysArgument, whole_days_until

# Bounds of ``first``, checked (and reported) like every bounded argument.
PAGE_SIZE = DaysArgument(minimum=1, maximum=100, default=50)
_INSTANCES = "instances"
# What an instance's status can be (``InstanceRecord``): a filter outside it
# matches nothing, and a NUL byte could not even be sent to PostgreSQL.
_STORABLE_STATUS: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(max_length=50, pattern=r"^[^\x00]*$")]
)


def _storable(status: str) -> bool:
    try:
        _STORABLE_STATUS.validate_python(status)
    except ValidationError:
        return False
    return True


async def plan(info: Info[Context, None]) -> Plan:
    context = info.context
    return to_plan(await plan_of(context), context)


async def subscriptions(info: Info[Context, None]) -> list[AccountSubscription]:
    context = info.context
    rows = await graph.subscriptions(context.reader, context.account_id)
    return [
        AccountSubscription(
            current_period_end=row.current_period_end,
            current_period_start=row.current_period_start,
            live=row.status in LIVE_STATUSES,
            status=row.status,
            tier_id=row.tier_id,
            trial_days_remaining=whole_days_until(row.trial_ends_at, context.now),
            trial_ends_at=row.trial_ends_at,
        )
        for row in rows
    ]


async def instances(
    info: Info[Context, None],
    first: Annotated[
        int, strawberry.argument(description="Page size, 1..100.")
    ] = PAGE_SIZE.default,
    after: Annotated[
        str | None, strawberry.argument(description="An `endCursor` of this very list.")
    ] = None,
    status: Annotated[
        str | None, strawberry.argument(description="Only instances of this status.")
    ] = None,
) -> InstanceConnection:
    context = info.context
    size = PAGE_SIZE.validate(first, ("first",))
    start = "" if after is None else cursors.decode(after, _INSTANCES, status)
    if status is not None and not _storable(status):
        return InstanceConnection(
            edges=[], page_info=page_info([], False, after),
            status=status, known_total=0,
        )
    # One row more than the page: whether it exists is ``hasNextPage``.
    rows = await graph.instance_page(context.reader, context.account_id, status, start, size + 1)
    edges = [
        InstanceEdge(
            cursor=cursors.encode(_INSTANCES, status, row.instance_id),
            node=Instance(id=strawberry.ID(row.instance_id), hostname=row.hostname,
                          status=row.status),
        )
        for row in rows[:size]
    ]
    await read_ahead(raw(info), "Instance", INSTANCE_NODE,
                     [str(edge.node.id) for edge in edges], ("edges", "node"))
    return InstanceConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], len(rows) > size, after),
        status=status,
    )


async def models(info: Info[Context, None]) -> list[Model]:
    context = info.context
    rows = await graph.used_models(context.reader, context.account_id)
    found = [
        Model(
            name=row.model,
            price=None
            if row.input_nanos_per_mtok is None or row.output_nanos_per_mtok is None
            else ModelPrice(
                input_usd_per_mtok=ExactDecimal(nanos_to_usd(row.input_nanos_per_mtok)),
                output_usd_per_mtok=ExactDecimal(nanos_to_usd(row.output_nanos_per_mtok)),
            ),
            provider=row.provider,
        )
        for row in rows
    ]
    await read_ahead(raw(info), "Model", MODEL_NODE, [model.name for model in found], ())
    return found


async def webhost_nodes(info: Info[Context, None]) -> list[WebhostNode]:
    context = info.context
    rows = await graph.webhost_nodes(context.reader, context.account_id)
    return [
        WebhostNode(hosted_sites=BigInt(row.hosted_sites), id=strawberry.ID(row.node_id))
        for row in rows
    ]

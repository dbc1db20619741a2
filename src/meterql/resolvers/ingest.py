"""The ``recordUsage`` mutation: one transaction per batch, all or nothing.

Strawberry declares the field (``record_usage``), but graphql-core resolves
it (``resolve_record_usage``, installed by ``build_schema``): Strawberry turns
every item of ``events`` into a ``UsageEventInput`` instance, field by field,
which for a batch of a thousand events cost more than writing them. The
items graphql-core has already coerced go straight to the one validation
every ingest path shares. The REST route has run that validation already and
hands the records over as :class:`Prevalidated`, which the executor lets
through uncoerced (``schema/execution.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphql import GraphQLResolveInfo
from strawberry import Info

from meterql.context import Context
from meterql.db import writes
from meterql.ingest import validate_batch
from meterql.records import UsageEventRecord
from meterql.schema.execution import Prevalidated
from meterql.schema.ingest import RecordUsageResult, UsageEventInput


async def record_usage(
    info: Info[Context, None], events: list[UsageEventInput]
) -> RecordUsageResult:
    """The field as Strawberry declares it (and runs it, if not replaced)."""
    context = info.context
    context.require("ingest")
    records = validate_batch([vars(event) for event in events], context.now, ("events",))
    return await _record(context, records)


def raw_resolver(python_names: Mapping[str, str]) -> Any:
    """``recordUsage`` for graphql-core: ``events`` arrive as dicts of GraphQL names."""

    async def resolve_record_usage(
        _root: object,
        info: GraphQLResolveInfo[Context],
        events: Sequence[Mapping[str, Any]] | Prevalidated,
    ) -> RecordUsageResult:
        context = info.context
        context.require("ingest")
        if isinstance(events, Prevalidated):
            records: list[UsageEventRecord] = events.value
        else:
            items = [{python_names[key]: value for key, value in event.items()} for event in events]
            records = validate_batch(items, context.now, ("events",))
        return await _record(context, records)

    return resolve_record_usage


async def _record(context: Context, records: list[UsageEventRecord]) -> RecordUsageResult:
    if context.reads is not None:
        # Give the request's read connection (authentication's) back first:
        # holding it while waiting for a write connection, enough concurrent
        # batches would each hold one and wait for another until the pool
        # timed out (a 503 for all). A later read would simply take a new one.
        await context.reads.close()
    async with context.db.write() as session, session.begin():
        result = await writes.record_events(session, records, account_id=context.account_id)
    return RecordUsageResult(accepted=result.accepted, duplicates=result.duplicates)

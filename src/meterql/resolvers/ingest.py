"""The ``recordUsage`` mutation: one transaction per batch, all or nothing.

Strawberry declares the field (``record_usage``), but graphql-core resolves
it (``resolve_record_usage``, installed by ``build_schema``): Strawberry turns
every item of ``events`` into a ``UsageEventInput`` instance, field by field,
which for a batch of a thousand events cost more than writing them. The
items graphql-core has already coerced go straight to the one validation
every ingest path shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphql import GraphQLResolveInfo
from strawberry import Info

from meterql.context import Context
from meterql.db import writes
from meterql.ingest import validate_batch
from meterql.schema.ingest import RecordUsageResult, UsageEventInput


async def record_usage(
    info: Info[Context, None], events: list[UsageEventInput]
) -> RecordUsageResult:
    """The field as Strawberry declares it (and runs it, if not replaced)."""
    return await _record(info.context, [vars(event) for event in events])


def raw_resolver(python_names: Mapping[str, str]) -> Any:
    """``recordUsage`` for graphql-core: ``events`` arrive as dicts of GraphQL names."""

    async def resolve_record_usage(
        _root: object, info: GraphQLResolveInfo[Context], events: Sequence[Mapping[str, Any]]
    ) -> RecordUsageResult:
        items = [{python_names[key]: value for key, value in event.items()} for event in events]
        return await _record(info.context, items)

    return resolve_record_usage


async def _record(context: Context, items: list[dict[str, Any]]) -> RecordUsageResult:
    context.require("ingest")
    records = validate_batch(items, context.now, ("events",))
    async with context.db.write() as session, session.begin():
        result = await writes.record_events(session, records, account_id=context.account_id)
    return RecordUsageResult(accepted=result.accepted, duplicates=result.duplicates)

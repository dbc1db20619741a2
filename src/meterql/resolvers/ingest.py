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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphql import GraphQLResolveInfo
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry import Info

from meterql import alerts
from meterql.context import Context
from meterql.db import writes
from meterql.errors import MeterqlError
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
    return await _counted(
        context,
        lambda: validate_batch([vars(event) for event in events], context.now, ("events",),
                               context.event_horizon),
    )


def raw_resolver(python_names: Mapping[str, str]) -> Any:
    """``recordUsage`` for graphql-core: ``events`` arrive as dicts of GraphQL names."""

    async def resolve_record_usage(
        _root: object,
        info: GraphQLResolveInfo[Context],
        events: Sequence[Mapping[str, Any]] | Prevalidated,
    ) -> RecordUsageResult:
        context = info.context
        context.require("ingest")

        def records() -> list[UsageEventRecord]:
            if isinstance(events, Prevalidated):
                checked: list[UsageEventRecord] = events.value
                return checked
            items = [{python_names[key]: value for key, value in event.items()} for event in events]
            return validate_batch(items, context.now, ("events",), context.event_horizon)

        return await _counted(context, records)

    return resolve_record_usage


async def _counted(
    context: Context, records: Callable[[], list[UsageEventRecord]]
) -> RecordUsageResult:
    # Every batch's outcome goes to the request's record, from which the
    # access middleware counts it (``meterql.web.instruments``): REST and GraphQL
    # alike, a refusal as its error's code.
    try:
        result = await _record(context, records())
    except MeterqlError as error:
        context.facts.batch_refused(error.code)
        raise
    except Exception:
        context.facts.batch_refused(MeterqlError.code)
        raise
    context.facts.batch_stored(result.accepted, result.duplicates)
    return result


async def _record(context: Context, records: list[UsageEventRecord]) -> RecordUsageResult:
    # The request holds no read connection (a read takes one for its
    # statement alone), so waiting here for a write slot holds nothing.
    # Batches of the account that wait for each other are written together,
    # each with its own answer (``db/groups.py``).
    account_id, now, free = context.account_id, context.now, context.settings.free_plan

    async def write(batches: list[list[UsageEventRecord]]) -> list[writes.IngestResult]:
        async def work(session: AsyncSession) -> list[writes.IngestResult]:
            results = await writes.record_batches(session, batches, account_id=account_id)
            if any(account_id in result.budgeted for result in results):
                # In the batches' transaction, after their account's row is
                # held: a threshold they cross is recorded by them, once.
                await alerts.after_batch(
                    session, account_id,
                    [(r.timestamp, r.instance_id, r.model) for batch in batches for r in batch],
                    now, free,
                )
            return results

        return await context.db.run_write(work, account_id)

    result = await context.db.groups.write(account_id, records, len(records), write)
    return RecordUsageResult(accepted=result.accepted, duplicates=result.duplicates)

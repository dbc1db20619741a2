"""The ``recordUsage`` mutation: one transaction per batch, all or nothing."""

from __future__ import annotations

import dataclasses

from strawberry import Info

from meterql.context import Context
from meterql.db import writes
from meterql.ingest import validate_batch
from meterql.schema.ingest import RecordUsageResult, UsageEventInput


async def record_usage(
    info: Info[Context, None], events: list[UsageEventInput]
) -> RecordUsageResult:
    context = info.context.require("ingest")
    records = validate_batch(
        [dataclasses.asdict(event) for event in events], context.now, ("events",)
    )
    async with context.db.write() as session, session.begin():
        result = await writes.record_events(session, records, account_id=context.account_id)
    return RecordUsageResult(accepted=result.accepted, duplicates=result.duplicates)

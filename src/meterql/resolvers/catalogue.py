"""The tier catalogue: shared by every account, read behind a token like everything."""

from __future__ import annotations

from strawberry import Info

from meterql.context import Context
from meterql.db import graph
from meterql.schema.catalogue import Tier


async def plans(info: Info[Context, None]) -> list[Tier]:
    context = info.context.require("read")
    rows = await graph.all_tiers(context.reader)
    return [Tier.from_row(row) for row in rows]

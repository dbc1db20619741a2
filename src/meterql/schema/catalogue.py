"""The tier catalogue: what an account can subscribe to, the same for every account."""

from __future__ import annotations

import strawberry

from meterql.db.accounts import TierRow
from meterql.schema.scalars import BigInt


@strawberry.type(description="A plan of the catalogue, with its price and limits.")
class Tier:
    api_call_limit: BigInt
    billing_cycle: str
    conversation_limit: BigInt
    instance_limit: BigInt
    max_sites_per_node: BigInt
    plan_name: str
    price_cents: BigInt
    product_name: str
    tier_id: str
    tier_slug: str
    token_allowance: BigInt

    @classmethod
    def from_row(cls, row: TierRow) -> Tier:
        return cls(
            api_call_limit=BigInt(row.api_call_limit),
            billing_cycle=row.billing_cycle,
            conversation_limit=BigInt(row.conversation_limit),
            instance_limit=BigInt(row.instance_limit),
            max_sites_per_node=BigInt(row.max_sites_per_node),
            plan_name=row.plan_name,
            price_cents=BigInt(row.price_cents),
            product_name=row.product_name,
            tier_id=row.tier_id,
            tier_slug=row.tier_slug,
            token_allowance=BigInt(row.token_allowance),
        )

"""The golden fixture: a small data set whose answers are worked out by hand.

"Now" is 2026-11-20T15:30:00Z (``conftest.NOW``). Prices: gpt-4o 2.50/10.00,
gpt-4o-mini 0.15/0.60 USD per million tokens; ``mystery`` has no price.

| event | instance | model       | timestamp (UTC)      | in      | out     | user | cost USD    |
|-------|----------|-------------|----------------------|---------|---------|------|-------------|
| e1    | inst-a   | gpt-4o      | 2026-11-20 12:00:00  | 1000    | 500     | u1   | 0.0075      |
| e2    | inst-a   | gpt-4o-mini | 2026-11-20 13:00:00  | 2000    | 1000    | u2   | 0.0009      |
| e3    | inst-b   | gpt-4o      | 2026-11-18 09:00:00  | 400     | 100     | u1   | 0.002       |
| e4    | inst-b   | mystery     | 2026-11-14 00:00:00  | 300     | 300     | -    | 0 (unpriced)|
| e5    | inst-a   | gpt-4o      | 2026-11-13 23:59:59  | 10000   | 10000   | -    | 0.125       |
| e6    | inst-a   | gpt-4o-mini | 2026-10-01 10:00:00  | 1000000 | 1000000 | u4   | 1.23456789 (reported) |
| e7    | inst-b   | gpt-4o      | 2026-11-21 01:00:00  | 5       | 5       | u3   | 0.0000625   |
| e8    | inst-a   | gpt-4o      | 2026-11-19 08:00:00  | 20      | 0       | ""   | 0.00005     |

e4 sits on the first instant of the 7-day window, e5 one second before it;
e7 is tomorrow (outside every day window, inside the billing period).
inst-c and inst-z are registered but idle. Account ``globex`` has its own
events, which must never show up in ``acme``'s answers.

Subscriptions of acme: tier_pro trialing 2026-11-01 → 2026-12-01 (trial ends
2026-11-25T12:00Z: 4 days 20.5 h left) is primary; tier_starter active from
2026-10-15 is live but older; tier_old is canceled.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from meterql.db import writes
from meterql.db.engine import Database
from meterql.records import (
    AccountRecord,
    EventRecord,
    InstanceRecord,
    ModelRecord,
    NodeRecord,
    SubscriptionRecord,
    TierRecord,
    TokenRecord,
    UsageEventRecord,
)
from tests.conftest import NOW

ACME_TOKEN = "acme-read-token-0001"
ACME_INGEST_TOKEN = "acme-ingest-token-0001"
GLOBEX_TOKEN = "globex-read-token-0001"
INITECH_TOKEN = "initech-read-token-0001"
REVOKED_TOKEN = "acme-revoked-token-0001"

MODELS = [
    ModelRecord(model="gpt-4o", provider="openai",
                input_usd_per_mtok=Decimal("2.50"), output_usd_per_mtok=Decimal("10.00")),
    ModelRecord(model="gpt-4o-mini", provider="openai",
                input_usd_per_mtok=Decimal("0.15"), output_usd_per_mtok=Decimal("0.60")),
]


def _tier(tier_id: str, name: str, cents: int, allowance: int) -> TierRecord:
    return TierRecord(
        tier_id=tier_id, tier_slug=tier_id.removeprefix("tier_"), product_name="Agents",
        plan_name=name, price_cents=cents, billing_cycle="monthly", api_call_limit=50_000,
        conversation_limit=5_000, instance_limit=5, max_sites_per_node=25,
        token_allowance=allowance,
    )


TIERS = [
    _tier("tier_pro", "Pro", 4900, 5_000_000),
    _tier("tier_starter", "Starter", 1900, 1_000_000),
    _tier("tier_old", "Legacy", 999, 10),
]


def _sub(tier: str, status: str, start: str, end: str, trial: str | None = None) -> SubscriptionRecord:
    return SubscriptionRecord.model_validate(
        {"tier_id": tier, "status": status, "current_period_start": start,
         "current_period_end": end, "trial_ends_at": trial}
    )


ACCOUNTS = [
    AccountRecord(
        account_id="acme",
        tokens=[TokenRecord(token=ACME_TOKEN, scopes=["read"]),
                TokenRecord(token=ACME_INGEST_TOKEN, scopes=["read", "ingest"]),
                TokenRecord(token=REVOKED_TOKEN, scopes=["read"])],
        instances=[
            InstanceRecord(instance_id="inst-a", hostname="agent-a.acme.test", status="running"),
            InstanceRecord(instance_id="inst-b", hostname="agent-b.acme.test", status="stopped"),
            InstanceRecord(instance_id="inst-z", hostname="agent-z.acme.test", status="running"),
            InstanceRecord(instance_id="inst-c", hostname="agent-c.acme.test", status="error"),
        ],
        subscriptions=[
            _sub("tier_pro", "trialing", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
                 "2026-11-25T12:00:00Z"),
            _sub("tier_starter", "active", "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"),
            _sub("tier_old", "canceled", "2026-11-10T00:00:00Z", "2026-12-10T00:00:00Z"),
        ],
        webhost_nodes=[NodeRecord(node_id="node-1", hosted_sites=3),
                       NodeRecord(node_id="node-2", hosted_sites=4)],
    ),
    AccountRecord(
        account_id="globex",
        tokens=[TokenRecord(token=GLOBEX_TOKEN, scopes=["read"])],
        instances=[InstanceRecord(instance_id="inst-g", hostname="g.globex.test", status="running")],
        subscriptions=[_sub("tier_starter", "active", "2026-11-05T00:00:00Z",
                            "2026-12-05T00:00:00Z")],
        webhost_nodes=[NodeRecord(node_id="gnode", hosted_sites=99)],
    ),
    AccountRecord(account_id="initech", tokens=[TokenRecord(token=INITECH_TOKEN)]),
]


def _event(account: str, event_id: str, instance: str, model: str, ts: str, tokens_in: int,
           tokens_out: int, user: str | None = None, cost: str | None = None) -> EventRecord:
    return EventRecord.model_validate(
        {"account_id": account, "event_id": event_id, "instance_id": instance, "model": model,
         "timestamp": ts, "tokens_in": tokens_in, "tokens_out": tokens_out,
         "end_user_id": user, "cost_usd": cost}
    )


EVENTS = [
    _event("acme", "e1", "inst-a", "gpt-4o", "2026-11-20T12:00:00Z", 1000, 500, "u1"),
    _event("acme", "e2", "inst-a", "gpt-4o-mini", "2026-11-20T13:00:00Z", 2000, 1000, "u2"),
    _event("acme", "e3", "inst-b", "gpt-4o", "2026-11-18T09:00:00Z", 400, 100, "u1"),
    _event("acme", "e4", "inst-b", "mystery", "2026-11-14T00:00:00Z", 300, 300),
    _event("acme", "e5", "inst-a", "gpt-4o", "2026-11-13T23:59:59Z", 10000, 10000),
    _event("acme", "e6", "inst-a", "gpt-4o-mini", "2026-10-01T10:00:00Z", 1_000_000, 1_000_000,
           "u4", cost="1.23456789"),
    _event("acme", "e7", "inst-b", "gpt-4o", "2026-11-21T01:00:00Z", 5, 5, "u3"),
    _event("acme", "e8", "inst-a", "gpt-4o", "2026-11-19T08:00:00Z", 20, 0, ""),
    # Another tenant, same ids and days: must never leak into acme's answers.
    _event("globex", "e1", "inst-g", "gpt-4o", "2026-11-20T12:00:00Z", 999, 999, "u1"),
    _event("globex", "g2", "inst-g", "gpt-4o-mini", "2026-11-15T12:00:00Z", 77, 77, "gx"),
]


async def seed(db: Database) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, MODELS)
        await writes.upsert_tiers(session, TIERS)
        for account in ACCOUNTS:
            await writes.upsert_account(session, account)
        await writes.record_events(session, EVENTS)
        assert await writes.revoke_token(session, REVOKED_TOKEN)


def auth(token: str = ACME_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def busy_account(db: Database, account_id: str, instances: int, models: int) -> str:
    """An account with that many instances and used models, each with usage; its read token.

    Every instance has an event every third day of the 40 before ``NOW``,
    spread over the hours, each on a model in turn.
    """
    token = f"{account_id}-read-token-0001"
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [
            ModelRecord(model=f"m-{m:03}", provider=f"p-{m % 3}", input_usd_per_mtok=Decimal(1),
                        output_usd_per_mtok=Decimal(2))
            for m in range(models)
        ])
        await writes.upsert_account(session, AccountRecord(
            account_id=account_id, tokens=[TokenRecord(token=token)],
            instances=[InstanceRecord(instance_id=f"i-{i:03}") for i in range(instances)]))
        await writes.record_events(session, [
            UsageEventRecord(event_id=f"e-{i}-{d}", instance_id=f"i-{i:03}",
                             model=f"m-{(i + d) % models:03}",
                             timestamp=NOW - timedelta(days=d, hours=i % 24),
                             tokens_in=10 + i, tokens_out=d)
            for i in range(instances) for d in range(0, 40, 3)
        ], account_id=account_id)
    return token

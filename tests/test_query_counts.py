"""Each route costs a fixed number of SQL statements, however much data there is."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from meterql.db import writes
from meterql.db.engine import Database
from meterql.records import AccountRecord, InstanceRecord, ModelRecord, UsageEventRecord
from tests.conftest import NOW, StatementCounter
from tests.golden import auth, seed

# Statements per route: 1 for the token, then the route's own queries.
COSTS = {
    "/v1/metrics/summary": 2,
    "/v1/metrics/instances": 2,
    "/v1/metrics/models": 2,
    "/v1/metrics/usage?days=90": 2,
    "/v1/billing": 4,  # token, subscriptions, period usage with end users, hosting nodes
    "/v1/billing/trial-status": 2,
    "/v1/billing/usage": 3,  # token, subscriptions, period usage with end users
    "/v1/billing/usage/chart?days=366": 2,
    "/v1/billing/usage/chart?instance_id=inst-a": 3,  # + ownership check
}


async def _grow(db: Database, instances: int, models: int) -> None:
    """Add many instances and models, each with usage in every window."""
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [
            ModelRecord(model=f"model-{m}", provider="p", input_usd_per_mtok=Decimal(1),
                        output_usd_per_mtok=Decimal(2))
            for m in range(models)
        ])
        await writes.upsert_account(session, AccountRecord(
            account_id="acme",
            instances=[InstanceRecord(instance_id=f"bulk-{i}") for i in range(instances)],
        ))
        await writes.record_events(session, [
            UsageEventRecord(event_id=f"bulk-{i}-{d}", instance_id=f"bulk-{i}",
                        model=f"model-{i % models}", timestamp=NOW - timedelta(days=d),
                        tokens_in=1, tokens_out=1, end_user_id=f"user-{i}")
            for i in range(instances) for d in range(3)
        ], account_id="acme")


@pytest.mark.parametrize(("path", "statements"), COSTS.items(), ids=list(COSTS))
async def test_route_statement_count_is_constant(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, path: str, statements: int
) -> None:
    await seed(db)
    sql.reset()
    assert (await client.get(path, headers=auth())).status_code == 200
    small = sql.count
    await _grow(db, instances=60, models=25)
    sql.reset()
    response = await client.get(path, headers=auth())
    assert response.status_code == 200
    assert small == sql.count == statements, sql.statements


async def test_whole_billing_page_in_one_graphql_query(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter
) -> None:
    await seed(db)
    await _grow(db, instances=40, models=10)
    query = """{
      billing { plan { planName } usage { totalCostUsd } }
      trialStatus { trialDaysRemaining }
      billingUsage { byInstance { instanceId } }
      usageChart(days: 30) { points { requests } }
    }"""
    sql.reset()
    response = await client.post("/graphql", json={"query": query}, headers=auth())
    assert "errors" not in response.json()
    assert len(response.json()["data"]["billingUsage"]["byInstance"]) == 42
    # token 1 + billing 3 + trial 1 + billing usage 2 + chart 1
    assert sql.count == 8

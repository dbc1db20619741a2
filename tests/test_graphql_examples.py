"""docs/graphql.md's page queries: their shown results are what the API answers, at a fixed cost.

The two documents (src/meterql/queries/*.graphql) run through the real ``/graphql``
endpoint on the demo data made at ``DEMO_NOW``, with the app's clock there,
on both backends; each answer must equal the JSON block shown after the
query in docs/graphql.md (``scripts/graphql_examples.py`` writes them).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from graphql import parse, validate
from scripts.graphql_examples import DEMO_NOW, DOC, EXAMPLES, query, run, seed_demo
from starlette.applications import Starlette

from meterql import demo
from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.records import AccountRecord, InstanceRecord, UsageEventRecord
from meterql.schema import build_schema
from tests.conftest import StatementCounter

# Round trips per page, whatever the number of instances and models:
COSTS = {
    # the token, with the plan and hosting (billing and trialStatus need no
    # more); the period's usage (billing and billingUsage share it); the
    # instance page, its total count, the instances' usage (one batch); the
    # account's usage.
    "billing-page": 6,
    # the token; the account's usage; the models, their usage (one batch); the
    # instance page, its total count, the instances' usage (one batch).
    "metrics-page": 7,
    # the token; the budgets; their period's usage (one per period and scope
    # kind: the demo's one budget, one); the alerts' page and their count.
    "budgets-page": 5,
}


def shown(name: str) -> Any:
    """The JSON block right after the example's query in docs/graphql.md."""
    text = DOC.read_text("utf-8")
    fenced = f"```graphql\n{query(name)}```"
    assert text.count(fenced) == 1, f"{name}: the query is not in {DOC.name} verbatim, once"
    after = text.split(fenced, 1)[1]
    return json.loads(after.split("```json\n", 1)[1].split("```", 1)[0])


@pytest.fixture
def demo_app(settings: Settings, db: Database) -> Starlette:
    return create_app(settings, database=db, clock=lambda: DEMO_NOW)


@pytest.fixture
async def demo_client(demo_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=demo_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
        yield c


def test_the_documents_are_named_operations() -> None:
    for name, operation in zip(EXAMPLES, ("BillingPage", "MetricsPage", "BudgetsPage"),
                               strict=True):
        assert f"query {operation}(" in query(name)


async def test_the_shown_results_are_the_answers_at_a_fixed_cost(
    demo_client: httpx.AsyncClient, db: Database, sql: StatementCounter
) -> None:
    token = await seed_demo(db)
    for name in EXAMPLES:
        sql.reset()
        body = await run(demo_client, token, name)
        assert "errors" not in body, body
        assert body == shown(name), f"{name}: run scripts/graphql_examples.py"
        assert sql.count == COSTS[name], (name, sql.statements)
    # Ten times the instances (and their usage), twenty more budgets of the
    # same period: not one statement more.
    await _more_instances(db, 54)
    await _more_budgets(db, 20)
    (budgets,) = [n for n in EXAMPLES if n == "budgets-page"]
    sql.reset()
    body = await run(demo_client, token, budgets)
    assert len(body["data"]["viewer"]["budgets"]) == 21
    assert sql.count == COSTS[budgets], sql.statements
    for name in (n for n in EXAMPLES if n != budgets):
        sql.reset()
        body = await run(demo_client, token, name)
        assert "errors" not in body, body
        assert len(body["data"]["viewer"]["instances"]["edges"]) == 50
        assert body["data"]["viewer"]["instances"]["totalCount"] == 60
        assert sql.count == COSTS[name], (name, sql.statements)


async def _more_budgets(db: Database, count: int) -> None:
    from dataclasses import replace

    from meterql.db import budgets

    async with db.write() as session, session.begin():
        (demo_budget,) = await budgets.rules(budgets.InTransaction(session), demo.DEMO_ACCOUNT)
        for n in range(count):
            await budgets.add(session, demo.DEMO_ACCOUNT,
                              replace(demo_budget, budget_id=f"bud_more_{n:02}", limit=n + 1))


async def _more_instances(db: Database, count: int) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(
            account_id=demo.DEMO_ACCOUNT,
            instances=[InstanceRecord(instance_id=f"inst-bulk-{n:03}") for n in range(count)],
        ))
        await writes.record_events(session, [
            UsageEventRecord(event_id=f"bulk-{n}-{d}", instance_id=f"inst-bulk-{n:03}",
                             model=demo.TRAFFIC[n % len(demo.TRAFFIC)][0],
                             timestamp=DEMO_NOW - timedelta(days=d), tokens_in=100,
                             tokens_out=10)
            for n in range(count) for d in range(0, 30, 5)
        ], account_id=demo.DEMO_ACCOUNT)


def test_every_example_document_in_the_guide_is_valid() -> None:
    """Each ```graphql block of docs/graphql.md that is a document validates against the schema."""
    schema = build_schema()
    blocks = [b.split("```", 1)[0] for b in DOC.read_text("utf-8").split("```graphql\n")[1:]]
    documents = [b for b in blocks if b.lstrip().startswith(("query", "{", "#"))]
    assert len(documents) >= 4
    for document in documents:
        errors = validate(schema._schema, parse(document))
        assert not errors, (document, errors)

"""Tenant isolation: every route and root field, both directions, and under mixed load.

Two tenants, ``alpha`` and ``beta``, share what may be shared (the model and
tier catalogue, event ids, the instance id ``shared-1``, the same days) and
differ in everything else: every identifier only one of them has contains its
name (``alpha-1.alpha.test``, ``alpha-model``, ``tier_beta``, ``Beta Plan``...),
so "no other tenant in this answer" is simply "the other name is not in it".

"The answer for that tenant alone" is measured, not assumed: a tenant's
answers are taken while it is the only one in the database, then again once
the other is in, and must be byte-for-byte the same (both orders).

The route list and the root fields are read from ``ROUTES`` and the schema:
a route or field without a row here fails ``test_every_route_and_field_is_covered``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType, GraphQLOutputType, get_named_type
from starlette.applications import Starlette

from meterql import alerts
from meterql.app import create_app
from meterql.budgets import Measure, Period, Rule, Scope
from meterql.config import FreePlan, Settings
from meterql.db import budgets as stored_budgets
from meterql.db import webhooks as stored_webhooks
from meterql.db import writes
from meterql.db.engine import Database
from meterql.db.webhooks import WebhookRow
from meterql.money import format_usd
from meterql.records import (
    AccountRecord,
    EventRecord,
    InstanceRecord,
    ModelRecord,
    NodeRecord,
    SubscriptionRecord,
    TierRecord,
    TokenRecord,
)
from meterql.rest_compat.routes import ROUTES
from meterql.schema import build_schema
from tests.conftest import NOW
from tests.golden import auth

TENANTS = ("alpha", "beta")
OTHER = {"alpha": "beta", "beta": "alpha"}
READ = {t: f"{t}-read-token-0001" for t in TENANTS}
INGEST = {t: f"{t}-ingest-token-0001" for t in TENANTS}
EVENTS_PATH = "/v1/usage/events"
RECORD_USAGE = (
    "mutation Record($events: [UsageEventInput!]!) "
    "{ recordUsage(events: $events) { accepted duplicates } }"
)

MODELS = [
    ModelRecord(model="gpt-4o", provider="openai", input_usd_per_mtok=Decimal("2.50"),
                output_usd_per_mtok=Decimal("10.00")),
    ModelRecord(model="alpha-model", provider="alpha-labs", input_usd_per_mtok=Decimal(1),
                output_usd_per_mtok=Decimal(1)),
    ModelRecord(model="beta-model", provider="beta-labs", input_usd_per_mtok=Decimal(2),
                output_usd_per_mtok=Decimal(2)),
]


def _tier(name: str, cents: int, allowance: int) -> TierRecord:
    return TierRecord(
        tier_id=f"tier_{name}", tier_slug=name, product_name="Agents",
        plan_name=f"{name.title()} Plan", price_cents=cents, billing_cycle="monthly",
        api_call_limit=50_000, conversation_limit=5_000, instance_limit=5,
        max_sites_per_node=25, token_allowance=allowance,
    )


TIERS = [_tier("alpha", 1000, 1_000_000), _tier("beta", 2000, 2_000_000)]


def _sub(tier: str, status: str, start: str, end: str, trial: str | None) -> SubscriptionRecord:
    return SubscriptionRecord.model_validate(
        {"tier_id": tier, "status": status, "current_period_start": start,
         "current_period_end": end, "trial_ends_at": trial}
    )


ACCOUNTS = {
    "alpha": AccountRecord(
        account_id="alpha",
        tokens=[TokenRecord(token=READ["alpha"], scopes=["read"]),
                TokenRecord(token=INGEST["alpha"], scopes=["read", "ingest"])],
        instances=[
            InstanceRecord(instance_id="alpha-1", hostname="alpha-1.alpha.test", status="running"),
            InstanceRecord(instance_id="alpha-2", hostname="alpha-2.alpha.test", status="stopped"),
            InstanceRecord(instance_id="shared-1", hostname="shared-1.alpha.test",
                           status="running"),
        ],
        subscriptions=[_sub("tier_alpha", "trialing", "2026-11-01T00:00:00Z",
                            "2026-12-01T00:00:00Z", "2026-11-25T12:00:00Z")],
        webhost_nodes=[NodeRecord(node_id="alpha-node", hosted_sites=5)],
    ),
    "beta": AccountRecord(
        account_id="beta",
        tokens=[TokenRecord(token=READ["beta"], scopes=["read"]),
                TokenRecord(token=INGEST["beta"], scopes=["read", "ingest"])],
        instances=[
            InstanceRecord(instance_id="beta-1", hostname="beta-1.beta.test", status="running"),
            InstanceRecord(instance_id="shared-1", hostname="shared-1.beta.test", status="error"),
        ],
        subscriptions=[_sub("tier_beta", "active", "2026-11-10T00:00:00Z",
                            "2026-12-10T00:00:00Z", None)],
        webhost_nodes=[NodeRecord(node_id="beta-node", hosted_sites=7),
                       NodeRecord(node_id="beta-node-2", hosted_sites=11)],
    ),
}


def _event(account: str, event_id: str, instance: str, model: str, ts: str, tokens_in: int,
           tokens_out: int, user: str | None = None) -> EventRecord:
    return EventRecord.model_validate(
        {"account_id": account, "event_id": event_id, "instance_id": instance, "model": model,
         "timestamp": ts, "tokens_in": tokens_in, "tokens_out": tokens_out, "end_user_id": user}
    )


# Same event ids and instants in both tenants; every 7-day total is exact to 4 places.
EVENTS = {
    "alpha": [
        # 1000 × 2.5 / 1e6 + 100 × 10 / 1e6 = 0.0035
        _event("alpha", "evt-1", "alpha-1", "gpt-4o", "2026-11-20T10:00:00Z", 1000, 100, "u-1"),
        # 500 × 1 / 1e6 + 500 × 1 / 1e6 = 0.001
        _event("alpha", "evt-2", "shared-1", "alpha-model", "2026-11-19T08:00:00Z", 500, 500,
               "u-2"),
        _event("alpha", "evt-3", "alpha-2", "gpt-4o", "2026-11-02T00:00:00Z", 200, 0),
        _event("alpha", "only-alpha", "alpha-1", "alpha-model", "2026-10-20T00:00:00Z", 7, 7),
    ],
    "beta": [
        # 40 × 2.5 / 1e6 + 60 × 10 / 1e6 = 0.0007
        _event("beta", "evt-1", "beta-1", "gpt-4o", "2026-11-20T10:00:00Z", 40, 60, "u-1"),
        # 3000 × 2 / 1e6 × 2 = 0.012
        _event("beta", "evt-2", "shared-1", "beta-model", "2026-11-19T08:00:00Z", 3000, 3000),
        _event("beta", "evt-3", "beta-1", "beta-model", "2026-11-12T12:00:00Z", 1, 1, "u-9"),
        _event("beta", "only-beta", "shared-1", "gpt-4o", "2026-10-01T00:00:00Z", 10, 10),
    ],
}


def _budget(tenant: str) -> Rule:
    """A budget of the tenant's own model, under an id both tenants use, small enough
    to have crossed its thresholds: its alerts are in the answers too."""
    return Rule(
        budget_id="bud_same_in_both", name=f"{tenant} budget", scope=Scope.MODEL,
        scope_key=f"{tenant}-model", measure=Measure.TOKENS, limit=100, period=Period.MONTH,
        time_zone="UTC", thresholds=(50, 100), revision=1,
        created_at=datetime(2026, 10, 1, tzinfo=UTC), watched_from=datetime(2026, 10, 1, tzinfo=UTC),
    )


async def seed_tenant(db: Database, tenant: str) -> None:
    """The shared catalogue (again: upserts) and one tenant's account, budget and events."""
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, MODELS)
        await writes.upsert_tiers(session, TIERS)
        await writes.upsert_account(session, ACCOUNTS[tenant])
        await stored_budgets.add(session, tenant, _budget(tenant))
        await stored_webhooks.add(session, tenant, WebhookRow(
            "whk_same_in_both", f"https://{tenant}.example/hook", f"{tenant} hook",
            datetime(2026, 10, 1, tzinfo=UTC)), f"whsec_{tenant}")
        await writes.record_events(session, EVENTS[tenant])
        await alerts.after_batch(
            session, tenant, [(e.timestamp, e.instance_id, e.model) for e in EVENTS[tenant]],
            NOW, FreePlan())


# --- what is asked: every GET route and every root field ---------------------------------

# Query strings per GET route; the chart asks for the whole account and for
# the instance id both tenants have.
REST_CALLS: dict[str, list[str]] = {
    "/v1/metrics/summary": ["?days=90", "?days=7"],
    "/v1/metrics/instances": ["?days=90"],
    "/v1/metrics/models": ["?days=90"],
    "/v1/metrics/usage": ["?days=7"],
    "/v1/billing": [""],
    "/v1/billing/trial-status": [""],
    "/v1/billing/usage": [""],
    "/v1/billing/usage/chart": ["?days=366", "?days=30&instance_id=shared-1"],
    # CSV (kept as text): a year by instance, hours by model in a :30 zone, the default.
    "/v1/export/usage.csv": ["?from=2025-11-21&to=2026-11-20&granularity=week&group_by=instance",
                             "?from=2026-11-13&to=2026-11-20&granularity=hour&group_by=model"
                             "&tz=Asia/Kolkata", "?group_by=provider"],
}
# Arguments per root query field, the same choices as over REST.
GRAPHQL_CALLS: dict[str, list[str]] = {
    "metricsSummary": ["(days: 90)"],
    "instanceUsage": ["(days: 90)"],
    "modelBreakdown": ["(days: 90)"],
    "usageTimeseries": ["(days: 7)"],
    "billing": [""],
    "trialStatus": [""],
    "billingUsage": [""],
    "usageChart": ["(days: 366)", '(days: 30, instanceId: "shared-1")'],
    # Every field of the graph, instances with their default page.
    "viewer": [""],
    "plans": [""],
    "usage": ["(days: 366, groupBy: INSTANCE)", "(days: 90, groupBy: MODEL, tz: \"Asia/Kolkata\")",
              "(days: 30, groupBy: PROVIDER, granularity: HOUR)"],
}
# Root fields that answer the shared catalogue: the same for every tenant,
# both tenants' tiers in it, by design. Checked for sameness instead.
CATALOGUE = {"plans"}
MUTATIONS = {"recordUsage", "createBudget", "updateBudget", "deleteBudget", "createWebhook",
             "deleteWebhook", "redeliver"}

SCHEMA = build_schema()._schema


def selection(type_: GraphQLOutputType) -> str:
    """Every field of an object type, recursively: nothing an answer holds goes unchecked."""
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return ""
    return "{ " + " ".join(
        f"{name} {selection(field.type)}".strip() for name, field in named.fields.items()
    ) + " }"


def graphql_query(field: str, arguments: str) -> str:
    assert SCHEMA.query_type is not None
    return f"{{ {field}{arguments} {selection(SCHEMA.query_type.fields[field].type)} }}"


def test_every_route_and_field_is_covered() -> None:
    """A new route or root field must get a row above, so its isolation is tested."""
    assert set(REST_CALLS) == {r.path for r in ROUTES if r.method == "GET"}
    assert {r.path for r in ROUTES if r.method != "GET"} == {EVENTS_PATH}
    assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
    assert set(GRAPHQL_CALLS) == set(SCHEMA.query_type.fields)
    assert set(SCHEMA.mutation_type.fields) == MUTATIONS


async def answers(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """Every GET route's and every root field's answer for ``token``, keyed by what was asked."""
    out: dict[str, Any] = {}
    for path, queries in REST_CALLS.items():
        for query in queries:
            response = await client.get(path + query, headers=auth(token))
            assert response.status_code == 200, (path + query, response.text)
            csv = response.headers["content-type"].startswith("text/csv")
            out[path + query] = response.text if csv else response.json()
    for field, arguments in GRAPHQL_CALLS.items():
        for argument in arguments:
            response = await client.post(
                "/graphql", json={"query": graphql_query(field, argument)}, headers=auth(token)
            )
            body = response.json()
            assert response.status_code == 200 and "errors" not in body, (field, body)
            out[field + argument] = body["data"]
    return out


def assert_only(tenant: str, answer: Any, where: str = "") -> None:
    """``answer`` names nothing of the other tenant (every one of its ids holds its name)."""
    if where in CATALOGUE:
        return
    text = json.dumps(answer)
    assert OTHER[tenant] not in text, (tenant, where, text)


async def post_events(client: httpx.AsyncClient, door: str, tenant: str,
                      events: list[dict[str, Any]]) -> dict[str, int]:
    """Send a batch through ``door`` (``rest`` or ``graphql``); its accepted/duplicates."""
    if door == "rest":
        response = await client.post(EVENTS_PATH, json=events, headers=auth(INGEST[tenant]))
        assert response.status_code == 200, response.text
        result: dict[str, int] = response.json()
        return result
    camel = [{"eventId": e["event_id"], "instanceId": e["instance_id"], "model": e["model"],
              "timestamp": e["timestamp"], "tokensIn": e["tokens_in"],
              "tokensOut": e["tokens_out"]} for e in events]
    response = await client.post("/graphql",
                                 json={"query": RECORD_USAGE, "variables": {"events": camel}},
                                 headers=auth(INGEST[tenant]))
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    result = body["data"]["recordUsage"]
    return result


def new_event(event_id: str, instance: str, model: str, tokens: int) -> dict[str, Any]:
    return {"event_id": event_id, "instance_id": instance, "model": model,
            "timestamp": "2026-11-20T14:30:00Z", "tokens_in": tokens, "tokens_out": tokens}


# --- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("first", TENANTS)
async def test_each_tenant_sees_exactly_its_answers_alone(
    client: httpx.AsyncClient, db: Database, first: str
) -> None:
    """Every route and field, for both tokens: what the tenant alone would get, nothing more."""
    second = OTHER[first]
    await seed_tenant(db, first)
    alone = await answers(client, READ[first])
    await seed_tenant(db, second)
    together = {t: await answers(client, READ[t]) for t in TENANTS}

    assert together[first] == alone
    for tenant in TENANTS:
        for key, answer in together[tenant].items():
            assert_only(tenant, answer, key)
        # The check above means something: each tenant's own ids do show.
        assert f"{tenant}-model" in json.dumps(together[tenant]["/v1/metrics/models?days=90"])
        assert f"shared-1.{tenant}.test" in json.dumps(
            together[tenant]["/v1/metrics/instances?days=90"])
        assert f"shared-1.{tenant}.test" in json.dumps(together[tenant]["viewer"])
        assert f"{tenant}-model" in json.dumps(together[tenant]["viewer"])
        assert f"{tenant} budget" in json.dumps(together[tenant]["viewer"]["viewer"]["budgets"])
        assert together[tenant]["viewer"]["viewer"]["alerts"]["totalCount"] > 0
        deliveries = together[tenant]["viewer"]["viewer"]["webhookDeliveries"]
        assert deliveries["totalCount"] > 0
        assert f'"{tenant} budget"' in deliveries["edges"][0]["node"]["payload"].replace(
            '\\"', '"')
        export = "/v1/export/usage.csv?from=2025-11-21&to=2026-11-20&granularity=week"
        assert f"{tenant}-1" in together[tenant][export + "&group_by=instance"]
    # The catalogue is the same for both, and is the whole catalogue.
    for key in CATALOGUE:
        assert together["alpha"][key] == together["beta"][key]
        assert {"tier_alpha", "tier_beta"} <= set(json.dumps(together["alpha"][key]).split('"'))


# Hand-worked totals: 90 days (all events) and the billing period.
EXPECTED = {
    "alpha": {"requests_90": 4, "tokens_in_90": 1707, "tokens_out_90": 607,
              "period_requests": 3, "plan": "Alpha Plan", "hosted_sites": 5, "instances": 3},
    "beta": {"requests_90": 4, "tokens_in_90": 3051, "tokens_out_90": 3071,
             "period_requests": 3, "plan": "Beta Plan", "hosted_sites": 18, "instances": 2},
}


@pytest.mark.parametrize("tenant", TENANTS)
async def test_hand_worked_numbers_per_tenant(
    client: httpx.AsyncClient, db: Database, tenant: str
) -> None:
    """Anchors for the matrix: with both tenants in, each token gets its own hand-worked sums."""
    for t in TENANTS:
        await seed_tenant(db, t)
    want = EXPECTED[tenant]
    headers = auth(READ[tenant])
    summary = (await client.get("/v1/metrics/summary?days=90", headers=headers)).json()
    assert (summary["total_requests"], summary["total_tokens_in"],
            summary["total_tokens_out"]) == (want["requests_90"], want["tokens_in_90"],
                                             want["tokens_out_90"])
    billing = (await client.get("/v1/billing", headers=headers)).json()
    assert billing["plan"]["plan_name"] == want["plan"]
    assert billing["subscribed_tier_ids"] == [f"tier_{tenant}"]
    assert billing["usage"]["total_requests"] == want["period_requests"]
    assert billing["usage"]["total_hosted_sites"] == want["hosted_sites"]
    instances = (await client.get("/v1/metrics/instances?days=90", headers=headers)).json()
    assert instances["total_count"] == want["instances"]
    graph = (await client.post("/graphql", headers=headers, json={"query": (
        "{ viewer { plan { planName } instances { totalCount } subscriptions { tierId } "
        "webhostNodes { hostedSites } } }")})).json()["data"]["viewer"]
    assert graph["plan"]["planName"] == want["plan"]
    assert graph["instances"]["totalCount"] == want["instances"]
    assert [s["tierId"] for s in graph["subscriptions"]] == [f"tier_{tenant}"]
    assert sum(n["hostedSites"] for n in graph["webhostNodes"]) == want["hosted_sites"]


@pytest.mark.parametrize("tenant", TENANTS)
async def test_the_other_tenants_instance_is_not_found_like_a_missing_one(
    client: httpx.AsyncClient, db: Database, tenant: str
) -> None:
    """A chart of the other tenant's instance answers exactly as one nobody has."""
    for t in TENANTS:
        await seed_tenant(db, t)
    foreign = f"{OTHER[tenant]}-1"  # exists, in the other tenant only
    headers = auth(READ[tenant])
    rest = [await client.get("/v1/billing/usage/chart", params={"instance_id": i},
                             headers=headers) for i in (foreign, "no-such-instance")]
    assert [r.status_code for r in rest] == [404, 404]
    assert rest[0].content == rest[1].content == b'{"detail":"Instance not found"}'
    # Headers alike too, but for the request id each answer has its own.
    assert ({k: v for k, v in rest[0].headers.items() if k != "x-request-id"}
            == {k: v for k, v in rest[1].headers.items() if k != "x-request-id"})
    query = "query($i: String) { usageChart(instanceId: $i) { periodLabel } }"
    graphql = [await client.post("/graphql", json={"query": query, "variables": {"i": i}},
                                 headers=headers) for i in (foreign, "no-such-instance")]
    assert graphql[0].content == graphql[1].content
    assert graphql[0].json()["errors"][0]["extensions"] == {"code": "NOT_FOUND"}
    # ... while its own instance of the same name as the other's answers.
    own = await client.get("/v1/billing/usage/chart", params={"instance_id": f"{tenant}-1"},
                           headers=headers)
    assert own.status_code == 200


@pytest.mark.parametrize("door", ["rest", "graphql"])
@pytest.mark.parametrize("writer", TENANTS)
async def test_ingest_never_changes_the_other_tenants_answers(
    client: httpx.AsyncClient, db: Database, door: str, writer: str
) -> None:
    reader = OTHER[writer]
    for t in TENANTS:
        await seed_tenant(db, t)
    before = await answers(client, READ[reader])
    writer_before = (await client.get("/v1/metrics/summary?days=90",
                                      headers=auth(READ[writer]))).json()
    batch = [
        new_event("evt-1", "shared-1", "gpt-4o", 5),  # the writer's own evt-1: a duplicate
        new_event(f"only-{reader}", "shared-1", "gpt-4o", 5),  # the reader's id: new here
        new_event("fresh-1", f"{reader}-1", "gpt-4o", 5),  # the reader's instance id
    ]
    assert await post_events(client, door, writer, batch) == {"accepted": 2, "duplicates": 1}

    assert await answers(client, READ[reader]) == before
    writer_after = (await client.get("/v1/metrics/summary?days=90",
                                     headers=auth(READ[writer]))).json()
    assert writer_after["total_requests"] == writer_before["total_requests"] + 2
    # The writer's event on "<reader>-1" registered an instance of the writer's own.
    instances = (await client.get("/v1/metrics/instances?days=90",
                                  headers=auth(READ[writer]))).json()["instances"]
    (registered,) = [i for i in instances if i["instance_id"] == f"{reader}-1"]
    assert (registered["hostname"], registered["status"]) == ("", "unknown")


@pytest.mark.parametrize("door", ["rest", "graphql"])
async def test_the_same_event_id_in_both_tenants_is_two_events(
    client: httpx.AsyncClient, db: Database, door: str
) -> None:
    for t in TENANTS:
        await seed_tenant(db, t)
    before = {t: (await client.get("/v1/metrics/summary?days=7", headers=auth(READ[t]))).json()
              for t in TENANTS}
    for tenant in TENANTS:
        event = new_event("same-id", "shared-1", f"{tenant}-model", 100)
        assert await post_events(client, door, tenant, [event]) == {"accepted": 1,
                                                                    "duplicates": 0}
    for tenant in TENANTS:  # and each is a duplicate only of itself
        event = new_event("same-id", "shared-1", f"{tenant}-model", 100)
        assert await post_events(client, door, tenant, [event]) == {"accepted": 0,
                                                                    "duplicates": 1}
    for tenant in TENANTS:
        after = (await client.get("/v1/metrics/summary?days=7", headers=auth(READ[tenant]))).json()
        assert after["total_requests"] == before[tenant]["total_requests"] + 1
        assert after["total_tokens_in"] == before[tenant]["total_tokens_in"] + 100


# --- concurrent mixed traffic ------------------------------------------------------------

# Per tenant: the instance and model its load ingests on, tokens per event
# (in = out) and the exact cost of one event.
LOAD = {
    "alpha": ("alpha-1", "alpha-model", 100, Decimal("0.0002")),  # 200 × 1 / 1e6
    "beta": ("beta-1", "beta-model", 1000, Decimal("0.004")),  # 2000 × 2 / 1e6
}
REQUESTS = 200
BATCH = 2


@pytest.fixture
async def load_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose timeouts let 200 simultaneous requests queue on a small machine.

    With the defaults, requests waiting over 1.5 s for one of the pool's
    connections, or for a new one to open, answer 503, as they should; here
    every one must be served (opening twenty connections at once takes over
    1.5 s on two busy cores).
    """
    settings = settings.model_copy(update={
        "db_statement_timeout_s": 60.0, "db_pool_timeout_s": 60.0,
        "db_connect_timeout_s": 60.0,
        "sqlite_busy_timeout_ms": 60_000,
    })
    database = Database.from_settings(settings)
    app: Starlette = create_app(settings, database=database, clock=lambda: NOW)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://meterql.test") as client:
            yield client
    finally:
        await database.dispose()


def _summary(body: dict[str, Any]) -> tuple[int, int, int, str]:
    """(requests, tokens in, tokens out, cost) of a REST or GraphQL 7-day summary."""
    if "totalRequests" in body:
        return (body["totalRequests"], body["totalTokensIn"], body["totalTokensOut"],
                body["estimatedCostUsd"])
    return (body["total_requests"], body["total_tokens_in"], body["total_tokens_out"],
            body["estimated_cost_usd"])


async def test_concurrent_mixed_traffic_from_both_tenants(
    db: Database, load_client: httpx.AsyncClient
) -> None:
    """200 interleaved requests of both tenants: each answer is its tenant's, and consistent.

    Reads that ingest cannot change (plan, trial, instance list) must equal
    the tenant's answer exactly. Usage totals may show any number k of the
    tenant's own ingested events, but only those: requests = base + k and
    tokens and cost = base + k × the tenant's per-event amounts (the other
    tenant's events have other amounts, so a leak cannot hide). At the end,
    every event counts exactly once.
    """
    client = load_client
    for t in TENANTS:
        await seed_tenant(db, t)
    expected = {t: await answers(client, READ[t]) for t in TENANTS}
    base = {t: _summary(expected[t]["/v1/metrics/summary?days=7"]) for t in TENANTS}
    summary_query = graphql_query("metricsSummary", "(days: 7)")
    sent = {t: 0 for t in TENANTS}

    def request(i: int) -> tuple[str, str, Any]:
        tenant = TENANTS[i % 2]
        kind = ("rest-summary", "graphql-summary", "rest-ingest", "rest-trial",
                "graphql-ingest", "graphql-billing", "rest-instances", "rest-chart")[(i // 2) % 8]
        headers = auth(READ[tenant])
        if kind.endswith("ingest"):
            instance, model, tokens, _ = LOAD[tenant]
            # The same ids in both tenants, at the same time.
            events = [new_event(f"load-{i // 2}-{n}", instance, model, tokens)
                      for n in range(BATCH)]
            sent[tenant] += BATCH
            return tenant, kind, post_events(client, kind.split("-")[0], tenant, events)
        if kind == "rest-summary":
            return tenant, kind, client.get("/v1/metrics/summary?days=7", headers=headers)
        if kind == "graphql-summary":
            return tenant, kind, client.post("/graphql", json={"query": summary_query},
                                             headers=headers)
        if kind == "rest-trial":
            return tenant, kind, client.get("/v1/billing/trial-status", headers=headers)
        if kind == "graphql-billing":
            return tenant, kind, client.post("/graphql", json={"query": graphql_query(
                "billing", "")}, headers=headers)
        if kind == "rest-instances":
            return tenant, kind, client.get("/v1/metrics/instances?days=90", headers=headers)
        return tenant, kind, client.get("/v1/billing/usage/chart?days=30&instance_id=shared-1",
                                        headers=headers)

    calls = [request(i) for i in range(REQUESTS)]
    results = await asyncio.gather(*(call for _, _, call in calls))

    for (tenant, kind, _), result in zip(calls, results, strict=True):
        if kind.endswith("ingest"):
            assert result == {"accepted": BATCH, "duplicates": 0}, (tenant, kind)
            continue
        assert isinstance(result, httpx.Response)
        assert result.status_code == 200, (tenant, kind, result.text)
        body = result.json()
        assert_only(tenant, body, kind)
        if kind == "rest-trial":
            assert body == expected[tenant]["/v1/billing/trial-status"]
        elif kind == "graphql-billing":
            want = expected[tenant]["billing"]["billing"]
            assert body["data"]["billing"]["plan"] == want["plan"]
            assert body["data"]["billing"]["subscribedTierIds"] == want["subscribedTierIds"]
        elif kind == "rest-chart":  # the load ingests on other instances
            assert body == expected[tenant]["/v1/billing/usage/chart?days=30&instance_id=shared-1"]
        elif kind == "rest-instances":
            want = expected[tenant]["/v1/metrics/instances?days=90"]
            assert [(i["instance_id"], i["hostname"], i["status"]) for i in body["instances"]
                    ] == [(i["instance_id"], i["hostname"], i["status"])
                          for i in want["instances"]]
        else:
            summary = _summary(body["data"]["metricsSummary"] if "data" in body else body)
            _, _, tokens, cost = LOAD[tenant]
            k = summary[0] - base[tenant][0]
            assert 0 <= k <= sent[tenant], (tenant, kind, summary)
            assert summary == (base[tenant][0] + k, base[tenant][1] + k * tokens,
                               base[tenant][2] + k * tokens,
                               format_usd(Decimal(base[tenant][3]) + k * cost)), (tenant, kind)

    # At the end: every ingested event counted once, in its own tenant only.
    for tenant in TENANTS:
        _, _, tokens, cost = LOAD[tenant]
        k = sent[tenant]
        final = (await client.get("/v1/metrics/summary?days=7", headers=auth(READ[tenant]))).json()
        assert _summary(final) == (base[tenant][0] + k, base[tenant][1] + k * tokens,
                                   base[tenant][2] + k * tokens,
                                   format_usd(Decimal(base[tenant][3]) + k * cost))
        after = await answers(client, READ[tenant])
        for key, answer in after.items():
            assert_only(tenant, answer, key)


async def test_more_concurrent_batches_than_pooled_connections(
    db: Database, load_client: httpx.AsyncClient
) -> None:
    """Each batch once held its authentication's connection while waiting for a write one.

    With more simultaneous batches than the pool has connections (20 on
    PostgreSQL, 15 on SQLite), every connection was held by a batch waiting
    for another, until the pool timed out and each answered 503.
    """
    for t in TENANTS:
        await seed_tenant(db, t)
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(
        post_events(load_client, ("rest", "graphql")[n % 2], TENANTS[n // 2 % 2],
                    [new_event(f"pool-{n}", "shared-1", "gpt-4o", 1)])
        for n in range(48)
    ))
    assert results == [{"accepted": 1, "duplicates": 0}] * 48
    assert asyncio.get_running_loop().time() - started < 30
    for tenant in TENANTS:
        summary = (await load_client.get("/v1/metrics/summary?days=7",
                                          headers=auth(READ[tenant]))).json()
        assert summary["total_requests"] == 2 + 24  # evt-1, evt-2 and its 24 batches

"""The GraphQL schema: direct execution, REST parity, auth, errors, scalars."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from meterql.config import Settings
from meterql.context import Context
from meterql.db.accounts import TokenGrant
from meterql.db.engine import Database
from meterql.schema import build_schema
from tests.conftest import NOW
from tests.golden import ACME_TOKEN, auth, seed


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


def _context(db: Database, settings: Settings, account: str = "acme") -> Context:
    return Context(db=db, settings=settings, grant=TokenGrant(account, frozenset({"read"})),
                   now=NOW)


async def test_schema_execute(db: Database, settings: Settings) -> None:
    result = await build_schema().execute(
        "{ metricsSummary(days: 7) { totalRequests estimatedCostUsd uniqueModels }"
        "  trialStatus { trialEndsAt trialExpired } }",
        context_value=_context(db, settings),
    )
    assert result.errors is None
    assert result.data == {
        "metricsSummary": {"totalRequests": 5, "estimatedCostUsd": "0.0105", "uniqueModels": 3},
        "trialStatus": {"trialEndsAt": "2026-11-25T12:00:00Z", "trialExpired": False},
    }


async def test_arguments_keep_rest_defaults(db: Database, settings: Settings) -> None:
    result = await build_schema().execute(
        "{ metricsSummary { periodDays } usageChart { periodLabel } }",
        context_value=_context(db, settings),
    )
    assert result.data == {"metricsSummary": {"periodDays": 30},
                           "usageChart": {"periodLabel": "Last 30 days"}}


# The same numbers through both doors: each REST route and a hand-written
# GraphQL query over the same root field, compared after snake_casing keys.
PARITY = [
    ("/v1/metrics/summary?days=7", "metricsSummary(days: 7)",
     "activeInstances estimatedCostUsd periodDays totalRequests totalTokens totalTokensIn "
     "totalTokensOut uniqueModels"),
    ("/v1/metrics/instances?days=90", "instanceUsage(days: 90)",
     "instances { estimatedCostUsd hostname instanceId requestCount status totalTokens } "
     "totalCount"),
    ("/v1/metrics/models?days=8", "modelBreakdown(days: 8)",
     "models { estimatedCostUsd model pctOfTotal provider requestCount tokensIn tokensOut } "
     "totalRequests"),
    ("/v1/metrics/usage?days=7", "usageTimeseries(days: 7)",
     "periodDays points { date estimatedCostUsd requests tokensIn tokensOut }"),
    ("/v1/billing", "billing",
     "plan { apiCallLimit billingCycle conversationLimit currentPeriodEnd currentPeriodStart "
     "instanceLimit maxSitesPerNode planName priceCents productName status tierId tierSlug "
     "tokenAllowance trialDaysRemaining trialEndsAt } subscribedTierIds usage { activeInstances "
     "apiCallLimit conversationLimit instanceLimit maxSitesPerNode platformCostUsd tokenAllowance "
     "totalCostUsd totalHostedSites totalRequests totalTokens uniqueEndUsers webhostNodes }"),
    ("/v1/billing/trial-status", "trialStatus",
     "planName status trialDaysRemaining trialEndsAt trialExpired upgradeUrl"),
    ("/v1/billing/usage", "billingUsage",
     "byInstance { costUsd hostname instanceId requests tokens } periodEnd periodStart "
     "platformCostUsd tokenAllowanceMonthly tokenUsagePct totalCostUsd totalRequests "
     "totalTokens uniqueEndUsers"),
    ("/v1/billing/usage/chart?days=5&instance_id=inst-a",
     'usageChart(days: 5, instanceId: "inst-a")', "periodLabel points { costUsd date requests tokens }"),
]


def _snake(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


@pytest.mark.parametrize(("path", "field", "selection"), PARITY,
                         ids=[p[0] for p in PARITY])
async def test_rest_equals_graphql(
    client: httpx.AsyncClient, path: str, field: str, selection: str
) -> None:
    rest = await client.get(path, headers=auth())
    graphql = await client.post(
        "/graphql", json={"query": f"{{ {field} {{ {selection} }} }}"}, headers=auth()
    )
    assert rest.status_code == graphql.status_code == 200
    body = graphql.json()
    assert "errors" not in body
    (result,) = body["data"].values()
    assert _snake(result) == rest.json()


async def test_graphql_needs_a_token(client: httpx.AsyncClient) -> None:
    query = {"query": "{ billing { plan { planName } } }"}
    missing = await client.post("/graphql", json=query)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Not authenticated"}
    assert missing.headers["www-authenticate"] == "Bearer"
    bad = await client.post("/graphql", json=query, headers=auth("nope-nope-nope"))
    assert bad.status_code == 401
    assert bad.json() == {"detail": "Invalid authentication credentials"}
    via_get = await client.get("/graphql", params={"query": "{ trialStatus { status } }"})
    assert via_get.status_code == 401


async def test_graphql_over_get_with_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "{ trialStatus { status } }"},
                                headers=auth())
    assert response.json() == {"data": {"trialStatus": {"status": "trialing"}}}


async def test_graphiql_page_loads_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("metricsSummary(days: 6)", "days: Input should be greater than or equal to 7"),
        ("instanceUsage(days: 91)", "days: Input should be less than or equal to 90"),
        ("usageChart(days: 0)", "days: Input should be greater than or equal to 1"),
        ("usageChart(days: 367)", "days: Input should be less than or equal to 366"),
    ],
)
async def test_bad_arguments_are_graphql_errors(
    client: httpx.AsyncClient, field: str, message: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": f"{{ {field} {{ __typename }} }}"}, headers=auth()
    )
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["message"] == message
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_days_of_wrong_type_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": '{ metricsSummary(days: "x") { periodDays } }'},
        headers=auth(),
    )
    assert response.status_code == 200
    assert "Int cannot represent" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("instance", ["inst-g", "unknown"])
async def test_chart_for_foreign_instance_is_not_found(
    client: httpx.AsyncClient, instance: str
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query($i: String) { usageChart(instanceId: $i) { periodLabel } }",
              "variables": {"i": instance}},
        headers=auth(),
    )
    (error,) = response.json()["errors"]
    assert error["message"] == "Instance not found"
    assert error["extensions"] == {"code": "NOT_FOUND"}


async def test_unexpected_errors_are_masked(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterql.db import usage

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM usage_events -- boom")

    monkeypatch.setattr(usage, "totals", broken)
    graphql = await client.post(
        "/graphql", json={"query": "{ metricsSummary { periodDays } }"},
        headers={**auth(), "X-Request-ID": "req-graphql-1"},
    )
    assert graphql.status_code == 200
    (error,) = graphql.json()["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL", "requestId": "req-graphql-1"}
    assert "secret" not in graphql.text and "Traceback" not in graphql.text
    rest = await client.get("/v1/metrics/summary", headers=auth())
    assert rest.status_code == 500
    # The id the server made up is in the body and the header alike.
    assert rest.json() == {"detail": "Internal Server Error",
                           "request_id": rest.headers["x-request-id"]}
    assert "secret" not in rest.text


def test_sdl_names_the_contract_fields() -> None:
    sdl = build_schema().as_str()
    for signature in [
        "metricsSummary(days: Int! = 30): MetricsSummary!",
        "instanceUsage(days: Int! = 30): InstanceUsageList!",
        "modelBreakdown(days: Int! = 30): ModelBreakdown!",
        "usageTimeseries(days: Int! = 30): UsageTimeseries!",
        "billing: Billing!",
        "trialStatus: TrialStatus!",
        "billingUsage: BillingUsage!",
        "usageChart(days: Int! = 30, instanceId: String = null): UsageChart!",
        "scalar Decimal",
        "scalar DateTime",
        "scalar Date",
    ]:
        assert signature in sdl


def test_every_rest_key_has_a_camel_case_field() -> None:
    from graphql import FieldNode, OperationDefinitionNode

    from meterql.rest_compat.endpoint import prepare
    from meterql.rest_compat.routes import ROUTES

    schema = build_schema()
    for prepared in prepare(schema, ROUTES):
        stack = [node for node in prepared.document.definitions
                 if isinstance(node, OperationDefinitionNode)]
        while stack:
            node = stack.pop()
            for selection in node.selection_set.selections if node.selection_set else []:
                assert isinstance(selection, FieldNode)
                alias = selection.alias.value if selection.alias else selection.name.value
                if alias != "body":
                    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), alias)
                    assert selection.name.value == camel, (prepared.route.path, alias)
                stack.append(selection)  # type: ignore[arg-type]


def test_app_refuses_to_start_with_an_invalid_document(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterql.app import create_app
    from meterql.rest_compat import endpoint

    monkeypatch.setattr(endpoint, "load_document", lambda _name: "{ metricsSummary { nope } }")
    with pytest.raises(endpoint.DocumentError, match="nope"):
        create_app(settings)


async def test_documents_are_parsed_once_at_start_up(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graphql

    from meterql.app import create_app
    from meterql.rest_compat import endpoint
    from meterql.rest_compat.routes import ROUTES

    calls: list[str] = []

    def counting_parse(text: str) -> graphql.DocumentNode:
        calls.append(text)
        return graphql.parse(text)

    monkeypatch.setattr(endpoint, "parse", counting_parse)
    app = create_app(settings, database=db, clock=lambda: NOW)
    assert len(calls) == len(ROUTES)  # one per route, at start-up
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            assert (await client.get("/v1/billing", headers=auth(ACME_TOKEN))).status_code == 200
    assert len(calls) == len(ROUTES)  # and never again per request


async def test_reading_needs_the_read_scope(db: Database, client: httpx.AsyncClient) -> None:
    from meterql.db import writes

    async with db.write() as session, session.begin():
        ingest_only = await writes.create_token(session, "acme", ["ingest"])
    graphql = await client.post("/graphql", json={"query": "{ billing { plan { planName } } }"},
                                headers=auth(ingest_only))
    (error,) = graphql.json()["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    rest = await client.get("/v1/billing", headers=auth(ingest_only))
    assert rest.status_code == 403
    assert rest.json() == {"detail": "This token lacks the 'read' scope"}
    # ... while it may still send usage.
    sent = await client.post("/v1/usage/events", json=[], headers=auth(ingest_only))
    assert sent.json() == {"accepted": 0, "duplicates": 0}


async def test_repeated_queries_are_parsed_and_validated_once(client: httpx.AsyncClient) -> None:
    from strawberry.extensions.parser_cache import _get_parse_cache
    from strawberry.extensions.validation_cache import _get_validate_cache

    from meterql.schema import GRAPHQL_CACHE_SIZE

    parse, validate = _get_parse_cache(GRAPHQL_CACHE_SIZE), _get_validate_cache(GRAPHQL_CACHE_SIZE)
    document = "query($days: Int!) { usageTimeseries(days: $days) { periodDays } }"
    before = (parse.cache_info(), validate.cache_info())
    # One document, other variables each time: each answer is made (none is kept).
    for days in (9, 10, 11):
        response = await client.post("/graphql", headers=auth(),
                                     json={"query": document, "variables": {"days": days}})
        assert response.json() == {"data": {"usageTimeseries": {"periodDays": days}}}
    after = (parse.cache_info(), validate.cache_info())
    assert after[0].hits - before[0].hits >= 2 and after[1].hits - before[1].hits >= 2

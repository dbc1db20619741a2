"""/graphql's guards: limits, body size, refused transports, introspection, masking, ids."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, auth, seed

Client = Callable[..., Any]


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


@asynccontextmanager
async def client_with(
    settings: Settings, db: Database, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=overrides), database=db, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as c:
        yield c


async def graphql(client: httpx.AsyncClient, query: str, **extra: Any) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, **extra}, headers=auth())


def messages(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None
    return [error["message"] for error in body["errors"]]


# --- limits, checked before anything runs ---------------------------------------------

DEPTH_2 = "{ billing { plan { planName } } }"  # billing → plan → planName
ALIASES_3 = "{ a: trialStatus { planName } b: trialStatus { n: planName } }"


async def test_depth_limit(settings: Settings, db: Database) -> None:
    async with client_with(settings, db, graphql_max_depth=1) as client:
        refused = messages(await graphql(client, DEPTH_2))
        assert refused == ["'anonymous' exceeds maximum operation depth of 1"]
        ok = await graphql(client, "{ trialStatus { planName } }")
        assert ok.json() == {"data": {"trialStatus": {"planName": "Pro"}}}


async def test_depth_counts_through_fragments(settings: Settings, db: Database) -> None:
    query = "{ ...B } fragment B on Query { billing { ...P } } fragment P on Billing { plan { planName } }"
    async with client_with(settings, db, graphql_max_depth=1) as client:
        assert messages(await graphql(client, query)) == [
            "'anonymous' exceeds maximum operation depth of 1"
        ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        # Cycles are refused by graphql-core; the depth crawler must not loop.
        ("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
         "Cannot spread fragment 'A' within itself via 'B'."),
        ("{ ...A } fragment A on Query { ...A }", "Cannot spread fragment 'A' within itself."),
        # An unknown fragment is named as such, not a crash of the crawler.
        ("{ ...Missing }", "Unknown fragment 'Missing'."),
    ],
)
async def test_circular_and_unknown_fragments(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    assert messages(await graphql(client, query)) == [message]


async def test_default_depth_admits_the_deepest_real_query(client: httpx.AsyncClient) -> None:
    """Ten levels by default; introspection fields do not count (GraphiQL's query is deep)."""
    response = await graphql(
        client,
        "{ billing { plan { planName } usage { totalRequests } } "
        "__schema { types { fields { type { ofType { ofType { ofType { ofType { ofType "
        "{ ofType { ofType { name } } } } } } } } } } } }",
    )
    body = response.json()
    assert "errors" not in body, body
    assert body["data"]["billing"]["usage"]["totalRequests"] > 0


async def test_alias_limit_counts_through_fragments(settings: Settings, db: Database) -> None:
    async with client_with(settings, db, graphql_max_aliases=2) as client:
        assert messages(await graphql(client, ALIASES_3)) == ["3 aliases found. Allowed: 2"]
        via_fragment = "{ a: trialStatus { ...F } } fragment F on TrialStatus { x: planName y: status }"
        assert messages(await graphql(client, via_fragment)) == ["3 aliases found. Allowed: 2"]
        ok = await graphql(client, "{ a: trialStatus { planName } b: trialStatus { planName } }")
        assert ok.json()["data"]["b"] == {"planName": "Pro"}


async def test_token_limit(settings: Settings, db: Database) -> None:
    async with client_with(settings, db, graphql_max_tokens=20) as client:
        (message,) = messages(await graphql(client, "{ " + "trialStatus { planName } " * 6 + "}"))
        assert message.startswith("Syntax Error: Document contains more than 20 tokens.")
        # The same limit holds for a query the parser cache has seen before.
        (again,) = messages(await graphql(client, "{ " + "trialStatus { planName } " * 6 + "}"))
        assert again == message


async def test_default_alias_and_token_limits_refuse_amplification(
    client: httpx.AsyncClient,
) -> None:
    many = " ".join(f"a{n}: billingUsage {{ totalRequests }}" for n in range(51))
    assert messages(await graphql(client, "{ " + many + " }")) == [
        "51 aliases found. Allowed: 50"
    ]
    long = "{ " + "trialStatus { planName } " * 600 + "}"
    (message,) = messages(await graphql(client, long))
    assert "more than 2000 tokens" in message


# --- transport ------------------------------------------------------------------------

QUERY = '{"query": "{ trialStatus { planName } }"}'


@pytest.mark.parametrize(
    ("kwargs", "status", "detail"),
    [
        ({"data": {"query": "{ trialStatus { planName } }"}}, 400, "Unsupported content type"),
        ({"files": {"operations": (None, QUERY)}}, 400, "Unsupported content type"),
        ({"content": QUERY, "headers": {"content-type": "text/plain"}}, 400,
         "Unsupported content type"),
        ({"json": [{"query": "{ trialStatus { planName } }"}]}, 400, "Batching is not enabled"),
        ({"content": "{nope", "headers": {"content-type": "application/json"}}, 400,
         "Unable to parse request body as JSON"),
    ],
    ids=["form", "multipart", "text-plain", "batch", "bad-json"],
)
async def test_refused_posts(
    client: httpx.AsyncClient, kwargs: dict[str, Any], status: int, detail: str
) -> None:
    kwargs = dict(kwargs)  # the table's dicts are shared by both backends' runs
    headers = {**auth(), **kwargs.pop("headers", {})}
    response = await client.post("/graphql", headers=headers, **kwargs)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


async def test_mutations_are_refused_over_get(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={"query": "mutation { recordUsage(events: []) { accepted } }"},
        headers=auth(ACME_INGEST_TOKEN),
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"detail": "mutations are not allowed when using GET"}


async def test_queries_over_get_still_work(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ trialStatus { planName } }"}, headers=auth()
    )
    assert response.json() == {"data": {"trialStatus": {"planName": "Pro"}}}


async def test_batching_when_configured(settings: Settings, db: Database) -> None:
    async with client_with(settings, db, graphql_max_batch=2) as client:
        one = {"query": "{ trialStatus { planName } }"}
        ok = await client.post("/graphql", json=[one, one], headers=auth())
        assert ok.json() == [{"data": {"trialStatus": {"planName": "Pro"}}}] * 2
        too_many = await client.post("/graphql", json=[one] * 3, headers=auth())
        assert (too_many.status_code, too_many.json()) == (400, {"detail": "Too many operations"})


@pytest.mark.parametrize("declared", [True, False])
async def test_graphql_body_limit(settings: Settings, db: Database, declared: bool) -> None:
    """413 past the limit, whether Content-Length says so or the body just keeps coming."""
    padding = " " * 2_000
    body = ('{"query": "' + padding + '{ trialStatus { planName } }"}').encode()
    async with client_with(settings, db, graphql_max_body_bytes=1_000) as client:

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        content: Any = body if declared else chunks()
        response = await client.post(
            "/graphql", content=content,
            headers={**auth(), "content-type": "application/json"},
        )
        assert (response.status_code, response.json()) == (
            413, {"detail": "Request entity too large"}
        )
        small = await client.post("/graphql", json={"query": "{ trialStatus { planName } }"},
                                  headers=auth())
        assert small.status_code == 200


async def test_default_graphql_body_limit_is_one_megabyte(client: httpx.AsyncClient) -> None:
    query = '{"query": "' + " " * (1024 * 1024) + '{ trialStatus { planName } }"}'
    response = await client.post(
        "/graphql", content=query, headers={**auth(), "content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_an_unauthenticated_request_is_refused_before_its_body_is_read(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/graphql", content=b"x" * (2 * 1024 * 1024),
                                 headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (401, {"detail": "Not authenticated"})


# --- introspection --------------------------------------------------------------------


async def test_introspection_off(settings: Settings, db: Database) -> None:
    async with client_with(settings, db, introspection=False) as client:
        refused = messages(await graphql(client, "{ __schema { types { name } } }"))
        assert refused and all("introspection has been disabled" in m for m in refused)
        (typo,) = messages(await graphql(client, "{ trialStatu { planName } }"))
        assert typo == "Cannot query field 'trialStatu' on type 'Query'."
        (argument,) = messages(await graphql(client, "{ metricsSummary(day: 7) { periodDays } }"))
        assert "Did you mean" not in argument
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404
        # Plain queries are unaffected.
        ok = await graphql(client, "{ trialStatus { planName } }")
        assert ok.json() == {"data": {"trialStatus": {"planName": "Pro"}}}


async def test_variable_suggestions_hidden_without_introspection(
    settings: Settings, db: Database
) -> None:
    mutation = "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) { accepted } }"
    event = {"eventId": "x", "instanceId": "inst-a", "model": "gpt-4o",
             "timestamp": "2026-11-20T12:00:00Z", "tokenIn": 1, "tokensOut": 1}
    async with client_with(settings, db, introspection=False) as client:
        response = await client.post("/graphql", json={"query": mutation,
                                                       "variables": {"e": [event]}},
                                     headers=auth(ACME_INGEST_TOKEN))
        text = " ".join(error["message"] for error in response.json()["errors"])
        assert "tokenIn" in text and "Did you mean" not in text


async def test_introspection_on_by_default(client: httpx.AsyncClient) -> None:
    response = await graphql(client, "{ __type(name: \"Query\") { name } }")
    assert response.json() == {"data": {"__type": {"name": "Query"}}}
    (typo,) = messages(await graphql(client, "{ trialStatu { planName } }"))
    assert typo.endswith("Did you mean 'trialStatus'?")


# --- masking and request ids ----------------------------------------------------------


@pytest.mark.parametrize("sent", ["abc-123", "trace.id:7_X"])
async def test_request_id_is_echoed(client: httpx.AsyncClient, sent: str) -> None:
    for response in (
        await client.get("/v1/billing", headers={**auth(), "X-Request-ID": sent}),
        await client.get("/v1/nope", headers={"X-Request-ID": sent}),
        await client.post("/graphql", json={"query": "{ trialStatus { planName } }"},
                          headers={**auth(), "X-Request-ID": sent}),
    ):
        assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize("sent", ["", "x" * 129, "a b", "id\x7f", "é"])
async def test_unusable_request_ids_are_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get(
        "/v1/billing", headers=[("authorization", auth()["Authorization"]),
                                ("x-request-id", sent.encode("latin-1"))],
    )
    made = response.headers["x-request-id"]
    assert made != sent and len(made) == 32 and made.isalnum()


async def test_each_request_gets_its_own_id(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/v1/billing", headers=auth())).headers["x-request-id"]
           for _ in range(3)}
    assert len(ids) == 3


async def test_a_crash_outside_graphql_is_a_masked_500(
    raw_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a bug before any GraphQL runs (here, in authentication) leaks nothing."""
    from meterql import context

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("password=hunter2 in SELECT * FROM api_tokens")

    monkeypatch.setattr(context, "authenticate", broken)
    for response in (
        await raw_client.get("/v1/billing", headers=auth()),
        await raw_client.post("/graphql", json={"query": "{ billing { plan { planName } } }"},
                              headers=auth()),
    ):
        assert response.status_code == 500
        assert response.json() == {"detail": "Internal Server Error",
                                   "request_id": response.headers["x-request-id"]}
        assert "hunter2" not in response.text

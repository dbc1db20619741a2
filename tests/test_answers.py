"""Kept answers: the same request for an unchanged account is answered from memory,
byte for byte, after the token's round trip; never once anything it shows has changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.queries import PAGES, page_query
from meterql.web.answers import Answer, Answers, answer_key
from tests.conftest import NOW, StatementCounter
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, GLOBEX_TOKEN, auth, seed
from tests.test_budgets import manage_token
from tests.test_etags import V1_GETS, Clock, ingest_event

SUMMARY_QUERY = "{ metricsSummary(days: 7) { totalRequests totalTokens } }"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
async def app(settings: Settings, db: Database, clock: Clock) -> Starlette:
    """The golden data, served at a clock a test may move (``client`` is conftest's)."""
    await seed(db)
    return create_app(settings, database=db, clock=clock)


def _post(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"query": query, "variables": variables or {}}


REQUESTS = [
    *(("GET", path, None) for path in V1_GETS),
    ("GET", "/graphql?query=" + quote(SUMMARY_QUERY), None),
    ("POST", "/graphql", _post(SUMMARY_QUERY)),
    *(("POST", "/graphql", _post(page_query(name), {"tz": "UTC"})) for name in PAGES),
]


def _headers(response: httpx.Response) -> dict[str, str]:
    """The answer's headers but its request id (each request has its own)."""
    return {k: v for k, v in response.headers.items() if k != "x-request-id"}


async def send(client: httpx.AsyncClient, method: str, path: str, body: Any,
               token: str = ACME_TOKEN) -> httpx.Response:
    return await client.request(method, path, json=body, headers=auth(token))


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS,
                         ids=[f"{m} {p[:40]}" for m, p, _ in REQUESTS])
async def test_a_repeated_request_is_answered_from_memory_byte_for_byte(
    client: httpx.AsyncClient, sql: StatementCounter, method: str, path: str, body: Any
) -> None:
    first = await send(client, method, path, body)
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    made = sql.count
    sql.reset()
    second = await send(client, method, path, body)
    # The token's round trip, and nothing of the answer.
    assert sql.count == 1 <= made, sql.statements
    assert second.content == first.content
    assert _headers(second) == _headers(first)
    exposition = (await client.get("/metrics")).text
    assert 'meterql_answers_total{source="kept"} 1.0' in exposition


async def test_an_accepted_batch_is_seen_by_the_very_next_request(
    client: httpx.AsyncClient
) -> None:
    before = [(await send(client, m, p, b)).json() for m, p, b in REQUESTS]
    globex = (await send(client, "GET", V1_GETS[0], None, GLOBEX_TOKEN)).content
    sent = await client.post("/v1/usage/events", json=[ingest_event("kept-1")],
                             headers=auth(ACME_INGEST_TOKEN))
    assert sent.json()["accepted"] == 1
    after = [(await send(client, m, p, b)).json() for m, p, b in REQUESTS]
    summary = V1_GETS.index("/v1/metrics/summary?days=7")
    assert after[summary]["total_requests"] == before[summary]["total_requests"] + 1
    graphql = REQUESTS.index(("POST", "/graphql", _post(SUMMARY_QUERY)))
    totals = [answer["data"]["metricsSummary"]["totalRequests"]
              for answer in (before[graphql], after[graphql])]
    assert totals[1] == totals[0] + 1
    # Every answer of the account that shows its requests shows the new one.
    assert sum(a != b for a, b in zip(before, after, strict=True)) >= len(V1_GETS)
    # Another account's kept answer is still the right one.
    assert (await send(client, "GET", V1_GETS[0], None, GLOBEX_TOKEN)).content == globex


async def test_a_kept_answer_follows_the_clock(client: httpx.AsyncClient, clock: Clock) -> None:
    chart = "/v1/billing/usage/chart?days=30"
    first = await send(client, "GET", chart, None)
    clock.now += timedelta(days=1)
    later = await send(client, "GET", chart, None)
    # The chart's days moved with the date.
    assert later.json() != first.json()
    assert later.headers["etag"] != first.headers["etag"]


async def test_a_kept_answer_is_for_its_account_and_its_scopes_alone(
    client: httpx.AsyncClient, db: Database
) -> None:
    ingest_only = await manage_token(db, scopes=("ingest",))
    request = _post(SUMMARY_QUERY)
    acme = await send(client, "POST", "/graphql", request)
    assert acme.json()["data"]["metricsSummary"]["totalRequests"] > 0
    # The same bytes with a token that may not read: refused, never the kept answer.
    refused = await send(client, "POST", "/graphql", request, ingest_only)
    assert refused.json()["data"] is None and refused.json()["errors"]
    refused_rest = await send(client, "GET", V1_GETS[0], None, ingest_only)
    assert refused_rest.status_code == 403
    globex = await send(client, "POST", "/graphql", request, GLOBEX_TOKEN)
    assert globex.json() != acme.json()


async def test_a_revoked_token_never_gets_a_kept_answer(
    client: httpx.AsyncClient, db: Database
) -> None:
    token = await manage_token(db, scopes=("read",))
    for _ in range(2):
        assert (await send(client, "GET", "/v1/billing", None, token)).status_code == 200
        assert (await send(client, "POST", "/graphql", _post(SUMMARY_QUERY), token)).json()["data"]
    async with db.write() as session, session.begin():
        assert await writes.revoke_token(session, token)
    assert (await send(client, "GET", "/v1/billing", None, token)).status_code == 401
    assert (await send(client, "POST", "/graphql", _post(SUMMARY_QUERY), token)).status_code == 401
    # The account's other tokens still get their answer.
    assert (await send(client, "GET", "/v1/billing", None)).status_code == 200


async def test_the_headers_the_view_reads_are_part_of_the_key(
    client: httpx.AsyncClient
) -> None:
    body = b'{"query": "{ metricsSummary(days: 7) { totalRequests } }"}'
    sent = await client.post("/graphql", content=body,
                             headers={**auth(), "content-type": "application/json"})
    assert sent.status_code == 200
    # The same bytes as a form: refused, as they are when nothing was kept.
    form = await client.post("/graphql", content=body, headers={
        **auth(), "content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 400


async def test_mutations_errors_and_refusals_are_never_kept(client: httpx.AsyncClient) -> None:
    mutation = _post(
        "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) { accepted duplicates } }",
        {"e": [{"eventId": "kept-m", "instanceId": "inst-a", "model": "gpt-4o",
                "timestamp": "2026-11-20T14:00:00Z", "tokensIn": 1, "tokensOut": 1}]})
    first = (await send(client, "POST", "/graphql", mutation, ACME_INGEST_TOKEN)).json()
    again = (await send(client, "POST", "/graphql", mutation, ACME_INGEST_TOKEN)).json()
    assert first["data"]["recordUsage"] == {"accepted": 1, "duplicates": 0}
    assert again["data"]["recordUsage"] == {"accepted": 0, "duplicates": 1}
    failing = _post("{ viewer { usage(days: 5000) { totals { requests } } } }")
    for _ in range(2):
        assert (await send(client, "POST", "/graphql", failing)).json()["errors"]
        assert (await send(client, "GET", "/v1/metrics/summary?days=5", None)).status_code == 422
    exposition = (await client.get("/metrics")).text
    assert 'meterql_answers_total{source="kept"} 0.0' in exposition
    assert 'meterql_answers_total{source="made"} 4.0' in exposition


async def test_the_answers_are_counted_kept_or_made(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await send(client, "GET", "/v1/billing", None)
    exposition = (await client.get("/metrics")).text
    assert 'meterql_answers_total{source="kept"} 2.0' in exposition
    assert 'meterql_answers_total{source="made"} 1.0' in exposition


async def test_no_answer_is_kept_when_the_cache_is_off(
    settings: Settings, db: Database, sql: StatementCounter
) -> None:
    await seed(db)
    app = create_app(settings.model_copy(update={"answer_cache_mb": 0}), database=db,
                     clock=lambda: NOW)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://meterql.test") as c:
        counts = []
        for _ in range(2):
            sql.reset()
            assert (await c.get("/v1/billing", headers=auth())).status_code == 200
            counts.append(sql.count)
    assert counts[0] == counts[1] > 1


# --- the store itself --------------------------------------------------------------------


def test_the_least_recently_used_answers_leave_first_within_the_bound() -> None:
    answers = Answers(16 * 1_000)  # 20 answers of 600 bytes and their bookkeeping
    keys = [bytes([n]) for n in range(40)]
    for key in keys[:25]:
        answers.put(key, Answer(b"x" * 600, "application/json"))
    assert answers.size <= answers.capacity
    kept = [key for key in keys if key in answers._kept]
    assert kept == keys[5:25]
    oldest = kept[0]
    assert answers.get(oldest) is not None  # used: now the most recent
    answers.put(keys[30], Answer(b"y" * 600, "application/json"))
    assert oldest in answers._kept and kept[1] not in answers._kept
    # Larger than a sixteenth of the bound: never kept.
    answers.put(keys[31], Answer(b"z" * 1_000, "application/json"))
    assert keys[31] not in answers._kept
    assert (answers.hits, answers.misses) == (1, 0)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("tag", frozenset({"read"}), ()), ("tag", frozenset({"read", "ingest"}), ())),
        (("tag", frozenset({"read"}), ()), ("tag2", frozenset({"read"}), ())),
        (("tag", frozenset(), (b"ab", b"c")), ("tag", frozenset(), (b"a", b"bc"))),
        (("tag", frozenset(), (b"",)), ("tag", frozenset(), ())),
    ],
)
def test_keys_tell_apart_what_answers_depend_on(
    one: tuple[str, frozenset[str], tuple[bytes, ...]],
    other: tuple[str, frozenset[str], tuple[bytes, ...]],
) -> None:
    assert answer_key(one[0], one[1], *one[2]) != answer_key(other[0], other[1], *other[2])
    assert answer_key(one[0], one[1], *one[2]) == answer_key(one[0], one[1], *one[2])

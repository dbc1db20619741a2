"""ETags: a conditional GET is answered 304 while nothing its answer shows has changed,
and never once something has (a batch, an import, a token, the date, a trial's day)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.importer import load
from meterql.records import AccountRecord, SubscriptionRecord, TokenRecord
from tests.conftest import NOW, StatementCounter
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, GLOBEX_TOKEN, auth, seed

V1_GETS = [
    "/v1/metrics/summary?days=7",
    "/v1/metrics/instances?days=30",
    "/v1/metrics/models?days=30",
    "/v1/metrics/usage?days=7",
    "/v1/billing",
    "/v1/billing/trial-status",
    "/v1/billing/usage",
    "/v1/billing/usage/chart?days=30",
]
SUMMARY = "/v1/metrics/summary?days=7"
GRAPHQL_GET = "/graphql?query=%7BmetricsSummary(days%3A7)%7BtotalRequests%7D%7D"
TRIAL_TOKEN = "trialco-read-token-0001"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
async def client(settings: Settings, db: Database, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    await seed(db)
    app: Starlette = create_app(settings, database=db, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://meterql.test") as c:
        yield c


async def tagged(client: httpx.AsyncClient, path: str, token: str = ACME_TOKEN) -> httpx.Response:
    response = await client.get(path, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["etag"].startswith('W/"')
    return response


async def again(client: httpx.AsyncClient, path: str, etag: str,
                token: str = ACME_TOKEN) -> httpx.Response:
    return await client.get(path, headers={**auth(token), "if-none-match": etag})


def ingest_event(event_id: str, ts: str = "2026-11-20T14:00:00Z") -> dict[str, object]:
    return {"event_id": event_id, "instance_id": "inst-a", "model": "gpt-4o", "timestamp": ts,
            "tokens_in": 10, "tokens_out": 5}


@pytest.mark.parametrize("path", V1_GETS)
async def test_an_unchanged_answer_is_not_sent_again(
    client: httpx.AsyncClient, sql: StatementCounter, path: str
) -> None:
    first = await tagged(client, path)
    sql.reset()
    second = await again(client, path, first.headers["etag"])
    assert (second.status_code, second.content) == (304, b"")
    assert second.headers["etag"] == first.headers["etag"]
    # The token's round trip, and nothing of the answer.
    assert sql.count == 1, sql.statements
    # Asked without the tag, the same answer and the same tag.
    third = await tagged(client, path)
    assert (third.content, third.headers["etag"]) == (first.content, first.headers["etag"])


@pytest.mark.parametrize("door", ["rest", "graphql"])
async def test_an_accepted_batch_changes_every_tag_of_its_account(
    client: httpx.AsyncClient, door: str
) -> None:
    before = {path: await tagged(client, path) for path in V1_GETS}
    globex = await tagged(client, SUMMARY, GLOBEX_TOKEN)
    if door == "rest":
        sent = await client.post("/v1/usage/events", json=[ingest_event("etag-1")],
                                 headers=auth(ACME_INGEST_TOKEN))
        assert sent.json()["accepted"] == 1
    else:
        sent = await client.post("/graphql", headers=auth(ACME_INGEST_TOKEN), json={
            "query": "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) { accepted } }",
            "variables": {"e": [{"eventId": "etag-1", "instanceId": "inst-a", "model": "gpt-4o",
                                 "timestamp": "2026-11-20T14:00:00Z", "tokensIn": 10,
                                 "tokensOut": 5}]}})
        assert sent.json()["data"]["recordUsage"]["accepted"] == 1
    for path, old in before.items():
        now = await again(client, path, old.headers["etag"])
        assert now.status_code == 200, path
        assert now.headers["etag"] != old.headers["etag"], path
    summary = (await client.get(SUMMARY, headers=auth())).json()
    assert summary["total_requests"] == before[SUMMARY].json()["total_requests"] + 1
    # Another account's answers did not change, and neither did its tag.
    assert (await again(client, SUMMARY, globex.headers["etag"], GLOBEX_TOKEN)).status_code == 304


async def test_a_batch_of_duplicates_changes_nothing(client: httpx.AsyncClient) -> None:
    await client.post("/v1/usage/events", json=[ingest_event("dup-1")],
                      headers=auth(ACME_INGEST_TOKEN))
    first = await tagged(client, SUMMARY)
    sent = await client.post("/v1/usage/events", json=[ingest_event("dup-1")],
                             headers=auth(ACME_INGEST_TOKEN))
    assert sent.json() == {"accepted": 0, "duplicates": 1}
    assert (await again(client, SUMMARY, first.headers["etag"])).status_code == 304


async def test_a_tag_belongs_to_its_account_and_its_request(client: httpx.AsyncClient) -> None:
    acme = await tagged(client, SUMMARY)
    # The same URL for another account: its own answer, never acme's 304.
    globex = await again(client, SUMMARY, acme.headers["etag"], GLOBEX_TOKEN)
    assert globex.status_code == 200
    assert globex.headers["etag"] != acme.headers["etag"]
    other_days = await again(client, "/v1/metrics/summary?days=8", acme.headers["etag"])
    assert other_days.status_code == 200


@pytest.mark.parametrize(
    "header",
    ['"nope", {etag}', "{etag}", "{bare}", "*"],
)
async def test_if_none_match_forms(client: httpx.AsyncClient, header: str) -> None:
    etag = (await tagged(client, SUMMARY)).headers["etag"]
    sent = header.format(etag=etag, bare=etag.removeprefix("W/"))
    response = await client.get(SUMMARY, headers={**auth(), "if-none-match": sent})
    assert response.status_code == 304


async def test_refusals_carry_no_tag_and_a_bad_token_never_gets_a_304(
    client: httpx.AsyncClient
) -> None:
    etag = (await tagged(client, SUMMARY)).headers["etag"]
    refused = await client.get(SUMMARY, headers={**auth("nobody"), "if-none-match": etag})
    assert refused.status_code == 401 and "etag" not in refused.headers
    invalid = await client.get("/v1/metrics/summary?days=5", headers=auth())
    assert invalid.status_code == 422 and "etag" not in invalid.headers
    star = await client.get("/v1/metrics/summary?days=5", headers={**auth(), "if-none-match": "*"})
    assert star.status_code == 422
    missing = await client.get("/v1/billing/usage/chart?instance_id=inst-g", headers=auth())
    assert missing.status_code == 404 and "etag" not in missing.headers


async def test_the_date_turning_changes_the_tag(client: httpx.AsyncClient, clock: Clock) -> None:
    clock.now = datetime(2026, 11, 20, 23, 59, 0, tzinfo=UTC)
    first = await tagged(client, SUMMARY)
    clock.now = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    assert (await again(client, SUMMARY, first.headers["etag"])).status_code == 304
    clock.now = datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC)
    turned = await again(client, SUMMARY, first.headers["etag"])
    assert turned.status_code == 200
    # The window moved: the oldest day left it.
    assert turned.json() != first.json() or turned.headers["etag"] != first.headers["etag"]


async def test_a_local_date_turning_changes_a_graphql_tag(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    # Kolkata is UTC+05:30: its date turns at 18:30 UTC, not at midnight.
    query = ("/graphql?query=%7Busage(days%3A1%2Ctz%3A%22Asia%2FKolkata%22)"
             "%7Bseries%7Bdate%20requests%7D%7D%7D")
    clock.now = datetime(2026, 11, 20, 18, 29, tzinfo=UTC)
    first = await tagged(client, query)
    clock.now = datetime(2026, 11, 20, 18, 31, tzinfo=UTC)
    turned = await again(client, query, first.headers["etag"])
    assert turned.status_code == 200
    assert turned.json()["data"]["usage"]["series"][0]["date"] == "2026-11-21"


async def test_a_trial_day_ending_changes_the_tag_inside_a_quarter_hour(
    client: httpx.AsyncClient, db: Database, clock: Clock
) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(
            account_id="trialco", tokens=[TokenRecord(token=TRIAL_TOKEN, scopes=["read"])],
            subscriptions=[
                SubscriptionRecord.model_validate({
                    "tier_id": "tier_pro", "status": "trialing",
                    "current_period_start": "2026-11-18T12:07:00Z",
                    "current_period_end": "2026-12-18T12:07:00Z",
                    "trial_ends_at": "2026-11-25T12:07:00Z"}),
                # Not live, but shown by viewer.subscriptions with its countdown.
                SubscriptionRecord.model_validate({
                    "tier_id": "tier_old", "status": "canceled",
                    "current_period_start": "2026-11-01T00:00:00Z",
                    "current_period_end": "2026-12-01T00:00:00Z",
                    "trial_ends_at": "2026-11-23T12:11:00Z"}),
            ]))
    path = "/v1/billing/trial-status"
    clock.now = datetime(2026, 11, 21, 12, 1, tzinfo=UTC)  # 4 days and 6 minutes left
    first = await tagged(client, path, TRIAL_TOKEN)
    assert first.json()["trial_days_remaining"] == 4
    clock.now = datetime(2026, 11, 21, 12, 8, tzinfo=UTC)  # same quarter hour, 3 days left
    later = await again(client, path, first.headers["etag"], TRIAL_TOKEN)
    assert later.status_code == 200
    assert later.json()["trial_days_remaining"] == 3

    query = "/graphql?query=%7Bviewer%7Bsubscriptions%7BtierId%20trialDaysRemaining%7D%7D%7D"
    clock.now = datetime(2026, 11, 21, 12, 9, tzinfo=UTC)
    shown = await tagged(client, query, TRIAL_TOKEN)
    assert {"tierId": "tier_old", "trialDaysRemaining": 2} in (
        shown.json()["data"]["viewer"]["subscriptions"])
    clock.now = datetime(2026, 11, 21, 12, 12, tzinfo=UTC)  # the canceled trial's day ended
    moved = await again(client, query, shown.headers["etag"], TRIAL_TOKEN)
    assert moved.status_code == 200
    assert {"tierId": "tier_old", "trialDaysRemaining": 1} in (
        moved.json()["data"]["viewer"]["subscriptions"])


async def test_a_token_made_or_revoked_changes_the_tag(
    client: httpx.AsyncClient, db: Database
) -> None:
    first = await tagged(client, SUMMARY)
    async with db.write() as session, session.begin():
        made = await writes.create_token(session, "acme", ["read"])
    second = await again(client, SUMMARY, first.headers["etag"])
    assert second.status_code == 200
    async with db.write() as session, session.begin():
        assert await writes.revoke_token(session, made)
    assert (await again(client, SUMMARY, second.headers["etag"])).status_code == 200


async def test_an_import_changes_every_tag(
    client: httpx.AsyncClient, db: Database, tmp_path: Path
) -> None:
    first = await tagged(client, SUMMARY, GLOBEX_TOKEN)
    # A file that only changes a price: every account's answers may show it.
    path = tmp_path / "prices.json"
    path.write_text('{"models": [{"model": "gpt-4o", "provider": "openai", '
                    '"input_usd_per_mtok": "2.50", "output_usd_per_mtok": "10.00"}]}')
    await load(db, path)
    assert (await again(client, SUMMARY, first.headers["etag"], GLOBEX_TOKEN)).status_code == 200


async def test_graphql_get_queries_are_tagged_and_posts_are_not(
    client: httpx.AsyncClient, sql: StatementCounter
) -> None:
    first = await tagged(client, GRAPHQL_GET)
    assert "errors" not in first.json()
    sql.reset()
    second = await again(client, GRAPHQL_GET, first.headers["etag"])
    assert (second.status_code, second.content, sql.count) == (304, b"", 1)
    posted = await client.post("/graphql", json={"query": "{metricsSummary(days:7){totalRequests}}"},
                               headers=auth())
    assert posted.status_code == 200 and "etag" not in posted.headers
    failing = await client.get("/graphql?query=%7Bnope%7D", headers=auth())
    assert "etag" not in failing.headers


async def test_a_tag_outlives_nothing_of_the_settings(
    settings: Settings, db: Database
) -> None:
    await seed(db)
    tags = []
    for upgrade_url in ("/billing", "/upgrade"):
        app = create_app(settings.model_copy(update={"upgrade_url": upgrade_url}),
                         database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://meterql.test") as c:
            tags.append((await tagged(c, "/v1/billing/trial-status")).headers["etag"])
    assert tags[0] != tags[1]


def test_tags_are_random_per_write_not_counted() -> None:
    # Two databases that each took one write never hand out the same version.
    versions = set()
    for _ in range(50):
        versions.add(writes.new_version())
    assert len(versions) == 50
    assert all(v > 0 for v in versions)


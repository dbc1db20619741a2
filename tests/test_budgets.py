"""Budgets and their alerts, on both backends, through the real ``/graphql`` and ``/v1`` doors.

The golden data at NOW (2026-11-20T15:30Z); acme's live plan is tier_pro,
2026-11-01..2026-12-01. Budgets are made and changed with a ``read,manage``
token, usage is sent with acme's ingest token (REST and GraphQL), and every
figure a budget shows is held against ``usage`` for the same scope and local
dates, or against a recount.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, GLOBEX_TOKEN, auth, seed

BUDGET_FIELDS = """id name scope instanceId model measure limit period timeZone thresholds
  periodStart periodEnd spent remaining percentUsed forecast status thresholdsCrossed createdAt"""
CREATE = f"""mutation Create($input: BudgetInput!) {{
  createBudget(input: $input) {{ {BUDGET_FIELDS} }}
}}"""
UPDATE = f"""mutation Update($id: ID!, $changes: BudgetChanges!) {{
  updateBudget(id: $id, changes: $changes) {{ {BUDGET_FIELDS} }}
}}"""
DELETE = "mutation Delete($id: ID!) { deleteBudget(id: $id) }"
BUDGETS = f"{{ viewer {{ budgets {{ {BUDGET_FIELDS} }} }} }}"
ALERTS = """query Alerts($first: Int! = 20, $after: String) { viewer { alerts(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id budgetId budgetName scope instanceId model measure threshold limit spent
                 periodStart periodEnd createdAt } }
} } }"""


async def manage_token(db: Database, account: str = "acme",
                       scopes: tuple[str, ...] = ("read", "manage")) -> str:
    async with db.write() as session, session.begin():
        return await writes.create_token(session, account, list(scopes))


async def gql(client: httpx.AsyncClient, token: str, query: str,
              variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}},
                                 headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ok(client: httpx.AsyncClient, token: str, query: str,
             variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = await gql(client, token, query, variables)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def create(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    data = await ok(client, token, CREATE, {"input": fields})
    budget: dict[str, Any] = data["createBudget"]
    return budget


async def send(client: httpx.AsyncClient, prefix: str, count: int, at: str,
               instance: str = "inst-a", model: str = "gpt-4o", tokens: int = 10) -> dict[str, int]:
    events = [{"event_id": f"{prefix}-{n}", "instance_id": instance, "model": model,
               "timestamp": at, "tokens_in": tokens, "tokens_out": 0} for n in range(count)]
    response = await client.post("/v1/usage/events", json=events, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()
    return result


async def alerts(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    data = await ok(client, token, ALERTS, {"first": 100})
    return [edge["node"] for edge in data["viewer"]["alerts"]["edges"]]


@pytest.fixture
async def seeded(db: Database) -> AsyncIterator[str]:
    await seed(db)
    yield await manage_token(db)


# --- what a budget shows ----------------------------------------------------------------------

USAGE = """query Usage($from: Date!, $to: Date!, $tz: String!, $groupBy: UsageGroupBy) {
  usage(range: {from: $from, to: $to}, tz: $tz, groupBy: $groupBy) {
    totals { requests totalTokens estimatedCostUsd }
    groups { key requests totalTokens estimatedCostUsd }
  }
}"""
MEASURED = {"COST": "estimatedCostUsd", "TOKENS": "totalTokens", "REQUESTS": "requests"}


@pytest.mark.parametrize(("fields", "dates"), [
    ({"measure": "COST", "limit": "10", "period": "MONTH"}, ("2026-11-01", "2026-11-30")),
    ({"measure": "TOKENS", "limit": "100000", "period": "DAY", "timeZone": "Asia/Kolkata",
      "scope": "INSTANCE", "instanceId": "inst-a"}, ("2026-11-20", "2026-11-20")),
    ({"measure": "REQUESTS", "limit": "4", "period": "WEEK", "timeZone": "Europe/Berlin",
      "scope": "MODEL", "model": "gpt-4o"}, ("2026-11-16", "2026-11-22")),
    # The plan's period, 2026-11-01T00:00Z..2026-12-01T00:00Z, as local dates.
    ({"measure": "TOKENS", "limit": "5000000", "period": "BILLING_PERIOD"},
     ("2026-11-01", "2026-11-30")),
    ({"measure": "REQUESTS", "limit": "3", "period": "BILLING_PERIOD",
      "timeZone": "America/Los_Angeles"}, ("2026-10-31", "2026-11-30")),
])
async def test_spent_is_usages_total_for_the_same_scope_and_dates(
    client: httpx.AsyncClient, seeded: str, fields: dict[str, Any], dates: tuple[str, str]
) -> None:
    made = await create(client, seeded, **fields)
    (shown,) = (await ok(client, seeded, BUDGETS))["viewer"]["budgets"]
    assert shown == made
    tz = fields.get("timeZone", "UTC")
    assert shown["periodStart"].startswith(dates[0])
    end = datetime.fromisoformat(shown["periodEnd"]) - timedelta(days=1)
    assert end.date().isoformat() == dates[1]
    scope = fields.get("scope", "ACCOUNT")
    group_by = None if scope == "ACCOUNT" else scope
    usage = (await ok(client, ACME_TOKEN, USAGE, {"from": dates[0], "to": dates[1], "tz": tz,
                                                   "groupBy": group_by}))["usage"]
    if group_by is None:
        expected = usage["totals"]
    else:
        key = fields.get("instanceId") or fields["model"]
        expected = next(g for g in usage["groups"] if g["key"] == key)
    assert str(expected[MEASURED[fields["measure"]]]) == shown["spent"]
    assert int(Decimal(shown["spent"])) > 0 or fields["measure"] == "COST"


async def test_the_figures_of_a_budget(client: httpx.AsyncClient, seeded: str) -> None:
    # Acme's requests in November (UTC): e1, e2, e3, e4, e5, e7, e8.
    budget = await create(client, seeded, measure="REQUESTS", limit="10", period="MONTH",
                          name="  monthly calls  ", thresholds=[80, 50, 50])
    assert budget["name"] == "monthly calls"
    assert budget["thresholds"] == [50, 80]
    assert (budget["spent"], budget["remaining"], budget["percentUsed"]) == ("7", "3", 70.0)
    assert (budget["status"], budget["thresholdsCrossed"]) == ("WARNING", [50])
    # 7 in the 19 days 15.5 hours so far of a 30-day month: 10.69... at its end.
    assert budget["forecast"] == str(7 * 30 * 24 * 3600 // (19 * 24 * 3600 + 15 * 3600 + 1800))
    assert budget["periodStart"] == "2026-11-01T00:00:00+00:00"
    assert budget["periodEnd"] == "2026-12-01T00:00:00+00:00"
    assert budget["createdAt"] == "2026-11-20T15:30:00Z"
    over = await create(client, seeded, measure="REQUESTS", limit="7", period="MONTH")
    assert (over["status"], over["percentUsed"], over["remaining"]) == ("EXCEEDED", 100.0, "0")
    assert over["thresholdsCrossed"] == [50, 80, 100]
    calm = await create(client, seeded, measure="COST", limit="1000.5", period="DAY")
    assert (calm["status"], calm["limit"], calm["thresholdsCrossed"]) == ("OK", "1000.5000", [])


async def test_instances_and_models_list_their_own_budgets(
    client: httpx.AsyncClient, seeded: str
) -> None:
    a = await create(client, seeded, measure="TOKENS", limit="1000", scope="INSTANCE",
                     instanceId="inst-a", period="DAY")
    m = await create(client, seeded, measure="COST", limit="5", scope="MODEL", model="gpt-4o")
    await create(client, seeded, measure="REQUESTS", limit="5")
    data = await ok(client, seeded, """{ viewer {
      instances { edges { node { id budgets { id } } } }
      models { name budgets { id } } } }""")
    by_instance = {e["node"]["id"]: [b["id"] for b in e["node"]["budgets"]]
                   for e in data["viewer"]["instances"]["edges"]}
    assert by_instance["inst-a"] == [a["id"]]
    assert by_instance["inst-b"] == []
    by_model = {m_["name"]: [b["id"] for b in m_["budgets"]] for m_ in data["viewer"]["models"]}
    assert by_model["gpt-4o"] == [m["id"]]
    assert by_model["gpt-4o-mini"] == []


async def test_a_page_of_budgets_costs_a_few_statements(
    client: httpx.AsyncClient, seeded: str, sql: Any
) -> None:
    for n in range(12):
        await create(client, seeded, measure="TOKENS", limit=str(1000 + n), period="MONTH",
                     scope="INSTANCE", instanceId=("inst-a", "inst-b", "inst-c")[n % 3])
    for n in range(6):
        await create(client, seeded, measure="COST", limit=str(1 + n), period="DAY")
    sql.reset()
    budgets = (await ok(client, seeded, BUDGETS))["viewer"]["budgets"]
    assert len(budgets) == 18
    # The token; the budgets; the month's usage split by instance (one batch);
    # the day's usage of the account.
    assert sql.count == 4, sql.statements


# --- who may ---------------------------------------------------------------------------------


async def test_making_budgets_needs_the_manage_scope(
    client: httpx.AsyncClient, db: Database, seeded: str
) -> None:
    made = await create(client, seeded, measure="REQUESTS", limit="10")
    calls = [(CREATE, {"input": {"measure": "REQUESTS", "limit": "5"}}),
             (UPDATE, {"id": made["id"], "changes": {"limit": "20"}}),
             (DELETE, {"id": made["id"]})]
    for token in (ACME_TOKEN, ACME_INGEST_TOKEN):
        for query, variables in calls:
            body = await gql(client, token, query, variables)
            assert body["data"] is None
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    # A manage-only token manages, but may not read the graph.
    manager = await manage_token(db, scopes=("manage",))
    assert (await create(client, manager, measure="TOKENS", limit="5"))["limit"] == "5"
    body = await gql(client, manager, BUDGETS)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert len((await ok(client, ACME_TOKEN, BUDGETS))["viewer"]["budgets"]) == 2


async def test_accounts_never_see_or_touch_each_others_budgets(
    client: httpx.AsyncClient, db: Database, seeded: str
) -> None:
    made = await create(client, seeded, measure="REQUESTS", limit="3", period="MONTH")
    assert made["status"] == "EXCEEDED"
    await send(client, "iso", 1, "2026-11-20T15:00:00Z")  # an alert for acme
    globex = await manage_token(db, "globex")
    assert (await ok(client, GLOBEX_TOKEN, BUDGETS))["viewer"]["budgets"] == []
    assert (await ok(client, GLOBEX_TOKEN, ALERTS))["viewer"]["alerts"]["totalCount"] == 0
    body = await gql(client, globex, UPDATE, {"id": made["id"], "changes": {"limit": "1"}})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    assert (await ok(client, globex, DELETE, {"id": made["id"]}))["deleteBudget"] is False
    (still,) = (await ok(client, seeded, BUDGETS))["viewer"]["budgets"]
    unchanged = ("id", "limit", "thresholds", "scope", "period", "measure", "timeZone")
    assert {k: still[k] for k in unchanged} == {k: made[k] for k in unchanged}
    assert still["spent"] == "8"  # 7, and the batch above
    assert len(await alerts(client, ACME_TOKEN)) == 0  # made over its limit: silent


@pytest.mark.parametrize(("fields", "loc"), [
    ({"measure": "COST", "limit": "abc"}, ["input", "limit"]),
    ({"measure": "COST", "limit": "1.23456"}, ["input", "limit"]),
    ({"measure": "COST", "limit": "0"}, ["input", "limit"]),
    ({"measure": "TOKENS", "limit": "1.5"}, ["input", "limit"]),
    ({"measure": "TOKENS", "limit": "-5"}, ["input", "limit"]),
    ({"measure": "TOKENS", "limit": str(2**63)}, ["input", "limit"]),
    ({"measure": "TOKENS", "limit": "5", "thresholds": []}, ["input", "thresholds"]),
    ({"measure": "TOKENS", "limit": "5", "thresholds": [0]}, ["input", "thresholds"]),
    ({"measure": "TOKENS", "limit": "5", "thresholds": [1001]}, ["input", "thresholds"]),
    ({"measure": "TOKENS", "limit": "5", "thresholds": list(range(1, 12))},
     ["input", "thresholds"]),
    ({"measure": "TOKENS", "limit": "5", "timeZone": "Mars/Base"}, ["input", "timeZone"]),
    ({"measure": "TOKENS", "limit": "5", "scope": "INSTANCE"}, ["input", "instanceId"]),
    ({"measure": "TOKENS", "limit": "5", "scope": "MODEL", "model": ""}, ["input", "model"]),
    ({"measure": "TOKENS", "limit": "5", "instanceId": "inst-a"}, ["input", "instanceId"]),
    ({"measure": "TOKENS", "limit": "5", "name": "x" * 201}, ["input", "name"]),
])
async def test_bad_budgets_are_refused_with_where(
    client: httpx.AsyncClient, seeded: str, fields: dict[str, Any], loc: list[str]
) -> None:
    body = await gql(client, seeded, CREATE, {"input": fields})
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["errors"][0]["loc"] == loc
    assert (await ok(client, seeded, BUDGETS))["viewer"]["budgets"] == []


async def test_an_instance_of_another_account_is_not_found(
    client: httpx.AsyncClient, seeded: str
) -> None:
    body = await gql(client, seeded, CREATE, {"input": {
        "measure": "TOKENS", "limit": "5", "scope": "INSTANCE", "instanceId": "inst-g"}})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]


async def test_an_account_has_at_most_so_many_budgets(
    client: httpx.AsyncClient, seeded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("meterql.resolvers.budgets.MAX_BUDGETS", 2)
    await create(client, seeded, measure="TOKENS", limit="5")
    await create(client, seeded, measure="TOKENS", limit="6")
    body = await gql(client, seeded, CREATE, {"input": {"measure": "TOKENS", "limit": "7"}})
    assert "at most 2 budgets" in body["errors"][0]["message"]


# --- alerts ------------------------------------------------------------------------------------


async def test_a_batch_that_crosses_a_threshold_records_one_alert(
    client: httpx.AsyncClient, seeded: str
) -> None:
    # Acme's requests on 2026-11-20 (UTC) so far: e1, e2.
    budget = await create(client, seeded, measure="REQUESTS", limit="10", period="DAY",
                          name="daily calls")
    assert budget["spent"] == "2"
    steps = [(2, []), (1, [50]), (3, [80, 50]), (0, [80, 50]), (5, [100, 80, 50])]
    for n, (count, expected) in enumerate(steps):
        if count:
            await send(client, f"step{n}", count, "2026-11-20T15:00:00Z")
        else:  # the previous batch again: duplicates change nothing
            assert (await send(client, f"step{n - 1}", 3, "2026-11-20T15:00:00Z")) == {
                "accepted": 0, "duplicates": 3}
        assert [a["threshold"] for a in await alerts(client, ACME_TOKEN)] == expected
    shown = await alerts(client, ACME_TOKEN)
    assert [a["spent"] for a in shown] == ["13", "8", "5"]
    assert {(a["budgetId"], a["budgetName"], a["scope"], a["measure"], a["limit"])
            for a in shown} == {(budget["id"], "daily calls", "ACCOUNT", "REQUESTS", "10")}
    assert {(a["periodStart"], a["periodEnd"]) for a in shown} == {
        ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z")}
    # A batch of another instance, model or day than a budget's crosses nothing of it.
    scoped = await create(client, seeded, measure="TOKENS", limit="100", period="DAY",
                          scope="MODEL", model="claude-3")
    await send(client, "other-model", 20, "2026-11-20T15:00:00Z", model="gpt-4o")
    assert not [a for a in await alerts(client, ACME_TOKEN) if a["budgetId"] == scoped["id"]]
    await send(client, "its-model", 10, "2026-11-20T15:00:00Z", model="claude-3")
    assert [a["threshold"] for a in await alerts(client, ACME_TOKEN)
            if a["budgetId"] == scoped["id"]] == [100, 80, 50]


async def test_graphql_batches_alert_too(client: httpx.AsyncClient, seeded: str) -> None:
    await create(client, seeded, measure="TOKENS", limit="100", period="DAY",
                 scope="INSTANCE", instanceId="inst-z", thresholds=[25])
    events = [{"eventId": "gq-1", "instanceId": "inst-z", "model": "gpt-4o",
               "timestamp": "2026-11-20T15:00:00Z", "tokensIn": 30, "tokensOut": 0}]
    done = await ok(client, ACME_INGEST_TOKEN,
                    "mutation($e: [UsageEventInput!]!) { recordUsage(events: $e) { accepted } }",
                    {"e": events})
    assert done["recordUsage"]["accepted"] == 1
    assert [(a["threshold"], a["spent"], a["instanceId"])
            for a in await alerts(client, ACME_TOKEN)] == [(25, "30", "inst-z")]


async def test_edits_fire_nothing_and_a_raised_limit_rearms(
    client: httpx.AsyncClient, seeded: str
) -> None:
    # November so far: 7 requests.
    budget = await create(client, seeded, measure="REQUESTS", limit="10", period="MONTH",
                          thresholds=[50, 100])
    await send(client, "b1", 1, "2026-11-20T15:00:00Z")  # 8: 50 was crossed before it existed
    assert await alerts(client, ACME_TOKEN) == []
    raised = (await ok(client, seeded, UPDATE, {"id": budget["id"],
                                                "changes": {"limit": "20"}}))["updateBudget"]
    assert (raised["percentUsed"], raised["status"]) == (40.0, "OK")
    await send(client, "b2", 3, "2026-11-20T15:00:00Z")  # 11 of 20: 50 again, at the new limit
    (alert,) = await alerts(client, ACME_TOKEN)
    assert (alert["threshold"], alert["spent"], alert["limit"]) == (50, "11", "20")
    # Lowered below the spent: over 100% at once, and still no alert until...
    lowered = (await ok(client, seeded, UPDATE, {"id": budget["id"],
                                                 "changes": {"limit": "10"}}))["updateBudget"]
    assert lowered["status"] == "EXCEEDED"
    await send(client, "b3", 1, "2026-11-20T15:00:00Z")
    assert len(await alerts(client, ACME_TOKEN)) == 1
    # A rename is not an edit of the limit: nothing re-armed.
    renamed = (await ok(client, seeded, UPDATE, {"id": budget["id"],
                                                 "changes": {"name": "calls"}}))["updateBudget"]
    assert (renamed["name"], renamed["limit"]) == ("calls", "10")
    await send(client, "b4", 1, "2026-11-20T15:00:00Z")
    assert len(await alerts(client, ACME_TOKEN)) == 1
    # Deleted: gone from the budgets, its alerts stay, without a name.
    assert (await ok(client, seeded, DELETE, {"id": budget["id"]}))["deleteBudget"] is True
    assert (await ok(client, seeded, DELETE, {"id": budget["id"]}))["deleteBudget"] is False
    assert (await ok(client, seeded, BUDGETS))["viewer"]["budgets"] == []
    (kept,) = await alerts(client, ACME_TOKEN)
    assert (kept["budgetId"], kept["budgetName"], kept["threshold"]) == (budget["id"], None, 50)


def _client_at(settings: Settings, db: Database, now: datetime) -> httpx.AsyncClient:
    app = create_app(settings, database=db, clock=lambda: now)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_late_events_and_new_periods(
    settings: Settings, db: Database, seeded: str
) -> None:
    earlier, later = NOW - timedelta(days=2), NOW + timedelta(days=1)
    async with _client_at(settings, db, earlier) as before:
        # Made on 2026-11-18: it watches the 18th on. Acme had 1 request that day (e3).
        await create(before, seeded, measure="REQUESTS", limit="4", period="DAY",
                     thresholds=[50])
    async with _client_at(settings, db, NOW) as now, _client_at(settings, db, later) as after:
        # A late event for the 19th (it had e8): 2 of 4, that day's threshold.
        await send(now, "late", 1, "2026-11-19T10:00:00Z")
        (alert,) = await alerts(now, ACME_TOKEN)
        assert (alert["periodStart"], alert["spent"]) == ("2026-11-19T00:00:00Z", "2")
        # One for the 17th, before the budget was made: not its business.
        await send(now, "older", 5, "2026-11-17T10:00:00Z")
        assert len(await alerts(now, ACME_TOKEN)) == 1
        # The 20th had 2 (e1, e2) before the budget was made, but the day began after
        # it: crossed, never recorded, so the day's first batch records it.
        await send(now, "today", 1, "2026-11-20T10:00:00Z")
        assert {a["periodStart"] for a in await alerts(now, ACME_TOKEN)} == {
            "2026-11-20T00:00:00Z", "2026-11-19T00:00:00Z"}
        # The next day is a new period: its own alert. (e7, 01:00, is there already.)
        await send(after, "tomorrow", 1, "2026-11-21T09:00:00Z")
        newest = (await alerts(after, ACME_TOKEN))[0]
        assert (newest["periodStart"], newest["spent"]) == ("2026-11-21T00:00:00Z", "2")


async def test_alerts_are_paged_newest_first(client: httpx.AsyncClient, seeded: str) -> None:
    await create(client, seeded, measure="TOKENS", limit="1000", period="DAY",
                 scope="INSTANCE", instanceId="inst-c", thresholds=list(range(10, 101, 10)))
    for n in range(10):
        await send(client, f"page{n}", 1, "2026-11-20T15:00:00Z", instance="inst-c", tokens=100)
    first = (await ok(client, ACME_TOKEN, ALERTS, {"first": 4}))["viewer"]["alerts"]
    assert first["totalCount"] == 10 and first["pageInfo"]["hasNextPage"] is True
    seen = [e["node"]["threshold"] for e in first["edges"]]
    cursor = first["pageInfo"]["endCursor"]
    while cursor:
        page = (await ok(client, ACME_TOKEN, ALERTS, {"first": 4, "after": cursor}))
        page = page["viewer"]["alerts"]
        seen += [e["node"]["threshold"] for e in page["edges"]]
        cursor = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert seen == list(range(100, 0, -10))


async def test_exactly_once_under_concurrent_senders(
    client: httpx.AsyncClient, seeded: str
) -> None:
    """8 senders at once, every batch sent twice: each crossed threshold once, the recount agrees."""
    limit = 200
    await create(client, seeded, measure="REQUESTS", limit=str(limit), period="DAY",
                 thresholds=list(range(10, 101, 10)), scope="INSTANCE", instanceId="inst-b")

    async def sender(n: int) -> None:
        for batch in range(6):
            for _ in range(2):  # re-sent: the second is all duplicates
                await send(client, f"s{n}-{batch}", 3 + (n + batch) % 4, "2026-11-20T15:00:00Z",
                           instance="inst-b")

    await asyncio.gather(*(sender(n) for n in range(8)))
    # Recount: inst-b's requests on the 20th (UTC): the golden data has none.
    sent = sum(3 + (n + batch) % 4 for n in range(8) for batch in range(6))
    (budget,) = (await ok(client, seeded, BUDGETS))["viewer"]["budgets"]
    assert budget["spent"] == str(sent)
    found = await alerts(client, ACME_TOKEN)
    thresholds = [a["threshold"] for a in found]
    assert len(thresholds) == len(set(thresholds))
    assert sorted(thresholds) == [t for t in range(10, 101, 10) if sent * 100 >= limit * t]
    assert len(thresholds) == 10
    for alert in found:
        # Recorded by the write that crossed it: within one write of its mark, a batch
        # (6 events at most) or the batches of the senders written together.
        assert alert["threshold"] * limit <= int(alert["spent"]) * 100
        assert (int(alert["spent"]) - 6 * 8) * 100 < alert["threshold"] * limit


async def test_making_a_budget_changes_the_accounts_etags(
    client: httpx.AsyncClient, seeded: str
) -> None:
    query = {"query": "{ viewer { budgets { id } } }"}
    first = await client.get("/graphql", params=query, headers=auth(ACME_TOKEN))
    await create(client, seeded, measure="TOKENS", limit="5")
    again = await client.get("/graphql", params=query,
                             headers={**auth(ACME_TOKEN), "if-none-match": first.headers["etag"]})
    assert again.status_code == 200
    assert len(again.json()["data"]["viewer"]["budgets"]) == 1


async def test_an_import_alerts_the_budgets_its_events_cross(
    client: httpx.AsyncClient, settings: Settings, db: Database, seeded: str, tmp_path: Any
) -> None:
    from meterql.importer import load
    from tests.test_importer import event, write

    # Made on the 18th: it watches the 18th on. November so far: 7 requests.
    async with _client_at(settings, db, NOW - timedelta(days=2)) as before:
        await create(before, seeded, measure="REQUESTS", limit="10", period="DAY",
                     thresholds=[50, 100])
    doc = {"accounts": [{"account_id": "acme"}], "usage_events": [
        # 19th: e8 and these 5 make 6 of 10 (50%); 20th: e1, e2 and these 8 make 10 (100%).
        *[event(f"imp19-{n}", "gpt-4o", "2026-11-19T12:00:00Z", 1, 1, instance="inst-a")
          for n in range(5)],
        *[event(f"imp20-{n}", "gpt-4o", "2026-11-20T12:00:00Z", 1, 1, instance="inst-a")
          for n in range(8)],
        # The 10th: before the budget was made, not its business however much.
        *[event(f"imp10-{n}", "gpt-4o", "2026-11-10T12:00:00Z", 1, 1, instance="inst-a")
          for n in range(20)],
    ]}
    report = await load(db, write(tmp_path, doc), now=NOW)
    assert report.events_accepted == 33
    found = await alerts(client, ACME_TOKEN)
    assert sorted((a["periodStart"][:10], a["threshold"], a["spent"]) for a in found) == [
        ("2026-11-19", 50, "6"), ("2026-11-20", 50, "10"), ("2026-11-20", 100, "10")]
    # Loaded again: all duplicates, nothing new.
    await load(db, write(tmp_path, doc), now=NOW)
    assert len(await alerts(client, ACME_TOKEN)) == 3


async def test_a_failed_list_item_cancels_no_shared_read(
    client: httpx.AsyncClient, seeded: str
) -> None:
    """Each model's budgets and the viewer's share one read; a model's usage failing makes
    graphql-core cancel the other items of the list, and the shared read must survive it."""
    await create(client, seeded, measure="TOKENS", limit="5", scope="MODEL", model="gpt-4o")
    query = """{ viewer {
      models { budgets { id } usage(days: 366, tz: "Not/AZone", granularity: HOUR) { end } }
      budgets { id } } }"""
    for _ in range(3):
        body = await gql(client, ACME_TOKEN, query)
        assert body["data"] is None
        assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}


async def test_what_a_batch_pays_for_budgets(
    client: httpx.AsyncClient, seeded: str, sql: Any
) -> None:
    """Without a budget, nothing: the account's row, which every batch updates, says so in
    the same statement. With budgets, one read of them, one `usage` read per budget the
    batch touched, one insert of what it crossed, and for a new alert one read of the
    account's webhooks."""
    sql.reset()
    await send(client, "plain", 1, "2026-11-20T15:00:00Z")
    (touch,) = [s for s in sql.statements if "budgets" in s]
    assert touch.lstrip().upper().startswith("UPDATE ACCOUNTS")
    base = sql.count
    # The 20th: e1, e2 and the batch above, 3 of 4; the next batch reaches 100%.
    await create(client, seeded, measure="REQUESTS", limit="4", period="DAY", thresholds=[100])
    await create(client, seeded, measure="TOKENS", limit="100", period="DAY", scope="MODEL",
                 model="another-model")
    sql.reset()
    await send(client, "crossing", 1, "2026-11-20T15:00:00Z")
    # The rules, the one touched budget's day (the other's model is not in the batch),
    # the insert of its crossed threshold, and (a new alert) the account's webhooks.
    assert sql.count == base + 4, sql.statements
    assert len(await alerts(client, ACME_TOKEN)) == 1

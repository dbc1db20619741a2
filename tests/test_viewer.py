"""The viewer graph: plan, subscriptions, instances (paged), models, nodes, the catalogue."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from meterql.config import FreePlan, Settings
from meterql.context import Context
from meterql.db import writes
from meterql.db.accounts import TokenGrant
from meterql.db.engine import Database
from meterql.records import AccountRecord, EventRecord, InstanceRecord, ModelRecord, NodeRecord
from meterql.schema import build_schema
from meterql.schema.scalars import format_exact
from tests.conftest import NOW
from tests.golden import GLOBEX_TOKEN, INITECH_TOKEN, auth, seed

PLAN_FIELDS = (
    "apiCallLimit billingCycle conversationLimit currentPeriodEnd currentPeriodStart "
    "instanceLimit maxSitesPerNode planName priceCents productName status tierId tierSlug "
    "tokenAllowance trialDaysRemaining trialEndsAt"
)
PAGE = """query Page($first: Int!, $after: String, $status: String) {
  viewer { instances(first: $first, after: $after, status: $status) {
    totalCount edges { cursor node { id hostname status } }
    pageInfo { hasNextPage endCursor hasPreviousPage startCursor } } } }"""

# Ids whose code-point order differs from a natural or a linguistic one.
PAGED_IDS = [
    "Inst-B", "inst-a", "inst-10", "inst-9", "inst-ä", "inst-z", "inst_", "inst-a0",
    *[f"n-{i:02}" for i in range(15)],
]
STATUSES = ["running", "stopped", "error"]


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


async def ask(client: httpx.AsyncClient, query: str, token: str | None = None,
              **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables},
                                 headers=auth(token) if token else auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data(body: dict[str, Any]) -> Any:
    assert "errors" not in body, body
    return body["data"]


async def add_instances(db: Database, account_id: str, ids: list[str]) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(
            account_id=account_id,
            instances=[InstanceRecord(instance_id=i, hostname=f"{i}.test",
                                      status=STATUSES[n % 3]) for n, i in enumerate(ids)],
        ))


# --- plan and subscriptions -----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, GLOBEX_TOKEN, INITECH_TOKEN],
                         ids=["trialing", "active", "no-subscription"])
async def test_viewer_plan_equals_the_billing_plan(
    client: httpx.AsyncClient, token: str | None
) -> None:
    body = data(await ask(
        client, f"{{ viewer {{ plan {{ {PLAN_FIELDS} }} }} billing {{ plan {{ {PLAN_FIELDS} }} }} }}",
        token,
    ))
    assert body["viewer"]["plan"] == body["billing"]["plan"]
    # ... and equal to the REST route's, key for key.
    rest = (await client.get("/v1/billing", headers=auth(token) if token else auth())).json()
    assert rest["plan"]["plan_name"] == body["viewer"]["plan"]["planName"]
    assert rest["plan"]["trial_days_remaining"] == body["viewer"]["plan"]["trialDaysRemaining"]


async def test_free_plan_defaults_without_a_subscription(client: httpx.AsyncClient) -> None:
    body = data(await ask(client, f"""{{ viewer {{ plan {{ {PLAN_FIELDS} }} subscriptions {{ tierId }}
        webhostNodes {{ id }} models {{ name }} instances {{ totalCount edges {{ cursor }}
        pageInfo {{ hasNextPage endCursor }} }} }} }}""", INITECH_TOKEN))["viewer"]
    assert body["plan"] == {
        "apiCallLimit": 10_000, "billingCycle": "", "conversationLimit": 1_000,
        "currentPeriodEnd": "2026-12-01T00:00:00Z", "currentPeriodStart": "2026-11-01T00:00:00Z",
        "instanceLimit": 1, "maxSitesPerNode": 25, "planName": "No Plan", "priceCents": 0,
        "productName": "", "status": "none", "tierId": "", "tierSlug": "",
        "tokenAllowance": 100_000, "trialDaysRemaining": 0, "trialEndsAt": None,
    }
    assert body["subscriptions"] == body["webhostNodes"] == body["models"] == []
    assert body["instances"] == {"totalCount": 0, "edges": [],
                                 "pageInfo": {"hasNextPage": False, "endCursor": None}}


async def test_subscriptions_each_with_its_tier(client: httpx.AsyncClient) -> None:
    body = data(await ask(client, """{ viewer { subscriptions { tierId status live
        currentPeriodStart currentPeriodEnd trialEndsAt trialDaysRemaining
        tier { tierId planName priceCents tokenAllowance } } } }"""))
    assert body["viewer"]["subscriptions"] == [
        {"tierId": "tier_pro", "status": "trialing", "live": True,
         "currentPeriodStart": "2026-11-01T00:00:00Z", "currentPeriodEnd": "2026-12-01T00:00:00Z",
         "trialEndsAt": "2026-11-25T12:00:00Z", "trialDaysRemaining": 4,
         "tier": {"tierId": "tier_pro", "planName": "Pro", "priceCents": 4900,
                  "tokenAllowance": 5_000_000}},
        {"tierId": "tier_starter", "status": "active", "live": True,
         "currentPeriodStart": "2026-10-15T00:00:00Z", "currentPeriodEnd": "2026-11-15T00:00:00Z",
         "trialEndsAt": None, "trialDaysRemaining": 0,
         "tier": {"tierId": "tier_starter", "planName": "Starter", "priceCents": 1900,
                  "tokenAllowance": 1_000_000}},
        # Not live: listed, after the live ones, but no part of the plan.
        {"tierId": "tier_old", "status": "canceled", "live": False,
         "currentPeriodStart": "2026-11-10T00:00:00Z", "currentPeriodEnd": "2026-12-10T00:00:00Z",
         "trialEndsAt": None, "trialDaysRemaining": 0,
         "tier": {"tierId": "tier_old", "planName": "Legacy", "priceCents": 999,
                  "tokenAllowance": 10}},
    ]


async def test_plans_catalogue_is_every_tier_for_every_account(
    client: httpx.AsyncClient,
) -> None:
    query = "{ plans { tierId planName priceCents maxSitesPerNode } }"
    acme = data(await ask(client, query))
    assert [t["tierId"] for t in acme["plans"]] == ["tier_old", "tier_starter", "tier_pro"]
    assert acme == data(await ask(client, query, INITECH_TOKEN))


# --- models and nodes -----------------------------------------------------------------------


async def test_models_the_account_used_with_exact_prices(
    client: httpx.AsyncClient, db: Database
) -> None:
    # Prices past the money scalar's 4 places must come out whole.
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [ModelRecord(
            model="cheap", provider="tiny-labs", input_usd_per_mtok=Decimal("0.01875"),
            output_usd_per_mtok=Decimal("0.000000001"))])
        await writes.record_events(session, [EventRecord.model_validate({
            "account_id": "acme", "event_id": "cheap-1", "instance_id": "inst-z",
            "model": "cheap", "timestamp": "2026-11-20T10:00:00Z", "tokens_in": 1,
            "tokens_out": 1})])
    body = data(await ask(client, "{ viewer { models { name provider price { "
                                  "inputUsdPerMtok outputUsdPerMtok } } } }"))
    assert body["viewer"]["models"] == [
        {"name": "cheap", "provider": "tiny-labs",
         "price": {"inputUsdPerMtok": "0.01875", "outputUsdPerMtok": "0.000000001"}},
        {"name": "gpt-4o", "provider": "openai",
         "price": {"inputUsdPerMtok": "2.5000", "outputUsdPerMtok": "10.0000"}},
        {"name": "gpt-4o-mini", "provider": "openai",
         "price": {"inputUsdPerMtok": "0.1500", "outputUsdPerMtok": "0.6000"}},
        # Used, but without a price: as in the model breakdown, provider "".
        {"name": "mystery", "provider": "", "price": None},
    ]
    # globex used two of them: its own list, not the catalogue.
    globex = data(await ask(client, "{ viewer { models { name } } }", GLOBEX_TOKEN))
    assert globex["viewer"]["models"] == [{"name": "gpt-4o"}, {"name": "gpt-4o-mini"}]


@pytest.mark.parametrize(("value", "wire"), [
    (Decimal("2.5"), "2.5000"), (Decimal("10"), "10.0000"), (Decimal("1E+1"), "10.0000"),
    (Decimal("0.01875"), "0.01875"), (Decimal("0.000000001"), "0.000000001"),
    (Decimal("0"), "0.0000"), (Decimal("100000.123456789"), "100000.123456789"),
])
def test_exact_decimal_wire_form(value: Decimal, wire: str) -> None:
    assert format_exact(value) == wire
    assert Decimal(wire) == value


async def test_webhost_nodes_with_the_plans_site_limit(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    body = data(await ask(client, "{ viewer { webhostNodes { id hostedSites siteLimit } } }"))
    assert body["viewer"]["webhostNodes"] == [
        {"id": "node-1", "hostedSites": 3, "siteLimit": 25},
        {"id": "node-2", "hostedSites": 4, "siteLimit": 25},
    ]
    # Without a subscription the limit is the free plan's, as configured.
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(
            account_id="initech", webhost_nodes=[NodeRecord(node_id="n1", hosted_sites=2)]))
    custom = settings.model_copy(update={"free_plan": FreePlan(max_sites_per_node=7)})
    context = Context(db=db, settings=custom, grant=TokenGrant("initech", frozenset({"read"})),
                      now=NOW)
    result = await build_schema().execute(
        "{ viewer { plan { maxSitesPerNode } webhostNodes { id siteLimit } } }",
        context_value=context,
    )
    assert result.errors is None
    assert result.data == {"viewer": {"plan": {"maxSitesPerNode": 7},
                                      "webhostNodes": [{"id": "n1", "siteLimit": 7}]}}


# --- instances: pagination ------------------------------------------------------------------


async def walk(client: httpx.AsyncClient, first: int, status: str | None = None,
               token: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of the list, in order: the ids seen and each page's connection."""
    ids: list[str] = []
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = data(await ask(client, PAGE, token, first=first, after=after,
                              status=status))["viewer"]["instances"]
        pages.append(page)
        ids += [edge["node"]["id"] for edge in page["edges"]]
        info = page["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        if page["edges"]:
            assert info["startCursor"] == page["edges"][0]["cursor"]
            assert info["endCursor"] == page["edges"][-1]["cursor"]
        if not info["hasNextPage"]:
            return ids, pages
        assert len(page["edges"]) == first
        after = info["endCursor"]
        assert len(pages) < 100, "the walk does not end"


@pytest.mark.parametrize("first", [1, 5, 7, 27, 100])
async def test_walking_every_page_sees_each_instance_once_in_code_point_order(
    client: httpx.AsyncClient, db: Database, first: int
) -> None:
    await add_instances(db, "acme", PAGED_IDS)
    everything = sorted({*PAGED_IDS, "inst-a", "inst-b", "inst-c", "inst-z"})
    ids, pages = await walk(client, first)
    assert ids == everything  # no gap, no repeat, code-point order on both backends
    assert {p["totalCount"] for p in pages} == {len(everything)}
    assert len(pages) == -(-len(everything) // first)


@pytest.mark.parametrize("status", STATUSES)
async def test_status_filter_pages_only_that_status(
    client: httpx.AsyncClient, db: Database, status: str
) -> None:
    await add_instances(db, "acme", PAGED_IDS)
    everything = data(await ask(client, PAGE, first=100))["viewer"]["instances"]["edges"]
    want = sorted(e["node"]["id"] for e in everything if e["node"]["status"] == status)
    assert want  # the filter has something to keep
    ids, pages = await walk(client, 4, status)
    assert ids == want
    assert {p["totalCount"] for p in pages} == {len(want)}
    for page in pages:
        assert {e["node"]["status"] for e in page["edges"]} <= {status}


async def test_a_filter_no_instance_has_is_an_empty_list(client: httpx.AsyncClient) -> None:
    for status in ["paused", "", "x" * 51, "nul\u0000byte"]:
        page = data(await ask(client, PAGE, first=10, status=status))["viewer"]["instances"]
        assert page == {"totalCount": 0, "edges": [], "pageInfo": {
            "hasNextPage": False, "endCursor": None, "hasPreviousPage": False,
            "startCursor": None}}, status


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("after", [
    "garbage", "", "!!!!", "WyJpbnN0YW5jZXMiLG51bGws", "é", "A" * 5000,
    _cursor({"instances": "inst-a"}), _cursor(["instances", None]),
    _cursor(["models", None, "inst-a"]), _cursor(["instances", None, ""]),
    _cursor(["instances", None, "nul\u0000"]), _cursor(["instances", 3, "inst-a"]),
    _cursor(["instances", None, 7]), base64.b64encode(b"\xff\xfe").decode(),
])
async def test_a_bad_cursor_is_a_typed_error(client: httpx.AsyncClient, after: str) -> None:
    body = await ask(client, PAGE, first=2, after=after)
    (error,) = body["errors"]
    assert error["message"] == "after: Invalid cursor"
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "errors": [
        {"type": "value_error", "loc": ["after"], "msg": "Invalid cursor"}]}


@pytest.mark.parametrize(("made_with", "used_with"), [
    ("running", None), (None, "running"), ("running", "stopped"),
])
async def test_a_cursor_of_another_status_filter_is_refused(
    client: httpx.AsyncClient, made_with: str | None, used_with: str | None
) -> None:
    page = data(await ask(client, PAGE, first=1, status=made_with))["viewer"]["instances"]
    cursor = page["pageInfo"]["endCursor"]
    assert data(await ask(client, PAGE, first=1, after=cursor, status=made_with))
    (error,) = (await ask(client, PAGE, first=1, after=cursor, status=used_with))["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "another status filter" in error["message"]


@pytest.mark.parametrize(("first", "message"), [
    (0, "first: Input should be greater than or equal to 1"),
    (101, "first: Input should be less than or equal to 100"),
    (-5, "first: Input should be greater than or equal to 1"),
])
async def test_first_is_bounded(client: httpx.AsyncClient, first: int, message: str) -> None:
    (error,) = (await ask(client, PAGE, first=first))["errors"]
    assert (error["message"], error["extensions"]["code"]) == (message, "BAD_USER_INPUT")


async def test_first_defaults_to_50(client: httpx.AsyncClient, db: Database) -> None:
    await add_instances(db, "acme", [f"bulk-{i:03}" for i in range(60)])
    page = data(await ask(client, "{ viewer { instances { totalCount edges { cursor } "
                                  "pageInfo { hasNextPage } } } }"))["viewer"]["instances"]
    assert (len(page["edges"]), page["totalCount"], page["pageInfo"]["hasNextPage"]) == (
        50, 64, True)


async def test_an_instance_added_between_pages_neither_shifts_nor_repeats(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Keyset, not offset: the next page starts after the last id seen."""
    first = data(await ask(client, PAGE, first=2))["viewer"]["instances"]
    assert [e["node"]["id"] for e in first["edges"]] == ["inst-a", "inst-b"]
    await add_instances(db, "acme", ["inst-0"])  # sorts before everything seen
    rest = data(await ask(client, PAGE, first=10, after=first["pageInfo"]["endCursor"]))
    assert [e["node"]["id"] for e in rest["viewer"]["instances"]["edges"]] == ["inst-c", "inst-z"]


# --- tenancy and scopes ---------------------------------------------------------------------


async def test_another_tenants_instances_never_appear(
    client: httpx.AsyncClient, db: Database
) -> None:
    await add_instances(db, "globex", [f"inst-{c}" for c in "abcdefgh"] + ["globex-only"])
    ids, _ = await walk(client, 3)
    assert ids == ["inst-a", "inst-b", "inst-c", "inst-z"]
    globex, _ = await walk(client, 3, token=GLOBEX_TOKEN)
    assert "globex-only" in globex and "inst-g" in globex
    # A cursor only names a position: globex's own cursor past "inst-h" pages
    # acme's list from there on, never globex's rows.
    cursor = _cursor(["instances", None, "inst-h"])
    page = data(await ask(client, PAGE, first=10, after=cursor))["viewer"]["instances"]
    assert [e["node"]["hostname"] for e in page["edges"]] == ["agent-z.acme.test"]
    assert page["totalCount"] == 4


async def test_viewer_needs_the_read_scope(db: Database, settings: Settings) -> None:
    context = Context(db=db, settings=settings, grant=TokenGrant("acme", frozenset({"ingest"})),
                      now=NOW)
    for query in ["{ viewer { accountId } }", "{ plans { tierId } }"]:
        result = await build_schema().execute(query, context_value=context)
        assert result.errors is not None
        assert result.errors[0].extensions == {"code": "FORBIDDEN"}


async def test_each_request_has_its_own_loaders(db: Database, settings: Settings) -> None:
    grant = TokenGrant("acme", frozenset({"read"}))
    one = Context(db=db, settings=settings, grant=grant, now=NOW)
    two = Context(db=db, settings=settings, grant=grant, now=NOW + timedelta(seconds=1))
    assert one.loaders is not two.loaders


async def test_whole_page_in_one_query_beside_the_flat_fields(client: httpx.AsyncClient) -> None:
    body = data(await ask(client, """{
      viewer { accountId plan { planName } subscriptions { tier { planName } }
               instances(first: 2, status: "running") { totalCount edges { node { id } } }
               models { name } webhostNodes { id siteLimit } }
      plans { tierId }
      billing { subscribedTierIds usage { webhostNodes totalHostedSites } }
      instanceUsage(days: 90) { totalCount }
    }"""))
    viewer = body["viewer"]
    assert viewer["accountId"] == "acme"
    assert viewer["instances"]["totalCount"] == 2
    assert [e["node"]["id"] for e in viewer["instances"]["edges"]] == ["inst-a", "inst-z"]
    assert len(viewer["webhostNodes"]) == body["billing"]["usage"]["webhostNodes"]
    assert sorted(s["tier"]["planName"] for s in viewer["subscriptions"]) == [
        "Legacy", "Pro", "Starter"]


async def test_code_point_order_whatever_the_servers_collation(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Under a linguistic collation PostgreSQL would sort "Inst-B" after "inst-a": pages don't."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite compares text by its bytes, in code-point order already")
    async with db.engine.begin() as connection:
        await connection.exec_driver_sql(
            'ALTER TABLE instances ALTER COLUMN instance_id TYPE varchar(200) COLLATE "en-US-x-icu"'
        )
    await add_instances(db, "acme", PAGED_IDS)
    ids, _ = await walk(client, 4)
    assert ids == sorted({*PAGED_IDS, "inst-a", "inst-b", "inst-c", "inst-z"})
    assert ids.index("Inst-B") < ids.index("inst-a") and ids.index("inst_") > ids.index("inst-z")

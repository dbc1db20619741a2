"""Golden bodies of the /v1/billing routes, worked out by hand (see golden.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from meterql.app import create_app
from meterql.config import FreePlan, Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.records import AccountRecord, SubscriptionRecord
from tests.conftest import NOW
from tests.golden import GLOBEX_TOKEN, INITECH_TOKEN, auth, seed


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


PRO_PLAN = {
    "api_call_limit": 50000, "billing_cycle": "monthly", "conversation_limit": 5000,
    "current_period_end": "2026-12-01T00:00:00Z", "current_period_start": "2026-11-01T00:00:00Z",
    "instance_limit": 5, "max_sites_per_node": 25, "plan_name": "Pro", "price_cents": 4900,
    "product_name": "Agents", "status": "trialing", "tier_id": "tier_pro", "tier_slug": "pro",
    "token_allowance": 5000000,
    # 2026-11-25T12:00Z - 2026-11-20T15:30Z = 4 days 20.5 hours → 4
    "trial_days_remaining": 4, "trial_ends_at": "2026-11-25T12:00:00Z",
}


async def test_billing(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/billing", headers=auth())
    assert response.status_code == 200
    # Period [11-01, 12-01): e1 e2 e3 e4 e5 e7 e8. Users u1 u2 u3 ("" is none).
    # Usage cost 0.0075+0.0009+0.002+0+0.125+0.0000625+0.00005 = 0.1355125.
    assert response.json() == {
        "plan": PRO_PLAN,
        "subscribed_tier_ids": ["tier_pro", "tier_starter"],
        "usage": {
            "active_instances": 2, "api_call_limit": 50000, "conversation_limit": 5000,
            "instance_limit": 5, "max_sites_per_node": 25, "platform_cost_usd": "49.0000",
            "token_allowance": 5000000, "total_cost_usd": "49.1355", "total_hosted_sites": 7,
            "total_requests": 7, "total_tokens": 25630, "unique_end_users": 3,
            "webhost_nodes": 2,
        },
    }


async def test_trial_status(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/billing/trial-status", headers=auth())
    assert response.status_code == 200
    assert response.content == (
        b'{"plan_name":"Pro","status":"trialing","trial_days_remaining":4,'
        b'"trial_ends_at":"2026-11-25T12:00:00Z","trial_expired":false,"upgrade_url":"/billing"}'
    )


async def test_billing_usage(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/billing/usage", headers=auth())
    assert response.status_code == 200
    assert response.json() == {
        "by_instance": [
            # inst-a: e1 e2 e5 e8 = 0.13345 → 0.1335; inst-b: e3 e4 e7 = 0.0020625
            {"cost_usd": "0.1335", "hostname": "agent-a.acme.test", "instance_id": "inst-a",
             "requests": 4, "tokens": 24520},
            {"cost_usd": "0.0021", "hostname": "agent-b.acme.test", "instance_id": "inst-b",
             "requests": 3, "tokens": 1110},
        ],
        "period_end": "2026-12-01T00:00:00Z",
        "period_start": "2026-11-01T00:00:00Z",
        "platform_cost_usd": "49.0000",
        "token_allowance_monthly": 5000000,
        "token_usage_pct": 0.51,  # 100 × 25630 / 5000000 = 0.5126
        "total_cost_usd": "49.1355",
        "total_requests": 7,
        "total_tokens": 25630,
        "unique_end_users": 3,
    }


def _chart(*points: tuple[str, int, int, str], days: int) -> dict:
    return {
        "period_label": f"Last {days} days",
        "points": [{"cost_usd": c, "date": d, "requests": r, "tokens": t} for d, r, t, c in points],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("days=3", _chart(("2026-11-18", 1, 500, "0.0020"), ("2026-11-19", 1, 20, "0.0001"),
                          ("2026-11-20", 2, 4500, "0.0084"), days=3)),
        ("days=1", _chart(("2026-11-20", 2, 4500, "0.0084"), days=1)),
        ("days=3&instance_id=inst-b",
         _chart(("2026-11-18", 1, 500, "0.0020"), ("2026-11-19", 0, 0, "0.0000"),
                ("2026-11-20", 0, 0, "0.0000"), days=3)),
        ("days=2&instance_id=inst-c",
         _chart(("2026-11-19", 0, 0, "0.0000"), ("2026-11-20", 0, 0, "0.0000"), days=2)),
        # An empty instance_id means the whole account, like the old `if instance_id:`.
        ("days=1&instance_id=", _chart(("2026-11-20", 2, 4500, "0.0084"), days=1)),
    ],
)
async def test_chart(client: httpx.AsyncClient, query: str, expected: dict) -> None:
    response = await client.get(f"/v1/billing/usage/chart?{query}", headers=auth())
    assert response.status_code == 200
    assert response.json() == expected


async def test_chart_default_and_longest(client: httpx.AsyncClient) -> None:
    default = (await client.get("/v1/billing/usage/chart", headers=auth())).json()
    assert default["period_label"] == "Last 30 days" and len(default["points"]) == 30
    longest = (await client.get("/v1/billing/usage/chart?days=366", headers=auth())).json()
    assert len(longest["points"]) == 366
    assert longest["points"][0]["date"] == "2025-11-20"
    # Every acme event but e7 (tomorrow) lies within the last 366 days.
    assert sum(p["requests"] for p in longest["points"]) == 7


@pytest.mark.parametrize("instance_id", ["inst-g", "no-such-instance"])
async def test_chart_foreign_or_unknown_instance_is_404(
    client: httpx.AsyncClient, instance_id: str
) -> None:
    response = await client.get(
        f"/v1/billing/usage/chart?instance_id={instance_id}", headers=auth()
    )
    assert response.status_code == 404
    assert response.content == b'{"detail":"Instance not found"}'


async def test_no_subscription_defaults(client: httpx.AsyncClient) -> None:
    billing = (await client.get("/v1/billing", headers=auth(INITECH_TOKEN))).json()
    assert billing == {
        "plan": {
            "api_call_limit": 10000, "billing_cycle": "", "conversation_limit": 1000,
            "current_period_end": "2026-12-01T00:00:00Z",
            "current_period_start": "2026-11-01T00:00:00Z",
            "instance_limit": 1, "max_sites_per_node": 25, "plan_name": "No Plan",
            "price_cents": 0, "product_name": "", "status": "none", "tier_id": "",
            "tier_slug": "", "token_allowance": 100000, "trial_days_remaining": 0,
            "trial_ends_at": None,
        },
        "subscribed_tier_ids": [],
        "usage": {
            "active_instances": 0, "api_call_limit": 10000, "conversation_limit": 1000,
            "instance_limit": 1, "max_sites_per_node": 25, "platform_cost_usd": "0.0000",
            "token_allowance": 100000, "total_cost_usd": "0.0000", "total_hosted_sites": 0,
            "total_requests": 0, "total_tokens": 0, "unique_end_users": 0, "webhost_nodes": 0,
        },
    }
    trial = (await client.get("/v1/billing/trial-status", headers=auth(INITECH_TOKEN))).json()
    assert trial == {"plan_name": "No Plan", "status": "none", "trial_days_remaining": 0,
                     "trial_ends_at": None, "trial_expired": False, "upgrade_url": "/billing"}
    usage = (await client.get("/v1/billing/usage", headers=auth(INITECH_TOKEN))).json()
    assert usage["period_start"] == "2026-11-01T00:00:00Z"
    assert usage["period_end"] == "2026-12-01T00:00:00Z"
    assert usage["token_allowance_monthly"] == 100000 and usage["token_usage_pct"] == 0.0


async def test_free_defaults_and_upgrade_url_are_configurable(
    settings: Settings, db: Database
) -> None:
    custom = settings.model_copy(
        update={"free_plan": FreePlan(api_call_limit=5, token_allowance=0), "upgrade_url": "/up"}
    )
    app = create_app(custom, database=db, clock=lambda: NOW)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        plan = (await client.get("/v1/billing", headers=auth(INITECH_TOKEN))).json()["plan"]
        trial = (await client.get("/v1/billing/trial-status", headers=auth(INITECH_TOKEN))).json()
        usage = (await client.get("/v1/billing/usage", headers=auth(INITECH_TOKEN))).json()
    assert plan["api_call_limit"] == 5 and plan["token_allowance"] == 0
    assert trial["upgrade_url"] == "/up"
    assert usage["token_usage_pct"] == 0.0  # allowance 0 → 0, not a division error


async def test_no_subscription_period_is_the_calendar_month_in_december(
    settings: Settings, db: Database
) -> None:
    app = create_app(settings, database=db,
                     clock=lambda: datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        usage = (await client.get("/v1/billing/usage", headers=auth(INITECH_TOKEN))).json()
    assert (usage["period_start"], usage["period_end"]) == (
        "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"
    )


async def _subscribe(db: Database, account: str, *subs: SubscriptionRecord) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_account(session, AccountRecord(account_id=account,
                                                           subscriptions=list(subs)))
        # As every write that changes answers does (an import does it so).
        await writes.touch_accounts(session, [account])


def _sub(tier: str, start: datetime, *, trial: datetime | None = None,
         status: str = "active") -> SubscriptionRecord:
    return SubscriptionRecord.model_validate({
        "tier_id": tier, "status": status, "current_period_start": start,
        "current_period_end": start + timedelta(days=30), "trial_ends_at": trial,
    })


@pytest.mark.parametrize(
    ("trial_ends_at", "days_left", "expired"),
    [
        (NOW + timedelta(days=5), 5, False),
        (NOW + timedelta(days=5) - timedelta(seconds=1), 4, False),
        (NOW + timedelta(hours=23, minutes=59), 0, False),
        (NOW + timedelta(seconds=1), 0, False),
        (NOW, 0, True),  # "not in the future" includes this very instant
        (NOW - timedelta(days=3), 0, True),
        (None, 0, False),
    ],
)
async def test_trial_rounding(
    client: httpx.AsyncClient, db: Database, trial_ends_at: datetime | None,
    days_left: int, expired: bool
) -> None:
    await _subscribe(db, "initech", _sub("tier_pro", NOW - timedelta(days=1),
                                         trial=trial_ends_at, status="trialing"))
    trial = (await client.get("/v1/billing/trial-status", headers=auth(INITECH_TOKEN))).json()
    assert trial["trial_days_remaining"] == days_left
    assert trial["trial_expired"] is expired
    plan = (await client.get("/v1/billing", headers=auth(INITECH_TOKEN))).json()["plan"]
    assert plan["trial_days_remaining"] == days_left


async def test_primary_subscription_tie_breaks(client: httpx.AsyncClient, db: Database) -> None:
    start = datetime(2026, 11, 10, tzinfo=UTC)
    # Same start: the highest price wins (pro 4900 over starter 1900) ...
    await _subscribe(db, "initech", _sub("tier_starter", start), _sub("tier_pro", start))
    plan = (await client.get("/v1/billing", headers=auth(INITECH_TOKEN))).json()["plan"]
    assert plan["tier_id"] == "tier_pro"
    # ... but a later start beats a higher price.
    await _subscribe(db, "initech", _sub("tier_starter", start + timedelta(seconds=1)))
    plan = (await client.get("/v1/billing", headers=auth(INITECH_TOKEN))).json()["plan"]
    assert plan["tier_id"] == "tier_starter"
    # A canceled subscription is never primary however recent.
    await _subscribe(db, "initech", _sub("tier_old", start + timedelta(days=2),
                                         status="canceled"))
    billing = (await client.get("/v1/billing", headers=auth(INITECH_TOKEN))).json()
    assert billing["plan"]["tier_id"] == "tier_starter"
    assert billing["subscribed_tier_ids"] == ["tier_pro", "tier_starter"]


@pytest.mark.parametrize(
    ("timestamp", "counted"),
    [
        ("2026-11-01T00:00:00Z", True),   # the period's first instant is in
        ("2026-10-31T23:59:59Z", False),  # a second earlier is out
        ("2026-11-30T23:59:59Z", True),
        ("2026-12-01T00:00:00Z", False),  # the end is exclusive
    ],
)
async def test_billing_period_edges(
    client: httpx.AsyncClient, db: Database, timestamp: str, counted: bool
) -> None:
    from tests.golden import _event

    before = (await client.get("/v1/billing/usage", headers=auth())).json()["total_requests"]
    async with db.write() as session, session.begin():
        await writes.record_events(
            session, [_event("acme", "edge", "inst-a", "gpt-4o", timestamp, 1, 1)]
        )
    after = (await client.get("/v1/billing/usage", headers=auth())).json()["total_requests"]
    assert after - before == (1 if counted else 0)


async def test_billing_of_other_tenant(client: httpx.AsyncClient) -> None:
    billing = (await client.get("/v1/billing", headers=auth(GLOBEX_TOKEN))).json()
    # globex's period [11-05, 12-05): e1 (999/999) and g2 (77/77), starter price 19.00
    assert billing["plan"]["tier_id"] == "tier_starter"
    assert billing["usage"]["total_requests"] == 2
    assert billing["usage"]["total_tokens"] == 2152
    assert billing["usage"]["webhost_nodes"] == 1
    assert billing["usage"]["total_hosted_sites"] == 99
    # 19 + 0.0124875 + 0.0000577 = 19.0125452
    assert billing["usage"]["total_cost_usd"] == "19.0125"

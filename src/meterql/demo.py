"""``meterql serve --demo``: a realistic generated account for a first look.

Deterministic (seeded) apart from "now": 90 days of traffic ending at the
moment it runs, so every window of the API has data.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from meterql import alerts
from meterql.budgets import DEFAULT_THRESHOLDS, Measure, Period, Rule, Scope, calendar_period
from meterql.config import FreePlan
from meterql.db import budgets as stored_budgets
from meterql.db import writes
from meterql.db.budgets import InTransaction
from meterql.db.engine import Database
from meterql.db.tables import Account
from meterql.records import (
    AccountRecord,
    InstanceRecord,
    ModelRecord,
    NodeRecord,
    SubscriptionRecord,
    TierRecord,
    UsageEventRecord,
)

DEMO_ACCOUNT = "demo"

MODELS = [
    ModelRecord(model="gpt-4o", provider="openai",
                input_usd_per_mtok=Decimal("2.50"), output_usd_per_mtok=Decimal("10.00")),
    ModelRecord(model="gpt-4o-mini", provider="openai",
                input_usd_per_mtok=Decimal("0.15"), output_usd_per_mtok=Decimal("0.60")),
    ModelRecord(model="claude-sonnet-4", provider="anthropic",
                input_usd_per_mtok=Decimal("3.00"), output_usd_per_mtok=Decimal("15.00")),
    ModelRecord(model="claude-3-5-haiku", provider="anthropic",
                input_usd_per_mtok=Decimal("0.80"), output_usd_per_mtok=Decimal("4.00")),
    ModelRecord(model="gemini-2.0-flash", provider="google",
                input_usd_per_mtok=Decimal("0.10"), output_usd_per_mtok=Decimal("0.40")),
    ModelRecord(model="llama-3.1-70b", provider="together",
                input_usd_per_mtok=Decimal("0.88"), output_usd_per_mtok=Decimal("0.88")),
]
# Used now and then but never priced: shows up with provider "" and cost 0.
UNPRICED_MODEL = "mistral-large-experimental"

TIERS = [
    TierRecord(tier_id="tier_starter", tier_slug="starter", product_name="Agents",
               plan_name="Starter", price_cents=1900, billing_cycle="monthly",
               api_call_limit=20_000, conversation_limit=2_000, instance_limit=2,
               max_sites_per_node=25, token_allowance=2_000_000),
    TierRecord(tier_id="tier_pro", tier_slug="pro", product_name="Agents",
               plan_name="Pro", price_cents=4900, billing_cycle="monthly",
               api_call_limit=50_000, conversation_limit=5_000, instance_limit=8,
               max_sites_per_node=50, token_allowance=50_000_000),
    TierRecord(tier_id="tier_business", tier_slug="business", product_name="Agents",
               plan_name="Business", price_cents=19900, billing_cycle="monthly",
               api_call_limit=500_000, conversation_limit=50_000, instance_limit=50,
               max_sites_per_node=100, token_allowance=500_000_000),
]

INSTANCES = [
    ("inst-support-bot", "support-bot.demo.meterql.test", "running", 5.0),
    ("inst-sales-agent", "sales-agent.demo.meterql.test", "running", 3.0),
    ("inst-code-review", "code-review.demo.meterql.test", "running", 2.0),
    ("inst-research", "research.demo.meterql.test", "stopped", 1.0),
    ("inst-onboarding", "onboarding.demo.meterql.test", "error", 0.5),
    ("inst-staging", "staging.demo.meterql.test", "provisioning", 0.0),
]
# (model, weight, typical input tokens, typical output tokens)
TRAFFIC = [
    ("gpt-4o-mini", 40, 900, 250),
    ("gpt-4o", 15, 2_500, 600),
    ("claude-sonnet-4", 15, 3_000, 800),
    ("claude-3-5-haiku", 12, 1_200, 300),
    ("gemini-2.0-flash", 10, 1_500, 400),
    ("llama-3.1-70b", 6, 1_800, 500),
    (UNPRICED_MODEL, 2, 2_000, 500),
]


def demo_account(now: datetime) -> AccountRecord:
    today = datetime.combine(now.date(), time.min, tzinfo=UTC)
    period_start = today - timedelta(days=5)
    return AccountRecord(
        account_id=DEMO_ACCOUNT,
        instances=[InstanceRecord(instance_id=i, hostname=h, status=s)
                   for i, h, s, _ in INSTANCES],
        subscriptions=[
            SubscriptionRecord(
                tier_id="tier_pro",
                status="trialing",
                current_period_start=period_start,
                current_period_end=period_start + timedelta(days=30),
                trial_ends_at=period_start + timedelta(days=14),
            )
        ],
        webhost_nodes=[NodeRecord(node_id=f"node-{n}", hosted_sites=sites)
                       for n, sites in enumerate((4, 7, 12), start=1)],
    )


def demo_events(now: datetime, days: int = 90, seed: int = 7) -> list[UsageEventRecord]:
    rng = random.Random(seed)
    users = [f"user-{n:03d}" for n in range(1, 241)]
    instances = [(i, weight) for i, _, _, weight in INSTANCES if weight > 0]
    events = []
    first_day = now.date() - timedelta(days=days - 1)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        weekend = day.weekday() >= 5
        # Growth over the quarter, quieter weekends.
        volume = int((60 + offset * 1.6) * (0.45 if weekend else 1.0) * rng.uniform(0.8, 1.2))
        start = datetime.combine(day, time.min, tzinfo=UTC)
        span = min(86_400, int((now - start).total_seconds()))
        for n in range(volume):
            instance = rng.choices([i for i, _ in instances], [w for _, w in instances])[0]
            model, _, typical_in, typical_out = rng.choices(TRAFFIC, [t[1] for t in TRAFFIC])[0]
            events.append(
                UsageEventRecord(
                    event_id=f"demo-{day.isoformat()}-{n:05d}",
                    instance_id=instance,
                    model=model,
                    timestamp=start + timedelta(seconds=rng.randrange(max(span, 1))),
                    tokens_in=max(1, int(rng.gauss(typical_in, typical_in / 3))),
                    tokens_out=max(1, int(rng.gauss(typical_out, typical_out / 3))),
                    end_user_id=rng.choice(users) if rng.random() < 0.9 else None,
                    conversation_id=f"conv-{rng.randrange(1, 4000):04d}",
                )
            )
    return events


async def is_empty(db: Database) -> bool:
    async with db.read() as connection:
        return (await connection.scalar(select(Account.account_id).limit(1))) is None


# The demo's budget: this month's estimated cost, its limit set so that the
# month so far has used a little over 80% of it (its 50% and 80% alerts show).
DEMO_BUDGET_SHARE = Decimal("0.82")


async def fill(db: Database, now: datetime | None = None) -> int:
    """Write the demo account, and its budget with its alerts; returns the events written."""
    now = now or datetime.now(UTC)
    events = demo_events(now)
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, MODELS)
        await writes.upsert_tiers(session, TIERS)
        await writes.upsert_account(session, demo_account(now))
        result = await writes.record_events(session, events, account_id=DEMO_ACCOUNT)
        await _budget(session, events, now)
    return result.accepted


async def _budget(session: AsyncSession, events: list[UsageEventRecord], now: datetime) -> None:
    """A monthly cost budget made at the month's start, and the alerts its month crossed."""
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    rule = Rule(
        budget_id="bud_demo_monthly_cost", name="Monthly spend", scope=Scope.ACCOUNT,
        scope_key="", measure=Measure.COST, limit=1, period=Period.MONTH, time_zone="UTC",
        thresholds=DEFAULT_THRESHOLDS, revision=1, created_at=month_start,
        watched_from=month_start,
    )
    (spent,) = await stored_budgets.spent(InTransaction(session), DEMO_ACCOUNT, rule,
                                         [calendar_period(rule, now)])
    # Whole cents, so that the limit reads as one a person would set.
    cents = max(1, int(Decimal(spent) / DEMO_BUDGET_SHARE / 10_000_000))
    rule = replace(rule, limit=cents * 10_000_000)
    await stored_budgets.add(session, DEMO_ACCOUNT, rule)
    await alerts.after_batch(
        session, DEMO_ACCOUNT,
        [(e.timestamp, e.instance_id, e.model) for e in events if e.timestamp >= month_start],
        now, FreePlan(),
    )


async def read_token(db: Database) -> str:
    async with db.write() as session, session.begin():
        return await writes.create_token(session, DEMO_ACCOUNT, ["read"])

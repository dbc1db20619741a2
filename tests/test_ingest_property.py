"""Property: after any sequence of ingested batches, every route equals a
recomputation from the raw events, done here independently in plain Python.

Batches mix duplicates (inside a batch and across batches), late events,
window edges (the first instant of a window and the second before it),
unpriced models and reported costs.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterql.db import writes
from meterql.db.engine import Database
from tests.conftest import NOW
from tests.golden import auth, seed

PRICES = {"gpt-4o": (Decimal("2.50"), Decimal("10.00")),
          "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60"))}
MODELS = [*PRICES, "unpriced-model"]
TODAY = NOW.date()
MIDNIGHT = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=NOW.tzinfo)
# Edges of the 7- and 30-day windows and of the calendar month (billing period
# of an account without subscription), each with the second before it.
EDGES = [MIDNIGHT - timedelta(days=d) for d in (6, 29, 19)]
EDGE_TIMES = [t + timedelta(seconds=s) for t in EDGES for s in (0, -1)]

timestamps = st.one_of(
    st.sampled_from(EDGE_TIMES),
    st.integers(min_value=0, max_value=40 * 86_400).map(lambda s: NOW - timedelta(seconds=s)),
)
costs = st.one_of(st.none(), st.decimals(min_value=0, max_value=5, places=10).map(str))
events = st.fixed_dictionaries({
    "event_id": st.sampled_from([f"e{n}" for n in range(25)]),
    "instance_id": st.sampled_from(["i0", "i1", "i2"]),
    "model": st.sampled_from(MODELS),
    "timestamp": timestamps.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    "tokens_in": st.integers(min_value=0, max_value=50_000),
    "tokens_out": st.integers(min_value=0, max_value=50_000),
    "end_user_id": st.sampled_from([None, "", "u1", "u2", "u3"]),
    "cost_usd": costs,
})
batches = st.lists(st.lists(events, max_size=12), min_size=1, max_size=4)


def _nanos(event: dict[str, Any]) -> Decimal:
    """The event's cost in USD, exact to the nano-dollar (half-up)."""
    if event["cost_usd"] is not None:
        usd = Decimal(event["cost_usd"])
    elif event["model"] in PRICES:
        price_in, price_out = PRICES[event["model"]]
        usd = (event["tokens_in"] * price_in + event["tokens_out"] * price_out) / 1_000_000
    else:
        usd = Decimal(0)
    return usd.quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)


def _money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def _day(event: dict[str, Any]) -> date:
    return datetime.fromisoformat(event["timestamp"]).date()


def _in_window(event: dict[str, Any], days: int) -> bool:
    return TODAY - timedelta(days=days - 1) <= _day(event) <= TODAY


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests": len(rows),
        "tokens_in": sum(r["tokens_in"] for r in rows),
        "tokens_out": sum(r["tokens_out"] for r in rows),
        "cost": _money(sum((_nanos(r) for r in rows), Decimal(0))),
    }


@pytest.fixture
async def seeded(db: Database) -> Database:
    await seed(db)  # prices of gpt-4o and gpt-4o-mini
    return db


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=batches)
async def test_routes_match_a_recomputation_from_raw_events(
    client: httpx.AsyncClient, seeded: Database, batches: list[list[dict[str, Any]]]
) -> None:
    account = f"prop-{uuid.uuid4().hex[:8]}"  # a fresh tenant per example
    async with seeded.write() as session, session.begin():
        token = await writes.create_token(session, account, ["read", "ingest"])
    stored: dict[str, dict[str, Any]] = {}
    for batch in batches:
        response = await client.post("/v1/usage/events", json=batch, headers=auth(token))
        assert response.status_code == 200, response.text
        new = 0
        for event in batch:
            if event["event_id"] not in stored:
                stored[event["event_id"]] = event
                new += 1
        assert response.json() == {"accepted": new, "duplicates": len(batch) - new}
    rows = list(stored.values())

    async def get(path: str) -> Any:
        response = await client.get(path, headers=auth(token))
        assert response.status_code == 200, response.text
        return response.json()

    for days in (7, 30):
        window = [r for r in rows if _in_window(r, days)]
        t = _totals(window)
        assert await get(f"/v1/metrics/summary?days={days}") == {
            "active_instances": len({r["instance_id"] for r in window}),
            "estimated_cost_usd": t["cost"], "period_days": days,
            "total_requests": t["requests"], "total_tokens": t["tokens_in"] + t["tokens_out"],
            "total_tokens_in": t["tokens_in"], "total_tokens_out": t["tokens_out"],
            "unique_models": len({r["model"] for r in window}),
        }

        by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in window:
            by_model[r["model"]].append(r)
        models = (await get(f"/v1/metrics/models?days={days}"))["models"]
        assert {m["model"]: (m["request_count"], m["tokens_in"], m["tokens_out"],
                             m["estimated_cost_usd"]) for m in models} == {
            name: (len(rs), _totals(rs)["tokens_in"], _totals(rs)["tokens_out"],
                   _totals(rs)["cost"]) for name, rs in by_model.items()
        }
        counts = [m["request_count"] for m in models]
        assert counts == sorted(counts, reverse=True)

        by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
        for r in window:
            by_day[_day(r)].append(r)
        series = (await get(f"/v1/metrics/usage?days={days}"))["points"]
        assert [(p["date"], p["requests"], p["estimated_cost_usd"]) for p in series] == [
            ((TODAY - timedelta(days=days - 1 - n)).isoformat(),
             len(by_day[TODAY - timedelta(days=days - 1 - n)]),
             _totals(by_day[TODAY - timedelta(days=days - 1 - n)])["cost"])
            for n in range(days)
        ]

    week = [r for r in rows if _in_window(r, 7)]
    instances = (await get("/v1/metrics/instances?days=7"))["instances"]
    assert {i["instance_id"]: (i["request_count"], i["estimated_cost_usd"]) for i in instances} == {
        iid: (len(rs), _totals(rs)["cost"])
        for iid in {r["instance_id"] for r in rows}
        for rs in [[r for r in week if r["instance_id"] == iid]]
    }
    chart = (await get("/v1/billing/usage/chart?days=7&instance_id=i1"))["points"] if any(
        r["instance_id"] == "i1" for r in rows) else None
    if chart is not None:
        assert sum(p["requests"] for p in chart) == sum(
            1 for r in week if r["instance_id"] == "i1")

    # No subscription: the billing period is the calendar month of NOW.
    month = [r for r in rows if _day(r).month == TODAY.month and _day(r) <= TODAY]
    t = _totals(month)
    usage = await get("/v1/billing/usage")
    assert (usage["total_requests"], usage["total_tokens"], usage["total_cost_usd"],
            usage["unique_end_users"]) == (
        t["requests"], t["tokens_in"] + t["tokens_out"], t["cost"],
        len({r["end_user_id"] for r in month if r["end_user_id"]}))

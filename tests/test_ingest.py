"""Live ingestion (import-and-ingest.md, section 2): ``recordUsage`` and ``POST /v1/usage/events``.

Every number below is worked out by hand on top of the golden data set
(``tests/golden.py``); "now" is 2026-11-20T15:30:00Z (``conftest.NOW``).
Prices are USD per million tokens (gpt-4o 2.50/10.00, gpt-4o-mini 0.15/0.60),
so an event costs ``tokens_in * in / 1e6 + tokens_out * out / 1e6``; money on
the wire is a string with 4 places, rounded half-up.

Golden numbers reused here (see test_rest_metrics.py / test_rest_billing.py):

| answer                  | requests | tokens in / out   | cost (exact)                |
|-------------------------|----------|-------------------|-----------------------------|
| summary, 7 days         | 5        | 3720 / 1900       | 0.01045    → "0.0105"       |
| summary, 90 days        | 7        | 1013720 / 1011900 | 1.37001789 → "1.3700"       |
| billing period (11/01…) | 7        | 25630 in + out    | 49 + 0.1355125 → "49.1355"  |

The default event of this file (``event()``) is inst-a, gpt-4o, 2026-11-20
14:00Z, 2000 in / 1000 out: 2000 × 2.5 / 1e6 + 1000 × 10 / 1e6 = 0.005 + 0.01
= 0.015 USD.

Every test that touches the store runs through both doors (``door``: REST and
GraphQL) where the answer must be the same, and on both backends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import writes
from meterql.db.engine import Database
from meterql.db.tables import UsageDay, UsageEvent
from meterql.records import ModelRecord, UsageEventRecord
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, ACME_TOKEN, GLOBEX_TOKEN, auth, seed

EVENTS_PATH = "/v1/usage/events"
RECORD_USAGE = (
    "mutation Record($events: [UsageEventInput!]!) "
    "{ recordUsage(events: $events) { accepted duplicates } }"
)
MB = 1024 * 1024
JSON_INGEST = {**auth(ACME_INGEST_TOKEN), "content-type": "application/json"}

GOLDEN_SUMMARY_90 = {
    "active_instances": 2, "estimated_cost_usd": "1.3700", "period_days": 90,
    "total_requests": 7, "total_tokens": 2025620, "total_tokens_in": 1013720,
    "total_tokens_out": 1011900, "unique_models": 3,
}


@pytest.fixture(autouse=True)
async def _seeded(db: Database) -> None:
    await seed(db)


def event(event_id: str, *, instance: str = "inst-a", model: str = "gpt-4o",
          ts: str = "2026-11-20T14:00:00Z", tokens_in: int = 2000, tokens_out: int = 1000,
          **extra: Any) -> dict[str, Any]:
    """One event in the REST (snake_case) shape; by default it costs 0.015 USD."""
    return {"event_id": event_id, "instance_id": instance, "model": model, "timestamp": ts,
            "tokens_in": tokens_in, "tokens_out": tokens_out, **extra}


def camel(item: dict[str, Any]) -> dict[str, Any]:
    """A REST event as a ``UsageEventInput`` value (``event_id`` → ``eventId``)."""
    out = {}
    for key, value in item.items():
        head, *rest = key.split("_")
        out[head + "".join(part.title() for part in rest)] = value
    return out


@dataclass
class Door:
    """One way in: ``rest`` (POST /v1/usage/events) or ``graphql`` (recordUsage)."""

    client: httpx.AsyncClient
    name: str

    async def post(self, events: list[dict[str, Any]],
                   token: str = ACME_INGEST_TOKEN) -> httpx.Response:
        if self.name == "rest":
            return await self.client.post(EVENTS_PATH, json=events, headers=auth(token))
        return await self.client.post(
            "/graphql",
            json={"query": RECORD_USAGE, "variables": {"events": [camel(e) for e in events]}},
            headers=auth(token),
        )

    async def send(self, events: list[dict[str, Any]],
                   token: str = ACME_INGEST_TOKEN) -> dict[str, int]:
        """Send a batch that must be accepted; its ``{"accepted", "duplicates"}``."""
        response = await self.post(events, token)
        assert response.status_code == 200, response.text
        body = response.json()
        if self.name == "graphql":
            assert "errors" not in body, body
            body = body["data"]["recordUsage"]
        return body

    async def reject(self, events: list[dict[str, Any]]) -> list[tuple[tuple[Any, ...], str]]:
        """Send a batch that must be refused as bad input; its (loc below the root, type)s."""
        response = await self.post(events)
        if self.name == "rest":
            assert response.status_code == 422, response.text
            entries, root = response.json()["detail"], "body"
        else:
            assert response.status_code == 200
            body = response.json()
            assert body["data"] is None
            (error,) = body["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT"
            entries, root = error["extensions"]["errors"], "events"
        assert all(entry["loc"][0] == root for entry in entries), entries
        return [(tuple(entry["loc"][1:]), entry["type"]) for entry in entries]


@pytest.fixture(params=["rest", "graphql"])
def door(request: pytest.FixtureRequest, client: httpx.AsyncClient) -> Door:
    return Door(client, request.param)


async def get(client: httpx.AsyncClient, path: str, token: str = ACME_TOKEN) -> Any:
    response = await client.get(path, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def assert_untouched(client: httpx.AsyncClient) -> None:
    """Nothing of a refused batch reached the store: acme's golden numbers, seen via the API."""
    assert await get(client, "/v1/metrics/summary?days=90") == GOLDEN_SUMMARY_90
    # No instance got registered either (the golden four: a, b, c, z).
    assert (await get(client, "/v1/metrics/instances?days=90"))["total_count"] == 4
    usage = await get(client, "/v1/billing/usage")
    assert (usage["total_requests"], usage["total_cost_usd"]) == (7, "49.1355")


async def create_token(db: Database, account: str, scopes: list[str]) -> str:
    async with db.write() as session, session.begin():
        return await writes.create_token(session, account, scopes)


async def set_price(db: Database, model: str, provider: str, usd_in: str, usd_out: str) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [ModelRecord(
            model=model, provider=provider, input_usd_per_mtok=Decimal(usd_in),
            output_usd_per_mtok=Decimal(usd_out),
        )])


def _point(date: str, requests: int, tokens_in: int, tokens_out: int, cost: str) -> dict:
    return {"date": date, "estimated_cost_usd": cost, "requests": requests,
            "tokens_in": tokens_in, "tokens_out": tokens_out}


def _instance(iid: str, host: str, status: str, requests: int, tokens: int, cost: str) -> dict:
    return {"estimated_cost_usd": cost, "hostname": host, "instance_id": iid,
            "request_count": requests, "status": status, "total_tokens": tokens}


def _model(model: str, provider: str, requests: int, tokens_in: int, tokens_out: int,
           cost: str, pct: float) -> dict:
    return {"estimated_cost_usd": cost, "model": model, "pct_of_total": pct,
            "provider": provider, "request_count": requests, "tokens_in": tokens_in,
            "tokens_out": tokens_out}


# --- the route itself ------------------------------------------------------------------


def test_post_route_is_a_row_of_the_compat_table() -> None:
    from meterql.rest_compat.routes import ROUTES

    (route,) = [r for r in ROUTES if r.path == EVENTS_PATH]
    assert (route.method, route.document, route.scope) == ("POST", "record_usage.graphql",
                                                           "ingest")
    assert route.body is not None and route.body.variable == "events"


async def test_rest_answer_bytes(client: httpx.AsyncClient) -> None:
    response = await client.post(EVENTS_PATH, json=[event("n1"), event("n2")],
                                 headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"accepted":2,"duplicates":0}'


async def test_rest_validates_a_batch_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route validates the body; the resolver takes its records as they are."""
    import meterql.ingest
    import meterql.resolvers.ingest
    import meterql.rest_compat.routes

    calls: list[str] = []
    original = meterql.ingest.validate_batch

    def counting(items: object, now: Any, loc: Any, horizon: Any = None) -> Any:
        calls.append(loc[0])
        return original(items, now, loc, horizon)

    monkeypatch.setattr(meterql.rest_compat.routes, "validate_batch", counting)
    monkeypatch.setattr(meterql.resolvers.ingest, "validate_batch", counting)
    response = await client.post(EVENTS_PATH, json=[event("once-1"), event("once-2")],
                                 headers=auth(ACME_INGEST_TOKEN))
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert calls == ["body"]


# --- accepting a batch -----------------------------------------------------------------


async def test_accepted_batch_shows_in_every_answer(
    door: Door, client: httpx.AsyncClient
) -> None:
    batch = [
        event("n1"),  # inst-a gpt-4o 11-20: 0.015
        # inst-b gpt-4o-mini 11-19: 10000 × 0.15 / 1e6 + 5000 × 0.6 / 1e6 = 0.0015 + 0.003
        event("n2", instance="inst-b", model="gpt-4o-mini", ts="2026-11-19T09:00:00Z",
              tokens_in=10000, tokens_out=5000, end_user_id="u9", conversation_id="c1"),
    ]
    assert await door.send(batch) == {"accepted": 2, "duplicates": 0}

    # 7 days: 0.01045 + 0.015 + 0.0045 = 0.02995 → half-up "0.0300"
    assert await get(client, "/v1/metrics/summary?days=7") == {
        "active_instances": 2, "estimated_cost_usd": "0.0300", "period_days": 7,
        "total_requests": 7, "total_tokens": 23620, "total_tokens_in": 15720,
        "total_tokens_out": 7900, "unique_models": 3,
    }
    usage = await get(client, "/v1/billing/usage")
    # period: 25630 + 3000 + 15000 tokens; 49.1355125 + 0.0195 = 49.1550125
    assert usage["total_requests"] == 9
    assert usage["total_tokens"] == 43630
    assert usage["total_cost_usd"] == "49.1550"
    assert usage["token_usage_pct"] == 0.87  # 100 × 43630 / 5000000 = 0.8726
    assert usage["unique_end_users"] == 4  # u1 u2 u3 + u9


async def test_empty_batch_is_fine(door: Door, client: httpx.AsyncClient) -> None:
    assert await door.send([]) == {"accepted": 0, "duplicates": 0}
    await assert_untouched(client)


async def test_exactly_10000_events_are_accepted(client: httpx.AsyncClient) -> None:
    batch = [event(f"bulk-{i}", tokens_in=1, tokens_out=1) for i in range(10_000)]
    response = await client.post(EVENTS_PATH, json=batch, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 200
    assert response.json() == {"accepted": 10_000, "duplicates": 0}
    # Each costs 2.5 / 1e6 + 10 / 1e6 = 0.0000125 USD, exactly 12,500 nano-USD;
    # 10,000 of them: 0.125. 90 days: 1.37001789 + 0.125 = 1.49501789 → "1.4950".
    summary = await get(client, "/v1/metrics/summary?days=90")
    assert summary["total_requests"] == 10_007
    assert summary["total_tokens"] == 2025620 + 20_000
    assert summary["estimated_cost_usd"] == "1.4950"


# --- idempotency -----------------------------------------------------------------------

# Batches of event ids (each the default 0.015 event), the answer to each, and
# how many new events acme has in the end. "e1" is a golden acme event id.
IDEMPOTENCY = {
    "resend": ([["n1", "n2"], ["n1", "n2"]], [(2, 0), (0, 2)], 2),
    "overlap": ([["n1"], ["n1", "n2"]], [(1, 0), (1, 1)], 2),
    "twice-in-one-batch": ([["n1", "n1"]], [(1, 1)], 1),
    "three-times": ([["n1"], ["n1"], ["n1"]], [(1, 0), (0, 1), (0, 1)], 1),
    "golden-id": ([["e1"]], [(0, 1)], 0),
}
# 90 days after n new events: 1.37001789 + n × 0.015
COST_AFTER = {0: "1.3700", 1: "1.3850", 2: "1.4000"}


async def test_a_batch_holds_one_connection_while_it_writes(
    door: Door, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read connection authentication took is given back before the write takes one.

    Holding it while waiting for a second one deadlocked the pool under load
    (``benchmarks/load.py``: with as many ingests waiting as the pool had
    connections, every request timed out with a 503).
    """
    held: list[int] = []
    record_batches = writes.record_batches

    async def spy(session: Any, *args: Any, **kwargs: Any) -> Any:
        await session.connection()  # a session checks its connection out lazily
        held.append(sum(engine.pool.checkedout() for engine in db.engines))
        return await record_batches(session, *args, **kwargs)

    monkeypatch.setattr(writes, "record_batches", spy)
    assert await door.send([event("n1")]) == {"accepted": 1, "duplicates": 0}
    assert held == [1]


async def test_batches_written_as_one_each_count_their_own(db: Database) -> None:
    """An event repeated across the batches counts for the first that has it; an empty
    batch, or one of repeats only, accepts nothing; a model without a price is counted."""
    batches = [["g1", "g2"], ["g2", "g3", "g3"], [], ["g1"], ["g4"]]
    records = [[UsageEventRecord.model_validate(event(
        i, model="mystery" if i == "g4" else "gpt-4o")) for i in ids] for ids in batches]
    async with db.write("acme") as session, session.begin():
        results = await writes.record_batches(session, records, "acme")
    assert [(r.accepted, r.duplicates, r.unpriced) for r in results] == [
        (2, 0, 0), (1, 2, 0), (0, 0, 0), (0, 1, 0), (1, 0, 1)]
    async with db.read() as session:
        stored = await session.scalars(select(UsageEvent.event_id).where(
            UsageEvent.account_id == "acme", UsageEvent.event_id.like("g_")))
        day = await session.scalar(select(UsageDay.requests).where(
            UsageDay.account_id == "acme", UsageDay.day == NOW.date().replace(day=20)))
    assert sorted(stored) == ["g1", "g2", "g3", "g4"]
    async with db.write("acme") as session, session.begin():  # and again: all known
        again = await writes.record_batches(session, records, "acme")
    assert [(r.accepted, r.duplicates) for r in again] == [(0, 2), (0, 3), (0, 0), (0, 1), (0, 1)]
    async with db.read() as session:
        assert await session.scalar(select(UsageDay.requests).where(
            UsageDay.account_id == "acme", UsageDay.day == NOW.date().replace(day=20))) == day


async def test_batches_that_wait_for_each_other_are_written_as_one(
    door: Door, db: Database, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch of an account is written, the ones that arrive wait, then go as one
    transaction; each request still gets its own answer."""
    groups: list[int] = []
    record_batches = writes.record_batches

    async def held_first(session: Any, batches: Any, *args: Any, **kwargs: Any) -> Any:
        groups.append(len(batches))
        if len(groups) == 1:  # hold the first until the other five wait behind it
            for _ in range(2_000):
                if db.batches_waiting == 5:
                    break
                await asyncio.sleep(0.005)
        return await record_batches(session, batches, *args, **kwargs)

    monkeypatch.setattr(writes, "record_batches", held_first)
    # Each batch repeats an event of the one before it.
    answers = await asyncio.gather(*(door.send([event(f"w{n}"), event(f"w{n + 1}")])
                                     for n in range(6)))
    assert groups == [1, 5]
    # Which batch came first depends on the requests' race: the sums do not.
    assert all(a["accepted"] + a["duplicates"] == 2 for a in answers)
    assert (sum(a["accepted"] for a in answers), sum(a["duplicates"] for a in answers)) == (7, 5)
    assert db.batches_waiting == 0
    summary = await get(client, "/v1/metrics/summary?days=90")
    assert summary["total_requests"] == 7 + 7  # the golden seven and w0..w6, once each


@pytest.mark.parametrize("case", sorted(IDEMPOTENCY))
async def test_resending_never_double_counts(
    door: Door, client: httpx.AsyncClient, case: str
) -> None:
    batches, answers, new = IDEMPOTENCY[case]
    for ids, (accepted, duplicates) in zip(batches, answers, strict=True):
        result = await door.send([event(i) for i in ids])
        assert result == {"accepted": accepted, "duplicates": duplicates}
    summary = await get(client, "/v1/metrics/summary?days=90")
    assert summary["total_requests"] == 7 + new
    assert summary["total_tokens_in"] == 1013720 + 2000 * new
    assert summary["estimated_cost_usd"] == COST_AFTER[new]


async def test_a_resent_event_keeps_its_first_content(
    door: Door, client: httpx.AsyncClient
) -> None:
    twin = event("n1", instance="inst-twin", tokens_in=5)  # same id later in the batch
    assert await door.send([event("n1"), twin]) == {"accepted": 1, "duplicates": 1}
    changed = event("n1", instance="inst-new", model="gpt-4o-mini", tokens_in=999_999,
                    ts="2026-11-16T00:00:00Z", cost_usd="7")
    assert await door.send([changed]) == {"accepted": 0, "duplicates": 1}
    summary = await get(client, "/v1/metrics/summary?days=90")
    assert summary["total_tokens_in"] == 1013720 + 2000
    assert summary["estimated_cost_usd"] == "1.3850"  # 1.37001789 + 0.015, not + 7
    # A duplicate changes nothing at all: neither inst-twin nor inst-new got registered.
    assert (await get(client, "/v1/metrics/instances?days=90"))["total_count"] == 4


async def test_duplicates_are_shared_across_doors(client: httpx.AsyncClient) -> None:
    rest, graphql = Door(client, "rest"), Door(client, "graphql")
    assert await rest.send([event("n1"), event("n2")]) == {"accepted": 2, "duplicates": 0}
    assert await graphql.send([event("n1"), event("n3")]) == {"accepted": 1, "duplicates": 1}
    assert await rest.send([event("n3")]) == {"accepted": 0, "duplicates": 1}
    assert await graphql.send([event("n2")]) == {"accepted": 0, "duplicates": 1}
    summary = await get(client, "/v1/metrics/summary?days=90")
    assert summary["total_requests"] == 10
    assert summary["estimated_cost_usd"] == "1.4150"  # 1.37001789 + 3 × 0.015 = 1.41501789


async def test_same_event_id_in_two_accounts_is_two_events(
    door: Door, client: httpx.AsyncClient, db: Database
) -> None:
    globex_ingest = await create_token(db, "globex", ["read", "ingest"])
    assert await door.send([event("shared")]) == {"accepted": 1, "duplicates": 0}
    globex_event = event("shared", instance="inst-g", model="gpt-4o-mini",
                         tokens_in=1_000_000, tokens_out=0)  # 0.15
    assert await door.send([globex_event], globex_ingest) == {"accepted": 1, "duplicates": 0}
    assert await door.send([globex_event], globex_ingest) == {"accepted": 0, "duplicates": 1}
    # globex's own golden id "g2" is a new event for acme; golden "e1" is globex's too.
    assert await door.send([event("g2")]) == {"accepted": 1, "duplicates": 0}
    assert await door.send([event("e1", instance="inst-g")], globex_ingest) == {
        "accepted": 0, "duplicates": 1,
    }

    acme = await get(client, "/v1/metrics/summary?days=90")
    assert acme["total_requests"] == 9  # 7 + shared + g2
    assert acme["estimated_cost_usd"] == "1.4000"  # 1.37001789 + 2 × 0.015
    globex = await get(client, "/v1/metrics/summary?days=90", GLOBEX_TOKEN)
    # golden e1 (0.0124875) and g2 (0.00005775) + shared 0.15 = 0.16254525
    assert globex["total_requests"] == 3
    assert globex["total_tokens_in"] == 999 + 77 + 1_000_000
    assert globex["estimated_cost_usd"] == "0.1625"


# --- what an event brings along ---------------------------------------------------------


async def test_unknown_instances_are_registered(door: Door, client: httpx.AsyncClient) -> None:
    batch = [
        # 100 × 2.5 / 1e6 + 100 × 10 / 1e6 = 0.00025 + 0.001 = 0.00125 → "0.0013"
        event("r1", instance="inst-new", ts="2026-11-20T09:00:00Z", tokens_in=100,
              tokens_out=100),
        # already registered (idle): keeps its hostname and status; 1000 × 0.15 / 1e6
        event("r2", instance="inst-z", model="gpt-4o-mini", ts="2026-11-20T09:30:00Z",
              tokens_in=1000, tokens_out=0),
        # globex's instance id, but instance ids are per account: a new acme instance
        event("r3", instance="inst-g", ts="2026-11-20T09:45:00Z", tokens_in=0, tokens_out=100),
    ]
    assert await door.send(batch) == {"accepted": 3, "duplicates": 0}

    instances = await get(client, "/v1/metrics/instances?days=7")
    assert instances == {
        "instances": [
            _instance("inst-a", "agent-a.acme.test", "running", 3, 4520, "0.0085"),
            _instance("inst-b", "agent-b.acme.test", "stopped", 2, 1100, "0.0020"),
            # one request each, then by id
            _instance("inst-g", "", "unknown", 1, 100, "0.0010"),
            _instance("inst-new", "", "unknown", 1, 200, "0.0013"),
            _instance("inst-z", "agent-z.acme.test", "running", 1, 1000, "0.0002"),  # 0.00015
            _instance("inst-c", "agent-c.acme.test", "error", 0, 0, "0.0000"),
        ],
        "total_count": 6,
    }
    assert (await get(client, "/v1/metrics/summary?days=7"))["active_instances"] == 5
    # A registered instance is a valid chart filter at once.
    chart = await get(client, "/v1/billing/usage/chart?days=1&instance_id=inst-new")
    assert chart == {"period_label": "Last 1 days",
                     "points": [{"cost_usd": "0.0013", "date": "2026-11-20", "requests": 1,
                                 "tokens": 200}]}
    # globex's inst-g is untouched: golden e1 (999/999) and g2 (77/77), 0.01254525
    globex = await get(client, "/v1/metrics/instances?days=30", GLOBEX_TOKEN)
    assert globex == {"instances": [_instance("inst-g", "g.globex.test", "running", 2, 2152,
                                              "0.0125")],
                      "total_count": 1}


async def test_unpriced_model_costs_nothing(door: Door, client: httpx.AsyncClient) -> None:
    batch = [event("m1", model="brand-new-llm", ts="2026-11-20T11:00:00Z", tokens_in=1000,
                   tokens_out=1000)]
    assert await door.send(batch) == {"accepted": 1, "duplicates": 0}
    assert await get(client, "/v1/metrics/models?days=7") == {
        "models": [
            _model("gpt-4o", "openai", 3, 1420, 600, "0.0096", 50.0),  # 3 of 6
            # 1 of 6 = 16.666… → 16.67; ties by model name
            _model("brand-new-llm", "", 1, 1000, 1000, "0.0000", 16.67),
            _model("gpt-4o-mini", "openai", 1, 2000, 1000, "0.0009", 16.67),
            _model("mystery", "", 1, 300, 300, "0.0000", 16.67),
        ],
        "total_requests": 6,
    }
    summary = await get(client, "/v1/metrics/summary?days=7")
    assert (summary["total_requests"], summary["unique_models"]) == (6, 4)
    assert summary["estimated_cost_usd"] == "0.0105"  # unchanged: the new event costs 0


# Reported costs through either door (GraphQL takes Decimal as a string). The
# event would be estimated at 0.015; it lands alone on 2026-11-16.
STRING_COSTS = [
    ("0.5", "0.5000"),
    ("0", "0.0000"),  # a reported zero is a cost too, not "no cost"
    ("0.00005", "0.0001"),  # half-up on the wire
    # 249,999.5 nano-USD → half-up 250,000 → 0.00025 → "0.0003"
    ("0.0002499995", "0.0003"),
    ("1000000000", "1000000000.0000"),  # the largest cost allowed
]


@pytest.mark.parametrize(("cost", "shown"), STRING_COSTS)
async def test_reported_cost_overrides_the_estimate(
    door: Door, client: httpx.AsyncClient, cost: str, shown: str
) -> None:
    batch = [event("c1", ts="2026-11-16T08:00:00Z", cost_usd=cost)]
    assert await door.send(batch) == {"accepted": 1, "duplicates": 0}
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    assert points[2] == _point("2026-11-16", 1, 2000, 1000, shown)


async def test_reported_cost_counts_for_unpriced_models(
    door: Door, client: httpx.AsyncClient
) -> None:
    batch = [event("c1", model="brand-new-llm", ts="2026-11-16T08:00:00Z", cost_usd="0.25")]
    assert await door.send(batch) == {"accepted": 1, "duplicates": 0}
    models = (await get(client, "/v1/metrics/models?days=7"))["models"]
    (row,) = [m for m in models if m["model"] == "brand-new-llm"]
    assert (row["provider"], row["estimated_cost_usd"]) == ("", "0.2500")


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        # As a float 0.0002499995 is 0.00024999949999…: it would round to 249,999
        # nano-USD and show "0.0002". Read exactly it is 249,999.5 → 250,000.
        ("0.0002499995", "0.0003"),
        ("1.5e-3", "0.0015"),
        ("2", "2.0000"),
        ("0.1", "0.1000"),
        ("null", "0.0150"),  # no reported cost: the estimate
    ],
)
async def test_reported_cost_as_a_json_number_is_read_exactly(
    client: httpx.AsyncClient, number: str, shown: str
) -> None:
    body = (
        '[{"event_id": "c1", "instance_id": "inst-a", "model": "gpt-4o", '
        '"timestamp": "2026-11-16T08:00:00Z", "tokens_in": 2000, "tokens_out": 1000, '
        f'"cost_usd": {number}}}]'
    )
    response = await client.post(EVENTS_PATH, content=body.encode(), headers=JSON_INGEST)
    assert response.status_code == 200, response.text
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    assert points[2] == _point("2026-11-16", 1, 2000, 1000, shown)


async def test_three_json_number_costs_add_up_exactly(client: httpx.AsyncClient) -> None:
    body = ", ".join(
        f'{{"event_id": "c{day}", "instance_id": "inst-cost", "model": "gpt-4o", '
        f'"timestamp": "2026-11-{day}T08:00:00Z", "tokens_in": 1, "tokens_out": 1, '
        f'"cost_usd": 0.1234567891}}'
        for day in (15, 16, 17)
    )
    response = await client.post(EVENTS_PATH, content=f"[{body}]".encode(),
                                 headers=auth(ACME_INGEST_TOKEN))
    assert response.json() == {"accepted": 3, "duplicates": 0}
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    # Each 0.1234567891 → 123,456,789 nano-USD (half-up) → "0.1235"
    assert [p["estimated_cost_usd"] for p in points[1:4]] == ["0.1235"] * 3
    # 3 × 123,456,789 = 370,370,367 nano-USD → "0.3704"
    instances = (await get(client, "/v1/metrics/instances?days=7"))["instances"]
    (row,) = [i for i in instances if i["instance_id"] == "inst-cost"]
    assert (row["request_count"], row["estimated_cost_usd"]) == (3, "0.3704")


async def test_price_at_ingest_is_kept_with_the_event(
    door: Door, client: httpx.AsyncClient, db: Database
) -> None:
    million = 1_000_000
    before = [
        event("p1", ts="2026-11-16T12:00:00Z", tokens_in=million, tokens_out=0),  # 2.50
        event("u1", model="late-llm", ts="2026-11-15T12:00:00Z", tokens_in=million,
              tokens_out=million),  # no price yet: 0
    ]
    assert await door.send(before) == {"accepted": 2, "duplicates": 0}
    await set_price(db, "gpt-4o", "openai", "5.00", "20.00")
    await set_price(db, "late-llm", "acme-ai", "1.00", "2.00")
    after = [
        event("p2", ts="2026-11-17T12:00:00Z", tokens_in=million, tokens_out=0),  # 5.00
        event("u2", model="late-llm", ts="2026-11-17T13:00:00Z", tokens_in=million,
              tokens_out=million),  # 1.00 + 2.00
        event("p1", ts="2026-11-16T12:00:00Z", tokens_in=million, tokens_out=0),  # resent
    ]
    assert await door.send(after) == {"accepted": 2, "duplicates": 1}

    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    assert points == [
        _point("2026-11-14", 1, 300, 300, "0.0000"),  # golden e4
        _point("2026-11-15", 1, million, million, "0.0000"),  # u1, priced later
        _point("2026-11-16", 1, million, 0, "2.5000"),  # p1 at the old price
        _point("2026-11-17", 2, 2 * million, million, "8.0000"),  # p2 5.00 + u2 3.00
        _point("2026-11-18", 1, 400, 100, "0.0020"),  # golden, old price
        _point("2026-11-19", 1, 20, 0, "0.0001"),
        _point("2026-11-20", 2, 3000, 1500, "0.0084"),
    ]


async def test_late_events_show_in_every_answer_at_once(
    door: Door, client: httpx.AsyncClient
) -> None:
    # Five days ago: 4000 × 2.5 / 1e6 + 1000 × 10 / 1e6 = 0.01 + 0.01 = 0.02
    late = event("late", instance="inst-b", ts="2026-11-15T12:00:00Z", tokens_in=4000,
                 tokens_out=1000)
    assert await door.send([late]) == {"accepted": 1, "duplicates": 0}

    # 0.01045 + 0.02 = 0.03045 → "0.0305"
    assert await get(client, "/v1/metrics/summary?days=7") == {
        "active_instances": 2, "estimated_cost_usd": "0.0305", "period_days": 7,
        "total_requests": 6, "total_tokens": 10620, "total_tokens_in": 7720,
        "total_tokens_out": 2900, "unique_models": 3,
    }
    assert await get(client, "/v1/metrics/instances?days=7") == {
        "instances": [
            _instance("inst-a", "agent-a.acme.test", "running", 3, 4520, "0.0085"),
            # 0.002 + 0.02; ties on 3 requests go by id
            _instance("inst-b", "agent-b.acme.test", "stopped", 3, 6100, "0.0220"),
            _instance("inst-c", "agent-c.acme.test", "error", 0, 0, "0.0000"),
            _instance("inst-z", "agent-z.acme.test", "running", 0, 0, "0.0000"),
        ],
        "total_count": 4,
    }
    assert await get(client, "/v1/metrics/models?days=7") == {
        "models": [
            # 0.00955 + 0.02 = 0.02955 → "0.0296"; 4 of 6 → 66.67
            _model("gpt-4o", "openai", 4, 5420, 1600, "0.0296", 66.67),
            _model("gpt-4o-mini", "openai", 1, 2000, 1000, "0.0009", 16.67),
            _model("mystery", "", 1, 300, 300, "0.0000", 16.67),
        ],
        "total_requests": 6,
    }
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    assert points[1] == _point("2026-11-15", 1, 4000, 1000, "0.0200")
    # Billing period: 25630 + 5000 tokens; 49.1355125 + 0.02 = 49.1555125
    assert await get(client, "/v1/billing/usage") == {
        "by_instance": [
            {"cost_usd": "0.1335", "hostname": "agent-a.acme.test", "instance_id": "inst-a",
             "requests": 4, "tokens": 24520},
            # 0.0020625 + 0.02 = 0.0220625 → "0.0221"
            {"cost_usd": "0.0221", "hostname": "agent-b.acme.test", "instance_id": "inst-b",
             "requests": 4, "tokens": 6110},
        ],
        "period_end": "2026-12-01T00:00:00Z",
        "period_start": "2026-11-01T00:00:00Z",
        "platform_cost_usd": "49.0000",
        "token_allowance_monthly": 5000000,
        "token_usage_pct": 0.61,  # 100 × 30630 / 5000000 = 0.6126
        "total_cost_usd": "49.1555",
        "total_requests": 8,
        "total_tokens": 30630,
        "unique_end_users": 3,
    }
    billing = (await get(client, "/v1/billing"))["usage"]
    assert (billing["total_requests"], billing["total_tokens"], billing["total_cost_usd"]) == (
        8, 30630, "49.1555"
    )
    for path in ["/v1/billing/usage/chart?days=7",
                 "/v1/billing/usage/chart?days=7&instance_id=inst-b"]:
        chart = await get(client, path)
        assert chart["points"][1] == {"cost_usd": "0.0200", "date": "2026-11-15",
                                      "requests": 1, "tokens": 5000}


async def test_offset_timestamps_count_on_their_utc_day(
    door: Door, client: httpx.AsyncClient
) -> None:
    # 23:30 at UTC-5 on the 15th is 04:30Z on the 16th.
    batch = [event("tz", ts="2026-11-15T23:30:00-05:00")]
    assert await door.send(batch) == {"accepted": 1, "duplicates": 0}
    points = (await get(client, "/v1/metrics/usage?days=7"))["points"]
    assert points[1] == _point("2026-11-15", 0, 0, 0, "0.0000")
    assert points[2] == _point("2026-11-16", 1, 2000, 1000, "0.0150")


# --- the clock: at most 5 minutes ahead of the app's now (15:30Z) ------------------------


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        ("2026-11-20T15:34:59Z", True),  # now + 4 min 59 s
        ("2026-11-20T15:35:00Z", True),  # now + 5 min exactly
        ("2026-11-20T17:35:00+02:00", True),  # the same instant, another zone
        ("2026-11-20T15:35:00.000001Z", False),  # one microsecond too far
        ("2026-11-20T15:35:01Z", False),  # now + 5 min 1 s
        ("2026-11-20T10:35:01-05:00", False),  # 15:35:01Z
        ("2026-11-21T00:00:00Z", False),
    ],
)
async def test_future_timestamps(
    door: Door, client: httpx.AsyncClient, timestamp: str, accepted: bool
) -> None:
    batch = [event("ok", instance="inst-new"), event("t", ts=timestamp)]
    if accepted:
        assert await door.send(batch) == {"accepted": 2, "duplicates": 0}
        assert (await get(client, "/v1/metrics/summary?days=7"))["total_requests"] == 7
    else:
        assert await door.reject(batch) == [((1, "timestamp"), "value_error")]
        await assert_untouched(client)


# --- all or nothing: bad input ----------------------------------------------------------

# One bad value in the second event; the first is fine (and names a new
# instance, so a partial write would show in the instance count). Both doors
# reach the same validation for these.
BAD_VALUES = {
    "negative-tokens-in": ({"tokens_in": -1}, "tokens_in", "greater_than_equal"),
    "negative-tokens-out": ({"tokens_out": -5}, "tokens_out", "greater_than_equal"),
    "tokens-beyond-2**62": ({"tokens_in": 2**62 + 1}, "tokens_in", "less_than_equal"),
    "empty-event-id": ({"event_id": ""}, "event_id", "string_too_short"),
    "empty-instance-id": ({"instance_id": ""}, "instance_id", "string_too_short"),
    "empty-model": ({"model": ""}, "model", "string_too_short"),
    "long-event-id": ({"event_id": "x" * 201}, "event_id", "string_too_long"),
    "long-end-user": ({"end_user_id": "u" * 201}, "end_user_id", "string_too_long"),
    "negative-cost": ({"cost_usd": "-0.01"}, "cost_usd", "greater_than_equal"),
    "cost-too-large": ({"cost_usd": "1000000000.01"}, "cost_usd", "less_than_equal"),
    "future": ({"timestamp": "2026-11-20T15:40:00Z"}, "timestamp", "value_error"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
async def test_one_bad_event_rejects_the_batch(
    door: Door, client: httpx.AsyncClient, case: str
) -> None:
    patch, field, kind = BAD_VALUES[case]
    batch = [event("good", instance="inst-new"), {**event("bad"), **patch}]
    assert await door.reject(batch) == [((1, field), kind)]
    await assert_untouched(client)


async def test_every_bad_event_is_named(door: Door, client: httpx.AsyncClient) -> None:
    batch = [event("a", tokens_in=-1), event("b"), event("", tokens_out=-1)]
    assert await door.reject(batch) == [
        ((0, "tokens_in"), "greater_than_equal"),
        ((2, "event_id"), "string_too_short"),
        ((2, "tokens_out"), "greater_than_equal"),
    ]
    await assert_untouched(client)


def _entry(kind: str, index: int, field: str, msg: str, value: Any, **ctx: Any) -> dict:
    entry = {"type": kind, "loc": ["body", index, field], "msg": msg, "input": value}
    return {**entry, "ctx": ctx} if ctx else entry


NOT_INT = "Input should be a valid integer"

# REST: the whole FastAPI/pydantic 422 body, for values only JSON can carry.
REST_BAD = {
    "string-tokens": ({"tokens_in": "5"}, _entry("int_type", 1, "tokens_in", NOT_INT, "5")),
    "float-tokens": ({"tokens_out": 1.5}, _entry("int_type", 1, "tokens_out", NOT_INT, 1.5)),
    "bool-tokens": ({"tokens_in": True}, _entry("int_type", 1, "tokens_in", NOT_INT, True)),
    "negative": ({"tokens_in": -1}, _entry("greater_than_equal", 1, "tokens_in",
                                           "Input should be greater than or equal to 0", -1,
                                           ge=0)),
    "account-id": ({"account_id": "acme"}, _entry("extra_forbidden", 1, "account_id",
                                                  "Extra inputs are not permitted", "acme")),
    "other-account-id": ({"account_id": "globex"},
                         _entry("extra_forbidden", 1, "account_id",
                                "Extra inputs are not permitted", "globex")),
    "unknown-field": ({"eventId": "n9"}, _entry("extra_forbidden", 1, "eventId",
                                                "Extra inputs are not permitted", "n9")),
    "naive-timestamp": ({"timestamp": "2026-11-20T10:00:00"},
                        _entry("timezone_aware", 1, "timestamp",
                               "Input should have timezone info", "2026-11-20T10:00:00")),
    "empty-event-id": ({"event_id": ""}, _entry("string_too_short", 1, "event_id",
                                                "String should have at least 1 character", "",
                                                min_length=1)),
    "cost-not-a-number": ({"cost_usd": "abc"}, _entry("decimal_parsing", 1, "cost_usd",
                                                      "Input should be a valid decimal",
                                                      "abc")),
    "future": ({"timestamp": "2026-11-20T15:35:01Z"},
               _entry("value_error", 1, "timestamp",
                      "Value error, timestamp is more than 5 minutes in the future",
                      "2026-11-20T15:35:01Z",
                      error="timestamp is more than 5 minutes in the future")),
}


@pytest.mark.parametrize("case", sorted(REST_BAD))
async def test_rest_422_body(client: httpx.AsyncClient, case: str) -> None:
    patch, expected = REST_BAD[case]
    batch = [event("good", instance="inst-new"), {**event("bad"), **patch}]
    response = await client.post(EVENTS_PATH, json=batch, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 422
    assert response.json() == {"detail": [expected]}
    await assert_untouched(client)


async def test_rest_missing_field(client: httpx.AsyncClient) -> None:
    bad = event("bad")
    del bad["model"]
    response = await client.post(EVENTS_PATH, json=[event("good"), bad],
                                 headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 422
    assert response.json() == {"detail": [_entry("missing", 1, "model", "Field required", bad)]}
    await assert_untouched(client)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        # position 14 is the "}" where a value was expected
        (b'[{"event_id": }]', [{"type": "json_invalid", "loc": ["body", 14],
                               "msg": "JSON decode error", "input": {},
                               "ctx": {"error": "Expecting value"}}]),
        (b"not json", [{"type": "json_invalid", "loc": ["body", 0],
                        "msg": "JSON decode error", "input": {},
                        "ctx": {"error": "Expecting value"}}]),
        (b'[{"a": 1}', [{"type": "json_invalid", "loc": ["body", 9],
                         "msg": "JSON decode error", "input": {},
                         "ctx": {"error": "Expecting ',' delimiter"}}]),
        (b"", [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]),
        (b'{"event_id": "n1"}', [{"type": "list_type", "loc": ["body"],
                                  "msg": "Input should be a valid list",
                                  "input": {"event_id": "n1"}}]),
        (b'"n1"', [{"type": "list_type", "loc": ["body"], "msg": "Input should be a valid list",
                    "input": "n1"}]),
    ],
    ids=["json-invalid", "not-json", "unterminated", "empty", "object", "string"],
)
async def test_rest_body_errors(client: httpx.AsyncClient, body: bytes, detail: list) -> None:
    response = await client.post(EVENTS_PATH, content=body, headers=JSON_INGEST)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}
    await assert_untouched(client)


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"timestamp": "2026-11-20T10:00:00"}, "[1].timestamp"),  # naive
        ({"tokensIn": "5"}, "[1].tokensIn"),
        ({"tokensOut": 1.5}, "[1].tokensOut"),
        ({"costUsd": 0.1}, "[1].costUsd"),  # Decimal is a string in GraphQL
        ({"eventId": None}, "[1].eventId"),
        ({"accountId": "acme"}, "[1]"),  # not a field of UsageEventInput
    ],
)
async def test_graphql_variable_errors_reject_the_batch(
    client: httpx.AsyncClient, patch: dict[str, Any], where: str
) -> None:
    events = [camel(event("good", instance="inst-new")), {**camel(event("bad")), **patch}]
    response = await client.post(
        "/graphql", json={"query": RECORD_USAGE, "variables": {"events": events}},
        headers=auth(ACME_INGEST_TOKEN),
    )
    body = response.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert f"at {where}" in error["message"]
    await assert_untouched(client)


async def test_graphql_unknown_field_in_a_literal_is_refused(client: httpx.AsyncClient) -> None:
    query = (
        'mutation { recordUsage(events: [{eventId: "x", instanceId: "inst-new", '
        'model: "gpt-4o", timestamp: "2026-11-20T10:00:00Z", tokensIn: 1, tokensOut: 1, '
        'accountId: "globex"}]) { accepted } }'
    )
    response = await client.post("/graphql", json={"query": query},
                                 headers=auth(ACME_INGEST_TOKEN))
    body = response.json()
    assert "data" not in body or body["data"] is None
    assert "accountId" in body["errors"][0]["message"]
    await assert_untouched(client)


async def test_graphql_error_shape(client: httpx.AsyncClient) -> None:
    events = [camel(event("good")), camel(event("bad", tokens_in=-1))]
    response = await client.post(
        "/graphql", json={"query": RECORD_USAGE, "variables": {"events": events}},
        headers=auth(ACME_INGEST_TOKEN),
    )
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["path"] == ["recordUsage"]
    assert error["message"] == "events.1.tokens_in: Input should be greater than or equal to 0"
    assert error["extensions"] == {
        "code": "BAD_USER_INPUT",
        "errors": [{"type": "greater_than_equal", "loc": ["events", 1, "tokens_in"],
                    "msg": "Input should be greater than or equal to 0", "input": -1,
                    "ctx": {"ge": 0}}],
    }


# --- limits -----------------------------------------------------------------------------


async def test_10001_events_are_too_many(door: Door, client: httpx.AsyncClient) -> None:
    batch = [event(f"bulk-{i}", tokens_in=1, tokens_out=1) for i in range(10_001)]
    response = await door.post(batch)
    # Both doors refuse it before anything is written: REST by its count,
    # /graphql already by its body size (about 1.5 MB, over its 1 MiB).
    assert response.status_code == 413
    await assert_untouched(client)


async def test_a_batch_past_the_limit_is_refused_by_count_over_graphql(
    settings: Settings, db: Database, client: httpx.AsyncClient
) -> None:
    """With room in the body, /graphql counts the events like REST does."""
    roomy = create_app(settings.model_copy(update={"graphql_max_body_bytes": 10 * 1024 * 1024}),
                       database=db, clock=lambda: NOW)
    batch = [camel(event(f"bulk-{i}", tokens_in=1, tokens_out=1)) for i in range(10_001)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=roomy),
                                 base_url="http://meterql.test") as big:
        response = await big.post("/graphql", json={"query": RECORD_USAGE,
                                                    "variables": {"events": batch}},
                                   headers=auth(ACME_INGEST_TOKEN))
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    await assert_untouched(client)


async def test_duplicates_across_a_large_batch(client: httpx.AsyncClient) -> None:
    # 1,500 events whose last 500 repeat the first 500 ids.
    batch = [event(f"big-{i % 1000}", tokens_in=1, tokens_out=1) for i in range(1500)]
    response = await client.post(EVENTS_PATH, json=batch, headers=auth(ACME_INGEST_TOKEN))
    assert response.json() == {"accepted": 1000, "duplicates": 500}
    assert (await get(client, "/v1/metrics/summary?days=90"))["total_requests"] == 1007


TOO_LARGE = b'{"detail":"Request entity too large"}'


def _padded_empty_array(size: int) -> bytes:
    """A valid empty JSON array of exactly ``size`` bytes."""
    return b"[" + b" " * (size - 2) + b"]"


async def test_ten_million_bytes_are_fine(client: httpx.AsyncClient) -> None:
    body = _padded_empty_array(10_000_000)
    response = await client.post(EVENTS_PATH, content=body, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 0}


async def test_body_over_10_mb_is_refused(client: httpx.AsyncClient) -> None:
    body = _padded_empty_array(10 * MB + 1)
    response = await client.post(EVENTS_PATH, content=body, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 413
    assert response.content == TOO_LARGE


async def test_body_over_10_mb_with_a_lying_content_length(client: httpx.AsyncClient) -> None:
    # A real 11 MB batch of valid events behind a header that claims 10 bytes.
    one = json.dumps(event("x" * 150, end_user_id="u" * 200, conversation_id="c" * 200))
    count = 11 * MB // len(one) + 1
    body = ("[" + ",".join([one] * count) + "]").encode()
    assert len(body) > 11 * MB
    headers = {**auth(ACME_INGEST_TOKEN), "content-length": "10"}
    response = await client.post(EVENTS_PATH, content=body, headers=headers)
    assert response.request.headers["content-length"] == "10"
    assert response.status_code == 413
    assert response.content == TOO_LARGE
    await assert_untouched(client)


async def test_body_over_10_mb_without_content_length(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        for _ in range(11):
            yield b" " * MB
        yield b"]"

    response = await client.post(EVENTS_PATH, content=chunks(), headers=auth(ACME_INGEST_TOKEN))
    assert "content-length" not in response.request.headers  # sent chunked
    assert response.status_code == 413
    assert response.content == TOO_LARGE


async def test_declared_length_over_10_mb_is_refused_before_reading(
    client: httpx.AsyncClient
) -> None:
    headers = {**auth(ACME_INGEST_TOKEN), "content-length": str(20 * MB)}
    response = await client.post(EVENTS_PATH, content=b"[]", headers=headers)
    assert response.status_code == 413
    assert response.content == TOO_LARGE


# --- scope ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [ACME_TOKEN, GLOBEX_TOKEN])
async def test_read_only_token_is_forbidden(
    door: Door, client: httpx.AsyncClient, token: str
) -> None:
    response = await door.post([event("n1", instance="inst-new")], token)
    if door.name == "rest":
        assert response.status_code == 403
        assert isinstance(response.json()["detail"], str)
    else:
        body = response.json()
        assert body["data"] is None
        (error,) = body["errors"]
        assert error["extensions"] == {"code": "FORBIDDEN"}
    await assert_untouched(client)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'[{"tokens_in": -1}]', _padded_empty_array(11 * MB)],
    ids=["invalid-json", "invalid-event", "too-large"],
)
async def test_scope_is_checked_before_the_body(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(EVENTS_PATH, content=body, headers=auth(ACME_TOKEN))
    assert response.status_code == 403


async def test_ingest_token_can_still_read(client: httpx.AsyncClient) -> None:
    summary = await get(client, "/v1/metrics/summary?days=90", ACME_INGEST_TOKEN)
    assert summary == GOLDEN_SUMMARY_90


async def test_mutation_over_get_is_refused(client: httpx.AsyncClient) -> None:
    variables = json.dumps({"events": [camel(event("n1", instance="inst-new"))]})
    response = await client.get("/graphql", params={"query": RECORD_USAGE,
                                                    "variables": variables},
                                headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 405
    assert "mutations are not allowed" in response.text
    await assert_untouched(client)


# --- extremes: bounds, overflow, hostile bodies (each once answered 500) ----------------


@pytest.mark.parametrize(
    ("tokens_in", "status"),
    [(10**10, 200), (10**10 + 1, 422), (2**62, 422)],
)
async def test_token_counts_are_bounded_so_costs_fit(
    client: httpx.AsyncClient, tokens_in: int, status: int
) -> None:
    # The bound: 1e10 tokens × the dearest allowed price (1e5 USD per million
    # tokens) is 1e9 USD = 1e18 nano-USD, within a signed 64-bit column.
    batch = [event("huge", tokens_in=tokens_in, tokens_out=0)]
    response = await client.post(EVENTS_PATH, json=batch, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("batch", "field", "expected"),
    [
        # Two unpriced events at the token bound: 3720 + 2e10 = 20000003720
        ([event(f"big-{i}", model="mystery", tokens_in=10**10, tokens_out=0) for i in range(2)],
         "total_tokens_in", 20000003720),
        # Ten events at the largest reported cost, 1e9 USD = 1e18 nano-USD each: the
        # sum passes 2**63 nano-USD, where SQLite's SUM() gives up.
        # 1e10 + 0.01045 → "10000000000.0105"
        ([event(f"rich-{i}", cost_usd="1000000000") for i in range(10)],
         "estimated_cost_usd", "10000000000.0105"),
    ],
    ids=["tokens", "cost"],
)
async def test_sums_beyond_64_bits_still_read(
    client: httpx.AsyncClient, batch: list[dict[str, Any]], field: str, expected: Any
) -> None:
    response = await client.post(EVENTS_PATH, json=batch, headers=auth(ACME_INGEST_TOKEN))
    assert response.json() == {"accepted": len(batch), "duplicates": 0}
    summary = await client.get("/v1/metrics/summary?days=7", headers=auth())
    assert summary.status_code == 200, summary.text
    assert summary.json()[field] == expected


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_are_422(raw_client: httpx.AsyncClient, literal: str) -> None:
    body = (
        '[{"event_id": "n1", "instance_id": "inst-a", "model": "gpt-4o", '
        f'"timestamp": "2026-11-20T10:00:00Z", "tokens_in": {literal}, "tokens_out": 1}}]'
    )
    response = await raw_client.post(EVENTS_PATH, content=body.encode(),
                                     headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 422, response.text


async def test_deeply_nested_json_is_422(raw_client: httpx.AsyncClient) -> None:
    body = b"[" * 100_000 + b"]" * 100_000  # 200 kB, well under the size limit
    response = await raw_client.post(EVENTS_PATH, content=body, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 422, response.text


async def test_timestamp_before_year_one_in_utc_is_422(raw_client: httpx.AsyncClient) -> None:
    # 00:30 at UTC+1 on 0001-01-01 is 23:30Z on 0000-12-31, which Python cannot hold.
    batch = [event("old", ts="0001-01-01T00:30:00+01:00")]
    response = await raw_client.post(EVENTS_PATH, json=batch, headers=auth(ACME_INGEST_TOKEN))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"null", {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}),
        # FastAPI only skips decoding for a truly empty body; "  " fails at position 2.
        (b"  ", {"type": "json_invalid", "loc": ["body", 2], "msg": "JSON decode error",
                 "input": {}, "ctx": {"error": "Expecting value"}}),
    ],
    ids=["null", "whitespace"],
)
async def test_fastapi_shapes_for_null_and_blank_bodies(
    client: httpx.AsyncClient, body: bytes, detail: dict
) -> None:
    response = await client.post(EVENTS_PATH, content=body, headers=JSON_INGEST)
    assert response.status_code == 422
    assert response.json() == {"detail": [detail]}


async def test_a_batch_rolled_back_leaves_nothing_for_the_next_on_its_connection(
    settings: Settings,
) -> None:
    # One connection, so every batch uses the same one (and, on PostgreSQL,
    # the same stage, which its commits and rollbacks must leave empty).
    db = Database.from_settings(settings.model_copy(update={"pool_size": 1, "max_overflow": 0}))

    async def day_requests() -> int:
        async with db.read() as session:
            found = await session.scalar(select(UsageDay.requests).where(
                UsageDay.account_id == "acme", UsageDay.day == NOW.date()))
        return int(found or 0)

    try:  # the file's autouse fixture has seeded the golden data
        before = await day_requests()
        records = [UsageEventRecord.model_validate(event(f"rb-{n}")) for n in range(3)]
        with pytest.raises(RuntimeError):
            async with db.write("acme") as session, session.begin():
                result = await writes.record_events(session, records, "acme")
                assert result.accepted == 3
                raise RuntimeError("the caller gives up: the batch rolls back")
        for expected in ((2, 0), (0, 2)):  # stored once, then duplicates
            async with db.write("acme") as session, session.begin():
                result = await writes.record_events(session, records[:2], "acme")
            assert (result.accepted, result.duplicates) == expected
        async with db.read() as session:
            stored = await session.scalar(select(func.count()).select_from(UsageEvent).where(
                UsageEvent.account_id == "acme", UsageEvent.event_id.like("rb-%")))
        # The two written once each, the rolled-back three never.
        assert (stored, await day_requests()) == (2, before + 2)
    finally:
        await db.dispose()

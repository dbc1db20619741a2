"""Each route costs a fixed number of round trips to the database, however much data there is.

A round trip is one call on the driver (``db/reads.py`` counts them and
names their SQL). A ``/v1`` route takes at most two: the token, read with
its account's plan and hosting, then the route's own statement.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from meterql.app import create_app
from meterql.config import Settings
from meterql.db import usage, writes
from meterql.db.engine import Database
from meterql.db.reads import Compiled
from meterql.errors import DatabaseUnavailable
from meterql.records import (
    AccountRecord,
    InstanceRecord,
    ModelRecord,
    NodeRecord,
    SubscriptionRecord,
    TierRecord,
    TokenRecord,
    UsageEventRecord,
)
from tests.conftest import NOW, StatementCounter
from tests.golden import auth, seed

# Round trips per route: 1 for the token (with the account's plan and hosting),
# then the route's own statement, if it needs one.
COSTS = {
    "/v1/metrics/summary": 2,
    "/v1/metrics/instances": 2,
    "/v1/metrics/models": 2,
    "/v1/metrics/usage?days=90": 2,
    "/v1/billing": 2,  # the token with the plan and hosting, the period's usage and end users
    "/v1/billing/trial-status": 1,  # the plan came with the token
    "/v1/billing/usage": 2,
    "/v1/billing/usage/chart?days=366": 2,
    "/v1/billing/usage/chart?instance_id=inst-a": 2,  # no such instance: no row at all
}


async def _grow(db: Database, instances: int, models: int) -> None:
    """Add many instances and models, each with usage in every window."""
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [
            ModelRecord(model=f"model-{m}", provider="p", input_usd_per_mtok=Decimal(1),
                        output_usd_per_mtok=Decimal(2))
            for m in range(models)
        ])
        await writes.upsert_account(session, AccountRecord(
            account_id="acme",
            instances=[InstanceRecord(instance_id=f"bulk-{i}") for i in range(instances)],
        ))
        await writes.record_events(session, [
            UsageEventRecord(event_id=f"bulk-{i}-{d}", instance_id=f"bulk-{i}",
                        model=f"model-{i % models}", timestamp=NOW - timedelta(days=d),
                        tokens_in=1, tokens_out=1, end_user_id=f"user-{i}")
            for i in range(instances) for d in range(3)
        ], account_id="acme")


@pytest.mark.parametrize(("path", "statements"), COSTS.items(), ids=list(COSTS))
async def test_route_statement_count_is_constant(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, path: str, statements: int
) -> None:
    await seed(db)
    sql.reset()
    assert (await client.get(path, headers=auth())).status_code == 200
    small = sql.count
    await _grow(db, instances=60, models=25)
    sql.reset()
    response = await client.get(path, headers=auth())
    assert response.status_code == 200
    assert small == sql.count == statements, sql.statements


# Which statement reads the billing period: the totals alone (a row a day of the
# account's rollups) unless something asks for the split by instance.
PERIOD_READS = [
    ("/v1/billing", None, "totals"),
    ("/v1/billing/usage", None, "by instance"),
    ("/graphql", "{ billingUsage { totalTokens } }", "totals"),
    ("/graphql", "{ billingUsage { ...split } } fragment split on BillingUsage "
                 "{ byInstance { instanceId } }", "by instance"),
    ("/graphql", "{ billing { usage { totalCostUsd } } "
                 "billingUsage { byInstance { instanceId } } }", "by instance"),
]


@pytest.mark.parametrize(("path", "query", "read"), PERIOD_READS)
async def test_the_billing_period_is_split_by_instance_only_when_asked(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, path: str,
    query: str | None, read: str,
) -> None:
    await seed(db)
    sql.reset()
    if query is None:
        response = await client.get(path, headers=auth())
    else:
        response = await client.post(path, json={"query": query}, headers=auth())
        assert "errors" not in response.json()
    assert response.status_code == 200
    statements = {
        "totals": db.reads.compiled(usage._PERIOD_TOTALS).sql,
        "by instance": db.reads.compiled(usage._PERIODS[db.reads.dialect]).sql,
    }
    # The token, then exactly one read of the period: the expected one.
    assert sql.statements[1:] == [statements[read]], sql.statements


async def test_whole_billing_page_in_one_graphql_query(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter
) -> None:
    await seed(db)
    await _grow(db, instances=40, models=10)
    query = """{
      billing { plan { planName } usage { totalCostUsd } }
      trialStatus { trialDaysRemaining }
      billingUsage { byInstance { instanceId } }
      usageChart(days: 30) { points { requests } }
    }"""
    sql.reset()
    response = await client.post("/graphql", json={"query": query}, headers=auth())
    assert "errors" not in response.json()
    assert len(response.json()["data"]["billingUsage"]["byInstance"]) == 42
    # the token (with plan and hosting), the period's usage (billing and
    # billingUsage share it), the chart; the trial needs nothing more.
    assert sql.count == 3, sql.statements


# The viewer graph: a whole page of nested lists for a fixed number of statements.
VIEWER_PAGE = """{ viewer {
  plan { planName maxSitesPerNode }
  subscriptions { status trialDaysRemaining tier { tierId planName priceCents } }
  instances(first: 50) { totalCount edges { cursor node { id hostname status } }
                         pageInfo { hasNextPage endCursor } }
  models { name provider price { inputUsdPerMtok outputUsdPerMtok } }
  webhostNodes { id hostedSites siteLimit }
} }"""
# token (with the plan), subscriptions, their tiers (one loader batch), the
# instance page, its total count, models, nodes; each node's siteLimit is
# the plan's, which came with the token.
VIEWER_PAGE_STATEMENTS = 7


async def _graph_account(db: Database, account_id: str, instances: int) -> str:
    """An account with ``instances`` instances, 5 subscriptions, 10 used models, 3 nodes."""
    statuses = ["active", "trialing", "canceled", "expired", "past_due"]
    token = f"{account_id}-read-token-0001"
    async with db.write() as session, session.begin():
        await writes.upsert_tiers(session, [
            TierRecord(tier_id=f"tier-{n}", plan_name=f"Plan {n}", price_cents=100 * n,
                       max_sites_per_node=10 + n)
            for n in range(5)
        ])
        await writes.upsert_models(session, [
            ModelRecord(model=f"graph-model-{m}", provider="p",
                        input_usd_per_mtok=Decimal("0.01875"), output_usd_per_mtok=Decimal(2))
            for m in range(10)
        ])
        await writes.upsert_account(session, AccountRecord(
            account_id=account_id,
            tokens=[TokenRecord(token=token)],
            instances=[InstanceRecord(instance_id=f"i-{i:03}", status=("running", "stopped")[i % 2])
                       for i in range(instances)],
            subscriptions=[SubscriptionRecord(
                tier_id=f"tier-{n}", status=statuses[n],  # type: ignore[arg-type]
                current_period_start=NOW - timedelta(days=10 + n),
                current_period_end=NOW + timedelta(days=20 - n),
                trial_ends_at=NOW + timedelta(days=3) if statuses[n] == "trialing" else None)
                for n in range(5)],
            webhost_nodes=[NodeRecord(node_id=f"node-{n}", hosted_sites=n) for n in range(3)],
        ))
        await writes.record_events(session, [
            UsageEventRecord(event_id=f"g-{m}", instance_id="i-000", model=f"graph-model-{m}",
                             timestamp=NOW - timedelta(days=1), tokens_in=1, tokens_out=1)
            for m in range(10)
        ], account_id=account_id)
    return token


async def test_viewer_page_statement_count_is_constant(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter
) -> None:
    tokens = {n: await _graph_account(db, f"graph-{n}", instances=n) for n in (5, 50)}
    counts = {}
    for n, token in tokens.items():
        sql.reset()
        response = await client.post("/graphql", json={"query": VIEWER_PAGE},
                                     headers=auth(token))
        body = response.json()
        assert "errors" not in body, body
        viewer = body["data"]["viewer"]
        assert len(viewer["instances"]["edges"]) == viewer["instances"]["totalCount"] == n
        assert viewer["instances"]["pageInfo"]["hasNextPage"] is False
        assert len(viewer["subscriptions"]) == 5
        assert all(s["tier"]["tierId"] for s in viewer["subscriptions"])
        assert len(viewer["models"]) == 10
        assert viewer["models"][0]["price"]["inputUsdPerMtok"] == "0.01875"
        assert [node["siteLimit"] for node in viewer["webhostNodes"]] == [10] * 3  # tier-0: the latest live period
        counts[n] = sql.count
    assert counts == {5: VIEWER_PAGE_STATEMENTS, 50: VIEWER_PAGE_STATEMENTS}, sql.statements


async def test_the_documented_viewer_query_runs_at_its_documented_cost(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter
) -> None:
    """docs/graphql.md's example query: valid, and 8 round trips (the viewer's 7 + the catalogue)."""
    text = (Path(__file__).parent.parent / "docs" / "graphql.md").read_text("utf-8")
    query = text.split("```graphql\n", 1)[1].split("```", 1)[0]
    assert "plans" in query and "viewer" in query
    token = await _graph_account(db, "documented", instances=60)
    sql.reset()
    response = await client.post("/graphql", json={"query": query}, headers=auth(token))
    body = response.json()
    assert "errors" not in body, body
    assert len(body["data"]["viewer"]["instances"]["edges"]) == 30  # the running half
    assert sql.count == VIEWER_PAGE_STATEMENTS + 1, sql.statements



async def test_postgresql_planning_per_path(postgres_template: str) -> None:
    # The writes' pool plans each statement for its values (db/engine.py);
    # the read path, whose statements have one text each and bind their lists
    # as arrays, plans each once (a partitioned table's statements were
    # otherwise planned on every call), and never JIT-compiles: compiling
    # cost 57 ms of a 1.5 ms billing answer once an account had millions of
    # events (db/reads.py).
    from tests.conftest import _asyncpg_url, _postgres_url

    url = _postgres_url()
    assert url is not None
    db = Database.from_settings(Settings(database_url=_asyncpg_url(url, postgres_template)))
    try:
        async with db.engine.connect() as connection:
            mode = (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one()
        ((read_mode,),) = await db.reads.fetch(text("SHOW plan_cache_mode"), {})
        ((read_jit,),) = await db.reads.fetch(text("SHOW jit"), {})
    finally:
        await db.dispose()
    assert (mode, read_mode, read_jit) == ("force_custom_plan", "force_generic_plan", "off")


def _batch(prefix: str, size: int) -> list[UsageEventRecord]:
    """``size`` new events, each with its own instance, model-day and end user."""
    return [
        UsageEventRecord(event_id=f"{prefix}-{n}", instance_id=f"{prefix}-inst-{n % 50}",
                         model=f"model-{n % 20}", timestamp=NOW - timedelta(hours=n % 400),
                         tokens_in=n, tokens_out=1, end_user_id=f"{prefix}-user-{n}")
        for n in range(size)
    ]


async def test_batch_statement_count_is_constant(db: Database, sql: StatementCounter) -> None:
    """A live batch costs the same statements for 2 events or 1,000, however many
    instances, models, hours and end users they name: sums are grouped in one
    statement per rollup, keys and users looked up as one list each."""
    await seed(db)
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [
            ModelRecord(model=f"model-{m}", provider="p", input_usd_per_mtok=Decimal(1),
                        output_usd_per_mtok=Decimal(2))
            for m in range(20)
        ])
    counts = {}
    for size in (2, 1_000):
        sql.reset()
        async with db.write("acme") as session, session.begin():
            result = await writes.record_events(session, _batch(f"b{size}", size), "acme")
        assert result.accepted == size
        counts[size] = sql.count
    assert counts[2] == counts[1_000], sql.statements
    # The same again is all duplicates: a lookup or a claim that finds them
    # stored, and nothing written.
    sql.reset()
    async with db.write("acme") as session, session.begin():
        result = await writes.record_events(session, _batch("b1000", 1_000), "acme")
    assert (result.accepted, result.duplicates) == (0, 1_000)
    assert sql.count < counts[2], sql.statements


# --- thread hops on SQLite: reads within the budget run in the event loop's thread -----------


@asynccontextmanager
async def _seeded(settings: Settings, budget_ms: float) -> AsyncIterator[Database]:
    """The golden data in a database of its own, read with this inline budget."""
    db = Database.from_settings(settings.model_copy(update={"sqlite_inline_budget_ms": budget_ms}))
    try:
        await seed(db)
        yield db
    finally:
        await db.dispose()


@pytest.mark.parametrize(("path", "statements"), COSTS.items(), ids=list(COSTS))
@pytest.mark.parametrize(("budget_ms", "inline"), [(0, False), (60_000, True)],
                         ids=["no budget", "ample budget"])
async def test_thread_hops_per_route(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, path: str, statements: int,
    budget_ms: float, inline: bool,
) -> None:
    """SQLite: each statement within the budget runs in the event loop's thread, no hop.

    Without a budget every statement is a hop to a connection's thread; with
    an ample one, none is. PostgreSQL: every statement is a call on a pooled
    connection, whatever the budget.
    """
    async with _seeded(settings, budget_ms) as db:
        calls = []
        owner, name = ((aiosqlite.Connection, "execute_fetchall") if db.dialect == "sqlite"
                       else (asyncpg.Connection, "fetch"))
        driver_call = getattr(owner, name)

        async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(args[0])
            return await driver_call(self, *args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
        app = create_app(settings, database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://hops") as client:
            assert (await client.get(path, headers=auth())).status_code == 200
        hops = 0 if inline and db.dialect == "sqlite" else statements
        assert len(calls) == hops, calls


# A statement that counts to 200,000 one row at a time: some 20 ms of SQLite,
# far past any budget below; and one that answers before SQLite's progress
# handler is ever called.
_SLOW = text("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 200000)"
             " SELECT count(*) FROM c")
_QUICK = text("SELECT 41 + 1")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_statement_over_the_budget_is_answered_by_a_thread(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the budget, SQLite interrupts the statement and a connection's thread answers it.

    The statement then goes straight to the threads for its next calls (8,
    then 16 after its next overrun), while a quick one keeps running in the
    event loop's thread; the event loop's run of the slow one stops near the
    budget, far short of the statement's own time.
    """
    async with _seeded(settings, 2) as db:
        hops: list[str] = []
        driver_call = aiosqlite.Connection.execute_fetchall

        async def counted(self: Any, sql: str, *args: Any) -> Any:
            hops.append("slow" if "RECURSIVE" in sql else "quick")
            return await driver_call(self, sql, *args)

        monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", counted)
        assert await db.reads.fetch(_QUICK, {}) == [(42,)]
        assert hops == []
        assert await db.reads.fetch(_SLOW, {}) == [(200_000,)]
        assert (hops, db.reads.overruns) == (["slow"], 1)
        # The next 8 calls of the slow statement skip the event loop's thread.
        for _ in range(8):
            assert await db.reads.fetch(_SLOW, {}) == [(200_000,)]
            assert await db.reads.fetch(_QUICK, {}) == [(42,)]
        assert (hops, db.reads.overruns) == (["slow"] * 9, 1)
        # The 10th tries the event loop's thread again, overruns, and is skipped 16 times.
        inline_started = time.perf_counter()
        loop_blocked = 0.0

        async def tick() -> None:
            nonlocal loop_blocked
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0)
                loop_blocked = max(loop_blocked, time.perf_counter() - before)

        ticker = asyncio.ensure_future(tick())
        await asyncio.sleep(0)
        assert await db.reads.fetch(_SLOW, {}) == [(200_000,)]
        ticker.cancel()
        assert (hops, db.reads.overruns) == (["slow"] * 10, 2)
        for _ in range(16):
            assert await db.reads.fetch(_SLOW, {}) == [(200_000,)]
        assert (hops, db.reads.overruns) == (["slow"] * 26, 2)
        # Then it tries here again: its 27th call overruns once more.
        assert await db.reads.fetch(_SLOW, {}) == [(200_000,)]
        assert (hops, db.reads.overruns) == (["slow"] * 27, 3)
        # The statement itself takes far longer than the stall it caused here.
        slow_alone = (time.perf_counter() - inline_started) / 18
        assert loop_blocked < slow_alone, (loop_blocked, slow_alone)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_statement_that_waits_is_stopped_by_the_clock(settings: Settings) -> None:
    """Waiting (for the disk, say) uses no CPU time: the clock stops it at four budgets.

    The wait is a function that sleeps 30 ms on every 2,000th of 20,000 rows,
    registered on the connection of the event loop's thread: 0.3 s of
    waiting and a few ms of CPU, against a budget of 20 ms (80 ms of the
    clock). SQLite asks whether to stop every few hundred rows.
    """
    async with _seeded(settings, 20) as db:
        assert await db.reads.fetch(_QUICK, {}) == [(42,)]  # opens that connection
        inline = db.reads._driver._inline  # type: ignore[attr-defined]
        inline.create_function("wait_ms", 1, lambda ms: time.sleep(ms / 1000) or ms)
        waits = text("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c"
                     " WHERE n < 20000) SELECT count(*) FROM c"
                     " WHERE CASE WHEN n % 2000 = 0 THEN wait_ms(30) ELSE 1 END > 0")
        started = time.perf_counter()
        with pytest.raises(DatabaseUnavailable):
            # The threads' connections know no such function: they fail, so
            # the statement must have been stopped here and sent there.
            await db.reads.fetch(waits, {})
        assert db.reads.overruns == 1
        assert time.perf_counter() - started < 0.25


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_locked_database_never_stalls_the_event_loop(
    settings: Settings, database_url: str
) -> None:
    """A read that cannot run at once here takes the threads' way: it waits there, not here.

    Another process holds the file exclusively: the request still waits its
    busy timeout and answers 503, while the event loop goes on serving
    (a ticker measures its longest stall); released, the next request reads.
    """
    settings = settings.model_copy(update={"sqlite_busy_timeout_ms": 400})
    seeding = Database.from_settings(settings)
    await seed(seeding)
    await seeding.dispose()
    # Exclusive in WAL mode: no other connection of the file may be open yet.
    holder = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE accounts SET data_version = data_version")
    db = Database.from_settings(settings)
    try:
        app = create_app(settings, database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://locked") as client:
            path = "/v1/billing/trial-status"
            stalls: list[float] = []
            done = asyncio.Event()

            async def tick() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    await asyncio.sleep(0.005)
                    stalls.append(time.perf_counter() - started - 0.005)

            ticker = asyncio.ensure_future(tick())
            await asyncio.sleep(0)  # the ticker is asleep before the request starts
            try:
                started = time.perf_counter()
                locked = await client.get(path, headers=auth())
                waited = time.perf_counter() - started
            finally:
                done.set()
                await ticker
                holder.rollback()
                holder.close()
            assert locked.status_code == 503
            assert waited >= 0.4  # the busy timeout, waited in a thread
            assert max(stalls) < 0.2, max(stalls)  # not here
            assert (await client.get(path, headers=auth())).status_code == 200
    finally:
        holder.close()
        await db.dispose()


def _vm_steps(path: str, sql: str, arguments: Sequence[Any]) -> int:
    """SQLite virtual machine instructions one run of a statement takes."""
    connection = sqlite3.connect(path)
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection.set_progress_handler(step, 1)
    try:
        connection.execute(sql, arguments).fetchall()
    finally:
        connection.close()
    return steps


def _compiled(statement: Any, params: dict[str, Any]) -> tuple[str, Sequence[Any]]:
    from sqlalchemy.dialects.sqlite.aiosqlite import dialect

    compiled = Compiled.of(statement, dialect())
    return compiled.sql, compiled.arguments(params)


async def _other_accounts(db: Database, count: int) -> None:
    """``count`` more accounts like acme: a token, instances, a subscription, usage."""
    from tests.golden import TIERS

    async with db.write() as session, session.begin():
        for n in range(count):
            account = f"other-{n:03}"
            await writes.upsert_account(session, AccountRecord(
                account_id=account,
                tokens=[TokenRecord(token=f"other-token-{n:03}-0001")],
                instances=[InstanceRecord(instance_id=f"inst-{i}") for i in "ab"],
                subscriptions=[SubscriptionRecord(
                    tier_id=TIERS[n % len(TIERS)].tier_id, status="active",
                    current_period_start=NOW - timedelta(days=3),
                    current_period_end=NOW + timedelta(days=27))],
                webhost_nodes=[NodeRecord(node_id="node-1", hosted_sites=2)],
            ))
            await writes.record_events(session, [
                UsageEventRecord(event_id=f"{account}-{d}", instance_id=f"inst-{'ab'[d % 2]}",
                                 model="gpt-4o", timestamp=NOW - timedelta(days=d, minutes=7 * n),
                                 tokens_in=10, tokens_out=5, end_user_id=f"u{d}")
                for d in range(3)
            ], account_id=account)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_read_costs_the_same_whatever_other_accounts_hold(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement of every ``/v1`` route and page reads the account's rows only.

    Every statement the routes and the two pages run for acme, with its
    arguments, and the token's lookup and the account's state, are counted
    in SQLite's virtual machine instructions (which do not depend on the
    machine) before and after 300 more accounts with tokens, instances,
    subscriptions, nodes and usage on the same days: the same counts. A
    statement that walked another account's rows would grow: joined the
    other way, the token's lookup built every account's subscriptions before
    picking this one's, 25 ms a request at 20,000 accounts.
    """
    from importlib import resources

    from meterql.db import accounts
    from meterql.db.writes import hash_token
    from tests.golden import ACME_TOKEN

    async with _seeded(settings, 0) as db:
        ran: dict[str, list[Any]] = dict([
            _compiled(accounts._SESSION, {"token_hash": hash_token(ACME_TOKEN)}),
            _compiled(accounts._STATE, {"account": "acme"}),
        ])
        driver_call = aiosqlite.Connection.execute_fetchall

        async def recorded(self: Any, sql: str, arguments: Any = None) -> Any:
            ran.setdefault(sql, list(arguments or ()))
            return await driver_call(self, sql, arguments)

        monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", recorded)
        app = create_app(settings, database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://cost") as client:
            for path in COSTS:
                assert (await client.get(path, headers=auth())).status_code == 200, path
            for page in ("billing-page.graphql", "metrics-page.graphql"):
                document = (resources.files("meterql.queries") / page).read_text("utf-8")
                answer = await client.post("/graphql", json={"query": document},
                                           headers=auth())
                assert answer.status_code == 200 and "errors" not in answer.json(), page
        assert len(ran) >= 10
        path = make_url(database_url).database or ""
        before = {sql: _vm_steps(path, sql, arguments) for sql, arguments in ran.items()}
        await _other_accounts(db, 300)
        after = {sql: _vm_steps(path, sql, arguments) for sql, arguments in ran.items()}
        grown = {sql[:120]: (before[sql], after[sql]) for sql in ran if after[sql] != before[sql]}
        assert grown == {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_lookup_answers_from_another_event_loop_thread(db: Database) -> None:
    """The app's event loop may move to another thread (a test client's portal does)."""
    from meterql.db import accounts
    from tests.golden import ACME_TOKEN

    await seed(db)
    here = await accounts.session(db.reads, ACME_TOKEN)
    there = await asyncio.to_thread(asyncio.run, accounts.session(db.reads, ACME_TOKEN))
    assert here is not None and there is not None
    assert here.grant == there.grant


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_burst_keeps_its_connections_until_they_idle(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections beyond the pool size outlive the burst that made them, not their idleness.

    Dropped as soon as they came back, every burst past the pool size made
    PostgreSQL start new processes, and the worker prepare every statement
    again on them.
    """
    from meterql.db import reads

    monkeypatch.setattr(reads, "IDLE_LIFETIME_S", 0.3)
    db = Database.from_settings(settings.model_copy(update={"pool_size": 1, "max_overflow": 3}))
    burst = text("SELECT pg_backend_pid() FROM pg_sleep(0.05)")
    try:
        first = await asyncio.gather(*(db.reads.fetch(burst, {}) for _ in range(4)))
        assert db.reads.size == 4
        again = await asyncio.gather(*(db.reads.fetch(burst, {}) for _ in range(4)))
        # The same four server processes answered: nothing was closed and reopened.
        assert {rows[0][0] for rows in again} == {rows[0][0] for rows in first}
        assert db.reads.size == 4
        await asyncio.sleep(0.6)
        assert db.reads.size == 1  # idle past the lifetime: back to the pool size
        await db.reads.fetch(burst, {})
        assert db.reads.size == 1
    finally:
        await db.dispose()


def test_a_periods_parameters_are_made_and_converted_once_per_statement() -> None:
    from sqlalchemy.dialects.postgresql.asyncpg import dialect as postgresql
    from sqlalchemy.dialects.sqlite.aiosqlite import dialect as sqlite

    start, end = NOW - timedelta(days=3), NOW + timedelta(days=27)
    params = usage._period_params("acme", start, end)
    # Every request in the period gets the same read-only parameters.
    assert usage._period_params("acme", start, end) is params
    with pytest.raises(TypeError):
        params["account"] = "other"  # type: ignore[index]
    for dialect in (sqlite(), postgresql()):
        compiled = Compiled.of(usage._PERIOD_TOTALS, dialect)
        arguments = compiled.arguments(params)
        assert compiled.arguments(params) is arguments
        # A plain mapping is converted on every call, to the same values.
        plain = compiled.arguments(dict(params))
        assert plain == arguments and plain is not arguments
        assert compiled.arguments(dict(params)) is not plain
        # Another period, or another account, has its own.
        later = compiled.arguments(usage._period_params("acme", end, end + timedelta(days=30)))
        other = compiled.arguments(usage._period_params("other", start, end))
        assert later != arguments and other != arguments

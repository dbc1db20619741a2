"""Concurrent ingest: every event counted once, no "database is locked", no deadlock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, func, select, text

from meterql import importer
from meterql.app import create_app
from meterql.config import Settings
from meterql.db.engine import Database
from meterql.db.tables import UsageEvent
from tests.conftest import NOW
from tests.golden import ACME_INGEST_TOKEN, auth, seed

GATEWAYS = 8


def _batch(prefix: str, size: int, *, reverse: bool = False) -> list[dict[str, object]]:
    events = [
        {"event_id": f"{prefix}-{n:04d}", "instance_id": f"inst-{n % 5}", "model": "gpt-4o",
         "timestamp": "2026-11-20T10:00:00Z", "tokens_in": 10, "tokens_out": 10}
        for n in range(size)
    ]
    return events[::-1] if reverse else events


@pytest.fixture
async def gateways(settings: Settings, db: Database) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Eight apps, each with its own engine and pool, like eight gateway processes.

    Their timeouts are raised: these tests are about counting and deadlocks,
    and eight overlapping batches queue on each other's row locks longer than
    the 2 s default, and eight pools opening connections at once on two busy
    cores take longer than 1.5 s (either would answer 503, as it should).
    """
    await seed(db)
    settings = settings.model_copy(update={
        "db_statement_timeout_s": 60.0, "db_connect_timeout_s": 60.0,
        "db_pool_timeout_s": 60.0,
    })
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(GATEWAYS):
            database = Database.from_settings(settings)
            stack.push_async_callback(database.dispose)
            app = create_app(settings, database=database, clock=lambda: NOW)
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gateway")))
        yield clients


async def _count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(
            select(func.count()).select_from(UsageEvent).where(UsageEvent.account_id == "acme")
        ) or 0)


async def test_same_batch_from_eight_clients_counts_once(
    gateways: list[httpx.AsyncClient], db: Database
) -> None:
    before = await _count(db)
    batch = _batch("same", 200)
    responses = await asyncio.gather(*(
        client.post("/v1/usage/events", json=batch, headers=auth(ACME_INGEST_TOKEN))
        for client in gateways
    ))
    assert [r.status_code for r in responses] == [200] * GATEWAYS
    bodies = [r.json() for r in responses]
    assert sum(b["accepted"] for b in bodies) == 200
    assert sum(b["duplicates"] for b in bodies) == 200 * (GATEWAYS - 1)
    assert await _count(db) == before + 200


async def test_overlapping_batches_in_opposite_orders_do_not_deadlock(
    gateways: list[httpx.AsyncClient], db: Database
) -> None:
    # Register the instances first: otherwise every batch queues behind the
    # first one's new instance rows and the race never happens.
    # Large batches make PostgreSQL's lock race likely (it deadlocked here
    # before rows were ordered). SQLite runs writers one at a time, so there
    # the same size would only measure the busy timeout.
    size = 3000 if db.dialect == "postgresql" else 300
    await gateways[0].post("/v1/usage/events", json=_batch("warm-up", 5),
                           headers=auth(ACME_INGEST_TOKEN))
    before = await _count(db)
    responses = await asyncio.gather(*(
        client.post("/v1/usage/events", json=_batch("overlap", size, reverse=n % 2 == 1),
                    headers=auth(ACME_INGEST_TOKEN))
        for n, client in enumerate(gateways)
    ))
    assert [r.status_code for r in responses] == [200] * GATEWAYS
    assert sum(r.json()["accepted"] for r in responses) == size
    assert await _count(db) == before + size


async def test_parallel_ingest_while_reading(
    gateways: list[httpx.AsyncClient], db: Database
) -> None:
    """Writers with distinct batches and readers at once: all answer, nothing lost."""
    before = await _count(db)
    statuses: list[int] = []

    async def write(n: int, client: httpx.AsyncClient) -> None:
        for round_ in range(3):
            response = await client.post("/v1/usage/events", json=_batch(f"w{n}r{round_}", 50),
                                         headers=auth(ACME_INGEST_TOKEN))
            statuses.append(response.status_code)
            assert response.json() == {"accepted": 50, "duplicates": 0}

    async def read(client: httpx.AsyncClient) -> None:
        for path in ["/v1/metrics/summary", "/v1/billing", "/v1/metrics/instances"] * 3:
            response = await client.get(path, headers=auth())
            statuses.append(response.status_code)

    await asyncio.gather(*(write(n, c) for n, c in enumerate(gateways[:4])),
                         *(read(c) for c in gateways[4:]))
    assert set(statuses) == {200}
    assert await _count(db) == before + 4 * 3 * 50
    summary = (await gateways[0].get("/v1/metrics/summary?days=7", headers=auth())).json()
    assert summary["total_requests"] == 5 + 600  # golden's 5 in the window, plus ours


# BEGIN IMMEDIATE is SQLite's; PostgreSQL takes row locks instead.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_writes_take_the_lock_up_front(
    db: Database, client: httpx.AsyncClient
) -> None:
    assert db.dialect == "sqlite"
    await seed(db)
    begins: list[str] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    for engine in db.engines:
        event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        await client.post("/v1/usage/events", json=_batch("lock", 1),
                          headers=auth(ACME_INGEST_TOKEN))
        await client.get("/v1/metrics/summary", headers=auth())
    finally:
        for engine in db.engines:
            event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    # The ingest transaction; reads begin none (each statement reads its own
    # snapshot on a read-only connection of the read path, never the writer's).
    assert begins == ["BEGIN IMMEDIATE"]


async def test_end_users_seen_by_many_gateways_at_once_are_counted_once(
    gateways: list[httpx.AsyncClient], db: Database
) -> None:
    """Gateways adding the same new end users, and moving the same users' last-seen
    instants, leave every last-seen count exact (PostgreSQL: row locks and claims)."""
    from tests.test_rollups import assert_last_seen_counts_match

    def batch(gateway: int) -> list[dict[str, object]]:
        return [
            {"event_id": f"eu-{gateway}-{n}", "instance_id": f"inst-{n % 5}", "model": "gpt-4o",
             # Each gateway sees the same 150 users, at instants hours apart.
             "timestamp": f"2026-11-20T{(gateway + n) % 15:02d}:{n % 60:02d}:00Z",
             "tokens_in": 1, "tokens_out": 1, "end_user_id": f"shared-{n % 150}"}
            for n in range(300)
        ]

    for _ in range(2):  # the second round moves users that exist by then
        responses = await asyncio.gather(*(
            client.post("/v1/usage/events", json=batch(n), headers=auth(ACME_INGEST_TOKEN))
            for n, client in enumerate(gateways)
        ))
        assert [r.status_code for r in responses] == [200] * GATEWAYS
        await assert_last_seen_counts_match(db)
    usage = (await gateways[0].get("/v1/billing/usage", headers=auth())).json()
    start, end = (datetime.fromisoformat(usage[k]) for k in ("period_start", "period_end"))
    async with db.read() as connection:
        stored = await connection.scalar(
            select(func.count(func.distinct(UsageEvent.end_user_id))).where(
                UsageEvent.account_id == "acme", UsageEvent.end_user_id != "",
                UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end,
            )
        )
    assert usage["unique_end_users"] == stored >= 150


def _table_written(statement: str) -> str | None:
    """The table an INSERT, UPDATE, DELETE or locking SELECT writes or locks."""
    words = statement.split()
    if words[:2] == ["INSERT", "INTO"] or words[:2] == ["DELETE", "FROM"]:
        return words[2]
    if words[:1] == ["UPDATE"]:
        return words[1]
    if words[:1] == ["SELECT"] and "FOR UPDATE" in statement:
        return words[words.index("FROM") + 1]
    if words[:1] == ["WITH"]:
        return words[words.index("INTO") + 1]
    return None


ROLLUP_TABLES = {"usage_days", "usage_instance_days", "usage_instance_hours", "usage_model_days",
                 "usage_instance_model_hours", "usage_quarter_hours", "usage_model_hours"}
END_USER_TABLES = {"end_users", "end_users_last_seen_days", "end_users_last_seen_hours"}


async def test_every_writer_takes_end_users_before_the_rollups(
    db: Database, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Live batches and imports write the tables in one order, the rollups last.

    One order keeps concurrent writers from deadlocking; the rollups last
    keeps the rows every batch of an account shares held for the shortest
    time (the account's next batch waits for them).
    """
    await seed(db)
    written: list[str] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        table = _table_written(" ".join(statement.split()))
        if table in ROLLUP_TABLES or table in END_USER_TABLES:
            written.append(table)

    def rollups_come_last() -> None:
        first_rollup = min(n for n, t in enumerate(written) if t in ROLLUP_TABLES)
        last_end_user = max(n for n, t in enumerate(written) if t in END_USER_TABLES)
        assert last_end_user < first_rollup, written
        assert set(written[first_rollup:]) == ROLLUP_TABLES

    events = [{**e, "end_user_id": f"order-{n % 3}"} for n, e in enumerate(_batch("order", 9))]
    file = tmp_path / "import.json"
    file.write_text(json.dumps({"usage_events": [
        {**e, "event_id": f"file-{e['event_id']}", "account_id": "acme",
         "end_user_id": f"file-{e['end_user_id']}"} for e in events]}))
    for engine in db.engines:
        event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        response = await client.post("/v1/usage/events", json=events,
                                     headers=auth(ACME_INGEST_TOKEN))
        assert response.json() == {"accepted": 9, "duplicates": 0}
        rollups_come_last()
        written.clear()
        report = await importer.load(db, file)
        assert report.events_accepted == 9
        rollups_come_last()
    finally:
        for engine in db.engines:
            event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_end_user_seen_later_already_is_neither_locked_nor_written(
    db: Database, client: httpx.AsyncClient
) -> None:
    """A batch locks and moves only the end users whose stored instant is earlier.

    Most end users of a busy account were seen later already by the time a
    batch reaches them; locking each one anyway is a write per user, and
    the account's batches would queue on them.
    """
    await seed(db)

    def one(event_id: str, user: str, timestamp: str) -> dict[str, object]:
        return {"event_id": event_id, "instance_id": "inst-a", "model": "gpt-4o",
                "timestamp": timestamp, "tokens_in": 1, "tokens_out": 1, "end_user_id": user}

    async def versions() -> dict[str, tuple[str, str, datetime]]:
        async with db.write() as session:
            rows = await session.execute(text(
                "SELECT end_user_id, xmin::text, xmax::text, last_seen_at FROM end_users "
                "WHERE account_id = 'acme' AND end_user_id LIKE 'seen-%'"))
            return {user: (xmin, xmax, seen) for user, xmin, xmax, seen in rows}

    async def send(*events: dict[str, object]) -> None:
        response = await client.post("/v1/usage/events", json=list(events),
                                     headers=auth(ACME_INGEST_TOKEN))
        assert response.status_code == 200, response.text

    await send(one("s-1", "seen-later", "2026-11-20T12:00:00Z"),
               one("s-2", "seen-earlier", "2026-11-20T09:00:00Z"))
    before = await versions()
    await send(one("s-3", "seen-later", "2026-11-20T11:00:00Z"),
               one("s-4", "seen-earlier", "2026-11-20T10:00:00Z"),
               one("s-5", "seen-new", "2026-11-20T08:00:00Z"))
    after = await versions()
    assert after["seen-later"] == before["seen-later"]  # same version, never locked
    assert after["seen-later"][1] == "0"
    assert after["seen-earlier"][0] != before["seen-earlier"][0]
    assert after["seen-earlier"][2] == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert after["seen-new"][2] == datetime(2026, 11, 20, 8, tzinfo=UTC)
    from tests.test_rollups import assert_last_seen_counts_match

    await assert_last_seen_counts_match(db)


async def test_one_process_queues_its_writers_in_order(
    settings: Settings, database_url: str
) -> None:
    """Many ingests at once in one process all succeed, SQLite's busy handler never waited on.

    With no busy timeout at all, any two write transactions of the process
    that overlapped would fail ("database is locked", a 503): they queue in
    the process instead, and take a connection only when it is their turn.
    """
    settings = settings.model_copy(update={"sqlite_busy_timeout_ms": 0,
                                           "db_statement_timeout_s": 60.0})
    db = Database.from_settings(settings)
    try:
        await seed(db)
        app = create_app(settings, database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://one") as client:
            answers = await asyncio.gather(*(
                client.post("/v1/usage/events", json=_batch(f"q{n}", 50),
                            headers=auth(ACME_INGEST_TOKEN))
                for n in range(24)
            ))
        assert [a.status_code for a in answers] == [200] * 24
        assert sum(a.json()["accepted"] for a in answers) == 24 * 50
        assert await _count(db) == 8 + 24 * 50  # the golden acme events (e1..e8) + these
        if db.dialect == "sqlite":
            assert db.engine.pool.checkedout() == 0
    finally:
        await db.dispose()


async def test_a_writer_that_waits_too_long_answers_503(settings: Settings) -> None:
    db = Database.from_settings(settings.model_copy(update={"db_concurrent_writes": 1,
                                                            "db_write_queue_timeout_s": 0.2}))
    try:
        await seed(db)
        app = create_app(settings, database=db, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://one") as client:
            async with db.write():  # someone else's long write transaction
                answer = await client.post("/v1/usage/events", json=_batch("late", 3),
                                           headers=auth(ACME_INGEST_TOKEN))
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "5"
            assert answer.json() == {"detail": "Too many writes queued; retry shortly"}
            again = await client.post("/v1/usage/events", json=_batch("late", 3),
                                      headers=auth(ACME_INGEST_TOKEN))
            assert again.json() == {"accepted": 3, "duplicates": 0}
    finally:
        await db.dispose()


async def test_writes_of_one_account_take_turns_in_a_process(db: Database) -> None:
    """Its batches would only queue on the account's rollup rows: they queue in the gateway."""
    order: list[str] = []

    async def write(account: str, tag: str, pause: float) -> None:
        async with db.write(account):
            order.append(f"{tag}+")
            await asyncio.sleep(pause)
            order.append(f"{tag}-")

    await asyncio.gather(write("acme", "a1", 0.05), write("acme", "a2", 0),
                         write("globex", "g", 0))
    assert order.index("a1-") < order.index("a2+")
    if db.dialect == "postgresql":  # several writers at once: another account goes by
        assert order.index("g-") < order.index("a1-")
    assert db._accounts._locks == {}  # nothing kept for accounts no longer writing

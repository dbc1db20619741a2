"""SQLite's writer: each live batch's transaction runs in one thread, as one call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Insert, event, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meterql.config import Settings
from meterql.db.engine import Database, create_writer
from meterql.db.tables import Account
from tests.golden import ACME_INGEST_TOKEN, auth, seed

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

WRITER = "meterql-sqlite-writer"


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WRITER]


@pytest.fixture
async def seeded(db: Database) -> AsyncIterator[Database]:
    await seed(db)
    yield db


def _new_account(account_id: str) -> Insert:
    return insert(Account).values(account_id=account_id, created_at=datetime(2026, 11, 1, tzinfo=UTC))


async def _accounts(db: Database) -> set[str]:
    async with db.read() as connection:
        return set(await connection.scalars(select(Account.account_id)))


@SQLITE
async def test_a_batch_is_written_start_to_end_in_the_writers_thread(
    seeded: Database, client: httpx.AsyncClient
) -> None:
    """Every statement of the batch, its transaction's BEGIN and COMMIT included, runs in
    the writer's thread (SQLAlchemy's code and ``sqlite3``'s alike), none in the request's."""
    ran: list[tuple[str, str]] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        ran.append((threading.current_thread().name, statement.split()[0]))

    def on_commit(_conn: object) -> None:
        ran.append((threading.current_thread().name, "COMMIT"))

    engine = seeded.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        response = await client.post("/v1/usage/events", headers=auth(ACME_INGEST_TOKEN), json=[
            {"event_id": f"w-{n}", "instance_id": "inst-1", "model": "gpt-4o",
             "timestamp": "2026-11-20T10:00:00Z", "tokens_in": 10, "tokens_out": 5}
            for n in range(3)])
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
    assert response.json() == {"accepted": 3, "duplicates": 0}
    assert ran[0] == (WRITER, "BEGIN") and ran[-1] == (WRITER, "COMMIT")
    assert len(ran) > 10  # keys, events, end users, rollups, latest days, version
    assert {thread for thread, _ in ran} == {WRITER}
    assert threading.current_thread().name != WRITER


@SQLITE
async def test_an_error_rolls_the_transaction_back_and_the_next_write_goes_on(
    seeded: Database
) -> None:
    async def duplicate(session: AsyncSession) -> None:
        await session.execute(_new_account("w-new"))
        await session.execute(_new_account("w-new"))

    with pytest.raises(IntegrityError):
        await seeded.run_write(duplicate)
    assert "w-new" not in await _accounts(seeded)

    async def count(session: AsyncSession) -> int:
        return int(await session.scalar(select(func.count()).select_from(Account)) or 0)

    assert await seeded.run_write(count) == len(await _accounts(seeded))
    assert seeded.write_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@SQLITE
async def test_a_write_cancelled_midway_is_rolled_back_and_frees_the_writer(
    seeded: Database
) -> None:
    inserted = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def slow(session: AsyncSession) -> None:
        await session.execute(_new_account("w-slow"))
        loop.call_soon_threadsafe(inserted.set)
        await asyncio.sleep(30)  # the writer's own loop: only a cancellation ends it

    writing = asyncio.create_task(seeded.run_write(slow))
    await asyncio.wait_for(inserted.wait(), 10)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing

    async def noted(session: AsyncSession) -> str:
        await session.execute(_new_account("w-after"))
        return threading.current_thread().name

    # The next write waits for the cancelled one to roll back, then takes the writer.
    assert await asyncio.wait_for(seeded.run_write(noted), 10) == WRITER
    accounts = await _accounts(seeded)
    assert "w-slow" not in accounts and "w-after" in accounts


@SQLITE
async def test_the_writer_starts_with_the_first_write_and_ends_with_the_database(
    settings: Settings
) -> None:
    before = len(_writers())
    database = Database.from_settings(settings)
    assert database.writer is not None and database.engines[-1] is database.write_engine
    assert len(_writers()) == before  # no thread for a tool that never writes a batch

    async def one(session: AsyncSession) -> int:
        return int(await session.scalar(select(1)) or 0)

    assert await database.run_write(one) == 1
    assert len(_writers()) == before + 1
    await database.dispose()
    assert len(_writers()) == before


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_an_in_memory_database_has_no_writer(url: str) -> None:
    """Its one connection holds the data: another would see an empty database."""
    assert create_writer(Settings(database_url=url)) is None

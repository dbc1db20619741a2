"""Alembic migrations build exactly the tables the code declares, on both backends."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from meterql.config import Settings
from meterql.db.engine import Database
from meterql.db.migrate import alembic_config, is_current, upgrade
from meterql.db.tables import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    assert await is_current(db.engine)
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_upgrade_is_idempotent_and_downgrade_clears(db: Database) -> None:
    await upgrade(db.engine)  # already at head: nothing to do, no error
    async with db.engine.begin() as connection:
        await connection.run_sync(
            lambda sync: command.downgrade(alembic_config(sync), "base")
        )
    async with db.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}
    assert not await is_current(db.engine)
    await upgrade(db.engine)
    assert await is_current(db.engine)


# PostgreSQL's advisory lock is what is tested; SQLite serialises writers itself.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_upgrades_take_turns(settings: Settings) -> None:
    """Gateways starting together all migrate; none fails on a half-made schema."""
    import asyncio

    fresh = [Database.from_settings(settings) for _ in range(4)]
    try:
        async with fresh[0].engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.downgrade(alembic_config(sync), "base")
            )
        await asyncio.gather(*(upgrade(db.engine) for db in fresh))
        assert all([await is_current(db.engine) for db in fresh])
    finally:
        for db in fresh:
            await db.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_rollups_leave_room_for_their_updates(db: Database) -> None:
    """A fillfactor of 70 on every rollup and end-user table: their updates stay HOT."""
    from sqlalchemy import text

    from meterql.db import rollups

    async with db.engine.connect() as connection:
        options = dict((await connection.execute(text(
            "SELECT relname, reloptions FROM pg_class WHERE relkind = 'r'"))).all())
    for table in rollups.DERIVED_TABLES:
        assert options[table.name] == ["fillfactor=70"], table.name
    # Appended to, never updated: the events' months and their keys.
    assert options["event_keys"] is None
    assert all(options[name] is None for name in options if name.startswith("usage_events_"))

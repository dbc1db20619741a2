"""Alembic environment: always runs on a connection handed in by meterql.

``meterql.db.migrate`` opens the (async) engine and passes a sync-facing
connection through ``config.attributes``; that keeps one code path for the
CLI, the app and the tests, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from alembic import context

from meterql.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by meterql.db.migrate
    raise RuntimeError("run migrations through `meterql migrate`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

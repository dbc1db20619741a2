"""rollups and end users leave room on each page for their updates (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Every ingested batch adds to the same rollup rows. With a page's worth of
free space left by a fillfactor of 70, PostgreSQL writes each new version
beside the old on the same page and, no indexed column having changed,
touches no index (a HOT update): the dead versions are pruned as pages are
read, instead of piling up in the indexes until a vacuum. Only pages written
from now on get the room; VACUUM FULL (or the next ``meterql load``'s
rewrite of the rows it touches) spreads existing ones. SQLite has no such
setting: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# Fixed names, never input: the statements are written out.
TABLES = (
    'usage_days', 'usage_instance_days', 'usage_model_days', 'usage_instance_hours',
    'usage_instance_model_hours', 'usage_model_hours', 'usage_quarter_hours',
    'end_users', 'end_users_last_seen_days', 'end_users_last_seen_hours',
)


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} SET (fillfactor = 70)')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} RESET (fillfactor)')

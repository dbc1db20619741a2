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

# Fixed statements, written out: never assembled, not even from constants.
UPGRADE = (
    'ALTER TABLE usage_days SET (fillfactor = 70)',
    'ALTER TABLE usage_instance_days SET (fillfactor = 70)',
    'ALTER TABLE usage_model_days SET (fillfactor = 70)',
    'ALTER TABLE usage_instance_hours SET (fillfactor = 70)',
    'ALTER TABLE usage_instance_model_hours SET (fillfactor = 70)',
    'ALTER TABLE usage_model_hours SET (fillfactor = 70)',
    'ALTER TABLE usage_quarter_hours SET (fillfactor = 70)',
    'ALTER TABLE end_users SET (fillfactor = 70)',
    'ALTER TABLE end_users_last_seen_days SET (fillfactor = 70)',
    'ALTER TABLE end_users_last_seen_hours SET (fillfactor = 70)',
)
DOWNGRADE = (
    'ALTER TABLE usage_days RESET (fillfactor)',
    'ALTER TABLE usage_instance_days RESET (fillfactor)',
    'ALTER TABLE usage_model_days RESET (fillfactor)',
    'ALTER TABLE usage_instance_hours RESET (fillfactor)',
    'ALTER TABLE usage_instance_model_hours RESET (fillfactor)',
    'ALTER TABLE usage_model_hours RESET (fillfactor)',
    'ALTER TABLE usage_quarter_hours RESET (fillfactor)',
    'ALTER TABLE end_users RESET (fillfactor)',
    'ALTER TABLE end_users_last_seen_days RESET (fillfactor)',
    'ALTER TABLE end_users_last_seen_hours RESET (fillfactor)',
)


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for statement in DOWNGRADE:
        op.execute(statement)

"""usage rollups and end users, filled from the events already stored; one index fewer

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

NANOS_PER_USD = 1_000_000_000
MEASURES = ('requests', 'tokens_in', 'tokens_out', 'cost_usd', 'cost_nanos')


def _measures() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in MEASURES]


def _rollup(name: str, *keys: sa.Column[object]) -> sa.Table:
    return op.create_table(
        name,
        sa.Column('account_id', sa.String(length=200), nullable=False),
        *keys,
        *_measures(),
        sa.PrimaryKeyConstraint('account_id', *(k.name for k in keys), name=op.f(f'pk_{name}')),
        sqlite_with_rowid=False,
    )


def _last_seen_counts(name: str, bucket: sa.Column[object]) -> sa.Table:
    """How many end users were last seen in each bucket (a day or an hour)."""
    return op.create_table(
        name,
        sa.Column('account_id', sa.String(length=200), nullable=False),
        bucket,
        sa.Column('users', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', bucket.name, name=op.f(f'pk_{name}')),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    days = _rollup('usage_days', sa.Column('day', sa.Date(), nullable=False))
    instance_days = _rollup(
        'usage_instance_days',
        sa.Column('instance_id', sa.String(length=200), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
    )
    model_days = _rollup(
        'usage_model_days',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
    )
    instance_hours = _rollup(
        'usage_instance_hours',
        sa.Column('hour', sa.BigInteger(), nullable=False),
        sa.Column('instance_id', sa.String(length=200), nullable=False),
    )
    end_users = op.create_table(
        'end_users',
        sa.Column('account_id', sa.String(length=200), nullable=False),
        sa.Column('end_user_id', sa.String(length=200), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'end_user_id', name=op.f('pk_end_users')),
        sqlite_with_rowid=False,
    )
    op.create_index(
        'ix_end_users_account_last_seen', 'end_users', ['account_id', 'last_seen_at'], unique=False
    )
    seen_days = _last_seen_counts(
        'end_users_last_seen_days', sa.Column('day', sa.Date(), nullable=False)
    )
    seen_hours = _last_seen_counts(
        'end_users_last_seen_hours', sa.Column('hour', sa.BigInteger(), nullable=False)
    )
    _backfill(days, instance_days, model_days, instance_hours, end_users)
    _backfill_last_seen(end_users, seen_days, seen_hours)
    # Per-instance reads now come from the rollups: the index only slowed inserts.
    op.drop_index('ix_usage_events_account_instance_occurred', table_name='usage_events')


def _backfill(
    days: sa.Table,
    instance_days: sa.Table,
    model_days: sa.Table,
    instance_hours: sa.Table,
    end_users: sa.Table,
) -> None:
    """Sum the events already stored into the new tables (a no-op on a new database)."""
    events = sa.table(
        'usage_events',
        sa.column('account_id', sa.String), sa.column('instance_id', sa.String),
        sa.column('model', sa.String), sa.column('occurred_at', sa.DateTime(timezone=True)),
        sa.column('day', sa.Date), sa.column('tokens_in', sa.BigInteger),
        sa.column('tokens_out', sa.BigInteger), sa.column('cost_nanos', sa.BigInteger),
        sa.column('end_user_id', sa.String),
    )
    e = events.c
    hour = _epoch_hour(e.occurred_at)
    sums = [
        sa.func.count(),
        sa.func.sum(e.tokens_in),
        sa.func.sum(e.tokens_out),
        sa.func.sum(e.cost_nanos // NANOS_PER_USD),
        sa.func.sum(e.cost_nanos % NANOS_PER_USD),
    ]
    for table, keys in (
        (days, [e.account_id, e.day]),
        (instance_days, [e.account_id, e.instance_id, e.day]),
        (model_days, [e.account_id, e.day, e.model]),
        (instance_hours, [e.account_id, hour, e.instance_id]),
    ):
        names = [c.name for c in table.c]
        op.execute(
            table.insert().from_select(names, sa.select(*keys, *sums).group_by(*keys))
        )
    op.execute(
        end_users.insert().from_select(
            ['account_id', 'end_user_id', 'last_seen_at'],
            sa.select(e.account_id, e.end_user_id, sa.func.max(e.occurred_at))
            .where(e.end_user_id.is_not(None), e.end_user_id != '')
            .group_by(e.account_id, e.end_user_id),
        )
    )


def _epoch_hour(instant: sa.ColumnElement[object]) -> sa.ColumnElement[int]:
    if op.get_bind().dialect.name == 'postgresql':
        return sa.cast(sa.func.floor(sa.extract('epoch', instant) / 3600), sa.BigInteger)
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text; '%s' is its epoch second.
    return sa.cast(sa.func.strftime('%s', instant), sa.BigInteger) // 3600


def _utc_day(instant: sa.ColumnElement[object]) -> sa.ColumnElement[object]:
    if op.get_bind().dialect.name == 'postgresql':
        return sa.cast(sa.func.timezone('UTC', instant), sa.Date)
    return sa.func.date(instant)


def _backfill_last_seen(end_users: sa.Table, seen_days: sa.Table, seen_hours: sa.Table) -> None:
    """Count the end users just filled by the day and the hour they were last seen."""
    u = end_users.c
    for table, bucket in ((seen_days, _utc_day(u.last_seen_at)),
                          (seen_hours, _epoch_hour(u.last_seen_at))):
        op.execute(
            table.insert().from_select(
                [c.name for c in table.c],
                sa.select(u.account_id, bucket, sa.func.count()).group_by(u.account_id, bucket),
            )
        )


def downgrade() -> None:
    op.create_index(
        'ix_usage_events_account_instance_occurred', 'usage_events',
        ['account_id', 'instance_id', 'occurred_at'], unique=False,
    )
    op.drop_index('ix_end_users_account_last_seen', table_name='end_users')
    for name in ('end_users_last_seen_hours', 'end_users_last_seen_days',
                 'end_users', 'usage_instance_hours', 'usage_model_days',
                 'usage_instance_days', 'usage_days'):
        op.drop_table(name)

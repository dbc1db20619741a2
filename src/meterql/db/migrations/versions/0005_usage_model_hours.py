"""usage per model per UTC hour, filled from the events already stored

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

NANOS_PER_USD = 1_000_000_000
MEASURES = ('requests', 'tokens_in', 'tokens_out', 'cost_usd', 'cost_nanos')


def upgrade() -> None:
    hours = op.create_table(
        'usage_model_hours',
        sa.Column('account_id', sa.String(length=200), nullable=False),
        sa.Column('hour', sa.BigInteger(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in MEASURES],
        sa.PrimaryKeyConstraint('account_id', 'hour', 'model', name=op.f('pk_usage_model_hours')),
        sqlite_with_rowid=False,
    )
    # The events already stored, summed as ingest sums them (a no-op on a new
    # database): one INSERT ... SELECT ... GROUP BY.
    events = sa.table(
        'usage_events',
        sa.column('account_id', sa.String), sa.column('model', sa.String),
        sa.column('occurred_at', sa.DateTime(timezone=True)),
        sa.column('tokens_in', sa.BigInteger), sa.column('tokens_out', sa.BigInteger),
        sa.column('cost_nanos', sa.BigInteger),
    )
    e = events.c
    keys = [e.account_id, _epoch_hour(e.occurred_at), e.model]
    sums = [
        sa.func.count(),
        sa.func.sum(e.tokens_in),
        sa.func.sum(e.tokens_out),
        sa.func.sum(e.cost_nanos // NANOS_PER_USD),
        sa.func.sum(e.cost_nanos % NANOS_PER_USD),
    ]
    op.execute(
        hours.insert().from_select(
            [c.name for c in hours.c], sa.select(*keys, *sums).group_by(*keys)
        )
    )


def _epoch_hour(instant: sa.ColumnElement[object]) -> sa.ColumnElement[int]:
    """Hours since 1970 of a stored instant, floored (before 1970 too), as ingest computes it."""
    if op.get_bind().dialect.name == 'postgresql':
        return sa.cast(sa.func.floor(sa.extract('epoch', instant) / 3600), sa.BigInteger)
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text: its first 19 characters
    # are the whole second ('%s' would round the fraction), and SQL's integer
    # division truncates toward zero, hence the positive remainder.
    seconds = sa.cast(sa.func.strftime('%s', sa.func.substr(instant, 1, 19)), sa.BigInteger)
    return (seconds - (seconds % 3600 + 3600) % 3600) // 3600


def downgrade() -> None:
    op.drop_table('usage_model_hours')

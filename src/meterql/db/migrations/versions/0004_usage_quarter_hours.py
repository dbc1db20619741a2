"""usage per account per UTC quarter hour, filled from the events already stored

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

NANOS_PER_USD = 1_000_000_000
MEASURES = ('requests', 'tokens_in', 'tokens_out', 'cost_usd', 'cost_nanos')
QUARTER_SECONDS = 900


def upgrade() -> None:
    quarters = op.create_table(
        'usage_quarter_hours',
        sa.Column('account_id', sa.String(length=200), nullable=False),
        sa.Column('quarter', sa.BigInteger(), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in MEASURES],
        sa.PrimaryKeyConstraint('account_id', 'quarter', name=op.f('pk_usage_quarter_hours')),
        sqlite_with_rowid=False,
    )
    # The events already stored, summed as ingest sums them (a no-op on a new
    # database): one INSERT ... SELECT ... GROUP BY.
    events = sa.table(
        'usage_events',
        sa.column('account_id', sa.String), sa.column('occurred_at', sa.DateTime(timezone=True)),
        sa.column('tokens_in', sa.BigInteger), sa.column('tokens_out', sa.BigInteger),
        sa.column('cost_nanos', sa.BigInteger),
    )
    e = events.c
    keys = [e.account_id, _epoch_quarter(e.occurred_at)]
    sums = [
        sa.func.count(),
        sa.func.sum(e.tokens_in),
        sa.func.sum(e.tokens_out),
        sa.func.sum(e.cost_nanos // NANOS_PER_USD),
        sa.func.sum(e.cost_nanos % NANOS_PER_USD),
    ]
    op.execute(
        quarters.insert().from_select(
            [c.name for c in quarters.c], sa.select(*keys, *sums).group_by(*keys)
        )
    )


def _epoch_quarter(instant: sa.ColumnElement[object]) -> sa.ColumnElement[int]:
    """Quarter hours since 1970 of a stored instant, floored (before 1970 too), as ingest."""
    if op.get_bind().dialect.name == 'postgresql':
        return sa.cast(
            sa.func.floor(sa.extract('epoch', instant) / QUARTER_SECONDS), sa.BigInteger
        )
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text: its first 19 characters
    # are the whole second ('%s' would round the fraction), and SQL's integer
    # division truncates toward zero, hence the positive remainder.
    seconds = sa.cast(sa.func.strftime('%s', sa.func.substr(instant, 1, 19)), sa.BigInteger)
    return (seconds - (seconds % QUARTER_SECONDS + QUARTER_SECONDS) % QUARTER_SECONDS) // (
        QUARTER_SECONDS
    )


def downgrade() -> None:
    op.drop_table('usage_quarter_hours')

"""webhooks, and the outbox of their deliveries

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

``webhooks`` holds where an account's budget alerts are sent and the secret
each delivery is signed with. ``webhook_deliveries`` is the outbox: a row
per alert and webhook, written in the alert's own transaction, then sent by
one gateway at a time, at least once, with retries for 24 hours. Both are
tenant tables keyed by ``account_id`` first; the outbox's second index serves
the deliverer's question, what is due, across accounts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterql.db.types import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhooks',
        sa.Column('account_id', sa.String(200), nullable=False),
        sa.Column('webhook_id', sa.String(40), nullable=False),
        sa.Column('url', sa.String(2000), nullable=False),
        sa.Column('description', sa.String(200), nullable=False),
        sa.Column('secret', sa.String(100), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'],
                                name='fk_webhooks_account_id_accounts'),
        sa.PrimaryKeyConstraint('account_id', 'webhook_id', name='pk_webhooks'),
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('account_id', sa.String(200), nullable=False),
        sa.Column('delivery_id', sa.String(64), nullable=False),
        sa.Column('webhook_id', sa.String(40), nullable=False),
        sa.Column('alert_id', sa.String(64), nullable=False),
        sa.Column('payload', sa.String(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
        sa.Column('last_attempt_at', UTCDateTime(), nullable=True),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(300), nullable=True),
        sa.Column('retry_until', UTCDateTime(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'delivery_id', name='pk_webhook_deliveries'),
        sqlite_with_rowid=False,
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries',
                    ['status', 'next_attempt_at'])


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhooks')

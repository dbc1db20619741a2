"""budgets and the alerts their thresholds record

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

``budgets`` holds each account's spending limits (of the account, one
instance or one model; in USD, tokens or requests; over the billing period
or a calendar day, week or month in a time zone) with their thresholds.
``budget_alerts`` records each threshold a budget crossed in a period, once:
its unique index over (account, budget, revision, period, threshold) is
what keeps an alert from being recorded twice by two gateways. Both are
tenant tables keyed by ``account_id`` first. Alerts keep no foreign key to
their budget: they outlive a deleted budget, as history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterql.db.types import UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'budgets',
        sa.Column('account_id', sa.String(200), nullable=False),
        sa.Column('budget_id', sa.String(40), nullable=False),
        sa.Column('name', sa.String(200), nullable=False),
        sa.Column('scope', sa.String(16), nullable=False),
        sa.Column('scope_key', sa.String(200), nullable=False),
        sa.Column('measure', sa.String(16), nullable=False),
        sa.Column('limit_amount', sa.BigInteger(), nullable=False),
        sa.Column('period', sa.String(16), nullable=False),
        sa.Column('time_zone', sa.String(64), nullable=False),
        sa.Column('thresholds', sa.String(200), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('watched_from', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'],
                                name='fk_budgets_account_id_accounts'),
        sa.PrimaryKeyConstraint('account_id', 'budget_id', name='pk_budgets'),
    )
    op.create_table(
        'budget_alerts',
        sa.Column('account_id', sa.String(200), nullable=False),
        sa.Column('alert_id', sa.String(64), nullable=False),
        sa.Column('budget_id', sa.String(40), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('period_start', UTCDateTime(), nullable=False),
        sa.Column('period_end', UTCDateTime(), nullable=False),
        sa.Column('threshold', sa.Integer(), nullable=False),
        sa.Column('measure', sa.String(16), nullable=False),
        sa.Column('spent_amount', sa.BigInteger(), nullable=False),
        sa.Column('limit_amount', sa.BigInteger(), nullable=False),
        sa.Column('silent', sa.Boolean(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'alert_id', name='pk_budget_alerts'),
        sqlite_with_rowid=False,
    )
    op.create_index('uq_budget_alerts_once', 'budget_alerts',
                    ['account_id', 'budget_id', 'revision', 'period_start', 'threshold'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('uq_budget_alerts_once', table_name='budget_alerts')
    op.drop_table('budget_alerts')
    op.drop_table('budgets')

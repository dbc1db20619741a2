"""usage_model_days: an index by account, model and day

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Counting the models an account used in a window walked every day row of the
window and sorted their models on SQLite (a few hundred microseconds for 90
days of 20 models, on every summary). With this index SQLite probes each
model the account ever used instead: the next model after the last one, then
whether it has a row in the window. (PostgreSQL hashes the rows faster than
it starts those index scans, and keeps counting them.) Rows of this rollup
are inserted once per model and day and then only updated, so the index adds
next to nothing to a write.
"""

from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_usage_model_days_model', 'usage_model_days',
                    ['account_id', 'model', 'day'])


def downgrade() -> None:
    op.drop_index('ix_usage_model_days_model', table_name='usage_model_days')

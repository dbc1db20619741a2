"""accounts carry a data version, which every change to what their answers show replaces

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

``accounts.data_version`` is what an answer's ``ETag`` is made of (with the
account, the request and the clock): every write that can change one of the
account's answers (an accepted batch, an import, a token made or revoked,
a rollup rebuild) sets it to a new random value in its own
transaction, so a ``304 Not Modified`` can never hide a change, whichever
gateway answers. Random rather than counted: a database restored from a
backup cannot hand out a version it handed out before for other data.

Every accepted batch updates its account's row: on PostgreSQL the table
leaves room on each page, so those updates stay HOT (the column is not
indexed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both backends (SQLite has had DROP COLUMN since 3.35):
# batch mode would copy ``accounts`` to a new table, which the foreign keys
# of every tenant table refuse.
def upgrade() -> None:
    op.add_column(
        'accounts',
        sa.Column('data_version', sa.BigInteger(), nullable=False, server_default='0'))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE accounts SET (fillfactor = 70)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE accounts RESET (fillfactor)')
    op.drop_column('accounts', 'data_version')

"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_accounts'))
    )
    op.create_table('models',
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('provider', sa.String(length=100), nullable=False),
    sa.Column('input_nanos_per_mtok', sa.BigInteger(), nullable=False),
    sa.Column('output_nanos_per_mtok', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('model', name=op.f('pk_models'))
    )
    op.create_table('tiers',
    sa.Column('tier_id', sa.String(length=200), nullable=False),
    sa.Column('tier_slug', sa.String(length=100), nullable=False),
    sa.Column('product_name', sa.String(length=200), nullable=False),
    sa.Column('plan_name', sa.String(length=200), nullable=False),
    sa.Column('price_cents', sa.BigInteger(), nullable=False),
    sa.Column('billing_cycle', sa.String(length=50), nullable=False),
    sa.Column('api_call_limit', sa.BigInteger(), nullable=False),
    sa.Column('conversation_limit', sa.BigInteger(), nullable=False),
    sa.Column('instance_limit', sa.BigInteger(), nullable=False),
    sa.Column('max_sites_per_node', sa.BigInteger(), nullable=False),
    sa.Column('token_allowance', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tier_id', name=op.f('pk_tiers'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_api_tokens_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('instances',
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('instance_id', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=50), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_instances_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'instance_id', name=op.f('pk_instances'))
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('tier_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('current_period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trial_ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_subscriptions_account_id_accounts')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.tier_id'], name=op.f('fk_subscriptions_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('account_id', 'tier_id', name=op.f('uq_subscriptions_account_id_tier_id'))
    )
    op.create_table('webhost_nodes',
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('node_id', sa.String(length=200), nullable=False),
    sa.Column('hosted_sites', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_webhost_nodes_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'node_id', name=op.f('pk_webhost_nodes'))
    )
    op.create_table('usage_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('instance_id', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('tokens_in', sa.BigInteger(), nullable=False),
    sa.Column('tokens_out', sa.BigInteger(), nullable=False),
    sa.Column('end_user_id', sa.String(length=200), nullable=True),
    sa.Column('conversation_id', sa.String(length=200), nullable=True),
    sa.Column('cost_nanos', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id', 'instance_id'], ['instances.account_id', 'instances.instance_id'], name=op.f('fk_usage_events_account_id_instance_id_instances')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'], name=op.f('fk_usage_events_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_events')),
    sa.UniqueConstraint('account_id', 'event_id', name=op.f('uq_usage_events_account_id_event_id'))
    )
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.create_index('ix_usage_events_account_occurred', ['account_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_usage_events_account_instance_occurred', ['account_id', 'instance_id', 'occurred_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_events_account_instance_occurred')
        batch_op.drop_index('ix_usage_events_account_occurred')

    op.drop_table('usage_events')
    op.drop_table('webhost_nodes')
    op.drop_table('subscriptions')
    op.drop_table('instances')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_account_id'))

    op.drop_table('api_tokens')
    op.drop_table('tiers')
    op.drop_table('models')
    op.drop_table('accounts')

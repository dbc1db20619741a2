"""event keys in their own table; events keyed by account and instant, by month on PostgreSQL

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

- ``event_keys`` holds every accepted ``(account_id, event_id)``: the
  idempotency key outlives the raw event (retention drops old events; the
  rollups keep their sums), and on PostgreSQL a partitioned table cannot
  hold a unique index that leaves the partition key out.
- ``usage_events`` is keyed ``(account_id, occurred_at, event_id)``: one index,
  which is also the one its reads use (an account's events by time). Its
  surrogate ``id``, the unique index on the key and the two foreign keys go:
  every write registers the instances it names before its events, and
  PostgreSQL's per-row foreign-key checks were most of a bulk import's time.
  On PostgreSQL the table is partitioned by UTC month; two functions create
  the months a write needs and drop the months past a retention horizon.
- ``subscriptions`` is keyed ``(account_id, tier_id)``, as it was unique by.

Every tenant table's key now starts with ``account_id``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_EVENT_COLUMNS = (
    'account_id', 'occurred_at', 'event_id', 'instance_id', 'model', 'day', 'tokens_in',
    'tokens_out', 'end_user_id', 'conversation_id', 'cost_nanos',
)

_SUBSCRIPTION_COLUMNS = (
    'account_id', 'tier_id', 'status', 'current_period_start', 'current_period_end',
    'trial_ends_at',
)

# Fixed statements, written out: never assembled. The functions build their
# partitions' names with format(%I), PostgreSQL's own identifier quoting.
CREATE_MONTH_FUNCTION = r"""
CREATE FUNCTION meterql_event_month(instant timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    -- The first instant of the UTC month of an event. asyncpg sends the
    -- first and last representable instants as -infinity and infinity: they
    -- belong to the first and last months, whose partitions are open-ended.
    SELECT CASE
        WHEN instant < '0001-02-01 00:00+00' THEN '0001-01-01 00:00+00'::timestamptz
        WHEN instant >= '9999-12-01 00:00+00' THEN '9999-12-01 00:00+00'::timestamptz
        ELSE date_trunc('month', instant, 'UTC')
    END
$$
"""
CREATE_PARTITIONS_FUNCTION = r"""
CREATE FUNCTION meterql_event_partitions(instants timestamptz[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    months timestamptz[];
    month timestamptz;
    name text;
    created integer := 0;
BEGIN
    -- The UTC months of the instants given, each once.
    SELECT array_agg(DISTINCT meterql_event_month(i)) INTO months FROM unnest(instants) AS i;
    IF months IS NULL OR NOT EXISTS (
        SELECT 1 FROM unnest(months) AS m
        WHERE to_regclass('usage_events_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM')) IS NULL
    ) THEN
        RETURN 0;  -- every month there already: no lock taken
    END IF;
    -- One creator at a time, until its transaction ends; the others then
    -- find the month made. This lock (the one ATTACH takes) lets reads and
    -- writes of the events go on; taking it also makes this backend see the
    -- tables other creators made meanwhile (an advisory lock would not).
    LOCK TABLE usage_events IN SHARE UPDATE EXCLUSIVE MODE;
    FOREACH month IN ARRAY months LOOP
        name := 'usage_events_' || to_char(month AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(name) IS NULL THEN
            -- CREATE then ATTACH: attaching locks the parent against other
            -- schema changes only, so reads and writes go on meanwhile.
            EXECUTE format('CREATE TABLE %I (LIKE usage_events)', name);
            EXECUTE format(
                'ALTER TABLE usage_events ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                name,
                CASE WHEN month = '0001-01-01 00:00+00' THEN 'MINVALUE'
                     ELSE quote_literal(month::text) END,
                CASE WHEN month = '9999-12-01 00:00+00' THEN 'MAXVALUE'
                     ELSE quote_literal((((month AT TIME ZONE 'UTC') + interval '1 month')
                                         AT TIME ZONE 'UTC')::text) END);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$
"""
CREATE_DROP_FUNCTION = r"""
CREATE FUNCTION meterql_drop_event_partitions(horizon timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    -- Whole months that end at or before the horizon.
    FOR part IN
        SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_events'::regclass
          AND c.relname ~ '^usage_events_[0-9]{4}_[0-9]{2}$'
        ORDER BY c.relname
    LOOP
        IF (to_date(substr(part.relname, 14), 'YYYY_MM') + interval '1 month')
               AT TIME ZONE 'UTC' <= horizon THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$
"""
DROP_FUNCTIONS = (
    'DROP FUNCTION meterql_event_partitions(timestamptz[])',
    'DROP FUNCTION meterql_event_month(timestamptz)',
    'DROP FUNCTION meterql_drop_event_partitions(timestamptz)',
)
# On PostgreSQL an index name is unique in its schema: the table set aside
# keeps its primary key under another name while the new one is made.
SET_ASIDE_PRIMARY_KEY = 'ALTER INDEX pk_usage_events RENAME TO pk_usage_events_set_aside'
SET_ASIDE_SUBSCRIPTIONS_KEY = (
    'ALTER INDEX pk_subscriptions RENAME TO pk_subscriptions_set_aside'
)
PARTITIONS_FOR_COPIED_EVENTS = (
    'SELECT meterql_event_partitions(array_agg(DISTINCT meterql_event_month(occurred_at)))'
    ' FROM usage_events_set_aside'
)


def _postgresql() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def _copy(source: str, target: str, columns: tuple[str, ...], order: tuple[str, ...]) -> None:
    meta = sa.MetaData()
    src = sa.Table(source, meta, *(sa.Column(c) for c in columns))
    dst = sa.Table(target, meta, *(sa.Column(c) for c in columns))
    op.execute(
        dst.insert().from_select(
            list(columns),
            sa.select(*(src.c[c] for c in columns)).order_by(*(src.c[c] for c in order)),
        )
    )


def upgrade() -> None:
    op.create_table(
        'event_keys',
        sa.Column('account_id', sa.String(length=200), nullable=False),
        sa.Column('event_id', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'event_id', name=op.f('pk_event_keys')),
        sqlite_with_rowid=False,
    )
    _copy('usage_events', 'event_keys', ('account_id', 'event_id'), ('account_id', 'event_id'))

    with op.batch_alter_table('subscriptions', recreate='always') as batch:
        batch.drop_constraint('uq_subscriptions_account_id_tier_id', type_='unique')
        batch.drop_constraint('pk_subscriptions', type_='primary')
        batch.drop_column('id')
        batch.create_primary_key('pk_subscriptions', ['account_id', 'tier_id'])

    op.drop_index('ix_usage_events_account_occurred', table_name='usage_events')
    op.rename_table('usage_events', 'usage_events_set_aside')
    if _postgresql():
        op.execute(SET_ASIDE_PRIMARY_KEY)
    op.create_table(
        'usage_events',
        sa.Column('account_id', sa.String(length=200), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('event_id', sa.String(length=200), nullable=False),
        sa.Column('instance_id', sa.String(length=200), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('tokens_in', sa.BigInteger(), nullable=False),
        sa.Column('tokens_out', sa.BigInteger(), nullable=False),
        sa.Column('end_user_id', sa.String(length=200), nullable=True),
        sa.Column('conversation_id', sa.String(length=200), nullable=True),
        sa.Column('cost_nanos', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            'account_id', 'occurred_at', 'event_id', name=op.f('pk_usage_events')
        ),
        postgresql_partition_by='RANGE (occurred_at)',
        sqlite_with_rowid=False,
    )
    if _postgresql():
        op.execute(CREATE_MONTH_FUNCTION)
        op.execute(CREATE_PARTITIONS_FUNCTION)
        op.execute(CREATE_DROP_FUNCTION)
        op.execute(PARTITIONS_FOR_COPIED_EVENTS)
    _copy('usage_events_set_aside', 'usage_events', _EVENT_COLUMNS,
          ('account_id', 'occurred_at', 'event_id'))
    op.drop_table('usage_events_set_aside')


def downgrade() -> None:
    op.rename_table('usage_events', 'usage_events_set_aside')
    if _postgresql():
        op.execute(SET_ASIDE_PRIMARY_KEY)
    op.create_table(
        'usage_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=True, nullable=False),
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
        sa.ForeignKeyConstraint(
            ['account_id', 'instance_id'], ['instances.account_id', 'instances.instance_id'],
            name=op.f('fk_usage_events_account_id_instance_id_instances'),
        ),
        sa.ForeignKeyConstraint(
            ['account_id'], ['accounts.account_id'], name=op.f('fk_usage_events_account_id_accounts')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_events')),
        sa.UniqueConstraint(
            'account_id', 'event_id', name=op.f('uq_usage_events_account_id_event_id')
        ),
    )
    _copy('usage_events_set_aside', 'usage_events', _EVENT_COLUMNS,
          ('occurred_at', 'account_id', 'event_id'))
    op.drop_table('usage_events_set_aside')  # on PostgreSQL, its partitions with it
    op.create_index(
        'ix_usage_events_account_occurred', 'usage_events', ['account_id', 'occurred_at']
    )
    if _postgresql():
        for statement in DROP_FUNCTIONS:
            op.execute(statement)

    # The surrogate ids come back numbered anew (1, 2, ... in key order).
    op.rename_table('subscriptions', 'subscriptions_set_aside')
    if _postgresql():
        op.execute(SET_ASIDE_SUBSCRIPTIONS_KEY)
    op.create_table(
        'subscriptions',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=True, nullable=False),
        sa.Column('account_id', sa.String(length=200), nullable=False),
        sa.Column('tier_id', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('current_period_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('trial_ends_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.account_id'],
                                name=op.f('fk_subscriptions_account_id_accounts')),
        sa.ForeignKeyConstraint(['tier_id'], ['tiers.tier_id'],
                                name=op.f('fk_subscriptions_tier_id_tiers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
        sa.UniqueConstraint('account_id', 'tier_id',
                            name=op.f('uq_subscriptions_account_id_tier_id')),
    )
    _copy('subscriptions_set_aside', 'subscriptions', _SUBSCRIPTION_COLUMNS,
          ('account_id', 'tier_id'))
    op.drop_table('subscriptions_set_aside')

    op.drop_table('event_keys')

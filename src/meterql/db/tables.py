"""The tables. Amounts are integers: nano-USD for money, cents for plan prices.

``usage_events`` is the ledger. The ``usage_*`` rollups beside it are sums of
the ledger kept in the same transaction as every insert into it (see
``db/rollups.py``), so reads cost the same at a thousand events or a billion.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from meterql.db.types import BigIntPK, UTCDateTime

# Stable constraint names, so migrations can refer to them on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(200)


# On PostgreSQL, room on every page for a table's frequent updates, so that
# they stay HOT (no index touched, dead versions pruned as pages are read).
_ROOM_FOR_UPDATES = {"postgresql_with": {"fillfactor": 70}}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    __tablename__ = "accounts"
    # Every accepted batch updates its account's row: room for HOT updates
    # (migration 0008).
    __table_args__ = _ROOM_FOR_UPDATES

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Replaced (by a random value) by every write that can change one of the
    # account's answers: what their ETags are made of (``web/etags.py``).
    data_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ApiToken(Base):
    """A bearer token, stored as its SHA-256 hash: the clear text is never kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Comma-separated, sorted: "ingest,read".
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Instance(Base):
    __tablename__ = "instances"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.account_id"), primary_key=True
    )
    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(50), default="unknown")


class ModelPrice(Base):
    """An LLM and its current price. Events keep the cost computed at ingest."""

    __tablename__ = "models"

    model: Mapped[str] = mapped_column(ID, primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), default="")
    input_nanos_per_mtok: Mapped[int] = mapped_column(BigInteger)
    output_nanos_per_mtok: Mapped[int] = mapped_column(BigInteger)


class Tier(Base):
    __tablename__ = "tiers"

    tier_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tier_slug: Mapped[str] = mapped_column(String(100), default="")
    product_name: Mapped[str] = mapped_column(String(200), default="")
    plan_name: Mapped[str] = mapped_column(String(200), default="")
    price_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    billing_cycle: Mapped[str] = mapped_column(String(50), default="")
    api_call_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    conversation_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    instance_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    max_sites_per_node: Mapped[int] = mapped_column(BigInteger, default=0)
    token_allowance: Mapped[int] = mapped_column(BigInteger, default=0)


class Subscription(Base):
    """An account on a tier; one row per (account, tier), renewed in place."""

    __tablename__ = "subscriptions"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.account_id"), primary_key=True
    )
    tier_id: Mapped[str] = mapped_column(ForeignKey("tiers.tier_id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    trial_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhostNode(Base):
    __tablename__ = "webhost_nodes"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.account_id"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hosted_sites: Mapped[int] = mapped_column(BigInteger, default=0)


# Stored in key order on SQLite (no rowid beside the key).
_KEYED = {"sqlite_with_rowid": False}
# Partitioned by month on PostgreSQL: see db/partitions.py.
_MONTHLY = {"postgresql_partition_by": "RANGE (occurred_at)", "sqlite_with_rowid": False}


class EventKey(Base):
    """The idempotency key of every event ever accepted: ``(account_id, event_id)``, forever.

    Kept apart from the events themselves: on PostgreSQL ``usage_events`` is
    partitioned by month, and a unique index there must include the month;
    and raw events past the retention horizon are dropped, while the rollups
    keep their sums and this table their keys.
    """

    __tablename__ = "event_keys"
    __table_args__ = _KEYED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)


class UsageEvent(Base):
    """One model request, kept as it was accepted (its key is in ``event_keys``).

    ``day`` is the UTC date of ``occurred_at``, written at ingest so that daily
    grouping is a plain column on every backend. The key leads with the
    account, then the instant: reads take an account's events by time (at
    the ends of a billing period, for past periods' end users). On PostgreSQL
    the table is partitioned by month of ``occurred_at`` (``db/partitions.py``).
    No foreign keys: every write registers the instances it names first, and
    PostgreSQL's per-row checks of two keys were most of a bulk import's time.
    """

    __tablename__ = "usage_events"
    __table_args__ = _MONTHLY

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ID)
    model: Mapped[str] = mapped_column(ID)
    day: Mapped[date] = mapped_column(Date)
    tokens_in: Mapped[int] = mapped_column(BigInteger)
    tokens_out: Mapped[int] = mapped_column(BigInteger)
    end_user_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    cost_nanos: Mapped[int] = mapped_column(BigInteger)


class _Sums:
    """The measures every rollup keeps for its key.

    Cost is kept in two parts, whole dollars and the leftover nano-dollars of
    each event, summed separately: a SUM of nano-USD alone could pass 2**63
    (9.2 billion USD) on SQLite, which has no wider integer. The true cost is
    ``cost_usd * 10**9 + cost_nanos``.
    """

    requests: Mapped[int] = mapped_column(BigInteger)
    tokens_in: Mapped[int] = mapped_column(BigInteger)
    tokens_out: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[int] = mapped_column(BigInteger)
    cost_nanos: Mapped[int] = mapped_column(BigInteger)


# A rollup is read by its primary key's prefix; on SQLite a WITHOUT ROWID
# table stores rows in that order, so a range of days is one sequential read.
# Rollups: keyed rows, stored in key order on SQLite; on PostgreSQL, room on
# every page for the updates every batch makes (migration 0006).
_CLUSTERED = {"sqlite_with_rowid": False, "postgresql_with": {"fillfactor": 70}}


class UsageDay(_Sums, Base):
    """Usage of an account per UTC day: totals and daily series."""

    __tablename__ = "usage_days"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class UsageInstanceDay(_Sums, Base):
    """Usage per instance per UTC day: instance lists, per-instance charts.

    Keyed instance first: reads walk the account's instances and take each
    one's days of a window as one key range, with no sort and no scan of
    days outside the window.
    """

    __tablename__ = "usage_instance_days"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class UsageModelDay(_Sums, Base):
    """Usage per model per UTC day: the model breakdown."""

    __tablename__ = "usage_model_days"
    __table_args__ = (
        # A model used after a window's end has its days in the window probed
        # here (``usage.models_used``), one seek. A row is inserted once per
        # model and day and then only updated, so the index costs writes next
        # to nothing.
        Index("ix_usage_model_days_model", "account_id", "model", "day"),
        _CLUSTERED,
    )

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(ID, primary_key=True)


class UsageInstanceHour(_Sums, Base):
    """Usage per instance per UTC hour, for ranges that do not start or end at midnight.

    A billing period runs between arbitrary instants: its whole days come from
    ``usage_instance_days``, the whole hours at its ends from here, and only
    the minutes left over from the events themselves. ``hour`` counts hours
    since the Unix epoch, which is the same integer on every backend.
    """

    __tablename__ = "usage_instance_hours"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)


class UsageInstanceModelHour(_Sums, Base):
    """Usage per instance and model per UTC hour: series in any zone, grouped any way.

    The only rollup with both an instance and a model, so that a series can
    be grouped by one and filtered by the other, and the hours of a local
    day that are not in its UTC day (``db/series.py``) can be taken per
    model. Keyed hour first: a range of hours is one key range.
    """

    __tablename__ = "usage_instance_model_hours"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(ID, primary_key=True)


class UsageModelHour(_Sums, Base):
    """Usage per model per UTC hour: the hours of series grouped by model or provider.

    ``usage_instance_model_hours`` has these sums too, spread over every
    instance that used the model that hour: at 1M events in 90 days, about
    18 times the rows, and more as traffic grows. A series by model corrects
    each local day's edges from here instead (``db/series.py``), a few rows
    per model whatever the traffic. Keyed hour first, like the others.
    """

    __tablename__ = "usage_model_hours"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    model: Mapped[str] = mapped_column(ID, primary_key=True)


class UsageQuarterHour(_Sums, Base):
    """Usage of an account per UTC quarter hour: zone-exact series without the events.

    Every zone in use today is a whole number of quarter hours from UTC, so a
    local day or hour, in Kolkata (+5:30) and Kathmandu (+5:45) too, starts on
    a quarter. An ungrouped series then corrects its days at their edges from
    here (``db/series.py``) instead of reading the events of the half hour
    around each edge, whose number grows with the tenant's traffic. ``quarter``
    counts quarter hours since the Unix epoch, floored.
    """

    __tablename__ = "usage_quarter_hours"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    quarter: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class InstanceLastDay(Base):
    """Each instance's latest UTC day with usage (registered or not).

    Whether an instance had usage in a window that ends on or after that day
    is then one comparison: the day is in the window or it is not. Counting
    the instances with usage in the last 90 days took a probe of each one's
    days (about 15 microseconds each on PostgreSQL, for every summary and
    billing answer); only an instance with usage after the window's end
    (an event in the future) is still probed. The day only moves forward,
    once a day per instance, so the row is written once a day.
    """

    __tablename__ = "instance_last_days"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date)


class ModelLastDay(Base):
    """Each model's latest UTC day with usage in an account: as :class:`InstanceLastDay`."""

    __tablename__ = "model_last_days"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date)


class EndUser(Base):
    """Each end user of an account and the instant of their latest event.

    With no event at or after a range's end, the end users active in
    ``[start, end)`` are exactly those last seen in it. The two tables below
    count them by the day and the hour of that instant, so the count is a
    few bucket rows plus this table's index over the minutes left over,
    instead of a COUNT(DISTINCT) over the events.
    """

    __tablename__ = "end_users"
    __table_args__ = (
        Index("ix_end_users_account_last_seen", "account_id", "last_seen_at"),
        _CLUSTERED,
    )

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    end_user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EndUsersLastSeenDay(Base):
    """How many of an account's end users were last seen on each UTC day."""

    __tablename__ = "end_users_last_seen_days"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    users: Mapped[int] = mapped_column(BigInteger)


class EndUsersLastSeenHour(Base):
    """How many of an account's end users were last seen in each epoch hour."""

    __tablename__ = "end_users_last_seen_hours"
    __table_args__ = _CLUSTERED

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    users: Mapped[int] = mapped_column(BigInteger)


class Budget(Base):
    """A spending limit of an account, one of its instances or one of its models.

    ``limit_amount`` is in the budget's measure: nano-USD for ``COST``, a
    count for ``TOKENS`` and ``REQUESTS``. ``thresholds`` are whole
    percentages, comma-separated and ascending ("50,80,100"). ``revision``
    counts the edits of the limit or thresholds: an alert is recorded once
    per revision, period and threshold, so an edit re-arms what it should
    (``meterql.budgets``). ``watched_from`` is when the budget was made or last
    edited: periods that ended before it are not its business.
    """

    __tablename__ = "budgets"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.account_id"), primary_key=True
    )
    budget_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))  # ACCOUNT, INSTANCE, MODEL
    scope_key: Mapped[str] = mapped_column(ID)  # "" for ACCOUNT
    measure: Mapped[str] = mapped_column(String(16))  # COST, TOKENS, REQUESTS
    limit_amount: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(16))  # BILLING_PERIOD, DAY, WEEK, MONTH
    time_zone: Mapped[str] = mapped_column(String(64))
    thresholds: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    watched_from: Mapped[datetime] = mapped_column(UTCDateTime())


class BudgetAlert(Base):
    """A threshold a budget crossed in one of its periods: recorded once, in the batch that did it.

    ``alert_id`` sorts by time (``meterql.budgets.alert_id``), so the newest come
    first in key order. A *silent* row is a threshold that was already
    crossed when the budget was made or edited: it fires nothing and is not
    listed, it only keeps that threshold from firing later in that period.
    The unique index is what makes an alert exactly once, whichever gateway
    records it.
    """

    __tablename__ = "budget_alerts"
    __table_args__ = (
        Index("uq_budget_alerts_once", "account_id", "budget_id", "revision", "period_start",
              "threshold", unique=True),
        _KEYED,
    )

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    budget_id: Mapped[str] = mapped_column(String(40))
    revision: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    threshold: Mapped[int] = mapped_column(Integer)
    # The budget's measure, kept with the amounts: they outlive the budget.
    measure: Mapped[str] = mapped_column(String(16))
    spent_amount: Mapped[int] = mapped_column(BigInteger)
    limit_amount: Mapped[int] = mapped_column(BigInteger)
    silent: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Webhook(Base):
    """Where an account's alerts are sent, and the secret each delivery is signed with.

    The secret is kept as given out (a signature needs it); the API shows it
    once, when the webhook is made.
    """

    __tablename__ = "webhooks"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.account_id"), primary_key=True
    )
    webhook_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """The outbox: one row per alert and webhook, written in the alert's transaction.

    ``payload`` is the JSON body, fixed when the row is written, so every
    attempt sends the same bytes (a new signature each time). A row is
    *pending* until a receiver answers 2xx (*delivered*) or 24 hours of
    attempts pass (*failed*); ``next_attempt_at`` is when it is due, and a
    gateway that takes it moves it a lease ahead first, so that a gateway
    killed mid-delivery leaves it due again after the lease.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The deliverer's question, for every account at once: what is due.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        _KEYED,
    )

    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(40))
    alert_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Attempts stop here (24 hours after the alert, or after a redelivery asked).
    retry_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""Read queries over usage: totals, per instance, per model, per day, end users.

Every function here is one ``SELECT`` whatever the number of events,
instances, models or days, and returns plain dataclasses, never ORM rows.
They read the rollups (``db/rollups.py``), not the events: a ``days=N``
window is N day rows of a rollup; an arbitrary range such as a billing period
is its whole days, the whole hours at its ends, and only the minutes left
over from the events themselves. Sums come back as Python ints (PostgreSQL
answers ``SUM(bigint)`` as numeric, hence the ``int()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Date,
    Join,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    distinct,
    func,
    or_,
    select,
    true,
    union_all,
)

from meterql.db.reads import Reader
from meterql.db.tables import (
    EndUser,
    EndUsersLastSeenDay,
    EndUsersLastSeenHour,
    Instance,
    InstanceLastDay,
    ModelLastDay,
    ModelPrice,
    UsageDay,
    UsageEvent,
    UsageInstanceDay,
    UsageInstanceHour,
    UsageModelDay,
    UsageQuarterHour,
)
from meterql.money import NANOS_PER_USD
from meterql.windows import EPOCH, DayWindow, split_range

# Core columns, not ORM attributes: reads run on the driver (``db/reads.py``), and the
# statements below are built once, at import, with named parameters.
E = UsageEvent.__table__.c
DAYS = UsageDay.__table__.c
INSTANCE_DAYS = UsageInstanceDay.__table__.c
MODEL_DAYS = UsageModelDay.__table__.c
INSTANCE_HOURS = UsageInstanceHour.__table__.c
QUARTERS = UsageQuarterHour.__table__.c
END_USERS = EndUser.__table__.c
SEEN_DAYS = EndUsersLastSeenDay.__table__.c
SEEN_HOURS = EndUsersLastSeenHour.__table__.c
INSTANCES = Instance.__table__.c
MODELS = ModelPrice.__table__.c
INSTANCE_LAST_DAYS = InstanceLastDay.__table__.c
MODEL_LAST_DAYS = ModelLastDay.__table__.c

_ACCOUNT: BindParameter[str] = bindparam("account")
_FIRST: BindParameter[date] = bindparam("first")
_LAST: BindParameter[date] = bindparam("last")
_START: BindParameter[datetime] = bindparam("start")
_END: BindParameter[datetime] = bindparam("end")
# The UTC days of ``start`` and ``end``.
_START_DAY: BindParameter[date] = bindparam("start_day", type_=Date)
_END_DAY: BindParameter[date] = bindparam("end_day", type_=Date)


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_nanos: int = 0
    models: int = 0
    instances: int = 0


@dataclass(frozen=True, slots=True)
class InstanceTotals:
    instance_id: str
    hostname: str
    status: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class ModelTotals:
    model: str
    provider: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    day: date
    requests: int
    tokens_in: int
    tokens_out: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """Usage in an arbitrary ``[start, end)``: each instance with some, and the totals."""

    by_instance: list[InstanceTotals]
    totals: Totals
    end_users: int  # distinct non-empty end users


@dataclass(frozen=True, slots=True)
class PeriodTotals:
    """Usage in an arbitrary ``[start, end)``, without its split by instance."""

    totals: Totals  # ``instances``: those with usage in the period
    end_users: int  # distinct non-empty end users


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


def _cost(usd: Any, nanos: Any) -> int:
    return int(usd) * NANOS_PER_USD + int(nanos)


def _sums(
    rollup: Any,
) -> tuple[
    ColumnElement[Any], ColumnElement[Any], ColumnElement[Any], ColumnElement[Any],
    ColumnElement[Any],
]:
    """requests, tokens in, tokens out and the two cost parts, summed over rollup rows."""
    return (
        _sum(rollup.requests),
        _sum(rollup.tokens_in),
        _sum(rollup.tokens_out),
        _sum(rollup.cost_usd),
        _sum(rollup.cost_nanos),
    )


def _in_window(rollup: Any) -> tuple[ColumnElement[bool], ...]:
    """The account's rollup rows from ``:first`` to ``:last`` (days, inclusive)."""
    return (rollup.account_id == _ACCOUNT, rollup.day >= _FIRST, rollup.day <= _LAST)


def _window(account_id: str, window: DayWindow) -> dict[str, Any]:
    return {"account": account_id, "first": window.first_day, "last": window.last_day}


def _instance_rows(rows: Any) -> list[InstanceTotals]:
    """Rows of (id, hostname, status, sums...) ordered as the routes list instances.

    Ties are broken in code-point order, here rather than in SQL, whose
    collation differs between backends.
    """
    found = [
        InstanceTotals(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), _cost(r[6], r[7]))
        for r in rows
    ]
    found.sort(key=lambda r: (-r.requests, r.instance_id))
    return found


def _used_in_window(
    instance_id: Any, account: Any = _ACCOUNT, first: Any = _FIRST, last: Any = _LAST
) -> Select[Any]:
    """The instance's day rows in the window: one key range of ``usage_instance_days``."""
    D = INSTANCE_DAYS
    return select(D.requests).where(
        D.account_id == account, D.instance_id == instance_id, D.day >= first, D.day <= last
    )


def _per_registered_instance(*columns: Any, idle: bool) -> Select[Any]:
    """``columns`` of each instance of the account, with its sums over the window's days.

    Walks the account's instances and reads each one's key range (no sort,
    no day outside the window); ``idle`` keeps instances without usage.
    """
    D = INSTANCE_DAYS
    usage = Instance.__table__.join(
        UsageInstanceDay.__table__,
        (D.account_id == INSTANCES.account_id)
        & (D.instance_id == INSTANCES.instance_id)
        & (D.day >= _FIRST)
        & (D.day <= _LAST),
        isouter=idle,
    )
    return (
        select(*columns, *_sums(D))
        .select_from(usage)
        .where(INSTANCES.account_id == _ACCOUNT)
        .group_by(*columns)
    )


def models_used(account: Any, first: Any, last: Any) -> ScalarSelect[int]:
    """How many models ``account`` used from day ``first`` to ``last`` (inclusive).

    Read from each model's latest day (``model_last_days``): a model whose
    latest day is in the window was used in it, one whose latest day is
    before the window was not. Only a model used after the window's end
    (events in the future, or a window in the past) has its days probed.
    """
    L = MODEL_LAST_DAYS
    M = MODEL_DAYS
    probed = select(M.model).where(
        M.account_id == account, M.model == L.model, M.day >= first, M.day <= last
    )
    return (
        select(func.count())
        .select_from(ModelLastDay.__table__)
        .where(L.account_id == account, L.day >= first,
               or_(L.day <= last, probed.exists()))
        .scalar_subquery()
    )


def _with_last_day() -> Join:
    """The account's registered instances, each joined to its latest day with usage."""
    L = INSTANCE_LAST_DAYS
    return Instance.__table__.join(
        InstanceLastDay.__table__,
        (L.account_id == INSTANCES.account_id) & (L.instance_id == INSTANCES.instance_id),
    )


def instances_used(account: Any, first: Any, last: Any) -> ScalarSelect[int]:
    """How many of ``account``'s instances have usage from day ``first`` to ``last``.

    As :func:`models_used`, from each instance's latest day; an instance used
    after the window's end has its key range of days probed, which stops at
    its first row.
    """
    L = INSTANCE_LAST_DAYS
    return (
        select(func.count())
        .select_from(_with_last_day())
        .where(
            INSTANCES.account_id == account,
            L.day >= first,
            or_(L.day <= last,
                _used_in_window(INSTANCES.instance_id, account, first, last).exists()),
        )
        .scalar_subquery()
    )


_TOTALS = select(
    *_sums(DAYS),
    models_used(_ACCOUNT, _FIRST, _LAST),
    instances_used(_ACCOUNT, _FIRST, _LAST),
).where(*_in_window(DAYS))


async def totals(reader: Reader, account_id: str, window: DayWindow) -> Totals:
    """Totals of a ``days=N`` window, with the models and instances that had usage in it."""
    (row,) = await reader.fetch(_TOTALS, _window(account_id, window))
    return _totals_of(row[:5], models=row[5], instances=row[6])


def _totals_of(sums: Sequence[Any], *, models: Any = 0, instances: Any = 0) -> Totals:
    """``Totals`` from a row's five sums (``_sums``) and its counts."""
    requests, tokens_in, tokens_out, usd, nanos = sums
    return Totals(int(requests), int(tokens_in), int(tokens_out), _cost(usd, nanos),
                  int(models), int(instances))


def _each_instance_summed(*columns: Any, idle: bool) -> Select[Any]:
    """PostgreSQL: :func:`_per_registered_instance`, each instance's days summed on their own.

    The same key range per instance, but aggregated beside it (``LATERAL``)
    rather than joined and then grouped: PostgreSQL hashed the account's
    instances, joined the window's day rows to them and grouped the result
    by three text columns, about 4.6 of the statement's 6.0 ms under
    ``EXPLAIN ANALYZE`` at 1M events (4,500 day rows, 50 instances). An
    aggregate without ``GROUP BY`` gives one row even for an instance without
    usage in the window: zeros, as the outer join did, kept if ``idle``.
    SQLite walks the instances and their key ranges in order for the join
    already, and groups as it goes.
    """
    D = INSTANCE_DAYS
    sums = (
        select(func.count().label("days"), *_sums(D))
        .where(D.account_id == INSTANCES.account_id, D.instance_id == INSTANCES.instance_id,
               D.day >= _FIRST, D.day <= _LAST)
        .lateral("sums")
    )
    rows = (
        select(*columns, *list(sums.c)[1:])
        .select_from(Instance.__table__.join(sums, true()))
        .where(INSTANCES.account_id == _ACCOUNT)
    )
    return rows if idle else rows.where(sums.c.days > 0)


def _days_of_each_instance(dialect: str) -> Callable[..., Select[Any]]:
    """How ``dialect`` sums each registered instance's days of a window."""
    return _each_instance_summed if dialect == "postgresql" else _per_registered_instance


_DIALECTS = ("sqlite", "postgresql")
# By dialect name, as the routes list instances.
_PER_INSTANCES = {
    dialect: _days_of_each_instance(dialect)(
        INSTANCES.instance_id, INSTANCES.hostname, INSTANCES.status, idle=True
    )
    for dialect in _DIALECTS
}


async def per_instance(
    reader: Reader, account_id: str, window: DayWindow
) -> list[InstanceTotals]:
    """Every registered instance with its usage in the window, idle ones included."""
    rows = await reader.fetch(_PER_INSTANCES[reader.dialect], _window(account_id, window))
    return _instance_rows(rows)


def _per_model() -> Select[Any]:
    usage = (
        select(MODEL_DAYS.model.label("key"), *_sums(MODEL_DAYS))
        .where(*_in_window(MODEL_DAYS))
        .group_by(MODEL_DAYS.model)
        .subquery()
    )
    return select(
        usage.c.key, func.coalesce(MODELS.provider, ""), *list(usage.c)[1:]
    ).join(ModelPrice.__table__, MODELS.model == usage.c.key, isouter=True)


_PER_MODEL = _per_model()


async def per_model(
    reader: Reader, account_id: str, window: DayWindow
) -> list[ModelTotals]:
    """Usage per model used in the window; a model without a price has provider ``""``."""
    rows = [
        ModelTotals(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), _cost(r[5], r[6]))
        for r in await reader.fetch(_PER_MODEL, _window(account_id, window))
    ]
    rows.sort(key=lambda r: (-r.requests, r.model))
    return rows


def _daily(rollup: Any) -> Select[Any]:
    return select(
        rollup.day, rollup.requests, rollup.tokens_in, rollup.tokens_out, rollup.cost_usd,
        rollup.cost_nanos,
    ).where(*_in_window(rollup))


_PER_DAY = _daily(DAYS)
# The instance's days, from the instance itself: no row at all when the
# account has no such instance, one row without a day when it has no usage.
_PER_INSTANCE_DAY = (
    select(
        INSTANCE_DAYS.day, INSTANCE_DAYS.requests, INSTANCE_DAYS.tokens_in,
        INSTANCE_DAYS.tokens_out, INSTANCE_DAYS.cost_usd, INSTANCE_DAYS.cost_nanos,
    )
    .select_from(Instance.__table__.outerjoin(
        UsageInstanceDay.__table__,
        (INSTANCE_DAYS.account_id == INSTANCES.account_id)
        & (INSTANCE_DAYS.instance_id == INSTANCES.instance_id)
        & (INSTANCE_DAYS.day >= _FIRST)
        & (INSTANCE_DAYS.day <= _LAST),
    ))
    .where(INSTANCES.account_id == _ACCOUNT, INSTANCES.instance_id == bindparam("instance"))
)


def _days(rows: Sequence[Sequence[Any]], window: DayWindow) -> list[DayTotals]:
    found = {
        r[0]: DayTotals(r[0], int(r[1]), int(r[2]), int(r[3]), _cost(r[4], r[5]))
        for r in rows if r[0] is not None
    }
    return [found.get(day) or DayTotals(day, 0, 0, 0, 0) for day in window.dates()]


async def per_day(reader: Reader, account_id: str, window: DayWindow) -> list[DayTotals]:
    """One row per UTC day of the window, oldest first; days without usage are zeros."""
    return _days(await reader.fetch(_PER_DAY, _window(account_id, window)), window)


async def instance_per_day(
    reader: Reader, account_id: str, window: DayWindow, instance_id: str
) -> list[DayTotals] | None:
    """:func:`per_day` of one instance of the account; ``None`` if it has no such instance."""
    rows = await reader.fetch(
        _PER_INSTANCE_DAY, {**_window(account_id, window), "instance": instance_id}
    )
    return _days(rows, window) if rows else None


# split_range gives at most one span of days, two of hours and four of
# instants; the statement has a slot for each, and unused slots get empty
# spans, so that one statement, built and compiled once, serves every range.
_HOUR_SLOTS = 2
_INSTANT_SLOTS = 4
_NO_DAYS = (date(1, 1, 2), date(1, 1, 1))
_NO_HOURS = (0, 0)
_NO_INSTANTS = (EPOCH, EPOCH)


def _end_users() -> Any:
    """Distinct non-empty end users with an event in ``[:start, :end)``, exactly.

    While the account has no event at or after ``end`` (a current billing
    period), those are the end users last seen in the range: the counts of
    its whole days and edge hours, plus the end users last seen in its
    leftover minutes (an index range each): a few dozen rows whatever the
    number of users. A range in the past falls back to counting its events.
    Both backends evaluate only the branch the ``CASE`` takes.
    """
    latest = select(func.max(E.occurred_at)).where(E.account_id == _ACCOUNT).scalar_subquery()
    D, H = SEEN_DAYS, SEEN_HOURS
    last_seen: Any = (
        select(func.coalesce(func.sum(D.users), 0))
        .where(D.account_id == _ACCOUNT, D.day >= _FIRST, D.day <= _LAST)
        .scalar_subquery()
    )
    for n in range(_HOUR_SLOTS):
        last_seen = last_seen + (
            select(func.coalesce(func.sum(H.users), 0))
            .where(
                H.account_id == _ACCOUNT,
                H.hour >= bindparam(f"hour_from_{n}"),
                H.hour < bindparam(f"hour_to_{n}"),
            )
            .scalar_subquery()
        )
    for n in range(_INSTANT_SLOTS):
        last_seen = last_seen + (
            select(func.count())
            .select_from(EndUser.__table__)
            .where(
                END_USERS.account_id == _ACCOUNT,
                END_USERS.last_seen_at >= bindparam(f"from_{n}", type_=E.occurred_at.type),
                END_USERS.last_seen_at < bindparam(f"to_{n}", type_=E.occurred_at.type),
            )
            .scalar_subquery()
        )
    counted = (
        select(func.count(distinct(E.end_user_id)))
        .where(
            E.account_id == _ACCOUNT,
            E.occurred_at >= _START,
            E.occurred_at < _END,
            E.end_user_id != "",
        )
        .scalar_subquery()
    )
    return case((latest < _END, last_seen), else_=counted)


def _event_sums() -> tuple[ColumnElement[Any], ...]:
    """The five sums of events, as the rollups keep them (``_sums``)."""
    return (
        func.count(),
        _sum(E.tokens_in),
        _sum(E.tokens_out),
        # The rollups' two cost parts, taken event by event.
        _sum(E.cost_nanos // NANOS_PER_USD),
        _sum(E.cost_nanos % NANOS_PER_USD),
    )


def _instants(n: int) -> tuple[ColumnElement[bool], ...]:
    """The account's events in instant slot ``n``: ``[:from_n, :to_n)``."""
    return (
        E.account_id == _ACCOUNT,
        E.occurred_at >= bindparam(f"from_{n}", type_=E.occurred_at.type),
        E.occurred_at < bindparam(f"to_{n}", type_=E.occurred_at.type),
    )


def _instance_hours(n: int) -> tuple[ColumnElement[bool], ...]:
    """The account's instance-hour rows in hour slot ``n``: ``[:hour_from_n, :hour_to_n)``."""
    H = INSTANCE_HOURS
    return (
        H.account_id == _ACCOUNT,
        H.hour >= bindparam(f"hour_from_{n}"),
        H.hour < bindparam(f"hour_to_{n}"),
    )


def _period(dialect: str) -> Select[Any]:
    """Per instance: sums over ``[start, end)`` cut into days, hours and instants.

    One select per span, never an OR of spans, so that each is an index range;
    the whole days as ``dialect`` sums them best (:func:`_days_of_each_instance`).
    Each row also carries the period's end-user count (one uncorrelated
    subquery, computed once): a period without usage has neither rows nor
    end users, so nothing is lost when there are no rows.
    """
    H = INSTANCE_HOURS
    sources: list[Select[Any]] = [
        _days_of_each_instance(dialect)(INSTANCES.instance_id.label("key"), idle=False)
    ]
    for n in range(_HOUR_SLOTS):
        sources.append(
            select(H.instance_id.label("key"), *_sums(H))
            .where(*_instance_hours(n))
            .group_by(H.instance_id)
        )
    for n in range(_INSTANT_SLOTS):
        sources.append(
            select(E.instance_id.label("key"), *_event_sums())
            .where(*_instants(n))
            .group_by(E.instance_id)
        )
    combined = union_all(*sources).subquery()
    usage = (
        select(combined.c.key, *(_sum(c) for c in list(combined.c)[1:]))
        .group_by(combined.c.key)
        .subquery()
    )
    return (
        select(
            INSTANCES.instance_id,
            INSTANCES.hostname,
            INSTANCES.status,
            *list(usage.c)[1:],
            _end_users(),
        )
        .join(usage, INSTANCES.instance_id == usage.c.key)
        .where(INSTANCES.account_id == _ACCOUNT)
    )


# By dialect name.
_PERIODS = {dialect: _period(dialect) for dialect in _DIALECTS}


@lru_cache(maxsize=1_024)
def _period_params(account_id: str, start: datetime, end: datetime) -> Mapping[str, Any]:
    """A billing period's parameters, read-only: the same for every request in the
    period, so they are made and converted once (``Compiled.arguments``)."""
    parts = split_range(start, end)
    first, last = parts.days or _NO_DAYS
    params: dict[str, Any] = {
        "account": account_id, "start": start, "end": end, "first": first, "last": last,
        "start_day": start.astimezone(UTC).date(), "end_day": end.astimezone(UTC).date(),
    }
    hours = [*parts.hours, *[_NO_HOURS] * (_HOUR_SLOTS - len(parts.hours))]
    for n, (hour_from, hour_to) in enumerate(hours):
        params[f"hour_from_{n}"], params[f"hour_to_{n}"] = hour_from, hour_to
    instants = [*parts.instants, *[_NO_INSTANTS] * (_INSTANT_SLOTS - len(parts.instants))]
    for n, (instant_from, instant_to) in enumerate(instants):
        params[f"from_{n}"], params[f"to_{n}"] = instant_from, instant_to
    return MappingProxyType(params)


async def period_usage(
    reader: Reader, account_id: str, start: datetime, end: datetime
) -> PeriodUsage:
    """Usage in ``[start, end)``: each instance that had some, ordered as routes list them."""
    result = await reader.fetch(_PERIODS[reader.dialect], _period_params(account_id, start, end))
    rows = _instance_rows(result)
    return PeriodUsage(
        by_instance=rows,
        end_users=int(result[0][-1]) if result else 0,
        totals=Totals(
            requests=sum(r.requests for r in rows),
            tokens_in=sum(r.tokens_in for r in rows),
            tokens_out=sum(r.tokens_out for r in rows),
            cost_nanos=sum(r.cost_nanos for r in rows),
            instances=sum(1 for r in rows if r.requests),
        ),
    )


def _period_totals() -> Select[Any]:
    """The account's sums over ``[start, end)``, the instances with usage in it, its end users.

    The sums come from the account's own rollups: a whole day is one row of
    ``usage_days`` (not one per instance), an edge hour four quarter hours.
    The instances with usage are counted by probing each one's key ranges,
    which stops at its first row. What the billing route and the billing
    page show; :func:`period_usage` is the split by instance, for the routes
    that list it.
    """
    Q = QUARTERS
    H = INSTANCE_HOURS
    sources: list[Select[Any]] = [select(*_sums(DAYS)).where(*_in_window(DAYS))]
    used: list[Any] = [_used_in_window(INSTANCES.instance_id).exists()]
    for n in range(_HOUR_SLOTS):
        hour_from: BindParameter[int] = bindparam(f"hour_from_{n}")
        hour_to: BindParameter[int] = bindparam(f"hour_to_{n}")
        # Quarter hours of whole hours: ``[4 * from, 4 * to)``.
        sources.append(select(*_sums(Q)).where(
            Q.account_id == _ACCOUNT, Q.quarter >= hour_from * 4, Q.quarter < hour_to * 4,
        ))
        used.append(select(H.requests).where(
            *_instance_hours(n), H.instance_id == INSTANCES.instance_id,
        ).exists())
    edges = []
    for n in range(_INSTANT_SLOTS):
        sources.append(select(*_event_sums()).where(*_instants(n)))
        edges.append(select(E.instance_id).where(*_instants(n)))
    # The events of the leftover minutes are few: their instances, once.
    used.append(INSTANCES.instance_id.in_(union_all(*edges)))
    combined = union_all(*sources).subquery()
    # An instance's latest day strictly between the period's first and last
    # UTC days is a whole day in the period: it was used. One before the
    # first day was not. Only the rest (latest on the first day, or on or
    # after the last) are probed span by span.
    latest = INSTANCE_LAST_DAYS.day
    instances = (
        select(func.count())
        .select_from(_with_last_day())
        .where(
            INSTANCES.account_id == _ACCOUNT,
            latest >= _START_DAY,
            or_(and_(latest > _START_DAY, latest < _END_DAY), *used),
        )
        .scalar_subquery()
    )
    return select(*(_sum(column) for column in combined.c), instances, _end_users())


_PERIOD_TOTALS = _period_totals()


async def period_totals(
    reader: Reader, account_id: str, start: datetime, end: datetime
) -> PeriodTotals:
    """:func:`period_usage`'s totals and end users, without reading each instance's sums."""
    (row,) = await reader.fetch(_PERIOD_TOTALS, _period_params(account_id, start, end))
    return PeriodTotals(totals=_totals_of(row[:5], instances=row[5]), end_users=int(row[6]))

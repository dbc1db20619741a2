"""Usage per bucket of local time (``buckets.BucketPlan``), optionally per group: one SELECT.

The rollups are kept per UTC day and per UTC hour; a bucket of local time
rarely lines up with either. Rather than read every hour of a range (a
rollup row per hour and group: as many rows as events, almost, for a busy
tenant grouped by model), each bucket boundary ``b`` is given an *anchor*,
the UTC midnight nearest to it (for hourly buckets, the boundary itself),
and

    usage[b_i, b_i+1) = days[A_i, A_i+1) - C(b_i) + C(b_i+1),
    C(b) = usage[A, b) if b >= A else -usage[b, A),

where ``days`` comes from a day rollup and each correction ``C`` spans at
most twelve hours: whole hours from an hour rollup up to the whole hour
nearest to ``b``, and when ``b`` is not on the hour (Asia/Kolkata,
Asia/Kathmandu, Lord Howe) the minutes between that hour and ``b`` from the
events themselves, an index range of at most half an hour. A 90-day daily
series in Berlin reads 90 day rows and 91 hours, whatever the events.

An ungrouped, unfiltered series reads the account's quarter hours for its
corrections instead (every zone in use today is a whole number of quarter
hours from UTC): a few rows per edge and never an event, in Kolkata too.

Hourly buckets read the hour rollup grouped by hour (ungrouped: the quarter
hours, grouped into slots), or, grouped in a zone whose hours do not start
on UTC hours, the events of the range grouped in SQL by slots of the largest
length that divides every bucket (half or quarter hours): a scan of the
range's events, the one case that reads them all.

Everything is one statement (a ``UNION ALL`` of the parts, the spans passed
as ``VALUES``); Python only adds each row into its bucket: O(rows), and the
rows are O(buckets x groups). Sums are exact integers; cost comes back as
the rollups keep it, whole dollars and nano-dollars, and is combined last.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from math import gcd
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Date,
    FromClause,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    column,
    distinct,
    func,
    literal,
    null,
    select,
    union_all,
    values,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from meterql.buckets import BucketPlan, Granularity
from meterql.db.tables import (
    Instance,
    ModelPrice,
    UsageDay,
    UsageEvent,
    UsageInstanceDay,
    UsageInstanceHour,
    UsageInstanceModelHour,
    UsageModelDay,
    UsageModelHour,
    UsageQuarterHour,
)
from meterql.db.types import UTCDateTime
from meterql.money import NANOS_PER_USD
from meterql.windows import EPOCH

E = UsageEvent.__table__.c
MODELS = ModelPrice.__table__.c
INSTANCES = Instance.__table__.c

_DAY = 86_400
_HOUR = 3_600
_QUARTER = 900
_EPOCH_DAY = EPOCH.date()

# Row kinds of the union: a day of a day rollup, a slot (hour or shorter)
# counted from the coarse part's base, a boundary's correction from the hour
# rollup and from the events.
_DAY_ROW, _SLOT_ROW, _HOURS_ROW, _EVENTS_ROW, _QUARTERS_ROW = 0, 1, 2, 3, 4
QUARTERS = UsageQuarterHour.__table__


class GroupBy(enum.Enum):
    MODEL = "MODEL"
    INSTANCE = "INSTANCE"
    PROVIDER = "PROVIDER"


@dataclass(frozen=True, slots=True)
class Amounts:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_nanos: int = 0


@dataclass(frozen=True, slots=True)
class Series:
    """Per group key, one ``Amounts`` per bucket of the plan.

    ``keys`` are the groups with at least one request in the range, in
    code-point order (not SQL's: collations differ between backends). A
    provider-less (unpriced) model's provider is ``""``. Ungrouped, the one
    key is ``""``, present even when the range is empty.
    """

    keys: tuple[str, ...]
    values: dict[str, list[Amounts]]


@dataclass(frozen=True, slots=True)
class _Scope:
    """Which usage a call keeps, and the outer key it splits it by (``usage_series_by``)."""

    instance_ids: tuple[str, ...] | None
    models: tuple[str, ...] | None
    split_by: GroupBy | None = None


def _sums(rollup: Any) -> list[ColumnElement[Any]]:
    return [
        func.sum(rollup.requests),
        func.sum(rollup.tokens_in),
        func.sum(rollup.tokens_out),
        func.sum(rollup.cost_usd),
        func.sum(rollup.cost_nanos),
    ]


# The rollups' two cost parts, taken event by event.
_EVENT_SUMS: list[ColumnElement[Any]] = [
    func.count(),
    func.sum(E.tokens_in),
    func.sum(E.tokens_out),
    func.sum(E.cost_nanos // NANOS_PER_USD),
    func.sum(E.cost_nanos % NANOS_PER_USD),
]


def _group(source: Any, group_by: GroupBy | None) -> ColumnElement[Any]:
    if group_by is GroupBy.INSTANCE:
        key: ColumnElement[Any] = source.instance_id
        return key
    if group_by is GroupBy.MODEL:
        key = source.model
        return key
    if group_by is GroupBy.PROVIDER:
        # NULL for a model without a price: made "" when read. (A COALESCE
        # here would need the same bound "" in GROUP BY, which PostgreSQL
        # cannot tell is the same expression.)
        return MODELS.provider
    return literal("", String)


def _with_provider(base: FromClause, source: Any, group_by: GroupBy | None) -> FromClause:
    if group_by is GroupBy.PROVIDER:
        return base.outerjoin(ModelPrice.__table__, MODELS.model == source.model)
    return base


def _filtered(source: Any, scope: _Scope) -> list[ColumnElement[bool]]:
    where = []
    if scope.instance_ids is not None:
        where.append(source.instance_id.in_(scope.instance_ids))
    if scope.models is not None:
        where.append(source.model.in_(scope.models))
    return where


def _part(
    kind: int,
    index: ColumnElement[Any],
    day: ColumnElement[Any],
    source: Any,
    base: FromClause,
    sums: list[ColumnElement[Any]],
    where: list[ColumnElement[bool]],
    group_by: GroupBy | None,
    scope: _Scope,
    grouping: list[ColumnElement[Any]],
) -> Select[Any]:
    group = _group(source, group_by)
    split = _group(source, scope.split_by)
    return (
        select(literal(kind), index, day, split, group, *sums)
        .select_from(_with_provider(base, source, group_by))
        .where(*where, *_filtered(source, scope))
        .group_by(*grouping, *(
            [key for by, key in ((scope.split_by, split), (group_by, group)) if by is not None]
        ))
    )


def _tables(group_by: GroupBy | None, scope: _Scope) -> tuple[Any, Any]:
    """The day rollup (None if none has the columns needed) and the hour rollup to read."""
    needs = set()
    keys = (group_by, scope.split_by)
    if GroupBy.INSTANCE in keys or scope.instance_ids is not None:
        needs.add("instance")
    if GroupBy.MODEL in keys or GroupBy.PROVIDER in keys or scope.models is not None:
        needs.add("model")
    days: Any = {
        frozenset(): UsageDay.__table__,
        frozenset({"instance"}): UsageInstanceDay.__table__,
        frozenset({"model"}): UsageModelDay.__table__,
    }.get(frozenset(needs))
    hours: Any = {
        frozenset({"model"}): UsageModelHour.__table__,
        frozenset({"instance", "model"}): UsageInstanceModelHour.__table__,
    }.get(frozenset(needs), UsageInstanceHour.__table__)
    return days, hours


def _epoch_seconds(instant: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a stored instant (floored)."""
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", instant)), BigInteger)
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text; its first 19
    # characters are the whole second (see rollups._sqlite_epoch_hour).
    return cast(func.strftime("%s", func.substr(instant, 1, 19)), BigInteger)


def _anchor(bound: int) -> int:
    """The UTC midnight nearest to ``bound`` (epoch seconds), as seconds."""
    return (bound + _DAY // 2) // _DAY * _DAY


@dataclass
class _Query:
    """What one call reads, and how its rows map back to buckets."""

    parts: list[Select[Any]]
    anchors: list[int]  # bucket i's coarse part is [anchors[i], anchors[i+1])
    slot_base: int = 0
    slot_seconds: int = _HOUR
    # Per (row kind, boundary) of a correction span: +1 for usage[x, y) when
    # the span runs forward from the anchor towards the boundary, else -1.
    signs: dict[tuple[int, int], int] | None = None


def _hourly(
    plan: BucketPlan, account_id: str, group_by: GroupBy | None, scope: _Scope,
    dialect: str,
) -> _Query:
    bounds = list(plan.bounds)
    first, last = bounds[0], bounds[-1]
    _, hours = _tables(group_by, scope)
    slot = gcd(_HOUR, *(b - first for b in bounds))
    if _whole_account(group_by, scope) and all(b % _QUARTER == 0 for b in bounds):
        # The account's quarter hours: 4 rows an hour, whatever the instances,
        # and exact in every zone of today (offsets are whole quarters).
        q = QUARTERS.c
        index = ((q.quarter - _inline(first // _QUARTER)) // _inline(slot // _QUARTER)).label(
            "idx")
        part = _part(
            _SLOT_ROW, index, cast(null(), Date), q, QUARTERS, _sums(q),
            [q.account_id == account_id, q.quarter >= first // _QUARTER,
             q.quarter < last // _QUARTER], group_by, scope, [index],
        )
        return _Query([part], bounds, first, slot)
    if slot == _HOUR and first % _HOUR == 0:
        h = hours.c
        part = _part(
            _SLOT_ROW, (h.hour - first // _HOUR).label("idx"), cast(null(), Date), h, hours,
            _sums(h), [h.account_id == account_id, h.hour >= first // _HOUR,
                       h.hour < last // _HOUR], group_by, scope, [h.hour],
        )
        return _Query([part], bounds, first, _HOUR)
    # The zone's hours start off the UTC hour: every hour rollup row would be
    # split, so the range's events are grouped into slots instead.
    # The constants are written into the SQL, so that the expression grouped
    # by is the very one selected (PostgreSQL compares them as written).
    index = (
        (_epoch_seconds(E.occurred_at, dialect) - _inline(first)) // _inline(slot)
    ).label("idx")
    part = _part(
        _SLOT_ROW, index, cast(null(), Date), E, UsageEvent.__table__, _EVENT_SUMS,
        [E.account_id == account_id, E.occurred_at >= _utc(first), E.occurred_at < _utc(last)],
        group_by, scope, [index],
    )
    return _Query([part], bounds, first, slot)


def _slot_spans(
    kind: int, table: Any, slot: str, spans: list[tuple[int, int, int]], account_id: str,
    group_by: GroupBy | None, scope: _Scope,
) -> Select[Any]:
    """A boundary correction per span ``(boundary, first slot, end slot)`` of a slot rollup."""
    found = values(column("idx", Integer), column("lo", BigInteger), column("hi", BigInteger),
                   name=f"{slot}_spans").data(spans).cte()
    t = table.c
    return _part(
        kind, found.c.idx, cast(null(), Date), t,
        found.join(table, and_(t.account_id == account_id, t[slot] >= found.c.lo,
                               t[slot] < found.c.hi)),
        _sums(t), [], group_by, scope, [found.c.idx],
    )


def _whole_account(group_by: GroupBy | None, scope: _Scope) -> bool:
    """Whether the account's own rollups (no instance, no model) can answer."""
    return (group_by is None and scope.split_by is None and scope.instance_ids is None
            and scope.models is None)


def _inline(number: int) -> BindParameter[int]:
    return bindparam(None, number, type_=BigInteger, literal_execute=True)


def _utc(seconds: int) -> Any:
    return EPOCH + timedelta(seconds=seconds)


def _daily(
    plan: BucketPlan, account_id: str, group_by: GroupBy | None, scope: _Scope
) -> _Query:
    bounds = list(plan.bounds)
    anchors = [_anchor(b) for b in bounds]
    day_table, hours = _tables(group_by, scope)
    first_day = _EPOCH_DAY + timedelta(days=anchors[0] // _DAY)
    end_day = _EPOCH_DAY + timedelta(days=anchors[-1] // _DAY)
    parts: list[Select[Any]] = []
    if day_table is not None:
        d = day_table.c
        base: FromClause = day_table
        where = [d.account_id == account_id, d.day >= first_day, d.day < end_day]
        if day_table is UsageInstanceDay.__table__:
            # Walk the account's instances, one key range of days each (the
            # rollup is keyed instance first, see usage._per_registered_instance).
            base = Instance.__table__.join(
                day_table,
                and_(d.account_id == INSTANCES.account_id, d.instance_id == INSTANCES.instance_id,
                     d.day >= first_day, d.day < end_day),
            )
            where = [INSTANCES.account_id == account_id]
        parts.append(_part(_DAY_ROW, literal(0).label("idx"), d.day, d, base, _sums(d), where,
                           group_by, scope, [d.day]))
        slot_base = 0
    else:
        # No day rollup has both an instance and a model: whole hours instead.
        h = hours.c
        slot_base = anchors[0]
        parts.append(_part(
            _SLOT_ROW, (h.hour - anchors[0] // _HOUR).label("idx"), cast(null(), Date), h, hours,
            _sums(h), [h.account_id == account_id, h.hour >= anchors[0] // _HOUR,
                       h.hour < anchors[-1] // _HOUR], group_by, scope, [h.hour],
        ))
    hour_spans: list[tuple[int, int, int]] = []
    instant_spans: list[tuple[int, Any, Any]] = []
    quarter_spans: list[tuple[int, int, int]] = []
    signs: dict[tuple[int, int], int] = {}
    whole_account = _whole_account(group_by, scope)
    for n, (bound, anchor) in enumerate(zip(bounds, anchors, strict=True)):
        if whole_account and bound % _QUARTER == 0:
            # Ungrouped: C(b) from the account's quarter hours alone, at most
            # 48 rows, and no events even where b is at :30 or :45.
            if bound != anchor:
                low, high = sorted((bound, anchor))
                signs[(_QUARTERS_ROW, n)] = 1 if bound > anchor else -1
                quarter_spans.append((n, low // _QUARTER, high // _QUARTER))
            continue
        # C(b) = usage[A, R) + usage[R, b), signed, with R the whole hour
        # nearest to b: whole hours from the rollup, and at most half an hour
        # of events (a quarter in Kathmandu, where b is at :15).
        nearest = (bound + _HOUR // 2) // _HOUR * _HOUR
        if nearest != anchor:
            low, high = sorted((nearest, anchor))
            signs[(_HOURS_ROW, n)] = 1 if nearest > anchor else -1
            hour_spans.append((n, low // _HOUR, high // _HOUR))
        if bound != nearest:
            low, high = sorted((bound, nearest))
            signs[(_EVENTS_ROW, n)] = 1 if bound > nearest else -1
            instant_spans.append((n, _utc(low), _utc(high)))
    for kind, table, slot, slot_spans in ((_HOURS_ROW, hours, "hour", hour_spans),
                                           (_QUARTERS_ROW, QUARTERS, "quarter", quarter_spans)):
        if slot_spans:
            parts.append(_slot_spans(kind, table, slot, slot_spans, account_id, group_by, scope))
    if instant_spans:
        spans = values(column("idx", Integer), column("lo", UTCDateTime()),
                       column("hi", UTCDateTime()), name="instant_spans").data(
                           instant_spans).cte()
        parts.append(_part(
            _EVENTS_ROW, spans.c.idx, cast(null(), Date), E,
            spans.join(UsageEvent.__table__,
                       and_(E.account_id == account_id, E.occurred_at >= spans.c.lo,
                            E.occurred_at < spans.c.hi)),
            _EVENT_SUMS, [], group_by, scope, [spans.c.idx],
        ))
    return _Query(parts, anchors, slot_base, _HOUR, signs)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """How many instances and models have usage in a span of UTC days.

    An upper bound of the groups of any ``usage`` answer inside that span:
    grouped by instance, by model, or by provider (a model has one provider
    or none), before the answer itself is read (``meterql.budget``).
    """

    instances: int
    models: int

    def most(self, group_by: GroupBy | None) -> int:
        if group_by is None:
            return 1
        return self.instances if group_by is GroupBy.INSTANCE else self.models


_FIRST_DAY: BindParameter[date] = bindparam("first_day")
_LAST_DAY: BindParameter[date] = bindparam("last_day")
_ACCOUNT: BindParameter[str] = bindparam("account")
_INSTANCE_DAYS = UsageInstanceDay.__table__.c
_MODEL_DAYS = UsageModelDay.__table__.c
# Per registered instance one probe of its key range of days (the rollup is
# keyed instance first); the models' day rows of the span, a few per day.
_GROUP_COUNTS = select(
    select(func.count())
    .select_from(Instance.__table__)
    .where(
        INSTANCES.account_id == _ACCOUNT,
        select(_INSTANCE_DAYS.day).where(
            _INSTANCE_DAYS.account_id == _ACCOUNT,
            _INSTANCE_DAYS.instance_id == INSTANCES.instance_id,
            _INSTANCE_DAYS.day >= _FIRST_DAY,
            _INSTANCE_DAYS.day <= _LAST_DAY,
        ).exists(),
    )
    .scalar_subquery(),
    select(func.count(distinct(_MODEL_DAYS.model)))
    .where(_MODEL_DAYS.account_id == _ACCOUNT, _MODEL_DAYS.day >= _FIRST_DAY,
           _MODEL_DAYS.day <= _LAST_DAY)
    .scalar_subquery(),
)


def utc_days(plan: BucketPlan) -> tuple[date, date]:
    """The UTC days, first and last, that the plan's buckets touch."""
    first = _EPOCH_DAY + timedelta(days=plan.bounds[0] // _DAY)
    last = _EPOCH_DAY + timedelta(days=(plan.bounds[-1] - 1) // _DAY)
    return first, last


async def group_counts(
    connection: AsyncConnection, account_id: str, first_day: date, last_day: date
) -> GroupCounts:
    """Instances and models with usage on the UTC days ``first_day``..``last_day``."""
    row = (await connection.execute(
        _GROUP_COUNTS, {"account": account_id, "first_day": first_day, "last_day": last_day}
    )).one()
    return GroupCounts(instances=int(row[0]), models=int(row[1]))


async def usage_series(
    connection: AsyncConnection,
    account_id: str,
    plan: BucketPlan,
    group_by: GroupBy | None = None,
    *,
    instance_ids: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> Series:
    """Usage of each bucket of ``plan``, per group, in one statement.

    ``instance_ids`` / ``models`` keep only those instances' or models' usage.
    """
    scope = _Scope(_tuple(instance_ids), _tuple(models))
    cells = await _read(connection, account_id, plan, group_by, scope)
    return _series(cells.get("", {}), len(plan.buckets), group_by)


async def usage_series_by(
    connection: AsyncConnection,
    account_id: str,
    plan: BucketPlan,
    split_by: GroupBy,
    group_by: GroupBy | None = None,
    *,
    instance_ids: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> dict[str, Series]:
    """``usage_series`` of each instance (or model) apart, for all of them in one statement.

    For loaders that batch many nodes: ``split_by`` (``INSTANCE`` or
    ``MODEL``) is an outer key, and each of its values gets the ``Series``
    that ``usage_series`` would give filtered to it alone, grouped by
    ``group_by`` (which may be the same key, or another). Only values with
    a row in the range are in the answer; any other one's usage is zero.
    """
    if split_by is GroupBy.PROVIDER:
        raise ValueError("usage is split by instance or model")
    scope = _Scope(_tuple(instance_ids), _tuple(models), split_by)
    cells = await _read(connection, account_id, plan, group_by, scope)
    count = len(plan.buckets)
    return {key: _series(sums, count, group_by) for key, sums in cells.items()}


def _tuple(keys: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if keys is None else tuple(keys)


async def _read(
    connection: AsyncConnection,
    account_id: str,
    plan: BucketPlan,
    group_by: GroupBy | None,
    scope: _Scope,
) -> dict[str, dict[str, list[list[int]]]]:
    """Per split key ("" unsplit), per group key, the five sums of each bucket: one SELECT."""
    count = len(plan.buckets)
    cells: dict[str, dict[str, list[list[int]]]] = {}
    if (scope.instance_ids is not None and not scope.instance_ids) or (
        scope.models is not None and not scope.models
    ):
        return cells
    dialect = connection.dialect.name
    if plan.granularity is Granularity.HOUR:
        query = _hourly(plan, account_id, group_by, scope, dialect)
    else:
        query = _daily(plan, account_id, group_by, scope)
    statement = query.parts[0] if len(query.parts) == 1 else union_all(*query.parts)
    last = count - 1
    for kind, index, day, split, key, *row in await connection.execute(statement):
        sums = cells.setdefault(split or "", {})
        key = key or ""
        per_bucket = sums.get(key)
        if per_bucket is None:
            per_bucket = sums[key] = [[0, 0, 0, 0, 0] for _ in range(count)]
        amounts = [int(v or 0) for v in row]
        if kind in (_HOURS_ROW, _EVENTS_ROW, _QUARTERS_ROW):
            assert query.signs is not None
            sign = query.signs[(kind, index)]
            if index > 0:  # the end of the bucket before: + C(b)
                _add(per_bucket[index - 1], amounts, sign)
            if index <= last:  # the start of the bucket after: - C(b)
                _add(per_bucket[index], amounts, -sign)
            continue
        if kind == _DAY_ROW:
            start = (day - _EPOCH_DAY).days * _DAY
        else:
            start = query.slot_base + index * query.slot_seconds
        _add(per_bucket[bisect_right(query.anchors, start) - 1], amounts, 1)
    return cells


def no_usage(plan: BucketPlan, group_by: GroupBy | None) -> Series:
    """The answer for a range without usage: no groups, or one zero-filled ungrouped key."""
    return _series({}, len(plan.buckets), group_by)


def _add(target: list[int], amounts: list[int], sign: int) -> None:
    for n, amount in enumerate(amounts):
        target[n] += sign * amount


def _series(sums: dict[str, list[list[int]]], count: int, group_by: GroupBy | None) -> Series:
    found: dict[str, list[Amounts]] = {}
    for key, buckets in sums.items():
        amounts = [Amounts(r, i, o, usd * NANOS_PER_USD + nanos) for r, i, o, usd, nanos in buckets]
        # A group whose rows all cancel out (a day rollup row of hours that
        # belong to a bucket outside the range) had no usage in the range.
        if any(a.requests for a in amounts):
            found[key] = amounts
    if group_by is None:
        found.setdefault("", [Amounts() for _ in range(count)])
    keys = tuple(sorted(found))
    return Series(keys, {key: found[key] for key in keys})


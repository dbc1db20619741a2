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
Where every coarse part is one UTC day (daily buckets, except across a
clock change in a zone whose midnight is near noon UTC, like Auckland's),
the day rows are read as one range of the rollup's key and not summed in
SQL: each row is one day of one group already.

An ungrouped, unfiltered series reads the account's quarter hours for its
corrections instead (every zone in use today is a whole number of quarter
hours from UTC): a few rows per edge and never an event, in Kolkata too.

Hourly buckets read the hour rollup grouped by hour (ungrouped: the quarter
hours, grouped into slots), or, grouped in a zone whose hours do not start
on UTC hours, the events of the range grouped in SQL by slots of the largest
length that divides every bucket (half or quarter hours): a scan of the
range's events, the one case that reads them all.

Everything is one statement (a ``UNION ALL`` of the parts). Its text does
not depend on the range: there is one statement per *shape* (the dialect,
how the buckets are read, the grouping and the filters), built and compiled
once, and the range comes in as parameters, the corrections' spans as one
bound array each (``unnest`` on PostgreSQL, ``json_each`` on SQLite). On
PostgreSQL each span is read by a ``LATERAL`` subquery, one index range a
span, which the planner cannot turn into a scan of the account's hours.
Python only adds each row into its bucket: O(rows), and the rows are
O(buckets x groups). Sums are exact integers; cost comes back as the
rollups keep it, whole dollars and nano-dollars, and is combined last.
"""

from __future__ import annotations

import enum
import itertools
import json
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import cache
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
    func,
    literal,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY

from meterql.buckets import BucketPlan, Granularity
from meterql.db.dialect import in_list
from meterql.db.reads import Reader
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
from meterql.db.types import sqlite_instant
from meterql.db.usage import instances_used, models_used
from meterql.money import NANOS_PER_USD
from meterql.windows import EPOCH

E = UsageEvent.__table__.c
MODELS = ModelPrice.__table__.c
INSTANCES = Instance.__table__.c
QUARTERS = UsageQuarterHour.__table__

_DAY = 86_400
_HOUR = 3_600
_QUARTER = 900
_EPOCH_DAY = EPOCH.date()

# Kinds of rows: a bucket's coarse part, a slot (hour or shorter) counted from
# the coarse part's base, a boundary's correction from the hour rollup, from
# the events and from the quarter hours.
_BUCKET_ROW, _SLOT_ROW, _HOURS_ROW, _EVENTS_ROW, _QUARTERS_ROW = 0, 1, 2, 3, 4
_CORRECTIONS = (_HOURS_ROW, _EVENTS_ROW, _QUARTERS_ROW)
# A row's first column says what it is with one integer: a bucket's or a
# slot's index (0 or more), or a correction's code, ``_code(kind, position)``
# (below 0). A statement only returns the keys its shape groups by: every
# column is converted to a Python object row by row, and a constant kind and
# an empty key cost the 3,600 rows of a 90-day series by model 0.8 ms of
# SQLite's 6 (``sqlite3``, 1M events).
_CODE_STRIDE = 8


def _code(kind: int, position: int) -> int:
    """The first column of the correction of ``kind`` read over the span at ``position``."""
    return -kind - position * _CODE_STRIDE

_ACCOUNT: BindParameter[str] = bindparam("account")


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


class Mode(enum.Enum):
    """How a statement reads its buckets (see the module's docstring)."""

    DAYS = "days"  # day rollup rows, corrected at each edge
    HOURS = "hours"  # hour rollup rows, for hours that start on UTC hours
    QUARTERS = "quarters"  # the account's quarter hours, grouped into slots
    EVENTS = "events"  # the range's events, grouped into slots


@dataclass(frozen=True, slots=True)
class Shape:
    """Everything a statement's text depends on; never the range, never the ids."""

    dialect: str
    mode: Mode
    group_by: GroupBy | None = None
    # The outer key of ``usage_series_by`` (INSTANCE or MODEL), if any.
    split_by: GroupBy | None = None
    # Kept to a list of instances / of models (bound as one list each).
    by_instances: bool = False
    by_models: bool = False
    # Each bucket's coarse part is one UTC day (daily buckets, nearly always):
    # the day rollup's rows are read as they are, a range of its key, instead
    # of joined to the buckets' spans and summed per bucket.
    whole_days: bool = False

    @property
    def whole_account(self) -> bool:
        """Whether the account's own rollups (no instance, no model) can answer."""
        return (self.group_by is None and self.split_by is None and not self.by_instances
                and not self.by_models)

    @property
    def postgresql(self) -> bool:
        return self.dialect == "postgresql"


# --- the pieces of a statement ---------------------------------------------------------------


def _total(amount: Any) -> ColumnElement[int]:
    """A sum as a bigint, 0 over no rows: PostgreSQL answers ``SUM(bigint)`` as numeric
    (a Decimal to convert) and NULL over nothing; this way Python adds plain ints."""
    return cast(func.coalesce(func.sum(amount), 0), BigInteger)


def _sums(rollup: Any) -> list[ColumnElement[Any]]:
    return [_total(rollup.requests), _total(rollup.tokens_in), _total(rollup.tokens_out),
            _total(rollup.cost_usd), _total(rollup.cost_nanos)]


def _event_sums(events: Any) -> list[ColumnElement[Any]]:
    """The rollups' sums, taken event by event (cost in the rollups' two parts)."""
    return [
        func.count(),
        _total(events.tokens_in),
        _total(events.tokens_out),
        _total(events.cost_nanos // NANOS_PER_USD),
        _total(events.cost_nanos % NANOS_PER_USD),
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


def _keys(source: Any, shape: Shape) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The split key and the group key of a row of ``source``."""
    return _group(source, shape.split_by), _group(source, shape.group_by)


def _grouping(source: Any, shape: Shape) -> list[ColumnElement[Any]]:
    split, group = _keys(source, shape)
    return [key for by, key in ((shape.split_by, split), (shape.group_by, group))
            if by is not None]


def _with_provider(base: FromClause, source: Any, shape: Shape) -> FromClause:
    if shape.group_by is GroupBy.PROVIDER:
        return base.outerjoin(ModelPrice.__table__, MODELS.model == source.model)
    return base


def _filters(source: Any, shape: Shape) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if shape.by_instances:
        where.append(in_list(source.instance_id, "instance_ids"))
    if shape.by_models:
        where.append(in_list(source.model, "models"))
    return where


def _tables(shape: Shape) -> tuple[Any, Any]:
    """The day rollup (None if none has the columns needed) and the hour rollup to read."""
    needs = set()
    keys = (shape.group_by, shape.split_by)
    if GroupBy.INSTANCE in keys or shape.by_instances:
        needs.add("instance")
    if GroupBy.MODEL in keys or GroupBy.PROVIDER in keys or shape.by_models:
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


def _row(code: ColumnElement[Any], split: ColumnElement[Any], group: ColumnElement[Any],
         sums: Sequence[ColumnElement[Any]], shape: Shape) -> list[ColumnElement[Any]]:
    """The columns every part selects, in the union's order: the code, the keys
    the shape has, the five sums."""
    keys = [key for by, key in ((shape.split_by, split), (shape.group_by, group))
            if by is not None]
    return [code, *keys, *sums]


def _span_code(kind: int, spans: FromClause) -> ColumnElement[int]:
    """A span's row code: a bucket's is its position, a correction's ``_code``'s."""
    if kind == _BUCKET_ROW:
        index: ColumnElement[int] = spans.c.idx
        return index
    return literal(-kind, Integer) - spans.c.idx * _CODE_STRIDE


def _epoch_seconds(instant: ColumnElement[Any], shape: Shape) -> ColumnElement[int]:
    """Whole seconds since 1970 of a stored instant (floored)."""
    if shape.postgresql:
        return cast(func.floor(func.extract("epoch", instant)), BigInteger)
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' UTC text; its first 19
    # characters are the whole second. SQLite's date functions would round
    # the fraction to milliseconds, and .9999995 s up to the next second.
    return cast(func.strftime("%s", func.substr(instant, 1, 19)), BigInteger)


# What the bounds of a kind of span are: slot numbers (hours, quarter hours),
# UTC days, or instants (epoch seconds on PostgreSQL, stored text on SQLite).
_SLOT, _DAY_BOUND, _INSTANT = "slot", "day", "instant"


def _spans(name: str, bound: str, shape: Shape) -> FromClause:
    """The spans bound as ``name``: rows of (idx, lo, hi), ``lo`` included, ``hi`` not.

    ``idx`` is the span's position in its list: what a span stands for (its
    bucket, its boundary's correction) is the ``_Query``'s to say.
    """
    if shape.postgresql:
        kind: Any = Date if bound == _DAY_BOUND else BigInteger
        return func.unnest(
            bindparam(f"{name}_idx", type_=ARRAY(Integer)),
            bindparam(f"{name}_lo", type_=ARRAY(kind)),
            bindparam(f"{name}_hi", type_=ARRAY(kind)),
        ).table_valued(
            column("idx", Integer), column("lo", kind), column("hi", kind)
        ).render_derived(name=name)
    items = func.json_each(bindparam(name, type_=String)).table_valued("key", "value")
    # SQLite keeps days and instants as text that sorts as they do. The
    # array's own index is the position: grouped by it, SQLite compares an
    # integer it has rather than parsing one out of each joined row's JSON.
    kind = BigInteger if bound == _SLOT else String
    return select(
        type_coerce(items.c.key, Integer).label("idx"),
        type_coerce(func.json_extract(items.c.value, "$[0]"), kind).label("lo"),
        type_coerce(func.json_extract(items.c.value, "$[1]"), kind).label("hi"),
    ).subquery(name)


def _per_span(kind: int, name: str, bound: str, source: Any, table: FromClause,
              within: Any, sums: list[ColumnElement[Any]], shape: Shape) -> Select[Any]:
    """Sums over each span of ``name``, as a row of kind ``kind`` per span (and keys).

    ``within(spans)`` keeps the rows of ``source`` in a span. On PostgreSQL
    each span is a LATERAL subquery (index ranges of the rollup per span);
    SQLite joins, which it always does span by span.
    """
    spans = _spans(name, bound, shape)
    split, group = _keys(source, shape)
    base, mine = _walked(table, source)
    keep = [mine, within(spans), *_filters(source, shape)]
    base = _with_provider(base, source, shape)
    if not shape.postgresql:
        return (
            select(*_row(_span_code(kind, spans), split, group, sums, shape))
            .select_from(spans.join(base, and_(*keep)))
            .group_by(spans.c.idx, *_grouping(source, shape))
        )
    inner = (
        select(split.label("split"), group.label("grp"),
               *(total.label(f"s{n}") for n, total in enumerate(sums)))
        .select_from(base).where(*keep).group_by(*_grouping(source, shape))
        .lateral(f"{name}_sums")
    )
    return select(*_row(_span_code(kind, spans), inner.c.split, inner.c.grp,
                        [inner.c[f"s{n}"] for n in range(len(sums))], shape)).select_from(
        spans.join(inner, true()))


def _walked(table: Any, source: Any) -> tuple[FromClause, ColumnElement[bool]]:
    """What to read ``table``'s rows from, and the condition that keeps the account's.

    The instances' day rollup is keyed instance first: it is read through
    the account's instances, key range by key range.
    """
    if table is not UsageInstanceDay.__table__:
        return table, source.account_id == _ACCOUNT
    return (Instance.__table__.join(table, and_(source.account_id == INSTANCES.account_id,
                                                source.instance_id == INSTANCES.instance_id)),
            INSTANCES.account_id == _ACCOUNT)


def _instants_within(shape: Shape) -> Any:
    """The events of a span of instants (epoch seconds on PostgreSQL, stored text on SQLite)."""
    if shape.postgresql:
        return lambda spans: and_(E.occurred_at >= func.to_timestamp(spans.c.lo),
                                  E.occurred_at < func.to_timestamp(spans.c.hi))
    return lambda spans: and_(E.occurred_at >= spans.c.lo, E.occurred_at < spans.c.hi)


def _slots(source: Any, table: FromClause, slot: ColumnElement[int],
           measures: list[ColumnElement[Any]], where: list[ColumnElement[bool]],
           shape: Shape) -> Select[Any]:
    """Rows of ``table`` summed by slot ``(slot - :base) // :step`` (and by key).

    The slot number is computed in a subquery and grouped by outside it:
    PostgreSQL cannot tell that the same expression over two parameters in
    SELECT and in GROUP BY is one.
    """
    split, group = _keys(source, shape)
    inner = (
        select(((slot - bindparam("base", type_=BigInteger))
                // bindparam("step", type_=BigInteger)).label("idx"),
               split.label("split"), group.label("grp"),
               *(measure.label(f"m{n}") for n, measure in enumerate(measures)))
        .select_from(_with_provider(table, source, shape))
        .where(*where, *_filters(source, shape))
        .subquery("slots")
    )
    keys = [key for by, key in ((shape.split_by, inner.c.split), (shape.group_by, inner.c.grp))
            if by is not None]
    return (
        select(*_row(inner.c.idx, inner.c.split, inner.c.grp,
                     [_total(inner.c[f"m{n}"]) for n in range(len(measures))], shape))
        .group_by(inner.c.idx, *keys)
    )


@cache
def statement(shape: Shape) -> Any:
    """The one statement of ``shape``, built once."""
    _, hours = _tables(shape)
    if shape.mode is Mode.QUARTERS:
        q = QUARTERS.c
        return _slots(q, QUARTERS, q.quarter,
                      [q.requests, q.tokens_in, q.tokens_out, q.cost_usd, q.cost_nanos],
                      [q.account_id == _ACCOUNT, q.quarter >= bindparam("first_slot"),
                       q.quarter < bindparam("end_slot")], shape)
    if shape.mode is Mode.EVENTS:
        # One row an event: a request, its tokens and its cost's two parts.
        return _slots(E, UsageEvent.__table__, _epoch_seconds(E.occurred_at, shape),
                      [literal(1, BigInteger), E.tokens_in, E.tokens_out,
                       E.cost_nanos // NANOS_PER_USD, E.cost_nanos % NANOS_PER_USD],
                      [E.account_id == _ACCOUNT,
                       E.occurred_at >= bindparam("start", type_=E.occurred_at.type),
                       E.occurred_at < bindparam("end", type_=E.occurred_at.type)], shape)
    if shape.mode is Mode.HOURS:
        h = hours.c
        split, group = _keys(h, shape)
        return (
            select(*_row((h.hour - bindparam("base", type_=BigInteger)).label("idx"),
                         split, group, _sums(h), shape))
            .select_from(_with_provider(hours, h, shape))
            .where(h.account_id == _ACCOUNT, h.hour >= bindparam("first_slot"),
                   h.hour < bindparam("end_slot"), *_filters(h, shape))
            .group_by(h.hour, *_grouping(h, shape))
        )
    return union_all(*_daily_parts(shape))


def _per_day(day_table: Any, shape: Shape) -> Select[Any]:
    """The day rollup's rows from ``:first_day`` to before ``:end_day``, each a bucket's row.

    Bucket ``i`` is the day ``first_day + i``: the row's index is its day's
    distance from the first. Nothing is grouped: a day rollup row is
    already one day of one key, and the few keys that share a group (the
    models of a provider) are added up in Python with the rest. Grouping
    cost SQLite more than reading (1,800 rows a model by day: 2.9 ms
    grouped by the buckets' spans, 1.2 ms read as they are).
    """
    d = day_table.c
    first = bindparam("first_day", type_=Date)
    index: ColumnElement[int] = (
        cast(d.day - first, Integer) if shape.postgresql
        # SQLite keeps days as 'YYYY-MM-DD' text; a Julian day is exact in a double.
        else cast(func.julianday(d.day) - func.julianday(first), Integer)
    )
    base, mine = _walked(day_table, d)
    split, group = _keys(d, shape)
    return (
        select(*_row(index, split, group,
                     [d.requests, d.tokens_in, d.tokens_out, d.cost_usd, d.cost_nanos], shape))
        .select_from(_with_provider(base, d, shape))
        .where(mine, d.day >= first, d.day < bindparam("end_day", type_=Date),
               *_filters(d, shape))
    )


def _daily_parts(shape: Shape) -> list[Select[Any]]:
    """Each bucket's coarse part (day rollup rows, as they are or summed by bucket in
    SQL), then the corrections at its edges."""
    day_table, hours = _tables(shape)
    h = hours.c
    parts: list[Select[Any]] = []
    if shape.whole_days:
        parts.append(_per_day(day_table, shape))
    elif day_table is not None:
        d = day_table.c
        parts.append(_per_span(
            _BUCKET_ROW, "buckets", _DAY_BOUND, d, day_table,
            lambda spans: and_(d.day >= spans.c.lo, d.day < spans.c.hi), _sums(d), shape,
        ))
    else:
        # No day rollup has both an instance and a model: whole hours instead.
        parts.append(_per_span(
            _BUCKET_ROW, "buckets", _SLOT, h, hours,
            lambda spans: and_(h.hour >= spans.c.lo, h.hour < spans.c.hi), _sums(h), shape))
    parts.append(_per_span(
        _HOURS_ROW, "hours", _SLOT, h, hours,
        lambda spans: and_(h.hour >= spans.c.lo, h.hour < spans.c.hi), _sums(h), shape))
    parts.append(_per_span(
        _EVENTS_ROW, "instants", _INSTANT, E, UsageEvent.__table__, _instants_within(shape),
        _event_sums(E), shape))
    if shape.whole_account:
        q = QUARTERS.c
        parts.append(_per_span(
            _QUARTERS_ROW, "quarters", _SLOT, q, QUARTERS,
            lambda spans: and_(q.quarter >= spans.c.lo, q.quarter < spans.c.hi), _sums(q),
            shape))
    return parts


# --- the parameters of one call ----------------------------------------------------------------


def _anchor(bound: int) -> int:
    """The UTC midnight nearest to ``bound`` (epoch seconds), as seconds."""
    return (bound + _DAY // 2) // _DAY * _DAY


def _day(seconds: int) -> date:
    return _EPOCH_DAY + timedelta(days=seconds // _DAY)


@dataclass
class _Query:
    """One call: its statement's shape and parameters, and how its rows map to buckets."""

    shape: Shape
    params: dict[str, Any]
    anchors: list[int]  # bucket i's coarse part is [anchors[i], anchors[i+1])
    slot_base: int = 0
    slot_seconds: int = _HOUR
    # Per code of a correction C(b) (``_code``): the buckets it goes into,
    # each with +1 or -1 (see ``_daily``).
    corrections: dict[int, tuple[tuple[int, int], ...]] | None = None


def _span_params(name: str, spans: list[tuple[Any, Any]], shape: Shape) -> dict[str, Any]:
    """Spans ``(lo, hi)`` as ``_spans`` reads them, numbered by position."""
    if shape.postgresql:
        return {f"{name}_idx": list(range(len(spans))), f"{name}_lo": [s[0] for s in spans],
                f"{name}_hi": [s[1] for s in spans]}
    return {name: json.dumps(spans)}


def _hourly(plan: BucketPlan, shape: Shape) -> _Query:
    bounds = list(plan.bounds)
    first, last = bounds[0], bounds[-1]
    slot = gcd(_HOUR, *(b - first for b in bounds))
    if shape.whole_account and all(b % _QUARTER == 0 for b in bounds):
        # The account's quarter hours: 4 rows an hour, whatever the instances,
        # and exact in every zone of today (offsets are whole quarters).
        return _Query(
            Shape(shape.dialect, Mode.QUARTERS),
            {"first_slot": first // _QUARTER, "end_slot": last // _QUARTER,
             "base": first // _QUARTER, "step": slot // _QUARTER},
            bounds, first, slot,
        )
    if slot == _HOUR and first % _HOUR == 0:
        return _Query(
            replace(shape, mode=Mode.HOURS),
            {"first_slot": first // _HOUR, "end_slot": last // _HOUR, "base": first // _HOUR},
            bounds, first, _HOUR,
        )
    # The zone's hours start off the UTC hour: every hour rollup row would be
    # split, so the range's events are grouped into slots instead.
    return _Query(
        replace(shape, mode=Mode.EVENTS),
        {"start": EPOCH + timedelta(seconds=first), "end": EPOCH + timedelta(seconds=last),
         "base": first, "step": slot},
        bounds, first, slot,
    )


def _day_bound(seconds: int, shape: Shape) -> Any:
    """A UTC midnight as the buckets' day spans carry it (see ``_spans``)."""
    day = _day(seconds)
    return day if shape.postgresql else day.isoformat()


def _instant(seconds: int, shape: Shape) -> Any:
    """An instant as the events' span parameters carry it (see ``_spans``)."""
    if shape.postgresql:
        return seconds
    return sqlite_instant(EPOCH + timedelta(seconds=seconds))


def _daily(plan: BucketPlan, shape: Shape) -> _Query:
    bounds = list(plan.bounds)
    anchors = [_anchor(b) for b in bounds]
    day_table, _ = _tables(shape)
    params: dict[str, Any] = {}
    # Bucket i's coarse part: the UTC days (or, without a day rollup, the
    # hours) from its first bound's anchor to the next one's.
    if day_table is not None and all(high - low == _DAY
                                     for low, high in itertools.pairwise(anchors)):
        shape = replace(shape, whole_days=True)
        params.update(first_day=_day(anchors[0]), end_day=_day(anchors[-1]))
    elif day_table is not None:
        coarse = [(_day_bound(low, shape), _day_bound(high, shape))
                  for low, high in itertools.pairwise(anchors)]
        params.update(_span_params("buckets", coarse, shape))
    else:
        coarse = [(low // _HOUR, high // _HOUR) for low, high in itertools.pairwise(anchors)]
        params.update(_span_params("buckets", coarse, shape))
    spans: dict[int, list[tuple[Any, Any]]] = {kind: [] for kind in _CORRECTIONS}
    corrections: dict[int, tuple[tuple[int, int], ...]] = {}
    last = len(bounds) - 2

    def correct(kind: int, n: int, forward: bool, span: tuple[Any, Any]) -> None:
        """C(b) at boundary ``n``, read over ``span``: usage[x, y), taken + when the
        span runs forward from the anchor towards b, else -. It goes + into the
        end of the bucket before b and - into the start of the bucket after it."""
        sign = 1 if forward else -1
        corrections[_code(kind, len(spans[kind]))] = tuple(
            (bucket, direction) for bucket, direction in ((n - 1, sign), (n, -sign))
            if 0 <= bucket <= last
        )
        spans[kind].append(span)

    for n, (bound, anchor) in enumerate(zip(bounds, anchors, strict=True)):
        if shape.whole_account and bound % _QUARTER == 0:
            # Ungrouped: C(b) from the account's quarter hours alone, at most
            # 48 rows, and no events even where b is at :30 or :45.
            if bound != anchor:
                low, high = sorted((bound, anchor))
                correct(_QUARTERS_ROW, n, bound > anchor, (low // _QUARTER, high // _QUARTER))
            continue
        # C(b) = usage[A, R) + usage[R, b), signed, with R the whole hour
        # nearest to b: whole hours from the rollup, and at most half an hour
        # of events (a quarter in Kathmandu, where b is at :15).
        nearest = (bound + _HOUR // 2) // _HOUR * _HOUR
        if nearest != anchor:
            low, high = sorted((nearest, anchor))
            correct(_HOURS_ROW, n, nearest > anchor, (low // _HOUR, high // _HOUR))
        if bound != nearest:
            low, high = sorted((bound, nearest))
            correct(_EVENTS_ROW, n, bound > nearest,
                    (_instant(low, shape), _instant(high, shape)))
    params.update(_span_params("hours", spans[_HOURS_ROW], shape))
    params.update(_span_params("instants", spans[_EVENTS_ROW], shape))
    if shape.whole_account:
        params.update(_span_params("quarters", spans[_QUARTERS_ROW], shape))
    return _Query(shape, params, anchors, 0, _HOUR, corrections)


# --- the bounds of a request's point charge -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """How many instances and models have usage in a span of UTC days.

    An upper bound of the groups of any ``usage`` answer inside that span:
    grouped by instance, by model, or by provider (a model has one provider
    or none), before the answer itself is read (``meterql.points``).
    """

    instances: int
    models: int

    def most(self, group_by: GroupBy | None) -> int:
        if group_by is None:
            return 1
        return self.instances if group_by is GroupBy.INSTANCE else self.models


_FIRST_DAY: BindParameter[date] = bindparam("first_day", type_=Date)
_LAST_DAY: BindParameter[date] = bindparam("last_day", type_=Date)
# The instances and the models used in the span, each counted from their
# latest days (``instances_used``, ``models_used``).
_GROUP_COUNTS = select(
    instances_used(_ACCOUNT, _FIRST_DAY, _LAST_DAY),
    models_used(_ACCOUNT, _FIRST_DAY, _LAST_DAY),
)


def utc_days(plan: BucketPlan) -> tuple[date, date]:
    """The UTC days, first and last, that the plan's buckets touch."""
    return _day(plan.bounds[0]), _day(plan.bounds[-1] - 1)


async def group_counts(
    reader: Reader, account_id: str, first_day: date, last_day: date
) -> GroupCounts:
    """Instances and models with usage on the UTC days ``first_day``..``last_day``."""
    ((instances, models),) = await reader.fetch(
        _GROUP_COUNTS,
        {"account": account_id, "first_day": first_day, "last_day": last_day},
    )
    return GroupCounts(instances=int(instances), models=int(models))


# --- reading ------------------------------------------------------------------------------------


async def usage_series(
    reader: Reader,
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
    cells = await _read(reader, account_id, plan, group_by, None, instance_ids, models)
    return _series(cells.get("", {}), plan.count, group_by)


async def usage_series_by(
    reader: Reader,
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
    cells = await _read(reader, account_id, plan, group_by, split_by, instance_ids, models)
    count = plan.count
    return {key: _series(sums, count, group_by) for key, sums in cells.items()}


async def _read(
    reader: Reader,
    account_id: str,
    plan: BucketPlan,
    group_by: GroupBy | None,
    split_by: GroupBy | None,
    instance_ids: Sequence[str] | None,
    models: Sequence[str] | None,
) -> dict[str, dict[str, list[list[int]]]]:
    """Per split key ("" unsplit), per group key, the five sums of each bucket: one SELECT."""
    count = plan.count
    cells: dict[str, dict[str, list[list[int]]]] = {}
    if (instance_ids is not None and not instance_ids) or (models is not None and not models):
        return cells
    shape = Shape(reader.dialect, Mode.DAYS, group_by, split_by,
                  instance_ids is not None, models is not None)
    query = _query(plan, shape)
    params = {**query.params, "account": account_id}
    if instance_ids is not None:
        params["instance_ids"] = list(instance_ids)
    if models is not None:
        params["models"] = list(models)
    rows: Sequence[Sequence[Any]] = await reader.fetch(statement(query.shape), params)
    if split_by is not None and group_by is not None:
        # Two keys: each row's pair is one key here, split apart once per group below.
        rows = [(code, (split, key), *sums) for code, split, key, *sums in rows]
    elif split_by is None and group_by is None:
        rows = [(code, "", *sums) for code, *sums in rows]  # a few rows: one per bucket
    for key, sums in _groups(rows, query, count).items():
        if split_by is not None and group_by is not None:
            split, group = key
        elif split_by is not None:
            split, group = key, ""
        else:
            split, group = "", key
        # A model without a price has no provider (NULL): it is the provider "".
        _add(cells.setdefault(split or "", {}), group or "", sums)
    return cells


def _add(sums: dict[str, list[list[int]]], key: str, buckets: list[list[int]]) -> None:
    """``buckets`` as ``key``'s sums, added to those ``key`` has already."""
    found = sums.get(key)
    if found is None:
        sums[key] = buckets
        return
    for cell, more in zip(found, buckets, strict=True):
        for n, value in enumerate(more):
            cell[n] += value


def _groups(rows: Sequence[Sequence[Any]], query: _Query,
            count: int) -> dict[Any, list[list[int]]]:
    """Per key, the five sums of each bucket, from rows ``(code, key, *sums)``."""
    groups: dict[Any, list[list[int]]] = {}
    corrections = query.corrections or {}
    slots = query.shape.mode is not Mode.DAYS
    for code, key, requests, tokens_in, tokens_out, usd, nanos in rows:
        per_bucket = groups.get(key)
        if per_bucket is None:
            per_bucket = groups[key] = [[0, 0, 0, 0, 0] for _ in range(count)]
        if slots:
            code = bisect_right(query.anchors, query.slot_base + code * query.slot_seconds) - 1
        if code >= 0:
            # A bucket's own row (most rows: a day of a group): added as it is.
            cell = per_bucket[code]
            cell[0] += requests
            cell[1] += tokens_in
            cell[2] += tokens_out
            cell[3] += usd
            cell[4] += nanos
            continue
        for bucket, direction in corrections[code]:
            cell = per_bucket[bucket]
            cell[0] += direction * requests
            cell[1] += direction * tokens_in
            cell[2] += direction * tokens_out
            cell[3] += direction * usd
            cell[4] += direction * nanos
    return groups


# What a call reads depends on its plan and shape alone: plans are kept across
# requests (``buckets.plan``), and so are the parameters made from them.
_QUERIES: OrderedDict[tuple[Any, ...], _Query] = OrderedDict()
_QUERIES_KEPT = 512


def _query(plan: BucketPlan, shape: Shape) -> _Query:
    # A plan is its range and grain (the whole range read as one bucket has
    # two bounds): cheaper to hash than its buckets.
    key = (plan.range, plan.granularity, len(plan.bounds), shape)
    found = _QUERIES.get(key)
    if found is None:
        found = (_hourly if plan.granularity is Granularity.HOUR else _daily)(plan, shape)
        _QUERIES[key] = found
        if len(_QUERIES) > _QUERIES_KEPT:
            _QUERIES.popitem(last=False)
    else:
        _QUERIES.move_to_end(key)
    return found


def no_usage(plan: BucketPlan, group_by: GroupBy | None) -> Series:
    """The answer for a range without usage: no groups, or one zero-filled ungrouped key."""
    return _series({}, plan.count, group_by)


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

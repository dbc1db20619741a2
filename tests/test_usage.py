"""``usage(...)``: every bucket and group equals a plain recomputation from the raw events.

The reference below never looks at ``meterql.buckets``: it converts each
event's instant into the zone with ``zoneinfo`` and keys it by local date,
hour and offset, ISO week or month, as a reader of the API would.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from meterql import buckets
from meterql.buckets import Granularity
from meterql.config import Settings
from meterql.context import Context
from meterql.db import series, writes
from meterql.db.accounts import TokenGrant
from meterql.db.engine import Database
from meterql.db.series import GroupBy
from meterql.db.tables import ModelPrice, UsageEvent
from meterql.money import format_usd, nanos_to_usd
from meterql.records import AccountRecord, InstanceRecord, ModelRecord, UsageEventRecord
from meterql.schema import build_schema
from tests.conftest import NOW, StatementCounter
from tests.golden import auth, seed

ACCOUNT = "acme"
INSTANCES = ["inst-a", "inst-b", "inst-c", "Inst-d"]
# A priced model without a provider is in the provider "" with the unpriced one.
MODELS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude": "anthropic", "gemini": "google",
          "local": ""}
UNPRICED = "mystery"
ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "Europe/Berlin", "America/New_York",
         "Australia/Lord_Howe", "Pacific/Chatham"]
# Spring and autumn 2026: every zone above changes its clocks in one of them.
PERIODS = [(date(2026, 3, 1), date(2026, 4, 30)), (date(2026, 9, 20), date(2026, 11, 10))]


def _midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _moments(rng: random.Random, count: int) -> list[datetime]:
    """Random instants in the periods, and every zone's midnights of some days exactly."""
    found = []
    for _ in range(count):
        first, last = rng.choice(PERIODS)
        span = (last - first).days * 86_400
        found.append(_midnight(first, "UTC")
                     + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6)))
    for first, last in PERIODS:
        for _ in range(25):
            day = first + timedelta(days=rng.randrange((last - first).days))
            edge = _midnight(day, rng.choice(ZONES))
            found += [edge, edge - timedelta(microseconds=1)]
    # Around each clock change: the change itself and the quarter hours near it.
    for zone in ZONES:
        tz = ZoneInfo(zone)
        for first, last in PERIODS:
            moment = _midnight(first, "UTC")
            while moment.date() <= last:
                step = moment + timedelta(minutes=15)
                if moment.astimezone(tz).utcoffset() != step.astimezone(tz).utcoffset():
                    found += [moment + timedelta(minutes=m) for m in (0, 5, 15, 30, 45)]
                moment = step
    return found


def _events(rng: random.Random, count: int) -> list[UsageEventRecord]:
    return [
        UsageEventRecord(
            event_id=f"e{n}",
            instance_id=rng.choice(INSTANCES),
            model=rng.choice([*MODELS, UNPRICED]),
            timestamp=moment,
            tokens_in=rng.randrange(20_000),
            tokens_out=rng.randrange(20_000),
        )
        for n, moment in enumerate(_moments(rng, count))
    ]


async def _seed(db: Database, events: list[UsageEventRecord]) -> None:
    async with db.write() as session, session.begin():
        await writes.upsert_models(session, [
            ModelRecord(model=m, provider=p, input_usd_per_mtok=Decimal("2.5") + len(m),
                        output_usd_per_mtok=Decimal("0.000123") * len(m))
            for m, p in MODELS.items()
        ])
        await writes.upsert_account(session, AccountRecord(
            account_id=ACCOUNT, instances=[InstanceRecord(instance_id=i) for i in INSTANCES]))
        await writes.upsert_account(session, AccountRecord(
            account_id="other", instances=[InstanceRecord(instance_id="inst-a")]))
        await writes.record_events(session, events, account_id=ACCOUNT)
        # Another account's usage, at the same instants, never shows.
        await writes.record_events(session, events[:50], account_id="other")


async def _stored(db: Database) -> list[dict[str, Any]]:
    async with db.read() as connection:
        providers = dict((await connection.execute(
            select(ModelPrice.model, ModelPrice.provider))).all())
        rows = await connection.execute(
            select(UsageEvent.instance_id, UsageEvent.model, UsageEvent.occurred_at,
                   UsageEvent.tokens_in, UsageEvent.tokens_out, UsageEvent.cost_nanos)
            .where(UsageEvent.account_id == ACCOUNT)
        )
        return [{**r._asdict(), "provider": providers.get(r.model, "")} for r in rows]


# --- the reference -----------------------------------------------------------------


def _key(local: datetime, granularity: Granularity) -> Any:
    if granularity is Granularity.HOUR:
        return (local.date(), local.hour, local.utcoffset())
    if granularity is Granularity.DAY:
        return local.date()
    if granularity is Granularity.WEEK:
        return local.date().isocalendar()[:2]
    return (local.year, local.month)


def _reference_keys(first: date, last: date, zone: str, granularity: Granularity) -> list[Any]:
    """Every bucket key of the range, in order (all offsets here are quarter hours)."""
    tz = ZoneInfo(zone)
    moment, end = _midnight(first, zone), _midnight(last + timedelta(days=1), zone)
    keys: list[Any] = []
    while moment < end:
        key = _key(moment.astimezone(tz), granularity)
        if not keys or keys[-1] != key:
            keys.append(key)
        moment += timedelta(minutes=15)
    return keys


def _group_key(event: dict[str, Any], group_by: GroupBy | None) -> str:
    if group_by is GroupBy.INSTANCE:
        return str(event["instance_id"])
    if group_by is GroupBy.MODEL:
        return str(event["model"])
    if group_by is GroupBy.PROVIDER:
        return str(event["provider"])
    return ""


def _reference(
    events: list[dict[str, Any]], first: date, last: date, zone: str,
    granularity: Granularity, group_by: GroupBy | None,
) -> tuple[list[Any], dict[str, dict[Any, list[int]]]]:
    tz = ZoneInfo(zone)
    keys = _reference_keys(first, last, zone, granularity)
    sums: dict[str, dict[Any, list[int]]] = {}
    for event in events:
        local = event["occurred_at"].astimezone(tz)
        if not first <= local.date() <= last:
            continue
        cell = sums.setdefault(_group_key(event, group_by), {}).setdefault(
            _key(local, granularity), [0, 0, 0, 0])
        cell[0] += 1
        cell[1] += event["tokens_in"]
        cell[2] += event["tokens_out"]
        cell[3] += event["cost_nanos"]
    return keys, sums


def _answer_key(bucket: dict[str, Any], granularity: Granularity) -> Any:
    start = datetime.fromisoformat(bucket["start"])
    return _key(start, granularity)


# --- the tests ---------------------------------------------------------------------


def _context(db: Database, settings: Settings) -> Context:
    return Context(db=db, settings=settings, grant=TokenGrant(ACCOUNT, frozenset({"read"})),
                   now=NOW)


QUERY = """query ($range: DateRange, $days: Int, $tz: String!, $g: Granularity!,
                  $by: UsageGroupBy) {
  usage(range: $range, days: $days, tz: $tz, granularity: $g, groupBy: $by) {
    from to timeZone start end
    totals { requests tokensIn tokensOut totalTokens estimatedCostUsd }
    groups { key requests tokensIn tokensOut estimatedCostUsd }
    series { start end date label requests tokensIn tokensOut estimatedCostUsd
             groups { key requests tokensIn tokensOut estimatedCostUsd } }
  }
}"""


def _random_query(rng: random.Random) -> tuple[date, date, str, Granularity, GroupBy | None]:
    granularity = rng.choice(list(Granularity))
    first, last = rng.choice(PERIODS)
    longest = 5 if granularity is Granularity.HOUR else 80
    start = first - timedelta(days=3) + timedelta(days=rng.randrange((last - first).days + 6))
    end = start + timedelta(days=rng.randrange(longest))
    return start, end, rng.choice(ZONES), granularity, rng.choice([None, *GroupBy])


async def _execute(schema: Any, query: str, db: Database, settings: Settings,
                   asked: tuple[date, date, str, Granularity, GroupBy | None]) -> dict[str, Any]:
    """``query`` run with one random query's arguments as its variables: its data."""
    first, last, zone, granularity, group_by = asked
    result = await schema.execute(query, variable_values={
        "range": {"from": first.isoformat(), "to": last.isoformat()}, "tz": zone,
        "g": granularity.value, "by": group_by and group_by.value,
    }, context_value=_context(db, settings))
    assert result.errors is None, result.errors
    data: dict[str, Any] | None = result.data
    assert data is not None
    return data


def _cells(answer: dict[str, Any], granularity: Granularity,
           grouped: bool) -> dict[str, dict[Any, list[Any]]]:
    found: dict[str, dict[Any, list[Any]]] = {}
    for bucket in answer["series"]:
        key = _answer_key(bucket, granularity)
        groups = bucket["groups"] if grouped else [{"key": "", **bucket}]
        for group in groups:
            found.setdefault(group["key"], {})[key] = [
                group["requests"], group["tokensIn"], group["tokensOut"],
                group["estimatedCostUsd"]]
    return found


async def test_random_queries_equal_the_raw_events(db: Database, settings: Settings) -> None:
    rng = random.Random(8)
    await _seed(db, _events(rng, 2_500))
    events = await _stored(db)
    schema = build_schema()
    for _ in range(60):
        asked = _random_query(rng)
        first, last, zone, granularity, group_by = asked
        answer = (await _execute(schema, QUERY, db, settings, asked))["usage"]
        keys, sums = _reference(events, first, last, zone, granularity, group_by)
        assert [_answer_key(b, granularity) for b in answer["series"]] == keys, asked
        # Groups: those with a request in the range, code-point order, in every bucket.
        groups = sorted(k for k, v in sums.items() if v)
        if group_by is None:
            groups = [""]
        else:
            assert [g["key"] for g in answer["groups"]] == groups, asked
            assert all([g["key"] for g in b["groups"]] == groups for b in answer["series"])
        expected = {
            g: {k: [*sums.get(g, {}).get(k, [0, 0, 0, 0])[:3],
                    format_usd(nanos_to_usd(sums.get(g, {}).get(k, [0, 0, 0, 0])[3]))]
                for k in keys}
            for g in groups
        }
        assert _cells(answer, granularity, group_by is not None) == expected, asked
        total = [sum(c[n] for v in sums.values() for c in v.values()) for n in range(4)]
        assert answer["totals"] == {
            "requests": total[0], "tokensIn": total[1], "tokensOut": total[2],
            "totalTokens": total[1] + total[2],
            "estimatedCostUsd": format_usd(nanos_to_usd(total[3])),
        }, asked


async def test_storage_sums_are_exact_to_the_nano_dollar_with_filters(db: Database) -> None:
    """The db function itself, to the nano-dollar, with the loaders' filters."""
    rng = random.Random(9)
    await _seed(db, _events(rng, 1_500))
    events = await _stored(db)
    for _ in range(40):
        first, last, zone, granularity, group_by = _random_query(rng)
        instances = rng.choice([None, rng.sample(INSTANCES, 2), []])
        models = rng.choice([None, None, rng.sample([*MODELS, UNPRICED], 2)])
        kept = [e for e in events
                if (instances is None or e["instance_id"] in instances)
                and (models is None or e["model"] in models)]
        plan = buckets.plan(buckets.LocalRange(first, last, ZoneInfo(zone)), granularity)
        found = await series.usage_series(db.reads, ACCOUNT, plan, group_by,
                                          instance_ids=instances, models=models)
        expected = _expected_cells(
            *_reference(kept, first, last, zone, granularity, group_by), group_by)
        assert found.keys == tuple(expected)
        assert _found_cells(found) == expected, (
            first, last, zone, granularity, group_by, instances, models)


def _expected_cells(keys: list[Any], sums: dict[str, dict[Any, list[int]]],
                    group_by: GroupBy | None) -> dict[str, list[list[int]]]:
    """``_reference``'s sums as ``usage_series`` gives them: every bucket of each group
    with a request, in key order (ungrouped: the one key "", zeros if need be)."""
    expected = {g: [sums[g].get(k, [0, 0, 0, 0]) for k in keys]
                for g in sorted(sums) if sums[g]}
    if group_by is None and not expected:
        expected = {"": [[0, 0, 0, 0] for _ in keys]}
    return expected


def _found_cells(found: series.Series) -> dict[str, list[list[int]]]:
    return {g: [[a.requests, a.tokens_in, a.tokens_out, a.cost_nanos] for a in v]
            for g, v in found.values.items()}


@pytest.mark.parametrize(
    ("zone", "first", "last", "whole_days"),
    [
        # Every local midnight's nearest UTC midnight is a day after the last
        # one's: the day rollup's rows are read as they are, one a bucket.
        ("Europe/Berlin", date(2026, 3, 20), date(2026, 4, 10), True),
        ("Pacific/Chatham", date(2026, 9, 20), date(2026, 10, 5), True),
        ("Pacific/Auckland", date(2026, 4, 10), date(2026, 4, 30), True),
        # Auckland's midnight is at noon UTC in winter, 11:00 in summer: the
        # nearest UTC midnight jumps two days when its clocks go back (5
        # April) and stays put when they go forward (27 September), so the
        # days are joined to the buckets' spans and summed.
        ("Pacific/Auckland", date(2026, 3, 25), date(2026, 4, 15), False),
        ("Pacific/Auckland", date(2026, 9, 20), date(2026, 10, 5), False),
    ],
)
async def test_daily_buckets_read_day_rows_or_spans_and_both_equal_the_events(
    db: Database, zone: str, first: date, last: date, whole_days: bool
) -> None:
    rng = random.Random(11)
    await _seed(db, _events(rng, 1_500))
    events = await _stored(db)
    plan = buckets.plan(buckets.LocalRange(first, last, ZoneInfo(zone)), Granularity.DAY)
    for group_by in [None, *GroupBy]:
        shape = series.Shape(db.reads.dialect, series.Mode.DAYS, group_by)
        assert series._query(plan, shape).shape.whole_days is whole_days
        found = await series.usage_series(db.reads, ACCOUNT, plan, group_by)
        expected = _expected_cells(
            *_reference(events, first, last, zone, Granularity.DAY, group_by), group_by)
        assert sum(cell[0] for cells in expected.values() for cell in cells) > 100
        assert _found_cells(found) == expected, (zone, group_by)


@pytest.mark.parametrize(
    ("zone", "day", "buckets_", "hours", "odd"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23, 23, []),
        ("Europe/Berlin", date(2026, 10, 25), 25, 25, ["02:00+02:00", "02:00+01:00"]),
        ("America/New_York", date(2026, 3, 8), 23, 23, []),
        ("America/New_York", date(2026, 11, 1), 25, 25, ["01:00-04:00", "01:00-05:00"]),
        ("Australia/Lord_Howe", date(2026, 4, 5), 25, 24.5, ["01:30+10:30"]),
        ("Australia/Lord_Howe", date(2026, 10, 4), 24, 23.5, ["02:30+11:00"]),
        ("Asia/Kolkata", date(2026, 3, 29), 24, 24, []),
    ],
)
def test_hourly_buckets_of_a_day_follow_its_clock(
    zone: str, day: date, buckets_: int, hours: float, odd: list[str]
) -> None:
    plan = buckets.plan(buckets.LocalRange(day, day, ZoneInfo(zone)), Granularity.HOUR)
    assert len(plan.buckets) == buckets_
    labels = [b.label[11:] for b in plan.buckets]
    assert all(o in labels for o in odd), labels
    assert all(b.date == day for b in plan.buckets)
    assert (plan.bounds[-1] - plan.bounds[0]) / 3600 == hours
    # (Aware datetimes of one zone subtract as wall times: compare in UTC.)
    assert all(b.end.astimezone(UTC) - b.start.astimezone(UTC) <= timedelta(hours=1)
               for b in plan.buckets)
    assert all(a.end == b.start for a, b in zip(plan.buckets, plan.buckets[1:], strict=False))


def test_kathmandu_days_start_at_a_quarter_past_utc() -> None:
    plan = buckets.plan(buckets.LocalRange(date(2026, 3, 9), date(2026, 3, 11),
                                           ZoneInfo("Asia/Kathmandu")), Granularity.DAY)
    assert [buckets.utc(b).isoformat() for b in plan.bounds] == [
        "2026-03-08T18:15:00+00:00", "2026-03-09T18:15:00+00:00",
        "2026-03-10T18:15:00+00:00", "2026-03-11T18:15:00+00:00",
    ]
    assert plan.buckets[0].start.isoformat() == "2026-03-09T00:00:00+05:45"


@pytest.mark.parametrize(
    ("granularity", "first", "last", "labels"),
    [
        (Granularity.WEEK, date(2026, 3, 4), date(2026, 3, 17),
         [("2026-W10", "2026-03-04"), ("2026-W11", "2026-03-09"), ("2026-W12", "2026-03-16")]),
        (Granularity.MONTH, date(2026, 1, 31), date(2026, 3, 2),
         [("2026-01", "2026-01-31"), ("2026-02", "2026-02-01"), ("2026-03", "2026-03-01")]),
        (Granularity.DAY, date(2026, 12, 31), date(2027, 1, 1),
         [("2026-12-31", "2026-12-31"), ("2027-01-01", "2027-01-01")]),
    ],
)
def test_weeks_and_months_are_clipped_to_the_range(
    granularity: Granularity, first: date, last: date, labels: list[tuple[str, str]]
) -> None:
    plan = buckets.plan(buckets.LocalRange(first, last, ZoneInfo("UTC")), granularity)
    assert [(b.label, b.date.isoformat()) for b in plan.buckets] == labels
    assert plan.buckets[-1].end.date() == last + timedelta(days=1)


def test_a_midnight_in_a_gap_starts_the_day_at_the_end_of_the_gap() -> None:
    # Chile's clocks went from 24:00 to 01:00 on 2026-09-06: that day has no midnight.
    tz = ZoneInfo("America/Santiago")
    start = buckets.day_start(date(2026, 9, 6), tz)
    assert buckets.utc(start).astimezone(tz).isoformat() == "2026-09-06T01:00:00-03:00"
    assert buckets.utc(start - 1).astimezone(tz).date() == date(2026, 9, 5)


async def _usage(client: httpx.AsyncClient, arguments: str, fields: str = "from to") -> Any:
    response = await client.post(
        "/graphql", json={"query": f"{{ usage{arguments} {{ {fields} }} }}"}, headers=auth())
    return response.json()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('(range: {from: "2024-01-01", to: "2025-01-01"})', "range: A range spans at most 366"),
        ('(range: {from: "2026-01-02", to: "2026-01-01"})', "range.to: Must not be before"),
        ('(range: {from: "2026-01-01", to: "2026-01-02"}, days: 7)',
         "days: Give either range or days, not both"),
        ('(tz: "Mars/Olympus")', "tz: Unknown time zone"),
        ('(tz: "../../etc/passwd")', "tz: Unknown time zone"),
        ('(tz: "")', "tz: Unknown time zone"),
        ("(days: 0)", "days: Input should be greater than or equal to 1"),
        ("(days: 367)", "days: Input should be less than or equal to 366"),
    ],
)
async def test_bad_arguments_are_refused(
    client: httpx.AsyncClient, db: Database, arguments: str, message: str
) -> None:
    await seed(db)
    body = await _usage(client, arguments)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["message"].startswith(message), error
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["loc"][0] in {"range", "days", "tz", "granularity"}


async def test_a_year_of_hours_is_one_answer(client: httpx.AsyncClient, db: Database) -> None:
    # 366 days of hours (8,784 buckets, plus one for the zone's autumn hour)
    # stay within the default point budget and add up to the days.
    await seed(db)
    fields = "totals { requests estimatedCostUsd } series { start requests }"
    hours = (await _usage(client, '(days: 366, tz: "Europe/Berlin", granularity: HOUR)',
                          fields))["data"]["usage"]
    days = (await _usage(client, '(days: 366, tz: "Europe/Berlin")', fields))["data"]["usage"]
    assert len(hours["series"]) == 366 * 24  # one 23-hour and one 25-hour day
    assert hours["totals"] == days["totals"]
    assert hours["totals"]["requests"] > 0
    assert sum(b["requests"] for b in hours["series"]) == hours["totals"]["requests"]


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        # 5 days of hours: 120 points of the 200 allowed.
        ("{ a: usage(days: 5, granularity: HOUR) { from } }", 0),
        # The budget is the request's: the second alias finds 80 left (and
        # `usage` is non-null, so the whole answer is null).
        ("{ a: usage(days: 5, granularity: HOUR) { from } "
         "b: usage(days: 5, granularity: HOUR) { from } }", 1),
        # Grouped, a bucket costs one point per group: 9 days × 3 models = 27.
        ("{ a: usage(days: 9, groupBy: MODEL) { from } }", 0),
        ("{ a: usage(days: 9, granularity: HOUR) { from } }", 1),
    ],
)
async def test_a_request_may_ask_for_so_many_points(
    settings: Settings, db: Database, query: str, refused: int
) -> None:
    from meterql.app import create_app

    await seed(db)
    app = create_app(settings.model_copy(update={"graphql_max_series_points": 200}),
                     database=db, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://meterql.test") as client:
        body = (await client.post("/graphql", json={"query": query}, headers=auth())).json()
    errors = body.get("errors", [])
    assert len(errors) == refused, body
    assert (body["data"] is None) == bool(refused)
    for error in errors:
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "/v1/export/usage.csv" in error["message"]
        assert error["extensions"]["errors"][0]["type"] == "too_many_points"


async def test_empty_range_is_zero_filled_and_days_end_today_in_the_zone(
    client: httpx.AsyncClient, db: Database
) -> None:
    await seed(db)
    # 15:30 UTC on the 20th is already the 21st at +14:00.
    body = await _usage(client, '(days: 3, tz: "Pacific/Kiritimati", groupBy: MODEL)',
                        "from to groups { key } series { date requests groups { key } }")
    usage = body["data"]["usage"]
    assert (usage["from"], usage["to"]) == ("2026-11-19", "2026-11-21")
    assert [b["date"] for b in usage["series"]] == ["2026-11-19", "2026-11-20", "2026-11-21"]
    # The golden events of the 20th UTC fall on the 20th and 21st local; the 19th
    # has only e8 (08:00 UTC = 22:00 local).
    assert [g["key"] for g in usage["groups"]] == ["gpt-4o", "gpt-4o-mini"]
    assert all([g["key"] for g in b["groups"]] == ["gpt-4o", "gpt-4o-mini"]
               for b in usage["series"])
    old = await _usage(client, '(range: {from: "2020-01-01", to: "2020-12-31"}, '
                               "granularity: MONTH, groupBy: INSTANCE)",
                       "totals { requests estimatedCostUsd } groups { key } series { requests }")
    assert old["data"]["usage"] == {
        "totals": {"requests": 0, "estimatedCostUsd": "0.0000"}, "groups": [],
        "series": [{"requests": 0}] * 12,
    }
    default = await _usage(client, "", "from to timeZone start end")
    assert default["data"]["usage"] == {
        "from": "2026-10-22", "to": "2026-11-20", "timeZone": "UTC",
        "start": "2026-10-22T00:00:00+00:00", "end": "2026-11-21T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    "arguments",
    [
        "(days: 1)",
        '(days: 366, tz: "Europe/Berlin", groupBy: PROVIDER)',
        '(days: 90, tz: "Asia/Kolkata", groupBy: INSTANCE)',
        '(days: 366, tz: "Asia/Kathmandu", granularity: WEEK, groupBy: MODEL)',
        '(days: 31, tz: "Asia/Kolkata", granularity: HOUR, groupBy: MODEL)',
        '(days: 31, tz: "Europe/Berlin", granularity: HOUR)',
    ],
)
async def test_one_statement_whatever_the_range_and_groups(
    client: httpx.AsyncClient, db: Database, sql: StatementCounter, arguments: str
) -> None:
    await seed(db)
    sql.reset()
    body = await _usage(client, arguments, "totals { requests } series { groups { key } }")
    assert "errors" not in body, body
    # The token, grouped the count of groups the answer may have (its point
    # charge, before reading), then the usage.
    grouped = "groupBy" in arguments
    assert sql.count == 3 if grouped else 2, sql.statements


async def test_golden_usage_matches_the_daily_series(client: httpx.AsyncClient,
                                                     db: Database) -> None:
    """In UTC, days=7 gives the very numbers of usageTimeseries(days: 7)."""
    await seed(db)
    response = await client.post("/graphql", json={"query": """{
        usage(days: 7) { series { date requests tokensIn tokensOut estimatedCostUsd } }
        usageTimeseries(days: 7) { points { date requests tokensIn tokensOut estimatedCostUsd } }
    }"""}, headers=auth())
    data = response.json()["data"]
    assert data["usage"]["series"] == data["usageTimeseries"]["points"]


WHOLE_VS_BUCKETS = """query ($range: DateRange!, $tz: String!, $g: Granularity!, $by: UsageGroupBy) {
  whole: usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { TOTALS }
  buckets: usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { TOTALS series { requests } }
  viewer {
    instances { edges { node {
      whole: usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { TOTALS }
      buckets: usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { TOTALS series { requests } }
    } } }
    models {
      whole: usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { TOTALS }
      buckets: usage(range: $range, tz: $tz, granularity: $g, groupBy: $by) { TOTALS series { requests } }
    }
  }
}""".replace("TOTALS", "totals { requests tokensIn tokensOut estimatedCostUsd } "
             "groups { key requests tokensIn tokensOut estimatedCostUsd }")


async def test_an_answer_without_a_series_reads_its_range_whole_and_agrees(
    db: Database, settings: Settings
) -> None:
    """Without ``series``, a usage reads its range as one bucket: the same totals and groups
    as read bucket by bucket, in every zone and grain, for the account and every node."""
    rng = random.Random(23)
    await _seed(db, _events(rng, 1_500))
    schema = build_schema()
    seen = 0
    for _ in range(12):
        asked = _random_query(rng)
        first, last, zone, granularity, group_by = asked
        data = await _execute(schema, WHOLE_VS_BUCKETS, db, settings, asked)
        answers = [data, *(e["node"] for e in data["viewer"]["instances"]["edges"]),
                   *data["viewer"]["models"]]
        for answer in answers:
            bucketed = {k: v for k, v in answer["buckets"].items() if k != "series"}
            assert answer["whole"] == bucketed, (first, last, zone, granularity, group_by)
            seen += answer["whole"]["totals"]["requests"]
    assert seen > 0  # not all of it empty ranges

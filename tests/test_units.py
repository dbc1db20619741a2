"""Pure functions: money, windows, plan choice, parameter coercion, validation. No database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from meterql.config import FreePlan
from meterql.db.accounts import SubscriptionRow, TierRow
from meterql.db.types import sqlite_instant
from meterql.errors import InvalidInput
from meterql.ingest import _BATCH, _plausible, validate_batch
from meterql.money import (
    PrecisionError,
    charged_nanos,
    event_cost_nanos,
    format_usd,
    nanos_to_usd,
    percentage,
    usd_to_nanos,
)
from meterql.plans import effective_plan, primary
from meterql.rest_compat.params import QueryParam, coerce
from meterql.windows import (
    CHART_DAYS,
    EPOCH,
    METRICS_DAYS,
    DayWindow,
    calendar_month,
    epoch_hour,
    epoch_hour_and_quarter,
    epoch_quarter,
    epoch_seconds,
    whole_days_until,
)


@pytest.mark.parametrize(
    ("amount", "wire"),
    [
        ("0", "0.0000"),
        ("12.34", "12.3400"),
        ("0.00005", "0.0001"),  # half-up, where banker's rounding would give 0.0000
        ("0.00015", "0.0002"),
        ("0.000049999", "0.0000"),
        ("2.49995", "2.5000"),
        ("123456789.123456789", "123456789.1235"),
        ("0.00025", "0.0003"),  # half-even would give 0.0002
        ("-0.00005", "-0.0001"),  # a refund's half rounds away from zero
    ],
)
def test_format_usd_is_half_up_to_four_places(amount: str, wire: str) -> None:
    assert format_usd(Decimal(amount)) == wire
    # Whatever rounding the thread's decimal context says.
    with localcontext(rounding=ROUND_HALF_EVEN):
        assert format_usd(Decimal(amount)) == wire


@pytest.mark.parametrize(
    ("tokens_in", "tokens_out", "price_in", "price_out", "nanos"),
    [
        (1000, 500, "2.50", "10.00", 7_500_000),  # 0.0025 + 0.005
        (1, 0, "2.50", "10.00", 2_500),
        (1, 0, "0.0000005", "0", 0),  # 0.5e-12 USD rounds to 0 nanos
        (1000, 0, "0.0000005", "0", 1),  # 0.5e-9 USD: half-up to 1 nano
        (3, 0, "0.333333333", "0", 1_000),  # 999.999999 nanos → 1000
    ],
)
def test_event_cost_is_exact_to_the_nano(
    tokens_in: int, tokens_out: int, price_in: str, price_out: str, nanos: int
) -> None:
    expected = (Decimal(tokens_in) * Decimal(price_in) + Decimal(tokens_out) * Decimal(price_out)
                ) / Decimal(1_000_000) * Decimal(1_000_000_000)
    rounded = int(expected.quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    cost = event_cost_nanos(tokens_in, tokens_out, usd_to_nanos(Decimal(price_in)),
                            usd_to_nanos(Decimal(price_out)))
    assert cost == rounded == nanos


def test_nano_round_trip_and_precision() -> None:
    assert usd_to_nanos(Decimal("1.23456789")) == 1_234_567_890
    assert nanos_to_usd(1_234_567_890) == Decimal("1.23456789")
    assert usd_to_nanos(Decimal("0.0000000015"), exact=False) == 2
    with pytest.raises(PrecisionError):
        usd_to_nanos(Decimal("0.0000000015"))


@pytest.mark.parametrize(
    ("part", "whole", "pct"),
    [(1, 3, 33.33), (2, 3, 66.67), (1, 8, 12.5), (1, 6, 16.67), (0, 5, 0.0), (5, 5, 100.0),
     (3, 0, 0.0), (1, 200000, 0.0), (1, 20000, 0.01), (25630, 5_000_000, 0.51)],
)
def test_percentage(part: int, whole: int, pct: float) -> None:
    assert percentage(part, whole) == pct


@pytest.mark.parametrize(
    ("now", "days", "first", "last"),
    [
        (datetime(2026, 11, 20, 15, 30, tzinfo=UTC), 7, date(2026, 11, 14), date(2026, 11, 20)),
        (datetime(2026, 11, 20, 0, 0, tzinfo=UTC), 1, date(2026, 11, 20), date(2026, 11, 20)),
        (datetime(2026, 3, 1, 23, 59, tzinfo=UTC), 2, date(2026, 2, 28), date(2026, 3, 1)),
        (datetime(2028, 3, 1, 12, tzinfo=UTC), 2, date(2028, 2, 29), date(2028, 3, 1)),
    ],
)
def test_day_window(now: datetime, days: int, first: date, last: date) -> None:
    window = DayWindow.ending_today(now, days)
    assert (window.first_day, window.last_day) == (first, last)
    assert window.start == datetime(first.year, first.month, first.day, tzinfo=UTC)
    assert window.end - window.start == timedelta(days=days)
    assert len(list(window.dates())) == days


def test_day_window_uses_utc_dates() -> None:
    from zoneinfo import ZoneInfo

    # 01:00 in Tokyo on the 21st is still the 20th in UTC.
    now = datetime(2026, 11, 21, 1, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert DayWindow.ending_today(now, 1).last_day == date(2026, 11, 20)


def test_calendar_month() -> None:
    assert calendar_month(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert calendar_month(datetime(2026, 2, 1, tzinfo=UTC)) == (
        datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))


def test_whole_days_until() -> None:
    now = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    assert whole_days_until(now + timedelta(days=2, hours=23), now) == 2
    assert whole_days_until(now - timedelta(seconds=1), now) == 0
    assert whole_days_until(None, now) == 0


def _row(tier_id: str, cents: int, start: datetime) -> SubscriptionRow:
    tier = TierRow(tier_id, "", "", tier_id, cents, "monthly", 1, 1, 1, 1, 1)
    return SubscriptionRow(tier, "active", start, start + timedelta(days=30), None)


def test_primary_ordering() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    later = _row("b", 100, t0 + timedelta(seconds=1))
    pricier = _row("z", 900, t0)
    cheaper = _row("a", 100, t0)
    same_price_smaller_id = _row("m", 900, t0)
    assert primary([cheaper, later, pricier]) is later
    assert primary([cheaper, pricier]) is pricier
    assert primary([pricier, same_price_smaller_id]) is same_price_smaller_id
    assert primary([]) is None


def test_effective_plan_without_subscription_uses_free_limits() -> None:
    plan = effective_plan([], FreePlan(instance_limit=3), datetime(2026, 11, 20, tzinfo=UTC))
    assert plan.status == "none" and plan.tier.plan_name == "No Plan"
    assert plan.tier.instance_limit == 3 and plan.tier.token_allowance == 100_000
    assert plan.period_start == datetime(2026, 11, 1, tzinfo=UTC)


def test_several_bad_parameters_give_several_entries() -> None:
    params = [QueryParam("days", "days", METRICS_DAYS.adapter),
              QueryParam("weeks", "weeks", CHART_DAYS.adapter)]
    with pytest.raises(InvalidInput) as caught:
        coerce(QueryParams("days=1&weeks=abc"), params)
    assert [e["loc"] for e in caught.value.errors] == [["query", "days"], ["query", "weeks"]]
    assert [e["type"] for e in caught.value.errors] == ["greater_than_equal", "int_parsing"]


def test_absent_parameters_are_not_sent() -> None:
    # The schema's argument default applies: defaults live in one place.
    params = [QueryParam("days", "days", METRICS_DAYS.adapter)]
    assert coerce(QueryParams(""), params) == {}
    assert coerce(QueryParams("days=9"), params) == {"days": 9}


@pytest.mark.parametrize(
    "moment",
    [
        "2026-11-20T12:00:00+00:00",
        "0001-01-01T00:00:00+00:00",
        "0999-05-05T07:08:09.000001+00:00",
        "2026-03-29T01:30:59.123456+02:00",
        "9999-12-31T23:59:59.999999+00:00",
    ],
)
def test_sqlite_timestamps_are_stored_as_sqlalchemy_writes_them(moment: str) -> None:
    """The fast SQLite bind processor writes the very text SQLAlchemy's DATETIME would."""
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from meterql.db.types import UTCDateTime

    dialect = sqlite.dialect()
    fast = UTCDateTime().bind_processor(dialect)
    generic = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert fast is not None and generic is not None
    value = datetime.fromisoformat(moment)
    stored = fast(value)
    assert stored == generic(value.astimezone(UTC).replace(tzinfo=None))
    with pytest.raises(ValueError, match="naive"):
        fast(value.replace(tzinfo=None))
    # ...and reads it back as the same instant, as the generic parser would.
    read = UTCDateTime().result_processor(dialect, None)
    parse = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert read is not None and parse is not None
    assert read(stored) == parse(stored).replace(tzinfo=UTC) == value
    assert read(stored).tzinfo is UTC


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu",
                                  "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns",
                                  "America/Santiago", "Africa/Casablanca", "Antarctica/Troll"])
def test_hour_bounds_a_day_at_a_time_are_those_an_hour_at_a_time(zone: str) -> None:
    """Days without a transition are cut arithmetically: the same bounds as walking every hour."""
    from meterql import buckets

    tz = buckets.zone(zone)
    for first, last in [(date(2024, 1, 1), date(2025, 1, 1)), (date(1970, 1, 1), date(1971, 1, 1))]:
        start, end = buckets.day_start(first, tz), buckets.day_start(last, tz)
        walked = [start]
        while walked[-1] < end:
            moment = walked[-1]
            walked.append(buckets._next_hour_bound(moment, buckets._offset(moment, tz), end, tz))
        assert buckets._hour_bounds(start, end, tz) == walked


# gpt-4o's price: 2.50 / 10.00 USD per million tokens, in nano-USD.
GPT_4O = (2_500_000_000, 10_000_000_000)


@pytest.mark.parametrize(
    ("cost_usd", "price", "nanos"),
    [
        (None, GPT_4O, 15_000_000),  # 2000 × 2.5e-6 + 1000 × 10e-6 = 0.015 USD
        (Decimal("0.02"), GPT_4O, 20_000_000),  # a reported cost wins over the price
        (Decimal("0.0000000005"), None, 1),  # half-up to the nano-dollar
        (Decimal("0"), None, 0),  # reported as free: priced, at 0
        (None, None, None),  # neither: unpriced
    ],
)
def test_an_events_charge(
    cost_usd: Decimal | None, price: tuple[int, int] | None, nanos: int | None
) -> None:
    assert charged_nanos(cost_usd, 2000, 1000, price) == nanos


def _event(event_id: str, ts: str = "2026-11-20T14:00:00Z", **extra: object) -> dict[str, object]:
    return {"event_id": event_id, "instance_id": "inst-a", "model": "gpt-4o", "timestamp": ts,
            "tokens_in": 2000, "tokens_out": 1000, **extra}


# Batches for the plain path of validation, and whether it may take them:
# it takes a batch only when every event is plainly valid; any other goes
# through the full validation, which gives the errors.
_HORIZON = "2026-10-01T00:00:00Z"
_NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PLAUSIBLE = {
    "plain": ([_event("p1"), _event("p2", ts="2026-11-20T10:00:00-05:00")], True),
    "with-every-field": ([_event("p", end_user_id="u", conversation_id="c", cost_usd="0.25")], True),
    "at-the-skew": ([_event("p", ts="2026-11-20T15:35:00Z")], True),
    "at-the-horizon": ([_event("p", ts=_HORIZON)], True),
    "empty": ([], True),
    "past-the-skew": ([_event("p1"), _event("p2", ts="2026-11-20T15:35:00.000001Z")], False),
    "before-the-horizon": ([_event("p", ts="2026-09-30T23:59:59.999999Z")], False),
    "numeric-timestamp": ([{**_event("p"), "timestamp": 1_763_650_000}], False),
    "naive-timestamp": ([_event("p", ts="2026-11-20T12:00:00")], False),
    "year-one-in-utc": ([_event("p", ts="0001-01-01T00:30:00+01:00")], False),
    "negative-tokens": ([{**_event("p"), "tokens_in": -1}], False),
    "unknown-field": ([{**_event("p"), "colour": "red"}], False),
    "not-an-event": (["p"], False),
    "not-a-list": ({"event_id": "p"}, False),
}


@pytest.mark.parametrize("case", sorted(PLAUSIBLE))
def test_the_plain_path_of_validation_agrees_with_the_full_one(case: str) -> None:
    items, plain = PLAUSIBLE[case]
    horizon = datetime.fromisoformat(_HORIZON)
    assert (_plausible(items, _NOW, horizon) is not None) is plain
    context = {"now": _NOW, "horizon": horizon}
    try:
        expected: Any = [r.model_dump() for r in _BATCH.validate_python(items, context=context)]
    except ValidationError as error:
        expected = [(("body", *e["loc"]), e["type"]) for e in error.errors()]
    try:
        found: Any = [r.model_dump() for r in validate_batch(items, _NOW, ("body",), horizon)]
    except InvalidInput as error:
        found = [(tuple(e["loc"]), e["type"]) for e in error.errors]
    assert found == expected
    if plain:  # a plainly valid batch is accepted whole, event for event
        assert len(found) == len(items) and all(isinstance(r, dict) for r in found)


_MICROSECOND = timedelta(microseconds=1)


@pytest.mark.parametrize("moment", [
    EPOCH, EPOCH - _MICROSECOND, EPOCH + _MICROSECOND,
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC) - _MICROSECOND,
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
    datetime(2026, 11, 20, 12, 44, 59, 999_999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
])
def test_epoch_seconds_floor_as_the_hours_and_quarters_do(moment: datetime) -> None:
    seconds = epoch_seconds(moment)
    assert timedelta(seconds=seconds) <= moment - EPOCH < timedelta(seconds=seconds + 1)
    assert (seconds // 3_600, seconds // 900) == (epoch_hour(moment), epoch_quarter(moment))
    assert epoch_hour_and_quarter(moment) == (epoch_hour(moment), epoch_quarter(moment))


@pytest.mark.parametrize(("moment", "stored"), [
    (datetime(2026, 11, 20, 12, 0, tzinfo=UTC), "2026-11-20 12:00:00.000000"),
    (datetime(2026, 11, 20, 13, 0, 0, 5, tzinfo=UTC), "2026-11-20 13:00:00.000005"),
    (datetime.fromisoformat("2026-11-20T14:30:00.123456+02:00"), "2026-11-20 12:30:00.123456"),
    (datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "1969-12-31 23:59:59.999999"),
])
def test_sqlite_stores_utc_text_with_microseconds(moment: datetime, stored: str) -> None:
    assert sqlite_instant(moment) == stored


def test_sqlite_refuses_a_naive_instant() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_instant(datetime(2026, 11, 20, 12, 0))

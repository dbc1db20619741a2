"""Time windows: ``days=N`` ranges, calendar months, and the argument bounds.

A window of ``days=N`` is the N UTC calendar days ending today, inclusive.
Storage filters on ``[start, end)`` instants, so an event at 00:00:00 UTC of
the first day is in and one a second earlier is out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from meterql.records import invalid_input

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DaysArgument:
    """Bounds and default of a ``days`` argument, shared by GraphQL and REST.

    Validation goes through pydantic so GraphQL and the REST layer report a
    bad value with the very words FastAPI used (``greater_than_equal``...).
    """

    minimum: int
    maximum: int
    default: int

    @cached_property
    def adapter(self) -> TypeAdapter[int]:
        return TypeAdapter(Annotated[int, Field(ge=self.minimum, le=self.maximum)])

    def validate(self, value: object, loc: tuple[str, ...] = ("days",)) -> int:
        try:
            return self.adapter.validate_python(value)
        except ValidationError as error:
            raise invalid_input(error, loc) from None


# The seeds' ranges: metrics routes take 7..90, the billing chart 1..366.
METRICS_DAYS = DaysArgument(minimum=7, maximum=90, default=30)
CHART_DAYS = DaysArgument(minimum=1, maximum=366, default=30)


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DayWindow:
    first_day: date
    last_day: date

    @classmethod
    def ending_today(cls, now: datetime, days: int) -> DayWindow:
        today = now.astimezone(UTC).date()
        return cls(first_day=today - timedelta(days=days - 1), last_day=today)

    @property
    def start(self) -> datetime:
        return start_of_day(self.first_day)

    @property
    def end(self) -> datetime:
        """Exclusive end instant: midnight after the last day."""
        return start_of_day(self.last_day + timedelta(days=1))

    def dates(self) -> Iterator[date]:
        day = self.first_day
        while day <= self.last_day:
            yield day
            day += timedelta(days=1)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds from 1970-01-01T00:00Z to an aware instant (floor)."""
    since = moment - EPOCH
    return since.days * 86_400 + since.seconds


def epoch_hour_and_quarter(moment: datetime) -> tuple[int, int]:
    """``epoch_hour`` and ``epoch_quarter`` of an instant, from one subtraction.

    For code that needs both per event (staging an import): a microsecond an
    event less than calling the two.
    """
    seconds = epoch_seconds(moment)
    return seconds // 3_600, seconds // 900


def epoch_hour(moment: datetime) -> int:
    """The hour an aware instant falls in, counted from 1970-01-01T00:00Z (floor)."""
    return (moment - EPOCH) // HOUR


QUARTER = timedelta(minutes=15)


def epoch_quarter(moment: datetime) -> int:
    """The quarter hour an aware instant falls in, counted from 1970-01-01T00:00Z (floor)."""
    return (moment - EPOCH) // QUARTER


def hour_start(hour: int) -> datetime:
    return EPOCH + hour * HOUR


@dataclass(frozen=True, slots=True)
class RangeParts:
    """``[start, end)`` cut on the grains storage keeps, coarsest first.

    ``days`` (first and last, inclusive) are whole UTC days inside the range;
    ``hours`` are half-open spans of whole epoch hours around them; ``instants``
    are the half-open spans left over, shorter than an hour each. Together
    they cover the range exactly once.
    """

    days: tuple[date, date] | None
    hours: tuple[tuple[int, int], ...]
    instants: tuple[tuple[datetime, datetime], ...]


def split_range(start: datetime, end: datetime) -> RangeParts:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return RangeParts(None, (), ())
    first_midnight = start_of_day(start.date())
    if first_midnight < start:
        first_midnight += timedelta(days=1)
    last_midnight = start_of_day(end.date())
    if first_midnight < last_midnight:
        days = (first_midnight.date(), last_midnight.date() - timedelta(days=1))
        edges = [(start, first_midnight), (last_midnight, end)]
    else:
        days, edges = None, [(start, end)]
    hours: list[tuple[int, int]] = []
    instants: list[tuple[datetime, datetime]] = []
    for a, b in edges:
        if a >= b:
            continue
        first_hour = -((EPOCH - a) // HOUR)  # ceiling
        last_hour = epoch_hour(b)
        if first_hour < last_hour:
            hours.append((first_hour, last_hour))
            instants += [(a, hour_start(first_hour)), (hour_start(last_hour), b)]
        else:
            instants.append((a, b))
    return RangeParts(
        days, tuple(hours), tuple((a, b) for a, b in instants if a < b)
    )


def calendar_month(now: datetime) -> tuple[datetime, datetime]:
    """``[first instant of this UTC month, first instant of the next)``."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    if now.month == 12:
        end = datetime(now.year + 1, 1, 1, tzinfo=UTC)
    else:
        end = datetime(now.year, now.month + 1, 1, tzinfo=UTC)
    return start, end


def whole_days_until(moment: datetime | None, now: datetime) -> int:
    """Whole days from ``now`` to ``moment``, rounded down, never below 0."""
    if moment is None or moment <= now:
        return 0
    return (moment - now) // timedelta(days=1)

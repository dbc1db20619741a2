"""Buckets of local time: a range of local dates in a zone, cut by hour, day, week or month.

Pure Python (``zoneinfo``), no storage. A query names its range in local
dates (``from``..``to``, or the last ``days`` ending today in the zone) and a
grain; this module turns that into the buckets' bounds as UTC epoch seconds,
which storage sums over (``db/series.py``).

Bucket rules, in the zone's own clock:

- A day starts at the first instant whose local date is that day (normally
  local midnight; where midnight falls in a DST gap, the end of the gap).
  So days are 23, 24 or 25 hours long (23.5 and 24.5 on Lord Howe).
- A week is an ISO week (Monday to Sunday), a month a calendar month; both
  are clipped to the range, so the first and last buckets may be short.
- An hour bucket is a run of instants sharing local date, local hour and UTC
  offset: the hour repeated when clocks fall back is two buckets (a 25-hour
  day has 25), the hour skipped in spring none (23), and on Lord Howe the
  half hour around a transition is a bucket of its own.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from meterql.errors import InvalidInput
from meterql.windows import EPOCH, DaysArgument

# ``days``: the N local days ending today in the zone, today included.
USAGE_DAYS = DaysArgument(minimum=1, maximum=366, default=30)
MAX_RANGE_DAYS = 366
# Dates whose buckets every zone can still express in Python, with the UTC
# midnights nearest their edges (storage reads from those): a local day at
# -12:00 ends at noon UTC the day after, and its nearest midnight is later still.
FIRST_DATE, LAST_DATE = date(1, 1, 2), date(9999, 12, 29)
DEFAULT_ZONE = "UTC"

_DAY = 86_400
_HOUR = 3_600


class Granularity(enum.Enum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


def refusal(loc: tuple[str, ...], message: str, value: object, kind: str) -> InvalidInput:
    """An :class:`InvalidInput` shaped like pydantic's entries, as the other arguments'."""
    where = ".".join(loc)
    return InvalidInput(
        f"{where}: {message}", [{"type": kind, "loc": list(loc), "msg": message, "input": value}]
    )


# The areas of the IANA database's region zones (``Europe/Berlin``), and
# ``Etc`` for fixed offsets (``Etc/GMT+12``). The database also holds names
# that are not places: ``localtime`` and ``Factory`` (whose meaning is the
# host's, and would reveal it), ``posixrules``, the ``posix/`` and ``right/``
# copies, and old abbreviations (``EST``, ``US/Eastern``); none is accepted.
ZONE_AREAS = frozenset({
    "Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe",
    "Indian", "Pacific", "Etc",
})


@cache
def known_zones() -> frozenset[str]:
    """Every zone name ``zone`` accepts: the region zones, ``Etc/*`` and ``UTC``."""
    # Checked against the list first: ZoneInfo would also try to open any
    # relative path it is given, and raises different errors for each oddity.
    return frozenset(
        name for name in available_timezones() if name.partition("/")[0] in ZONE_AREAS
        and "/" in name
    ) | {DEFAULT_ZONE}


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` ("Europe/Berlin"); anything else is refused."""
    if name in known_zones():
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise refusal(
        ("tz",), "Unknown time zone; expected an IANA name such as 'Europe/Berlin' or 'UTC'",
        name, "time_zone",
    )


@dataclass(frozen=True, slots=True)
class LocalRange:
    """Local dates ``first``..``last`` (inclusive) in ``zone``."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def local_range(
    zone_name: str,
    now: datetime,
    *,
    first: date | None = None,
    last: date | None = None,
    days: int | None = None,
) -> LocalRange:
    """The range asked for: explicit dates, or ``days`` ending today in the zone (default 30)."""
    tz = zone(zone_name)
    if first is not None and last is not None:
        if days is not None:
            raise refusal(("days",), "Give either range or days, not both", days, "exclusive")
        if first > last:
            raise refusal(("range", "to"), "Must not be before range.from", last.isoformat(),
                          "date_order")
        for loc, value in ((("range", "from"), first), (("range", "to"), last)):
            if not FIRST_DATE <= value <= LAST_DATE:
                raise refusal(loc, f"Must be between {FIRST_DATE} and {LAST_DATE}",
                              value.isoformat(), "date_bounds")
        if (last - first).days + 1 > MAX_RANGE_DAYS:
            raise refusal(("range",), f"A range spans at most {MAX_RANGE_DAYS} days",
                          {"from": first.isoformat(), "to": last.isoformat()}, "range_too_long")
        return LocalRange(first, last, tz)
    count = USAGE_DAYS.validate(USAGE_DAYS.default if days is None else days)
    today = now.astimezone(tz).date()
    return LocalRange(today - timedelta(days=count - 1), today, tz)


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime  # aware, in the range's zone
    end: datetime
    date: date  # the local date of ``start``
    label: str  # 2026-03-29T02:00+01:00, 2026-03-29, 2026-W13, 2026-03


@dataclass(frozen=True)
class BucketPlan:
    """The buckets' bounds as epoch seconds: bucket i is ``[bounds[i], bounds[i+1])``.

    The bounds are the plan: what a query reads by and a budget counts. The
    buckets themselves (aware instants, dates, labels) are made from them the
    first time an answer shows them, and not before: a year of hours whose
    totals alone are asked for never makes its 8,784 buckets.
    """

    range: LocalRange
    granularity: Granularity
    bounds: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many buckets the plan has."""
        return len(self.bounds) - 1

    @property
    def start(self) -> datetime:
        """The first bucket's start, in the range's zone."""
        return _instant(self.bounds[0]).astimezone(self.range.zone)

    @property
    def end(self) -> datetime:
        """The last bucket's end, in the range's zone."""
        return _instant(self.bounds[-1]).astimezone(self.range.zone)

    @cached_property
    def buckets(self) -> tuple[Bucket, ...]:
        tz = self.range.zone
        made = []
        for low, high in itertools.pairwise(self.bounds):
            start = _instant(low).astimezone(tz)
            made.append(Bucket(start=start, end=_instant(high).astimezone(tz),
                               date=start.date(), label=_label(start, self.granularity)))
        return tuple(made)


def _seconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(seconds=1)


def _instant(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _offset(seconds: int, tz: ZoneInfo) -> int:
    offset = _instant(seconds).astimezone(tz).utcoffset()
    assert offset is not None
    return offset // timedelta(seconds=1)


def _wall(seconds: int, tz: ZoneInfo) -> datetime:
    return _instant(seconds).astimezone(tz).replace(tzinfo=None)


def first_instant(wall: datetime, tz: ZoneInfo) -> int:
    """The first instant (epoch seconds) at which the zone's clock reads ``wall`` or later.

    A wall time that occurs twice (clocks falling back) gives its first
    occurrence; one that never occurs (a spring-forward gap) gives the end
    of the gap, where the clock jumps past it.
    """
    candidates = sorted(
        _seconds(wall.replace(tzinfo=tz, fold=fold)) for fold in (0, 1)
    )
    for candidate in candidates:
        if _wall(candidate, tz) == wall:
            return candidate
    # In a gap: the clock reads before ``wall`` at the earlier candidate and
    # after it at the later one; the jump lies between, to the second.
    low, high = candidates
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(middle, tz) >= wall:
            high = middle
        else:
            low = middle
    return high


def day_start(day: date, tz: ZoneInfo) -> int:
    return first_instant(datetime.combine(day, time.min), tz)


def _day_starts(local: LocalRange, granularity: Granularity) -> list[date]:
    """The first local date of each bucket, then the day after the range."""
    starts = [local.first]
    day = local.first + timedelta(days=1)
    while day <= local.last:
        if (
            granularity is Granularity.DAY
            or (granularity is Granularity.WEEK and day.isoweekday() == 1)
            or (granularity is Granularity.MONTH and day.day == 1)
        ):
            starts.append(day)
        day += timedelta(days=1)
    return [*starts, local.last + timedelta(days=1)]


def _hour_bounds(start: int, end: int, tz: ZoneInfo) -> list[int]:
    """Every instant in ``[start, end]`` where local date, hour or UTC offset changes.

    A day at a time: a day whose UTC offset is the same at both ends (all
    of them but a few a year) has its hours every 3,600 seconds from its
    start; only a day with a transition is walked an hour at a time.
    """
    bounds = [start]
    moment = start
    while moment < end:
        offset = _offset(moment, tz)
        # The next local midnight (or the end), if the offset holds until then.
        wall = _wall(moment, tz)
        midnight = first_instant(datetime.combine(wall.date() + timedelta(days=1), time.min), tz)
        day_end = min(midnight, end)
        if (wall.minute, wall.second) == (0, 0) and _offset(day_end - 1, tz) == offset \
                and (day_end - moment) % _HOUR == 0:
            bounds.extend(range(moment + _HOUR, day_end + 1, _HOUR))
            moment = day_end
            continue
        following = _next_hour_bound(moment, offset, end, tz)
        bounds.append(following)
        moment = following
    return bounds


def _next_hour_bound(moment: int, offset: int, end: int, tz: ZoneInfo) -> int:
    """The next bound after ``moment``: the next local hour, or a transition before it."""
    following = min(moment + _HOUR - (moment + offset) % _HOUR, end)
    if _offset(following - 1, tz) != offset:
        # A transition inside the hour (Lord Howe's half hours, or a zone
        # changing at an odd minute) ends the bucket where it happens.
        low, high = moment, following - 1
        while high - low > 1:
            middle = (low + high) // 2
            if _offset(middle, tz) == offset:
                low = middle
            else:
                high = middle
        following = high
    return following


def _label(start: datetime, granularity: Granularity) -> str:
    if granularity is Granularity.HOUR:
        return start.isoformat(timespec="minutes")
    if granularity is Granularity.DAY:
        return start.date().isoformat()
    if granularity is Granularity.WEEK:
        year, week, _ = start.date().isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year:04d}-{start.month:02d}"


class _Plans:
    """Plans already cut, kept while their buckets fit in a budget, least recently used out.

    A plan depends on nothing but its dates, zone and grain: a dashboard's
    90 days in Berlin is the same plan for every request of the day, and
    cutting it (a zone conversion per day edge) cost more than the query.
    The budget counts buckets, so a year of hours takes the room of a
    hundred small plans, never more than the budget.
    """

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._held = 0
        self._plans: OrderedDict[tuple[LocalRange, Granularity], BucketPlan] = OrderedDict()

    def get(self, local: LocalRange, granularity: Granularity) -> BucketPlan:
        key = (local, granularity)
        found = self._plans.get(key)
        if found is not None:
            self._plans.move_to_end(key)
            return found
        made = _cut(local, granularity)
        size = made.count
        if size <= self._budget:
            while self._held + size > self._budget:
                _, dropped = self._plans.popitem(last=False)
                self._held -= dropped.count
            self._plans[key] = made
            self._held += size
        return made


# About 15 MB of buckets at most.
_PLANS = _Plans(budget=50_000)


def plan(local: LocalRange, granularity: Granularity) -> BucketPlan:
    """The range's buckets, oldest first, every one present (zero-filling is the caller's)."""
    return _PLANS.get(local, granularity)


def _cut(local: LocalRange, granularity: Granularity) -> BucketPlan:
    tz = local.zone
    if granularity is Granularity.HOUR:
        # Any range: the size of an answer is bounded by the request's
        # point budget (meterql.points), not by the grain.
        bounds = _hour_bounds(day_start(local.first, tz),
                              day_start(local.last + timedelta(days=1), tz), tz)
    else:
        bounds = [day_start(day, tz) for day in _day_starts(local, granularity)]
    return BucketPlan(local, granularity, tuple(bounds))


def whole(local: LocalRange) -> BucketPlan:
    """The range as one bucket: what an answer needs when it shows no series.

    Its totals and groups are those of the range's buckets together, read in
    one go: a page showing fifty instances' totals reads fifty rows, not
    fifty series.
    """
    low, high = day_start(local.first, local.zone), day_start(local.last + timedelta(days=1),
                                                              local.zone)
    return BucketPlan(local, Granularity.DAY, (low, high))


# A CSV export (``GET /v1/export/usage.csv``) reads its range a chunk at a
# time: at most a month of days, and at most about this many series points
# (buckets x groups) per chunk, so one chunk's answer bounds its memory.
CHUNK_DAYS = 31
CHUNK_POINTS = 20_000
# The most hour buckets a local day can have (25 when clocks fall back).
_HOURS_PER_DAY = 25


def chunks(
    local: LocalRange, granularity: Granularity, groups: int = 1, *, points: int = CHUNK_POINTS
) -> tuple[LocalRange, ...]:
    """``local`` cut into consecutive sub-ranges of whole buckets, oldest first.

    Each chunk plans to exactly the buckets the whole range has there (a chunk
    edge is always a bucket edge: a local day start for HOUR and DAY, a Monday
    for WEEK, a 1st for MONTH), so the chunks' series, one after the other,
    are the range's series. A chunk holds whole buckets spanning at most
    :data:`CHUNK_DAYS` days and about ``points`` buckets x ``groups`` series
    points, and always at least one bucket (a day of hours, a week, a month).
    """
    per_day = (_HOURS_PER_DAY if granularity is Granularity.HOUR else 1) * max(1, groups)
    longest = max(1, min(CHUNK_DAYS, points // per_day))
    unit = Granularity.DAY if granularity is Granularity.HOUR else granularity
    # The first day of each bucket, then the day after the range.
    starts = _day_starts(local, unit)
    found = []
    first = end = starts[0]
    for following in starts[1:]:
        if (following - first).days > longest and end > first:
            found.append(LocalRange(first, end - timedelta(days=1), local.zone))
            first = end
        end = following
    found.append(LocalRange(first, end - timedelta(days=1), local.zone))
    return tuple(found)


def utc(seconds: int) -> datetime:
    """Epoch seconds as an aware UTC instant."""
    return _instant(seconds).astimezone(UTC)

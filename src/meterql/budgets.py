"""Budgets: a limit on what an account, one instance or one model spends, and when it alerts.

The rules, in one place (``docs/graphql.md``, "Budgets", says them to users):

- A budget *measures* cost (USD, exact), tokens (in + out) or requests, of
  its *scope*: the whole account, one instance, or one model.
- Its *period* is a calendar day, ISO week (from Monday) or month in the
  budget's time zone, or the billing period: the plan's current period
  (the primary live subscription's, else the UTC calendar month), as the
  local dates it covers in the zone, from the date of its start through the
  date of the instant before its end. A period is always whole local days,
  which is what lets ``spent`` be ``usage``'s total for the same scope and
  dates, from the same rollups (tested).
- ``percentUsed`` is ``100 × spent / limit`` (two places); a threshold is
  crossed once ``spent × 100 ≥ limit × threshold`` (integers: exact).
- ``status`` is ``EXCEEDED`` from the limit on, ``WARNING`` from the lowest
  threshold on, else ``OK``.
- ``forecast`` is linear: what the period will have spent at its end if it
  goes on as it went so far, ``spent × length / elapsed``, time counted in
  whole quarter hours (so an answer changes with its ETag's clock, never
  between two of its ticks); the period's spent once it has ended.

Alerts (``db/budgets.py`` records them): a threshold crossed by an accepted
batch records one alert for (budget, revision, period, threshold), in the
batch's transaction. An edit of the limit or the thresholds is a new
*revision*; making or editing a budget marks the thresholds its period has
already crossed as *silent* (they fire nothing), so an edit fires nothing by
itself, and a raised limit re-arms exactly the thresholds above the spent.
A budget watches the periods that end after it was made or last edited: a
late event for a period that ended before then alerts nothing.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from meterql.buckets import LocalRange, day_start, refusal, zone
from meterql.errors import InvalidInput
from meterql.money import format_usd, nanos_to_usd, percentage, usd_to_nanos
from meterql.windows import EPOCH

# At most this many budgets per account: each is read for every accepted batch.
MAX_BUDGETS = 100
DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLDS = 10
MAX_THRESHOLD = 1_000  # percent
# Amounts fit a signed 64-bit column with room to add a period's usage.
MAX_AMOUNT = 2**62
MAX_NAME = 200
_QUARTER_HOUR = 900


class Scope(enum.Enum):
    ACCOUNT = "ACCOUNT"
    INSTANCE = "INSTANCE"
    MODEL = "MODEL"


class Measure(enum.Enum):
    COST = "COST"
    TOKENS = "TOKENS"
    REQUESTS = "REQUESTS"


class Period(enum.Enum):
    BILLING_PERIOD = "BILLING_PERIOD"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


class Status(enum.Enum):
    OK = "OK"
    WARNING = "WARNING"
    EXCEEDED = "EXCEEDED"


@dataclass(frozen=True, slots=True)
class Rule:
    """A budget as stored: what it limits, over what, and when it alerts."""

    budget_id: str
    name: str
    scope: Scope
    scope_key: str  # the instance id or model name; "" for the account
    measure: Measure
    limit: int  # nano-USD for COST, else a count
    period: Period
    time_zone: str
    thresholds: tuple[int, ...]  # ascending percentages
    revision: int
    created_at: datetime
    watched_from: datetime

    def covers(self, instance_id: str, model: str) -> bool:
        """Whether an event of this instance and model counts toward the budget."""
        if self.scope is Scope.INSTANCE:
            return instance_id == self.scope_key
        if self.scope is Scope.MODEL:
            return model == self.scope_key
        return True


def new_budget_id() -> str:
    return "bud_" + secrets.token_hex(8)


def alert_id(created_at: datetime, threshold: int) -> str:
    """An alert's id: its instant and threshold first, so key order is time order."""
    micros = (created_at - EPOCH) // timedelta(microseconds=1)
    return f"alt_{micros:017d}_{threshold:04d}_{secrets.token_hex(4)}"


# --- reading what a client sends ---------------------------------------------------------------


def parse_limit(measure: Measure, text: str, loc: tuple[str, ...]) -> int:
    """A limit as stored: USD (up to 4 places) in nano-USD, or a whole count; above 0."""
    value = text.strip()
    if measure is Measure.COST:
        try:
            amount = Decimal(value)
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or amount.as_tuple().exponent < -4:  # type: ignore[operator]
            raise refusal(loc, "A USD amount with at most 4 decimal places, e.g. '250.00'",
                          text, "decimal_parsing")
        stored = usd_to_nanos(amount)
    else:
        if not value.isascii() or not value.isdigit():
            raise refusal(loc, "A whole number, e.g. '5000000'", text, "int_parsing")
        stored = int(value)
    if not 0 < stored <= MAX_AMOUNT:
        raise refusal(loc, "Must be greater than 0, and not absurdly large", text,
                      "greater_than")
    return stored


def parse_thresholds(values: Sequence[int] | None, loc: tuple[str, ...]) -> tuple[int, ...]:
    if values is None:
        return DEFAULT_THRESHOLDS
    found = tuple(sorted(set(values)))
    if not 1 <= len(found) <= MAX_THRESHOLDS or not all(
        1 <= t <= MAX_THRESHOLD for t in found
    ):
        raise refusal(loc, f"1 to {MAX_THRESHOLDS} whole percentages, each 1..{MAX_THRESHOLD}",
                      list(values), "thresholds")
    return found


def parse_name(value: str | None, loc: tuple[str, ...]) -> str:
    name = (value or "").strip()
    if len(name) > MAX_NAME or "\x00" in name:
        raise refusal(loc, f"At most {MAX_NAME} characters", value, "string_too_long")
    return name


def check_zone(name: str, loc: tuple[str, ...]) -> str:
    try:
        zone(name)
    except InvalidInput:
        raise refusal(loc, "Unknown time zone; expected an IANA name such as "
                      "'Europe/Berlin' or 'UTC'", name, "time_zone") from None
    return name


def format_thresholds(thresholds: Sequence[int]) -> str:
    return ",".join(str(t) for t in thresholds)


def read_thresholds(stored: str) -> tuple[int, ...]:
    return tuple(int(t) for t in stored.split(",") if t)


# --- writing what a client reads ----------------------------------------------------------------


def format_amount(measure: Measure, amount: int) -> str:
    """USD with 4 places, half-up (as every cost of the API), or a whole count."""
    if measure is Measure.COST:
        return format_usd(nanos_to_usd(amount))
    return str(amount)


# --- periods ---------------------------------------------------------------------------------


def calendar_period(rule: Rule, instant: datetime) -> LocalRange:
    """The day, ISO week or month of ``instant`` in the budget's zone, as local dates."""
    tz = zone(rule.time_zone)
    day = instant.astimezone(tz).date()
    if rule.period is Period.DAY:
        return LocalRange(day, day, tz)
    if rule.period is Period.WEEK:
        monday = day - timedelta(days=day.weekday())
        return LocalRange(monday, monday + timedelta(days=6), tz)
    if rule.period is Period.MONTH:
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return LocalRange(first, following - timedelta(days=1), tz)
    raise ValueError("the billing period is the plan's, not the calendar's")


def current_period(
    rule: Rule, now: datetime, billing: tuple[datetime, datetime] | None
) -> LocalRange:
    """The budget's period now; ``billing`` is the plan's period, for a billing period budget."""
    if rule.period is Period.BILLING_PERIOD:
        if billing is None:
            raise ValueError("a billing period budget needs the plan's period")
        return billing_period(rule, *billing)
    return calendar_period(rule, now)


def billing_period(rule: Rule, start: datetime, end: datetime) -> LocalRange:
    """The plan's period ``[start, end)`` as the local dates it covers in the budget's zone."""
    tz = zone(rule.time_zone)
    last_instant = end - timedelta(microseconds=1)
    first, last = start.astimezone(tz).date(), last_instant.astimezone(tz).date()
    return LocalRange(first, max(first, last), tz)


def bounds(period: LocalRange) -> tuple[datetime, datetime]:
    """The period's first instant and the first instant after it, in UTC."""
    low = day_start(period.first, period.zone)
    high = day_start(period.last + timedelta(days=1), period.zone)
    return EPOCH + timedelta(seconds=low), EPOCH + timedelta(seconds=high)


def watches(rule: Rule, period: LocalRange) -> bool:
    """Whether the budget alerts for ``period``: one that ended before it was made or
    edited is not its business."""
    return bounds(period)[1] > rule.watched_from


# --- what a budget says ------------------------------------------------------------------------


def crossed(rule: Rule, spent: int, limit: int | None = None) -> tuple[int, ...]:
    """The thresholds ``spent`` has reached (at ``limit``, the budget's own by default)."""
    limit = rule.limit if limit is None else limit
    return tuple(t for t in rule.thresholds if spent * 100 >= limit * t)


def status(rule: Rule, spent: int) -> Status:
    if spent >= rule.limit:
        return Status.EXCEEDED
    if crossed(rule, spent):
        return Status.WARNING
    return Status.OK


def percent_used(rule: Rule, spent: int) -> float:
    return percentage(spent, rule.limit)


def forecast(spent: int, period: LocalRange, now: datetime) -> int:
    """Spent at the period's end if it goes on as so far: linear, in whole quarter hours."""
    start, end = bounds(period)
    if now >= end:
        return spent
    ticks = (now - EPOCH) // timedelta(seconds=_QUARTER_HOUR)
    elapsed = max(ticks * _QUARTER_HOUR - int((start - EPOCH).total_seconds()), _QUARTER_HOUR)
    length = int((end - start).total_seconds())
    return spent * length // elapsed


def amount_of(measure: Measure, requests: int, tokens_in: int, tokens_out: int,
              cost_nanos: int) -> int:
    """A measure's amount out of usage's sums."""
    if measure is Measure.COST:
        return cost_nanos
    if measure is Measure.TOKENS:
        return tokens_in + tokens_out
    return requests


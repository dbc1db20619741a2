"""Validated input records: what the import file, GraphQL and REST ingest accept.

One set of pydantic models for every way data gets in, so a value that one
path refuses is refused by all of them with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from meterql.errors import InvalidInput
from meterql.money import PrecisionError, usd_to_nanos

# No NUL characters: PostgreSQL text cannot hold them, and an id one backend
# stores must be storable on the other. (pydantic already refuses strings
# with unpaired surrogates, which no database can encode either.)
_NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL)]
Text = Annotated[str, StringConstraints(max_length=255, pattern=_NO_NUL)]
OptionalId = Annotated[str, StringConstraints(max_length=200, pattern=_NO_NUL)]


def _integral_number(value: object) -> object:
    """JSON has one kind of number: ``783.0`` and ``7.83e2`` are the integer 783.

    Bodies are decoded with Decimals. Only a finite one with no fraction and
    at most 30 digits becomes an int (a huge exponent would make a huge int);
    anything else reaches the strict check as it came, and is refused there.
    """
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.adjusted() <= 30
        and value == value.to_integral_value()
    ):
        return int(value)
    return value


# The conversion wraps the bounded type (it comes last), so the JSON schema
# still says minimum and maximum.
_INTEGRAL = BeforeValidator(_integral_number)
Count = Annotated[StrictInt, Field(ge=0, le=2**62), _INTEGRAL]
# Bounds that keep one event's cost within a 64-bit count of nano-dollars:
# 1e10 tokens × 1e5 USD per million tokens = 1e9 USD = 1e18 nano-USD.
Tokens = Annotated[StrictInt, Field(ge=0, le=10**10), _INTEGRAL]
SubscriptionStatus = Literal["trialing", "active", "past_due", "canceled", "expired"]
# read: queries; ingest: usage events; manage: budgets (make, change, delete).
Scope = Literal["read", "ingest", "manage"]
LIVE_STATUSES: tuple[str, ...] = ("trialing", "active", "past_due")


def _nano_exact(value: Decimal) -> Decimal:
    try:
        usd_to_nanos(value, exact=True)
    except PrecisionError as error:
        raise ValueError(str(error)) from None
    return value


Usd = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 5), AfterValidator(_nano_exact)]
# A reported cost may carry more digits than a nano-dollar; it is rounded half-up.
ReportedUsd = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 9, allow_inf_nan=False)]


_ID: TypeAdapter[str] = TypeAdapter(Id)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` passes as an ``Id``; one that does not was never stored as one."""
    try:
        _ID.validate_python(value)
    except ValidationError:
        return False
    return True


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRecord(Record):
    model: Id
    provider: Text = ""
    input_usd_per_mtok: Usd
    output_usd_per_mtok: Usd


class TierRecord(Record):
    tier_id: Id
    tier_slug: Text = ""
    product_name: Text = ""
    plan_name: Text = ""
    price_cents: Count = 0
    billing_cycle: Text = ""
    api_call_limit: Count = 0
    conversation_limit: Count = 0
    instance_limit: Count = 0
    max_sites_per_node: Count = 0
    token_allowance: Count = 0


class TokenRecord(Record):
    token: Annotated[str, StringConstraints(min_length=8, max_length=500)]
    scopes: Annotated[list[Scope], Field(min_length=1)] = ["read"]


class InstanceRecord(Record):
    instance_id: Id
    hostname: Text = ""
    status: Annotated[str, StringConstraints(max_length=50, pattern=_NO_NUL)] = "unknown"


class SubscriptionRecord(Record):
    tier_id: Id
    status: SubscriptionStatus
    current_period_start: AwareDatetime
    current_period_end: AwareDatetime
    trial_ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _period_is_forward(self) -> SubscriptionRecord:
        if self.current_period_end <= self.current_period_start:
            raise ValueError("current_period_end must be after current_period_start")
        return self


class NodeRecord(Record):
    node_id: Id
    hosted_sites: Count = 0


class AccountRecord(Record):
    account_id: Id
    tokens: list[TokenRecord] = []
    instances: list[InstanceRecord] = []
    subscriptions: list[SubscriptionRecord] = []
    webhost_nodes: list[NodeRecord] = []


# Live ingest refuses events stamped further ahead than this (clock skew allowance).
MAX_FUTURE_SKEW = timedelta(minutes=5)


def _representable_and_not_in_the_future(value: datetime, info: ValidationInfo) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None
    context = info.context or {}
    now = context.get("now")
    if now is not None and value > now + MAX_FUTURE_SKEW:
        raise ValueError("timestamp is more than 5 minutes in the future")
    horizon = context.get("horizon")
    if horizon is not None and value < horizon:
        raise ValueError(before_the_horizon(horizon))
    return value


def before_the_horizon(horizon: datetime) -> str:
    """Why an event older than the retention horizon is refused."""
    return (
        "timestamp is before the retention horizon "
        f"{horizon.astimezone(UTC).isoformat().replace('+00:00', 'Z')}: raw events are kept "
        "METERQL_RAW_EVENT_RETENTION_DAYS days"
    )


def _written_as_text(value: object) -> object:
    """A timestamp is ISO 8601 text with its offset, as GraphQL's ``DateTime`` takes it.

    pydantic would also read a number as seconds since 1970: ``1700000000``
    is no date anybody wrote, and the contract says ISO 8601 with a zone.
    """
    if isinstance(value, str | datetime):
        return value
    raise PydanticCustomError(
        "datetime_type",
        "Input should be an ISO 8601 date and time with a UTC offset, e.g. 2026-11-20T12:00:00Z",
    )


# An annotation rather than a ``field_validator``, so that a subclass that
# redeclares ``timestamp`` (``PlausibleEventRecord``) drops the range check.
EventTimestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_written_as_text),
    AfterValidator(_representable_and_not_in_the_future),
]


class UsageEventRecord(Record):
    """A usage event as an instance reports it; the account comes from the token.

    Validated with ``context={"now": <aware datetime>}`` it also refuses
    timestamps more than :data:`MAX_FUTURE_SKEW` ahead of that instant, and
    with ``"horizon"`` those before it (``meterql.retention``).
    """

    event_id: Id
    instance_id: Id
    model: Id
    timestamp: EventTimestamp
    tokens_in: Tokens
    tokens_out: Tokens
    end_user_id: OptionalId | None = None
    conversation_id: OptionalId | None = None
    cost_usd: ReportedUsd | None = None


class EventRecord(UsageEventRecord):
    """A usage event in an import file, which names its account."""

    account_id: Id


# Wall-clock bounds two days inside what ``datetime`` can represent: whatever
# its UTC offset (under 24 hours), a timestamp within them converts to UTC.
_PLAUSIBLE_FROM = datetime(1, 1, 3, tzinfo=UTC)
_PLAUSIBLE_TO = datetime(9999, 12, 29, tzinfo=UTC)


# A timestamp checked by pydantic-core alone: see PlausibleEventRecord.
PlausibleTimestamp = Annotated[AwareDatetime, Field(ge=_PLAUSIBLE_FROM, le=_PLAUSIBLE_TO)]


class PlausibleUsageEventRecord(UsageEventRecord):
    """:class:`UsageEventRecord` checked by pydantic-core alone, for live ingest's speed.

    As :class:`PlausibleEventRecord` is to :class:`EventRecord`: what it
    accepts, :class:`UsageEventRecord` accepts as the same values, once the
    caller has also checked that each timestamp was text and falls within
    the skew and horizon of :class:`UsageEventRecord`'s context.
    """

    timestamp: PlausibleTimestamp


class PlausibleEventRecord(EventRecord):
    """:class:`EventRecord` checked by pydantic-core alone, for bulk import's speed.

    Its timestamp check is a plain range, narrower than the Python check of
    :class:`EventRecord` (which runs without a ``now`` in an import): what it
    accepts, :class:`EventRecord` accepts as the same values. What it refuses
    must be validated again with :class:`EventRecord`, which gives the error
    or, near the ends of the range, accepts the event after all. It takes a
    number for a timestamp, which :class:`EventRecord` refuses: callers send
    an event whose timestamp is not text to :class:`EventRecord` instead.
    """

    timestamp: PlausibleTimestamp


def json_path(prefix: str, loc: Sequence[int | str]) -> str:
    """``("usage_events", 3, "tokens_in")`` → ``$.usage_events[3].tokens_in``."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def first_error(error: ValidationError, prefix: str) -> tuple[str, str]:
    """The JSON path and message of the first problem pydantic found."""
    detail = error.errors(include_url=False)[0]
    return json_path(prefix, detail["loc"]), detail["msg"]


def error_entries(error: ValidationError, loc_prefix: Sequence[int | str]) -> list[dict[str, Any]]:
    """pydantic's error entries with ``loc`` rooted at ``loc_prefix`` (FastAPI's shape)."""
    entries = []
    for detail in error.errors(include_url=False, include_context=True):
        entry: dict[str, Any] = {
            "type": detail["type"],
            "loc": [*loc_prefix, *(_jsonable(part) for part in detail["loc"])],
            "msg": detail["msg"],
            "input": _jsonable(detail["input"]),
        }
        if "ctx" in detail:
            entry["ctx"] = {key: _jsonable(value) for key, value in detail["ctx"].items()}
        entries.append(entry)
    return entries


def invalid_input(error: ValidationError, loc_prefix: Sequence[int | str]) -> InvalidInput:
    """The one way a pydantic failure becomes :class:`InvalidInput`.

    The message names the first bad value (``events.3.tokens_in: Input
    should be ...``); ``errors`` keeps every entry in FastAPI's shape.
    """
    entries = error_entries(error, loc_prefix)
    first = entries[0]
    where = ".".join(str(part) for part in first["loc"])
    return InvalidInput(f"{where}: {first['msg']}", entries)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Far deeper than any record: a body nested further (JSON allows ~1000
# levels) is echoed cut short there instead of recursing out of stack.
_MAX_ECHO_DEPTH = 32
# Numbers with more integer digits than this are echoed as strings: Python
# refuses to write an int of over 4300 digits, and a JSON number's exponent
# can ask for billions.
_MAX_ECHO_DIGITS = 1000


def _jsonable(value: Any, depth: int = 0) -> Any:
    """JSON-safe copies of the values pydantic reports (as FastAPI's encoder did).

    A lone surrogate (JSON ``"\\ud800"``) cannot be written as UTF-8, so the
    422 that refuses it would itself fail: it is echoed as U+FFFD instead.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, Decimal):
        if not value.is_finite() or value.adjusted() >= _MAX_ECHO_DIGITS:
            # 1e999999999 as an int would take minutes and gigabytes to build.
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict | list | tuple) and depth >= _MAX_ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {_jsonable(str(k)): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

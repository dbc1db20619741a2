"""Scalars whose wire form is part of the contract.

``Decimal``  money: a string with exactly 4 places, rounded half-up on output
             (``"12.3400"``); parsed from a string, never from a float.
``DateTime`` an instant, always written in UTC with a ``Z`` suffix.
``BigInt``   a JSON integer beyond GraphQL's 32-bit ``Int`` (token counts grow fast).
``ExactDecimal``  a rate such as a price per million tokens: at least 4 places, and
             every further digit it has (``"0.1500"``, ``"0.01875"``), never rounded.
``OffsetDateTime`` an instant written with the UTC offset of a query's time zone
             (``2026-03-29T00:00:00+01:00``): the edges of ``usage`` buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import NewType

import strawberry

from meterql.money import format_usd


class ScalarInputError(ValueError):
    """A value sent for one of these scalars that it cannot take: the client's mistake.

    Raised by every parser here, whether the value came in a variable or
    written into the document (a default, an inline argument), so that the
    error is reported as GraphQL reports any invalid input, never masked as
    a bug (``schema/errors.py``).
    """


def _isoformat(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise ScalarInputError(str(error)) from None


def _parse_decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        # Floats have already lost exactness by the time they reach us.
        raise ScalarInputError("Decimal values are sent as strings, e.g. \"0.0125\"")
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        raise ScalarInputError(f"not a decimal number: {value!r}") from None
    if not parsed.is_finite():
        raise ScalarInputError("Decimal values must be finite")
    return parsed


def format_instant(value: datetime) -> str:
    text = value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return text + "Z"


def _parse_instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise ScalarInputError("DateTime values are ISO 8601 strings")
    parsed = _isoformat(value)
    if parsed.tzinfo is None:
        raise ScalarInputError("DateTime values need a time zone, e.g. 2026-11-01T00:00:00Z")
    return parsed.astimezone(UTC)


def _parse_bigint(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScalarInputError("BigInt values are JSON integers")
    return value


BigInt = NewType("BigInt", int)
# A price per million tokens is exact to 1e-9 USD: the money scalar's 4
# places would turn 0.01875 into 0.0188.
ExactDecimal = NewType("ExactDecimal", Decimal)


def format_exact(value: Decimal) -> str:
    """At least 4 places, like money, and all the places ``value`` needs beyond them."""
    if not value.is_finite():
        raise ValueError("ExactDecimal values must be finite")
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite, so not 'n', 'N' or 'F'
    return f"{value:.{max(4, -exponent)}f}"


# Aware datetimes kept in their zone, so that a 23-hour day reads as such.
OffsetDateTime = NewType("OffsetDateTime", datetime)


def _parse_offset_instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise ScalarInputError("OffsetDateTime values are ISO 8601 strings")
    parsed = _isoformat(value)
    if parsed.tzinfo is None:
        raise ScalarInputError(
            "OffsetDateTime values need a UTC offset, e.g. 2026-03-29T00:00:00+01:00"
        )
    return parsed


def _format_offset_instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("OffsetDateTime values must be aware")
    return value.isoformat()


# A budget's amounts, in its measure: USD or a count (``meterql.budgets``).
BudgetAmount = NewType("BudgetAmount", str)


def _parse_budget_amount(value: object) -> str:
    # Strings, or integers for counts; never a JSON float, whose digits a
    # client's parser may already have changed.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ScalarInputError('BudgetAmount values are strings ("250.00", "5000000")')
    return str(value)


# Passed as ``StrawberryConfig(scalar_map=...)``: these replace Strawberry's
# own Decimal and DateTime, whose wire forms differ from the contract's.
SCALAR_MAP = {
    Decimal: strawberry.scalar(
        name="Decimal",
        description='Exact decimal USD; written with 4 places, half-up ("12.3400").',
        serialize=format_usd,
        parse_value=_parse_decimal,
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description="An instant in ISO 8601, UTC, with a Z suffix (2026-11-01T00:00:00Z).",
        serialize=format_instant,
        parse_value=_parse_instant,
    ),
    BigInt: strawberry.scalar(
        name="BigInt",
        description="An integer that may exceed 32 bits, written as a JSON number.",
        serialize=int,
        parse_value=_parse_bigint,
    ),
    ExactDecimal: strawberry.scalar(
        name="ExactDecimal",
        description='An exact decimal, never rounded: at least 4 places ("0.1500", "0.01875").',
        serialize=format_exact,
        parse_value=_parse_decimal,
    ),
    OffsetDateTime: strawberry.scalar(
        name="OffsetDateTime",
        description="An instant in ISO 8601 with the UTC offset of the query's time zone "
        "(2026-03-29T00:00:00+01:00).",
        serialize=_format_offset_instant,
        parse_value=_parse_offset_instant,
    ),
    BudgetAmount: strawberry.scalar(
        name="BudgetAmount",
        description="An amount in a budget's measure, as a string: USD with 4 places, "
        'half-up, for COST ("250.0000"; up to 4 places when sent), a whole number for '
        'TOKENS and REQUESTS ("5000000").',
        serialize=str,
        parse_value=_parse_budget_amount,
    ),
}

"""Money: integer nano-USD in storage, ``Decimal`` in Python, 4 places on the wire.

Storage keeps every amount as an integer count of nano-dollars (1e-9 USD), so
SQL ``SUM`` is exact on SQLite and PostgreSQL alike and a single event's cost
is exact to 1e-9 USD. Model prices are kept as nano-dollars per million
tokens, which keeps a per-token price exact down to 1e-15 USD.

The only rounding rule of the API lives here: half-up to 4 places, applied
when a response is written, never earlier.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

NANOS_PER_USD = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per million tokens
_WIRE_QUANTUM = Decimal("0.0001")


class PrecisionError(ValueError):
    """An amount cannot be represented exactly in nano-dollars."""


def usd_to_nanos(amount: Decimal, *, exact: bool = True) -> int:
    """Convert USD to nano-USD; with ``exact`` refuse finer amounts instead of rounding."""
    if not amount.is_finite():
        raise PrecisionError("amount must be a finite number")
    scaled = amount * NANOS_PER_USD
    nanos = int(scaled.to_integral_value(rounding=ROUND_HALF_UP))
    if exact and scaled != nanos:
        raise PrecisionError("amount has more than 9 decimal places")
    return nanos


def nanos_to_usd(nanos: int) -> Decimal:
    """Exact: every nano amount is a finite decimal."""
    return Decimal(nanos).scaleb(-9)


def cents_to_usd(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def event_cost_nanos(
    tokens_in: int, tokens_out: int, input_nanos_per_mtok: int, output_nanos_per_mtok: int
) -> int:
    """Estimated cost of one request, half-up to the nano-dollar, in integers only."""
    numerator = tokens_in * input_nanos_per_mtok + tokens_out * output_nanos_per_mtok
    quotient, remainder = divmod(numerator, TOKENS_PER_PRICE_UNIT)
    # Half-up on non-negative integers: round up when the remainder is at least half.
    return quotient + (1 if 2 * remainder >= TOKENS_PER_PRICE_UNIT else 0)


def charged_nanos(
    cost_usd: Decimal | None, tokens_in: int, tokens_out: int, price: tuple[int, int] | None
) -> int | None:
    """What an event costs, in nano-USD: as its sender reported it (half-up to the
    nano-dollar), else at its model's ``(input, output)`` price per million tokens;
    None when it has neither (it is stored at 0, and counted as unpriced)."""
    if cost_usd is not None:
        return usd_to_nanos(cost_usd, exact=False)
    if price is None:
        return None
    return event_cost_nanos(tokens_in, tokens_out, *price)


def format_usd(amount: Decimal) -> str:
    """The wire form: exactly 4 places, half-up (``"12.3400"``, ``"0.0000"``)."""
    # The rounding passed by position: the C implementation parses keyword
    # arguments slowly, and this runs for every amount of every answer (about
    # 300 ns of 540 per call; 1,800 amounts in a 90-day series by model).
    return str(amount.quantize(_WIRE_QUANTUM, ROUND_HALF_UP))


def percentage(part: int, whole: int) -> float:
    """100 × part / whole, half-up to 2 places; 0 when ``whole`` is 0.

    Integer arithmetic up to the final conversion, so 2/3 → 66.67 and
    1/8 → 12.5 never suffer from binary rounding on the way.
    """
    if whole <= 0:
        return 0.0
    hundredths, remainder = divmod(10_000 * part, whole)
    if 2 * remainder >= whole:
        hundredths += 1
    return float(Decimal(hundredths).scaleb(-2))

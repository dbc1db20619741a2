"""Live ingestion rules: batch limits and validation, shared by GraphQL and REST.

A batch is all-or-nothing: every event is validated before anything is
written, and one bad event rejects the batch with its index and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from meterql.errors import PayloadTooLarge
from meterql.records import (
    MAX_FUTURE_SKEW,
    PlausibleUsageEventRecord,
    UsageEventRecord,
    invalid_input,
)

MAX_EVENTS = 10_000
MAX_BODY_BYTES = 10 * 1024 * 1024

_BATCH: TypeAdapter[list[UsageEventRecord]] = TypeAdapter(list[UsageEventRecord])
_PLAUSIBLE_BATCH: TypeAdapter[list[PlausibleUsageEventRecord]] = TypeAdapter(
    list[PlausibleUsageEventRecord]
)


def validate_batch(
    items: object, now: datetime, loc: Sequence[str | int], horizon: datetime | None = None
) -> list[UsageEventRecord]:
    """Validate a whole batch; ``loc`` roots error locations (``body`` or ``events``).

    Raises :class:`PayloadTooLarge` beyond :data:`MAX_EVENTS` events and
    :class:`InvalidInput` with pydantic's entries for every bad value; an
    event before ``horizon`` (raw-event retention) is one.
    """
    if isinstance(items, list) and len(items) > MAX_EVENTS:
        raise PayloadTooLarge(f"At most {MAX_EVENTS} events per request")
    plausible = _plausible(items, now, horizon)
    if plausible is not None:
        return plausible
    try:
        return _BATCH.validate_python(items, context={"now": now, "horizon": horizon})
    except ValidationError as error:
        raise invalid_input(error, loc) from None


def _plausible(
    items: object, now: datetime, horizon: datetime | None
) -> list[UsageEventRecord] | None:
    """The batch's records if every event is plainly valid, else ``None``.

    pydantic-core checks each event without Python code per event, and one
    comparison per event checks the skew and the horizon: a batch of 1,000
    costs half of what the full validation does. Any doubt (a refusal, a
    timestamp that is no text) returns ``None``, and the full validation
    decides, with its exact errors.
    """
    if items.__class__ is not list:
        return None
    for item in items:
        if item.__class__ is not dict or item.get("timestamp").__class__ is not str:
            return None
    try:
        records: list[UsageEventRecord] = [*_PLAUSIBLE_BATCH.validate_python(items)]
    except ValidationError:
        return None
    latest = now + MAX_FUTURE_SKEW
    for record in records:
        if record.timestamp > latest or (horizon is not None and record.timestamp < horizon):
            return None
    return records

"""Live ingestion rules: batch limits and validation, shared by GraphQL and REST.

A batch is all-or-nothing: every event is validated before anything is
written, and one bad event rejects the batch with its index and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from meterql.errors import PayloadTooLarge
from meterql.records import UsageEventRecord, invalid_input

MAX_EVENTS = 10_000
MAX_BODY_BYTES = 10 * 1024 * 1024

_BATCH: TypeAdapter[list[UsageEventRecord]] = TypeAdapter(list[UsageEventRecord])


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
    try:
        return _BATCH.validate_python(items, context={"now": now, "horizon": horizon})
    except ValidationError as error:
        raise invalid_input(error, loc) from None


"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

# SQLite only gives a rowid alias to INTEGER PRIMARY KEY; PostgreSQL wants bigint.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def sqlite_instant(value: datetime) -> str:
    """An aware instant as SQLite stores it: UTC text, microseconds always written."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.isoformat(" ", "microseconds")[:-6]  # less its "+00:00"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC instant in Python; ``timestamptz`` on PostgreSQL.

    SQLite has no time zones and SQLAlchemy stores its datetimes as
    fixed-width text, so we store naive UTC there: text order is then time
    order, which keeps range filters index-friendly and correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # The text SQLAlchemy's SQLite DATETIME stores ('2026-11-20
        # 12:00:00.000000', microseconds always written), made by one C call:
        # bulk writes format a timestamp per event, and the generic path
        # (this decorator, then the dialect's format dict) was a fifth of an
        # import's time.
        def process(value: datetime | None) -> str | None:
            return None if value is None else sqlite_instant(value)

        return process

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # The stored text back to an aware instant in one C call; the generic
        # path parses it with a regular expression, and ingest reads a stored
        # instant per end user of every batch.
        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            return datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

"""What differs between SQLite and PostgreSQL, in one place.

Read statements are built once and compiled once per dialect
(``db/reads.py``), so a list of values they take (ids, spans of a series)
must be one bound parameter whatever its length, never an ``IN`` list that
grows with it: an array on PostgreSQL, JSON text on SQLite.
:class:`StringList` is that parameter's type and :func:`in_list` the test
against it; each compiles to its dialect's form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, Boolean, ColumnElement, String, Table, any_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator, TypeEngine


def insert(session: AsyncSession, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can take ``ON CONFLICT``: spelled alike, but each dialect has its own."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class StringList(TypeDecorator[Sequence[str]]):
    """A list of strings as one parameter: ``text[]`` on PostgreSQL, JSON text on SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(String()))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Sequence[str] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return None if value is None else list(value)
        return json.dumps(list(value))


class InList(ColumnElement[bool]):
    """``column`` equals one of the strings of the list bound to ``values``."""

    inherit_cache = True
    type = Boolean()
    # A comparison, not a boolean column: SQLite must not get "= 1" after it.
    _is_implicitly_boolean = True

    def __init__(self, column: ColumnElement[Any], values: BindParameter[Any]) -> None:
        self.column = column
        self.values = values


def in_list(column: ColumnElement[Any], name: str) -> InList:
    """``column`` is one of the strings bound, as a list, to the parameter ``name``."""
    return InList(column, BindParameter(name, type_=StringList()))


@compiles(InList, "postgresql")
def _any_of_array(element: InList, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(element.values), **kw)


@compiles(InList)
def _in_json_list(element: InList, compiler: SQLCompiler, **kw: Any) -> str:
    items = func.json_each(element.values).table_valued("value")
    return compiler.process(element.column.in_(select(items.c.value)), **kw)
